//! The client API over HTTPS (rustls, TLS 1.3 only).
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | POST | `/v1/transactions?wait=true` | submit a CBOR `SignedProposal`: endorse, order, (wait for commit) |
//! | POST | `/v1/query` | evaluate a CBOR `SignedProposal` on committed state (`?min_height=N`: once block N is committed here) |
//! | POST | `/v1/endorse` | endorse a CBOR `SignedProposal` at this node; answers a CBOR `ProposalResponse` (`?min_height=N` as for query) |
//! | POST | `/v1/broadcast?wait=true` | order a CBOR `Transaction` the client assembled |
//! | GET | `/v1/transactions/{tx_id}` | where and how a tx committed |
//! | GET | `/v1/blocks/{number}` | a block, without patient data |
//! | GET | `/v1/events` | commit events (server-sent events) |
//! | GET | `/v1/status` | height, tip, leader |
//! | GET | `/v1/bundles/{id}` | a sealed SPHR bundle, for its grantee only (signed request; [`bundles`]) |
//! | GET | `/healthz` | health: 200, or 503 naming the failing components (as on the operations port) |
//! | GET | `/metrics` | Prometheus text (as on the operations port) |
//! | GET | `/openapi.json` | the OpenAPI 3 description (`node/openapi.json`) |
//! | GET | `/explorer` | the explorer page ([`crate::explorer`]) |
//! | GET | `/v1/explorer/network` | orgs, contracts, nodes with height, leader and peers |
//! | GET | `/v1/explorer/blocks?from=&limit=` | block summaries, newest first |
//! | GET | `/v1/fhir/Consent?patient=` | the patient's rules as FHIR R4 Consent (signed request; [`fhir`]) |
//! | GET | `/v1/fhir/AuditEvent?patient=` | the patient's access records as FHIR R4 AuditEvent (signed request) |
//!
//! The router is built from [`routes`], and a test checks that list against `openapi.json`,
//! so the description cannot drift from the routes. Every error is JSON ([`model::ErrorBody`])
//! with a stable kind, a message naming what was wrong, and a count in
//! `sphr_api_rejections_total{kind}`.

pub mod bundles;
pub mod fhir;
pub mod model;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::Deserialize;
use sphr_contracts::ContractError;
use sphr_crypto::hash::Hash32;
use sphr_types::MAX_TX_BYTES;
use sphr_types::{BlockData, BlockRecord, SignedProposal, Transaction, ValidationCode};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};

use crate::endorser::EndorseError;
use crate::gateway::{Gateway, GatewayError};
use crate::metrics::Metrics;
use model::{BlockView, ErrorBody, NodeStatus, QueryResponse, SubmitResponse, TxStatus, TxView};

/// The OpenAPI description served at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// What the API reads from the chain.
pub trait ChainView: Send + Sync {
    /// Where and how a tx committed.
    fn tx_status(&self, tx_id: &Hash32) -> Result<Option<(u64, u32, ValidationCode)>, String>;
    /// A stored block.
    fn block(&self, number: u64) -> Result<Option<BlockRecord>, String>;
    /// The node's status.
    fn status(&self) -> NodeStatus;
    /// The health of storage, consensus and p2p (reads storage: call off the async threads).
    fn health(&self) -> crate::health::HealthReport;
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The gateway.
    pub gateway: Arc<Gateway>,
    /// The chain.
    pub chain: Arc<dyn ChainView>,
    /// Metrics (behind an `Arc`: the state is cloned for every request).
    pub metrics: Arc<Metrics>,
    /// The explorer's poll of the other nodes.
    pub explorer: Arc<crate::explorer::Probe>,
    /// Whom signed requests may come from (genesis CAs, network id, clock skew).
    pub trust: crate::signed_request::Trust,
    /// The consumer zone: sealed bundles served to their grantees.
    pub bundles: crate::vault::BundleStore,
}

/// An API error: status, kind and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    /// An error with its HTTP status, stable kind and message.
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.kind.to_string(),
            message: self.message,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.extensions_mut().insert(RejectionKind(self.kind));
        resp
    }
}

