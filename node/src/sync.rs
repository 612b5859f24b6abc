//! Catch-up: bringing the ledger to a height with blocks fetched from peers.
//!
//! ```text
//!  consenter behind a Raft snapshot ("blocks up to h, tip T"):
//!      restore_snapshot ──> CatchUp::to(h)      ──> fetch h'+1.. from peers ──> append_block
//!                                                     (each block re-validated, codes checked)
//!  node that is not a consenter:
//!      gossip Blocks ──> next block? append : fetch the gap ──> append_block
//!      every 500 ms with no news: ask a peer for what follows the tip
//! ```
//!
//! `append_block` checks the hash chain, the proposer's signature and every transaction again,
//! and that the codes a peer sent equal the ones this node computes: a lying peer cannot make
//! this node store anything it would not have committed itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sphr_crypto::hash::Hash32;
use sphr_ledger::{CommittedBlock, Ledger};
use sphr_types::BlockRecord;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::gateway::CommitNotifier;
use crate::metrics::Metrics;
use crate::p2p::Peers;

/// How long a catch-up keeps trying before it gives up.
pub const CATCH_UP_DEADLINE: Duration = Duration::from_secs(120);

/// Tells waiting clients and metrics about a block appended by sync.
pub fn announce(block: &CommittedBlock, notifier: &CommitNotifier, metrics: &Metrics) {
    let txs: Vec<_> = block
        .txs
        .iter()
        .filter(|t| t.id_verified)
        .filter_map(|t| {
            Some((
                t.tx_id?,
                t.position,
                t.code,
                t.contract.clone().unwrap_or_default(),
                t.events.iter().map(|e| e.name.clone()).collect(),
            ))
        })
        .collect();
    for t in &block.txs {
        metrics
            .ledger_txs_committed_total
            .with_label_values(&[t.code.as_str()])
            .inc();
    }
    metrics.ledger_blocks_committed_total.inc();
    metrics
        .ledger_block_validation_duration_seconds
        .observe(block.validation_duration.as_secs_f64());
    metrics
        .ledger_block_commit_duration_seconds
        .observe(block.commit_duration.as_secs_f64());
    metrics
        .ledger_height
        .set(i64::try_from(block.number).unwrap_or(i64::MAX));
    notifier.notify(block.number, &txs);
}

/// Appends fetched records in order; returns how many were appended. Stops at the first
/// record that does not fit (the caller fetches again from another peer).
fn append_all(
    ledger: &Ledger,
    records: &[BlockRecord],
    max_raft_index: Option<u64>,
    notifier: &CommitNotifier,
    metrics: &Metrics,
) -> Result<usize, String> {
    let mut n = 0;
    for rec in records {
        if rec.block.header.number != ledger.height().saturating_add(1) {
            continue;
        }
        if let Some(max) = max_raft_index
            && rec.raft_index > max
        {
            return Err(format!(
                "block {} claims raft index {} beyond the snapshot's {max}",
                rec.block.header.number, rec.raft_index
            ));
        }
        let committed = ledger.append_block(rec).map_err(|e| e.to_string())?;
        announce(&committed, notifier, metrics);
        n += 1;
    }
    Ok(n)
}

/// What a blocking catch-up works with.
pub struct CatchUp<'a> {
    /// The runtime the p2p requests run on.
    pub rt: &'a tokio::runtime::Handle,
    /// The ledger to bring forward.
    pub ledger: &'a Ledger,
    /// Where the blocks come from.
    pub peers: &'a Peers,
    /// Waiting clients.
    pub notifier: &'a CommitNotifier,
    /// Metrics.
    pub metrics: &'a Metrics,
}

impl CatchUp<'_> {
    /// Brings the ledger to `target` height with blocks from peers, then checks the tip hash.
    /// Blocks the calling thread (the Raft thread, from `restore_snapshot`) on the runtime.
    pub fn to(&self, target: u64, target_hash: Hash32, max_raft_index: u64) -> Result<(), String> {
        let ledger = self.ledger;
        let start = Instant::now();
        let from_height = ledger.height();
        let mut last_err = String::new();
        while ledger.height() < target {
            if start.elapsed() > CATCH_UP_DEADLINE {
                return Err(format!(
                    "could not fetch blocks {}..={target} within {:?}: {last_err}",
                    ledger.height() + 1,
                    CATCH_UP_DEADLINE
                ));
            }
            let next = ledger.height() + 1;
            match self.rt.block_on(self.peers.fetch_blocks(next, target)) {
                Ok(records) => match append_all(
                    ledger,
                    &records,
                    Some(max_raft_index),
                    self.notifier,
                    self.metrics,
                ) {
                    Ok(0) => last_err = "peers sent no usable block".into(),
                    Ok(_) => continue,
                    Err(e) => last_err = e,
                },
                Err(e) => last_err = e,
            }
            debug!(target: "sphr::sync", next, error = %last_err, "catch-up retry");
            std::thread::sleep(Duration::from_millis(200));
        }
        if ledger.height() == target && ledger.tip().hash() != target_hash {
            return Err(format!(
                "after catching up to block {target} the tip hash is {} but the snapshot says {target_hash}",
                ledger.tip().hash()
            ));
        }
        info!(target: "sphr::sync", from = from_height, to = target, "caught up from peers");
        Ok(())
    }
}

/// Keeps a node that is not a consenter in step: blocks by gossip, gaps by range fetch.
pub async fn follow(
    ledger: Arc<Ledger>,
    peers: Peers,
    mut gossip: mpsc::Receiver<BlockRecord>,
    notifier: Arc<CommitNotifier>,
    metrics: Metrics,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut pending: Vec<BlockRecord> = Vec::new();
        tokio::select! {
            rec = gossip.recv() => match rec {
                Some(r) => pending.push(r),
                None => return,
            },
            _ = tick.tick() => {}
        }
        let height = ledger.height();
        let next_gossiped = pending.first().map(|r| r.block.header.number);
        if next_gossiped != Some(height + 1) {
            // A gap, or a quiet tick: ask a peer for what follows our tip.
            match peers.fetch_blocks(height + 1, height + 256).await {
                Ok(records) => pending = records,
                Err(e) => {
                    if next_gossiped.is_some() {
                        warn!(target: "sphr::sync", error = %e, "cannot fill the gap before a gossiped block");
                    }
                    continue;
                }
            }
        }
        let l = ledger.clone();
        let n = notifier.clone();
        let m = metrics.clone();
        let result =
            tokio::task::spawn_blocking(move || append_all(&l, &pending, None, &n, &m)).await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(target: "sphr::sync", error = %e, "a fetched block was refused"),
            Err(e) => warn!(target: "sphr::sync", error = %e, "sync task failed"),
        }
    }
}
