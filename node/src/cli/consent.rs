//! `sphr-node consent ...` and `sphr-node bundle fetch`: the consent contract from the command
//! line (seed 000, section 3.4.1), and the requester's side of bundle delivery.
//!
//! ```text
//!  admin:        consent register-hospital --departments D,.. --allowed-tags T,.. --max-rule-days N
//!                consent register-staff --id doctor1 --department D
//!  patient:      consent register-patient
//!                consent rule create (--grantee id@org | --department D@org) [--deny]
//!                                    --tags T,.. --purpose P [--from-ms MS] (--days N | --until-ms MS)
//!                consent rule revoke RULE_ID | consent rule list [--patient id@org]
//!  professional: consent request --patient id@org --tags T,.. --hospitals H,.. --purpose P
//!                bundle fetch --request ID --out DIR [--wait-secs N]
//!  patient, auditor: consent audit [--patient id@org] | consent lineage REQUEST_ID
//!  anyone:       consent hospital NAME
//! ```
//!
//! `bundle fetch` reads the access record (`getRequest`) and waits for the bundle keys
//! (`getBundleKeys`, the chain's path); for each delivered key it downloads the sealed bundle
//! from the delivering node (`GET /v1/bundles/{id}`, signed with the requester's key; the
//! second path), checks its SHA-256 against the hash on chain, opens the bundle key with the
//! requester's PRE secret key, opens the bundle, and writes `<out>/<hospital>.json`.
//!
//! Every command signs with the identity of `--user`/`--identity` and prints a summary (or the
//! decoded answer as JSON with `--json`, byte strings in hex). A refusal by the contract exits
//! non-zero with the node's message.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use hyper::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sphr_contracts::consent::{
    self, AccessRecord, Action, AuditTrail, BundleKey, BundleKeys, CreateRule, CreateRuleResponse,
    Decision, GetAuditTrail, GetBundleKeys, GetHospital, GetLineage, GetRequest, Grantee, Hospital,
    Identity as Party, Lineage, ListRules, Patient, RegisterHospital, RegisterPatient,
    RegisterStaff, RequestAccess, RevokeRule, Rule, RuleList, StaffMember,
};
use sphr_crypto::hash::Hash32;
use sphr_vault::{Bundle, SealedBundle};

use crate::cli::{ClientArgs, ClientCtx, split_name};
use crate::client::{Client, api_error, make_proposal};
use crate::identity::Identity;

