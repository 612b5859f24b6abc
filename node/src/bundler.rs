//! The grant follower: turns committed `accessGranted` events into sealed bundles and bundle
//! keys on chain (seed 000, section 3.4.1, steps 6 and 7), off the commit path.
//!
//! ```text
//!  committer ─notify─> CommitNotifier ──broadcast (hints: block, position of accessGranted)──┐
//!                                                                                           v
//!  follower task (one per node)                                   node_grants (node's db)
//!   1. scan blocks cursor+1..=height: hinted txs only, or every tx   "cursor" -> height
//!      of a block whose hints were missed (start, lag); each          "todo" ‖ request id
//!      accessGranted request id -> to-do; cursor moves in the same       -> Todo (attempts,
//!      batch, flushed (a restart rescans from the cursor); a cursor          next try)
//!      that only passed blocks without grants is written at most once
//!      per CURSOR_SAVE_INTERVAL, unflushed (the database's next flush
//!      carries it: rescanning a few blocks after a crash is harmless)
//!   2. each due to-do entry:
//!      getRequest (as this node) ── not named / nothing granted here ──> done (not_granted_here)
//!      open the vault (waits 1 s; held by an ingest -> deferred: no packaging for 5 s)
//!      patient link -> business key; no link / no data ──────────────> done (no_data)
//!      package(granted tags of this hospital) -> bundle id = H(request, hospital), rule ids
//!      seal_bundle (fresh key) -> PRE-seal the key to the requester's key (from the record)
//!      node_bundles[bundle id] = ServedBundle (flushed)   <- before anything goes on chain
//!      deliverBundleKey as this node, wait for the commit ──> done (delivered)
//!      "already delivered" ──> done (already_delivered); transient error ──> retry with backoff
//! ```
//!
//! The committer only broadcasts events it already made; the follower never blocks it (a slow
//! follower misses hints and scans the blocks instead). The to-do is bounded
//! ([`MAX_PENDING`]): when full, the follower stops advancing its cursor until entries are done.
//! A grant committed while the node was down, or before its bundle was delivered, is found
//! again from the cursor or the to-do. A bundle packaged but not yet delivered is delivered
//! again from `node_bundles` as it is (same bytes, same sealed key), never packaged twice.
//!
//! Logs name request and bundle ids and outcomes, never a patient or a business key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sphr_contracts::ContractError;
use sphr_contracts::consent::{
    self, AccessRecord, DeliverBundleKey, EVENT_ACCESS_GRANTED, GetRequest, PackageLineage,
};
use sphr_crypto::hash::Hash32;
use sphr_ledger::Ledger;
use sphr_types::{BlockData, Transaction};
use tokio::sync::broadcast::error::TryRecvError;
use tracing::{debug, info, warn};

use crate::endorser::EndorseError;
use crate::gateway::{Gateway, GatewayError};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::vault::{BundleStore, NodeVaultError, ServedBundle, VaultDb};
use sphr_vault::VaultError;

/// Node database tree of the follower: its cursor and to-do.
pub const TREE_GRANTS: &str = "node_grants";
/// Most grants waiting in the to-do; the follower stops scanning while it is full.
pub const MAX_PENDING: u64 = 100_000;
/// Most blocks scanned per round.
const BLOCKS_PER_ROUND: u64 = 256;
/// Most to-do entries handled per round.
const TODO_PER_ROUND: usize = 16;
/// Attempts before a grant is given up (failed, counted, logged): with the backoff capped at
/// a minute, about two hours of a network or a vault that cannot take the delivery.
pub const MAX_ATTEMPTS: u32 = 128;
/// Longest pause between attempts.
const MAX_BACKOFF_MS: u64 = 60_000;
/// Pause before trying again when the vault is held by an ingest.
const LOCKED_RETRY_MS: u64 = 5_000;
/// How long the node waits for the vault database when the CLI holds it (then it defers).
const NODE_OPEN_WAIT: Duration = Duration::from_secs(1);
/// How often the follower looks at the ledger when nothing wakes it.
const IDLE_TICK: Duration = Duration::from_millis(500);
/// How often a cursor that only passed blocks without grants is written. Under load the
/// cursor moves with every block; writing and flushing it each time cost each node a sled
/// flush (an fsync and a hand-off to sled's I/O threads) per block for nothing a restart
/// needs: the blocks after a stale cursor are scanned again, and a grant found twice is
/// handled once (its to-do key, then `already_delivered`).
const CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(1);
const CURSOR_KEY: &[u8] = b"cursor";
const TODO_PREFIX: &[u8] = b"todo";

