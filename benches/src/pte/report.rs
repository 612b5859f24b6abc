//! The result of a run: one line per process and the summary, as PTE prints them, and the same
//! summary as one JSON object.
//!
//! What the three latencies mean (all from the load generator's clock):
//!
//! | latency | `--flow client` | `--flow gateway` |
//! | --- | --- | --- |
//! | peer (endorsement) | from sending the signed proposal to every endorsing org's node (`POST /v1/endorse`, in parallel) until the last endorsement is back | not measured: the gateway endorses inside `POST /v1/transactions` |
//! | orderer (transaction ack) | `POST /v1/broadcast?wait=false` round trip: the node checked the tx and queued it for ordering (forwarded to the Raft leader if it is a follower) | not measured |
//! | event (end to end) | from just before the proposal is made and signed until the commit event for the tx arrives on the node's `GET /v1/events` stream | from just before the proposal is made and signed until `POST /v1/transactions?wait=true` answers `COMMITTED` (the node answers after the block is written and flushed) |
//!
//! PTE measures event latency from the broadcast to the event; here it starts before the
//! endorsement, so it is the longer, end-to-end figure (the thesis' definition, section 6.1).
//! For query runs the event latency is the `POST /v1/query` round trip.

use serde_json::{Value, json};

use crate::pte::config::{Flow, TransMode, TransType};
use crate::pte::stats::LatencySummary;
use crate::pte::timeline::TimelineRow;

/// One process's counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessReport {
    /// Process index (0-based, in org order).
    pub index: u32,
    /// Its org.
    pub org: String,
    /// Its gateway node, `name@org`.
    pub node: String,
    /// Transactions sent.
    pub sent: u64,
    /// Transactions committed valid (queries: answered).
    pub received: u64,
    /// Endorsement failures.
    pub failures_proposal: u64,
    /// Ordering or validation failures.
    pub failures_transaction: u64,
    /// No commit known within the event timeout.
    pub event_timeouts: u64,
    /// First send (Unix ms).
    pub start_ms: u64,
    /// Last completion (Unix ms).
    pub end_ms: u64,
    /// Sends that had to wait for a free lane (open-loop modes).
    pub late_sends: u64,
}

impl ProcessReport {
    /// PTE's per-process line.
    pub fn line(&self, tx_label: &str) -> String {
        format!(
            "[PTE {} {} {}] completed Rcvd(sent)={}({}) {} in {} ms, timestamp: start {} end {}, #event timeout: {}",
            self.index,
            self.org,
            self.node,
            self.received,
            self.sent,
            tx_label,
            self.end_ms.saturating_sub(self.start_ms),
            self.start_ms,
            self.end_ms,
            self.event_timeouts
        )
    }
}

/// Counts of the queries of a mix run.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryReport {
    /// Queries sent.
    pub sent: u64,
    /// Queries answered.
    pub received: u64,
    /// Queries refused or failed.
    pub failures: u64,
    /// Their round trip.
    pub latency: Option<LatencySummary>,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Pacing.
    pub mode: TransMode,
    /// Invoke or query.
    pub tx_type: TransType,
    /// Gateway or client flow.
    pub flow: Flow,
    /// Contract.
    pub contract: String,
    /// Function.
    pub function: String,
    /// Per process.
    pub processes: Vec<ProcessReport>,
    /// Sent, all processes.
    pub sent: u64,
    /// Committed valid (queries: answered).
    pub received: u64,
    /// Endorsement failures.
    pub failures_proposal: u64,
    /// Ordering or validation failures.
    pub failures_transaction: u64,
    /// No commit within the event timeout.
    pub event_timeouts: u64,
    /// Commits learned by polling after missed events.
    pub events_recovered: u64,
    /// First send (Unix ms).
    pub start_ms: u64,
    /// Last completion (Unix ms).
    pub end_ms: u64,
    /// `received / (end - start)`.
    pub tps: f64,
    /// The offered rate asked for, when the mode has one.
    pub offered_tps: Option<f64>,
    /// Sends that waited for a free lane.
    pub late_sends: u64,
    /// Endorsement latency (client flow).
    pub peer: Option<LatencySummary>,
    /// Broadcast ack latency (client flow).
    pub orderer: Option<LatencySummary>,
    /// End-to-end latency.
    pub event: Option<LatencySummary>,
    /// The queries of a mix run.
    pub queries: Option<QueryReport>,
    /// CPU time the load generator used (user + system), s, if readable.
    pub client_cpu_s: Option<f64>,
    /// The most frequent errors: kind, count, and the first message of that kind.
    pub errors: Vec<(String, u64, String)>,
    /// The run per interval (see [`crate::pte::timeline`]).
    pub timeline: Vec<TimelineRow>,
}

