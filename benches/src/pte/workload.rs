//! What the transactions call: the [`Workload`] trait and its one implementation,
//! [`TemplateWorkload`] (default: `kv` put of a random key with a `payload_*`-sized value,
//! PTE's `ccchecker` shape).
//!
//! The hook for other flows is the trait: a workload makes each process's next invoke (and the
//! query that reads what an invoke wrote). The healthcare appointment flow of seed 003 is not
//! here yet: its contract landed while this was written, and the flow needs more than this
//! trait gives (two signers, the patient who calls `requestAppointment` and the doctor who
//! calls `acceptAppointment`, a `registerUser` step first, and the appointment id carried from
//! one call to the next), so `workload.kind = "healthcare-appointment"` is refused with that
//! reason. To add it: give [`Call`] a signer (a user name the runner resolves like `user`),
//! implement [`Workload`] for the flow (one instance per process, so it can keep each
//! patient's chain of steps) and return it from [`for_process`].

use crate::pte::config::{ConfigError, PayloadType, WorkloadKind, WorkloadOpt};

/// One contract call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Contract.
    pub contract: String,
    /// Function.
    pub function: String,
    /// Arguments.
    pub args: Vec<Vec<u8>>,
    /// The key the call writes or reads (what a later query of it reads back).
    pub key: String,
}

/// Makes a process's calls. Implementations must be cheap: calls are made on the send path.
pub trait Workload: Send {
    /// The next invoke of process `proc`, its `seq`-th.
    fn next_invoke(&mut self, proc: u32, seq: u64) -> Call;
    /// A query of `key` (written earlier by an invoke of this workload).
    fn query(&mut self, key: &str, proc: u32, seq: u64) -> Call;
}

/// One piece of an argument template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Key,
    Value,
    Proc,
    Seq,
}

/// Placeholders an argument template may hold.
pub const PLACEHOLDERS: &[&str] = &["{key}", "{value}", "{proc}", "{seq}"];

fn parse_template(t: &str, key_name: &str) -> Result<Vec<Piece>, ConfigError> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let Some(close_rel) = rest[open..].find('}') else {
            break;
        };
        let close = open + close_rel;
        let name = &rest[open..=close];
        let piece = match name {
            "{key}" => Piece::Key,
            "{value}" => Piece::Value,
            "{proc}" => Piece::Proc,
            "{seq}" => Piece::Seq,
            other => {
                return Err(ConfigError::Invalid {
                    key: key_name.to_string(),
                    why: format!(
                        "unknown placeholder {other}; known: {}",
                        PLACEHOLDERS.join(" ")
                    ),
                });
            }
        };
        if open > 0 {
            out.push(Piece::Text(rest[..open].to_string()));
        }
        out.push(piece);
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    Ok(out)
}

fn parse_templates(ts: &[String], key_name: &str) -> Result<Vec<Vec<Piece>>, ConfigError> {
    ts.iter()
        .enumerate()
        .map(|(i, t)| parse_template(t, &format!("{key_name}[{i}]")))
        .collect()
}

/// `contract.function(args)` with placeholders filled per call.
#[derive(Debug, Clone)]
pub struct TemplateWorkload {
    contract: String,
    invoke_function: String,
    invoke_args: Vec<Vec<Piece>>,
    query_function: String,
    query_args: Vec<Vec<Piece>>,
    payload_type: PayloadType,
    payload_min: usize,
    payload_max: usize,
    rng: fastrand::Rng,
}

impl TemplateWorkload {
    /// From `[workload]`, with its own random source.
    pub fn new(opt: &WorkloadOpt, seed: u64) -> Result<TemplateWorkload, ConfigError> {
        Ok(TemplateWorkload {
            contract: opt.contract.clone(),
            invoke_function: opt.invoke_function.clone(),
            invoke_args: parse_templates(&opt.invoke_args, "workload.invoke_args")?,
            query_function: opt.query_function.clone(),
            query_args: parse_templates(&opt.query_args, "workload.query_args")?,
            payload_type: opt.payload_type,
            payload_min: opt.payload_min as usize,
            payload_max: opt.payload_max.max(opt.payload_min) as usize,
            rng: fastrand::Rng::with_seed(seed),
        })
    }

    fn payload(&mut self) -> Vec<u8> {
        let len = match self.payload_type {
            PayloadType::Fixed => self.payload_min,
            PayloadType::Random => self.rng.usize(self.payload_min..=self.payload_max),
        };
        (0..len).map(|_| self.rng.alphanumeric() as u8).collect()
    }

