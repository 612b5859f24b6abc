//! The discrete-event loop: one queue of timed events, one virtual clock, one thread.
//!
//! ```text
//!                   ┌──────────── queue: (time, seq) ─> event ────────────┐
//!                   │  seq breaks ties in scheduling order: same seed,     │
//!                   │  same order, every time                              │
//!                   └──────────────────────┬───────────────────────────────┘
//!                                          │ pop the earliest; now = its time
//!     ┌───────────────┬──────────────┬─────┴──────┬───────────────┬────────────────┐
//!   Tick/Timer     Deliver/Forward  Submit/Arrive  Fault          Restart/Settle
//!   node ticks,    link up and      client builds   crash (now or  reopen from disk;
//!   batch timeout  node up? step /  a tx, node      mid-Ready),    heal, restart all,
//!     │            accept            accepts it     partition,     check convergence
//!     └───────────────┴──────┬───────┴──────────────┘ heal
//!                            v
//!              node operation (node.rs) ─> Outbox
//!                 msgs / forwards ─> Network::route ─> Deliver/Forward at now + delay (0..2 copies)
//!                 new blocks ─> invariants (one block per height, equal state, endorsements)
//!                 waiting clients ─> acknowledgements (no_ack_lost)
//!                 Stop ─> crashed (restart later) / fatal (violation)
//! ```
//!
//! A run has two phases: `fault_ms` of load and faults, then a settle phase (network healed
//! and calm, every node restarted, no new transactions) that ends when the cluster has
//! converged, followed by the final checks.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use raft::eraftpb::Message;
use sphr_crypto::hash::Hash32;
use sphr_ledger::Ledger;
use sphr_ledger::test_utils::TestNetwork;
use sphr_orderer::CutterLimits;
use sphr_types::{BlockRecord, NodeRef};

use crate::client::{Client, Pending, TxKind, build_tx, kv_state_key, tx_id};
use crate::config::SimConfig;
use crate::invariants::equal_state::EqualStateAtEqualHeight;
use crate::invariants::no_ack_lost::{Ack, NoAckedTxLost};
use crate::invariants::one_block_per_height::{OneBlockPerHeight, short};
use crate::invariants::settles::{self, NodeView};
use crate::invariants::valid_at_most_once::ValidAtMostOnce;
use crate::invariants::valid_needs_endorsements::NoValidWithoutEndorsements;
use crate::invariants::{Invariant, Violation, no_fatal_stop};
use crate::log::EventLog;
use crate::net::Network;
use crate::node::{BlockSource, CrashPoint, Ctx, NewBlock, NodeSpec, Outbox, SimNode, Stop};
use crate::rng::SimRng;

/// The simulation could not be set up (not a finding about the system under test).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The temporary directory could not be made.
    #[error("temporary directory: {0}")]
    TempDir(#[from] std::io::Error),
}

/// What a run did, and the violation if one was found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Consenters.
    pub nodes: usize,
    /// Events handled.
    pub events: u64,
    /// Virtual time at the end (ms).
    pub virtual_ms: u64,
    /// Highest block seen.
    pub height: u64,
    /// Transactions the clients built.
    pub txs_submitted: u64,
    /// Transactions acknowledged.
    pub txs_acked: usize,
    /// Acknowledged transactions by code.
    pub acked_by_code: BTreeMap<&'static str, u64>,
    /// VALID transactions re-checked against the policy.
    pub valid_rechecked: u64,
    /// Node crashes (planned).
    pub crashes: u64,
    /// Node restarts.
    pub restarts: u64,
    /// Partition faults.
    pub partitions: u64,
    /// Pauses (frozen nodes).
    pub pauses: u64,
    /// Snapshots restored from a leader.
    pub snapshots_restored: u64,
    /// Catch-ups that found no reachable peer (the node restarted later).
    pub catch_up_unavailable: u64,
    /// Messages sent, lost, duplicated.
    pub msgs: (u64, u64, u64),
    /// Time the settle phase took (virtual ms).
    pub settle_ms: u64,
    /// Hash of the event log.
    pub event_log_hash: Hash32,
    /// The first broken invariant.
    pub violation: Option<Violation>,
    /// The last events before the end.
    pub recent_events: Vec<String>,
}

impl Report {
    /// One line of figures.
    pub fn summary(&self) -> String {
        format!(
            "seed {} nodes {}: {} events, {} virtual ms (settle {}), height {}, {} txs, {} acked \
             {:?}, {} VALID re-checked, {} crashes, {} restarts, {} partitions, {} pauses, {} \
             snapshots restored, msgs sent/lost/dup {:?}, log {}",
            self.seed,
            self.nodes,
            self.events,
            self.virtual_ms,
            self.settle_ms,
            self.height,
            self.txs_submitted,
            self.txs_acked,
            self.acked_by_code,
            self.valid_rechecked,
            self.crashes,
            self.restarts,
            self.partitions,
            self.pauses,
            self.snapshots_restored,
            self.msgs,
            short(&self.event_log_hash)
        )
    }

