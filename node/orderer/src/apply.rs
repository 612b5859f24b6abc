//! The apply thread: committed entries go to the [`Applier`] on a thread of their own, so
//! that the Raft thread keeps cutting, replicating and persisting while a block is applied.
//!
//! ```text
//!  Raft thread (driver)                          apply thread ("sphr-apply-<id>")
//!    committed entries ── Job::Entries ──┐
//!    every snapshot_interval: Snapshot ──┼─> bounded queue (apply_queue jobs) ──> in order:
//!    snapshot from the leader: Restore ──┘     Entries:  Applier::apply each (no-ops skipped)
//!                                                Snapshot: Applier::snapshot_data ─> snapshots
//!    try_recv each turn <── snapshots ─────────  Restore:  Applier::restore_snapshot ─> reply
//!    status: applied, entries applied, failure <── ApplyState (atomics, set after each job)
//! ```
//!
//! Why: applying a block (validation, the ledger's write and flush) took the Raft thread
//! 10 to 75 ms a block on a loaded machine, and nothing else happened on that thread
//! meanwhile, so the next block was cut only after it: the slower a block applied, the bigger
//! the next one, the longer it applied. At 2,000 tx/s on the 4-org testnet this fell into a
//! state of 8 blocks a second of about 250 transactions each with 450 ms of latency, and
//! stayed there. With the thread apart, blocks are cut on the batch timeout whatever applying
//! costs, and applying block n overlaps replicating block n+1.
//!
//! Order and durability are unchanged: jobs run in the order the driver sends them (which is
//! Raft's commit order), a job is sent only after the entries' commit index is stored, a
//! snapshot's data is taken after every entry before it is applied, and a restore waits for
//! everything queued before it. When the queue is full the Raft thread waits (back-pressure,
//! as when it applied itself). An applier error or panic stops the apply thread; the driver
//! sees it at its next turn and stops with that error. On shutdown the apply thread applies
//! what is queued, then exits, and the driver joins it.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use raft::eraftpb::{Entry, EntryType};

use crate::api::{Applier, ApplyError};
use crate::driver::panic_message;

/// Why the apply thread stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyFailure {
    /// The applier returned an error.
    #[error("applier: {0}")]
    Apply(#[from] ApplyError),
    /// `applied_index()` did not move to the entry (or snapshot) just applied.
    #[error("applier contract broken: applied_index() is {got} after applying {want}")]
    Contract { want: u64, got: u64 },
    /// The applier panicked.
    #[error("applier panicked: {0}")]
    Panic(String),
    /// The apply thread is gone without saying why (it could not be spawned, or died).
    #[error("apply thread gone")]
    Gone,
}

enum Job {
    Entries(Vec<Entry>),
    Snapshot,
    Restore {
        index: u64,
        term: u64,
        data: Vec<u8>,
        reply: SyncSender<()>,
    },
}

/// What the apply thread publishes (read live by `OrdererHandle::status`).
#[derive(Default)]
pub(crate) struct ApplyState {
    /// Last index applied (a no-op passed over counts), or restored.
    applied: AtomicU64,
    /// Entries handed to `Applier::apply`.
    entries_applied: AtomicU64,
    /// Set once, when the thread stops on an error.
    failure: Mutex<Option<ApplyFailure>>,
}

impl ApplyState {
    /// The last index applied (or restored).
    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Entries handed to `Applier::apply` so far.
    pub(crate) fn entries_applied(&self) -> u64 {
        self.entries_applied.load(Ordering::Relaxed)
    }

    fn fail(&self, f: ApplyFailure) {
        let mut slot = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(f);
        }
    }
}

/// The driver's end of the apply thread.
pub(crate) struct ApplyThread {
    jobs: Option<SyncSender<Job>>,
    snapshots: Receiver<(u64, Vec<u8>)>,
    state: Arc<ApplyState>,
    thread: Option<JoinHandle<()>>,
}

impl ApplyThread {
    /// Starts the thread with `applier`, which has applied (or restored) up to `applied`.
    pub(crate) fn start<A: Applier>(
        id: u64,
        applier: A,
        applied: u64,
        queue: usize,
    ) -> std::io::Result<ApplyThread> {
        let (jobs, rx) = mpsc::sync_channel(queue.max(1));
        // At most one snapshot is asked for at a time; 2 leaves room for one in hand.
        let (snap_tx, snapshots) = mpsc::sync_channel(2);
        let state = Arc::new(ApplyState::default());
        state.applied.store(applied, Ordering::Release);
        let worker = Worker {
            applier,
            applied,
            state: Arc::clone(&state),
            snapshots: snap_tx,
        };
        let thread = std::thread::Builder::new()
            .name(format!("sphr-apply-{id}"))
            .spawn(move || {
                let span = tracing::info_span!(target: "sphr::orderer", "apply", id);
                let _enter = span.enter();
                worker.run(rx);
            })?;
        Ok(ApplyThread {
            jobs: Some(jobs),
            snapshots,
            state,
            thread: Some(thread),
        })
    }