/// `sphr-node consent ...`
#[derive(Subcommand)]
pub enum ConsentCommand {
    /// (admin) Register the admin's org as a hospital: its departments, the tags its law lets
    /// it share, and the longest rule it accepts.
    RegisterHospital {
        #[command(flatten)]
        client: ClientArgs,
        /// Departments, comma-separated.
        #[arg(long, value_delimiter = ',')]
        departments: Vec<String>,
        /// Tags its law lets it share, comma-separated (e.g. OPERATION,ADMISSIONS).
        #[arg(long, value_delimiter = ',')]
        allowed_tags: Vec<String>,
        /// Longest validity window of a rule granting to this hospital, in days.
        #[arg(long, default_value_t = 365)]
        max_rule_days: u32,
    },
    /// (admin) Place a professional of the admin's org in a department.
    RegisterStaff {
        #[command(flatten)]
        client: ClientArgs,
        /// The professional's subject id (e.g. doctor1).
        #[arg(long)]
        id: String,
        /// A department of the hospital.
        #[arg(long)]
        department: String,
    },
    /// (patient) Register the caller as a patient.
    RegisterPatient {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// (patient) Create, revoke or list consent rules.
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
    },
    /// (professional) Ask for tags of a patient's record held at hospitals. The contract
    /// always records the request, GRANTED or DENIED with the reason.
    Request {
        #[command(flatten)]
        client: ClientArgs,
        /// The patient, id@org.
        #[arg(long)]
        patient: String,
        /// Tags, comma-separated.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Hospitals holding the data, comma-separated.
        #[arg(long, value_delimiter = ',')]
        hospitals: Vec<String>,
        /// Why.
        #[arg(long, default_value = "")]
        purpose: String,
    },
    /// (patient, auditor) The audit trail of a patient: every access request, in time order.
    Audit {
        #[command(flatten)]
        client: ClientArgs,
        /// The patient, id@org (default: the caller).
        #[arg(long)]
        patient: Option<String>,
        /// Most records (at most 100 per page; pages are followed).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// (patient, requester, auditor) The lineage of a request: rules used, hospitals granted,
    /// packages delivered.
    Lineage {
        #[command(flatten)]
        client: ClientArgs,
        /// The request id (hex).
        request: String,
    },
    /// A registered hospital.
    Hospital {
        #[command(flatten)]
        client: ClientArgs,
        /// The hospital (org name).
        name: String,
    },
}

/// `sphr-node consent rule ...`
#[derive(Subcommand)]
pub enum RuleCommand {
    /// Grant (or deny) tags of the caller's record to a professional or a department.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        /// A professional, id@org.
        #[arg(
            long,
            conflicts_with = "department",
            required_unless_present = "department"
        )]
        grantee: Option<String>,
        /// A whole department, department@org.
        #[arg(long)]
        department: Option<String>,
        /// A DENY rule (beats any ALLOW) instead of ALLOW.
        #[arg(long)]
        deny: bool,
        /// Tags, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        tags: Vec<String>,
        /// Why.
        #[arg(long, default_value = "")]
        purpose: String,
        /// Valid from (Unix ms); default now.
        #[arg(long)]
        from_ms: Option<u64>,
        /// Valid for this many days from --from-ms.
        #[arg(
            long,
            conflicts_with = "until_ms",
            required_unless_present = "until_ms"
        )]
        days: Option<u64>,
        /// Valid until (Unix ms, exclusive).
        #[arg(long)]
        until_ms: Option<u64>,
    },
    /// Revoke one of the caller's rules.
    Revoke {
        #[command(flatten)]
        client: ClientArgs,
        /// The rule id (hex).
        rule: String,
    },
    /// List a patient's rules (the caller's by default; an auditor names the patient).
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// The patient, id@org.
        #[arg(long)]
        patient: Option<String>,
    },
}

/// `sphr-node bundle ...`
#[derive(Subcommand)]
pub enum BundleCommand {
    /// (requester) Fetch the bundles of a granted request: keys from the chain, sealed bundles
    /// from each delivering hospital's node over HTTPS; verify, decrypt, write JSON.
    Fetch {
        #[command(flatten)]
        client: ClientArgs,
        /// The request id (hex), as `consent request` printed it.
        #[arg(long)]
        request: String,
        /// Folder for the bundles (<hospital>.json each).
        #[arg(long)]
        out: PathBuf,
        /// How long to wait for every granted hospital to deliver its key.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
        /// What to write: `json` (the SPHR bundle as it is) or `fhir` (a FHIR R4 Bundle of type
        /// collection, mapped as docs/fhir.md describes).
        #[arg(long, value_enum, default_value_t = BundleFormat::Json)]
        format: BundleFormat,
    },
}

/// The file format `bundle fetch` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BundleFormat {
    /// The SPHR bundle as JSON (`<hospital>.json`).
    Json,
    /// A FHIR R4 Bundle of type collection (`<hospital>.fhir.json`).
    Fhir,
}

fn party(s: &str, what: &str) -> Result<Party> {
    let (id, org) = split_name(s);
    let org = org.ok_or_else(|| anyhow!("{what} must be name@org, got {s:?}"))?;
    Ok(Party::new(org, id))
}

fn hash(s: &str, what: &str) -> Result<Hash32> {
    Hash32::from_hex(s).map_err(|_| anyhow!("{what} must be 64 hex characters"))
}

/// JSON with byte strings (hashes, keys) as hex.
fn to_json<T: Serialize>(v: &T) -> Result<String> {
    fn hexify(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Array(items) => {
                let bytes: Option<Vec<u8>> = items
                    .iter()
                    .map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok()))
                    .collect();
                match bytes {
                    Some(b) if b.len() >= 16 => Value::String(hex::encode(b)),
                    _ => Value::Array(items.into_iter().map(hexify).collect()),
                }
            }
            Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, hexify(v))).collect()),
            other => other,
        }
    }
    Ok(serde_json::to_string_pretty(&hexify(
        serde_json::to_value(v)?,
    ))?)
}

