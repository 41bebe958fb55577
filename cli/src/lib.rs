//! The jobmatch data CLI as a library: synthetic data generation and the
//! JSON Lines loader, shared by the `jobmatch` binary and its tests.

pub mod catalog;
pub mod csv;
pub mod generate;
pub mod load;
