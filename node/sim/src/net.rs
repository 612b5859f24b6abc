//! The simulated network between consenters: directed links that can be cut, and a seeded
//! fate for every message.
//!
//! ```text
//!  send(from, to) ── link cut? ──yes──> lost
//!        │ no
//!        ├─ drop (per mille) ─────────> lost
//!        ├─ latency [min, max] (+ slow extra, per mille) ──> delivery at now + delay
//!        └─ duplicate (per mille) ────> a second delivery, with its own delay
//!  delivery(from, to) ── link cut now? ──yes──> lost   (a partition also eats what was in flight)
//! ```
//!
//! Different delays reorder messages; nothing else touches their content (the transport
//! contract: "may drop, must not corrupt").

use std::collections::BTreeSet;

use crate::config::NetProfile;
use crate::rng::SimRng;

/// Links and message fates.
#[derive(Debug)]
pub struct Network {
    profile: NetProfile,
    /// Directed links that are down: `(from, to)`.
    cut: BTreeSet<(u64, u64)>,
    rng: SimRng,
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages lost (dropped, or sent over or arriving at a cut link).
    pub lost: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
}

impl Network {
    /// A network with every link up.
    pub fn new(profile: NetProfile, rng: SimRng) -> Self {
        Self {
            profile,
            cut: BTreeSet::new(),
            rng,
            sent: 0,
            lost: 0,
            duplicated: 0,
        }
    }

    /// Replaces the profile (the settle phase calms the network down).
    pub fn set_profile(&mut self, profile: NetProfile) {
        self.profile = profile;
    }

    /// Whether `from` can currently reach `to`.
    pub fn reachable(&self, from: u64, to: u64) -> bool {
        from == to || !self.cut.contains(&(from, to))
    }

    /// Cuts the directed link `from -> to`.
    pub fn cut_link(&mut self, from: u64, to: u64) {
        if from != to {
            self.cut.insert((from, to));
        }
    }

    /// Cuts every link between `a` and `b`, both ways.
    pub fn cut_both(&mut self, a: u64, b: u64) {
        self.cut_link(a, b);
        self.cut_link(b, a);
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether some link is down.
    pub fn is_partitioned(&self) -> bool {
        !self.cut.is_empty()
    }

    /// The links that are down, for the event log.
    pub fn cut_links(&self) -> Vec<(u64, u64)> {
        self.cut.iter().copied().collect()
    }

    /// Decides the fate of one message: the delays (ms from now) of its deliveries; empty
    /// when it is lost.
    pub fn route(&mut self, from: u64, to: u64) -> Vec<u64> {
        self.sent += 1;
        if !self.reachable(from, to) || self.rng.per_mille(self.profile.drop_per_mille) {
            self.lost += 1;
            return Vec::new();
        }
        let mut out = vec![self.delay()];
        if self.rng.per_mille(self.profile.dup_per_mille) {
            self.duplicated += 1;
            out.push(self.delay());
        }
        out
    }

    /// Counts a message that arrived over a link cut while it was in flight.
    pub fn lost_in_flight(&mut self) {
        self.lost += 1;
    }

    fn delay(&mut self) -> u64 {
        let p = &self.profile;
        let (lo, hi, slow, slo, shi) = (
            p.latency_min_ms,
            p.latency_max_ms,
            p.slow_per_mille,
            p.slow_min_ms,
            p.slow_max_ms,
        );
        let mut d = self.rng.range(lo.max(1), hi.max(1));
        if self.rng.per_mille(slow) {
            d += self.rng.range(slo, shi);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy() -> NetProfile {
        NetProfile {
            drop_per_mille: 500,
            dup_per_mille: 500,
            slow_per_mille: 500,
            latency_min_ms: 1,
            latency_max_ms: 10,
            slow_min_ms: 100,
            slow_max_ms: 200,
        }
    }

    #[test]
    fn cut_links_lose_everything_and_heal_restores() {
        let mut n = Network::new(lossy(), SimRng::new(3));
        n.cut_link(1, 2);
        assert!(!n.reachable(1, 2));
        assert!(n.reachable(2, 1));
        for _ in 0..100 {
            assert!(n.route(1, 2).is_empty());
        }
        n.heal();
        let delivered: usize = (0..1000).map(|_| n.route(1, 2).len()).sum();
        // Half dropped, half of the rest duplicated: about 750 deliveries.
        assert!((600..900).contains(&delivered), "{delivered}");
        assert!(n.route(1, 1).len() <= 2);
    }

    #[test]
    fn same_seed_same_fates() {
        let run = || {
            let mut n = Network::new(lossy(), SimRng::new(11));
            (0..200)
                .map(|i| n.route(i % 3, 1 + i % 2))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
