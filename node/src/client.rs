//! The HTTPS client of the node API, for the CLI, the tests and the load generator.
//!
//! ```text
//!  make_proposal(identity, network_id, contract, function, args)
//!        │ Proposal (random nonce, now) ──sign──> SignedProposal
//!        v
//!  Client ──POST /v1/transactions?wait=..  (application/cbor)──> node API ──> SubmitResponse
//!         ──POST /v1/query                 (application/cbor)──>          ──> QueryResponse
//!         ──GET  /v1/transactions/{id} | /v1/blocks/{n} | /v1/status ──>   ──> JSON views
//!  non-2xx ──> ClientError::Api { status, error, message } from the ErrorBody JSON
//! ```
//!
//! HTTP/1.1 (hyper 1) over TLS 1.3 (tokio-rustls, the config from [`crate::tls::client_config`]).
//! A `Client` is cheap to clone; clones share a pool of idle keep-alive connections, each
//! serving one request at a time, so N concurrent tasks use up to N connections and reuse them.
//! Every request, from connecting to the last byte of the answer, has a timeout, and every
//! answer a size limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use sphr_crypto::hash::Hash32;
use sphr_crypto::keys::KeyError;
use sphr_types::{Proposal, ProposalHeader, SignedProposal};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::api::model::{
    BlockView, ErrorBody, NodeStatus, QueryResponse, SubmitResponse, TxStatus,
};
use crate::identity::Identity;

/// Default time allowed for one request, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer body read.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Most idle connections kept for reuse (more concurrent requests open more, then close them).
pub const MAX_IDLE_CONNECTIONS: usize = 64;
/// Longest error message kept from a non-JSON error answer.
const MAX_ERROR_TEXT: usize = 512;

/// The content type of signed proposals.
pub const CBOR: &str = "application/cbor";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL is not `https://host[:port]`. Fix the command line or config.
    #[error("bad node URL {url:?}: {why}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// An argument cannot make a valid request (bad tx id, contract name, ...); nothing was sent.
    #[error("bad argument: {0}")]
    BadArgument(String),
    /// No TCP connection to the node. Retrying later may help.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed: untrusted certificate, wrong name, or not TLS 1.3.
    #[error("TLS with {addr}: {source}")]
    Tls {
        /// `host:port`.
        addr: String,
        /// rustls' error, wrapped by tokio-rustls.
        #[source]
        source: std::io::Error,
    },
    /// HTTP failed on an open connection (closed early, malformed answer).
    #[error("HTTP {method} {path} to {addr}: {source}")]
    Http {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// `host:port`.
        addr: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// No complete answer within the timeout. A submitted transaction may still commit: look it
    /// up by id before submitting it again.
    #[error("{method} {path}: no answer within {after_ms} ms")]
    Timeout {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// The timeout.
        after_ms: u64,
    },
    /// The answer is larger than [`MAX_RESPONSE_BYTES`].
    #[error("{method} {path}: the answer is over the {limit}-byte limit")]
    ResponseTooLarge {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// The node answered with an error status; `error` is the stable kind from its
    /// [`ErrorBody`] (`bad_request`, `unknown_identity`, ...), `message` says what was wrong.
    #[error("node answered {status} {error}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable error kind (`http_<status>` when the body was not an `ErrorBody`).
        error: String,
        /// What was wrong.
        message: String,
    },
    /// A 2xx answer is not the JSON expected.
    #[error("{path}: unexpected answer: {why}")]
    Decode {
        /// The path.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The proposal could not be encoded or signed.
    #[error("encoding the proposal: {0}")]
    Encode(String),
    /// The random source failed while making a nonce.
    #[error("making a nonce: {0}")]
    Random(#[from] KeyError),
}

/// A client of one node's API. Clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    timeout: Duration,
}

struct Inner {
    /// `host:port` for connecting and for errors.
    addr: String,
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.inner.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Splits `https://host[:port][/]` into host (no brackets), port and authority.
fn parse_base(base: &str) -> Result<(String, u16, String), ClientError> {
    let bad = |why: &str| ClientError::BadUrl {
        url: base.to_string(),
        why: why.to_string(),
    };
    let uri: Uri = base
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some(_) => return Err(bad("the node API is HTTPS only: use https://")),
        None => return Err(bad("expected https://host:port")),
    }
    if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
        return Err(bad("expected no path or query after host:port"));
    }
    let host = uri
        .host()
        .ok_or_else(|| bad("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    if port == 0 {
        return Err(bad("port 0"));
    }
    let authority = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    };
    Ok((host, port, authority))
}

