//! `GET /v1/fhir/Consent?patient=` and `GET /v1/fhir/AuditEvent?patient=`: a patient's consent
//! rules and access records as FHIR R4 `searchset` Bundles ([`crate::fhir`]), for the patient
//! or an auditor.
//!
//! ```text
//!  request signed by the caller (crate::signed_request: certificate, time, signature)
//!     │ verify against the genesis CAs ── fails ──> 401 (400 if malformed)
//!     │ patient=subject@org             ── bad   ──> 400 bad_patient
//!     │ consent.listRules / getAuditTrail evaluated on committed state AS the caller:
//!     │   the contract decides (the patient themself or an auditor) ── no ──> 403 access_denied
//!     v
//!  200 application/fhir+json, pretty printed
//! ```
//!
//! Nothing is ordered or written; the answer goes to the caller only and is never logged.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sphr_contracts::consent::types::{
    AccessRecord, AuditTrail, GetAuditTrail, Identity as ConsentIdentity, ListRules, RuleList,
};
use sphr_crypto::cert::Certificate;

use super::{ApiError, ApiResult, ApiState};

/// The content type of the answers.
pub const FHIR_JSON: &str = "application/fhir+json";
/// Most access records one AuditEvent export holds (100 pages of the contract's 100).
pub const MAX_AUDIT_EXPORT: usize = 10_000;
/// Largest contract response decoded.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Parses `subject@org` into a consent identity.
pub fn parse_patient(s: &str) -> Result<ConsentIdentity, String> {
    let (id, org) = s
        .split_once('@')
        .ok_or_else(|| "patient must be subject@org (e.g. patient1@PatientOrg)".to_string())?;
    let ok = |v: &str| {
        !v.is_empty()
            && v.len() <= sphr_contracts::consent::types::MAX_NAME_LEN
            && !v.contains('@')
            && !v.chars().any(char::is_control)
    };
    if !ok(id) || !ok(org) {
        return Err(format!(
            "patient must be subject@org, each 1 to {} characters without '@' or control characters",
            sphr_contracts::consent::types::MAX_NAME_LEN
        ));
    }
    Ok(ConsentIdentity::new(org, id))
}

fn patient_param(uri: &Uri) -> ApiResult<ConsentIdentity> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_patient", m);
    let q = uri.query().unwrap_or("");
    let mut found = None;
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "patient" {
            if found.is_some() {
                return Err(bad("give patient once".into()));
            }
            let v = percent_decode(v).ok_or_else(|| bad("patient is not valid UTF-8".into()))?;
            found = Some(v);
        }
    }
    let v = found.ok_or_else(|| bad("query parameter patient=subject@org is required".into()))?;
    parse_patient(&v).map_err(bad)
}

/// Decodes `%XX` escapes (and `+` as space) of a query value.
fn percent_decode(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = b.get(i + 1..i + 3)?;
                let h = std::str::from_utf8(h).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn caller(s: &ApiState, uri: &Uri, headers: &HeaderMap) -> ApiResult<Certificate> {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    crate::signed_request::verify(headers, "GET", &path, &s.trust, crate::now_ms()).map_err(|e| {
        let status = match e.kind() {
            "malformed" => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.kind(), e.to_string())
    })
}

async fn evaluate<T: DeserializeOwned + Send + 'static>(
    s: &ApiState,
    cert: &Certificate,
    function: &'static str,
    arg: Vec<u8>,
) -> ApiResult<T> {
    let gw = s.gateway.clone();
    let cert = cert.clone();
    let bytes =
        tokio::task::spawn_blocking(move || gw.query_as(&cert, "consent", function, vec![arg]))
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()))??;
    sphr_crypto::cbor::from_slice(&bytes, MAX_RESPONSE_BYTES).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "bad_contract_response",
            format!("consent.{function} answered something undecodable: {e}"),
        )
    })
}

fn encode_arg<T: serde::Serialize>(v: &T) -> ApiResult<Vec<u8>> {
    sphr_crypto::cbor::to_vec(v)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_arguments", e.to_string()))
}

fn fhir_response(v: &serde_json::Value) -> ApiResult<Response> {
    let body = serde_json::to_string_pretty(v)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "encoding", e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, FHIR_JSON)], body).into_response())
}

/// `GET /v1/fhir/Consent?patient=subject@org`.
pub async fn consent(
    State(s): State<ApiState>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let cert = caller(&s, &uri, &headers)?;
    let patient = patient_param(&uri)?;
    let arg = encode_arg(&ListRules {
        patient: Some(patient.clone()),
    })?;
    let list: RuleList = evaluate(&s, &cert, "listRules", arg).await?;
    let now = crate::now_ms();
    fhir_response(&crate::fhir::consent_searchset(
        &patient.to_string(),
        &list.rules,
        now,
    ))
}

/// `GET /v1/fhir/AuditEvent?patient=subject@org`.
pub async fn audit(State(s): State<ApiState>, uri: Uri, headers: HeaderMap) -> ApiResult<Response> {
    let cert = caller(&s, &uri, &headers)?;
    let patient = patient_param(&uri)?;
    let mut records: Vec<AccessRecord> = Vec::new();
    let mut after = None;
    loop {
        let arg = encode_arg(&GetAuditTrail {
            patient: patient.clone(),
            after: after.take(),
            limit: None,
        })?;
        let page: AuditTrail = evaluate(&s, &cert, "getAuditTrail", arg).await?;
        records.extend(page.records);
        if records.len() > MAX_AUDIT_EXPORT {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "limit_exceeded",
                format!(
                    "the patient has more than {MAX_AUDIT_EXPORT} access records: export them with the CLI in pages"
                ),
            ));
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    fhir_response(&crate::fhir::audit_searchset(
        &patient.to_string(),
        &records,
        crate::now_ms(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patients_are_subject_at_org() {
        let p = parse_patient("patient1@PatientOrg").unwrap();
        assert_eq!((p.id.as_str(), p.org.as_str()), ("patient1", "PatientOrg"));
        for bad in ["patient1", "@Org", "p@", "a@b@c", "p\n@Org", ""] {
            assert!(parse_patient(bad).is_err(), "{bad:?} accepted");
        }
        let uri: Uri = "/v1/fhir/Consent?patient=CHI-1%40PatientOrg"
            .parse()
            .unwrap();
        assert_eq!(patient_param(&uri).unwrap().id, "CHI-1");
        let twice: Uri = "/v1/fhir/Consent?patient=a@B&patient=c@D".parse().unwrap();
        assert!(patient_param(&twice).is_err());
        let none: Uri = "/v1/fhir/Consent".parse().unwrap();
        assert!(patient_param(&none).is_err());
        let bad_escape: Uri = "/v1/fhir/Consent?patient=a%ZZ@B".parse().unwrap();
        assert!(patient_param(&bad_escape).is_err());
    }
}
