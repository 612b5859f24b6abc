//! The block cutter: groups transactions (opaque byte strings) into batches, one per block.
//!
//! Pure: no clock, no I/O. The caller passes `now` and asks for [`BlockCutter::deadline`] to
//! know when to call [`BlockCutter::poll_timeout`]. Like Fabric's `blockcutter.Receiver`:
//!
//! ```text
//!  push(tx) ──> pending ──(len == max_tx)────────────────> batch
//!                  │  └──(pending bytes + tx > max_bytes)─> batch (pending), tx starts the next
//!                  └──(now >= first tx time + batch_timeout)── poll_timeout ──> batch
//! ```
//!
//! Invariants (checked by the proptest below): every batch is non-empty, holds at most
//! `max_tx` transactions and at most `max_bytes` bytes unless it is a single larger
//! transaction; the concatenation of the batches and what is still pending is exactly the
//! input, in order.

use std::time::{Duration, Instant};

/// One batch of transactions, in order: the content of one block.
pub type Batch = Vec<Vec<u8>>;

/// Limits of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutterLimits {
    /// Most transactions in a batch (at least 1).
    pub max_tx: usize,
    /// Most bytes (sum of the transaction lengths) in a batch, unless the batch is a single
    /// larger transaction.
    pub max_bytes: usize,
    /// Longest time a batch stays open after its first transaction.
    pub batch_timeout: Duration,
}

/// Collects transactions and cuts batches by count, size or age.
#[derive(Debug)]
pub struct BlockCutter {
    limits: CutterLimits,
    pending: Batch,
    pending_bytes: usize,
    first_at: Option<Instant>,
}

impl BlockCutter {
    /// A cutter with these limits; `max_tx` and `max_bytes` of 0 are treated as 1.
    pub fn new(limits: CutterLimits) -> Self {
        let limits = CutterLimits {
            max_tx: limits.max_tx.max(1),
            max_bytes: limits.max_bytes.max(1),
            batch_timeout: limits.batch_timeout,
        };
        Self {
            limits,
            pending: Vec::new(),
            pending_bytes: 0,
            first_at: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> CutterLimits {
        self.limits
    }

    /// Adds one transaction received at `now`; returns the batches it completes (zero, one
    /// or two: the pending batch if the transaction does not fit in it, and the new batch if
    /// it is then full).
    pub fn push(&mut self, tx: Vec<u8>, now: Instant) -> Vec<Batch> {
        let mut out = Vec::new();
        let len = tx.len();
        if !self.pending.is_empty()
            && self.pending_bytes.saturating_add(len) > self.limits.max_bytes
        {
            out.extend(self.cut());
        }
        if self.pending.is_empty() {
            self.first_at = Some(now);
        }
        self.pending.push(tx);
        self.pending_bytes = self.pending_bytes.saturating_add(len);
        if self.pending.len() >= self.limits.max_tx || self.pending_bytes >= self.limits.max_bytes {
            out.extend(self.cut());
        }
        out
    }

    /// When the pending batch times out, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.first_at
            .map(|t| t.checked_add(self.limits.batch_timeout).unwrap_or(t))
    }

    /// Cuts the pending batch if its timeout has passed at `now`.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Batch> {
        match self.deadline() {
            Some(d) if now >= d => self.cut(),
            _ => None,
        }
    }

    /// Cuts the pending batch now, if it is not empty.
    pub fn cut(&mut self) -> Option<Batch> {
        if self.pending.is_empty() {
            return None;
        }
        self.pending_bytes = 0;
        self.first_at = None;
        Some(std::mem::take(&mut self.pending))
    }