    /// The failure report (with the seed to reproduce it), if an invariant broke.
    pub fn failure(&self) -> Option<String> {
        let v = self.violation.as_ref()?;
        let mut s = format!(
            "invariant {} broken: {v}\nreproduce: SPHR_SIM_SEED={} cargo test -p sphr-sim --test \
             sim -- seeds_with --nocapture\n{}\nlast events:\n",
            v.invariant,
            self.seed,
            self.summary()
        );
        for l in &self.recent_events {
            let _ = writeln!(s, "  {l}");
        }
        Some(s)
    }
}

#[derive(Debug)]
enum Event {
    Tick {
        node: u64,
        life: u64,
    },
    Timer {
        node: u64,
        life: u64,
    },
    Deliver {
        from: u64,
        to: u64,
        msg: Box<Message>,
    },
    Forward {
        from: u64,
        to: u64,
        txs: Vec<Vec<u8>>,
    },
    Submit {
        client: usize,
    },
    Arrive {
        client: usize,
        node: u64,
        tx: Hash32,
        bytes: Vec<u8>,
    },
    ClientCheck {
        client: usize,
    },
    Fault,
    Restart {
        node: u64,
    },
    Settle,
    SettleCheck,
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    ev: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap, the loop wants the earliest (then first scheduled).
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A crash waiting for its point inside a Ready.
#[derive(Debug, Clone, Copy)]
struct Armed {
    point: CrashPoint,
    /// Downtime after it.
    down: u64,
    /// It strikes at the first tick after this anyway (virtual ms).
    until: u64,
}

struct Slot {
    spec: NodeSpec,
    node: Option<SimNode>,
    /// Incremented at every start: events of an earlier life are ignored.
    life: u64,
    /// A planned crash inside a coming Ready.
    armed: Option<Armed>,
    /// The node's election-timeout stream (survives restarts).
    rng: SimRng,
    /// When the pending batch-timeout event fires.
    timer_at: Option<u64>,
    /// The node is frozen until then (virtual ms): its events wait.
    paused_until: u64,
}

/// Read-only view of the peers, for catch-up.
struct Peers<'a> {
    slots: &'a [Slot],
    net: &'a Network,
}

impl BlockSource for Peers<'_> {
    fn fetch(&self, me: u64, from: u64, to: u64, tip: &Hash32) -> Option<Vec<BlockRecord>> {
        for s in self.slots {
            let Some(n) = &s.node else { continue };
            let id = s.spec.id;
            if id == me || !self.net.reachable(me, id) || !self.net.reachable(id, me) {
                continue;
            }
            let l = n.ledger();
            if l.height() < to || !matches!(l.block(to), Ok(Some(r)) if r.block.hash() == *tip) {
                continue;
            }
            let recs: Option<Vec<BlockRecord>> =
                (from..=to).map(|h| l.block(h).ok().flatten()).collect();
            if recs.is_some() {
                return recs;
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Faults,
    Settle { since: u64, stable: u32 },
    Done,
}

#[derive(Debug, Default)]
struct Stats {
    crashes: u64,
    restarts: u64,
    partitions: u64,
    snapshots_restored: u64,
    catch_up_unavailable: u64,
    pauses: u64,
}

/// The invariant checkers of one run.
struct Checks {
    blocks: OneBlockPerHeight,
    state: EqualStateAtEqualHeight,
    endorsements: NoValidWithoutEndorsements,
    once: ValidAtMostOnce,
    acks: NoAckedTxLost,
}

impl Checks {
    /// The endorsement re-check and VALID-once of a block.
    fn check_valid(&mut self, rec: &BlockRecord) -> Result<(), (Invariant, String)> {
        let valid = self
            .endorsements
            .observe(rec)
            .map_err(|d| (Invariant::NoValidWithoutEndorsements, d))?;
        for (id, pos) in valid {
            self.once
                .observe(id, rec.block.header.number, pos)
                .map_err(|d| (Invariant::ValidAtMostOnce, d))?;
        }
        Ok(())
    }
}

/// One run.
pub struct Simulation {
    cfg: SimConfig,
    testnet: TestNetwork,
    _dir: tempfile::TempDir,
    base: Instant,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    slots: Vec<Slot>,
    net: Network,
    clients: Vec<Client>,
    /// Which client waits for which transaction on which node.
    waiting: BTreeMap<(u64, Hash32), usize>,
    rng_faults: SimRng,
    rng_clients: SimRng,
    rng_clock: SimRng,
    log: EventLog,
    checks: Checks,
    stats: Stats,
    phase: Phase,
    violation: Option<Violation>,
}

/// Where the nodes' directories go: `SPHR_SIM_DIR`, else `/dev/shm` when it exists (the
/// sled flushes then cost nothing), else the system temp dir. Only speed depends on it.
fn temp_root() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SPHR_SIM_DIR") {
        return Some(PathBuf::from(d));
    }
    let shm = PathBuf::from("/dev/shm");
    shm.is_dir().then_some(shm)
}

/// Runs the simulation of `cfg` to the end and reports.
pub fn run(cfg: SimConfig) -> Result<Report, SimError> {
    let mut sim = Simulation::new(cfg)?;
    sim.run_loop();
    Ok(sim.report())
}