/// Calls `function` with one CBOR argument: submitted and waited for (`submit`), or evaluated.
async fn call<Req: Serialize, Resp: DeserializeOwned>(
    ctx: &ClientCtx,
    id: &Identity,
    function: &str,
    req: &Req,
    submit: bool,
) -> Result<Resp> {
    let arg = sphr_crypto::cbor::to_vec(req)?;
    let (_, sp) = make_proposal(id, ctx.network_id().await?, consent::NAME, function, [arg])?;
    let hex_answer = if submit {
        let r = ctx.client.submit(&sp, true).await?;
        match r.code.as_deref() {
            Some("VALID") => {}
            Some(code) => bail!("tx {} committed as {code}: nothing changed", r.tx_id),
            None => bail!("tx {} was not committed in time", r.tx_id),
        }
        r.response_hex
    } else {
        ctx.client.query(&sp).await?.response_hex
    };
    let bytes = hex::decode(&hex_answer).context("the node's answer is not hex")?;
    sphr_crypto::cbor::from_slice(&bytes, 16 << 20)
        .map_err(|e| anyhow!("the answer of consent.{function} does not decode: {e}"))
}

fn ms_to_text(ms: u64) -> String {
    format!("{ms} ms")
}

fn print_rule(r: &Rule, now: u64) {
    let grantee = match &r.grantee {
        Grantee::Professional { org, id } => format!("{id}@{org}"),
        Grantee::Department { org, department } => format!("department {department}@{org}"),
    };
    let status = if r.revoked_ms.is_some() {
        "revoked"
    } else if now < r.valid_from_ms {
        "not valid yet"
    } else if now >= r.valid_until_ms {
        "expired"
    } else {
        "live"
    };
    let action = match r.action {
        Action::Allow => "ALLOW",
        Action::Deny => "DENY",
    };
    println!(
        "rule {} {action} {grantee} tags {} from {} until {} ({status}) purpose {:?}",
        r.rule_id,
        r.tags.join(","),
        ms_to_text(r.valid_from_ms),
        ms_to_text(r.valid_until_ms),
        r.purpose
    );
}

fn print_record(r: &AccessRecord) {
    match &r.decision {
        Decision::Granted {
            grants,
            rule_ids,
            refusals,
            ..
        } => {
            println!(
                "request {} at {}: GRANTED to {} ({})",
                r.request_id,
                ms_to_text(r.time_ms),
                r.requester,
                r.requester_role.as_str()
            );
            for g in grants {
                println!("  {}: {}", g.hospital, g.tags.join(","));
            }
            let ids: Vec<String> = rule_ids.iter().map(Hash32::to_hex).collect();
            println!("  rules: {}", ids.join(","));
            for f in refusals {
                println!("  refused: {f}");
            }
        }
        Decision::Denied { reason, refusals } => {
            println!(
                "request {} at {}: DENIED to {} ({}): {reason}",
                r.request_id,
                ms_to_text(r.time_ms),
                r.requester,
                r.requester_role.as_str()
            );
            for f in refusals {
                println!("  refused: {f}");
            }
        }
    }
}