/// A grant waiting to be handled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Todo {
    /// The block the grant committed in.
    block: u64,
    attempts: u32,
    next_try_ms: u64,
}

/// What became of a grant (the `result` label of `sphr_vault_grants_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    AlreadyDelivered,
    NotGrantedHere,
    NoData,
    Failed,
    /// Try again later (counts as an attempt).
    Retry,
    /// Try again later (the vault is busy; not an attempt).
    Deferred,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::AlreadyDelivered => "already_delivered",
            Outcome::NotGrantedHere => "not_granted_here",
            Outcome::NoData => "no_data",
            Outcome::Failed => "failed",
            Outcome::Retry => "retry",
            Outcome::Deferred => "deferred",
        }
    }
}

/// The follower's parts.
pub struct Bundler {
    /// The node's ledger (its database holds the to-do and the consumer zone).
    pub ledger: Arc<Ledger>,
    /// Submits and queries as this node.
    pub gateway: Arc<Gateway>,
    /// This node's identity (role `node`).
    pub identity: Identity,
    /// The network id.
    pub network_id: Hash32,
    /// The node's data directory (the vault database is under it).
    pub data_dir: PathBuf,
    /// The consumer zone.
    pub store: BundleStore,
    /// Metrics.
    pub metrics: Metrics,
}

struct State {
    b: Bundler,
    grants: sled::Tree,
    org: String,
    vault_path: PathBuf,
    pending: u64,
    /// Blocks from this number on have their hints complete (once an event of that block or
    /// a later one has arrived: events come in block order).
    hints_from: u64,
    /// The highest block an event arrived for.
    seen_upto: u64,
    /// The vault was found held (an ingest): no packaging before this time (Unix ms).
    vault_busy_until: u64,
    /// block -> positions of VALID consent txs that emitted accessGranted.
    hints: BTreeMap<u64, BTreeSet<u32>>,
    /// The last block scanned (what `CURSOR_KEY` holds once saved).
    cursor: u64,
    /// When the cursor was last written.
    cursor_saved_at: std::time::Instant,
}

/// The last block a scan may reach: the height, unless commit events are coming in (hints
/// complete from `hints_from`, an event seen for `seen_upto` at or after it) and the scan is
/// not one of the idle tick's; then no further than the last block an event came for.
fn scan_upto(to_height: bool, height: u64, seen_upto: u64, hints_from: u64) -> u64 {
    if to_height || seen_upto < hints_from {
        height
    } else {
        height.min(seen_upto)
    }
}

