//! jobmatch's shared library: the domain (types, ranking, validation), the
//! ports the handlers depend on, and the adapters behind them. Nothing here
//! depends on a Lambda crate.

pub mod adapters;
pub mod auth;
pub mod aws;
pub mod cache_mac;
pub mod callback;
pub mod catalogue;
pub mod config;
pub mod deadline;
pub mod domain;
pub mod error;
pub mod http;
pub mod http_client;
pub mod idempotency;
pub mod jwt_crypto;
pub mod ports;
pub mod progress;
pub mod quota;
pub mod ranking;
pub mod request;
pub mod service;
pub mod telemetry;

pub use error::{Error, Result};