/// Runs a `consent` command.
pub async fn run(cmd: ConsentCommand) -> Result<()> {
    match cmd {
        ConsentCommand::RegisterHospital {
            client,
            departments,
            allowed_tags,
            max_rule_days,
        } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let req = RegisterHospital {
                hospital: id.cert.body.org.clone(),
                departments,
                allowed_tags,
                max_rule_days,
            };
            let h: Hospital = call(&ctx, &id, "registerHospital", &req, true).await?;
            if client.json {
                println!("{}", to_json(&h)?);
            } else {
                println!(
                    "hospital {} registered: departments {}; allowed tags {}; rules up to {} days",
                    h.hospital,
                    h.departments.join(","),
                    h.allowed_tags.join(","),
                    h.max_rule_days
                );
            }
        }
        ConsentCommand::RegisterStaff {
            client,
            id: staff,
            department,
        } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let req = RegisterStaff {
                id: staff,
                department,
            };
            let s: StaffMember = call(&ctx, &id, "registerStaff", &req, true).await?;
            if client.json {
                println!("{}", to_json(&s)?);
            } else {
                println!("{} is staff of department {}", s.member, s.department);
            }
        }
        ConsentCommand::RegisterPatient { client } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let req = RegisterPatient {
                patient_id: Some(id.cert.body.subject.clone()),
            };
            let p: Patient = call(&ctx, &id, "registerPatient", &req, true).await?;
            if client.json {
                println!("{}", to_json(&p)?);
            } else {
                println!("patient {} registered", p.patient);
            }
        }
        ConsentCommand::Rule { command } => rule(command).await?,
        ConsentCommand::Request {
            client,
            patient,
            tags,
            hospitals,
            purpose,
        } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let req = RequestAccess {
                patient: party(&patient, "--patient")?,
                tags,
                hospitals,
                purpose,
            };
            let r: AccessRecord = call(&ctx, &id, "requestAccess", &req, true).await?;
            if client.json {
                println!("{}", to_json(&r)?);
            } else {
                print_record(&r);
            }
        }
        ConsentCommand::Audit {
            client,
            patient,
            limit,
        } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let patient = match patient {
                Some(p) => party(&p, "--patient")?,
                None => Party::new(id.cert.body.org.clone(), id.cert.body.subject.clone()),
            };
            let mut records = Vec::new();
            let mut after = None;
            loop {
                let page: AuditTrail = call(
                    &ctx,
                    &id,
                    "getAuditTrail",
                    &GetAuditTrail {
                        patient: patient.clone(),
                        after: after.take(),
                        limit: None,
                    },
                    false,
                )
                .await?;
                records.extend(page.records);
                match page.next {
                    Some(n) if records.len() < limit => after = Some(n),
                    _ => break,
                }
            }
            records.truncate(limit);
            if client.json {
                println!("{}", to_json(&records)?);
            } else {
                println!("{} access record(s) of {patient}", records.len());
                for r in &records {
                    print_record(r);
                }
            }
        }
        ConsentCommand::Lineage { client, request } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let l: Lineage = call(
                &ctx,
                &id,
                "getLineage",
                &GetLineage {
                    request_id: hash(&request, "the request id")?,
                },
                false,
            )
            .await?;
            if client.json {
                println!("{}", to_json(&l)?);
            } else {
                let ids: Vec<String> = l.rule_ids.iter().map(Hash32::to_hex).collect();
                println!("request {}", l.request_id);
                println!("  rules: {}", ids.join(","));
                println!("  hospitals granted: {}", l.hospitals.join(","));
                for p in &l.packages {
                    let ids: Vec<String> = p.lineage.rule_ids.iter().map(Hash32::to_hex).collect();
                    println!(
                        "  package from {}: bundle {} sha256 {} rules {} contributing {}",
                        p.hospital,
                        p.bundle_id,
                        p.bundle_hash,
                        ids.join(","),
                        p.lineage.contributing_hospitals.join(",")
                    );
                }
            }
        }
        ConsentCommand::Hospital { client, name } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let h: Hospital = call(
                &ctx,
                &id,
                "getHospital",
                &GetHospital { hospital: name },
                false,
            )
            .await?;
            if client.json {
                println!("{}", to_json(&h)?);
            } else {
                println!(
                    "hospital {}: departments {}; allowed tags {}; rules up to {} days",
                    h.hospital,
                    h.departments.join(","),
                    h.allowed_tags.join(","),
                    h.max_rule_days
                );
            }
        }
    }
    Ok(())
}

