//! allot: licence allocation down a tree of resellers to customers.
//!
//! Dependencies point one way: [`api`] → [`store`] → [`domain`]. `domain` is pure (std, chrono,
//! uuid); `store` owns every SQL statement; `api` turns HTTP into calls on both and back.
//! [`startup`] wires them into one actix application that the binary and the tests share.
//! [`probe`] is the one place that connects out on a user's request (the route test's SMTP client).

pub mod api;
pub mod auth;
pub mod check;
pub mod config;
pub mod dns;
pub mod domain;
pub mod edge;
pub mod error;
pub mod init;
pub mod probe;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