impl Report {
    /// `end - start`, ms.
    pub fn duration_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }

    /// All failures.
    pub fn failures(&self) -> u64 {
        self.failures_proposal + self.failures_transaction
    }

    /// Txs sent that did not commit (failed, timed out or lost).
    pub fn unreceived(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    /// `Invoke(put)` / `Query(get)`.
    pub fn tx_label(&self) -> String {
        match self.tx_type {
            TransType::Invoke => format!("Invoke({})", self.function),
            TransType::Query => format!("Query({})", self.function),
        }
    }

    /// The per-process lines.
    pub fn process_lines(&self) -> Vec<String> {
        let label = self.tx_label();
        self.processes.iter().map(|p| p.line(&label)).collect()
    }

    /// The summary, PTE style.
    pub fn summary_text(&self) -> String {
        let mut s = String::new();
        let mut line = |t: String| {
            s.push_str(&t);
            s.push('\n');
        };
        line(format!(
            "{} {} transaction stats ({}.{}, flow {})",
            self.mode.label(),
            self.tx_type.label(),
            self.contract,
            self.function,
            self.flow.label()
        ));
        line(format!("    Total processes {}", self.processes.len()));
        line(format!(
            "    Total transactions sent {} received {}",
            self.sent, self.received
        ));
        line(format!(
            "    failures: proposal {} transactions {}",
            self.failures_proposal, self.failures_transaction
        ));
        line(format!(
            "    event: received {} timeout {} unreceived {}{}",
            self.received,
            self.event_timeouts,
            self.unreceived(),
            if self.events_recovered > 0 {
                format!(
                    " (of the received, {} found by status poll after missed events)",
                    self.events_recovered
                )
            } else {
                String::new()
            }
        ));
        line(format!(
            "    start {} end {} duration {} ms",
            self.start_ms,
            self.end_ms,
            self.duration_ms()
        ));
        line(format!("    TPS {:.2}", self.tps));
        if let Some(o) = self.offered_tps {
            line(format!(
                "    offered {:.2} tx/s, late sends {}",
                o, self.late_sends
            ));
        } else if self.late_sends > 0 {
            line(format!("    late sends {}", self.late_sends));
        }
        if let Some(cpu) = self.client_cpu_s {
            let wall = self.duration_ms() as f64 / 1000.0;
            let share = if wall > 0.0 { cpu / wall } else { 0.0 };
            line(format!(
                "    load generator CPU {cpu:.2} s ({share:.2} cores over the run)"
            ));
        }
        let not_measured = match (self.tx_type, self.flow) {
            (TransType::Query, _) => "not applicable to queries",
            (_, Flow::Gateway) => {
                "not measured in the gateway flow (the node endorses and orders inside submit); use --flow client"
            }
            (_, Flow::Client) => "no samples",
        };
        let mut section = |title: &str, l: &Option<LatencySummary>| {
            line(title.to_string());
            match l {
                Some(l) => {
                    line(format!(
                        "    total transactions: {} total time: {:.0} ms",
                        l.count, l.total_ms
                    ));
                    line(format!(
                        "    min: {:.2} ms max: {:.2} ms avg: {:.2} ms p50: {:.2} ms p95: {:.2} ms p99: {:.2} ms",
                        l.min, l.max, l.avg, l.p50, l.p95, l.p99
                    ));
                }
                None => line(format!("    {not_measured}")),
            }
        };
        section("peer latency stats (endorsement)", &self.peer);
        section("orderer latency stats (transaction ack)", &self.orderer);
        let event_title = match self.tx_type {
            TransType::Invoke => "event latency stats (end-to-end)",
            TransType::Query => "query latency stats (round trip)",
        };
        section(event_title, &self.event);
        if let Some(q) = &self.queries {
            line(format!(
                "query stats (after each commit): sent {} received {} failures {}",
                q.sent, q.received, q.failures
            ));
            if let Some(l) = &q.latency {
                line(format!(
                    "    min: {:.2} ms max: {:.2} ms avg: {:.2} ms p50: {:.2} ms p95: {:.2} ms p99: {:.2} ms",
                    l.min, l.max, l.avg, l.p50, l.p95, l.p99
                ));
            }
        }
        if !self.errors.is_empty() {
            line("errors (most frequent first):".to_string());
            for (e, n, m) in &self.errors {
                line(format!("    {n} x {e}"));
                if !m.is_empty() && m != e {
                    line(format!("        e.g. {m}"));
                }
            }
        }
        s
    }

    /// The summary as one JSON object.
    pub fn to_json(&self) -> Value {
        let lat = |l: &Option<LatencySummary>| match l {
            Some(l) => json!({
                "count": l.count,
                "min": l.min,
                "avg": l.avg,
                "p50": l.p50,
                "p95": l.p95,
                "p99": l.p99,
                "max": l.max,
            }),
            None => Value::Null,
        };
        json!({
            "mode": self.mode.label().to_lowercase(),
            "tx_type": self.tx_type.label().to_lowercase(),
            "flow": self.flow.label(),
            "contract": self.contract,
            "function": self.function,
            "processes": self.processes.len(),
            "sent": self.sent,
            "received": self.received,
            "failures": self.failures(),
            "failures_proposal": self.failures_proposal,
            "failures_transaction": self.failures_transaction,
            "event_timeouts": self.event_timeouts,
            "unreceived": self.unreceived(),
            "events_recovered": self.events_recovered,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "duration_ms": self.duration_ms(),
            "tps": self.tps,
            "offered_tps": self.offered_tps,
            "late_sends": self.late_sends,
            "client_cpu_s": self.client_cpu_s,
            "peer_latency_ms": lat(&self.peer),
            "orderer_latency_ms": lat(&self.orderer),
            "event_latency_ms": lat(&self.event),
            "queries": self.queries.as_ref().map(|q| json!({
                "sent": q.sent,
                "received": q.received,
                "failures": q.failures,
                "latency_ms": lat(&q.latency),
            })),
            "timeline": self.timeline,
            "errors": self.errors.iter().map(|(e, n, m)| json!({"error": e, "count": n, "example": m})).collect::<Vec<_>>(),
            "per_process": self.processes.iter().map(|p| json!({
                "index": p.index,
                "org": p.org,
                "node": p.node,
                "sent": p.sent,
                "received": p.received,
                "failures_proposal": p.failures_proposal,
                "failures_transaction": p.failures_transaction,
                "event_timeouts": p.event_timeouts,
                "start_ms": p.start_ms,
                "end_ms": p.end_ms,
                "late_sends": p.late_sends,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let l = LatencySummary {
            count: 4000,
            total_ms: 3_808_031.0,
            min: 433.0,
            avg: 952.01,
            p50: 900.0,
            p95: 1800.0,
            p99: 2100.0,
            max: 2252.0,
        };
        Report {
            mode: TransMode::Constant,
            tx_type: TransType::Invoke,
            flow: Flow::Gateway,
            contract: "kv".into(),
            function: "put".into(),
            processes: vec![ProcessReport {
                index: 0,
                org: "PatientOrg".into(),
                node: "node0@PatientOrg".into(),
                sent: 1000,
                received: 1000,
                failures_proposal: 0,
                failures_transaction: 0,
                event_timeouts: 0,
                start_ms: 1_558_276_396_437,
                end_ms: 1_558_276_419_572,
                late_sends: 0,
            }],
            sent: 4000,
            received: 4000,
            failures_proposal: 0,
            failures_transaction: 0,
            event_timeouts: 0,
            events_recovered: 0,
            start_ms: 1_558_276_396_437,
            end_ms: 1_558_276_419_572,
            tps: 172.90,
            offered_tps: None,
            late_sends: 0,
            peer: None,
            orderer: None,
            event: Some(l),
            queries: None,
            client_cpu_s: None,
            errors: vec![],
            timeline: vec![TimelineRow {
                from_s: 0.0,
                to_s: 1.0,
                sent: 4000,
                committed: 3990,
                failed: 0,
                p50_ms: Some(900.0),
                p99_ms: Some(2100.0),
                max_ms: Some(2252.0),
            }],
        }
    }

    #[test]
    fn text_has_pte_lines() {
        let r = sample();
        let lines = r.process_lines();
        assert_eq!(
            lines[0],
            "[PTE 0 PatientOrg node0@PatientOrg] completed Rcvd(sent)=1000(1000) Invoke(put) in 23135 ms, timestamp: start 1558276396437 end 1558276419572, #event timeout: 0"
        );
        let t = r.summary_text();
        assert!(t.contains("CONSTANT INVOKE transaction stats"), "{t}");
        assert!(t.contains("Total transactions sent 4000 received 4000"));
        assert!(t.contains("failures: proposal 0 transactions 0"));
        assert!(t.contains("duration 23135 ms"));
        assert!(t.contains("TPS 172.90"));
        assert!(t.contains("min: 433.00 ms max: 2252.00 ms avg: 952.01 ms"));
        assert!(t.contains("not measured in the gateway flow"));
    }

    #[test]
    fn json_has_the_required_keys() {
        let v = sample().to_json();
        for k in [
            "tps",
            "sent",
            "received",
            "failures",
            "event_latency_ms",
            "peer_latency_ms",
            "orderer_latency_ms",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        for k in ["min", "avg", "p50", "p95", "p99", "max"] {
            assert!(v["event_latency_ms"][k].is_number(), "event_latency_ms.{k}");
        }
        assert!(v["peer_latency_ms"].is_null());
        assert_eq!(v["failures"], 0);
        assert_eq!(v["duration_ms"], 23135);
        assert_eq!(v["timeline"][0]["committed"], 3990);
        assert_eq!(v["timeline"][0]["p99_ms"], 2100.0);
    }
}
