//! What the transactions call: the [`Workload`] trait and its two implementations,
//! [`TemplateWorkload`] (default: `kv` put of a random key with a `payload_*`-sized value,
//! PTE's `ccchecker` shape) and [`HealthcareWorkload`] (the appointment flow of seed 003: a
//! patient asks a doctor for an appointment, the doctor accepts it).
//!
//! A workload makes each process's next invoke and the query that reads what an invoke wrote.
//! A call names who signs it ([`Signer`]): the process's own user, or for the healthcare flow
//! the patient or the doctor the runner resolved for the process from network.json. Calls a
//! workload needs committed before the clock starts (the healthcare flow registers its
//! patient and doctor) come from [`Workload::setup`]; each committed invoke is handed back
//! with the contract's response ([`Workload::committed`]), which is how an appointment id
//! travels from the patient's request to the doctor's acceptance.

use std::collections::VecDeque;

use sphr_contracts::healthcare::{self as hc, client as hc_client};
use sphr_crypto::hash::Hash32;

use crate::pte::config::{ConfigError, PayloadType, WorkloadKind, WorkloadOpt};

/// Who signs a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Signer {
    /// The process's user (`user`, default `loadgen`).
    #[default]
    Process,
    /// The process's patient (a network.json user with role `patient`).
    Patient,
    /// The process's doctor (a network.json user with role `doctor`).
    Doctor,
}

/// One contract call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Contract.
    pub contract: String,
    /// Function.
    pub function: String,
    /// Arguments.
    pub args: Vec<Vec<u8>>,
    /// The key the call writes or reads (what a later query of it reads back); empty when
    /// only the response tells it ([`Workload::committed`]).
    pub key: String,
    /// Who signs it.
    pub signer: Signer,
    /// Endorse only at nodes that have committed this block (the block of the transaction
    /// whose result this call builds on; see `POST /v1/endorse?min_height=`).
    pub after_block: Option<u64>,
}

/// Makes a process's calls. Implementations must be cheap: calls are made on the send path.
pub trait Workload: Send {
    /// The next invoke of process `proc`, its `seq`-th.
    fn next_invoke(&mut self, proc: u32, seq: u64) -> Call;
    /// A query of `key` (written earlier by an invoke of this workload).
    fn query(&mut self, key: &str, proc: u32, seq: u64) -> Call;
    /// Calls to commit, in order, before the clock starts (not measured).
    fn setup(&self) -> Vec<Call> {
        Vec::new()
    }
    /// `call`, an invoke of this workload, committed valid in `block` with the contract's
    /// `response`. Returns the key a later query of it reads when `call.key` does not say it.
    fn committed(&mut self, _call: &Call, _response: &[u8], _block: Option<u64>) -> Option<String> {
        None
    }
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
            signer: Signer::Process,
            after_block: None,
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
            signer: Signer::Process,
            after_block: None,
        }
    }
}

/// Most appointments a process keeps waiting for their doctor (requested, committed, not
/// yet accepted). Accepts go first, so the queue stays short; the bound keeps a run whose
/// accepts fail from growing it without end (the oldest is dropped).
pub const MAX_PENDING_APPOINTMENTS: usize = 100_000;

/// Disease codes the requests cycle through (the contract takes any short code).
const DISEASES: &[&str] = &["cardiology", "endocrinology", "dermatology", "neurology"];

/// How far ahead of the transaction's time an appointment is asked for (within the
/// contract's window).
const APPOINTMENT_AHEAD_MS: u64 = 3_600_000;

/// The appointment flow of seed 003 (section 5.2.1, steps 1 and 2), one instance per process:
/// the process's patient calls `requestAppointment` with the process's doctor; once that
/// commits, the appointment id from the response waits for the doctor, and the process's next
/// invoke is the doctor's `acceptAppointment` of it. So a run alternates requests and
/// acceptances (requests only until the first commit), and every acceptance names an
/// appointment that exists and is REQUESTED. Queries are `getAppointmentStatus` by the
/// patient. Setup registers both people with the contract (`registerUser`).
///
/// No notes are sent: sealing them costs the client a PRE encryption per request and the
/// thesis's PTE run did not seal anything.
#[derive(Debug, Clone)]
pub struct HealthcareWorkload {
    doctor: hc::Identity,
    /// Committed requests waiting for the doctor: appointment id and the block it is in.
    pending: VecDeque<(Hash32, Option<u64>)>,
    rng: fastrand::Rng,
}

