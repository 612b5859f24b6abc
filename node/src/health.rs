//! Health of the node's components, for `/healthz` (operations endpoint and client API) and
//! `sphr_node_healthy{component}`.
//!
//! ```text
//!  storage ─ no write to the ledger failed since start (the applier records failures)
//!          ─ the database file is still the one opened at start (not removed or replaced)
//!          ─ sled still accepts writes (a flush succeeds: it fails for good after an I/O error)
//!          ─ Ledger::check_health: tip and applied index read back from disk = memory
//!  raft    ─ (consenters) the driver thread runs, did not stop on a fatal error,
//!            and a leader is known (a majority of consenters is reachable)
//!  p2p     ─ (networks of several nodes) the swarm task runs and a genesis peer is connected
//! ```
//!
//! 200 `{"status":"ok",...}` when every check passes, else 503 with `failing` naming each
//! failing component and `checks` saying why. Reasons carry heights, indexes, paths and error
//! texts of the node's own storage: never patient data.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sphr_ledger::Ledger;
use sphr_orderer::OrdererHandle;

use crate::p2p::Peers;

/// One component's check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentCheck {
    /// `storage`, `raft` or `p2p`.
    pub component: String,
    /// `ok` or `unhealthy`.
    pub status: String,
    /// Why it is unhealthy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// The body of `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `ok` or `unhealthy`.
    pub status: String,
    /// The failing components (empty when healthy).
    pub failing: Vec<String>,
    /// Every component checked.
    pub checks: Vec<ComponentCheck>,
}

impl HealthReport {
    fn new(results: Vec<(&'static str, Result<(), String>)>) -> HealthReport {
        let mut failing = Vec::new();
        let checks = results
            .into_iter()
            .map(|(component, r)| {
                if r.is_err() {
                    failing.push(component.to_string());
                }
                ComponentCheck {
                    component: component.to_string(),
                    status: if r.is_ok() { "ok" } else { "unhealthy" }.to_string(),
                    reason: r.err(),
                }
            })
            .collect();
        HealthReport {
            status: if failing.is_empty() {
                "ok"
            } else {
                "unhealthy"
            }
            .to_string(),
            failing,
            checks,
        }
    }

    /// Whether every component is healthy.
    pub fn is_healthy(&self) -> bool {
        self.failing.is_empty()
    }

    /// Whether `component` passed (true when it was not checked).
    pub fn component_ok(&self, component: &str) -> bool {
        !self.failing.iter().any(|c| c == component)
    }
}

/// The first storage failure seen by a writer (the Raft applier), kept until restart: sled
/// refuses every write after an I/O error, so the node cannot recover by itself.
#[derive(Debug, Default)]
pub struct StorageFault(Mutex<Option<String>>);

impl StorageFault {
    /// Records a failed write (the first one is kept).
    pub fn record(&self, what: String) {
        let mut f = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if f.is_none() {
            *f = Some(what);
        }
    }

    /// The recorded failure.
    pub fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The identity (device, inode) of a file, to notice it was removed or replaced.
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Checks the components of a running node.
pub struct HealthChecker {
    ledger: Arc<Ledger>,
    orderer: Option<OrdererHandle>,
    peers: Option<Peers>,
    peer_count: usize,
    fault: Arc<StorageFault>,
    db_file: PathBuf,
    db_file_id: Option<(u64, u64)>,
}

impl HealthChecker {
    /// A checker over the node's ledger, orderer (consenters) and p2p layer (networks of
    /// several nodes); `peer_count` is the number of other nodes in genesis.
    pub fn new(
        ledger: Arc<Ledger>,
        orderer: Option<OrdererHandle>,
        peers: Option<Peers>,
        peer_count: usize,
        fault: Arc<StorageFault>,
    ) -> HealthChecker {
        // sled keeps its pages in `<data_dir>/db`.
        let db_file = ledger.path().join("db");
        let db_file_id = file_id(&db_file);
        HealthChecker {
            ledger,
            orderer,
            peers,
            peer_count,
            fault,
            db_file,
            db_file_id,
        }
    }

    /// Checks every component.
    pub fn check(&self) -> HealthReport {
        HealthReport::new(vec![
            ("storage", self.storage()),
            ("raft", self.raft()),
            ("p2p", self.p2p()),
        ])
    }

    fn storage(&self) -> Result<(), String> {
        if let Some(f) = self.fault.get() {
            return Err(format!(
                "a ledger write failed: {f}; the node commits nothing more until restarted \
                 (check the disk holding {})",
                self.ledger.path().display()
            ));
        }
        if self.db_file_id.is_some() && file_id(&self.db_file) != self.db_file_id {
            return Err(format!(
                "the database file {} was removed or replaced while the node runs; \
                 what the node writes now is lost at restart",
                self.db_file.display()
            ));
        }
        // The Raft log's entry bodies live in segment files beside the database: a failed
        // write there stops the orderer with a storage error, and the disk is the cause.
        if let Some(o) = &self.orderer {
            let s = o.status();
            if s.storage_failed {
                return Err(format!(
                    "the Raft log's storage failed: {}; the node commits nothing more until \
                     restarted (check the disk holding {})",
                    s.fatal.unwrap_or_else(|| "unknown error".into()),
                    self.ledger.path().display()
                ));
            }
        }
        // sled refuses to flush once a write failed (disk full, I/O error), whoever wrote:
        // the ledger or the Raft log in the same database. Nothing dirty: no disk write.
        if let Err(e) = self.ledger.db().flush() {
            return Err(format!(
                "the database refuses writes: {e}; the node commits nothing more until \
                 restarted (check the disk holding {})",
                self.ledger.path().display()
            ));
        }
        self.ledger.check_health().map_err(|e| e.to_string())
    }

    fn raft(&self) -> Result<(), String> {
        let Some(o) = &self.orderer else {
            return Ok(()); // not a consenter
        };
        let s = o.status();
        if !s.healthy {
            return Err(format!(
                "the orderer stopped: {}",
                s.fatal.unwrap_or_else(|| "unknown error".into())
            ));
        }
        if !s.running {
            return Err("the orderer is not running".into());
        }
        if s.leader_id == 0 {
            return Err(format!(
                "no leader known in term {}: a majority of consenters is not reachable",
                s.term
            ));
        }
        Ok(())
    }

    fn p2p(&self) -> Result<(), String> {
        let Some(p) = &self.peers else {
            return Ok(()); // a network of one node
        };
        if !p.handle().is_running() {
            return Err("the p2p layer stopped".into());
        }
        if p.connected() == 0 {
            return Err(format!(
                "no peer connected (0 of {}): this node cannot reach the network",
                self.peer_count
            ));
        }
        Ok(())
    }
}
