//! `sphr-node fhir ...`: FHIR R4 exports ([`crate::fhir`], mapping in `docs/fhir.md`).
//!
//! ```text
//!  patient, auditor:  fhir consent --patient id@org [--out FILE]   Consent resources
//!                     fhir audit   --patient id@org [--out FILE]   AuditEvent resources
//!  anyone holding a decrypted bundle (bundle fetch writes <out>/<hospital>.json):
//!                     fhir bundle  --in bundle.json [--out FILE]   a Bundle of type collection
//! ```
//!
//! `consent` and `audit` ask the node (`GET /v1/fhir/Consent?patient=`, `GET
//! /v1/fhir/AuditEvent?patient=`) with a request signed by `--user`/`--identity`; the consent
//! contract lets only the patient themself or an auditor read. They print a FHIR `searchset`
//! Bundle. `bundle` converts a file offline. Output is pretty-printed JSON, on stdout unless
//! `--out` names a file.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use hyper::Method;
use sphr_vault::Bundle;

use crate::cli::{ClientArgs, ClientCtx};
use crate::client::api_error;

/// Largest bundle JSON file read by `fhir bundle`.
pub const MAX_BUNDLE_JSON_BYTES: u64 = 64 * 1024 * 1024;

/// `sphr-node fhir ...`
#[derive(Subcommand)]
pub enum FhirCommand {
    /// (patient, auditor) A patient's consent rules as FHIR R4 Consent resources.
    Consent {
        #[command(flatten)]
        client: ClientArgs,
        /// The patient: id@org (or a user name from network.json).
        #[arg(long)]
        patient: String,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// (patient, auditor) A patient's access records as FHIR R4 AuditEvent resources.
    Audit {
        #[command(flatten)]
        client: ClientArgs,
        /// The patient: id@org (or a user name from network.json).
        #[arg(long)]
        patient: String,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A decrypted SPHR bundle (JSON, as `bundle fetch` writes it) as a FHIR R4 Bundle of type
    /// collection.
    Bundle {
        /// The bundle JSON file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs a `fhir` subcommand.
pub async fn run(cmd: FhirCommand) -> Result<()> {
    match cmd {
        FhirCommand::Consent {
            client,
            patient,
            out,
        } => {
            let text = fetch(&client, "Consent", &patient).await?;
            emit(&text, out.as_deref())
        }
        FhirCommand::Audit {
            client,
            patient,
            out,
        } => {
            let text = fetch(&client, "AuditEvent", &patient).await?;
            emit(&text, out.as_deref())
        }
        FhirCommand::Bundle { input, out } => {
            let bundle = read_bundle_json(&input)?;
            let v = crate::fhir::bundle_collection(&bundle);
            emit(&serde_json::to_string_pretty(&v)?, out.as_deref())
        }
    }
}

/// Reads a bundle written by `bundle fetch` (or `Bundle::to_json`) and checks its shape.
pub fn read_bundle_json(path: &Path) -> Result<Bundle> {
    let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut text = String::new();
    f.take(MAX_BUNDLE_JSON_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("read {}", path.display()))?;
    if text.len() as u64 > MAX_BUNDLE_JSON_BYTES {
        bail!(
            "{}: over the {MAX_BUNDLE_JSON_BYTES}-byte limit of a bundle file",
            path.display()
        );
    }
    let bundle: Bundle = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: not an SPHR bundle (JSON): {e}", path.display()))?;
    // The same checks as a bundle decoded from its sealed form (version, names, hubs).
    let cbor = bundle.to_cbor()?;
    Bundle::from_cbor(&cbor, cbor.len())
        .map_err(|e| anyhow!("{}: not a valid SPHR bundle: {e}", path.display()))
}

/// The patient as `id@org`: given so, or a user name that network.json lists once.
fn resolve_patient(ctx: &ClientCtx, patient: &str) -> Result<String> {
    if patient.contains('@') {
        crate::api::fhir::parse_patient(patient).map_err(|e| anyhow!("--patient: {e}"))?;
        return Ok(patient.to_string());
    }
    let users: Vec<_> = ctx
        .manifest
        .as_ref()
        .map(|m| m.users.iter().filter(|u| u.name == patient).collect())
        .unwrap_or_default();
    match users.as_slice() {
        [u] => Ok(format!("{}@{}", u.name, u.org)),
        [] => bail!("--patient {patient:?}: give id@org (no such user in network.json)"),
        _ => bail!("--patient {patient:?}: several orgs have that user; give id@org"),
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode_query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn fetch(args: &ClientArgs, resource: &str, patient: &str) -> Result<String> {
    let ctx = ClientCtx::new(args)?;
    let patient = resolve_patient(&ctx, patient)?;
    let identity = ctx.identity()?;
    let network_id = ctx.network_id().await?;
    let path = format!(
        "/v1/fhir/{resource}?patient={}",
        encode_query_value(&patient)
    );
    let headers =
        crate::signed_request::sign(&identity, network_id, "GET", &path, crate::now_ms())?;
    let (status, body) = ctx
        .client
        .request_with_headers(Method::GET, &path, None, &headers, Vec::new())
        .await?;
    if !(200..300).contains(&status) {
        return Err(api_error(status, &body).into());
    }
    let text = String::from_utf8(body).map_err(|_| anyhow!("the node answered non-UTF-8"))?;
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| anyhow!("the node answered something that is not JSON: {e}"))?;
    Ok(text)
}

fn emit(text: &str, out: Option<&Path>) -> Result<()> {
    match out {
        Some(p) => {
            std::fs::write(p, format!("{}\n", text.trim_end()))
                .with_context(|| format!("write {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => println!("{}", text.trim_end()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode_query_value("CHI-1234.x_y~z@Org 1"),
            "CHI-1234.x_y~z%40Org%201"
        );
    }
}