/// A [`ClientError::Api`] from a non-2xx answer: the [`ErrorBody`] if the body is one, else
/// `http_<status>` and the start of the body as text.
pub fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ClientError::Api {
            status,
            error: e.error,
            message: e.message,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let mut message: String = text.chars().take(MAX_ERROR_TEXT).collect();
            if message.len() < text.len() {
                message.push('…');
            }
            ClientError::Api {
                status,
                error: format!("http_{status}"),
                message,
            }
        }
    }
}

impl Client {
    /// A client of the node at `base` (`https://127.0.0.1:7443`), trusting what `tls` trusts.
    /// Connects lazily, on the first request.
    pub fn new(base: &str, tls: Arc<ClientConfig>) -> Result<Client, ClientError> {
        let (host, port, authority) = parse_base(base)?;
        let server_name = ServerName::try_from(host.clone()).map_err(|e| ClientError::BadUrl {
            url: base.to_string(),
            why: format!("bad host name: {e}"),
        })?;
        Ok(Client {
            inner: Arc::new(Inner {
                addr: authority.clone(),
                host,
                port,
                authority,
                server_name,
                connector: TlsConnector::from(tls),
                idle: Mutex::new(Vec::new()),
            }),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same client (sharing connections) with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `host:port` of the node.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// `POST /v1/transactions?wait=..`: endorse, order and (with `wait`) wait for the commit.
    pub async fn submit(
        &self,
        proposal: &SignedProposal,
        wait: bool,
    ) -> Result<SubmitResponse, ClientError> {
        let body = proposal
            .to_bytes()
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        let path = if wait {
            "/v1/transactions?wait=true"
        } else {
            "/v1/transactions?wait=false"
        };
        self.call_json(Method::POST, path, Some(CBOR), body).await
    }

    /// `POST /v1/query`: run a function on one node without ordering it.
    pub async fn query(&self, proposal: &SignedProposal) -> Result<QueryResponse, ClientError> {
        self.query_after(proposal, None).await
    }

    /// [`Client::query`] once the node has committed block `min_height` (`?min_height=`):
    /// reads what a transaction committed in that block wrote, at any node.
    pub async fn query_after(
        &self,
        proposal: &SignedProposal,
        min_height: Option<u64>,
    ) -> Result<QueryResponse, ClientError> {
        let body = proposal
            .to_bytes()
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        let path = match min_height {
            Some(h) => format!("/v1/query?min_height={h}"),
            None => "/v1/query".to_string(),
        };
        self.call_json(Method::POST, &path, Some(CBOR), body).await
    }

    /// `POST /v1/endorse`: this node's endorsement of a proposal (nothing is ordered).
    pub async fn endorse(
        &self,
        proposal: &SignedProposal,
    ) -> Result<sphr_types::ProposalResponse, ClientError> {
        self.endorse_after(proposal, None).await
    }

    /// [`Client::endorse`] once the node has committed block `min_height` (`?min_height=`):
    /// the simulation then sees what a transaction committed in that block wrote.
    pub async fn endorse_after(
        &self,
        proposal: &SignedProposal,
        min_height: Option<u64>,
    ) -> Result<sphr_types::ProposalResponse, ClientError> {
        let body = proposal
            .to_bytes()
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        let path = match min_height {
            Some(h) => format!("/v1/endorse?min_height={h}"),
            None => "/v1/endorse".to_string(),
        };
        let (status, answer) = self.request(Method::POST, &path, Some(CBOR), body).await?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &answer));
        }
        sphr_types::ProposalResponse::from_bytes(&answer).map_err(|e| ClientError::Decode {
            path: "/v1/endorse".into(),
            why: e.to_string(),
        })
    }

