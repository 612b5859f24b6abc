//! The operations endpoint, on its own port (`[ops] listen`, default `127.0.0.1:9443`), as
//! Fabric's operations service: for Prometheus, load balancers and the operator.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/metrics` | Prometheus text format (docs/metrics.md lists every metric) |
//! | GET | `/healthz` | 200 `{"status":"ok",...}`, or 503 naming the failing components (storage, raft, p2p) |
//! | GET | `/version` | `{"version","node","network_id"}` |
//! | GET | `/logspec` | `{"spec":"info"}`: the log filter in force |
//! | PUT | `/logspec` | body `{"spec":"info,sphr::orderer=debug"}`: changes it at runtime (loopback clients only) |
//! | GET, PUT | `/faults/p2p` | tests only, when `p2p.fault_injection = true`: body `{"isolated":true}` cuts the node off from its peers, `false` heals it (loopback clients only); 404 otherwise |
//!
//! Plain HTTP unless `ops.tls_cert` and `ops.tls_key` are set (then HTTPS, TLS 1.3). The
//! default address is loopback, so only the host itself (a local Prometheus or agent) can
//! connect; `PUT /logspec` is refused (403) to any client that is not on loopback, whatever
//! the listen address, since a log level is the host operator's business. Errors are JSON
//! `{"error","message"}` like the client API's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum_server::tls_rustls::RustlsConfig;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::NodeConfig;
use crate::health::HealthChecker;
use crate::logging::LogControl;
use crate::metrics::Metrics;
use crate::service::ServiceError;

/// Largest request body on the operations endpoint (a log filter).
const MAX_BODY_BYTES: usize = 4096;

/// `/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// sphr-node's version.
    pub version: String,
    /// This node, `name@org`.
    pub node: String,
    /// The network id (hex).
    pub network_id: String,
}

/// `/logspec`, both ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// A tracing env-filter.
    pub spec: String,
}

/// `/faults/p2p`, both ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pFault {
    /// Whether the node is cut off from every peer.
    pub isolated: bool,
}

/// What the handlers share.
#[derive(Clone)]
pub struct OpsState {
    /// The p2p fault switch, only when `p2p.fault_injection` is set (tests).
    pub p2p_faults: Option<sphr_p2p::P2pHandle>,
    /// Metrics.
    pub metrics: Metrics,
    /// Health checks.
    pub health: Arc<HealthChecker>,
    /// The log filter.
    pub log: LogControl,
    /// `/version`.
    pub version: VersionInfo,
}

/// The operations router (every route answers JSON errors; bodies up to 4 KiB).
pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/version", get(version))
        .route("/logspec", get(get_logspec).put(put_logspec))
        .route("/faults/p2p", get(get_p2p_fault).put(put_p2p_fault))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no_route",
                "no such route; the operations endpoint serves /metrics, /healthz, /version, /logspec",
            )
        })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(crate::api::model::ErrorBody {
            error: kind.to_string(),
            message: message.into(),
        }),
    )
        .into_response()
}