/// Marks a response as a rejection of a given kind, for the metrics middleware.
#[derive(Clone, Copy)]
struct RejectionKind(&'static str);

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        let (status, kind) = match &e {
            GatewayError::Endorse(en) => match en {
                EndorseError::Malformed(_) => (S::BAD_REQUEST, "malformed_proposal"),
                EndorseError::WrongNetwork { .. } => (S::BAD_REQUEST, "wrong_network"),
                EndorseError::UnknownIdentity(_) => (S::FORBIDDEN, "unknown_identity"),
                EndorseError::BadSignature => (S::FORBIDDEN, "bad_signature"),
                EndorseError::ClockSkew { .. } => (S::BAD_REQUEST, "clock_skew"),
                EndorseError::UnknownContract(_) => (S::NOT_FOUND, "unknown_contract"),
                EndorseError::State(_) => (S::SERVICE_UNAVAILABLE, "state_unavailable"),
                EndorseError::Contract(c) => match c {
                    ContractError::UnknownContract(_) => (S::NOT_FOUND, "unknown_contract"),
                    ContractError::UnknownFunction { .. } => (S::NOT_FOUND, "unknown_function"),
                    ContractError::BadArgs(_) => (S::BAD_REQUEST, "bad_arguments"),
                    ContractError::Denied(_) => (S::FORBIDDEN, "access_denied"),
                    ContractError::NotFound(_) => (S::NOT_FOUND, "not_found"),
                    ContractError::Refused(_) => (S::UNPROCESSABLE_ENTITY, "refused"),
                    ContractError::Limit(_) => (S::BAD_REQUEST, "limit_exceeded"),
                    ContractError::State(_) => (S::SERVICE_UNAVAILABLE, "state_unavailable"),
                },
            },
            GatewayError::AlreadyCommitted { .. } => (S::CONFLICT, "already_committed"),
            GatewayError::InFlight(_) => (S::CONFLICT, "in_flight"),
            GatewayError::Busy(_) => (S::SERVICE_UNAVAILABLE, "busy"),
            GatewayError::PolicyUnreachable { .. } => {
                (S::SERVICE_UNAVAILABLE, "policy_unreachable")
            }
            GatewayError::EndorsementMismatch { .. } => (S::CONFLICT, "endorsement_mismatch"),
            GatewayError::NotAQuery { .. } => (S::BAD_REQUEST, "not_a_query"),
            GatewayError::Stopped => (S::SERVICE_UNAVAILABLE, "stopping"),
            GatewayError::Timeout(_) => (S::GATEWAY_TIMEOUT, "commit_timeout"),
            GatewayError::Ledger(_) => (S::SERVICE_UNAVAILABLE, "ledger_unavailable"),
        };
        ApiError::new(status, kind, msg)
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Every route: method, path template, handler. The router and the OpenAPI check both use it.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<ApiState>)> {
    vec![
        ("post", "/v1/transactions", post(submit)),
        ("post", "/v1/query", post(query)),
        ("post", "/v1/endorse", post(endorse)),
        ("post", "/v1/broadcast", post(broadcast)),
        ("get", "/v1/transactions/{tx_id}", get(tx_status)),
        ("get", "/v1/blocks/{number}", get(block)),
        ("get", "/v1/events", get(events)),
        ("get", "/v1/status", get(status)),
        ("get", "/healthz", get(healthz)),
        ("get", "/metrics", get(metrics)),
        ("get", "/openapi.json", get(openapi)),
        ("get", "/v1/bundles/{id}", get(bundles::download)),
        ("get", "/explorer", get(crate::explorer::page)),
        ("get", "/v1/explorer/network", get(crate::explorer::network)),
        ("get", "/v1/explorer/blocks", get(crate::explorer::blocks)),
        ("get", "/v1/fhir/Consent", get(fhir::consent)),
        ("get", "/v1/fhir/AuditEvent", get(fhir::audit)),
    ]
}

/// The router, with a body limit of `max_body_bytes`.
pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    let mut r: Router<ApiState> = Router::new();
    for (_, path, handler) in routes() {
        r = r.route(path, handler);
    }
    r.fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            max_body_bytes,
            refuse_oversized,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// The most an oversized body is read (and thrown away) before it is refused, so that a client
/// that sends its whole body before reading the answer gets the 413 instead of a reset.
const OVERSIZED_DRAIN_MAX: u64 = 8 * 1024 * 1024;

/// Refuses a body whose declared length is over the limit with 413 and a message, after
/// draining it (up to [`OVERSIZED_DRAIN_MAX`]). Bodies without a declared length meet the same
/// limit in the extractor.
async fn refuse_oversized(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > limit as u64 => {
            if len <= OVERSIZED_DRAIN_MAX {
                let _ = axum::body::to_bytes(req.into_body(), OVERSIZED_DRAIN_MAX as usize).await;
            }
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "request body of {len} bytes is over the node's limit of {limit} bytes (api.max_body_bytes)"
                ),
            )
            .into_response()
        }
        _ => next.run(req).await,
    }
}

