//! `sphr-node hc`: the healthcare contract of the thesis from the command line, one subcommand
//! per function (the 25 of table 5.2 and the four the scenarios need), named after the function
//! in kebab case and marked with the role that calls it.
//!
//! ```text
//!   sphr-node hc register-user          --network N --user patient1@PatientOrg
//!   sphr-node hc request-appointment    --user patient1@PatientOrg --doctor doctor1@HospitalOrg \
//!                                       --disease endocrinology --notes "tired" --token-out t.json
//!   sphr-node hc accept-appointment     --user doctor1@HospitalOrg --appointment <id>
//!   sphr-node hc generate-bill-and-update-prescription-others --user lab1@HospitalOrg \
//!                                       --token t.json --report "glucose 7.9" --amount 30.00
//!   sphr-node hc get-prescription-patient --user patient1@PatientOrg --appointment <id>
//! ```
//!
//! Every command signs with the `--user`'s identity and, unless `--node` says otherwise, talks
//! to the node of the user's org. Sealed fields are sealed here, on the client, to the
//! appointment's keys (dosage and lab reports to the patient key, amounts to the billing key);
//! re-encryption keys are made here from the caller's own PRE secret key. Nothing sealed is
//! ever sent in plaintext, and what comes back sealed is opened only with the caller's own PRE
//! key: a field the caller holds no key for is shown as `(sealed)`.
//!
//! Labs and pharmacies learn an appointment's keys from the patient's token file
//! (`--token-out` of `request-appointment` or `get-appointment-status`: the appointment id and
//! its two PRE public keys, nothing secret); the doctor's commands find them among the doctor's
//! own appointments (`getAllAppointment`) when no token is given.
//!
//! After a committed transaction the command waits (at most [`SYNC_TIMEOUT`]) until every
//! node of `network.json` holds its block, so that the next command, through any org's node,
//! sees it (`--no-sync` skips this). A refusal by the contract is printed with the node's
//! error text and the command exits with status 1; a transaction that committed as invalid
//! exits with status 3.
//!
//! `--json` prints, per call, `{"function", "tx_id", "block", "code", "response", "opened"}`:
//! the contract's response as JSON (byte strings as hex) and what the client opened.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use serde_json::json;
use sphr_contracts::Contract;
use sphr_contracts::healthcare::client::{self as hc, BillAmount, Field, Request};
use sphr_contracts::healthcare::{self as h, Identity as Who};
use sphr_crypto::cert::Role;
use sphr_crypto::hash::Hash32;
use sphr_crypto::pre::PreSecretKey;

use super::{ClientArgs, ClientCtx, split_name};
use crate::client::{Client, ClientError, make_proposal};
use crate::genesis::NetworkManifest;
use crate::identity::Identity;

/// Longest wait, after a commit, for every node to hold the block.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
/// How many days the doctor's commands search for an appointment when no `--day` is given:
/// from yesterday to this many days ahead.
pub const DOCTOR_SEARCH_DAYS: u64 = 60;
/// Most pages one listing command fetches.
const MAX_PAGES: usize = 50;
/// Largest token file read.
const MAX_TOKEN_BYTES: u64 = 16 * 1024;
/// Exit status of a transaction that committed with a validation code other than VALID.
const EXIT_INVALID: u8 = 3;

/// The options every `hc` subcommand takes.
#[derive(Args, Clone)]
pub struct Common {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Do not wait, after a commit, for every node of network.json to hold the block.
    #[arg(long)]
    pub no_sync: bool,
}

/// A subcommand's own flags, with the common ones.
#[derive(Args)]
pub struct Cmd<T: Args> {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub args: T,
}

/// The healthcare subcommands; `[role]` says who calls each.
#[derive(Subcommand)]
pub enum HcCommand {
    /// [anyone] Register the caller with the contract, role and PRE key from its certificate
    /// (registerUser; needed once before anything else).
    RegisterUser(Cmd<RegisterUserArgs>),
    /// [anyone registered] List an org's registered users and their PRE keys (getOrgUsers).
    GetOrgUsers(Cmd<OrgUsersArgs>),
    /// [patient] Ask a doctor for an appointment; notes are sealed to the doctor's PRE key
    /// (requestAppointment).
    RequestAppointment(Cmd<RequestAppointmentArgs>),
    /// [patient] An appointment, its prescription and who asked for it (getAppointmentStatus).
    GetAppointmentStatus(Cmd<StatusArgs>),
    /// [patient] Ask an insurer for a plan (registerInsurance).
    RegisterInsurance(Cmd<RegisterInsuranceArgs>),
    /// [patient] A plan's status (registerInsuranceRequestStatus).
    RegisterInsuranceRequestStatus(Cmd<PlanArg>),
    /// [patient] An appointment's bills not yet received, amounts opened
    /// (getPendingPaymentRequests).
    GetPendingPaymentRequests(Cmd<AppointmentArg>),
    /// [patient] Every bill of an appointment, amounts opened (getBillStatusPatient).
    GetBillStatusPatient(Cmd<AppointmentArg>),
    /// [patient] Mark bills paid: GENERATED -> PAYMENT_SENT (payBill, Case I).
    PayBill(Cmd<PatientBillsArgs>),
    /// [patient] Approve bills for the insurer, with a re-encryption key of the amount to the
    /// insurer's PRE key: GENERATED -> APPROVED (approvePaymentRequest, Case II).
    ApprovePaymentRequest(Cmd<PatientBillsArgs>),
    /// [patient] Fetch a PAID prescription and open the dosage (getPrescriptionPatient).
    GetPrescriptionPatient(Cmd<AppointmentArg>),
    /// [patient] Let a requester read the prescription: makes the re-encryption key from the
    /// patient's PRE secret key to the requester's PRE key (allowPrescriptionOthers).
    AllowPrescriptionOthers(Cmd<AllowArgs>),
    /// [doctor] The caller's appointments of one day, notes opened (getAllAppointment).
    GetAllAppointment(Cmd<DayArgs>),
    /// [doctor] Accept an appointment: REQUESTED -> ACCEPTED (acceptAppointment).
    AcceptAppointment(Cmd<AppointmentArg>),
    /// [doctor] Reject an appointment: REQUESTED -> REJECTED (rejectAppointment).
    RejectAppointment(Cmd<AppointmentArg>),
    /// [doctor] Open an empty prescription for an accepted appointment (generatePrescription).
    GeneratePrescription(Cmd<AppointmentArg>),
    /// [doctor] Write the dosage (sealed to the patient key) and bill (amount sealed to the
    /// billing key): the prescription becomes COMPLETE
    /// (generateBillAndUpdatePrescriptionDoctor).
    #[command(visible_alias = "prescribe")]
    GenerateBillAndUpdatePrescriptionDoctor(Cmd<DoctorBillArgs>),
    /// [doctor] Unlock a COMPLETE prescription whose bills are all PAYMENT_RECEIVED: -> PAID
    /// (markPrescriptionPaid).
    MarkPrescriptionPaid(Cmd<AppointmentArg>),
    /// [lab, pharmacist] Add a lab report (sealed to the patient key) with its bill, or a
    /// pharmacy bill; the amount is sealed to the billing key
    /// (generateBillAndUpdatePrescriptionOthers).
    #[command(visible_alias = "bill-others")]
    GenerateBillAndUpdatePrescriptionOthers(Cmd<OthersBillArgs>),
    /// [pharmacist, doctor, anyone but the patient] Ask the patient for the prescription
    /// (requestPrescriptionOthers).
    RequestPrescriptionOthers(Cmd<AppointmentArg>),
    /// [allowed requester] Fetch the dosage re-encrypted to the caller and open it; only once
    /// PAID (getPrescriptionOthers).
    GetPrescriptionOthers(Cmd<AppointmentArg>),
    /// [patient, allowed requester] The lab reports whose bills are received, opened
    /// (getLabReports).
    GetLabReports(Cmd<AppointmentArg>),
    /// [lab, doctor, pharmacist] Bills the caller issued (getBillStatus).
    GetBillStatus(Cmd<BillArgs>),
    /// [lab, doctor, pharmacist] Confirm a payment: PAYMENT_SENT -> PAYMENT_RECEIVED
    /// (confirmBillPayment).
    ConfirmBillPayment(Cmd<BillArgs>),
    /// [insurer] Plans asked of the caller's org on one day (getInsuranceRegistrationRequests).
    GetInsuranceRegistrationRequests(Cmd<DayArgs>),
    /// [insurer] Accept a plan with a member id (acceptInsuranceRegistrationRequest).
    AcceptInsuranceRegistrationRequest(Cmd<AcceptPlanArgs>),
    /// [insurer] Payment requests of the caller's org approved on one day
    /// (getInsurancePaymentRequests).
    GetInsurancePaymentRequests(Cmd<DayArgs>),
    /// [insurer] An approved bill with its amount re-encrypted to the caller, opened
    /// (getBillStatusInsurance).
    GetBillStatusInsurance(Cmd<BillArgs>),
    /// [insurer] Pay APPROVED bills: -> PAYMENT_SENT; with no --bill, every unpaid request of
    /// --day (payInsurancePaymentRequests).
    PayInsurancePaymentRequests(Cmd<InsurerPayArgs>),
}

