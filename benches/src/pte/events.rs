//! Commit events for the client-assembled flow: one server-sent-event stream
//! (`GET /v1/events`) per gateway node, shared by its processes, like PTE's event hub.
//!
//! ```text
//!  tx task: register(tx_id) ──> broadcast(wait=false) ──> wait(deadline)
//!                 │                                          ^   ^
//!                 v                                          │   │ resync: poll GET /v1/transactions/{id}
//!  pending: tx_id -> oneshot ──────── event "commit" ────────┘   │
//!  stream task: TLS + HTTP/1.1, reads SSE blocks; "lagged" or a reconnect bumps resync ──┘
//! ```
//!
//! The node's event buffer is bounded (a slow subscriber misses events and is sent `lagged`).
//! Events lost that way belong to transactions committed before the `lagged` notice, so on a
//! notice (or a reconnect) every waiting task asks the node for its transaction's status once:
//! found means committed (counted as `events_recovered`), not found means its event is still
//! to come. Polls are limited to [`MAX_CONCURRENT_POLLS`] per node at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{ACCEPT, HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use sphr_node::api::model::CommitEvent;
use sphr_node::client::Client;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// Longest SSE block kept in the buffer before the stream is dropped as malformed.
pub const MAX_EVENT_BLOCK_BYTES: usize = 1024 * 1024;
/// Status polls in flight at once per node after a resync.
pub const MAX_CONCURRENT_POLLS: usize = 32;
/// Longest wait for the stream to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the event stream could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The URL is not `https://host:port`.
    #[error("bad node URL {0:?}")]
    BadUrl(String),
    /// The stream did not open (connect, TLS, HTTP status).
    #[error("opening {url}/v1/events: {why}")]
    Open {
        /// The node.
        url: String,
        /// What failed.
        why: String,
    },
    /// Too many transactions wait for their commit on this node.
    #[error("{0} transactions already wait for their commit event")]
    Full(usize),
}

/// Where and how a transaction committed, from its event or a status poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSeen {
    /// Block.
    pub block: u64,
    /// Validation code (`VALID`, `MVCC_READ_CONFLICT`, ...).
    pub code: String,
    /// Found by a status poll after a resync, not by its event.
    pub via_poll: bool,
}

/// What waiting for a commit gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    /// Committed (validly or not: see the code).
    Committed(CommitSeen),
    /// No commit before the deadline.
    Timeout,
}

/// A transaction waiting for its commit event.
pub struct Registration {
    tx_id: String,
    rx: oneshot::Receiver<CommitSeen>,
    resync: watch::Receiver<u64>,
}

/// Counters of one node's stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Commit events read.
    pub events: u64,
    /// Events the node dropped for this subscriber (`lagged` notices).
    pub lagged: u64,
    /// Times the stream was reopened.
    pub reconnects: u64,
}

struct Inner {
    url: String,
    host: String,
    port: u16,
    authority: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    pending: Mutex<HashMap<String, oneshot::Sender<CommitSeen>>>,
    max_pending: usize,
    resync: watch::Sender<u64>,
    status: Client,
    polls: Semaphore,
    events: AtomicU64,
    lagged: AtomicU64,
    reconnects: AtomicU64,
}

/// The commit-event stream of one node. Dropping it stops the stream.
pub struct EventHub {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for EventHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Aborts a spawned task when dropped (the HTTP connection driver of a stream).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn split_url(url: &str) -> Result<(String, u16, String, ServerName<'static>), EventError> {
    let bad = || EventError::BadUrl(url.to_string());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("https") {
        return Err(bad());
    }
    let host = uri
        .host()
        .ok_or_else(bad)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let authority = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    };
    let server_name = ServerName::try_from(host.clone()).map_err(|_| bad())?;
    Ok((host, port, authority, server_name))
}

