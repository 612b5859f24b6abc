//! In-process test harness: N orderers on real sled databases (one per node, in a temp
//! dir), connected by an in-memory [`Transport`] that can cut a node's links.
//!
//! ```text
//!  Cluster ── start(id)/stop(id) ──> OrdererHandle (driver thread) ── NetTransport ──┐
//!     │                                   ^                                          │
//!     │                                   └──── step / submit_batch ──── Net ────────┘
//!     └── TestApplier: blocks + applied index in one sled transaction; `Chain` plays
//!         "a peer's block store" for snapshot catch-up and checks that nobody diverges.
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sled::Transactional;
use sphr_orderer::{
    Applier, ApplyError, BatchSealer, OrdererConfig, OrdererHandle, RaftMessage, RaftStatus,
    SledRaftStorage, Transport, decode_message, encode_message,
};

/// Polls `f` every few milliseconds until it holds; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        if Instant::now() > end {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A test configuration: 10 ms ticks, elections after 100..200 ms.
pub fn test_config(id: u64, voters: &[u64]) -> OrdererConfig {
    OrdererConfig {
        id,
        voters: voters.to_vec(),
        tick: Duration::from_millis(10),
        election_ticks: 10,
        heartbeat_ticks: 2,
        max_tx: 10,
        max_bytes: 64 * 1024,
        batch_timeout: Duration::from_millis(20),
        snapshot_interval: 1000,
        snapshot_catchup_entries: 4,
        ..OrdererConfig::default()
    }
}

/// A transaction of the tests: `tx-<n>`.
pub fn tx(n: usize) -> Vec<u8> {
    format!("tx-{n}").into_bytes()
}

// ---------------------------------------------------------------------------------------
// Sealer and block encoding

/// Seals a batch as CBOR (the node signs a block; the tests only need the txs back).
/// With a gate, sealing waits for it: that holds the Raft thread itself.
#[derive(Default)]
pub struct TestSealer {
    pub gate: Option<Arc<Gate>>,
}

impl BatchSealer for TestSealer {
    fn seal(&mut self, txs: Vec<Vec<u8>>) -> Vec<u8> {
        if let Some(g) = &self.gate {
            g.pass();
        }
        let mut out = Vec::new();
        ciborium::into_writer(&txs, &mut out).expect("cbor encode");
        out
    }
}

pub fn decode_block(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    ciborium::from_reader(bytes).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Applier

/// Every node's applied blocks by Raft index: the "peer" a node behind a snapshot fetches
/// blocks from, and a divergence check (two nodes applying different bytes at one index).
#[derive(Default)]
pub struct Chain {
    blocks: Mutex<BTreeMap<u64, Vec<u8>>>,
}

/// Blocks the applier (the apply thread) or the sealer (the Raft thread) until opened.
#[derive(Default)]
pub struct Gate {
    state: Mutex<(bool, bool)>, // (open, someone waiting)
    cv: Condvar,
}

impl Gate {
    pub fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.cv.notify_all();
    }
    pub fn has_waiter(&self) -> bool {
        self.state.lock().unwrap().1
    }
    fn pass(&self) {
        let mut s = self.state.lock().unwrap();
        s.1 = true;
        while !s.0 {
            s = self.cv.wait(s).unwrap();
        }
    }
}

/// What the tests observe of one node's applier, kept across its restarts.
#[derive(Default)]
pub struct Observed {
    /// Every `apply` call: (index, txs).
    pub applied: Mutex<Vec<(u64, Vec<Vec<u8>>)>>,
    /// Every `restore_snapshot` call: (index, term, data).
    pub restores: Mutex<Vec<(u64, u64, Vec<u8>)>>,
}

/// The test's state machine: blocks and the applied index in one sled transaction, flushed.
pub struct TestApplier {
    blocks: sled::Tree,
    meta: sled::Tree,
    applied: u64,
    chain: Arc<Chain>,
    observed: Arc<Observed>,
    /// Fail every `apply` at or above this index.
    pub fail_from: Option<u64>,
    /// Panic in `apply` at or above this index.
    pub panic_from: Option<u64>,
    pub gate: Option<Arc<Gate>>,
}