/// The metrics in Prometheus text format (sampling reads storage: off the async threads).
pub async fn metrics_response(metrics: Metrics) -> Response {
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// 200 or 503 with the health report (the checks read storage: off the async threads).
pub async fn health_response(
    check: impl FnOnce() -> crate::health::HealthReport + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(check).await {
        Ok(report) => {
            let status = if report.is_healthy() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, axum::Json(report)).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn metrics(State(s): State<OpsState>) -> Response {
    metrics_response(s.metrics).await
}

async fn healthz(State(s): State<OpsState>) -> Response {
    let h = s.health.clone();
    health_response(move || h.check()).await
}

async fn version(State(s): State<OpsState>) -> axum::Json<VersionInfo> {
    axum::Json(s.version)
}

async fn get_logspec(State(s): State<OpsState>) -> axum::Json<LogSpec> {
    axum::Json(LogSpec { spec: s.log.spec() })
}

async fn put_logspec(
    State(s): State<OpsState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if !peer.ip().is_loopback() {
        return error(
            StatusCode::FORBIDDEN,
            "not_loopback",
            "the log filter can be changed from the node's host only (a loopback address)",
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(r) => return error(StatusCode::BAD_REQUEST, "bad_body", r.body_text()),
    };
    let want: LogSpec = match serde_json::from_slice(&body) {
        Ok(w) => w,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("expected {{\"spec\": \"<tracing filter>\"}}: {e}"),
            );
        }
    };
    let old = s.log.spec();
    match s.log.set(&want.spec) {
        Ok(()) => {
            info!(target: "sphr::ops", from = %old, to = %want.spec, "log filter changed");
            axum::Json(LogSpec { spec: s.log.spec() }).into_response()
        }
        Err(e @ crate::logging::LogError::NotInstalled) => {
            error(StatusCode::CONFLICT, "not_installed", e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_filter", e.to_string()),
    }
}

fn faults_off() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "fault_injection_off",
        "fault injection is off: it needs p2p.fault_injection = true (tests only) and peers",
    )
}

async fn get_p2p_fault(State(s): State<OpsState>) -> Response {
    match &s.p2p_faults {
        Some(p) => axum::Json(P2pFault {
            isolated: p.is_isolated(),
        })
        .into_response(),
        None => faults_off(),
    }
}

async fn put_p2p_fault(
    State(s): State<OpsState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Some(p2p) = &s.p2p_faults else {
        return faults_off();
    };
    if !peer.ip().is_loopback() {
        return error(
            StatusCode::FORBIDDEN,
            "not_loopback",
            "faults can be injected from the node's host only (a loopback address)",
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(r) => return error(r.status(), "bad_body", r.body_text()),
    };
    let want: P2pFault = match serde_json::from_slice(&body) {
        Ok(w) => w,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("expected {{\"isolated\": true|false}}: {e}"),
            );
        }
    };
    match p2p.set_isolated(want.isolated).await {
        Ok(()) => {
            warn!(target: "sphr::ops", isolated = want.isolated, "p2p fault switch set");
            axum::Json(P2pFault {
                isolated: p2p.is_isolated(),
            })
            .into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "p2p_stopped",
            e.to_string(),
        ),
    }
}

/// The running operations server.
pub struct OpsServer {
    addr: SocketAddr,
    tls: bool,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

/// The operations port, bound (early in start, so a port clash stops the node before it
/// opens anything else) and not yet serving.
pub struct OpsListener {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl OpsListener {
    /// Binds `[ops] listen` and loads the TLS material when `ops.tls_cert` is set.
    pub fn bind(cfg: &NodeConfig) -> Result<OpsListener, ServiceError> {
        let listen = cfg
            .ops_listen()
            .map_err(|e| ServiceError::Ops(e.to_string()))?;
        let tls = match (&cfg.ops.tls_cert, &cfg.ops.tls_key) {
            (Some(c), Some(k)) => Some(
                crate::tls::server_config(c, k).map_err(|e| ServiceError::Tls(e.to_string()))?,
            ),
            _ => None,
        };
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| ServiceError::Ops(format!("bind {listen} (ops.listen): {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ServiceError::Ops(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServiceError::Ops(e.to_string()))?;
        Ok(OpsListener {
            listener,
            addr,
            tls,
        })
    }

    /// Serves the operations routes on the bound port.
    pub fn serve(self, state: OpsState) -> Result<OpsServer, ServiceError> {
        let OpsListener {
            listener,
            addr,
            tls,
        } = self;
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        if tls.is_none() && !addr.ip().is_loopback() {
            warn!(target: "sphr::ops", %addr,
                  "the operations endpoint serves plain HTTP beyond loopback; set ops.tls_cert and ops.tls_key, or firewall the port");
        }
        let is_tls = tls.is_some();
        let task = match tls {
            Some(tls) => {
                let srv = axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(tls))
                    .map_err(|e| ServiceError::Ops(e.to_string()))?
                    .handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = srv.serve(app).await {
                        warn!(target: "sphr::ops", error = %e, "operations server stopped");
                    }
                })
            }
            None => {
                let srv = axum_server::from_tcp(listener)
                    .map_err(|e| ServiceError::Ops(e.to_string()))?
                    .handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = srv.serve(app).await {
                        warn!(target: "sphr::ops", error = %e, "operations server stopped");
                    }
                })
            }
        };
        Ok(OpsServer {
            addr,
            tls: is_tls,
            handle,
            task,
        })
    }
}

impl OpsServer {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Stops serving (requests in flight get `grace`).
    pub async fn shutdown(self, grace: Duration) {
        self.handle.graceful_shutdown(Some(grace));
        let _ = self.task.await;
    }
}