async fn rule(cmd: RuleCommand) -> Result<()> {
    match cmd {
        RuleCommand::Create {
            client,
            grantee,
            department,
            deny,
            tags,
            purpose,
            from_ms,
            days,
            until_ms,
        } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let grantee = match (grantee, department) {
                (Some(g), _) => {
                    let p = party(&g, "--grantee")?;
                    Grantee::Professional {
                        org: p.org,
                        id: p.id,
                    }
                }
                (None, Some(d)) => {
                    let p = party(&d, "--department")?;
                    Grantee::Department {
                        org: p.org,
                        department: p.id,
                    }
                }
                (None, None) => bail!("give --grantee id@org or --department name@org"),
            };
            let from = from_ms.unwrap_or_else(crate::now_ms);
            let until = match (days, until_ms) {
                (_, Some(u)) => u,
                (Some(d), None) => from.saturating_add(d.saturating_mul(consent::MS_PER_DAY)),
                (None, None) => bail!("give --days or --until-ms"),
            };
            let req = CreateRule {
                grantee,
                action: if deny { Action::Deny } else { Action::Allow },
                tags,
                purpose,
                valid_from_ms: from,
                valid_until_ms: until,
            };
            let r: CreateRuleResponse = call(&ctx, &id, "createRule", &req, true).await?;
            if client.json {
                println!("{}", to_json(&r)?);
            } else {
                println!("rule {} created", r.rule_id);
                if !r.limited_tags.is_empty() {
                    println!(
                        "  note: the grantee hospital's law does not allow {}; each data-holding hospital's law decides at request time",
                        r.limited_tags.join(",")
                    );
                }
            }
        }
        RuleCommand::Revoke { client, rule } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let r: Rule = call(
                &ctx,
                &id,
                "revokeRule",
                &RevokeRule {
                    rule_id: hash(&rule, "the rule id")?,
                },
                true,
            )
            .await?;
            if client.json {
                println!("{}", to_json(&r)?);
            } else {
                println!("rule {} revoked", r.rule_id);
            }
        }
        RuleCommand::List { client, patient } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let patient = patient.map(|p| party(&p, "--patient")).transpose()?;
            let l: RuleList = call(&ctx, &id, "listRules", &ListRules { patient }, false).await?;
            if client.json {
                println!("{}", to_json(&l)?);
            } else {
                let now = crate::now_ms();
                println!("{} rule(s)", l.rules.len());
                for r in &l.rules {
                    print_rule(r, now);
                }
            }
        }
    }
    Ok(())
}

/// Downloads a sealed bundle from a node, signed as `identity`: the status and the body.
pub async fn download_sealed(
    client: &Client,
    identity: &Identity,
    network_id: Hash32,
    bundle_id: &str,
) -> Result<(u16, Vec<u8>)> {
    let path = format!("/v1/bundles/{bundle_id}");
    let headers = crate::signed_request::sign(identity, network_id, "GET", &path, crate::now_ms())?;
    Ok(client
        .request_with_headers(Method::GET, &path, None, &headers, Vec::new())
        .await?)
}

/// Checks a downloaded sealed bundle against its key record on chain and opens it with the
/// requester's PRE secret key: hash, sealed key, AEAD, bundle id and hospital.
pub fn open_delivered(identity: &Identity, key: &BundleKey, sealed_bytes: &[u8]) -> Result<Bundle> {
    let got = sphr_crypto::hash::sha256(sealed_bytes);
    if got != key.bundle_hash {
        bail!(
            "bundle {} from {}: its SHA-256 {got} is not the hash on chain {}: refused (altered in transit or at the node)",
            key.bundle_id,
            key.hospital,
            key.bundle_hash
        );
    }
    let pre = identity.pre.as_ref().ok_or_else(|| {
        anyhow!(
            "{} has no PRE secret key to open bundle keys",
            identity.name()
        )
    })?;
    let sealed_key = sphr_crypto::pre::Sealed::from_bytes(&key.sealed_key)
        .map_err(|e| anyhow!("the sealed key from {}: {e}", key.hospital))?;
    let aad = crate::vault::bundle_key_aad(
        &key.request_id,
        &key.hospital,
        &key.bundle_id,
        &key.bundle_hash,
    );
    let raw = sphr_crypto::pre::open(pre, &sealed_key, &aad)
        .map_err(|e| anyhow!("the bundle key from {} does not open: {e}", key.hospital))?;
    let bundle_key: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| anyhow!("the bundle key from {} is not 32 bytes", key.hospital))?;
    let sealed = SealedBundle::from_bytes(sealed_bytes, sealed_bytes.len())?;
    let bundle = sphr_vault::open_bundle(&sealed, &bundle_key)?;
    if bundle.id.to_hex() != key.bundle_id || bundle.hospital != key.hospital {
        bail!(
            "bundle {} from {}: the bundle names another id or hospital",
            key.bundle_id,
            key.hospital
        );
    }
    Ok(bundle)
}