    /// What the thread publishes.
    pub(crate) fn state(&self) -> Arc<ApplyState> {
        Arc::clone(&self.state)
    }

    /// The error the thread stopped on, if it did.
    pub(crate) fn take_failure(&self) -> Option<ApplyFailure> {
        self.state
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn send(&self, job: Job) -> Result<(), ApplyFailure> {
        let sent = match &self.jobs {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.take_failure().unwrap_or(ApplyFailure::Gone))
        }
    }

    /// Queues committed entries (waits while the queue is full).
    pub(crate) fn apply(&self, entries: Vec<Entry>) -> Result<(), ApplyFailure> {
        if entries.is_empty() {
            return Ok(());
        }
        self.send(Job::Entries(entries))
    }

    /// Asks for the snapshot data after everything queued so far; it comes back through
    /// [`ApplyThread::try_snapshot`].
    pub(crate) fn request_snapshot(&self) -> Result<(), ApplyFailure> {
        self.send(Job::Snapshot)
    }

    /// A requested snapshot, once taken: (index it covers, data).
    pub(crate) fn try_snapshot(&self) -> Option<(u64, Vec<u8>)> {
        self.snapshots.try_recv().ok()
    }

    /// Restores a snapshot after everything queued so far; waits for it.
    pub(crate) fn restore(&self, index: u64, term: u64, data: Vec<u8>) -> Result<(), ApplyFailure> {
        let (reply, done) = mpsc::sync_channel(1);
        self.send(Job::Restore {
            index,
            term,
            data,
            reply,
        })?;
        done.recv()
            .map_err(|_| self.take_failure().unwrap_or(ApplyFailure::Gone))
    }

    /// Lets the thread apply what is queued, then joins it.
    pub(crate) fn finish(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!(target: "sphr::orderer", "apply thread panicked");
        }
    }
}

impl Drop for ApplyThread {
    fn drop(&mut self) {
        self.finish();
    }
}

struct Worker<A> {
    applier: A,
    applied: u64,
    state: Arc<ApplyState>,
    snapshots: SyncSender<(u64, Vec<u8>)>,
}

impl<A: Applier> Worker<A> {
    fn run(mut self, jobs: Receiver<Job>) {
        // Ends when the driver drops its sender (after everything queued) or on an error.
        while let Ok(job) = jobs.recv() {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.handle(job)))
                .unwrap_or_else(|p| Err(ApplyFailure::Panic(panic_message(&*p))));
            if let Err(e) = outcome {
                tracing::error!(target: "sphr::orderer", error = %e, applied = self.applied,
                    "apply thread stopped on an error");
                self.state.fail(e);
                return;
            }
        }
    }

    fn handle(&mut self, job: Job) -> Result<(), ApplyFailure> {
        match job {
            Job::Entries(entries) => {
                for e in entries {
                    self.entry(&e)?;
                }
            }
            Job::Snapshot => {
                let data = self.applier.snapshot_data();
                // The driver asks for one at a time; if it is gone, nobody wants it.
                let _ = self.snapshots.try_send((self.applied, data));
            }
            Job::Restore {
                index,
                term,
                data,
                reply,
            } => {
                self.applier.restore_snapshot(index, term, &data)?;
                let got = self.applier.applied_index();
                if got != index {
                    return Err(ApplyFailure::Contract { want: index, got });
                }
                self.applied = index;
                self.state.applied.store(index, Ordering::Release);
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    fn entry(&mut self, e: &Entry) -> Result<(), ApplyFailure> {
        if e.index <= self.applied {
            return Ok(()); // raft does not hand these out again; defensive
        }
        match e.get_entry_type() {
            EntryType::EntryNormal if !e.data.is_empty() => {
                self.applier.apply(e.index, e.term, &e.data)?;
                let got = self.applier.applied_index();
                if got != e.index {
                    return Err(ApplyFailure::Contract { want: e.index, got });
                }
                self.state.entries_applied.fetch_add(1, Ordering::Relaxed);
            }
            EntryType::EntryNormal => {} // leader no-op
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                // Never proposed here (static membership, proposals from peers refused).
                tracing::error!(target: "sphr::orderer", index = e.index,
                    "ignoring a committed conf change: membership is static");
            }
        }
        self.applied = e.index;
        self.state.applied.store(e.index, Ordering::Release);
        Ok(())
    }
}
