//! The systemd notify protocol (`sd_notify(3)`), without libsystemd: one datagram per state
//! change to the unix socket named by `NOTIFY_SOCKET`.
//!
//! ```text
//!  sphr-node run ── start() serving ──> "READY=1\nSTATUS=serving ..."  ──┐
//!                ── SIGTERM ──────────> "STOPPING=1\nSTATUS=stopping"  ──┼─> $NOTIFY_SOCKET (systemd)
//! ```
//!
//! With `Type=notify` in the unit (configs/systemd/sphr-node.service) systemd considers the
//! node started only once READY=1 arrives, i.e. once the ledger is open, Raft runs and the API
//! and operations ports are bound. Without `NOTIFY_SOCKET` (not under systemd) nothing is sent.
//! `NOTIFY_SOCKET` may name a path or, with a leading `@`, an abstract socket.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Largest notify message sent (systemd reads far more; messages here are short).
const MAX_MESSAGE_BYTES: usize = 4096;

/// Why a notification was not sent.
///
/// What follows: logged as a warning; the node goes on (systemd will time the start out
/// if READY=1 never arrives, which is the operator's signal).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither a path nor `@name`.
    #[error("NOTIFY_SOCKET {0:?} is not a unix socket path or @abstract name")]
    BadAddress(String),
    /// The message is empty, too long, or has a NUL byte.
    #[error("notify message refused: {0}")]
    BadMessage(&'static str),
    /// The socket could not be created or the datagram not sent.
    #[error("sending to NOTIFY_SOCKET {socket:?}: {source}")]
    Io {
        socket: String,
        #[source]
        source: std::io::Error,
    },
}

/// Sends `state` (newline-separated `KEY=VALUE` lines, e.g. `READY=1`) to the socket in
/// `NOTIFY_SOCKET`. Returns false when the variable is not set (not run by systemd).
pub fn notify(state: &str) -> Result<bool, NotifyError> {
    match std::env::var("NOTIFY_SOCKET") {
        Ok(socket) if !socket.is_empty() => notify_to(&socket, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` to the notify socket `socket` (a path, or `@name` for an abstract socket).
pub fn notify_to(socket: &str, state: &str) -> Result<(), NotifyError> {
    if state.is_empty() {
        return Err(NotifyError::BadMessage("empty"));
    }
    if state.len() > MAX_MESSAGE_BYTES {
        return Err(NotifyError::BadMessage("too long"));
    }
    if state.contains('\0') {
        return Err(NotifyError::BadMessage("contains a NUL byte"));
    }
    let addr = address(socket)?;
    let io = |source| NotifyError::Io {
        socket: socket.to_string(),
        source,
    };
    let sock = UnixDatagram::unbound().map_err(io)?;
    sock.send_to_addr(state.as_bytes(), &addr).map_err(io)?;
    Ok(())
}

fn address(socket: &str) -> Result<SocketAddr, NotifyError> {
    if let Some(name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(|_| NotifyError::BadAddress(socket.to_string()));
    }
    if !socket.starts_with('/') {
        return Err(NotifyError::BadAddress(socket.to_string()));
    }
    SocketAddr::from_pathname(socket).map_err(|_| NotifyError::BadAddress(socket.to_string()))
}

/// Sends `state` and logs a warning if that failed.
pub fn notify_or_warn(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!(target: "sphr::service", error = %e, "systemd notification not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        notify_to(path.to_str().unwrap(), "READY=1\nSTATUS=up").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("sphr-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        notify_to(&format!("@{name}"), "STOPPING=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        assert!(matches!(
            notify_to("relative", "READY=1"),
            Err(NotifyError::BadAddress(_))
        ));
        assert!(matches!(
            notify_to(path.to_str().unwrap(), ""),
            Err(NotifyError::BadMessage(_))
        ));
    }
}
