//! Integration tests of sphr-vault on real sled databases in temporary directories.

// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod bundles;
mod common;
mod corrupt;
mod large;
mod props;
mod smr01;
