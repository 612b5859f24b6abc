//! Integration tests of sphr-p2p: real nodes on 127.0.0.1 (port 0), one binary.

// Helpers outside `#[test]` functions panic on purpose too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_frames;
mod common;
mod endorse_stream;
mod exchange;
mod raft_stream;
mod restart;
mod stranger;
mod timeouts;