async fn count_requests(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    s.metrics
        .api_request_duration_seconds
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    s.metrics
        .api_requests_total
        .with_label_values(&[route.as_str(), resp.status().as_str()])
        .inc();
    if let Some(RejectionKind(kind)) = resp.extensions().get::<RejectionKind>() {
        s.metrics
            .api_rejections_total
            .with_label_values(&[kind])
            .inc();
    }
    resp
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such route; see /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route; see /openapi.json",
    )
}

fn cbor_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<SignedProposal> {
    let body = raw_cbor_body(headers, body, "SignedProposal")?;
    SignedProposal::from_bytes(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_proposal", e.to_string()))
}

fn raw_cbor_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> ApiResult<Bytes> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/cbor") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content-type must be application/cbor (a CBOR {what}), got {ct:?}"),
        ));
    }
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body is over the node's limit (api.max_body_bytes)",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_body", r.body_text())
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            format!("empty body: expected a CBOR {what}"),
        ));
    }
    Ok(body)
}

#[derive(Deserialize)]
struct SubmitQuery {
    #[serde(default)]
    wait: Option<bool>,
}

async fn submit(
    State(s): State<ApiState>,
    q: Result<Query<SubmitQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<SubmitResponse>> {
    let q = query_params(q)?;
    let sp = cbor_body(&headers, body)?;
    let wait = q.wait.unwrap_or(true);
    let out = s.gateway.submit(sp, wait).await?;
    Ok(axum::Json(submit_response(&out)))
}

/// The parameters of a query string, or 400 `bad_query` saying what was wrong with it.
pub(crate) fn query_params<T>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<T> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("query string: {}", e.body_text()),
        )
    })
}

/// `?min_height=N` of `POST /v1/endorse` and `POST /v1/query`: simulate only once this node
/// has committed block N (read your own writes when a client endorses at nodes other than the
/// one whose commit event it saw).
#[derive(Debug, Deserialize)]
struct HeightQuery {
    #[serde(default)]
    min_height: Option<u64>,
}

/// How long a request with `min_height` waits for this node to commit that block.
pub const MIN_HEIGHT_WAIT: Duration = Duration::from_secs(3);

/// Waits (at most [`MIN_HEIGHT_WAIT`]) until this node's ledger reaches the height the query
/// asks for; 503 `behind` naming both heights if it does not.
async fn reach_height(
    s: &ApiState,
    q: Result<Query<HeightQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<()> {
    let q = query_params(q)?;
    let Some(want) = q.min_height else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + MIN_HEIGHT_WAIT;
    loop {
        let have = s.gateway.height();
        if have >= want {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "behind",
                format!(
                    "this node is at height {have}; the request asks for min_height {want} \
                     (waited {} ms): retry, or ask another node",
                    MIN_HEIGHT_WAIT.as_millis()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn endorse(
    State(s): State<ApiState>,
    q: Result<Query<HeightQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let sp = cbor_body(&headers, body)?;
    reach_height(&s, q).await?;
    let gw = s.gateway.clone();
    let pr = tokio::task::spawn_blocking(move || gw.endorse(&sp))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()))??;
    let bytes = pr
        .to_bytes()
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "encoding", e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/cbor")], bytes).into_response())
}

async fn broadcast(
    State(s): State<ApiState>,
    q: Result<Query<SubmitQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<SubmitResponse>> {
    let q = query_params(q)?;
    let body = raw_cbor_body(&headers, body, "Transaction")?;
    if body.len() > MAX_TX_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("a transaction is at most {MAX_TX_BYTES} bytes"),
        ));
    }
    let tx = Transaction::from_bytes(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_transaction",
            e.to_string(),
        )
    })?;
    let out = s.gateway.broadcast(tx, q.wait.unwrap_or(true)).await?;
    Ok(axum::Json(submit_response(&out)))
}

fn submit_response(out: &crate::gateway::SubmitOutcome) -> SubmitResponse {
    SubmitResponse {
        tx_id: out.tx_id.to_hex(),
        status: if out.committed.is_some() {
            "COMMITTED".into()
        } else {
            "SUBMITTED".into()
        },
        block: out.committed.map(|c| c.block),
        code: out.committed.map(|c| c.code.as_str().to_string()),
        response_hex: hex::encode(&out.response),
    }
}

async fn query(
    State(s): State<ApiState>,
    q: Result<Query<HeightQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<QueryResponse>> {
    let sp = cbor_body(&headers, body)?;
    reach_height(&s, q).await?;
    let gw = s.gateway.clone();
    let response = tokio::task::spawn_blocking(move || gw.query(&sp))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()))??;
    Ok(axum::Json(QueryResponse {
        response_hex: hex::encode(response),
    }))
}

