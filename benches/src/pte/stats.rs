//! Latency statistics: a bounded log-linear histogram (exact below about 1 ms, within 0.2 %
//! above), its percentiles, and the PTE-style report built from the processes' counts.
//!
//! ```text
//!  value (us)     bucket
//!  0 .. 1023      one bucket per microsecond (exact)
//!  >= 1024        512 buckets per power of two: relative width 1/512 (<= 0.2 %)
//! ```
//!
//! Memory is bounded whatever the run length: at most [`MAX_BUCKETS`] counters per histogram.
//! Percentiles use the nearest-rank definition: p is the smallest recorded value with at least
//! p % of the values at or below it; for values >= 1024 us the bucket's midpoint is reported.

use serde::Serialize;

/// Values below this are kept exactly, one bucket per microsecond.
const LINEAR: u64 = 1024;
/// Buckets per power of two above [`LINEAR`].
const SUB: u64 = 512;
/// log2(SUB).
const SUB_BITS: u32 = 9;
/// Largest value kept (about 12.7 days in microseconds); larger ones are clamped to it.
pub const MAX_VALUE_US: u64 = (1 << 40) - 1;
/// Buckets of a full histogram.
pub const MAX_BUCKETS: usize = (LINEAR + (40 - 10) * SUB) as usize;

/// The bucket of a value in microseconds.
pub fn bucket_of(us: u64) -> usize {
    let v = us.min(MAX_VALUE_US);
    if v < LINEAR {
        return v as usize;
    }
    // v in [2^k, 2^(k+1)), k >= 10: keep the top SUB_BITS + 1 bits.
    let k = 63 - v.leading_zeros();
    let shift = k - SUB_BITS;
    let mantissa = (v >> shift) - SUB; // 0 .. SUB-1
    (LINEAR + u64::from(k - 10) * SUB + mantissa) as usize
}

/// The smallest and largest value of a bucket, in microseconds.
pub fn bucket_bounds(index: usize) -> (u64, u64) {
    let i = index as u64;
    if i < LINEAR {
        return (i, i);
    }
    let k = (i - LINEAR) / SUB + 10;
    let mantissa = (i - LINEAR) % SUB + SUB;
    let shift = k - u64::from(SUB_BITS);
    let low = mantissa << shift;
    let high = low + (1u64 << shift) - 1;
    (low, high)
}

/// Latencies of one kind, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum_us: u128,
    min_us: u64,
    max_us: u64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Records one value.
    pub fn record_us(&mut self, us: u64) {
        let us = us.min(MAX_VALUE_US);
        let b = bucket_of(us);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        if self.count == 0 || us < self.min_us {
            self.min_us = us;
        }
        if us > self.max_us {
            self.max_us = us;
        }
        self.count += 1;
        self.sum_us += u128::from(us);
    }

    /// Records a duration.
    pub fn record(&mut self, d: std::time::Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds another histogram's values.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        if self.count == 0 || other.min_us < self.min_us {
            self.min_us = other.min_us;
        }
        self.max_us = self.max_us.max(other.max_us);
        self.count += other.count;
        self.sum_us += other.sum_us;
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The nearest-rank percentile `p` (0 < p <= 100), in microseconds; `None` if empty.
    /// Exact below 1024 us; above, the midpoint of the bucket, clamped to [min, max].
    pub fn percentile_us(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let p = if p.is_finite() {
            p.clamp(0.0, 100.0)
        } else {
            100.0
        };
        // rank = ceil(p/100 * n), at least 1.
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let rank = rank.min(self.count);
        if rank == 1 {
            return Some(self.min_us);
        }
        if rank == self.count {
            return Some(self.max_us);
        }
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bucket_bounds(i);
                let mid = low + (high - low) / 2;
                return Some(mid.clamp(self.min_us, self.max_us));
            }
        }
        Some(self.max_us)
    }

    /// Min, max, average and percentiles in milliseconds; `None` if empty.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.count == 0 {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let pct = |p: f64| self.percentile_us(p).map(ms).unwrap_or(0.0);
        Some(LatencySummary {
            count: self.count,
            total_ms: self.sum_us as f64 / 1000.0,
            min: ms(self.min_us),
            avg: self.sum_us as f64 / self.count as f64 / 1000.0,
            p50: pct(50.0),
            p95: pct(95.0),
            p99: pct(99.0),
            max: ms(self.max_us),
        })
    }
}