const APPLIED_KEY: &[u8] = b"applied";

impl TestApplier {
    pub fn open(db: &sled::Db, chain: Arc<Chain>, observed: Arc<Observed>) -> Self {
        let blocks = db.open_tree("blocks").unwrap();
        let meta = db.open_tree("applier_meta").unwrap();
        let applied = meta
            .get(APPLIED_KEY)
            .unwrap()
            .map(|v| u64::from_be_bytes(v.as_ref().try_into().unwrap()))
            .unwrap_or(0);
        Self {
            blocks,
            meta,
            applied,
            chain,
            observed,
            fail_from: None,
            panic_from: None,
            gate: None,
        }
    }

    fn store(&self, writes: &[(u64, Vec<u8>)], applied: u64) -> Result<(), ApplyError> {
        (&self.blocks, &self.meta)
            .transaction(|(b, m)| {
                for (i, bytes) in writes {
                    b.insert(&i.to_be_bytes(), bytes.clone())?;
                }
                m.insert(APPLIED_KEY, &applied.to_be_bytes())?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| ApplyError::Storage(format!("{e:?}").into()))?;
        self.blocks
            .flush()
            .map_err(|e| ApplyError::Storage(Box::new(e)))?;
        Ok(())
    }
}

impl Applier for TestApplier {
    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn apply(&mut self, index: u64, _term: u64, entry: &[u8]) -> Result<(), ApplyError> {
        if let Some(g) = &self.gate {
            g.pass();
        }
        if self.panic_from.is_some_and(|f| index >= f) {
            panic!("injected panic at {index}");
        }
        if self.fail_from.is_some_and(|f| index >= f) {
            return Err(ApplyError::Invalid(format!("injected failure at {index}")));
        }
        if index <= self.applied {
            return Err(ApplyError::Invalid(format!(
                "index {index} applied twice (applied {})",
                self.applied
            )));
        }
        let txs = decode_block(entry).map_err(ApplyError::Invalid)?;
        {
            let mut chain = self.chain.blocks.lock().unwrap();
            match chain.get(&index) {
                Some(prev) if prev != entry => {
                    return Err(ApplyError::Invalid(format!("divergence at index {index}")));
                }
                Some(_) => {}
                None => {
                    chain.insert(index, entry.to_vec());
                }
            }
        }
        self.store(&[(index, entry.to_vec())], index)?;
        self.applied = index;
        self.observed.applied.lock().unwrap().push((index, txs));
        Ok(())
    }

    fn snapshot_data(&self) -> Vec<u8> {
        // "blocks up to height h": here the height and the last block's index.
        let height = self.blocks.len() as u64;
        let mut out = Vec::new();
        ciborium::into_writer(&(height, self.applied), &mut out).unwrap();
        out
    }

