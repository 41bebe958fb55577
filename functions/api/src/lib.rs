//! The api function as a library, so that its integration tests can drive the
//! handler over the real adapters (see `tests/`).

pub mod handler;
pub mod health;
