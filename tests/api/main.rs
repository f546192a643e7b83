//! The integration suite: the real application over HTTP, on SQLite by default and on PostgreSQL
//! when `ALLOT_TEST_DATABASE_URL` is set.

mod allocations;
mod audit;
mod auth;
mod check;
mod cli;
mod cors;
mod coverage;
mod dns;
mod document;
mod domains;
mod edge;
mod errors;
mod fuzz;
mod health;
mod helpers;
mod history;
mod idempotency;
mod identity;
mod mail_flow;
mod mailboxes;
mod matrix;
mod modules;
mod mta;
mod nodes;
mod openapi;
mod outage;
mod principals;
mod proxy;
mod rate_limit;
mod route_test;
mod scenario;
mod secret_key;
mod statistics;
mod suspension;
mod tls;