/// A latency summary in milliseconds (the JSON object `{count, total_ms, min, avg, p50, p95,
/// p99, max}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Values.
    pub count: u64,
    /// Sum of the values, ms (PTE's "total time").
    pub total_ms: f64,
    /// Smallest, ms.
    pub min: f64,
    /// Mean, ms.
    pub avg: f64,
    /// Median, ms.
    pub p50: f64,
    /// 95th percentile, ms.
    pub p95: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// Largest, ms.
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest-rank percentile of exact values, for comparison.
    fn exact(sorted: &[u64], p: f64) -> u64 {
        let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
        sorted[rank.min(sorted.len()) - 1]
    }

    #[test]
    fn buckets_are_exact_below_1024_and_tight_above() {
        for v in 0..LINEAR {
            assert_eq!(bucket_of(v), v as usize);
            assert_eq!(bucket_bounds(v as usize), (v, v));
        }
        let mut prev = bucket_of(LINEAR - 1);
        for v in [
            1024u64,
            1025,
            2047,
            2048,
            4095,
            10_000,
            123_456,
            9_999_999,
            MAX_VALUE_US,
        ] {
            let b = bucket_of(v);
            let (low, high) = bucket_bounds(b);
            assert!(low <= v && v <= high, "{v} not in [{low}, {high}]");
            assert!(
                (high - low) as f64 <= low as f64 / 512.0,
                "{v}: [{low}, {high}]"
            );
            assert!(b >= prev);
            prev = b;
            assert!(b < MAX_BUCKETS);
        }
        // Buckets are contiguous and increasing.
        for i in (LINEAR as usize)..(LINEAR as usize + 3000) {
            assert_eq!(bucket_bounds(i).1 + 1, bucket_bounds(i + 1).0);
            assert_eq!(bucket_of(bucket_bounds(i).0), i);
            assert_eq!(bucket_of(bucket_bounds(i).1), i);
        }
        assert_eq!(bucket_of(u64::MAX), bucket_of(MAX_VALUE_US));
        assert_eq!(bucket_of(MAX_VALUE_US), MAX_BUCKETS - 1);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut h = Histogram::new();
        assert_eq!(h.percentile_us(50.0), None);
        assert!(h.summary().is_none());
        for v in 1..=100u64 {
            h.record_us(v);
        }
        assert_eq!(h.percentile_us(50.0), Some(50));
        assert_eq!(h.percentile_us(95.0), Some(95));
        assert_eq!(h.percentile_us(99.0), Some(99));
        assert_eq!(h.percentile_us(100.0), Some(100));
        assert_eq!(h.percentile_us(0.0), Some(1));
        assert_eq!(h.percentile_us(0.5), Some(1));
        assert_eq!(h.percentile_us(1.5), Some(2));
        let s = h.summary().unwrap();
        assert_eq!((s.count, s.min, s.max), (100, 0.001, 0.1));
        assert!((s.avg - 0.0505).abs() < 1e-9);
        assert!((s.total_ms - 5.05).abs() < 1e-9);

        let mut one = Histogram::new();
        one.record_us(7);
        assert_eq!(one.percentile_us(99.0), Some(7));
        assert_eq!(one.percentile_us(1.0), Some(7));
    }

    #[test]
    fn percentiles_of_large_values_are_within_0_2_percent() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut values: Vec<u64> = (0..20_000)
            .map(|_| {
                // Log-uniform from 1 ms to 10 s.
                let e = rng.f64() * 4.0 + 3.0;
                10f64.powf(e) as u64
            })
            .collect();
        let mut h = Histogram::new();
        for v in &values {
            h.record_us(*v);
        }
        values.sort_unstable();
        for p in [1.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
            let want = exact(&values, p) as f64;
            let got = h.percentile_us(p).unwrap() as f64;
            assert!((got - want).abs() / want <= 0.002, "p{p}: {got} vs {want}");
        }
        let s = h.summary().unwrap();
        assert_eq!(s.min, values[0] as f64 / 1000.0);
        assert_eq!(s.max, values[values.len() - 1] as f64 / 1000.0);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut all = Histogram::new();
        for v in 0..5000u64 {
            let x = v * 37 % 100_003;
            if v % 3 == 0 {
                a.record_us(x);
            } else {
                b.record_us(x);
            }
            all.record_us(x);
        }
        let mut merged = Histogram::new();
        merged.merge(&b);
        merged.merge(&Histogram::new());
        merged.merge(&a);
        assert_eq!(merged.count(), all.count());
        for p in [50.0, 95.0, 99.0] {
            assert_eq!(merged.percentile_us(p), all.percentile_us(p));
        }
        assert_eq!(merged.summary(), all.summary());
    }

    #[test]
    fn huge_values_are_clamped_not_lost() {
        let mut h = Histogram::new();
        h.record_us(u64::MAX);
        h.record(std::time::Duration::from_millis(3));
        assert_eq!(h.count(), 2);
        assert_eq!(h.percentile_us(100.0), Some(MAX_VALUE_US));
        assert!(h.percentile_us(50.0).unwrap() >= 2994);
    }
}