fn parse_tx_id(s: &str) -> ApiResult<Hash32> {
    Hash32::from_hex(s).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_tx_id",
            "a tx id is 64 hex characters",
        )
    })
}

fn chain_err(e: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", e)
}

async fn tx_status(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<TxStatus>> {
    let tx_id = parse_tx_id(&id)?;
    match s.chain.tx_status(&tx_id).map_err(chain_err)? {
        Some((block, position, code)) => Ok(axum::Json(TxStatus {
            tx_id: tx_id.to_hex(),
            block,
            position,
            code: code.as_str().to_string(),
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_tx",
            format!("no committed transaction {tx_id}"),
        )),
    }
}

/// A block as the API shows it: names and codes, never arguments or values.
pub fn block_view(rec: &BlockRecord) -> BlockView {
    let b = &rec.block;
    let mut proposer = None;
    let mut txs = Vec::new();
    if let BlockData::Batch(sb) = &b.data
        && let Ok(batch) = sb.decode_batch()
    {
        proposer = Some(batch.proposer.to_string());
        for (i, raw) in batch.txs.iter().enumerate() {
            let code = rec
                .codes
                .get(i)
                .map(|c| c.as_str().to_string())
                .unwrap_or_default();
            let view = Transaction::from_bytes(raw).ok().and_then(|tx| {
                let p = tx.signed_proposal.decode_proposal().ok()?;
                let mut orgs: Vec<String> = tx
                    .endorsements
                    .iter()
                    .map(|e| e.endorser.body.org.clone())
                    .collect();
                orgs.sort();
                orgs.dedup();
                Some(TxView {
                    tx_id: p.tx_id().to_hex(),
                    contract: p.contract.clone(),
                    function: p.function.clone(),
                    creator_org: p.header.creator.body.org.clone(),
                    endorsing_orgs: orgs,
                    code: code.clone(),
                })
            });
            txs.push(view.unwrap_or(TxView {
                tx_id: String::new(),
                contract: String::new(),
                function: String::new(),
                creator_org: String::new(),
                endorsing_orgs: vec![],
                code,
            }));
        }
    }
    BlockView {
        number: b.header.number,
        hash: b.hash().to_hex(),
        previous_hash: b.header.previous_hash.to_hex(),
        data_hash: b.header.data_hash.to_hex(),
        timestamp_ms: b.header.timestamp_ms,
        proposer,
        txs,
    }
}

async fn block(
    State(s): State<ApiState>,
    Path(n): Path<String>,
) -> ApiResult<axum::Json<BlockView>> {
    let n: u64 = n.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_block_number",
            "a block number is a non-negative integer",
        )
    })?;
    let chain = s.chain.clone();
    let rec = tokio::task::spawn_blocking(move || chain.block(n))
        .await
        .map_err(|e| chain_err(e.to_string()))?
        .map_err(chain_err)?;
    match rec {
        Some(rec) => Ok(axum::Json(block_view(&rec))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_block",
            format!("no block {n}; height is {}", s.chain.status().height),
        )),
    }
}

async fn events(
    State(s): State<ApiState>,
) -> Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = s.gateway.notifier().subscribe();
    // Streams end when the node stops accepting work, so shutdown does not wait on them.
    let stop = WatchStream::new(s.gateway.stopping())
        .filter(|stopping| *stopping)
        .map(|_| None);
    let events = BroadcastStream::new(rx).map(Some);
    let stream = events
        .merge(stop)
        .take_while(Option::is_some)
        .filter_map(|item| item)
        .map(|item| {
            Ok(match item {
                Ok(ev) => SseEvent::default()
                    .event("commit")
                    .json_data(&ev)
                    .unwrap_or_else(|_| SseEvent::default().event("error")),
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    SseEvent::default().event("lagged").data(n.to_string())
                }
            })
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn status(State(s): State<ApiState>) -> axum::Json<NodeStatus> {
    axum::Json(s.chain.status())
}

async fn healthz(State(s): State<ApiState>) -> Response {
    let chain = s.chain.clone();
    crate::ops::health_response(move || chain.health()).await
}

async fn metrics(State(s): State<ApiState>) -> Response {
    crate::ops::metrics_response(Metrics::clone(&s.metrics)).await
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI description lists exactly the routes the router serves.
    #[test]
    fn openapi_matches_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(
            doc["openapi"].as_str().unwrap().split('.').next(),
            Some("3")
        );
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.push((method.clone(), path.clone()));
                }
            }
        }
        let mut served: Vec<(String, String)> = routes()
            .into_iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }
}
