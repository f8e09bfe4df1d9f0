//! The `state` crate's one integration-test binary.

mod common;
mod crash;
mod misc;
mod model;
mod queries;