/// The cursor saved in the follower's tree (0: nothing scanned yet).
fn read_cursor(grants: &sled::Tree) -> Result<u64, sled::Error> {
    Ok(grants
        .get(CURSOR_KEY)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

fn todo_key(request_id: &Hash32) -> Vec<u8> {
    [TODO_PREFIX, request_id.as_bytes()].concat()
}

/// Starts the follower; it ends when the gateway stops accepting (node shutdown).
pub fn spawn(b: Bundler) -> Result<tokio::task::JoinHandle<()>, sled::Error> {
    let grants = b.ledger.db().open_tree(TREE_GRANTS)?;
    let pending = grants.scan_prefix(TODO_PREFIX).count() as u64;
    let cursor = read_cursor(&grants)?;
    let org = b.identity.cert.body.org.clone();
    let vault_path = crate::vault::vault_path(&b.data_dir);
    let mut events = b.gateway.notifier().subscribe();
    let mut stopping = b.gateway.stopping();
    let mut st = State {
        hints_from: b.ledger.height().saturating_add(1),
        b,
        grants,
        org,
        vault_path,
        pending,
        seen_upto: 0,
        vault_busy_until: 0,
        hints: BTreeMap::new(),
        cursor,
        cursor_saved_at: std::time::Instant::now(),
    };
    st.b.metrics
        .vault_grants_pending
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    Ok(tokio::spawn(async move {
        // Scan to the ledger's height (not only to the last block an event came for): at
        // the start and whenever no event came for an idle tick.
        let mut to_height = true;
        loop {
            if *stopping.borrow() {
                break;
            }
            st.take_hints(&mut events);
            if let Err(e) = st.scan(to_height) {
                warn!(target: "sphr::vault", error = %e, "scanning blocks for grants failed; retrying");
            }
            to_height = false;
            let busy = st.work(&stopping).await;
            if busy {
                continue;
            }
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => st.hint(&ev),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => st.lagged(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep(IDLE_TICK).await;
                        to_height = true;
                    }
                },
                _ = stopping.changed() => {}
                _ = tokio::time::sleep(IDLE_TICK) => to_height = true,
            }
        }
        debug!(target: "sphr::vault", "grant follower stopped");
    }))
}

impl State {
    fn hint(&mut self, ev: &crate::api::model::CommitEvent) {
        self.seen_upto = self.seen_upto.max(ev.block);
        if ev.contract == consent::NAME
            && ev.code == "VALID"
            && ev.events.iter().any(|e| e == EVENT_ACCESS_GRANTED)
        {
            self.hints.entry(ev.block).or_default().insert(ev.position);
        }
    }

    /// Hints were lost: blocks up to the current height are scanned in full.
    fn lagged(&mut self) {
        self.hints_from = self.b.ledger.height().saturating_add(1);
    }