/// One SSE block: its event name (default `message`) and its data lines joined by `\n`.
/// Comment-only blocks (keep-alives) give `None`.
pub fn parse_sse_block(block: &str) -> Option<(String, String)> {
    let mut event = None;
    let mut data: Option<String> = None;
    for line in block.split('\n') {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    if event.is_none() && data.is_none() {
        return None;
    }
    Some((
        event.unwrap_or_else(|| "message".to_string()),
        data.unwrap_or_default(),
    ))
}

/// Takes the complete blocks (ended by a blank line) off the front of `buf`; `\r` is dropped.
pub fn take_blocks(buf: &mut Vec<u8>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
        let block: Vec<u8> = buf.drain(..end + 2).collect();
        out.push(String::from_utf8_lossy(&block[..end]).into_owned());
    }
    out
}

impl EventHub {
    /// Opens the stream of the node at `url` and waits until it is subscribed; `status` is a
    /// client of the same node for polls; at most `max_pending` transactions may wait at once.
    pub async fn connect(
        url: &str,
        tls: Arc<ClientConfig>,
        status: Client,
        max_pending: usize,
    ) -> Result<EventHub, EventError> {
        let (host, port, authority, server_name) = split_url(url)?;
        let (resync, _) = watch::channel(0u64);
        let inner = Arc::new(Inner {
            url: url.to_string(),
            host,
            port,
            authority,
            server_name,
            tls: TlsConnector::from(tls),
            pending: Mutex::new(HashMap::new()),
            max_pending: max_pending.max(1),
            resync,
            status,
            polls: Semaphore::new(MAX_CONCURRENT_POLLS),
            events: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(stream_loop(inner.clone(), ready_tx));
        let hub = EventHub { inner, task };
        match tokio::time::timeout(CONNECT_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(hub),
            Ok(Ok(Err(why))) => Err(EventError::Open {
                url: url.to_string(),
                why,
            }),
            Ok(Err(_)) => Err(EventError::Open {
                url: url.to_string(),
                why: "the stream task ended".into(),
            }),
            Err(_) => Err(EventError::Open {
                url: url.to_string(),
                why: format!("not open within {} s", CONNECT_TIMEOUT.as_secs()),
            }),
        }
    }

    /// Registers a transaction before it is broadcast (so its event cannot be missed).
    pub fn register(&self, tx_id_hex: String) -> Result<Registration, EventError> {
        let (tx, rx) = oneshot::channel();
        let mut pending = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.len() >= self.inner.max_pending {
            return Err(EventError::Full(pending.len()));
        }
        let resync = self.inner.resync.subscribe();
        pending.insert(tx_id_hex.clone(), tx);
        Ok(Registration {
            tx_id: tx_id_hex,
            rx,
            resync,
        })
    }

    /// Forgets a registration (the broadcast failed, or the wait ended).
    pub fn cancel(&self, tx_id_hex: &str) {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(tx_id_hex);
    }

    /// Waits for the registered transaction's commit until `deadline`.
    pub async fn wait(&self, reg: Registration, deadline: tokio::time::Instant) -> Waited {
        let Registration {
            tx_id,
            mut rx,
            mut resync,
        } = reg;
        let mut resync_alive = true;
        let outcome = loop {
            tokio::select! {
                r = &mut rx => match r {
                    Ok(seen) => break Waited::Committed(seen),
                    // The hub is gone: nothing more will come.
                    Err(_) => break Waited::Timeout,
                },
                changed = resync.changed(), if resync_alive => {
                    if changed.is_err() {
                        resync_alive = false;
                        continue;
                    }
                    if let Some(seen) = self.poll(&tx_id).await {
                        break Waited::Committed(seen);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break Waited::Timeout,
            }
        };
        self.cancel(&tx_id);
        outcome
    }

    async fn poll(&self, tx_id: &str) -> Option<CommitSeen> {
        let _permit = self.inner.polls.acquire().await.ok()?;
        let s = self.inner.status.tx_status(tx_id).await.ok()?;
        Some(CommitSeen {
            block: s.block,
            code: s.code,
            via_poll: true,
        })
    }

    /// The stream's counters.
    pub fn stats(&self) -> HubStats {
        HubStats {
            events: self.inner.events.load(Ordering::Relaxed),
            lagged: self.inner.lagged.load(Ordering::Relaxed),
            reconnects: self.inner.reconnects.load(Ordering::Relaxed),
        }
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }
}

async fn stream_loop(inner: Arc<Inner>, ready: oneshot::Sender<Result<(), String>>) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    loop {
        let result = stream_once(&inner, &mut ready).await;
        if let Some(r) = ready.take() {
            // Never opened: report and stop.
            let _ = r.send(Err(result.err().unwrap_or_else(|| "closed".into())));
            return;
        }
        if let Err(why) = result {
            tracing::debug!(target: "sphr::pte", url = %inner.url, %why, "event stream ended");
        }
        inner.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
        // Events may have been missed while the stream was down.
        inner.resync.send_modify(|v| *v += 1);
    }
}

async fn stream_once(
    inner: &Arc<Inner>,
    ready: &mut Option<oneshot::Sender<Result<(), String>>>,
) -> Result<(), String> {
    let tcp = TcpStream::connect((inner.host.as_str(), inner.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let tls = inner
        .tls
        .connect(inner.server_name.clone(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let req = Request::get("/v1/events")
        .header(HOST, inner.authority.as_str())
        .header(ACCEPT, "text/event-stream")
        .header(USER_AGENT, concat!("sphr-pte/", env!("CARGO_PKG_VERSION")))
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET /v1/events: {e}"))?;
    if resp.status() != hyper::StatusCode::OK {
        return Err(format!("GET /v1/events answered {}", resp.status()));
    }
    // The node subscribed before answering: from here no commit event is missed.
    if let Some(r) = ready.take() {
        let _ = r.send(Ok(()));
    }
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading events: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend(data.iter().copied().filter(|b| *b != b'\r'));
        for block in take_blocks(&mut buf) {
            dispatch(inner, &block);
        }
        if buf.len() > MAX_EVENT_BLOCK_BYTES {
            return Err(format!(
                "an event block is over {MAX_EVENT_BLOCK_BYTES} bytes"
            ));
        }
    }
    Err("the node closed the stream".into())
}

fn dispatch(inner: &Inner, block: &str) {
    let Some((event, data)) = parse_sse_block(block) else {
        return;
    };
    match event.as_str() {
        "commit" => {
            let Ok(ev) = serde_json::from_str::<CommitEvent>(&data) else {
                return;
            };
            inner.events.fetch_add(1, Ordering::Relaxed);
            let waiter = inner
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&ev.tx_id);
            if let Some(w) = waiter {
                let _ = w.send(CommitSeen {
                    block: ev.block,
                    code: ev.code,
                    via_poll: false,
                });
            }
        }
        "lagged" => {
            let n = data.trim().parse::<u64>().unwrap_or(1);
            inner.lagged.fetch_add(n, Ordering::Relaxed);
            inner.resync.send_modify(|v| *v += 1);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_are_split_and_parsed() {
        let mut buf = b"event: commit\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: lagged\ndata: 12\n\nevent: com"
            .to_vec();
        let blocks = take_blocks(&mut buf);
        assert_eq!(blocks.len(), 3);
        assert_eq!(buf, b"event: com");
        assert_eq!(
            parse_sse_block(&blocks[0]),
            Some(("commit".into(), "{\"a\":1}".into()))
        );
        assert_eq!(parse_sse_block(&blocks[1]), None);
        assert_eq!(
            parse_sse_block(&blocks[2]),
            Some(("lagged".into(), "12".into()))
        );
        assert_eq!(
            parse_sse_block("data: x\ndata:y\nid: 3"),
            Some(("message".into(), "x\ny".into()))
        );
        let mut empty = Vec::new();
        assert!(take_blocks(&mut empty).is_empty());
    }

    #[test]
    fn urls_must_be_https() {
        assert!(split_url("https://127.0.0.1:7443").is_ok());
        let (host, port, authority, _) = split_url("https://[::1]:9").unwrap();
        assert_eq!(
            (host.as_str(), port, authority.as_str()),
            ("::1", 9, "[::1]:9")
        );
        assert!(split_url("http://127.0.0.1:7443").is_err());
        assert!(split_url("nonsense").is_err());
    }
}