impl HealthcareWorkload {
    /// The flow with `doctor` (the identity the process's doctor signs as).
    pub fn new(doctor: hc::Identity, seed: u64) -> HealthcareWorkload {
        HealthcareWorkload {
            doctor,
            pending: VecDeque::new(),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Appointments committed and not yet handed out for acceptance.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn call<R: hc_client::Request>(
        req: &R,
        key: String,
        signer: Signer,
        after_block: Option<u64>,
    ) -> Call {
        // Encoding these fixed-shape requests cannot fail; an empty argument list would be
        // refused by the contract, and counted as a failed proposal, if it ever did.
        let args = hc_client::call(req).map(|(_, a)| a).unwrap_or_default();
        Call {
            contract: hc::NAME.to_string(),
            function: R::FUNCTION.to_string(),
            args,
            key,
            signer,
            after_block,
        }
    }
}

impl Workload for HealthcareWorkload {
    fn next_invoke(&mut self, _proc: u32, _seq: u64) -> Call {
        if let Some((id, block)) = self.pending.pop_front() {
            return Self::call(
                &hc::AcceptAppointment { appointment_id: id },
                id.to_hex(),
                Signer::Doctor,
                block,
            );
        }
        let disease = DISEASES[self.rng.usize(..DISEASES.len())];
        let req = hc::RequestAppointment {
            doctor: self.doctor.clone(),
            requested_time_ms: sphr_node::now_ms().saturating_add(APPOINTMENT_AHEAD_MS),
            disease_classification: disease.to_string(),
            notes: None,
            insurance_plan_id: None,
            patient_pre_public_key: None,
            billing_pre_public_key: None,
        };
        Self::call(&req, String::new(), Signer::Patient, None)
    }

    fn query(&mut self, key: &str, _proc: u32, _seq: u64) -> Call {
        // A key that is not an id (never one of ours) is sent as the zero id: the contract
        // answers "not found", which the run counts as a failed query.
        let id = Hash32::from_hex(key).unwrap_or_default();
        Self::call(
            &hc::GetAppointmentStatus { appointment_id: id },
            key.to_string(),
            Signer::Patient,
            None,
        )
    }

    fn setup(&self) -> Vec<Call> {
        let register = hc::RegisterUser {
            pre_public_key: None,
        };
        vec![
            Self::call(&register, String::new(), Signer::Patient, None),
            Self::call(&register, String::new(), Signer::Doctor, None),
        ]
    }

    fn committed(&mut self, call: &Call, response: &[u8], block: Option<u64>) -> Option<String> {
        if call.function != <hc::RequestAppointment as hc_client::Request>::FUNCTION {
            return None;
        }
        let a = hc_client::response::<hc::RequestAppointment>(response).ok()?;
        if self.pending.len() >= MAX_PENDING_APPOINTMENTS {
            self.pending.pop_front();
        }
        self.pending.push_back((a.appointment_id, block));
        Some(a.appointment_id.to_hex())
    }
}

/// The workload of process `proc`, seeded from the run's seed. The healthcare flow needs the
/// identity its doctor signs as (`doctor`, resolved by the runner from network.json).
pub fn for_process(
    opt: &WorkloadOpt,
    run_seed: u64,
    proc: u32,
    doctor: Option<&hc::Identity>,
) -> Result<Box<dyn Workload>, ConfigError> {
    let seed = run_seed ^ (u64::from(proc).wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    match opt.kind {
        WorkloadKind::Template => Ok(Box::new(TemplateWorkload::new(opt, seed)?)),
        WorkloadKind::HealthcareAppointment => match doctor {
            Some(d) => Ok(Box::new(HealthcareWorkload::new(d.clone(), seed))),
            None => Err(ConfigError::Invalid {
                key: "workload.kind".into(),
                why: "the healthcare appointment flow needs a doctor to sign acceptances".into(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_a_kv_put_of_a_random_key_and_a_fixed_value() {
        let opt = WorkloadOpt::default();
        let mut w = for_process(&opt, 1, 0, None).unwrap();
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
        let mut w1 = for_process(&opt, 1, 1, None).unwrap();
        assert_ne!(w1.next_invoke(1, 0).key, a.key);
        let mut again = for_process(&opt, 1, 0, None).unwrap();
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
        let mut w = for_process(&opt, 3, 0, None).unwrap();
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
        let mut w = for_process(&opt, 0, 7, None).unwrap();
        let c = w.next_invoke(7, 42);
        assert_eq!(c.args[0], b"id-7-42");
        assert_eq!(c.args[1], format!("{}/x", c.key).into_bytes());
        assert_eq!(c.args[2], b"plain {not");
    }

    #[test]
    fn unknown_placeholders_and_healthcare_without_a_doctor_are_refused_by_key() {
        let opt = WorkloadOpt {
            query_args: vec!["ok".into(), "{nope}".into()],
            ..WorkloadOpt::default()
        };
        let e = for_process(&opt, 0, 0, None).err().unwrap();
        assert_eq!(e.key(), Some("workload.query_args[1]"));
        let hc = WorkloadOpt {
            kind: WorkloadKind::HealthcareAppointment,
            ..WorkloadOpt::default()
        };
        let e = for_process(&hc, 0, 0, None).err().unwrap();
        assert_eq!(e.key(), Some("workload.kind"));
    }

    fn appointment(id: Hash32, doctor: &hc::Identity) -> Vec<u8> {
        let a = hc::Appointment {
            appointment_id: id,
            patient: hc::Identity::new("PatientOrg", "patient1"),
            doctor: doctor.clone(),
            hospital: doctor.org.clone(),
            requested_time_ms: 1,
            disease_classification: "cardiology".into(),
            notes: None,
            coverage: None,
            patient_pre_public_key: Default::default(),
            billing_pre_public_key: Default::default(),
            status: hc::AppointmentStatus::Requested,
            created_ms: 1,
            decided_ms: None,
        };
        sphr_crypto::cbor::to_vec(&a).unwrap()
    }

    #[test]
    fn the_doctor_accepts_what_the_patient_requested_once_it_committed() {
        let doctor = hc::Identity::new("HospitalOrg", "doctor1");
        let opt = WorkloadOpt {
            kind: WorkloadKind::HealthcareAppointment,
            ..WorkloadOpt::default()
        };
        let mut w = for_process(&opt, 5, 0, Some(&doctor)).unwrap();

        // Setup registers the patient, then the doctor.
        let setup = w.setup();
        assert_eq!(setup.len(), 2);
        assert!(
            setup
                .iter()
                .all(|c| c.function == "registerUser" && c.contract == "healthcare")
        );
        assert_eq!(
            setup.iter().map(|c| c.signer).collect::<Vec<_>>(),
            vec![Signer::Patient, Signer::Doctor]
        );

        // Nothing committed yet: requests by the patient, naming the doctor.
        let r1 = w.next_invoke(0, 0);
        let r2 = w.next_invoke(0, 1);
        for r in [&r1, &r2] {
            assert_eq!(
                (r.function.as_str(), r.signer),
                ("requestAppointment", Signer::Patient)
            );
            let req: hc::RequestAppointment =
                sphr_crypto::cbor::from_slice(&r.args[0], 1 << 16).unwrap();
            assert_eq!(req.doctor, doctor);
            assert!(req.notes.is_none());
        }

        // The first request commits: its appointment is the next invoke, by the doctor.
        let id = sphr_crypto::hash::sha256(b"appointment one");
        let key = w.committed(&r1, &appointment(id, &doctor), Some(9));
        assert_eq!(key, Some(id.to_hex()));
        let acc = w.next_invoke(0, 2);
        assert_eq!(
            (acc.function.as_str(), acc.signer),
            ("acceptAppointment", Signer::Doctor)
        );
        assert_eq!(acc.key, id.to_hex());
        // Endorsed only where the request's block is committed.
        assert_eq!(acc.after_block, Some(9));
        assert_eq!(r1.after_block, None);
        let body: hc::AcceptAppointment =
            sphr_crypto::cbor::from_slice(&acc.args[0], 1 << 16).unwrap();
        assert_eq!(body.appointment_id, id);
        // Accepted once: the flow goes back to requests.
        assert_eq!(w.next_invoke(0, 3).function, "requestAppointment");
        // An acceptance committing adds nothing; an undecodable response adds nothing.
        assert_eq!(w.committed(&acc, b"whatever", Some(10)), None);
        assert_eq!(w.committed(&r2, b"not cbor", Some(10)), None);
        assert_eq!(w.next_invoke(0, 4).function, "requestAppointment");

        // Queries read the status of an appointment, as the patient.
        let q = w.query(&id.to_hex(), 0, 5);
        assert_eq!(
            (q.function.as_str(), q.signer),
            ("getAppointmentStatus", Signer::Patient)
        );
        let body: hc::GetAppointmentStatus =
            sphr_crypto::cbor::from_slice(&q.args[0], 1 << 16).unwrap();
        assert_eq!(body.appointment_id, id);
    }
}
