//! The request-response codec: length-prefixed CBOR envelopes with a limit per kind.
//!
//! It runs in libp2p's connection tasks, not in the swarm task: a large frame is read and
//! decoded there. A refused frame is counted here (by [`crate::wire::BadReason`]) and turned
//! into an `io::Error` whose inner error is a [`BadMessage`]; libp2p then drops the stream
//! (without answering) and keeps the connection.

use std::io;
use std::sync::Arc;

use libp2p::StreamProtocol;
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;

use tracing::warn;

use crate::TARGET;
use crate::metrics::Metrics;
use crate::wire::{self, BadMessage, BadReason, Envelope, Kind, Reply, ResponseEnvelope};

/// The codec of one request kind. Requests and responses are bodies; the envelope (network
/// id, kind) is added and checked here.
#[derive(Clone)]
pub(crate) struct FrameCodec {
    kind: Kind,
    network_id: [u8; 32],
    body_limit: usize,
    metrics: Arc<Metrics>,
}

impl FrameCodec {
    pub fn new(kind: Kind, network_id: [u8; 32], body_limit: usize, metrics: Arc<Metrics>) -> Self {
        FrameCodec {
            kind,
            network_id,
            body_limit,
            metrics,
        }
    }

    fn frame_limit(&self) -> usize {
        self.body_limit.saturating_add(wire::ENVELOPE_OVERHEAD)
    }

    /// Counts and logs a refused frame. libp2p does not report a request that failed to
    /// read (it never had an id), so this is the only place it is seen; the codec does not
    /// know the peer (a frame comes only from an allowed peer: the allow-list runs first).
    fn refuse(&self, bad: BadMessage) -> io::Error {
        self.metrics.bad(bad.reason);
        warn!(target: TARGET, kind = %self.kind, reason = %bad.reason, detail = %bad.detail,
              "dropped a bad frame");
        io::Error::new(io::ErrorKind::InvalidData, bad)
    }

    /// Reads one length-prefixed frame, refusing a length over the limit before reading it.
    /// The buffer grows as bytes arrive, so a lying length prefix costs no memory.
    async fn read_frame<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let len = u64::from(u32::from_be_bytes(len));
        let limit = self.frame_limit();
        if len > u64::try_from(limit).unwrap_or(u64::MAX) {
            return Err(self.refuse(BadMessage {
                reason: BadReason::Oversized,
                detail: format!("{} frame of {len} bytes, limit {limit}", self.kind),
            }));
        }
        let mut buf = Vec::new();
        (&mut *io).take(len).read_to_end(&mut buf).await?;
        if (buf.len() as u64) < len {
            // A truncated frame: counted like any frame that does not decode.
            return Err(self.refuse(BadMessage {
                reason: BadReason::Undecodable,
                detail: format!(
                    "{} stream ended inside a frame: {} of {len} bytes",
                    self.kind,
                    buf.len()
                ),
            }));
        }
        Ok(buf)
    }

    async fn write_frame<T: AsyncWrite + Unpin + Send>(
        &self,
        io: &mut T,
        frame: io::Result<Vec<u8>>,
    ) -> io::Result<()> {
        io.write_all(&frame?).await?;
        io.flush().await
    }
}

fn encode_error(e: sphr_crypto::cbor::CborError) -> io::Error {
    io::Error::other(e.to_string())
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Result<Vec<u8>, String>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = self.read_frame(io).await?;
        wire::decode_envelope(&frame, &self.network_id, self.kind.code(), self.body_limit)
            .map_err(|bad| self.refuse(bad))
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Result<Vec<u8>, String>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = self.read_frame(io).await?;
        match wire::decode_response(&frame, &self.network_id, self.kind.code(), self.body_limit) {
            Ok(Reply::Ok(body)) if body.len() > self.body_limit => Err(self.refuse(BadMessage {
                reason: BadReason::Oversized,
                detail: format!("{} response body of {} bytes", self.kind, body.len()),
            })),
            Ok(Reply::Ok(body)) => Ok(Ok(body)),
            Ok(Reply::Err(text)) => Ok(Err(text)),
            Err(bad) => Err(self.refuse(bad)),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        body: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let env = Envelope {
            network_id: self.network_id,
            kind: self.kind.code(),
            body,
        };
        let frame = wire::encode_frame(&env).map_err(encode_error);
        self.write_frame(io, frame).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Result<Vec<u8>, String>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let reply = match response {
            Ok(body) => Reply::Ok(body),
            Err(text) => Reply::Err(wire::clip_error(text)),
        };
        let env = ResponseEnvelope {
            network_id: self.network_id,
            kind: self.kind.code(),
            reply,
        };
        let frame = wire::encode_response_frame(&env).map_err(encode_error);
        self.write_frame(io, frame).await
    }
}

/// The [`BadMessage`] inside an I/O error made by this codec, if it is one.
pub(crate) fn bad_message(e: &io::Error) -> Option<&BadMessage> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<BadMessage>())
}