fn node_url(ctx: &ClientCtx, node: &Party) -> Result<String> {
    let m = ctx.manifest.as_ref().ok_or_else(|| {
        anyhow!("bundle fetch needs --network DIR with network.json (to find the delivering nodes)")
    })?;
    let n = m
        .nodes
        .iter()
        .find(|n| n.name == node.id && n.org == node.org)
        .ok_or_else(|| anyhow!("node {node} is not in network.json"))?;
    Ok(format!("https://{}", n.api_addr))
}

fn write_bundle(out: &Path, bundle: &Bundle, format: BundleFormat) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let (p, text) = match format {
        BundleFormat::Json => (
            out.join(format!("{}.json", bundle.hospital)),
            bundle.to_json()?,
        ),
        BundleFormat::Fhir => (
            out.join(format!("{}.fhir.json", bundle.hospital)),
            serde_json::to_string_pretty(&crate::fhir::bundle_collection(bundle))?,
        ),
    };
    std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
    Ok(p)
}

/// Runs a `bundle` command.
pub async fn run_bundle(cmd: BundleCommand) -> Result<()> {
    let BundleCommand::Fetch {
        client,
        request,
        out,
        wait_secs,
        format,
    } = cmd;
    let ctx = ClientCtx::new(&client)?;
    let id = ctx.identity()?;
    let network_id = ctx.network_id().await?;
    let request_id = hash(&request, "--request")?;
    let record: AccessRecord =
        call(&ctx, &id, "getRequest", &GetRequest { request_id }, false).await?;
    let granted: Vec<String> = match &record.decision {
        Decision::Granted { grants, .. } => grants.iter().map(|g| g.hospital.clone()).collect(),
        Decision::Denied { reason, .. } => bail!("request {request_id} was DENIED: {reason}"),
    };
    let deadline = Instant::now() + Duration::from_secs(wait_secs);
    let keys = loop {
        let k: BundleKeys = call(
            &ctx,
            &id,
            "getBundleKeys",
            &GetBundleKeys { request_id },
            false,
        )
        .await?;
        if k.keys.len() >= granted.len() || Instant::now() >= deadline {
            break k.keys;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let missing: Vec<&String> = granted
        .iter()
        .filter(|h| !keys.iter().any(|k| k.hospital == **h))
        .collect();
    if keys.is_empty() {
        bail!(
            "no hospital delivered a bundle key for request {request_id} within {wait_secs} s (granted: {})",
            granted.join(",")
        );
    }
    let ca = client
        .ca
        .clone()
        .unwrap_or_else(|| client.network.join("tls-ca.pem"));
    let tls = crate::tls::client_config(&ca)?;
    let mut failures = 0;
    for key in &keys {
        let result: Result<(Bundle, PathBuf)> = async {
            let node = Client::new(&node_url(&ctx, &key.node)?, tls.clone())?;
            let (status, body) = download_sealed(&node, &id, network_id, &key.bundle_id).await?;
            if status != 200 {
                return Err(api_error(status, &body).into());
            }
            let bundle = open_delivered(&id, key, &body)?;
            let path = write_bundle(&out, &bundle, format)?;
            Ok((bundle, path))
        }
        .await;
        match result {
            Ok((bundle, path)) => {
                let sats: Vec<String> = bundle
                    .satellites
                    .iter()
                    .map(|s| format!("{}/{} ({} rows)", s.source, s.satellite, s.rows.len()))
                    .collect();
                println!(
                    "{}: bundle {} verified and opened, {} rows -> {}",
                    key.hospital,
                    key.bundle_id,
                    bundle.row_count(),
                    path.display()
                );
                println!("  satellites: {}", sats.join(", "));
                println!("  rules: {}", bundle.rule_ids.join(","));
            }
            Err(e) => {
                failures += 1;
                eprintln!("{}: {e:#}", key.hospital);
            }
        }
    }
    for h in &missing {
        eprintln!("{h}: no bundle key delivered (no data for this patient there, or not yet)");
    }
    if failures > 0 {
        bail!("{failures} bundle(s) could not be fetched");
    }
    Ok(())
}