    /// `POST /v1/broadcast?wait=..`: orders a transaction assembled by the client.
    pub async fn broadcast(
        &self,
        tx: &sphr_types::Transaction,
        wait: bool,
    ) -> Result<SubmitResponse, ClientError> {
        let body = tx
            .to_bytes()
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        let path = if wait {
            "/v1/broadcast?wait=true"
        } else {
            "/v1/broadcast?wait=false"
        };
        self.call_json(Method::POST, path, Some(CBOR), body).await
    }

    /// `GET /v1/transactions/{id}`: where and how a transaction committed.
    pub async fn tx_status(&self, tx_id_hex: &str) -> Result<TxStatus, ClientError> {
        let id = Hash32::from_hex(tx_id_hex)
            .map_err(|e| ClientError::BadArgument(format!("transaction id {tx_id_hex:?}: {e}")))?;
        let path = format!("/v1/transactions/{}", id.to_hex());
        self.call_json(Method::GET, &path, None, Vec::new()).await
    }

    /// `GET /v1/blocks/{n}`.
    pub async fn block(&self, number: u64) -> Result<BlockView, ClientError> {
        let path = format!("/v1/blocks/{number}");
        self.call_json(Method::GET, &path, None, Vec::new()).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.call_json(Method::GET, "/v1/status", None, Vec::new())
            .await
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let (status, answer) = self.request(method, path, content_type, body).await?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &answer));
        }
        serde_json::from_slice(&answer).map_err(|e| ClientError::Decode {
            path: path.to_string(),
            why: e.to_string(),
        })
    }

    /// Sends one request and returns the status and body, whatever the status: for tests of
    /// bad input. `path` is origin-form (`/v1/...?...`).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        if !path.starts_with('/') {
            return Err(ClientError::BadArgument(format!(
                "path {path:?} must start with '/'"
            )));
        }
        self.request_with_headers(method, path, content_type, &[], body)
            .await
    }

    /// As [`Client::request`], with extra headers (e.g. those of
    /// [`crate::signed_request::sign`]).
    pub async fn request_with_headers(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        if !path.starts_with('/') {
            return Err(ClientError::BadArgument(format!(
                "path {path:?} must start with '/'"
            )));
        }
        let body: Bytes = body.into();
        let timed = tokio::time::timeout(
            self.timeout,
            self.exchange(&method, path, content_type, headers, body),
        );
        match timed.await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                method: method.to_string(),
                path: path.to_string(),
                after_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let http = |source| ClientError::Http {
            method: method.to_string(),
            path: path.to_string(),
            addr: self.inner.addr.clone(),
            source,
        };
        loop {
            let (mut sender, reused) = match self.take_idle().await {
                Some(s) => (s, true),
                None => (self.connect().await?, false),
            };
            let mut req = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(HOST, self.inner.authority.as_str())
                .header(
                    USER_AGENT,
                    concat!("sphr-client/", env!("CARGO_PKG_VERSION")),
                )
                .header(ACCEPT, "application/json");
            if let Some(ct) = content_type {
                req = req.header(CONTENT_TYPE, ct);
            }
            for (name, value) in headers {
                req = req.header(*name, value.as_str());
            }
            let req = req
                .body(Full::new(body.clone()))
                .map_err(|e| ClientError::BadArgument(format!("request {method} {path}: {e}")))?;
            let resp = match sender.try_send_request(req).await {
                Ok(resp) => resp,
                Err(mut e) => {
                    // A pooled connection the server has closed: if the request never left,
                    // or it is a GET (safe to repeat), try the next connection. A fresh
                    // connection's failure is final, so the loop ends.
                    let unsent = e.take_message().is_some();
                    if reused && (unsent || *method == Method::GET) {
                        tracing::debug!(
                            target: "sphr::client",
                            addr = %self.inner.addr,
                            error = %e.error(),
                            "pooled connection failed, retrying on another",
                        );
                        continue;
                    }
                    return Err(http(e.into_error()));
                }
            };
            let status = resp.status().as_u16();
            let collected = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await;
            let bytes = match collected {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        return Err(ClientError::ResponseTooLarge {
                            method: method.to_string(),
                            path: path.to_string(),
                            limit: MAX_RESPONSE_BYTES,
                        });
                    }
                    return match e.downcast::<hyper::Error>() {
                        Ok(he) => Err(http(*he)),
                        Err(other) => Err(ClientError::Decode {
                            path: path.to_string(),
                            why: other.to_string(),
                        }),
                    };
                }
            };
            self.put_idle(sender);
            return Ok((status, bytes.to_vec()));
        }
    }

    /// An idle connection ready for a request, if one is left open.
    async fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let mut sender = {
                let mut idle = self
                    .inner
                    .idle
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                idle.pop()?
            };
            if sender.is_closed() {
                continue;
            }
            // Ready at once unless the previous answer is still being wound down.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(sender);
        }
    }

    /// A new TCP + TLS + HTTP/1.1 connection; its driver runs on a spawned task that ends when
    /// the connection closes or every sender is dropped.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let inner = &self.inner;
        let tcp = TcpStream::connect((inner.host.as_str(), inner.port))
            .await
            .map_err(|source| ClientError::Connect {
                addr: inner.addr.clone(),
                source,
            })?;
        // Requests are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        let tls = inner
            .connector
            .connect(inner.server_name.clone(), tcp)
            .await
            .map_err(|source| ClientError::Tls {
                addr: inner.addr.clone(),
                source,
            })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|source| ClientError::Http {
                method: "CONNECT".into(),
                path: String::new(),
                addr: inner.addr.clone(),
                source,
            })?;
        let addr = inner.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target: "sphr::client", %addr, error = %e, "connection ended");
            }
        });
        Ok(sender)
    }
}

