//! The simulation over a bounded set of seeds, its reproducibility, and a broken node caught.
//!
//! ```text
//!  cargo test -p sphr-sim                      seeds 0..20 (even: 3 nodes, odd: 5 nodes)
//!  SPHR_SIM_SEEDS=1000 cargo test -p sphr-sim --release --test sim   seeds 0..1000
//!  SPHR_SIM_SEED_START=5000 SPHR_SIM_SEEDS=100 ...                  seeds 5000..5100
//!  SPHR_SIM_SEED=17 cargo test -p sphr-sim --test sim -- --nocapture  seed 17 only
//! ```
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use sphr_sim::{Bug, Invariant, SimConfig, run, run_seed};

/// Seeds run by `cargo test` when no variable says otherwise.
const DEFAULT_SEEDS: u64 = 20;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The seeds of this test: `SPHR_SIM_SEED` alone, else `SPHR_SIM_SEEDS` from
/// `SPHR_SIM_SEED_START`; even ones or odd ones.
fn seeds(odd: bool) -> Vec<u64> {
    let all: Vec<u64> = match env_u64("SPHR_SIM_SEED") {
        Some(s) => vec![s],
        None => {
            let start = env_u64("SPHR_SIM_SEED_START").unwrap_or(0);
            let n = env_u64("SPHR_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
            (start..start.saturating_add(n)).collect()
        }
    };
    all.into_iter().filter(|s| (s % 2 == 1) == odd).collect()
}

fn run_seeds(odd: bool) {
    let started = Instant::now();
    let mut failures = Vec::new();
    let list = seeds(odd);
    for &seed in &list {
        let t = Instant::now();
        let report = run_seed(seed).unwrap();
        eprintln!("{} [{:.1} s]", report.summary(), t.elapsed().as_secs_f64());
        if let Some(f) = report.failure() {
            eprintln!("{f}");
            failures.push(f);
        }
    }
    eprintln!(
        "{} seeds in {:.1} s, {} failed",
        list.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn seeds_with_three_nodes() {
    run_seeds(false);
}

#[test]
fn seeds_with_five_nodes() {
    run_seeds(true);
}

#[test]
fn a_seed_replays_the_same_events() {
    let seed = env_u64("SPHR_SIM_SEED").unwrap_or(2);
    let mut short = SimConfig::for_seed(seed);
    short.fault_ms = 6_000;
    let a = run(short.clone()).unwrap();
    let b = run(short.clone()).unwrap();
    assert!(a.events > 500, "{}", a.summary());
    assert_eq!(
        a.event_log_hash,
        b.event_log_hash,
        "{}\n{}",
        a.summary(),
        b.summary()
    );
    assert_eq!(a.summary(), b.summary());
    assert_eq!(a.recent_events, b.recent_events);
    // Another seed is another run.
    short.seed += 2;
    let c = run(short).unwrap();
    assert_ne!(a.event_log_hash, c.event_log_hash);
}

/// A node that applies an entry twice (and so never the next one) is caught by
/// `one_block_per_height`, and the report names the seed.
#[test]
fn a_node_applying_an_entry_twice_is_caught() {
    let seed = 6;
    let mut cfg = SimConfig::for_seed(seed);
    cfg.fault_ms = 6_000;
    cfg.bug = Some(Bug::ReapplyPrevious {
        node: 2,
        at_block: 3,
    });
    let report = run(cfg).unwrap();
    let v = report
        .violation
        .clone()
        .expect("the broken node must be caught");
    assert_eq!(v.invariant, Invariant::OneBlockPerHeight, "{v}");
    assert!(v.detail.starts_with("block 3:"), "{v}");
    let msg = report.failure().unwrap();
    assert!(msg.contains(&format!("SPHR_SIM_SEED={seed}")), "{msg}");
    // The same bug under the same seed is caught the same way.
    let mut cfg = SimConfig::for_seed(seed);
    cfg.fault_ms = 6_000;
    cfg.bug = Some(Bug::ReapplyPrevious {
        node: 2,
        at_block: 3,
    });
    let again = run(cfg).unwrap();
    assert_eq!(again.violation, report.violation);
    assert_eq!(again.event_log_hash, report.event_log_hash);
}

/// `AckBeforePersist` on a crash-heavy run where every crash strikes between sending and
/// writing.
fn ack_before_persist(seed: u64) -> SimConfig {
    let mut cfg = SimConfig::for_seed(seed);
    cfg.bug = Some(Bug::AckBeforePersist);
    cfg.faults.crash_points = [0, 1, 0, 0, 0, 0];
    cfg.faults.w_crash += 4;
    cfg.faults.w_crash_leader += 4;
    cfg
}

/// Nodes that send their votes and append responses before writing (what the brief calls
/// "skips persisting before sending") forget what they acknowledged when they crash in
/// between; the checkers catch it. Not every seed has a crash in that window at a moment that
/// matters: these seeds do (found by `explore_ack_before_persist`; rerun it if the simulation
/// changes and none of them catches it any more).
#[test]
fn sending_acks_before_persisting_is_caught() {
    for seed in [12, 37, 38, 21, 3] {
        let report = run(ack_before_persist(seed)).unwrap();
        let Some(v) = &report.violation else {
            eprintln!("seed {seed}: not caught");
            continue;
        };
        eprintln!("seed {seed}: {v}");
        // Seed 12: two nodes end up with different blocks at one height (a vote or an
        // acknowledged entry forgotten, then a leader commits over it). Other seeds: raft-rs
        // itself stops the node that lost an entry the leader knows it has ("to_commit .. is
        // out of range").
        assert!(
            matches!(
                v.invariant,
                Invariant::NoFatalStop
                    | Invariant::OneBlockPerHeight
                    | Invariant::NoAckedTxLost
                    | Invariant::EqualStateAtEqualHeight
            ),
            "{v}"
        );
        assert!(
            report
                .failure()
                .unwrap()
                .contains(&format!("SPHR_SIM_SEED={seed}"))
        );
        return;
    }
    panic!("AckBeforePersist was not caught: rerun explore_ack_before_persist for new seeds");
}

/// How often a seed catches `AckBeforePersist`:
/// `SPHR_SIM_SEEDS=40 cargo test -p sphr-sim --test sim -- --ignored explore --nocapture`.
#[test]
#[ignore = "exploration: how often a seed catches AckBeforePersist"]
fn explore_ack_before_persist() {
    let n = env_u64("SPHR_SIM_SEEDS").unwrap_or(40);
    for seed in 0..n {
        let r = run(ack_before_persist(seed)).unwrap();
        match &r.violation {
            Some(v) => eprintln!("seed {seed}: {v}"),
            None => eprintln!("seed {seed}: not caught"),
        }
    }
}