    fn fill(&mut self, t: &[Vec<Piece>], key: &str, proc: u32, seq: u64) -> Vec<Vec<u8>> {
        let mut args = Vec::with_capacity(t.len());
        for pieces in t {
            let mut arg = Vec::new();
            for p in pieces {
                match p {
                    Piece::Text(s) => arg.extend_from_slice(s.as_bytes()),
                    Piece::Key => arg.extend_from_slice(key.as_bytes()),
                    Piece::Value => {
                        let v = self.payload();
                        arg.extend_from_slice(&v);
                    }
                    Piece::Proc => arg.extend_from_slice(proc.to_string().as_bytes()),
                    Piece::Seq => arg.extend_from_slice(seq.to_string().as_bytes()),
                }
            }
            args.push(arg);
        }
        args
    }
}

impl Workload for TemplateWorkload {
    fn next_invoke(&mut self, proc: u32, seq: u64) -> Call {
        let key = format!("pte-{:016x}", self.rng.u64(..));
        let t = std::mem::take(&mut self.invoke_args);
        let args = self.fill(&t, &key, proc, seq);
        self.invoke_args = t;
        Call {
            contract: self.contract.clone(),
            function: self.invoke_function.clone(),
            args,
            key,
        }
    }

    fn query(&mut self, key: &str, proc: u32, seq: u64) -> Call {
        let t = std::mem::take(&mut self.query_args);
        let args = self.fill(&t, key, proc, seq);
        self.query_args = t;
        Call {
            contract: self.contract.clone(),
            function: self.query_function.clone(),
            args,
            key: key.to_string(),
        }
    }
}

/// The workload of process `proc`, seeded from the run's seed.
pub fn for_process(
    opt: &WorkloadOpt,
    run_seed: u64,
    proc: u32,
) -> Result<Box<dyn Workload>, ConfigError> {
    let seed = run_seed ^ (u64::from(proc).wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    match opt.kind {
        WorkloadKind::Template => Ok(Box::new(TemplateWorkload::new(opt, seed)?)),
        WorkloadKind::HealthcareAppointment => Err(ConfigError::Invalid {
            key: "workload.kind".into(),
            why: "the healthcare appointment flow is not implemented in sphr-pte yet".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_a_kv_put_of_a_random_key_and_a_fixed_value() {
        let opt = WorkloadOpt::default();
        let mut w = for_process(&opt, 1, 0).unwrap();
        let a = w.next_invoke(0, 0);
        let b = w.next_invoke(0, 1);
        assert_eq!((a.contract.as_str(), a.function.as_str()), ("kv", "put"));
        assert_eq!(a.args.len(), 2);
        assert_eq!(a.args[0], a.key.as_bytes());
        assert_eq!(a.args[1].len(), 100);
        assert!(a.args[1].iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(a.key, b.key);
        let q = w.query(&a.key, 0, 2);
        assert_eq!(q.function, "get");
        assert_eq!(q.args, vec![a.key.as_bytes().to_vec()]);
        // Processes get different streams; the same seed gives the same stream.
        let mut w1 = for_process(&opt, 1, 1).unwrap();
        assert_ne!(w1.next_invoke(1, 0).key, a.key);
        let mut again = for_process(&opt, 1, 0).unwrap();
        assert_eq!(again.next_invoke(0, 0), a);
    }

    #[test]
    fn random_payloads_stay_in_range() {
        let opt = WorkloadOpt {
            payload_type: PayloadType::Random,
            payload_min: 5,
            payload_max: 9,
            ..WorkloadOpt::default()
        };
        let mut w = for_process(&opt, 3, 0).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for s in 0..500 {
            let len = w.next_invoke(0, s).args[1].len();
            assert!((5..=9).contains(&len));
            seen.insert(len);
        }
        assert_eq!(seen.len(), 5);
    }

    #[test]
    fn templates_fill_every_placeholder() {
        let opt = WorkloadOpt {
            contract: "c".into(),
            invoke_function: "f".into(),
            invoke_args: vec![
                "id-{proc}-{seq}".into(),
                "{key}/x".into(),
                "plain {not".into(),
            ],
            payload_min: 3,
            ..WorkloadOpt::default()
        };
        let mut w = for_process(&opt, 0, 7).unwrap();
        let c = w.next_invoke(7, 42);
        assert_eq!(c.args[0], b"id-7-42");
        assert_eq!(c.args[1], format!("{}/x", c.key).into_bytes());
        assert_eq!(c.args[2], b"plain {not");
    }

    #[test]
    fn unknown_placeholders_and_healthcare_are_refused_by_key() {
        let opt = WorkloadOpt {
            query_args: vec!["ok".into(), "{nope}".into()],
            ..WorkloadOpt::default()
        };
        let e = for_process(&opt, 0, 0).err().unwrap();
        assert_eq!(e.key(), Some("workload.query_args[1]"));
        let hc = WorkloadOpt {
            kind: WorkloadKind::HealthcareAppointment,
            ..WorkloadOpt::default()
        };
        let e = for_process(&hc, 0, 0).err().unwrap();
        assert_eq!(e.key(), Some("workload.kind"));
    }
}
