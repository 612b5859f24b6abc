//! Integration tests of sphr-orderer: real raft-rs, real sled on disk (temp dirs), nodes in
//! one process. One binary (one link step) with a module per scenario.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod apply;
mod cluster;
mod limits;
mod restart;
mod single_node;
mod snapshot;
mod storage_conformance;
