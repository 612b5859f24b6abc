//! The event log: every event the loop handles, and what came of it, folded into one hash.
//!
//! Two runs of one seed must produce the same hash (the reproducibility test runs a seed
//! twice). The last lines are kept for the failure report; `SPHR_SIM_TRACE=1` prints every
//! line to stderr.

use std::collections::VecDeque;

use sphr_crypto::hash::{Hash32, sha256, sha256_parts};

/// Lines kept for the failure report.
const RECENT_MAX: usize = 60;

/// A running hash of the event log.
#[derive(Debug)]
pub struct EventLog {
    hash: Hash32,
    count: u64,
    recent: VecDeque<String>,
    trace: bool,
}

impl EventLog {
    /// An empty log; `trace` prints every line.
    pub fn new(trace: bool) -> Self {
        Self {
            hash: sha256(b"sphr-sim-event-log"),
            count: 0,
            recent: VecDeque::new(),
            trace,
        }
    }

    /// Appends one line at virtual time `now_ms`.
    pub fn record(&mut self, now_ms: u64, line: String) {
        self.hash = sha256_parts(&[&self.hash.0, &now_ms.to_be_bytes(), line.as_bytes()]);
        self.count += 1;
        if self.trace {
            eprintln!("[{now_ms:>7} ms] {line}");
        }
        if self.recent.len() >= RECENT_MAX {
            self.recent.pop_front();
        }
        self.recent.push_back(format!("[{now_ms:>7} ms] {line}"));
    }

    /// The hash of everything recorded.
    pub fn hash(&self) -> Hash32 {
        self.hash
    }

    /// Lines recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The last lines.
    pub fn recent(&self) -> Vec<String> {
        self.recent.iter().cloned().collect()
    }
}