    fn restore_snapshot(&mut self, index: u64, term: u64, data: &[u8]) -> Result<(), ApplyError> {
        let (height, last_block): (u64, u64) =
            ciborium::from_reader(data).map_err(|e| ApplyError::Invalid(e.to_string()))?;
        // Fetch the missing blocks "from a peer".
        let missing: Vec<(u64, Vec<u8>)> = self
            .chain
            .blocks
            .lock()
            .unwrap()
            .range(..=last_block)
            .filter(|(i, _)| !self.blocks.contains_key(i.to_be_bytes()).unwrap_or(false))
            .map(|(i, b)| (*i, b.clone()))
            .collect();
        self.store(&missing, index)?;
        if self.blocks.len() as u64 != height {
            return Err(ApplyError::Invalid(format!(
                "have {} blocks after restore, snapshot says {height}",
                self.blocks.len()
            )));
        }
        self.applied = index;
        self.observed
            .restores
            .lock()
            .unwrap()
            .push((index, term, data.to_vec()));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Network

/// The in-memory network: delivers messages to registered handles, unless a node is
/// isolated (all its links cut).
#[derive(Default)]
pub struct Net {
    handles: Mutex<HashMap<u64, OrdererHandle>>,
    isolated: Mutex<HashSet<u64>>,
}

impl Net {
    fn linked(&self, a: u64, b: u64) -> bool {
        let iso = self.isolated.lock().unwrap();
        !iso.contains(&a) && !iso.contains(&b)
    }

    fn handle(&self, id: u64) -> Option<OrdererHandle> {
        self.handles.lock().unwrap().get(&id).cloned()
    }
}

pub struct NetTransport {
    net: Arc<Net>,
    from: u64,
}

impl Transport for NetTransport {
    fn send(&self, msgs: Vec<RaftMessage>) {
        for m in msgs {
            if !self.net.linked(self.from, m.to) {
                continue;
            }
            // Through the wire codec, as the node does.
            let bytes = encode_message(&m).unwrap();
            let m = decode_message(&bytes, 64 << 20).unwrap();
            if let Some(h) = self.net.handle(m.to) {
                let _ = h.step(m);
            }
        }
    }

    fn forward_txs(&self, leader: u64, txs: Vec<Vec<u8>>) {
        if !self.net.linked(self.from, leader) {
            return;
        }
        if let Some(h) = self.net.handle(leader) {
            let _ = h.submit_batch(txs);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cluster

struct Slot {
    dir: PathBuf,
    db: Option<sled::Db>,
    handle: Option<OrdererHandle>,
    observed: Arc<Observed>,
}

/// N orderers in one process.
pub struct Cluster {
    voters: Vec<u64>,
    tweak: Box<dyn Fn(&mut OrdererConfig)>,
    net: Arc<Net>,
    chain: Arc<Chain>,
    slots: BTreeMap<u64, Slot>,
    _dir: tempfile::TempDir,
}

fn open_db(dir: &Path) -> sled::Db {
    // A just-closed database may hold its file lock for a moment.
    let mut db = None;
    wait_until(
        Duration::from_secs(5),
        "sled to reopen",
        || match sled::open(dir) {
            Ok(d) => {
                db = Some(d);
                true
            }
            Err(_) => false,
        },
    );
    db.unwrap()
}

impl Cluster {
    pub fn new(voters: &[u64], tweak: impl Fn(&mut OrdererConfig) + 'static) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let slots = voters
            .iter()
            .map(|&id| {
                (
                    id,
                    Slot {
                        dir: dir.path().join(format!("node{id}")),
                        db: None,
                        handle: None,
                        observed: Arc::default(),
                    },
                )
            })
            .collect();
        Self {
            voters: voters.to_vec(),
            tweak: Box::new(tweak),
            net: Arc::default(),
            chain: Arc::default(),
            slots,
            _dir: dir,
        }
    }

    pub fn config(&self, id: u64) -> OrdererConfig {
        let mut c = test_config(id, &self.voters);
        (self.tweak)(&mut c);
        c
    }

    /// Starts (or restarts) a node on its database.
    pub fn start(&mut self, id: u64) {
        self.start_with(id, |_| {});
    }

    /// Starts a node, letting the test adjust its applier first.
    pub fn start_with(&mut self, id: u64, adjust: impl FnOnce(&mut TestApplier)) {
        self.start_sealing_with(id, TestSealer::default(), adjust);
    }

    /// Starts a node whose sealer waits for `gate` (holding its Raft thread).
    pub fn start_sealer_gated(&mut self, id: u64, gate: Arc<Gate>) {
        self.start_sealing_with(id, TestSealer { gate: Some(gate) }, |_| {});
    }

    fn start_sealing_with(
        &mut self,
        id: u64,
        sealer: TestSealer,
        adjust: impl FnOnce(&mut TestApplier),
    ) {
        let cfg = self.config(id);
        let chain = Arc::clone(&self.chain);
        let net = Arc::clone(&self.net);
        let slot = self.slots.get_mut(&id).expect("unknown node");
        assert!(slot.handle.is_none(), "node {id} already running");
        let db = open_db(&slot.dir);
        let storage = SledRaftStorage::open(
            db.open_tree("raft_log").unwrap(),
            db.open_tree("raft_meta").unwrap(),
            slot.dir.join("raft-entries"),
        )
        .unwrap();
        let mut applier = TestApplier::open(&db, chain, Arc::clone(&slot.observed));
        adjust(&mut applier);
        let transport = NetTransport {
            net: Arc::clone(&net),
            from: id,
        };
        let handle = sphr_orderer::start(cfg, storage, transport, sealer, applier).unwrap();
        net.handles.lock().unwrap().insert(id, handle.clone());
        slot.db = Some(db);
        slot.handle = Some(handle);
    }

    /// Stops a node (joins its thread) and closes its database.
    pub fn stop(&mut self, id: u64) {
        self.net.handles.lock().unwrap().remove(&id);
        let slot = self.slots.get_mut(&id).expect("unknown node");
        if let Some(h) = slot.handle.take() {
            h.shutdown();
        }
        slot.db = None;
    }

    /// Reopens a stopped node's Raft storage (to inspect what was persisted).
    pub fn open_storage(&self, id: u64) -> (sled::Db, SledRaftStorage) {
        let slot = &self.slots[&id];
        assert!(slot.handle.is_none(), "node {id} is running");
        let db = open_db(&slot.dir);
        let s = SledRaftStorage::open(
            db.open_tree("raft_log").unwrap(),
            db.open_tree("raft_meta").unwrap(),
            slot.dir.join("raft-entries"),
        )
        .unwrap();
        (db, s)
    }

    pub fn handle(&self, id: u64) -> OrdererHandle {
        self.slots[&id].handle.clone().expect("node not running")
    }

    pub fn status(&self, id: u64) -> RaftStatus {
        self.handle(id).status()
    }

    pub fn running(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|(_, s)| s.handle.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn isolate(&self, id: u64) {
        self.net.isolated.lock().unwrap().insert(id);
    }

    pub fn heal(&self, id: u64) {
        self.net.isolated.lock().unwrap().remove(&id);
    }

    /// The leader every running node agrees on, once there is one.
    pub fn wait_leader(&self, timeout: Duration) -> u64 {
        let mut leader = 0;
        wait_until(timeout, "an agreed leader", || {
            let st: Vec<RaftStatus> = self.running().iter().map(|&id| self.status(id)).collect();
            let l = st[0].leader_id;
            let agreed = l != 0
                && st.iter().all(|s| s.leader_id == l)
                && st.iter().any(|s| s.id == l && s.is_leader);
            if agreed {
                leader = l;
            }
            agreed
        });
        leader
    }

    /// Every `apply` this node saw (across restarts), in order.
    pub fn observed(&self, id: u64) -> Arc<Observed> {
        Arc::clone(&self.slots[&id].observed)
    }

    /// The node's block store: (index, block bytes) in index order.
    pub fn ledger(&self, id: u64) -> Vec<(u64, Vec<u8>)> {
        let db = self.slots[&id].db.as_ref().expect("node not running");
        db.open_tree("blocks")
            .unwrap()
            .iter()
            .map(|r| {
                let (k, v) = r.unwrap();
                (
                    u64::from_be_bytes(k.as_ref().try_into().unwrap()),
                    v.to_vec(),
                )
            })
            .collect()
    }

    /// The transactions in the node's block store, in order.
    pub fn ledger_txs(&self, id: u64) -> Vec<Vec<u8>> {
        self.ledger(id)
            .iter()
            .flat_map(|(_, b)| decode_block(b).unwrap())
            .collect()
    }

    /// Waits until the node's block store holds `n` transactions and its published status
    /// covers the last of them (the driver publishes at the end of a loop turn, after the
    /// applier has stored the block).
    pub fn wait_txs(&self, id: u64, n: usize, timeout: Duration) {
        wait_until(timeout, &format!("{n} txs on node {id}"), || {
            let st = self.status(id);
            assert!(st.healthy, "node {id} unhealthy: {:?}", st.fatal);
            let ledger = self.ledger(id);
            let last_block = ledger.last().map_or(0, |(i, _)| *i);
            let txs: usize = ledger
                .iter()
                .map(|(_, b)| decode_block(b).unwrap().len())
                .sum();
            txs >= n && st.applied_index >= last_block
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.slots.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }
}
