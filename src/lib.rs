//! allot: licence allocation down a tree of resellers to customers.
//!
//! The layers, and the one direction their dependencies point:
//!
//! - [`api`] (HTTP), [`check`] (the mail workers' hot path and the Postfix listeners) and the
//!   command line (`main.rs`) are the doors. A handler parses, authorises through [`auth::guard`]
//!   (which hands out an [`auth::guard::Authorised`] node), calls one workflow, and shows the
//!   result.
//! - [`service`] holds every write workflow once, one module per aggregate, inside the caller's
//!   transaction: it asks `domain` to decide and `store` to read and write, and records the audit.
//! - [`store`] owns every SQL statement, one module per aggregate; it reads and writes rows and
//!   decides nothing.
//! - [`domain`] is pure (std, chrono, uuid, unicode): the rules — quota arithmetic, the tree,
//!   addresses and their identity, the catalogue's rules, statuses, audit actions.
//!
//! Beside them: [`startup`] wires one actix application that the binary and the tests share;
//! [`probe`] connects out on a user's request (the route test's SMTP client) and judges where
//! allot may connect (`probe::connect_refusal`), for it, for [`mail`] (sent through a tenant's
//! mail server) and for [`outbox`] (which delivers what the workflows queued: webhooks);
//! [`secret`] seals what allot must keep secret at rest; [`config`], [`edge`], [`telemetry`],
//! [`dns`], [`init`] and [`error`] are what their names say. The README's "Code map" lists where
//! each concern lives.

pub mod api;
pub mod auth;
pub mod check;
pub mod clock;
pub mod config;
pub mod dns;
pub mod domain;
pub mod edge;
pub mod error;
pub mod init;
pub mod mail;
pub mod outbox;
pub mod probe;
pub mod secret;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
