//! The jobmatch data CLI as a library: synthetic data generation, the
//! JSON Lines loader and its model, shared by the `jobmatch` binary and its tests.

pub mod catalog;
pub mod csv;
pub mod generate;
pub mod load;
pub mod model;
