//! Integration tests of sphr-vault on real sled databases in temporary directories.

mod bad_input;
mod bundles;
mod common;
mod corrupt;
mod large;
mod props;
mod smr01;