    fn take_hints(
        &mut self,
        events: &mut tokio::sync::broadcast::Receiver<crate::api::model::CommitEvent>,
    ) {
        loop {
            match events.try_recv() {
                Ok(ev) => self.hint(&ev),
                Err(TryRecvError::Lagged(_)) => self.lagged(),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
    }

    /// Request ids of the accessGranted events of block `n` (all VALID txs, or only `only`).
    fn grants_in(&self, n: u64, only: Option<&BTreeSet<u32>>) -> Vec<Hash32> {
        let mut out = Vec::new();
        let rec = match self.b.ledger.block(n) {
            Ok(Some(r)) => r,
            Ok(None) => return out,
            Err(e) => {
                warn!(target: "sphr::vault", block = n, error = %e, "could not read a block");
                return out;
            }
        };
        let BlockData::Batch(sb) = &rec.block.data else {
            return out;
        };
        let Ok(batch) = sb.decode_batch() else {
            return out;
        };
        for (i, raw) in batch.txs.iter().enumerate() {
            let pos = u32::try_from(i).unwrap_or(u32::MAX);
            if only.is_some_and(|o| !o.contains(&pos)) {
                continue;
            }
            if !rec.codes.get(i).is_some_and(|c| c.is_valid()) {
                continue;
            }
            let Ok(tx) = Transaction::from_bytes(raw) else {
                continue;
            };
            let Ok(p) = tx.signed_proposal.decode_proposal() else {
                continue;
            };
            if p.contract != consent::NAME {
                continue;
            }
            let Ok(resp) = tx.decode_response() else {
                continue;
            };
            for ev in resp.events {
                if ev.name == EVENT_ACCESS_GRANTED
                    && let Ok(id) = Hash32::from_slice(&ev.payload)
                {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Moves the cursor forward, adding the grants found to the to-do. While events come in
    /// (`to_height` false, hints complete), only up to the last block an event came for: the
    /// events of the blocks after it are on their way, and reading those blocks in full now
    /// would decode every transaction of most blocks under load. A block that has no events
    /// at all (no transaction verified) is passed once a later block's events arrive, or read
    /// at the next idle tick.
    fn scan(&mut self, to_height: bool) -> Result<(), sled::Error> {
        let cursor = self.cursor;
        let height = self.b.ledger.height();
        let upto = scan_upto(to_height, height, self.seen_upto, self.hints_from);
        let mut n = cursor;
        let mut batch = sled::Batch::default();
        let mut added = 0u64;
        while n < upto && n < cursor + BLOCKS_PER_ROUND && self.pending + added < MAX_PENDING {
            n += 1;
            // Hinted: only the txs the commit events named. A block whose events have not
            // arrived yet (or never will: no verified tx) is read in full.
            let found = if n >= self.hints_from && n <= self.seen_upto {
                match self.hints.get(&n) {
                    Some(pos) => self.grants_in(n, Some(pos)),
                    None => Vec::new(),
                }
            } else {
                self.grants_in(n, None)
            };
            for id in found {
                let key = todo_key(&id);
                if self.grants.contains_key(&key)? {
                    continue;
                }
                let todo = Todo {
                    block: n,
                    attempts: 0,
                    next_try_ms: 0,
                };
                let bytes = sphr_crypto::cbor::to_vec(&todo).unwrap_or_default();
                batch.insert(key, bytes);
                added += 1;
                debug!(target: "sphr::vault", request = %id, block = n, "grant queued");
            }
        }
        if n == cursor {
            return Ok(());
        }
        if added > 0 {
            // New to-do entries and the cursor past them: one batch, durable before the
            // follower works on them.
            batch.insert(CURSOR_KEY, &n.to_be_bytes());
            self.grants.apply_batch(batch)?;
            self.grants.flush()?;
            self.cursor_saved_at = std::time::Instant::now();
            self.pending += added;
            self.set_pending();
        } else if self.cursor_saved_at.elapsed() >= CURSOR_SAVE_INTERVAL {
            self.grants.insert(CURSOR_KEY, &n.to_be_bytes())?;
            self.cursor_saved_at = std::time::Instant::now();
        }
        self.cursor = n;
        self.hints = self.hints.split_off(&(n + 1));
        Ok(())
    }

    fn set_pending(&self) {
        self.b
            .metrics
            .vault_grants_pending
            .set(i64::try_from(self.pending).unwrap_or(i64::MAX));
    }

    /// Handles the due to-do entries; true if some were handled (look again at once).
    async fn work(&mut self, stopping: &tokio::sync::watch::Receiver<bool>) -> bool {
        let now = crate::now_ms();
        if now < self.vault_busy_until {
            return false;
        }
        let mut due = Vec::new();
        for item in self.grants.scan_prefix(TODO_PREFIX) {
            let Ok((k, v)) = item else {
                break;
            };
            let Some(id) = k
                .get(TODO_PREFIX.len()..)
                .and_then(|b| Hash32::from_slice(b).ok())
            else {
                continue;
            };
            let todo: Todo = match sphr_crypto::cbor::from_slice(&v, 1024) {
                Ok(t) => t,
                Err(_) => Todo {
                    block: 0,
                    attempts: 0,
                    next_try_ms: 0,
                },
            };
            if todo.next_try_ms <= now {
                due.push((id, todo));
                if due.len() >= TODO_PER_ROUND {
                    break;
                }
            }
        }
        if due.is_empty() {
            return false;
        }
        let mut progressed = false;
        for (id, todo) in due {
            if *stopping.borrow() {
                break;
            }
            let outcome = self.handle(&id).await;
            if outcome == Outcome::Deferred {
                self.vault_busy_until = crate::now_ms() + LOCKED_RETRY_MS;
            }
            self.b
                .metrics
                .vault_grants_total
                .with_label_values(&[outcome.label()])
                .inc();
            let key = todo_key(&id);
            let result = match outcome {
                Outcome::Retry | Outcome::Deferred => {
                    let attempts = if outcome == Outcome::Retry {
                        todo.attempts + 1
                    } else {
                        todo.attempts
                    };
                    if attempts >= MAX_ATTEMPTS {
                        warn!(target: "sphr::vault", request = %id, attempts, "giving up on a grant");
                        self.b
                            .metrics
                            .vault_grants_total
                            .with_label_values(&[Outcome::Failed.label()])
                            .inc();
                        self.remove(&key)
                    } else {
                        let wait = if outcome == Outcome::Deferred {
                            LOCKED_RETRY_MS
                        } else {
                            (1000u64 << attempts.min(16)).min(MAX_BACKOFF_MS)
                        };
                        let next = Todo {
                            block: todo.block,
                            attempts,
                            next_try_ms: crate::now_ms() + wait,
                        };
                        let bytes = sphr_crypto::cbor::to_vec(&next).unwrap_or_default();
                        self.grants
                            .insert(key, bytes)
                            .and_then(|_| self.grants.flush().map(|_| ()))
                    }
                }
                _ => {
                    progressed = true;
                    self.remove(&key)
                }
            };
            if let Err(e) = result {
                warn!(target: "sphr::vault", request = %id, error = %e, "could not update the grant to-do");
            }
            if outcome == Outcome::Deferred {
                break;
            }
        }
        progressed
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), sled::Error> {
        if self.grants.remove(key)?.is_some() {
            self.pending = self.pending.saturating_sub(1);
            self.set_pending();
        }
        self.grants.flush().map(|_| ())
    }

    async fn handle(&self, request_id: &Hash32) -> Outcome {
        let bundle_id = crate::vault::bundle_id(request_id, &self.org);
        match self.b.store.get(&bundle_id) {
            Ok(Some(served)) if served.delivered => return Outcome::AlreadyDelivered,
            Ok(Some(served)) => return self.deliver(served).await,
            Ok(None) => {}
            Err(e) => {
                warn!(target: "sphr::vault", request = %request_id, error = %e, "consumer zone unreadable");
                return Outcome::Retry;
            }
        }
        let record = match self.get_request(request_id).await {
            Ok(r) => r,
            Err(o) => return o,
        };
        let Some(grant) = record.decision.grant_of(&self.org).cloned() else {
            return Outcome::NotGrantedHere;
        };
        let consent::Decision::Granted {
            rule_ids,
            requester_pre_key,
            ..
        } = &record.decision
        else {
            return Outcome::NotGrantedHere;
        };
        let Some(pre_key) = requester_pre_key.clone() else {
            warn!(target: "sphr::vault", request = %request_id, "the requester has no PRE key to seal the bundle key to");
            return Outcome::Failed;
        };
        let mut rule_ids = rule_ids.clone();
        rule_ids.truncate(consent::MAX_LINEAGE_RULES);
        let path = self.vault_path.clone();
        let org = self.org.clone();
        let patient = record.patient.clone();
        let request = *request_id;
        let rules = rule_ids.clone();
        let packaged = tokio::task::spawn_blocking(move || {
            package(
                &path,
                &org,
                &patient,
                &request,
                &grant.tags,
                &rules,
                &pre_key,
            )
        })
        .await;
        let (sealed, sealed_key) = match packaged {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => return Outcome::NoData,
            Ok(Err(PackageError::Locked)) => {
                debug!(target: "sphr::vault", request = %request_id, "vault busy; grant deferred");
                return Outcome::Deferred;
            }
            Ok(Err(PackageError::Fatal(why))) => {
                warn!(target: "sphr::vault", request = %request_id, %why, "packaging failed for good");
                return Outcome::Failed;
            }
            Ok(Err(PackageError::Transient(why))) => {
                warn!(target: "sphr::vault", request = %request_id, %why, "packaging failed; will retry");
                return Outcome::Retry;
            }
            Err(e) => {
                warn!(target: "sphr::vault", request = %request_id, error = %e, "packaging task failed");
                return Outcome::Retry;
            }
        };
        let served = crate::vault::served_bundle(
            bundle_id,
            *request_id,
            &self.org,
            record.requester.clone(),
            record.requester_role,
            sealed,
            sealed_key,
            rule_ids,
        );
        if let Err(e) = self.b.store.put(&served) {
            warn!(target: "sphr::vault", request = %request_id, error = %e, "could not keep the sealed bundle");
            return Outcome::Retry;
        }
        info!(target: "sphr::vault", request = %request_id, bundle = %bundle_id,
              bytes = served.sealed.len(), "bundle packaged and sealed");
        self.deliver(served).await
    }

    async fn get_request(&self, request_id: &Hash32) -> Result<AccessRecord, Outcome> {
        let arg = sphr_crypto::cbor::to_vec(&GetRequest {
            request_id: *request_id,
        })
        .map_err(|_| Outcome::Failed)?;
        let (_, sp) = crate::client::make_proposal(
            &self.b.identity,
            self.b.network_id,
            consent::NAME,
            "getRequest",
            [arg],
        )
        .map_err(|_| Outcome::Retry)?;
        let gw = self.b.gateway.clone();
        let answer = tokio::task::spawn_blocking(move || gw.query(&sp))
            .await
            .map_err(|_| Outcome::Retry)?;
        match answer {
            Ok(bytes) => sphr_crypto::cbor::from_slice(&bytes, consent::MAX_ARG_BYTES * 16)
                .map_err(|_| {
                    warn!(target: "sphr::vault", request = %request_id, "an access record does not decode");
                    Outcome::Failed
                }),
            // Nodes of hospitals the request does not name may not read it.
            Err(GatewayError::Endorse(EndorseError::Contract(ContractError::Denied(_)))) => {
                Err(Outcome::NotGrantedHere)
            }
            Err(GatewayError::Endorse(EndorseError::Contract(ContractError::NotFound(_)))) => {
                Err(Outcome::Failed)
            }
            Err(e) => {
                debug!(target: "sphr::vault", request = %request_id, error = %e, "getRequest failed; will retry");
                Err(Outcome::Retry)
            }
        }
    }

    async fn deliver(&self, mut served: ServedBundle) -> Outcome {
        let req = DeliverBundleKey {
            request_id: served.request_id,
            hospital: served.hospital.clone(),
            bundle_id: served.bundle_id.to_hex(),
            sealed_key: served.sealed_key.clone(),
            bundle_hash: served.bundle_hash,
            lineage: PackageLineage {
                rule_ids: served.rule_ids.clone(),
                contributing_hospitals: vec![served.hospital.clone()],
            },
        };
        let Ok(arg) = sphr_crypto::cbor::to_vec(&req) else {
            return Outcome::Failed;
        };
        let Ok((_, sp)) = crate::client::make_proposal(
            &self.b.identity,
            self.b.network_id,
            consent::NAME,
            "deliverBundleKey",
            [arg],
        ) else {
            return Outcome::Retry;
        };
        let outcome = match self.b.gateway.submit(sp, true).await {
            Ok(out) => match out.committed {
                Some(c) if c.code.is_valid() => Outcome::Delivered,
                Some(c) => {
                    debug!(target: "sphr::vault", request = %served.request_id, code = c.code.as_str(), "deliverBundleKey invalid; will retry");
                    Outcome::Retry
                }
                None => Outcome::Retry,
            },
            Err(GatewayError::Endorse(EndorseError::Contract(ContractError::Refused(msg))))
                if msg.contains("already delivered") =>
            {
                Outcome::AlreadyDelivered
            }
            Err(GatewayError::Endorse(EndorseError::Contract(
                e @ (ContractError::Refused(_)
                | ContractError::Denied(_)
                | ContractError::BadArgs(_)
                | ContractError::NotFound(_)
                | ContractError::Limit(_)),
            ))) => {
                warn!(target: "sphr::vault", request = %served.request_id, error = %e, "deliverBundleKey refused");
                Outcome::Failed
            }
            Err(GatewayError::Stopped) => Outcome::Retry,
            Err(e) => {
                debug!(target: "sphr::vault", request = %served.request_id, error = %e, "deliverBundleKey failed; will retry");
                Outcome::Retry
            }
        };
        if matches!(outcome, Outcome::Delivered | Outcome::AlreadyDelivered) {
            served.delivered = true;
            if let Err(e) = self.b.store.put(&served) {
                warn!(target: "sphr::vault", bundle = %served.bundle_id, error = %e, "could not mark a bundle delivered");
            }
            if outcome == Outcome::Delivered {
                info!(target: "sphr::vault", request = %served.request_id, bundle = %served.bundle_id, "bundle key delivered");
            }
        }
        outcome
    }
}

/// A sealed bundle (CBOR) and its key sealed to the requester.
type Packaged = (Vec<u8>, Vec<u8>);

enum PackageError {
    Locked,
    Transient(String),
    Fatal(String),
}

/// Opens the vault, packages the granted tags of the linked patient, seals the bundle and seals
/// its key to the requester. `None`: this vault holds no data for the patient.
fn package(
    path: &std::path::Path,
    org: &str,
    patient: &consent::Identity,
    request_id: &Hash32,
    tags: &[String],
    rule_ids: &[Hash32],
    requester_pre_key: &ByteBuf,
) -> Result<Option<Packaged>, PackageError> {
    if !VaultDb::exists(path) {
        return Ok(None);
    }
    let vdb = match VaultDb::open(path, org, NODE_OPEN_WAIT) {
        Ok(v) => v,
        Err(NodeVaultError::Locked { .. }) => return Err(PackageError::Locked),
        Err(e) => return Err(PackageError::Transient(e.to_string())),
    };
    let Some(business_key) = vdb
        .patient_key(patient)
        .map_err(|e| PackageError::Transient(e.to_string()))?
    else {
        return Ok(None);
    };
    let vault = vdb.vault();
    if !vault
        .has_patient(&business_key)
        .map_err(|e| PackageError::Transient(e.to_string()))?
    {
        return Ok(None);
    }
    // Tags the vault cannot name select nothing here (the contract compares tags as bytes).
    let tags: Vec<&String> = tags
        .iter()
        .filter(|t| sphr_vault::normalise_tag(t).is_ok())
        .collect();
    let mut bundle = match vault.package(&business_key, &tags, &sphr_vault::SourceFilter::All) {
        Ok(b) => b,
        Err(e @ VaultError::BundleTooLarge { .. }) => {
            return Err(PackageError::Fatal(e.to_string()));
        }
        Err(VaultError::PatientNotFound) => return Ok(None),
        Err(e) => return Err(PackageError::Transient(e.to_string())),
    };
    drop(vdb);
    let bundle_id = crate::vault::bundle_id(request_id, org);
    bundle.id = bundle_id;
    bundle.rule_ids = rule_ids.iter().map(Hash32::to_hex).collect();
    let (sealed, key) =
        sphr_vault::seal_bundle(&bundle).map_err(|e| PackageError::Transient(e.to_string()))?;
    let sealed = sealed
        .to_bytes()
        .map_err(|e| PackageError::Fatal(e.to_string()))?;
    let hash = sphr_crypto::hash::sha256(&sealed);
    let pk = sphr_crypto::pre::PrePublicKey::from_bytes(requester_pre_key)
        .map_err(|e| PackageError::Fatal(format!("the requester's PRE key: {e}")))?;
    let aad = crate::vault::bundle_key_aad(request_id, org, &bundle_id.to_hex(), &hash);
    let sealed_key = sphr_crypto::pre::seal(&pk, &key, &aad)
        .map_err(|e| PackageError::Transient(e.to_string()))?;
    Ok(Some((sealed, sealed_key.to_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_stop_at_the_last_block_an_event_came_for_while_events_flow() {
        // Events complete from block 11, the last one for block 40, the ledger at 42: the
        // event-driven scan stops at 40 (the events of 41 and 42 are on their way)...
        assert_eq!(scan_upto(false, 42, 40, 11), 40);
        // ...the idle tick's goes to the height (blocks that have no events at all)...
        assert_eq!(scan_upto(true, 42, 40, 11), 42);
        // ...and so does any scan before an event came at or after `hints_from` (start,
        // after a lag), where blocks are read in full anyway.
        assert_eq!(scan_upto(false, 42, 0, 43), 42);
        assert_eq!(scan_upto(false, 42, 30, 43), 42);
        // Never past the height the scan read, even if an event for a later block came.
        assert_eq!(scan_upto(false, 42, 45, 11), 42);
    }
}