    /// Takes every pending transaction out (for instance when leadership is lost, to forward
    /// them to the new leader), leaving the cutter empty.
    pub fn take_pending(&mut self) -> Batch {
        self.cut().unwrap_or_default()
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes pending.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(max_tx: usize, max_bytes: usize) -> CutterLimits {
        CutterLimits {
            max_tx,
            max_bytes,
            batch_timeout: Duration::from_millis(50),
        }
    }

    #[test]
    fn cuts_by_count() {
        let mut c = BlockCutter::new(limits(3, 1000));
        let now = Instant::now();
        assert!(c.push(vec![1], now).is_empty());
        assert!(c.push(vec![2], now).is_empty());
        let out = c.push(vec![3], now);
        assert_eq!(out, vec![vec![vec![1], vec![2], vec![3]]]);
        assert!(c.is_empty());
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn cuts_by_bytes_before_overflowing() {
        let mut c = BlockCutter::new(limits(100, 10));
        let now = Instant::now();
        assert!(c.push(vec![0; 6], now).is_empty());
        // 6 + 6 > 10: the pending batch is cut, the new tx starts the next one.
        let out = c.push(vec![1; 6], now);
        assert_eq!(out, vec![vec![vec![0; 6]]]);
        assert_eq!(c.len(), 1);
        assert_eq!(c.pending_bytes(), 6);
        // Exactly reaching max_bytes cuts.
        let out = c.push(vec![2; 4], now);
        assert_eq!(out, vec![vec![vec![1; 6], vec![2; 4]]]);
    }

    #[test]
    fn oversized_tx_is_isolated() {
        let mut c = BlockCutter::new(limits(100, 10));
        let now = Instant::now();
        assert!(c.push(vec![0; 3], now).is_empty());
        let out = c.push(vec![9; 50], now);
        assert_eq!(out, vec![vec![vec![0; 3]], vec![vec![9; 50]]]);
        assert!(c.is_empty());
    }

    #[test]
    fn cuts_by_timeout_from_first_tx() {
        let mut c = BlockCutter::new(limits(100, 1000));
        let t0 = Instant::now();
        assert_eq!(c.poll_timeout(t0), None);
        c.push(vec![1], t0);
        let t1 = t0 + Duration::from_millis(30);
        c.push(vec![2], t1);
        // The deadline counts from the first tx, not the last.
        assert_eq!(c.deadline(), Some(t0 + Duration::from_millis(50)));
        assert_eq!(c.poll_timeout(t0 + Duration::from_millis(49)), None);
        assert_eq!(
            c.poll_timeout(t0 + Duration::from_millis(50)),
            Some(vec![vec![1], vec![2]])
        );
        assert_eq!(c.deadline(), None);
        // The next batch gets a fresh deadline.
        let t2 = t0 + Duration::from_millis(80);
        c.push(vec![3], t2);
        assert_eq!(c.deadline(), Some(t2 + Duration::from_millis(50)));
    }

    #[test]
    fn zero_limits_are_clamped() {
        let mut c = BlockCutter::new(limits(0, 0));
        assert_eq!(c.limits().max_tx, 1);
        assert_eq!(c.push(vec![], Instant::now()), vec![vec![vec![]]]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(Vec<u8>),
        Tick(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Push),
            1 => (0u64..80).prop_map(Op::Tick),
        ]
    }

    proptest! {
        #[test]
        fn batches_keep_order_and_limits(
            max_tx in 1usize..8,
            max_bytes in 1usize..100,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut c = BlockCutter::new(limits(max_tx, max_bytes));
            let t0 = Instant::now();
            let mut now = t0;
            let mut input: Vec<Vec<u8>> = Vec::new();
            let mut batches: Vec<Batch> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(tx) => {
                        input.push(tx.clone());
                        batches.extend(c.push(tx, now));
                    }
                    Op::Tick(ms) => {
                        now += Duration::from_millis(ms);
                        batches.extend(c.poll_timeout(now));
                    }
                }
                // A timed-out batch never survives a poll (and a push does not move time).
                prop_assert!(c.deadline().is_none_or(|d| d > now));
                prop_assert!(c.len() < max_tx);
                prop_assert!(c.pending_bytes() < max_bytes || c.is_empty());
            }
            let rest = c.take_pending();
            prop_assert!(c.is_empty());
            for b in &batches {
                prop_assert!(!b.is_empty());
                prop_assert!(b.len() <= max_tx);
                let bytes: usize = b.iter().map(Vec::len).sum();
                prop_assert!(bytes <= max_bytes || b.len() == 1, "{} bytes in {} txs", bytes, b.len());
            }
            let mut out: Vec<Vec<u8>> = batches.into_iter().flatten().collect();
            out.extend(rest);
            prop_assert_eq!(out, input);
        }
    }
}