/// A proposal by `identity` to call `contract.function(args)` on network `network_id`, with a
/// random nonce and the current time, and the proposal signed by the identity's key.
pub fn make_proposal<I>(
    identity: &Identity,
    network_id: Hash32,
    contract: &str,
    function: &str,
    args: I,
) -> Result<(Proposal, SignedProposal), ClientError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let nonce = Hash32(sphr_crypto::keys::random_nonce()?);
    let proposal = Proposal {
        header: ProposalHeader {
            network_id,
            creator: identity.cert.clone(),
            nonce,
            timestamp_ms: crate::now_ms(),
        },
        contract: contract.to_string(),
        function: function.to_string(),
        args: args
            .into_iter()
            .map(|a| ByteBuf::from(a.as_ref().to_vec()))
            .collect(),
    };
    proposal
        .check_shape()
        .map_err(|e| ClientError::BadArgument(e.to_string()))?;
    let signed = proposal
        .sign(&identity.key)
        .map_err(|e| ClientError::Encode(e.to_string()))?;
    Ok((proposal, signed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphr_crypto::cert::{Certificate, CertificateBody, Role};
    use sphr_crypto::keys::SecretKey;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn identity() -> Identity {
        let ca = SecretKey::from_bytes(&[1; 32]);
        let key = SecretKey::from_bytes(&[2; 32]);
        let cert = Certificate::issue(
            &ca,
            CertificateBody {
                subject: "alice".into(),
                org: "DevOrg".into(),
                role: Role::Client,
                public_key: key.public_key(),
                pre_public_key: None,
                not_before: 0,
                not_after: u64::MAX,
            },
        )
        .unwrap();
        Identity::new(cert, key).unwrap()
    }

    #[test]
    fn proposals_are_signed_fresh_and_well_formed() {
        let id = identity();
        let net = Hash32([9; 32]);
        let before = crate::now_ms();
        let (p, sp) = make_proposal(&id, net, "kv", "put", ["k", "v"]).unwrap();
        let decoded = sp.decode_proposal().unwrap();
        assert_eq!(decoded, p);
        sp.verify_signature(&decoded).unwrap();
        assert_eq!(p.header.network_id, net);
        assert_eq!(p.header.creator, id.cert);
        assert_eq!(
            p.args,
            vec![ByteBuf::from(b"k".to_vec()), ByteBuf::from(b"v".to_vec())]
        );
        assert!(p.header.timestamp_ms >= before && p.header.timestamp_ms <= crate::now_ms());
        let (p2, _) = make_proposal(&id, net, "kv", "put", ["k", "v"]).unwrap();
        assert_ne!(p.header.nonce, p2.header.nonce);
        assert_ne!(p.tx_id(), p2.tx_id());
        // Round trip through the wire encoding the client sends.
        let wire = sp.to_bytes().unwrap();
        assert_eq!(SignedProposal::from_bytes(&wire).unwrap(), sp);
        // Shapes are checked before anything is signed.
        let none: [&[u8]; 0] = [];
        assert!(matches!(
            make_proposal(&id, net, "", "put", none),
            Err(ClientError::BadArgument(_))
        ));
        let too_many = vec![vec![0u8]; sphr_types::MAX_ARGS + 1];
        assert!(make_proposal(&id, net, "kv", "put", &too_many).is_err());
    }

    #[test]
    fn error_bodies_become_api_errors() {
        let body = br#"{"error": "unknown_identity", "message": "no org named X"}"#;
        match api_error(403, body) {
            ClientError::Api {
                status,
                error,
                message,
            } => {
                assert_eq!(status, 403);
                assert_eq!(error, "unknown_identity");
                assert_eq!(message, "no org named X");
            }
            other => panic!("{other:?}"),
        }
        match api_error(502, b"Bad Gateway") {
            ClientError::Api { error, message, .. } => {
                assert_eq!(error, "http_502");
                assert_eq!(message, "Bad Gateway");
            }
            other => panic!("{other:?}"),
        }
        let long = vec![b'x'; 10_000];
        match api_error(500, &long) {
            ClientError::Api { message, .. } => assert!(message.chars().count() <= 513),
            other => panic!("{other:?}"),
        }
        let e = api_error(400, br#"{"error":"bad_request","message":"m"}"#).to_string();
        assert!(e.contains("400") && e.contains("bad_request"), "{e}");
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base("https://127.0.0.1:7443").unwrap(),
            ("127.0.0.1".into(), 7443, "127.0.0.1:7443".into())
        );
        assert_eq!(
            parse_base("https://localhost:7443/").unwrap(),
            ("localhost".into(), 7443, "localhost:7443".into())
        );
        assert_eq!(
            parse_base("https://[::1]:7443").unwrap(),
            ("::1".into(), 7443, "[::1]:7443".into())
        );
        assert_eq!(parse_base("https://node.example").unwrap().1, 443);
        for bad in [
            "http://127.0.0.1:7443",
            "127.0.0.1:7443",
            "https://127.0.0.1:7443/v1",
            "https://127.0.0.1:0",
            "https://",
            "not a url",
        ] {
            assert!(parse_base(bad).is_err(), "{bad}");
        }
    }

    /// A minimal HTTP/1.1 server over TLS (no hyper server in this crate): answers every
    /// request on a connection by path, counts connections, keeps connections alive.
    async fn mini_server(
        config: Arc<rustls::ServerConfig>,
    ) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let counter = conns.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    loop {
                        // Read one request head and its body.
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        while buf.len() < head_end + len {
                            let mut chunk = [0u8; 4096];
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body = buf[head_end..head_end + len].to_vec();
                        buf.drain(..head_end + len);
                        let first = head.lines().next().unwrap_or("").to_string();
                        let (status, answer) = answer_for(&first, &head, &body);
                        if status == 0 {
                            // Never answer: the client must time out.
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                        let resp = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            answer.len()
                        );
                        if tls.write_all(resp.as_bytes()).await.is_err()
                            || tls.write_all(answer.as_bytes()).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        (addr, conns)
    }

    fn answer_for(first: &str, head: &str, body: &[u8]) -> (u16, String) {
        let status = r#"{"network_id":"00","node":"node0@DevOrg","height":3,"tip":"ab","leader":null,"is_leader":true,"term":2,"peers":0}"#;
        if first.starts_with("GET /v1/status ") {
            assert!(head.to_ascii_lowercase().contains("host: "));
            return (200, status.into());
        }
        if first.starts_with("POST /v1/transactions?wait=true ") {
            let ok = head
                .to_ascii_lowercase()
                .contains("content-type: application/cbor")
                && SignedProposal::from_bytes(body).is_ok();
            if !ok {
                return (
                    415,
                    r#"{"error":"bad_request","message":"not cbor"}"#.into(),
                );
            }
            return (
                200,
                r#"{"tx_id":"aa","status":"COMMITTED","block":4,"code":"VALID","response_hex":""}"#
                    .into(),
            );
        }
        if first.starts_with("GET /v1/blocks/99 ") {
            return (
                404,
                r#"{"error":"not_found","message":"block 99 is above the tip 3"}"#.into(),
            );
        }
        if first.starts_with("GET /v1/blocks/1 ") {
            return (200, "not json".into());
        }
        if first.starts_with("GET /slow ") {
            return (0, String::new());
        }
        (404, "no route".into())
    }

    #[tokio::test]
    async fn talks_to_a_tls_server_reusing_connections() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::genesis::GenesisSpec::from_toml_str(
            r#"
            [[orgs]]
            name = "DevOrg"
            [[orgs.nodes]]
            name = "node0"
            api_port = 1
            p2p_port = 2
            ops_port = 3
            [[orgs.users]]
            name = "alice"
            role = "client"
            "#,
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let net = crate::genesis::generate(&spec, dir.path(), crate::now_ms()).unwrap();
        let node = &net.manifest.nodes[0];
        let server = crate::tls::server_config(
            &dir.path().join(&node.tls_cert),
            &dir.path().join(&node.tls_key),
        )
        .unwrap();
        let (addr, conns) = mini_server(server).await;
        let tls = crate::tls::client_config(&dir.path().join("tls-ca.pem")).unwrap();
        let client = Client::new(&format!("https://{addr}"), tls)
            .unwrap()
            .with_timeout(Duration::from_secs(5));

        for _ in 0..5 {
            let s = client.status().await.unwrap();
            assert_eq!((s.height, s.is_leader), (3, true));
        }
        assert_eq!(
            conns.load(Ordering::SeqCst),
            1,
            "keep-alive reuses one connection"
        );

        let alice = Identity::load(&dir.path().join(&net.manifest.users[0].identity)).unwrap();
        let (_, sp) = make_proposal(&alice, net.network_id, "kv", "put", ["k", "v"]).unwrap();
        let r = client.submit(&sp, true).await.unwrap();
        assert_eq!((r.block, r.code.as_deref()), (Some(4), Some("VALID")));

        match client.block(99).await {
            Err(ClientError::Api {
                status,
                error,
                message,
            }) => {
                assert_eq!((status, error.as_str()), (404, "not_found"));
                assert!(message.contains("above the tip"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            client.block(1).await,
            Err(ClientError::Decode { .. })
        ));
        let (status, body) = client
            .request(Method::POST, "/nowhere", Some("text/plain"), b"x".to_vec())
            .await
            .unwrap();
        assert_eq!((status, body.as_slice()), (404, b"no route".as_slice()));
        assert!(matches!(
            client.tx_status("xyz").await,
            Err(ClientError::BadArgument(_))
        ));
        assert_eq!(conns.load(Ordering::SeqCst), 1);

        // Concurrent requests open more connections, then reuse them.
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.status().await.map(|s| s.term) })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 2);
        }
        let after_burst = conns.load(Ordering::SeqCst);
        assert!((1..=4).contains(&after_burst), "{after_burst}");

        // No answer: the timeout fires.
        let quick = client.clone().with_timeout(Duration::from_millis(200));
        assert!(matches!(
            quick.request(Method::GET, "/slow", None, Vec::new()).await,
            Err(ClientError::Timeout { .. })
        ));
        // The timed-out connection is not reused; others still are.
        client.status().await.unwrap();

        // A client of another network does not get through TLS.
        let other = tempfile::tempdir().unwrap();
        crate::genesis::generate(&spec, other.path(), crate::now_ms()).unwrap();
        let foreign = Client::new(
            &format!("https://{addr}"),
            crate::tls::client_config(&other.path().join("tls-ca.pem")).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            foreign.status().await,
            Err(ClientError::Tls { .. })
        ));
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let tls = Arc::new(
            ClientConfig::builder_with_provider(crate::tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        );
        let client = Client::new(&format!("https://{addr}"), tls).unwrap();
        let e = client.status().await.unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&addr.to_string()));
    }
}
