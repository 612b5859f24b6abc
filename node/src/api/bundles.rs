//! `GET /v1/bundles/{id}`: a sealed SPHR bundle, for its grantee only (seed 000, section
//! 3.4.1, steps 9 and 10: the data's path, beside the key's path on chain).
//!
//! ```text
//!  request signed by the requester (crate::signed_request: certificate, time, signature)
//!     │ verify against the genesis CAs ── fails ──> 401/400, refused{reason}
//!     │ node_bundles[id]                ── none  ──> 404
//!     │ caller == the access record's requester (org, id, role) ── no ──> 403, refused{not_grantee}
//!     v
//!  200 application/cbor: the SealedBundle bytes (SHA-256 = the bundle hash on chain);
//!  sphr_vault_bundles_served_total
//! ```
//!
//! Refusals are counted in `sphr_vault_bundles_refused_total{reason}` and logged with the
//! bundle id, the reason and the caller's org, never patient data (the node cannot read the
//! bundle anyway once sealed; the access record's patient is not logged).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use sphr_crypto::hash::Hash32;
use tracing::{info, warn};

use super::{ApiError, ApiResult, ApiState};

fn refuse(s: &ApiState, status: StatusCode, reason: &'static str, msg: String) -> ApiError {
    s.metrics
        .vault_bundles_refused_total
        .with_label_values(&[reason])
        .inc();
    ApiError::new(status, reason, msg)
}

/// The handler.
pub async fn download(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    let cert = crate::signed_request::verify(&headers, "GET", &path, &s.trust, crate::now_ms())
        .map_err(|e| {
            let status = match e.kind() {
                "malformed" => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            warn!(target: "sphr::vault", reason = e.kind(), "bundle download refused: request not signed by a network identity");
            refuse(&s, status, e.kind(), e.to_string())
        })?;
    let bundle_id = Hash32::from_hex(&id).map_err(|_| {
        refuse(
            &s,
            StatusCode::BAD_REQUEST,
            "bad_bundle_id",
            "a bundle id is 64 hex characters".into(),
        )
    })?;
    let store = s.bundles.clone();
    let found = tokio::task::spawn_blocking(move || store.get(&bundle_id))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "bundles_unavailable",
                e.to_string(),
            )
        })?;
    let Some(served) = found else {
        return Err(refuse(
            &s,
            StatusCode::NOT_FOUND,
            "unknown_bundle",
            format!("this node keeps no bundle {bundle_id}"),
        ));
    };
    let b = &cert.body;
    let grantee = b.org == served.requester.org
        && b.subject == served.requester.id
        && b.role == served.requester_role;
    if !grantee {
        warn!(target: "sphr::vault", bundle = %bundle_id, caller_org = %b.org,
              caller_role = b.role.as_str(), reason = "not_grantee", "bundle download refused");
        return Err(refuse(
            &s,
            StatusCode::FORBIDDEN,
            "not_grantee",
            "only the grantee of the access request may download this bundle".into(),
        ));
    }
    s.metrics.vault_bundles_served_total.inc();
    info!(target: "sphr::vault", bundle = %bundle_id, bytes = served.sealed.len(), "bundle served");
    Ok((
        [(header::CONTENT_TYPE, "application/cbor")],
        served.sealed.into_vec(),
    )
        .into_response())
}
