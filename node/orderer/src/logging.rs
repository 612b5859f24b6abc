//! A slog [`Drain`](slog::Drain) that forwards raft-rs's logs to `tracing`, target
//! `"sphr::raft"`.
//!
//! ```text
//!  raft-rs ──slog::Record──> TracingDrain ──tracing event (target "sphr::raft")──> subscriber
//!    Critical, Error -> ERROR    Warning -> WARN    Info -> INFO    Debug -> DEBUG    Trace -> TRACE
//! ```
//!
//! The message and the key-values (raft-rs attaches `raft_id` and, per call, things like
//! `term`) are formatted only when the subscriber wants the event at that level.

use std::fmt::{self, Write as _};

use slog::{KV, Level, OwnedKVList, Record, Serializer};

/// Forwards slog records to `tracing`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingDrain;

/// A slog logger whose records go to `tracing`, to hand to `raft::RawNode::new`.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        macro_rules! forward {
            ($level:expr) => {
                if tracing::enabled!(target: "sphr::raft", $level) {
                    let kv = format_kv(record, values);
                    tracing::event!(target: "sphr::raft", $level, raft = %kv, "{}", record.msg());
                }
            };
        }
        match record.level() {
            Level::Critical | Level::Error => forward!(tracing::Level::ERROR),
            Level::Warning => forward!(tracing::Level::WARN),
            Level::Info => forward!(tracing::Level::INFO),
            Level::Debug => forward!(tracing::Level::DEBUG),
            Level::Trace => forward!(tracing::Level::TRACE),
        }
        Ok(())
    }
}

/// Formats the record's and the logger's key-values as `k=v, k=v`.
fn format_kv(record: &Record<'_>, values: &OwnedKVList) -> String {
    let mut s = KvString(String::new());
    // Serialising into a String cannot fail; a failure would only truncate the fields.
    let _ = record.kv().serialize(record, &mut s);
    let _ = values.serialize(record, &mut s);
    s.0
}

struct KvString(String);

impl Serializer for KvString {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        if !self.0.is_empty() {
            self.0.push_str(", ");
        }
        let _ = write!(self.0, "{key}={val}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_fields_and_never_fails() {
        let logger = raft_logger().new(slog::o!("raft_id" => 3));
        // No subscriber: the drain must simply return.
        slog::info!(logger, "became leader"; "term" => 7);
        slog::crit!(logger, "critical");

        struct Capture(std::sync::Mutex<Vec<String>>);
        impl slog::Drain for &'static Capture {
            type Ok = ();
            type Err = slog::Never;
            fn log(&self, r: &Record<'_>, v: &OwnedKVList) -> Result<(), slog::Never> {
                self.0
                    .lock()
                    .unwrap()
                    .push(format!("{} [{}]", r.msg(), format_kv(r, v)));
                Ok(())
            }
        }
        let cap: &'static Capture = Box::leak(Box::new(Capture(Default::default())));
        let l = slog::Logger::root(cap, slog::o!("raft_id" => 3));
        slog::info!(l, "became leader at term {}", 7; "term" => 7);
        let got = cap.0.lock().unwrap().clone();
        assert_eq!(
            got,
            vec!["became leader at term 7 [term=7, raft_id=3]".to_string()]
        );
    }
}