impl Simulation {
    /// Sets a run up: the test network, the nodes' directories and specs, the clients.
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        let seed = cfg.seed;
        let testnet = TestNetwork::new(cfg.nodes, "MAJORITY");
        let dir = match temp_root() {
            Some(root) => tempfile::Builder::new()
                .prefix("sphr-sim-")
                .tempdir_in(root)
                .or_else(|_| tempfile::tempdir())?,
            None => tempfile::tempdir()?,
        };
        let voters: Vec<u64> = (1..=cfg.nodes as u64).collect();
        let slots = (0..cfg.nodes)
            .map(|i| {
                let id = i as u64 + 1;
                Slot {
                    spec: NodeSpec {
                        id,
                        voters: voters.clone(),
                        dir: dir.path().join(format!("node{id}")),
                        genesis: testnet.genesis_block.clone(),
                        key: testnet.node(i, 0).key.clone(),
                        me: NodeRef {
                            org: testnet.orgs[i].name.clone(),
                            name: "peer0".into(),
                        },
                        election_ticks: cfg.election_ticks,
                        heartbeat_ticks: cfg.heartbeat_ticks,
                        max_inflight_proposals: cfg.max_inflight_proposals,
                        snapshot_interval: cfg.snapshot_interval,
                        snapshot_catchup_entries: cfg.snapshot_catchup_entries,
                        cutter: CutterLimits {
                            max_tx: cfg.max_tx,
                            max_bytes: 2 * 1024 * 1024,
                            batch_timeout: std::time::Duration::from_millis(cfg.batch_timeout_ms),
                        },
                        forward_buffer_txs: 10_000,
                        #[cfg(feature = "bugs")]
                        bug: cfg.bug,
                    },
                    node: None,
                    life: 0,
                    armed: None,
                    rng: SimRng::fork(seed, &format!("election/{id}")),
                    timer_at: None,
                    paused_until: 0,
                }
            })
            .collect();
        let mut rng_clients = SimRng::fork(seed, "clients");
        let clients = (0..cfg.clients)
            .map(|i| Client::new(&testnet, i, rng_clients.range(1, cfg.nodes as u64)))
            .collect();
        let checks = Checks {
            blocks: OneBlockPerHeight::default(),
            state: EqualStateAtEqualHeight::default(),
            endorsements: NoValidWithoutEndorsements::new(&testnet.genesis),
            once: ValidAtMostOnce::default(),
            acks: NoAckedTxLost::default(),
        };
        let trace = std::env::var_os("SPHR_SIM_TRACE").is_some_and(|v| v != "0");
        Ok(Simulation {
            net: Network::new(cfg.net.clone(), SimRng::fork(seed, "net")),
            cfg,
            testnet,
            _dir: dir,
            base: Instant::now(),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            slots,
            clients,
            waiting: BTreeMap::new(),
            rng_faults: SimRng::fork(seed, "faults"),
            rng_clients,
            rng_clock: SimRng::fork(seed, "clock"),
            log: EventLog::new(trace),
            checks,
            stats: Stats::default(),
            phase: Phase::Faults,
            violation: None,
        })
    }

    fn schedule(&mut self, at: u64, ev: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn record(&mut self, line: String) {
        self.log.record(self.now, line);
    }

    fn fail(&mut self, invariant: Invariant, detail: String) {
        if self.violation.is_none() {
            self.record(format!("VIOLATION {invariant}: {detail}"));
            self.violation = Some(Violation {
                invariant,
                at_ms: self.now,
                detail,
            });
        }
    }

    fn run_loop(&mut self) {
        for id in 1..=self.cfg.nodes as u64 {
            self.schedule(0, Event::Restart { node: id });
        }
        for c in 0..self.clients.len() {
            let at = self.rng_clients.range(200, 1000);
            self.schedule(at, Event::Submit { client: c });
            self.schedule(at + 500, Event::ClientCheck { client: c });
        }
        let first_fault = self.rng_faults.range(1000, 3000);
        self.schedule(first_fault, Event::Fault);
        self.schedule(self.cfg.fault_ms, Event::Settle);

        while self.violation.is_none() && self.phase != Phase::Done {
            let Some(s) = self.queue.pop() else {
                break;
            };
            self.now = s.at;
            self.handle(s.ev);
        }
        if self.violation.is_none() && self.phase == Phase::Done {
            self.final_checks();
        }
    }

    /// The node an event is handled by, if it is one that a frozen node cannot handle.
    fn target(ev: &Event) -> Option<u64> {
        match ev {
            Event::Tick { node, .. } | Event::Timer { node, .. } => Some(*node),
            Event::Deliver { to, .. } | Event::Forward { to, .. } => Some(*to),
            Event::Arrive { node, .. } => Some(*node),
            _ => None,
        }
    }

    fn handle(&mut self, ev: Event) {
        // A frozen node's events wait for it (in order: they are rescheduled in the order
        // they come due). Its first tick after a pause comes at once, not in a burst.
        if let Some(until) = Self::target(&ev)
            .and_then(|id| self.slot(id))
            .map(|s| s.paused_until)
            .filter(|&u| u > self.now)
        {
            self.schedule(until, ev);
            return;
        }
        match ev {
            Event::Tick { node, life } => self.on_tick(node, life),
            Event::Timer { node, life } => {
                let slot = self.slot(node);
                if slot.is_some_and(|s| s.life == life && s.timer_at == Some(self.now)) {
                    if let Some(s) = self.slot_mut(node) {
                        s.timer_at = None;
                    }
                    self.record(format!("timer n{node}"));
                    self.with_node(node, "batch timeout", |n, cx| n.poll(cx));
                }
            }
            Event::Deliver { from, to, msg } => self.on_deliver(from, to, *msg),
            Event::Forward { from, to, txs } => {
                if !self.is_up(to) || !self.net.reachable(from, to) {
                    self.net.lost_in_flight();
                    self.record(format!("forward {from}->{to} lost ({} txs)", txs.len()));
                    return;
                }
                self.record(format!("forward {from}->{to} {} txs", txs.len()));
                self.with_node(to, "forwarded txs", |n, cx| n.accept_txs(txs, cx));
            }
            Event::Submit { client } => self.on_submit(client),
            Event::Arrive {
                client,
                node,
                tx,
                bytes,
            } => self.on_arrive(client, node, tx, bytes),
            Event::ClientCheck { client } => self.on_client_check(client),
            Event::Fault => self.on_fault(),
            Event::Restart { node } => self.on_restart(node),
            Event::Settle => self.on_settle(),
            Event::SettleCheck => self.on_settle_check(),
        }
    }

    fn slot(&self, id: u64) -> Option<&Slot> {
        self.slots.get(usize::try_from(id.checked_sub(1)?).ok()?)
    }

    fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        self.slots
            .get_mut(usize::try_from(id.checked_sub(1)?).ok()?)
    }

    fn is_up(&self, id: u64) -> bool {
        self.slot(id).is_some_and(|s| s.node.is_some())
    }

    fn node(&self, id: u64) -> Option<&SimNode> {
        self.slot(id).and_then(|s| s.node.as_ref())
    }

    fn up_ids(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|s| s.node.is_some())
            .map(|s| s.spec.id)
            .collect()
    }

    fn leader(&self) -> Option<u64> {
        self.slots
            .iter()
            .find(|s| s.node.as_ref().is_some_and(SimNode::is_leader))
            .map(|s| s.spec.id)
    }

    /// Runs one operation on node `id` (if up) and dispatches what it produced.
    fn with_node(
        &mut self,
        id: u64,
        what: &str,
        op: impl FnOnce(&mut SimNode, &mut Ctx<'_>) -> Result<(), Stop>,
    ) {
        let Some(idx) = id
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < self.slots.len())
        else {
            return;
        };
        let Some(mut node) = self.slots[idx].node.take() else {
            return;
        };
        let mut rng = self.slots[idx].rng.clone();
        let crash_at = self.slots[idx].armed.map(|a| a.point);
        let mut out = Outbox::default();
        let res = {
            let peers = Peers {
                slots: &self.slots,
                net: &self.net,
            };
            let mut cx = Ctx {
                now_ms: self.now,
                rng: &mut rng,
                peers: &peers,
                out: &mut out,
                crash_at,
            };
            op(&mut node, &mut cx)
        };
        self.slots[idx].rng = rng;
        self.observe_blocks(id, node.ledger(), &out.blocks);
        self.acknowledge(id, node.ledger());
        match res {
            Ok(()) => {
                let deadline = node.cutter_deadline_ms();
                let life = self.slots[idx].life;
                self.slots[idx].node = Some(node);
                if let Some(d) = deadline {
                    let at = d.max(self.now);
                    if self.slots[idx].timer_at != Some(at) {
                        self.slots[idx].timer_at = Some(at);
                        self.schedule(at, Event::Timer { node: id, life });
                    }
                }
            }
            Err(stop) => {
                drop(node);
                self.node_stopped(id, stop, what, None);
            }
        }
        self.dispatch(id, out);
    }

    fn dispatch(&mut self, from: u64, out: Outbox) {
        for note in out.notes {
            if note.starts_with("restored snapshot") {
                self.stats.snapshots_restored += 1;
            }
            self.record(format!("n{from}: {note}"));
        }
        for msg in out.msgs {
            let to = msg.to;
            for d in self.net.route(from, to) {
                self.schedule(
                    self.now + d,
                    Event::Deliver {
                        from,
                        to,
                        msg: Box::new(msg.clone()),
                    },
                );
            }
        }
        for (to, txs) in out.forwards {
            for d in self.net.route(from, to) {
                self.schedule(
                    self.now + d,
                    Event::Forward {
                        from,
                        to,
                        txs: txs.clone(),
                    },
                );
            }
        }
    }

    fn observe_blocks(&mut self, id: u64, ledger: &Ledger, blocks: &[NewBlock]) {
        for b in blocks {
            self.record(format!(
                "n{id} {} block {} {} state {}",
                if b.synced { "synced" } else { "committed" },
                b.number,
                short(&b.hash),
                short(&b.state_hash)
            ));
            if self.violation.is_some() {
                return;
            }
            let rec = match ledger.block(b.number) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    let d = format!("node {id} reported block {} it does not have", b.number);
                    self.fail(Invariant::OneBlockPerHeight, d);
                    return;
                }
                Err(e) => {
                    let d = no_fatal_stop::describe(id, &e.to_string(), "reading a block back");
                    self.fail(Invariant::NoFatalStop, d);
                    return;
                }
            };
            if let Err(d) = self
                .checks
                .blocks
                .observe(id, b.number, rec.block.hash(), &rec.codes)
            {
                self.fail(Invariant::OneBlockPerHeight, d);
                return;
            }
            if let Err(d) = self.checks.state.observe(id, b.number, b.state_hash) {
                self.fail(Invariant::EqualStateAtEqualHeight, d);
                return;
            }
            if let Err((inv, d)) = self.checks.check_valid(&rec) {
                self.fail(inv, d);
                return;
            }
        }
    }

    /// The clients waiting on node `id` whose transaction it has committed hear about it.
    fn acknowledge(&mut self, id: u64, ledger: &Ledger) {
        let keys: Vec<(u64, Hash32)> = self
            .waiting
            .range((id, Hash32::ZERO)..=(id, Hash32([0xff; 32])))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Ok(Some(loc)) = ledger.tx_location(&key.1) else {
                continue;
            };
            let Some(client) = self.waiting.remove(&key) else {
                continue;
            };
            let ack = Ack {
                node: id,
                block: loc.block,
                position: loc.position,
                code: loc.code,
                at_ms: self.now,
            };
            self.record(format!(
                "ack c{client} tx {} by n{id}: block {} #{} {}",
                short(&key.1),
                loc.block,
                loc.position,
                loc.code
            ));
            if let Err(d) = self.checks.acks.record(key.1, ack) {
                self.fail(Invariant::NoAckedTxLost, d);
            }
            if let Some(c) = self.clients.get_mut(client)
                && let Some(p) = c.pending.remove(&key.1)
            {
                c.remember_acked(p.bytes);
            }
        }
    }

    /// Node `id` is gone (its `SimNode` dropped): clients lose their wait, a crash or a failed
    /// catch-up plans a restart, anything else is a violation.
    fn node_stopped(&mut self, id: u64, stop: Stop, what: &str, down: Option<u64>) {
        let life = self.slot(id).map_or(0, |s| s.life);
        self.waiting.retain(|(n, _), _| *n != id);
        let armed = self.slot_mut(id).and_then(|s| {
            s.timer_at = None;
            s.paused_until = 0;
            s.armed.take()
        });
        match stop {
            Stop::Crashed => {
                self.stats.crashes += 1;
                let down = down
                    .or(armed.map(|a| a.down))
                    .unwrap_or(self.cfg.faults.down_min_ms);
                self.record(format!(
                    "n{id} crashed during {what} (life {life}), down {down} ms"
                ));
                self.plan_restart(id, down);
            }
            Stop::CatchUpUnavailable(reason) => {
                self.stats.catch_up_unavailable += 1;
                let down = self.rng_faults.range(300, 1500);
                self.record(format!("n{id} stopped: {reason}; restart in {down} ms"));
                self.plan_restart(id, down);
            }
            Stop::Fatal(reason) => {
                let d = no_fatal_stop::describe(id, &reason, what);
                self.fail(Invariant::NoFatalStop, d);
            }
        }
    }

    fn plan_restart(&mut self, id: u64, after: u64) {
        // Settling: restart soon (every node must be up), but not in a tight loop.
        let at = if matches!(self.phase, Phase::Settle { .. }) {
            self.now + 50
        } else {
            self.now + after
        };
        self.schedule(at, Event::Restart { node: id });
    }

    fn crash(&mut self, id: u64, down: u64) {
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        if slot.node.take().is_none() {
            return;
        }
        self.node_stopped(id, Stop::Crashed, "a planned crash", Some(down));
    }

    fn on_restart(&mut self, id: u64) {
        let Some(idx) = id
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < self.slots.len())
        else {
            return;
        };
        if self.slots[idx].node.is_some() {
            return;
        }
        let mut rng = self.slots[idx].rng.clone();
        let mut out = Outbox::default();
        let spec = self.slots[idx].spec.clone();
        let res = {
            let peers = Peers {
                slots: &self.slots,
                net: &self.net,
            };
            let mut cx = Ctx {
                now_ms: self.now,
                rng: &mut rng,
                peers: &peers,
                out: &mut out,
                crash_at: None,
            };
            SimNode::open(&spec, self.base, &mut cx)
        };
        self.slots[idx].rng = rng;
        match res {
            Ok(node) => {
                self.observe_blocks(id, node.ledger(), &out.blocks);
                let slot = &mut self.slots[idx];
                slot.life += 1;
                slot.timer_at = None;
                slot.armed = None;
                let life = slot.life;
                let height = node.ledger().height();
                let applied = node.ledger().applied_raft_index();
                slot.node = Some(node);
                if life > 1 {
                    self.stats.restarts += 1;
                }
                self.record(format!(
                    "n{id} started (life {life}) at height {height}, applied {applied}"
                ));
                let phase = self.rng_clock.below(self.cfg.tick_ms);
                self.schedule(self.now + 1 + phase, Event::Tick { node: id, life });
                self.dispatch(id, out);
            }
            Err(stop) => {
                self.dispatch(id, out);
                self.node_stopped(id, stop, "restart", None);
            }
        }
    }

    fn on_tick(&mut self, id: u64, life: u64) {
        let Some(slot) = self.slot(id) else { return };
        if slot.life != life || slot.node.is_none() {
            return;
        }
        if let Some(a) = slot.armed
            && self.now >= a.until
        {
            // The planned mid-Ready crash did not find its point in time: crash now.
            self.record(format!("n{id} tick: armed crash strikes now"));
            self.crash(id, a.down);
            return;
        }
        self.record(format!("tick n{id}"));
        self.with_node(id, "tick", |n, cx| n.tick(cx));
        // Clocks drift a little: each tick lands within +-5% of the nominal period.
        let jitter = self.cfg.tick_ms / 20;
        let next = self.now + self.cfg.tick_ms - jitter + self.rng_clock.below(2 * jitter + 1);
        if self
            .slot(id)
            .is_some_and(|s| s.life == life && s.node.is_some())
        {
            self.schedule(next, Event::Tick { node: id, life });
        }
    }

    fn on_deliver(&mut self, from: u64, to: u64, msg: Message) {
        if !self.is_up(to) || !self.net.reachable(from, to) {
            self.net.lost_in_flight();
            self.record(format!(
                "lost {from}->{to} {:?} t{}",
                msg.get_msg_type(),
                msg.term
            ));
            return;
        }
        self.record(format!(
            "deliver {from}->{to} {:?} t{} i{} lt{} c{} e{} r{}",
            msg.get_msg_type(),
            msg.term,
            msg.index,
            msg.log_term,
            msg.commit,
            msg.entries.len(),
            msg.reject
        ));
        self.with_node(to, "step", |n, cx| n.step(msg, cx).map(|_| ()));
    }

    fn on_submit(&mut self, c: usize) {
        if self.phase != Phase::Faults {
            return;
        }
        let (min, max) = (self.cfg.submit_min_ms, self.cfg.submit_max_ms);
        let next = self.now + self.rng_clients.range(min, max);
        self.schedule(next, Event::Submit { client: c });
        let Some(client) = self.clients.get(c) else {
            return;
        };
        // Whom to ask: the believed leader; a node that knows another leader redirects.
        let mut target = client.believed_leader;
        if let Some(n) = self.node(target)
            && n.leader_id() != 0
            && n.leader_id() != target
        {
            target = n.leader_id();
        }
        if !self.is_up(target) {
            // Connection refused: try someone else next time.
            let other = self.rng_clients.range(1, self.cfg.nodes as u64);
            if let Some(cl) = self.clients.get_mut(c) {
                cl.believed_leader = other;
            }
            self.record(format!("c{c} submit refused by n{target}, next n{other}"));
            return;
        }
        let kind = client.pick_kind(&mut self.rng_clients);
        let (tx, bytes) = if kind == TxKind::Replay {
            let i = self
                .rng_clients
                .index(client.acked_recent.len())
                .unwrap_or(0);
            let Some(bytes) = client.acked_recent.get(i).cloned() else {
                return;
            };
            let Some(id) = sphr_types::Transaction::from_bytes(&bytes)
                .ok()
                .as_ref()
                .and_then(tx_id)
            else {
                return;
            };
            (id, bytes)
        } else {
            let key = u32::try_from(self.rng_clients.below(u64::from(self.cfg.keys))).unwrap_or(0);
            let version = self
                .node(target)
                .and_then(|n| n.ledger().get_state(&kv_state_key(key)).ok().flatten())
                .map(|(v, _)| v);
            let value = format!("c{c}-{}-{}", self.now, self.rng_clients.next_u64()).into_bytes();
            let tx = build_tx(
                &self.testnet,
                &client.user,
                kind,
                key,
                &value,
                version,
                &mut self.rng_clients,
            );
            let (Some(id), Ok(bytes)) = (tx_id(&tx), tx.to_bytes()) else {
                return;
            };
            if kind.must_fail() {
                self.checks.endorsements.must_fail(id);
            }
            (id, bytes)
        };
        self.record(format!(
            "c{c} submit {kind:?} tx {} to n{target}",
            short(&tx)
        ));
        if let Some(cl) = self.clients.get_mut(c) {
            cl.believed_leader = target;
            cl.submitted += 1;
            if kind != TxKind::Replay {
                cl.pending.insert(
                    tx,
                    Pending {
                        bytes: bytes.clone(),
                        node: target,
                        sent_at: self.now,
                        attempts: 1,
                    },
                );
            }
        }
        let at = self.now + self.rng_clients.range(1, 3);
        self.schedule(
            at,
            Event::Arrive {
                client: c,
                node: target,
                tx,
                bytes,
            },
        );
    }

    fn on_arrive(&mut self, c: usize, node: u64, tx: Hash32, bytes: Vec<u8>) {
        if !self.is_up(node) {
            self.record(format!("c{c} tx {} refused: n{node} down", short(&tx)));
            return;
        }
        let pending = self
            .clients
            .get(c)
            .is_some_and(|cl| cl.pending.contains_key(&tx));
        if pending {
            self.waiting.insert((node, tx), c);
        }
        self.record(format!("n{node} accepts tx {} from c{c}", short(&tx)));
        // `with_node` acknowledges what the node has committed, this transaction included
        // when it was committed before (a resubmission): the gateway answers at once.
        self.with_node(node, "client tx", |n, cx| n.accept_txs(vec![bytes], cx));
    }

    fn on_client_check(&mut self, c: usize) {
        if self.phase == Phase::Done {
            return;
        }
        self.schedule(self.now + 500, Event::ClientCheck { client: c });
        let timeout = self.cfg.client_timeout_ms;
        let settling = self.phase != Phase::Faults;
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        let overdue: Vec<Hash32> = client
            .pending
            .iter()
            .filter(|(_, p)| self.now.saturating_sub(p.sent_at) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        let mut resend = Vec::new();
        for id in overdue {
            if self.checks.acks.is_acked(&id) {
                client.pending.remove(&id);
                continue;
            }
            let give_up = settling || client.pending.get(&id).is_none_or(|p| p.attempts >= 3);
            if give_up {
                client.pending.remove(&id);
                client.given_up += 1;
                continue;
            }
            let target = client.believed_leader;
            if let Some(p) = client.pending.get_mut(&id) {
                p.attempts += 1;
                p.sent_at = self.now;
                p.node = target;
                resend.push((id, target, p.bytes.clone()));
            }
        }
        for (id, target, bytes) in resend {
            self.record(format!("c{c} resubmits tx {} to n{target}", short(&id)));
            let at = self.now + self.rng_clients.range(1, 3);
            self.schedule(
                at,
                Event::Arrive {
                    client: c,
                    node: target,
                    tx: id,
                    bytes,
                },
            );
        }
    }

    fn on_fault(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        let f = self.cfg.faults.clone();
        let next = self.now + self.rng_faults.range(f.interval_min_ms, f.interval_max_ms);
        self.schedule(next, Event::Fault);
        let weights = [
            f.w_nothing,
            f.w_crash,
            f.w_crash_leader,
            f.w_isolate,
            f.w_split,
            f.w_one_way,
            f.w_heal,
            f.w_crash_all,
            f.w_pause,
        ];
        let n = self.cfg.nodes as u64;
        match self.rng_faults.weighted(&weights) {
            Some(k @ (1 | 2)) => {
                let down = self.rng_faults.range(f.down_min_ms, f.down_max_ms);
                let point = match self.rng_faults.weighted(&f.crash_points) {
                    Some(1) => Some(CrashPoint::AfterLeaderMessages),
                    Some(2) => Some(CrashPoint::AfterPersist),
                    Some(3) => Some(CrashPoint::AfterPersistedMessages),
                    Some(4) => Some(CrashPoint::AfterFirstApply),
                    Some(5) => Some(CrashPoint::AfterSnapshotStored),
                    _ => None,
                };
                let up = self.up_ids();
                let target = if point == Some(CrashPoint::AfterSnapshotStored) {
                    // The node most behind is the one a snapshot is sent to.
                    up.iter()
                        .copied()
                        .min_by_key(|&i| (self.node(i).map_or(0, |n| n.ledger().height()), i))
                } else if k == 2 {
                    self.leader()
                } else {
                    None
                };
                let target = target.or_else(|| self.rng_faults.pick(&up).copied());
                let Some(id) = target else { return };
                match point {
                    Some(p) => {
                        self.record(format!("fault: n{id} will crash at {p:?}, down {down} ms"));
                        let until = self.now + f.armed_max_ms;
                        if let Some(s) = self.slot_mut(id) {
                            s.armed = Some(Armed {
                                point: p,
                                down,
                                until,
                            });
                        }
                    }
                    None => {
                        self.record(format!("fault: crash n{id} now, down {down} ms"));
                        self.crash(id, down);
                    }
                }
            }
            Some(3) => {
                let id = self.rng_faults.range(1, n);
                for other in 1..=n {
                    self.net.cut_both(id, other);
                }
                self.stats.partitions += 1;
                self.record(format!("fault: isolate n{id}"));
            }
            Some(4) => {
                let mut ids: Vec<u64> = (1..=n).collect();
                self.rng_faults.shuffle(&mut ids);
                let k = usize::try_from(self.rng_faults.range(1, n / 2)).unwrap_or(1);
                let (a, b) = ids.split_at(k.min(ids.len()));
                for x in a {
                    for y in b {
                        self.net.cut_both(*x, *y);
                    }
                }
                self.stats.partitions += 1;
                self.record(format!("fault: split {a:?} | {b:?}"));
            }
            Some(5) => {
                let x = self.rng_faults.range(1, n);
                let y = self.rng_faults.range(1, n);
                self.net.cut_link(x, y);
                self.stats.partitions += 1;
                self.record(format!("fault: link n{x}->n{y} down"));
            }
            Some(6) => {
                self.net.heal();
                self.record("fault: heal".into());
            }
            Some(7) => {
                let down = self.rng_faults.range(f.down_min_ms, f.down_max_ms);
                self.record(format!("fault: crash all, down {down} ms"));
                for id in self.up_ids() {
                    let d = down + self.rng_faults.below(200);
                    self.crash(id, d);
                }
            }
            Some(8) => {
                let up = self.up_ids();
                let target = if self.rng_faults.below(2) == 0 {
                    self.leader()
                } else {
                    None
                };
                let Some(id) = target.or_else(|| self.rng_faults.pick(&up).copied()) else {
                    return;
                };
                let d = self.rng_faults.range(100, f.pause_max_ms);
                let until = self.now + d;
                if let Some(s) = self.slot_mut(id) {
                    s.paused_until = s.paused_until.max(until);
                }
                self.stats.pauses += 1;
                self.record(format!("fault: pause n{id} for {d} ms"));
            }
            _ => self.record("fault: none".into()),
        }
    }

    fn on_settle(&mut self) {
        self.phase = Phase::Settle {
            since: self.now,
            stable: 0,
        };
        self.net.heal();
        self.net.set_profile(self.cfg.calm_net());
        for s in &mut self.slots {
            s.armed = None;
        }
        // Frozen nodes stay frozen until their time: their events are already queued there.
        self.queue
            .retain(|s| !matches!(s.ev, Event::Restart { .. }));
        let down: Vec<u64> = self
            .slots
            .iter()
            .filter(|s| s.node.is_none())
            .map(|s| s.spec.id)
            .collect();
        self.record(format!("settle: heal, calm network, restart {down:?}"));
        for id in down {
            self.schedule(self.now + 1, Event::Restart { node: id });
        }
        self.schedule(self.now + self.cfg.tick_ms, Event::SettleCheck);
    }

    fn views(&self) -> Vec<NodeView> {
        self.slots
            .iter()
            .map(|s| match &s.node {
                Some(n) => {
                    let tip = n.ledger().tip();
                    NodeView {
                        id: s.spec.id,
                        up: true,
                        leader: n.leader_id(),
                        height: tip.number,
                        tip: tip.hash(),
                        commit: n.commit_index(),
                        applied: n.applied_index(),
                        pending: n.pending_txs(),
                    }
                }
                None => NodeView {
                    id: s.spec.id,
                    up: false,
                    leader: 0,
                    height: 0,
                    tip: Hash32::ZERO,
                    commit: 0,
                    applied: 0,
                    pending: 0,
                },
            })
            .collect()
    }

    fn on_settle_check(&mut self) {
        let Phase::Settle { since, stable } = self.phase else {
            return;
        };
        let views = self.views();
        if settles::converged(&views) {
            let stable = stable + 1;
            self.record(format!("settle check: converged ({stable})"));
            if stable >= 3 {
                self.phase = Phase::Done;
                return;
            }
            self.phase = Phase::Settle { since, stable };
        } else {
            self.phase = Phase::Settle { since, stable: 0 };
            if self.now.saturating_sub(since) > self.cfg.settle_ms_max {
                let d = format!(
                    "not converged {} ms after healing: {}",
                    self.cfg.settle_ms_max,
                    settles::describe(&views)
                );
                self.fail(Invariant::Settles, d);
                return;
            }
        }
        self.schedule(self.now + self.cfg.tick_ms, Event::SettleCheck);
    }

    fn final_checks(&mut self) {
        self.record("final checks".into());
        let result = {
            let ledgers: Vec<(u64, &Ledger)> = self
                .slots
                .iter()
                .filter_map(|s| s.node.as_ref().map(|n| (s.spec.id, n.ledger())))
                .collect();
            let mut r = self
                .checks
                .blocks
                .check_chains(&ledgers)
                .map_err(|d| (Invariant::OneBlockPerHeight, d));
            if r.is_ok() {
                r = self
                    .checks
                    .state
                    .check_now(&ledgers)
                    .map_err(|d| (Invariant::EqualStateAtEqualHeight, d));
            }
            if r.is_ok()
                && let Some((_, l)) = ledgers.first()
            {
                for h in 0..=l.height() {
                    if let Ok(Some(rec)) = l.block(h)
                        && let Err(e) = self.checks.check_valid(&rec)
                    {
                        r = Err(e);
                        break;
                    }
                }
            }
            if r.is_ok() {
                r = self
                    .checks
                    .acks
                    .check(&ledgers)
                    .map_err(|d| (Invariant::NoAckedTxLost, d));
            }
            r
        };
        if let Err((inv, d)) = result {
            self.fail(inv, d);
        }
    }

    fn report(&self) -> Report {
        let settle_ms = match self.phase {
            Phase::Settle { since, .. } => self.now.saturating_sub(since),
            _ => self.now.saturating_sub(self.cfg.fault_ms),
        };
        Report {
            seed: self.cfg.seed,
            nodes: self.cfg.nodes,
            events: self.log.count(),
            virtual_ms: self.now,
            height: self.checks.blocks.max_height(),
            txs_submitted: self.clients.iter().map(|c| c.submitted).sum(),
            txs_acked: self.checks.acks.len(),
            acked_by_code: self.checks.acks.by_code(),
            valid_rechecked: self.checks.endorsements.valid_rechecked,
            crashes: self.stats.crashes,
            restarts: self.stats.restarts,
            partitions: self.stats.partitions,
            pauses: self.stats.pauses,
            snapshots_restored: self.stats.snapshots_restored,
            catch_up_unavailable: self.stats.catch_up_unavailable,
            msgs: (self.net.sent, self.net.lost, self.net.duplicated),
            settle_ms,
            event_log_hash: self.log.hash(),
            violation: self.violation.clone(),
            recent_events: self.log.recent(),
        }
    }
}
