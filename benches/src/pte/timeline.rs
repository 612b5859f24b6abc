//! The run over time: sends, commits and end-to-end latency per interval, to tell a tail that
//! comes from a stall (one interval's p99 far above the others, or commits that stop) from one
//! that grows over the run (a backlog, a database that slows as it grows).
//!
//! ```text
//!  interval  [0, w)   [w, 2w)   [2w, 3w) ...      w = 1 s, doubled when the run outgrows
//!  sent      txs sent in it                         MAX_SLOTS intervals (pairs merged)
//!  done      txs that completed in it (committed valid, or failed)
//!  latency   end-to-end latency of the txs *sent* in it, as a histogram
//! ```
//!
//! Memory is bounded whatever the run length: at most [`MAX_SLOTS`] intervals per process,
//! each with one [`Histogram`].

use serde::Serialize;
use std::time::Duration;

use super::stats::Histogram;

/// Intervals kept; a longer run doubles the interval width and merges pairs.
pub const MAX_SLOTS: usize = 120;
/// The first interval width, ms.
pub const FIRST_WIDTH_MS: u64 = 1000;

/// One interval's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Slot {
    sent: u64,
    committed: u64,
    failed: u64,
    latency: Histogram,
}

impl Slot {
    fn absorb(&mut self, other: &Slot) {
        self.sent += other.sent;
        self.committed += other.committed;
        self.failed += other.failed;
        self.latency.merge(&other.latency);
    }
}

/// Sends, completions and latency per interval since the run's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    width_ms: u64,
    slots: Vec<Slot>,
}

impl Default for Timeline {
    fn default() -> Timeline {
        Timeline::new()
    }
}

/// One interval as reported (`timeline` in the JSON report).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimelineRow {
    /// Start of the interval, seconds since the run's start.
    pub from_s: f64,
    /// End of the interval, seconds since the run's start.
    pub to_s: f64,
    /// Transactions sent in the interval.
    pub sent: u64,
    /// Transactions committed valid in the interval (by completion time).
    pub committed: u64,
    /// Transactions that failed or timed out in the interval (by completion time).
    pub failed: u64,
    /// Median end-to-end latency of the txs sent in the interval that committed, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile of the same, ms.
    pub p99_ms: Option<f64>,
    /// Largest of the same, ms.
    pub max_ms: Option<f64>,
}

impl Timeline {
    /// An empty timeline with 1 s intervals.
    pub fn new() -> Timeline {
        Timeline {
            width_ms: FIRST_WIDTH_MS,
            slots: Vec::new(),
        }
    }

    /// The interval width, ms.
    pub fn width_ms(&self) -> u64 {
        self.width_ms
    }

    /// The slot holding `at` (time since the run's start), widening intervals as needed.
    fn slot(&mut self, at: Duration) -> &mut Slot {
        let ms = u64::try_from(at.as_millis()).unwrap_or(u64::MAX);
        while ms / self.width_ms >= MAX_SLOTS as u64 {
            self.widen();
        }
        let i = (ms / self.width_ms) as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, Slot::default);
        }
        &mut self.slots[i]
    }

    /// Doubles the interval width: slots 2k and 2k+1 become slot k.
    fn widen(&mut self) {
        let old = std::mem::take(&mut self.slots);
        let mut merged: Vec<Slot> = Vec::with_capacity(old.len().div_ceil(2));
        for (i, s) in old.into_iter().enumerate() {
            if i % 2 == 0 {
                merged.push(s);
            } else if let Some(last) = merged.last_mut() {
                last.absorb(&s);
            }
        }
        self.slots = merged;
        self.width_ms = self.width_ms.saturating_mul(2);
    }

    /// A transaction sent at `sent` (since the run's start).
    pub fn sent(&mut self, sent: Duration) {
        self.slot(sent).sent += 1;
    }

    /// A transaction sent at `sent` that committed valid after `latency`.
    pub fn committed(&mut self, sent: Duration, latency: Duration) {
        self.slot(sent).latency.record(latency);
        self.slot(sent.saturating_add(latency)).committed += 1;
    }

    /// A transaction that failed (or timed out) at `done` (since the run's start).
    pub fn failed(&mut self, done: Duration) {
        self.slot(done).failed += 1;
    }

    /// Adds another timeline (another process of the same run, same start).
    pub fn merge(&mut self, other: &Timeline) {
        let mut other = other.clone();
        while self.width_ms < other.width_ms {
            self.widen();
        }
        while other.width_ms < self.width_ms {
            other.widen();
        }
        if self.slots.len() < other.slots.len() {
            self.slots.resize_with(other.slots.len(), Slot::default);
        }
        for (a, b) in self.slots.iter_mut().zip(&other.slots) {
            a.absorb(b);
        }
    }

    /// The intervals from the first to the last with anything in it.
    pub fn rows(&self) -> Vec<TimelineRow> {
        let w = self.width_ms as f64 / 1000.0;
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let l = s.latency.summary();
                TimelineRow {
                    from_s: i as f64 * w,
                    to_s: (i + 1) as f64 * w,
                    sent: s.sent,
                    committed: s.committed,
                    failed: s.failed,
                    p50_ms: l.map(|l| l.p50),
                    p99_ms: l.map(|l| l.p99),
                    max_ms: l.map(|l| l.max),
                }
            })
            .collect()
    }
}

