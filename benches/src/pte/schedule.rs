//! Send schedules of the open-loop modes: when each transaction of a process leaves, as an
//! offset from the common start. Pure and deterministic for a given seed, so they are tested
//! without a network or a clock.
//!
//! ```text
//!  constant  |--f±d--|--f±d--|--f±d--|...             f = const_freq, d = dev_freq (uniform)
//!  burst     |f0 f0 f0 (dur0)|f1f1f1f1 (dur1)|...|f0 f0 f0 (dur0)|...   cycles through the phases
//!  rate      p/R + i*P/R  for process p of P at R tx/s overall: the P processes interleave
//! ```
//!
//! Offsets are absolute (from the start), not "sleep after the previous send", so a send
//! that was held up does not push every later send back: the schedule catches up, and the
//! offered rate stays the one asked for.

use std::time::Duration;

/// Nanoseconds in a millisecond.
const NS_PER_MS: f64 = 1_000_000.0;

fn ms_to_ns(ms: f64) -> u64 {
    // Validated configs give finite, non-negative values; clamp anyway.
    let ns = (ms * NS_PER_MS).round();
    if ns.is_finite() && ns > 0.0 {
        ns.min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// One process's send schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every `period_ns`, each interval jittered uniformly by up to `dev_ns`.
    Constant {
        /// Mean interval.
        period_ns: u64,
        /// Largest deviation.
        dev_ns: u64,
        /// The next offset.
        next_ns: u64,
        /// Jitter source.
        rng: fastrand::Rng,
    },
    /// Phases of (interval, duration), cycled.
    Burst {
        /// (interval, duration) in ns; intervals and durations > 0.
        phases: Vec<(u64, u64)>,
        /// Current phase.
        phase: usize,
        /// Where the current phase started.
        phase_start_ns: u64,
        /// Sends already made in the current phase.
        in_phase: u64,
    },
    /// `offset + i * period`.
    Fixed {
        /// First send.
        offset_ns: u64,
        /// Interval.
        period_ns: u64,
        /// Sends made.
        i: u64,
    },
}

impl Schedule {
    /// PTE constant mode: `const_freq_ms` between sends, ± up to `dev_freq_ms`.
    pub fn constant(const_freq_ms: f64, dev_freq_ms: f64, seed: u64) -> Schedule {
        Schedule::Constant {
            period_ns: ms_to_ns(const_freq_ms),
            dev_ns: ms_to_ns(dev_freq_ms),
            next_ns: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// PTE burst mode. Lists of equal length with positive values (as validated); a pair with
    /// a zero is skipped, and an empty list gives no sends.
    pub fn burst(freq_ms: &[f64], dur_ms: &[f64]) -> Schedule {
        let phases = freq_ms
            .iter()
            .zip(dur_ms)
            .map(|(f, d)| (ms_to_ns(*f), ms_to_ns(*d)))
            .filter(|(f, d)| *f > 0 && *d > 0)
            .collect();
        Schedule::Burst {
            phases,
            phase: 0,
            phase_start_ns: 0,
            in_phase: 0,
        }
    }

    /// Rate mode: process `proc_index` of `procs` when all of them together offer `tps`.
    pub fn rate(tps: f64, proc_index: u32, procs: u32) -> Schedule {
        let procs = f64::from(procs.max(1));
        let tps = if tps.is_finite() && tps > 0.0 {
            tps
        } else {
            1.0
        };
        Schedule::Fixed {
            offset_ns: ms_to_ns(1000.0 * f64::from(proc_index) / tps),
            period_ns: ms_to_ns(1000.0 * procs / tps),
            i: 0,
        }
    }

    /// Every `period_ms` from 0 (mix mode).
    pub fn every(period_ms: f64) -> Schedule {
        Schedule::Fixed {
            offset_ns: 0,
            period_ns: ms_to_ns(period_ms),
            i: 0,
        }
    }

    /// The offset of the next send from the start; `None` when the schedule has no sends.
    pub fn next_offset(&mut self) -> Option<Duration> {
        match self {
            Schedule::Constant {
                period_ns,
                dev_ns,
                next_ns,
                rng,
            } => {
                let at = *next_ns;
                let interval = if *dev_ns == 0 {
                    *period_ns
                } else {
                    // Uniform in [period - dev, period + dev], clamped at 0.
                    let low = period_ns.saturating_sub(*dev_ns);
                    let high = period_ns.saturating_add(*dev_ns);
                    rng.u64(low..=high)
                };
                *next_ns = at.saturating_add(interval);
                Some(Duration::from_nanos(at))
            }
            Schedule::Burst {
                phases,
                phase,
                phase_start_ns,
                in_phase,
            } => {
                if phases.is_empty() {
                    return None;
                }
                loop {
                    let (freq, dur) = phases[*phase % phases.len()];
                    let offset = in_phase.saturating_mul(freq);
                    if offset < dur {
                        *in_phase += 1;
                        return Some(Duration::from_nanos(phase_start_ns.saturating_add(offset)));
                    }
                    *phase_start_ns = phase_start_ns.saturating_add(dur);
                    *phase = (*phase + 1) % phases.len();
                    *in_phase = 0;
                }
            }
            Schedule::Fixed {
                offset_ns,
                period_ns,
                i,
            } => {
                let at = offset_ns.saturating_add(i.saturating_mul(*period_ns));
                *i += 1;
                Some(Duration::from_nanos(at))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(s: &mut Schedule, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| s.next_offset().unwrap().as_nanos() as u64)
            .collect()
    }

    fn ms(v: &[f64]) -> Vec<u64> {
        v.iter().map(|m| (m * 1e6) as u64).collect()
    }

    #[test]
    fn constant_without_jitter_is_exact() {
        let mut s = Schedule::constant(2.5, 0.0, 1);
        assert_eq!(take(&mut s, 5), ms(&[0.0, 2.5, 5.0, 7.5, 10.0]));
        let mut zero = Schedule::constant(0.0, 0.0, 1);
        assert_eq!(take(&mut zero, 3), vec![0, 0, 0]);
    }

    #[test]
    fn constant_jitter_stays_in_bounds_and_keeps_the_mean() {
        let mut s = Schedule::constant(10.0, 3.0, 42);
        let offsets = take(&mut s, 10_001);
        for w in offsets.windows(2) {
            let gap = w[1] - w[0];
            assert!((7_000_000..=13_000_000).contains(&gap), "{gap}");
        }
        let mean_ms = offsets[10_000] as f64 / 1e6 / 10_000.0;
        assert!((mean_ms - 10.0).abs() < 0.1, "{mean_ms}");
        // Same seed, same schedule.
        let mut again = Schedule::constant(10.0, 3.0, 42);
        assert_eq!(take(&mut again, 100), offsets[..100].to_vec());
        // Deviation larger than the interval clamps at 0, never goes backwards.
        let mut wide = Schedule::constant(1.0, 5.0, 7);
        let o = take(&mut wide, 1000);
        assert!(o.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn burst_follows_the_seed_phases_and_cycles() {
        // Seed 003: burstFreq [500, 200, 300, 100], burstDur [3000, 2000, 3000, 1000].
        let mut s = Schedule::burst(
            &[500.0, 200.0, 300.0, 100.0],
            &[3000.0, 2000.0, 3000.0, 1000.0],
        );
        let mut expected = Vec::new();
        for cycle in 0..2 {
            let base = 9000.0 * f64::from(cycle);
            for k in 0..6 {
                expected.push(base + 500.0 * f64::from(k)); // 0 .. 2500
            }
            for k in 0..10 {
                expected.push(base + 3000.0 + 200.0 * f64::from(k)); // 3000 .. 4800
            }
            for k in 0..10 {
                expected.push(base + 5000.0 + 300.0 * f64::from(k)); // 5000 .. 7700
            }
            for k in 0..10 {
                expected.push(base + 8000.0 + 100.0 * f64::from(k)); // 8000 .. 8900
            }
        }
        assert_eq!(take(&mut s, expected.len()), ms(&expected));
    }

    #[test]
    fn burst_phase_shorter_than_its_interval_sends_once() {
        let mut s = Schedule::burst(&[100.0, 10.0], &[50.0, 20.0]);
        assert_eq!(take(&mut s, 5), ms(&[0.0, 50.0, 60.0, 70.0, 120.0]));
        let mut empty = Schedule::burst(&[], &[]);
        assert!(empty.next_offset().is_none());
    }

    #[test]
    fn rate_interleaves_processes_at_the_total_rate() {
        // 4 processes at 1000 tx/s overall: each every 4 ms, offset by 1 ms from the next.
        let mut all: Vec<u64> = (0..4)
            .flat_map(|p| {
                let mut s = Schedule::rate(1000.0, p, 4);
                take(&mut s, 250)
            })
            .collect();
        all.sort_unstable();
        let expected: Vec<u64> = (0..1000).map(|i| i * 1_000_000).collect();
        assert_eq!(all, expected);
        let mut one = Schedule::rate(3.0, 0, 1);
        assert_eq!(take(&mut one, 3), vec![0, 333_333_333, 666_666_666]);
    }

    #[test]
    fn every_is_a_fixed_period() {
        let mut s = Schedule::every(7.0);
        assert_eq!(take(&mut s, 3), ms(&[0.0, 7.0, 14.0]));
    }
}