#[derive(Args)]
pub struct RegisterUserArgs {
    /// A PRE public key (hex) for a certificate that carries none.
    #[arg(long)]
    pub pre_public_key: Option<String>,
}

#[derive(Args)]
pub struct OrgUsersArgs {
    /// The org.
    #[arg(long)]
    pub org: String,
    /// Start after this subject id.
    #[arg(long)]
    pub after: Option<String>,
    /// Page size (at most 100).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Args)]
pub struct RequestAppointmentArgs {
    /// The doctor, `name@org`.
    #[arg(long)]
    pub doctor: String,
    /// A code for the reason (A-Z a-z 0-9 . _ - :), stored in clear.
    #[arg(long)]
    pub disease: String,
    /// When, Unix ms. Default: this time tomorrow.
    #[arg(long)]
    pub time_ms: Option<u64>,
    /// Free-text notes, sealed to the doctor's PRE key.
    #[arg(long)]
    pub notes: Option<String>,
    /// An ACCEPTED insurance plan of the caller (Case II).
    #[arg(long)]
    pub plan: Option<String>,
    /// Seal this appointment's dosage and lab reports to this PRE key (hex) instead of the
    /// caller's (this CLI can then not open them).
    #[arg(long)]
    pub patient_key: Option<String>,
    /// Seal this appointment's amounts to this PRE key (hex). Default: the patient key.
    #[arg(long)]
    pub billing_key: Option<String>,
    /// Write the appointment's token (id and keys) to this file, for labs and pharmacies.
    #[arg(long)]
    pub token_out: Option<PathBuf>,
}

#[derive(Args)]
pub struct AppointmentArg {
    /// The appointment (prescription) id, hex.
    #[arg(long, required_unless_present = "token")]
    pub appointment: Option<String>,
    /// A token file from the patient, instead of --appointment.
    #[arg(long)]
    pub token: Option<PathBuf>,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: AppointmentArg,
    /// Write the appointment's token (id and keys) to this file, for labs and pharmacies.
    #[arg(long)]
    pub token_out: Option<PathBuf>,
}

#[derive(Args)]
pub struct PlanArg {
    /// The insurance plan id, hex.
    #[arg(long)]
    pub plan: String,
}

#[derive(Args)]
pub struct RegisterInsuranceArgs {
    /// The insurance company's org.
    #[arg(long)]
    pub insurer: String,
    /// The plan type, a code.
    #[arg(long)]
    pub plan_type: String,
}

#[derive(Args)]
pub struct PatientBillsArgs {
    /// A bill id (hex); repeat for several.
    #[arg(long = "bill", required_unless_present = "appointment")]
    pub bills: Vec<String>,
    /// Instead of --bill: every GENERATED bill of this appointment (covered ones, for
    /// approve-payment-request).
    #[arg(long)]
    pub appointment: Option<String>,
}

#[derive(Args)]
pub struct AllowArgs {
    #[command(flatten)]
    pub target: AppointmentArg,
    /// Who asked, `name@org`.
    #[arg(long)]
    pub requester: String,
}

#[derive(Args)]
pub struct DayArgs {
    /// UTC day, days since 1970-01-01. Default: today.
    #[arg(long)]
    pub day: Option<u64>,
    /// Start after this id (the `next` of the previous page).
    #[arg(long)]
    pub after: Option<String>,
    /// Page size (at most 100).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Args)]
pub struct SealTarget {
    /// The appointment id, hex (the doctor's commands find its keys among the doctor's
    /// appointments).
    #[arg(long, required_unless_present = "token")]
    pub appointment: Option<String>,
    /// The patient's token file: appointment id and the keys to seal to.
    #[arg(long)]
    pub token: Option<PathBuf>,
    /// The UTC day of the appointment, to find it faster (doctor, without --token).
    #[arg(long)]
    pub day: Option<u64>,
}

#[derive(Args)]
pub struct DoctorBillArgs {
    #[command(flatten)]
    pub target: SealTarget,
    /// The dosage, sealed to the appointment's patient key.
    #[arg(long)]
    pub dosage: String,
    /// The amount, e.g. 50.00 (two decimals at most), sealed to the billing key.
    #[arg(long)]
    pub amount: String,
    /// ISO 4217 currency code.
    #[arg(long, default_value = "EUR")]
    pub currency: String,
}

#[derive(Args)]
pub struct OthersBillArgs {
    #[command(flatten)]
    pub target: SealTarget,
    /// The lab report (labs), sealed to the appointment's patient key. Pharmacists omit it.
    #[arg(long)]
    pub report: Option<String>,
    /// The amount, e.g. 30.00 (two decimals at most), sealed to the billing key.
    #[arg(long)]
    pub amount: String,
    /// ISO 4217 currency code.
    #[arg(long, default_value = "EUR")]
    pub currency: String,
}

#[derive(Args)]
pub struct BillArgs {
    /// A bill id (hex); repeat for several.
    #[arg(long = "bill", required = true)]
    pub bills: Vec<String>,
}

#[derive(Args)]
pub struct AcceptPlanArgs {
    /// The plan id, hex.
    #[arg(long)]
    pub plan: String,
    /// The member id allocated, a code.
    #[arg(long)]
    pub member_id: String,
}

#[derive(Args)]
pub struct InsurerPayArgs {
    /// A bill id (hex); repeat for several. Default: every unpaid request of --day.
    #[arg(long = "bill")]
    pub bills: Vec<String>,
    /// UTC day of the approvals, with no --bill. Default: today.
    #[arg(long)]
    pub day: Option<u64>,
}

/// What the patient hands to labs and pharmacies: the appointment (the thesis's token) and the
/// two PRE public keys its fields are sealed to. Nothing in it is secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// The appointment id (hex).
    pub appointment_id: String,
    /// The key dosage and lab reports are sealed to (hex).
    pub patient_pre_public_key: String,
    /// The key amounts are sealed to (hex).
    pub billing_pre_public_key: String,
}

impl Token {
    fn of(a: &h::Appointment) -> Token {
        Token {
            appointment_id: a.appointment_id.to_hex(),
            patient_pre_public_key: hex::encode(&a.patient_pre_public_key),
            billing_pre_public_key: hex::encode(&a.billing_pre_public_key),
        }
    }

    fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
    }

    fn read(path: &Path) -> Result<Token> {
        use std::io::Read;
        let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut text = String::new();
        f.take(MAX_TOKEN_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("read {}", path.display()))?;
        if text.len() as u64 > MAX_TOKEN_BYTES {
            bail!(
                "token file {} is over {MAX_TOKEN_BYTES} bytes",
                path.display()
            );
        }
        serde_json::from_str(&text)
            .with_context(|| format!("token file {} is not a token", path.display()))
    }
}

/// The keys of an appointment, for sealing.
struct Keys {
    id: Hash32,
    patient: Vec<u8>,
    billing: Vec<u8>,
}

impl Keys {
    fn from_token(t: &Token) -> Result<Keys> {
        let decode = |what: &str, s: &str| -> Result<Vec<u8>> {
            let b = hex::decode(s).map_err(|_| anyhow!("the token's {what} is not hex"))?;
            hc::pre_key(&b).map_err(|e| anyhow!("the token's {what}: {e}"))?;
            Ok(b)
        };
        Ok(Keys {
            id: parse_id("the token's appointment_id", &t.appointment_id)?,
            patient: decode("patient_pre_public_key", &t.patient_pre_public_key)?,
            billing: decode("billing_pre_public_key", &t.billing_pre_public_key)?,
        })
    }
}

fn parse_id(what: &str, s: &str) -> Result<Hash32> {
    Hash32::from_hex(s.trim()).map_err(|_| anyhow!("{what}: expected 64 hex characters"))
}

fn parse_who(what: &str, s: &str) -> Result<Who> {
    match split_name(s) {
        (n, Some(o)) if !n.is_empty() && !o.is_empty() => Ok(Who::new(o, n)),
        _ => bail!("{what} {s:?}: expected name@org"),
    }
}

/// An amount such as `30`, `30.5` or `30.05`, in minor units (cents).
pub fn parse_amount(s: &str) -> Result<u64> {
    let bad = || anyhow!("--amount {s:?}: expected a number with at most two decimals, e.g. 30.00");
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty()
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (s.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let frac: u64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u64>().map_err(|_| bad())? * 10,
        _ => frac.parse().map_err(|_| bad())?,
    };
    whole
        .checked_mul(100)
        .and_then(|c| c.checked_add(frac))
        .ok_or_else(|| anyhow!("--amount {s:?} is too large"))
}

fn amount(cents: u64, currency: &str) -> Result<BillAmount> {
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        bail!("--currency {currency:?}: expected an ISO 4217 code such as EUR");
    }
    Ok(BillAmount {
        minor_units: cents,
        currency: currency.to_string(),
    })
}

struct Money<'a>(&'a BillAmount);

impl fmt::Display for Money<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:02} {}",
            self.0.minor_units / 100,
            self.0.minor_units % 100,
            self.0.currency
        )
    }
}

fn today() -> u64 {
    h::day_of(crate::now_ms())
}

// ---------------------------------------------------------------------------------------------
// CBOR response -> JSON, byte strings as hex
// ---------------------------------------------------------------------------------------------