/// The timeline as a text table, one line per interval.
pub fn table(rows: &[TimelineRow]) -> String {
    let mut s = String::from(
        "timeline (latency of the txs sent in each interval; commits and failures by completion)\n",
    );
    s.push_str("    from_s    to_s     sent  committed  failed   p50_ms   p99_ms   max_ms\n");
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    for r in rows {
        s.push_str(&format!(
            "    {:>6.1}  {:>6.1}  {:>7}  {:>9}  {:>6}  {:>7}  {:>7}  {:>7}\n",
            r.from_s,
            r.to_s,
            r.sent,
            r.committed,
            r.failed,
            ms(r.p50_ms),
            ms(r.p99_ms),
            ms(r.max_ms)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn latency_goes_to_the_send_interval_and_the_commit_to_its_own() {
        let mut t = Timeline::new();
        t.sent(ms(900));
        t.committed(ms(900), ms(300)); // sent in [0,1), committed in [1,2)
        t.sent(ms(1_100));
        t.committed(ms(1_100), ms(20));
        t.failed(ms(3_500));
        let rows = t.rows();
        assert_eq!(rows.len(), 4);
        assert_eq!((rows[0].sent, rows[0].committed), (1, 0));
        assert_eq!(rows[0].p50_ms, Some(300.0));
        assert_eq!((rows[1].sent, rows[1].committed), (1, 2));
        assert_eq!(rows[1].max_ms, Some(20.0));
        assert_eq!((rows[2].sent, rows[2].p99_ms), (0, None));
        assert_eq!(rows[3].failed, 1);
        assert_eq!((rows[3].from_s, rows[3].to_s), (3.0, 4.0));
    }

    #[test]
    fn a_long_run_widens_intervals_and_keeps_every_count() {
        let mut t = Timeline::new();
        // 10 minutes, one tx every 100 ms, each 50 ms.
        for i in 0..6_000u64 {
            t.sent(ms(i * 100));
            t.committed(ms(i * 100), ms(50));
        }
        assert!(t.slots.len() <= MAX_SLOTS);
        assert_eq!(t.width_ms(), 8_000); // 600 s needs 5 s intervals; widths double from 1 s
        let rows = t.rows();
        assert_eq!(rows.iter().map(|r| r.sent).sum::<u64>(), 6_000);
        assert_eq!(rows.iter().map(|r| r.committed).sum::<u64>(), 6_000);
        assert_eq!(rows[0].sent, 80);
        assert_eq!(rows[0].p99_ms, Some(50.0));
    }

    #[test]
    fn merging_timelines_of_different_widths_keeps_every_count() {
        let mut a = Timeline::new();
        a.sent(ms(500));
        a.committed(ms(500), ms(10));
        let mut b = Timeline::new();
        b.sent(ms(200_000)); // past 120 s: b is 2 s wide
        b.failed(ms(201_000));
        b.sent(ms(1_500));
        b.committed(ms(1_500), ms(30));
        a.merge(&b);
        assert_eq!(a.width_ms(), 2_000);
        let rows = a.rows();
        assert_eq!(rows[0].sent, 2); // [0, 2 s): 500 ms from a, 1.5 s from b
        assert_eq!(rows[0].committed, 2);
        assert_eq!(rows[0].max_ms, Some(30.0));
        assert_eq!(rows[100].sent, 1);
        assert_eq!(rows[100].failed, 1);
        assert_eq!(rows.iter().map(|r| r.sent).sum::<u64>(), 3);
    }

    #[test]
    fn the_table_has_a_line_per_interval() {
        let mut t = Timeline::new();
        t.sent(ms(0));
        t.committed(ms(0), ms(12));
        t.failed(ms(1_000));
        let text = table(&t.rows());
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("12.0"), "{text}");
    }
}