/// A CBOR value read into JSON, byte strings written as hex.
struct Json(serde_json::Value);

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CBOR value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Json, E> {
        Ok(Json(v.into()))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Json, E> {
        Ok(Json(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Json, E> {
        Ok(Json(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> std::result::Result<Json, E> {
        Ok(Json(v.to_string().into()))
    }
    fn visit_u128<E>(self, v: u128) -> std::result::Result<Json, E> {
        Ok(Json(v.to_string().into()))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Json, E> {
        Ok(Json(
            serde_json::Number::from_f64(v)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
        ))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Json, E> {
        Ok(Json(v.into()))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<Json, E> {
        Ok(Json(hex::encode(v).into()))
    }
    fn visit_none<E>(self) -> std::result::Result<Json, E> {
        Ok(Json(serde_json::Value::Null))
    }
    fn visit_unit<E>(self) -> std::result::Result<Json, E> {
        Ok(Json(serde_json::Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Json, D::Error> {
        Json::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Json, A::Error> {
        let mut out = Vec::new();
        while let Some(Json(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json(out.into()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Json, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some((Json(k), Json(v))) = map.next_entry()? {
            let k = match k {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(k, v);
        }
        Ok(Json(out.into()))
    }
}

fn to_json(payload: &[u8]) -> serde_json::Value {
    match sphr_crypto::cbor::from_slice::<Json>(payload, hc::MAX_RESPONSE_BYTES) {
        Ok(Json(v)) => v,
        Err(_) => json!({ "cbor_hex": hex::encode(payload) }),
    }
}

// ---------------------------------------------------------------------------------------------
// A session: one identity talking to one node
// ---------------------------------------------------------------------------------------------

/// A call's result: the decoded response, its CBOR, and the transaction if it was one.
struct Outcome<T> {
    function: &'static str,
    resp: T,
    payload: Vec<u8>,
    tx: Option<(String, u64, String)>,
}

struct Session {
    ctx: ClientCtx,
    me: Identity,
    network_id: Hash32,
    json: bool,
    sync: bool,
    /// Every node of network.json, for the wait after a commit.
    peers: Vec<Client>,
}

impl Session {
    fn new(common: &Common) -> Result<Session> {
        let mut args = common.client.clone();
        let manifest_path = args.network.join("network.json");
        let manifest = if manifest_path.is_file() {
            Some(NetworkManifest::load(&manifest_path)?)
        } else {
            None
        };
        // Default node: the user's org's node.
        if let (None, Some(user), Some(m)) = (&args.node, &args.user, &manifest) {
            let (n, o) = split_name(user);
            let org = match o {
                Some(o) => Some(o.to_string()),
                None => m.users.iter().find(|u| u.name == n).map(|u| u.org.clone()),
            };
            if let Some(node) = org.and_then(|org| m.nodes.iter().find(|x| x.org == org)) {
                args.node = Some(format!("{}@{}", node.name, node.org));
            }
        }
        let ctx = ClientCtx::new(&args)?;
        let me = ctx.identity()?;
        let mut peers = Vec::new();
        if let Some(m) = &manifest
            && !common.no_sync
        {
            let ca = args
                .ca
                .clone()
                .unwrap_or_else(|| args.network.join("tls-ca.pem"));
            let tls: Arc<_> = crate::tls::client_config(&ca)?;
            for n in &m.nodes {
                peers.push(
                    Client::new(&format!("https://{}", n.api_addr), tls.clone())?
                        .with_timeout(Duration::from_secs(5)),
                );
            }
        }
        let network_id = match &manifest {
            Some(m) => Hash32::from_hex(&m.network_id)?,
            None => Hash32::ZERO,
        };
        Ok(Session {
            ctx,
            me,
            network_id,
            json: args.json,
            sync: !common.no_sync,
            peers,
        })
    }

    async fn init(mut self) -> Result<Session> {
        if self.network_id == Hash32::ZERO {
            self.network_id = self.ctx.network_id().await?;
        }
        Ok(self)
    }

    fn who(&self) -> Who {
        Who::new(&self.me.cert.body.org, &self.me.cert.body.subject)
    }

    fn role(&self) -> Role {
        self.me.cert.body.role
    }

    fn sk(&self) -> Result<&PreSecretKey> {
        self.me
            .pre
            .as_ref()
            .ok_or_else(|| anyhow!("identity {} has no PRE key", self.me.name()))
    }

    /// Whether the caller holds the secret of PRE public key `key`.
    fn holds(&self, key: &[u8]) -> bool {
        self.me.pre.is_some() && self.me.cert.body.pre_public_key.as_deref() == Some(key)
    }

    /// Runs `req`: evaluated if a query, else submitted and waited for.
    async fn call<R: Request>(&self, req: &R) -> Result<Outcome<R::Response>> {
        let (f, args) = hc::call(req)?;
        let (_, sp) = make_proposal(&self.me, self.network_id, h::NAME, f, &args)?;
        let refused = |e: ClientError| match e {
            ClientError::Api {
                status,
                error,
                message,
            } => anyhow!("{f} refused by the node ({status} {error}): {message}"),
            other => anyhow!("{f}: {other}"),
        };
        let (hex_out, tx) = if h::HealthcareContract.is_query(f) {
            let r = self.ctx.client.query(&sp).await.map_err(refused)?;
            (r.response_hex, None)
        } else {
            let r = self.ctx.client.submit(&sp, true).await.map_err(refused)?;
            let (block, code) = match (r.block, r.code.clone()) {
                (Some(b), Some(c)) => (b, c),
                _ => bail!(
                    "{f}: tx {} {} but not reported committed",
                    r.tx_id,
                    r.status
                ),
            };
            if code != "VALID" {
                return Err(anyhow!(Invalid {
                    function: f,
                    tx_id: r.tx_id,
                    block,
                    code
                }));
            }
            self.sync_to(block).await;
            (r.response_hex, Some((r.tx_id, block, code)))
        };
        let payload =
            hex::decode(&hex_out).map_err(|_| anyhow!("{f}: the node's response is not hex"))?;
        let resp = hc::response::<R>(&payload)
            .map_err(|e| anyhow!("{f}: the node's response does not decode: {e}"))?;
        Ok(Outcome {
            function: f,
            resp,
            payload,
            tx,
        })
    }

    /// Waits until every node of network.json holds block `block` (bounded; a node that does
    /// not answer is skipped with a warning).
    async fn sync_to(&self, block: u64) {
        if !self.sync {
            return;
        }
        let deadline = Instant::now() + SYNC_TIMEOUT;
        for c in &self.peers {
            loop {
                match c.status().await {
                    Ok(s) if s.height >= block => break,
                    Ok(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Ok(s) => {
                        eprintln!(
                            "warning: node {} is at height {} after {} s, block {block} not there yet",
                            c.addr(),
                            s.height,
                            SYNC_TIMEOUT.as_secs()
                        );
                        break;
                    }
                    Err(e) => {
                        eprintln!("warning: node {} not checked: {e}", c.addr());
                        break;
                    }
                }
            }
        }
    }

    /// Prints a call's outcome: JSON, or a line about the transaction and `lines`.
    fn show<T>(&self, o: &Outcome<T>, lines: &[String], opened: serde_json::Value) -> Result<()> {
        if self.json {
            let mut v = json!({
                "function": o.function,
                "response": to_json(&o.payload),
                "opened": opened,
            });
            if let (Some((tx, block, code)), Some(m)) = (&o.tx, v.as_object_mut()) {
                m.insert("tx_id".into(), tx.clone().into());
                m.insert("block".into(), (*block).into());
                m.insert("code".into(), code.clone().into());
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            if let Some((tx, block, code)) = &o.tx {
                println!("{}: tx {tx} committed in block {block}: {code}", o.function);
            }
            for l in lines {
                println!("{l}");
            }
        }
        Ok(())
    }

    /// The appointment's keys: from the token, or (doctor) from the doctor's appointments.
    async fn keys(&self, t: &SealTarget) -> Result<Keys> {
        let given = t
            .appointment
            .as_deref()
            .map(|s| parse_id("--appointment", s))
            .transpose()?;
        if let Some(path) = &t.token {
            let k = Keys::from_token(&Token::read(path)?)?;
            if given.is_some_and(|g| g != k.id) {
                bail!("--appointment differs from the appointment of --token");
            }
            return Ok(k);
        }
        let id = given.ok_or_else(|| anyhow!("pass --appointment or --token"))?;
        if self.role() != Role::Doctor {
            bail!(
                "pass --token FILE: the patient's token (`hc get-appointment-status --token-out FILE`) \
                 holds the keys to seal to"
            );
        }
        let days: Vec<u64> = match t.day {
            Some(d) => vec![d],
            None => {
                let d = today();
                (d.saturating_sub(1)..=d + DOCTOR_SEARCH_DAYS).collect()
            }
        };
        for day in days.iter().copied() {
            let mut after = None;
            for _ in 0..MAX_PAGES {
                let page = self
                    .call(&h::GetAllAppointment {
                        day,
                        after,
                        limit: None,
                    })
                    .await?
                    .resp;
                if let Some(a) = page.appointments.iter().find(|a| a.appointment_id == id) {
                    return Ok(Keys {
                        id,
                        patient: a.patient_pre_public_key.to_vec(),
                        billing: a.billing_pre_public_key.to_vec(),
                    });
                }
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        bail!(
            "appointment {id} is not among {}'s appointments of days {}..={}: pass --day or --token",
            self.me.name(),
            days.first().copied().unwrap_or_default(),
            days.last().copied().unwrap_or_default()
        )
    }
}

/// A transaction that committed with a code other than VALID (exit status 3).
#[derive(Debug)]
struct Invalid {
    function: &'static str,
    tx_id: String,
    block: u64,
    code: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: tx {} committed in block {} as {}: it changed nothing",
            self.function, self.tx_id, self.block, self.code
        )
    }
}

impl std::error::Error for Invalid {}

fn appointment_id(a: &AppointmentArg) -> Result<Hash32> {
    match (&a.appointment, &a.token) {
        (Some(s), _) => parse_id("--appointment", s),
        (None, Some(p)) => parse_id(
            "the token's appointment_id",
            &Token::read(p)?.appointment_id,
        ),
        (None, None) => bail!("pass --appointment or --token"),
    }
}

fn bill_ids(v: &[String]) -> Result<Vec<Hash32>> {
    v.iter().map(|s| parse_id("--bill", s)).collect()
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

fn appointment_lines(a: &h::Appointment) -> Vec<String> {
    let mut out = vec![format!(
        "appointment {} {}: patient {}, doctor {}, time {} ms, {}",
        a.appointment_id,
        a.status,
        a.patient,
        a.doctor,
        a.requested_time_ms,
        a.disease_classification
    )];
    out.push(match &a.coverage {
        Some(c) => format!(
            "  covered by plan {} of {} (member {})",
            c.plan_id, c.insurer, c.allocated_insurance_id
        ),
        None => "  not covered: the patient pays (Case I)".into(),
    });
    out
}

impl Session {
    /// A bill's line, the amount opened when the caller holds its key.
    fn bill_line(&self, b: &h::Bill, opened: &mut BTreeMap<String, String>) -> String {
        let amount = match self
            .sk_opt()
            .map(|sk| hc::open_amount(sk, &b.appointment_id, &b.amount))
        {
            Some(Ok(a)) => {
                let m = Money(&a).to_string();
                opened.insert(b.bill_id.to_hex(), m.clone());
                m
            }
            _ => "(sealed)".into(),
        };
        format!(
            "bill {} {:?} {}: issued by {}, amount {amount}{}",
            b.bill_id,
            b.kind,
            b.status,
            b.issuer,
            if b.approval.is_some() {
                ", approved for the insurer"
            } else {
                ""
            }
        )
    }

    fn sk_opt(&self) -> Option<&PreSecretKey> {
        self.me.pre.as_ref()
    }
}

// ---------------------------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------------------------

/// Runs one `hc` subcommand.
pub async fn run(cmd: HcCommand) -> Result<ExitCode> {
    let r = dispatch(cmd).await;
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => match e.downcast_ref::<Invalid>() {
            Some(i) => {
                eprintln!("error: {i}");
                Ok(ExitCode::from(EXIT_INVALID))
            }
            None => Err(e),
        },
    }
}

async fn session(c: &Common) -> Result<Session> {
    Session::new(c)?.init().await
}

async fn dispatch(cmd: HcCommand) -> Result<()> {
    use HcCommand as C;
    match cmd {
        C::RegisterUser(c) => {
            let s = session(&c.common).await?;
            let key = c
                .args
                .pre_public_key
                .as_deref()
                .map(|k| -> Result<ByteBuf> {
                    let b =
                        hex::decode(k).map_err(|_| anyhow!("--pre-public-key: expected hex"))?;
                    hc::pre_key(&b).map_err(|e| anyhow!("--pre-public-key: {e}"))?;
                    Ok(ByteBuf::from(b))
                })
                .transpose()?;
            let o = s
                .call(&h::RegisterUser {
                    pre_public_key: key,
                })
                .await?;
            let u = &o.resp;
            let line = format!(
                "registered {} as {}{}",
                u.user,
                u.role.as_str(),
                if u.pre_public_key.is_some() {
                    ", with a PRE key"
                } else {
                    ", without a PRE key"
                }
            );
            s.show(&o, &[line], json!({}))
        }
        C::GetOrgUsers(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::GetOrgUsers {
                    org: c.args.org.clone(),
                    after: c.args.after.clone(),
                    limit: c.args.limit,
                })
                .await?;
            let mut lines: Vec<String> = o
                .resp
                .users
                .iter()
                .map(|u| {
                    format!(
                        "{} {}{}",
                        u.user,
                        u.role.as_str(),
                        if u.pre_public_key.is_some() {
                            " (PRE key)"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            if let Some(n) = &o.resp.next {
                lines.push(format!("more after {n} (--after {n})"));
            }
            s.show(&o, &lines, json!({}))
        }
        C::RequestAppointment(c) => request_appointment(c).await,
        C::GetAppointmentStatus(c) => {
            let s = session(&c.common).await?;
            let id = appointment_id(&c.args.target)?;
            let o = s
                .call(&h::GetAppointmentStatus { appointment_id: id })
                .await?;
            let r = &o.resp;
            let mut lines = appointment_lines(&r.appointment);
            match &r.prescription {
                Some(p) => lines.push(format!(
                    "  prescription {} by {}: {} lab report(s), {} bill(s)",
                    p.status,
                    p.doctor,
                    p.lab_reports.len(),
                    p.bill_ids.len()
                )),
                None => lines.push("  no prescription yet".into()),
            }
            for d in &r.delegations {
                lines.push(format!(
                    "  request by {} ({}): {}, fetched {} time(s)",
                    d.requester,
                    d.requester_role.as_str(),
                    d.status,
                    d.fetches
                ));
            }
            if let Some(p) = &c.args.token_out {
                Token::of(&r.appointment).write(p)?;
                lines.push(format!("  token written to {}", p.display()));
            }
            s.show(&o, &lines, json!({}))
        }
        C::RegisterInsurance(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::RegisterInsurance {
                    insurer: c.args.insurer.clone(),
                    plan_type: c.args.plan_type.clone(),
                })
                .await?;
            let lines = plan_lines(&o.resp);
            s.show(&o, &lines, json!({}))
        }
        C::RegisterInsuranceRequestStatus(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::RegisterInsuranceRequestStatus {
                    plan_id: parse_id("--plan", &c.args.plan)?,
                })
                .await?;
            let lines = plan_lines(&o.resp);
            s.show(&o, &lines, json!({}))
        }
        C::GetPendingPaymentRequests(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::GetPendingPaymentRequests {
                    appointment_id: appointment_id(&c.args)?,
                })
                .await?;
            s.show_bills(&o, &o.resp.bills)
        }
        C::GetBillStatusPatient(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::GetBillStatusPatient {
                    appointment_id: appointment_id(&c.args)?,
                })
                .await?;
            s.show_bills(&o, &o.resp.bills)
        }
        C::PayBill(c) => patient_bills(c, false).await,
        C::ApprovePaymentRequest(c) => patient_bills(c, true).await,
        C::GetPrescriptionPatient(c) => {
            let s = session(&c.common).await?;
            let id = appointment_id(&c.args)?;
            let o = s
                .call(&h::GetPrescriptionPatient { appointment_id: id })
                .await?;
            let rx = &o.resp;
            let mut lines = vec![format!(
                "prescription {} {} by {}: {} lab report(s), {} bill(s)",
                rx.appointment_id,
                rx.status,
                rx.doctor,
                rx.lab_reports.len(),
                rx.bill_ids.len()
            )];
            let mut opened = json!({});
            match &rx.dosage {
                Some(d) => match s.sk_opt().map(|sk| hc::open_dosage(sk, &id, d)) {
                    Some(Ok(text)) => {
                        let text = String::from_utf8_lossy(&text).into_owned();
                        lines.push(format!("  dosage: {text}"));
                        opened = json!({ "dosage": text });
                    }
                    _ => {
                        lines.push("  dosage: (sealed to a key this identity does not hold)".into())
                    }
                },
                None => lines.push("  no dosage".into()),
            }
            s.show(&o, &lines, opened)
        }
        C::AllowPrescriptionOthers(c) => {
            let s = session(&c.common).await?;
            let id = appointment_id(&c.args.target)?;
            let requester = parse_who("--requester", &c.args.requester)?;
            let sk = s.sk()?;
            // The requester's key as recorded in their request. Only the patient may read the
            // appointment; anyone else is refused by the node here, or, should they have the
            // key from elsewhere, by allowPrescriptionOthers itself.
            let (key, patient_key) = if s.role() == Role::Patient {
                let st = s
                    .call(&h::GetAppointmentStatus { appointment_id: id })
                    .await?
                    .resp;
                let d = st
                    .delegations
                    .iter()
                    .find(|d| d.requester == requester)
                    .ok_or_else(|| {
                        anyhow!("{requester} has not asked for this prescription (requestPrescriptionOthers)")
                    })?;
                (
                    d.requester_pre_public_key.clone(),
                    Some(st.appointment.patient_pre_public_key),
                )
            } else {
                // Not a patient: the request goes to the node as it is, with a key made from
                // the caller's own secret, and the contract refuses it.
                (ByteBuf::from(sk.public_key().to_bytes().to_vec()), None)
            };
            if let Some(pk) = &patient_key
                && !s.holds(pk)
            {
                bail!(
                    "this appointment's fields are sealed to a PRE key identity {} does not hold: \
                     cannot make the re-encryption key",
                    s.me.name()
                );
            }
            let rekey = hc::rekey(sk, &key)?;
            let o = s
                .call(&h::AllowPrescriptionOthers {
                    appointment_id: id,
                    requester,
                    requester_pre_public_key: key,
                    rekey,
                })
                .await?;
            let d = &o.resp;
            let line = format!(
                "request by {} on {}: {} (re-encryption key stored)",
                d.requester, d.appointment_id, d.status
            );
            s.show(&o, &[line], json!({}))
        }
        C::GetAllAppointment(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::GetAllAppointment {
                    day: c.args.day.unwrap_or_else(today),
                    after: c
                        .args
                        .after
                        .as_deref()
                        .map(|a| parse_id("--after", a))
                        .transpose()?,
                    limit: c.args.limit,
                })
                .await?;
            let mut lines = Vec::new();
            let mut opened = serde_json::Map::new();
            for a in &o.resp.appointments {
                lines.extend(appointment_lines(a));
                if let (Some(n), Some(sk)) = (&a.notes, s.sk_opt()) {
                    match hc::open_field(sk, Field::Notes, &Hash32::ZERO, n) {
                        Ok(t) => {
                            let t = String::from_utf8_lossy(&t).into_owned();
                            lines.push(format!("  notes: {t}"));
                            opened.insert(a.appointment_id.to_hex(), t.into());
                        }
                        Err(_) => lines.push("  notes: (sealed)".into()),
                    }
                }
            }
            if let Some(n) = &o.resp.next {
                lines.push(format!("more after {n} (--after {n})"));
            }
            s.show(&o, &lines, json!({ "notes": opened }))
        }
        C::AcceptAppointment(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::AcceptAppointment {
                    appointment_id: appointment_id(&c.args)?,
                })
                .await?;
            let lines = appointment_lines(&o.resp);
            s.show(&o, &lines, json!({}))
        }
        C::RejectAppointment(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::RejectAppointment {
                    appointment_id: appointment_id(&c.args)?,
                })
                .await?;
            let lines = appointment_lines(&o.resp);
            s.show(&o, &lines, json!({}))
        }
        C::GeneratePrescription(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::GeneratePrescription {
                    appointment_id: appointment_id(&c.args)?,
                })
                .await?;
            let line = format!(
                "prescription {} {} by {}",
                o.resp.appointment_id, o.resp.status, o.resp.doctor
            );
            s.show(&o, &[line], json!({}))
        }
        C::GenerateBillAndUpdatePrescriptionDoctor(c) => {
            let s = session(&c.common).await?;
            let amt = amount(parse_amount(&c.args.amount)?, &c.args.currency)?;
            let k = s.keys(&c.args.target).await?;
            let o = s
                .call(&h::GenerateBillAndUpdatePrescriptionDoctor {
                    appointment_id: k.id,
                    dosage: hc::seal_dosage(
                        &hc::pre_key(&k.patient)?,
                        &k.id,
                        c.args.dosage.as_bytes(),
                    )?,
                    amount: hc::seal_amount(&hc::pre_key(&k.billing)?, &k.id, &amt)?,
                })
                .await?;
            let lines = bill_generated_lines(&o.resp, &amt);
            s.show(&o, &lines, json!({}))
        }
        C::MarkPrescriptionPaid(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::MarkPrescriptionPaid {
                    appointment_id: appointment_id(&c.args)?,
                })
                .await?;
            let line = format!(
                "prescription {} {}: unlocked",
                o.resp.appointment_id, o.resp.status
            );
            s.show(&o, &[line], json!({}))
        }
        C::GenerateBillAndUpdatePrescriptionOthers(c) => {
            let s = session(&c.common).await?;
            let amt = amount(parse_amount(&c.args.amount)?, &c.args.currency)?;
            let k = s.keys(&c.args.target).await?;
            let report = c
                .args
                .report
                .as_deref()
                .map(|r| hc::seal_lab_report(&hc::pre_key(&k.patient)?, &k.id, r.as_bytes()))
                .transpose()?;
            let o = s
                .call(&h::GenerateBillAndUpdatePrescriptionOthers {
                    appointment_id: k.id,
                    lab_report: report,
                    amount: hc::seal_amount(&hc::pre_key(&k.billing)?, &k.id, &amt)?,
                })
                .await?;
            let lines = bill_generated_lines(&o.resp, &amt);
            s.show(&o, &lines, json!({}))
        }
        C::RequestPrescriptionOthers(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::RequestPrescriptionOthers {
                    appointment_id: appointment_id(&c.args)?,
                })
                .await?;
            let line = format!(
                "request by {} on {}: {}",
                o.resp.requester, o.resp.appointment_id, o.resp.status
            );
            s.show(&o, &[line], json!({}))
        }
        C::GetPrescriptionOthers(c) => {
            let s = session(&c.common).await?;
            let id = appointment_id(&c.args)?;
            let o = s
                .call(&h::GetPrescriptionOthers { appointment_id: id })
                .await?;
            let text = hc::open_dosage_reencrypted(s.sk()?, &id, &o.resp.dosage)
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .map_err(|e| {
                    anyhow!(
                        "the re-encrypted dosage does not open with this identity's PRE key: {e}"
                    )
                })?;
            let lines = vec![
                format!(
                    "prescription {} {} by {}",
                    o.resp.appointment_id, o.resp.status, o.resp.doctor
                ),
                format!("  dosage (re-encrypted to {}): {text}", s.who()),
            ];
            s.show(&o, &lines, json!({ "dosage": text }))
        }
        C::GetLabReports(c) => {
            let s = session(&c.common).await?;
            let id = appointment_id(&c.args)?;
            let o = s.call(&h::GetLabReports { appointment_id: id }).await?;
            let mut lines = Vec::new();
            let mut opened = Vec::new();
            for r in &o.resp.reports {
                let text = match (s.sk_opt(), o.resp.reencrypted) {
                    (Some(sk), true) => {
                        hc::open_field_reencrypted(sk, Field::LabReport, &id, &r.report).ok()
                    }
                    (Some(sk), false) => hc::open_field(sk, Field::LabReport, &id, &r.report).ok(),
                    (None, _) => None,
                }
                .map(|t| String::from_utf8_lossy(&t).into_owned());
                lines.push(format!(
                    "lab report {} by {}: {}",
                    r.reference.index,
                    r.reference.lab,
                    text.as_deref().unwrap_or("(sealed)")
                ));
                opened.push(json!(text));
            }
            lines.push(format!(
                "{} report(s) still locked (bill not received)",
                o.resp.locked
            ));
            s.show(&o, &lines, json!({ "reports": opened }))
        }
        C::GetBillStatus(c) => {
            let s = session(&c.common).await?;
            for id in bill_ids(&c.args.bills)? {
                let o = s.call(&h::GetBillStatus { bill_id: id }).await?;
                let mut opened = BTreeMap::new();
                let line = s.bill_line(&o.resp, &mut opened);
                s.show(&o, &[line], json!({ "amounts": opened }))?;
            }
            Ok(())
        }
        C::ConfirmBillPayment(c) => {
            let s = session(&c.common).await?;
            for id in bill_ids(&c.args.bills)? {
                let o = s.call(&h::ConfirmBillPayment { bill_id: id }).await?;
                let line = format!("bill {} {}", o.resp.bill_id, o.resp.status);
                s.show(&o, &[line], json!({}))?;
            }
            Ok(())
        }
        C::GetInsuranceRegistrationRequests(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::GetInsuranceRegistrationRequests {
                    day: c.args.day.unwrap_or_else(today),
                    after: c
                        .args
                        .after
                        .as_deref()
                        .map(|a| parse_id("--after", a))
                        .transpose()?,
                    limit: c.args.limit,
                })
                .await?;
            let mut lines: Vec<String> = o.resp.plans.iter().flat_map(plan_lines).collect();
            if let Some(n) = &o.resp.next {
                lines.push(format!("more after {n} (--after {n})"));
            }
            s.show(&o, &lines, json!({}))
        }
        C::AcceptInsuranceRegistrationRequest(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::AcceptInsuranceRegistrationRequest {
                    plan_id: parse_id("--plan", &c.args.plan)?,
                    allocated_insurance_id: c.args.member_id.clone(),
                })
                .await?;
            let lines = plan_lines(&o.resp);
            s.show(&o, &lines, json!({}))
        }
        C::GetInsurancePaymentRequests(c) => {
            let s = session(&c.common).await?;
            let o = s
                .call(&h::GetInsurancePaymentRequests {
                    day: c.args.day.unwrap_or_else(today),
                    after: c
                        .args
                        .after
                        .as_deref()
                        .map(|a| parse_id("--after", a))
                        .transpose()?,
                    limit: c.args.limit,
                })
                .await?;
            let mut lines: Vec<String> = o
                .resp
                .requests
                .iter()
                .map(|r| {
                    format!(
                        "payment request for bill {} (appointment {}), member {} of plan {}: {}",
                        r.bill_id,
                        r.appointment_id,
                        r.allocated_insurance_id,
                        r.plan_id,
                        if r.paid_ms.is_some() {
                            "paid"
                        } else {
                            "unpaid"
                        }
                    )
                })
                .collect();
            if let Some(n) = &o.resp.next {
                lines.push(format!("more after {n} (--after {n})"));
            }
            s.show(&o, &lines, json!({}))
        }
        C::GetBillStatusInsurance(c) => {
            let s = session(&c.common).await?;
            for id in bill_ids(&c.args.bills)? {
                let o = s.call(&h::GetBillStatusInsurance { bill_id: id }).await?;
                let b = &o.resp.bill;
                let amt = hc::open_amount_reencrypted(s.sk()?, &b.appointment_id, &o.resp.amount)
                    .map_err(|e| {
                    anyhow!(
                        "the re-encrypted amount does not open with this identity's PRE key: {e}"
                    )
                })?;
                let m = Money(&amt).to_string();
                let line = format!(
                    "bill {} {:?} {}: issued by {}, amount {m} (re-encrypted to {})",
                    b.bill_id,
                    b.kind,
                    b.status,
                    b.issuer,
                    s.who()
                );
                s.show(&o, &[line], json!({ "amount": m }))?;
            }
            Ok(())
        }
        C::PayInsurancePaymentRequests(c) => {
            let s = session(&c.common).await?;
            let mut ids = bill_ids(&c.args.bills)?;
            if ids.is_empty() {
                let day = c.args.day.unwrap_or_else(today);
                let mut after = None;
                for _ in 0..MAX_PAGES {
                    let page = s
                        .call(&h::GetInsurancePaymentRequests {
                            day,
                            after,
                            limit: None,
                        })
                        .await?
                        .resp;
                    ids.extend(
                        page.requests
                            .iter()
                            .filter(|r| r.paid_ms.is_none())
                            .map(|r| r.bill_id),
                    );
                    match page.next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                if ids.is_empty() {
                    bail!(
                        "no unpaid payment request of day {day} for {}",
                        s.me.cert.body.org
                    );
                }
            }
            for chunk in ids.chunks(h::MAX_PAY_BATCH) {
                let o = s
                    .call(&h::PayInsurancePaymentRequests {
                        bill_ids: chunk.to_vec(),
                    })
                    .await?;
                let lines: Vec<String> = o
                    .resp
                    .bills
                    .iter()
                    .map(|b| format!("bill {} {}", b.bill_id, b.status))
                    .collect();
                s.show(&o, &lines, json!({}))?;
            }
            Ok(())
        }
    }
}

fn plan_lines(p: &h::InsurancePlan) -> Vec<String> {
    vec![format!(
        "plan {} {} of {} for {}: type {}{}",
        p.plan_id,
        p.status,
        p.insurer,
        p.patient,
        p.plan_type,
        match (&p.allocated_insurance_id, &p.accepted_by) {
            (Some(m), Some(by)) => format!(", member {m}, accepted by {by}"),
            _ => String::new(),
        }
    )]
}

fn bill_generated_lines(g: &h::BillGenerated, amt: &BillAmount) -> Vec<String> {
    let mut out = vec![format!(
        "bill {} {:?} {} for {} (sealed to the billing key)",
        g.bill.bill_id,
        g.bill.kind,
        g.bill.status,
        Money(amt)
    )];
    if let Some(i) = g.lab_report_index {
        out.push(format!("  lab report {i} added, sealed to the patient key"));
    }
    out.push(format!(
        "  prescription {} is {}",
        g.bill.appointment_id, g.prescription_status
    ));
    out
}

impl Session {
    fn show_bills<T>(&self, o: &Outcome<T>, bills: &[h::Bill]) -> Result<()> {
        let mut opened = BTreeMap::new();
        let mut lines: Vec<String> = bills
            .iter()
            .map(|b| self.bill_line(b, &mut opened))
            .collect();
        if bills.is_empty() {
            lines.push("no bills".into());
        }
        self.show(o, &lines, json!({ "amounts": opened }))
    }
}

async fn request_appointment(c: Cmd<RequestAppointmentArgs>) -> Result<()> {
    let s = session(&c.common).await?;
    let a = &c.args;
    let doctor = parse_who("--doctor", &a.doctor)?;
    let key_arg = |what: &str, v: &Option<String>| -> Result<Option<ByteBuf>> {
        v.as_deref()
            .map(|k| {
                let b = hex::decode(k).map_err(|_| anyhow!("{what}: expected hex"))?;
                hc::pre_key(&b).map_err(|e| anyhow!("{what}: {e}"))?;
                Ok(ByteBuf::from(b))
            })
            .transpose()
    };
    let notes = match &a.notes {
        None => None,
        Some(text) => {
            // The doctor's PRE key, as registered (getOrgUsers lists professionals to anyone
            // registered).
            let mut after = None;
            let mut key = None;
            for _ in 0..MAX_PAGES {
                let page = s
                    .call(&h::GetOrgUsers {
                        org: doctor.org.clone(),
                        after,
                        limit: None,
                    })
                    .await?
                    .resp;
                if let Some(u) = page.users.iter().find(|u| u.user == doctor) {
                    key = Some(u.pre_public_key.clone().ok_or_else(|| {
                        anyhow!("doctor {doctor} has no PRE key: cannot seal --notes")
                    })?);
                    break;
                }
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            let key = key.ok_or_else(|| {
                anyhow!(
                    "doctor {doctor} is not registered (getOrgUsers of {} does not list them)",
                    doctor.org
                )
            })?;
            Some(hc::seal_notes(&hc::pre_key(&key)?, text.as_bytes())?)
        }
    };
    let o = s
        .call(&h::RequestAppointment {
            doctor,
            requested_time_ms: a.time_ms.unwrap_or_else(|| crate::now_ms() + h::MS_PER_DAY),
            disease_classification: a.disease.clone(),
            notes,
            insurance_plan_id: a
                .plan
                .as_deref()
                .map(|p| parse_id("--plan", p))
                .transpose()?,
            patient_pre_public_key: key_arg("--patient-key", &a.patient_key)?,
            billing_pre_public_key: key_arg("--billing-key", &a.billing_key)?,
        })
        .await?;
    let mut lines = appointment_lines(&o.resp);
    lines.push(format!("  token: {}", o.resp.appointment_id));
    if let Some(p) = &a.token_out {
        Token::of(&o.resp).write(p)?;
        lines.push(format!("  token written to {}", p.display()));
    }
    s.show(&o, &lines, json!({}))
}

async fn patient_bills(c: Cmd<PatientBillsArgs>, approve: bool) -> Result<()> {
    let s = session(&c.common).await?;
    let mut bills: Vec<h::Bill> = Vec::new();
    let wanted = bill_ids(&c.args.bills)?;
    let appointment = c
        .args
        .appointment
        .as_deref()
        .map(|a| parse_id("--appointment", a))
        .transpose()?;
    if let Some(a) = appointment {
        let list = s
            .call(&h::GetBillStatusPatient { appointment_id: a })
            .await?
            .resp
            .bills;
        for b in list {
            let pick = if wanted.is_empty() {
                b.status == h::BillStatus::Generated && (!approve || b.coverage.is_some())
            } else {
                wanted.contains(&b.bill_id)
            };
            if pick {
                bills.push(b);
            }
        }
        if bills.is_empty() {
            bail!(
                "no bill to {} in appointment {a}",
                if approve { "approve" } else { "pay" }
            );
        }
    } else if approve {
        bail!("approve-payment-request needs --appointment (to find each bill's plan)");
    }
    if let (true, Some(a)) = (approve, appointment) {
        let sk = s.sk()?;
        let st = s
            .call(&h::GetAppointmentStatus { appointment_id: a })
            .await?
            .resp;
        if !s.holds(&st.appointment.billing_pre_public_key) {
            bail!(
                "the amounts of appointment {a} are sealed to a PRE key identity {} does not hold: \
                 cannot make the re-encryption key",
                s.me.name()
            );
        }
        for b in &bills {
            let plan_id = b
                .coverage
                .as_ref()
                .map(|c| c.plan_id)
                .ok_or_else(|| anyhow!("bill {} is not covered by a plan", b.bill_id))?;
            let plan = s
                .call(&h::RegisterInsuranceRequestStatus { plan_id })
                .await?
                .resp;
            let insurer_key = plan.insurer_pre_public_key.ok_or_else(|| {
                anyhow!(
                    "plan {plan_id} is {}: the insurer has not accepted it",
                    plan.status
                )
            })?;
            let o = s
                .call(&h::ApprovePaymentRequest {
                    bill_id: b.bill_id,
                    rekey: hc::rekey(sk, &insurer_key)?,
                    insurer_pre_public_key: insurer_key,
                })
                .await?;
            let line = format!(
                "bill {} {}: payment request sent to {}",
                o.resp.bill_id, o.resp.status, plan.insurer
            );
            s.show(&o, &[line], json!({}))?;
        }
        return Ok(());
    }
    let ids: Vec<Hash32> = if appointment.is_some() {
        bills.iter().map(|b| b.bill_id).collect()
    } else {
        wanted
    };
    for id in ids {
        let o = s.call(&h::PayBill { bill_id: id }).await?;
        let line = format!("bill {} {}", o.resp.bill_id, o.resp.status);
        s.show(&o, &[line], json!({}))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn amounts_parse_to_minor_units_or_are_refused() {
        for (s, cents) in [("30", 3000), ("30.5", 3050), ("30.05", 3005), ("0.01", 1)] {
            assert_eq!(parse_amount(s).unwrap(), cents, "{s}");
        }
        for s in ["", ".5", "30.", "30.123", "-1", "1e3", "3 0", "30,00"] {
            let e = parse_amount(s).unwrap_err().to_string();
            assert!(e.contains("--amount"), "{s}: {e}");
        }
        assert!(
            parse_amount("1000000000000000000")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        assert!(amount(1, "eur").is_err());
        assert!(amount(1, "EURO").is_err());
        assert_eq!(
            Money(&amount(1205, "EUR").unwrap()).to_string(),
            "12.05 EUR"
        );
    }

    #[test]
    fn responses_become_json_with_bytes_as_hex() {
        let b = h::UserRecord {
            user: Who::new("PatientOrg", "patient1"),
            role: Role::Patient,
            pre_public_key: Some(ByteBuf::from(vec![0xab, 0x01])),
            registered_ms: 5,
            updated_ms: 6,
        };
        let v = to_json(&sphr_crypto::cbor::to_vec(&b).unwrap());
        assert_eq!(v["pre_public_key"], "ab01");
        assert_eq!(v["user"]["org"], "PatientOrg");
        assert_eq!(v["registered_ms"], 5);
        // Not CBOR: shown as hex, not a panic.
        assert_eq!(to_json(&[0xff, 0x00])["cbor_hex"], "ff00");
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_named() {
        let sk = PreSecretKey::generate().unwrap();
        let pk = hex::encode(sk.public_key().to_bytes());
        let t = Token {
            appointment_id: "ab".repeat(32),
            patient_pre_public_key: pk.clone(),
            billing_pre_public_key: pk.clone(),
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        t.write(&p).unwrap();
        let k = Keys::from_token(&Token::read(&p).unwrap()).unwrap();
        assert_eq!(k.id.to_hex(), "ab".repeat(32));
        let bad = Token {
            billing_pre_public_key: "00".repeat(672),
            ..t
        };
        let e = Keys::from_token(&bad).err().unwrap().to_string();
        assert!(e.contains("billing_pre_public_key"), "{e}");
        std::fs::write(&p, "{\"x\": 1}").unwrap();
        assert!(
            Token::read(&p)
                .unwrap_err()
                .to_string()
                .contains("is not a token")
        );
    }
}
