//! Logging: tracing-subscriber, human or JSON lines on stderr, with a filter that can be read
//! and changed at runtime (`GET`/`PUT /logspec` on the operations endpoint).
//!
//! ```text
//!  tracing events ──> registry ──> reload::Layer<EnvFilter> ──> fmt layer (human | json) ──> stderr
//!                                        ^
//!          LogControl::set(spec) ────────┘  (validated first; the old filter stays on error)
//! ```
//!
//! Log lines never carry patient data: modules log ids, heights, codes, counts and
//! names of contracts and orgs, never arguments, values or record contents.

use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Longest filter accepted (bytes).
pub const MAX_FILTER_BYTES: usize = 1024;

/// Why a log filter or the logger was refused.
///
/// What follows: `/logspec` answers 400 (bad filter) or 409 (not installed) and the filter
/// in force does not change; at start, the node does not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The filter does not parse.
    #[error("{spec:?} is not a valid tracing filter: {why}")]
    BadFilter { spec: String, why: String },
    /// The filter is longer than [`MAX_FILTER_BYTES`].
    #[error("a filter is at most {MAX_FILTER_BYTES} bytes")]
    TooLong,
    /// This process did not install the node's logger (an embedded node, e.g. in tests), so
    /// there is no filter to change.
    #[error("this process did not install the node's logger; the filter cannot be changed")]
    NotInstalled,
    /// A global logger was already installed.
    #[error("cannot install the logger: {0}")]
    Install(String),
}

/// Parses a tracing env-filter (`info`, `warn,sphr::orderer=debug`).
pub fn parse_filter(spec: &str) -> Result<EnvFilter, LogError> {
    if spec.len() > MAX_FILTER_BYTES {
        return Err(LogError::TooLong);
    }
    EnvFilter::builder()
        .parse(spec)
        .map_err(|e| LogError::BadFilter {
            spec: spec.to_string(),
            why: e.to_string(),
        })
}

/// Reads and changes the log filter in force.
#[derive(Clone)]
pub struct LogControl {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    spec: Arc<Mutex<String>>,
}

impl LogControl {
    /// Installs the process-wide logger on stderr: `format` is `human` or `json`; the filter
    /// is `RUST_LOG` when set and valid, else `filter`.
    pub fn init(filter: &str, format: &str) -> Result<LogControl, LogError> {
        let spec = std::env::var("RUST_LOG")
            .ok()
            .filter(|s| parse_filter(s).is_ok())
            .unwrap_or_else(|| filter.to_string());
        let (layer, handle) = reload::Layer::new(parse_filter(&spec)?);
        let (human, json) = if format == "json" {
            (
                None,
                Some(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(std::io::stderr),
                ),
            )
        } else {
            (
                Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)),
                None,
            )
        };
        tracing_subscriber::registry()
            .with(layer)
            .with(human)
            .with(json)
            .try_init()
            .map_err(|e| LogError::Install(e.to_string()))?;
        Ok(LogControl {
            handle: Some(handle),
            spec: Arc::new(Mutex::new(spec)),
        })
    }

    /// A control for a node embedded in another program (tests): it reports `filter` and
    /// refuses changes.
    pub fn detached(filter: &str) -> LogControl {
        LogControl {
            handle: None,
            spec: Arc::new(Mutex::new(filter.to_string())),
        }
    }

    /// The filter in force.
    pub fn spec(&self) -> String {
        self.spec
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the filter; on error the old one stays.
    pub fn set(&self, spec: &str) -> Result<(), LogError> {
        let filter = parse_filter(spec)?;
        let handle = self.handle.as_ref().ok_or(LogError::NotInstalled)?;
        let mut current = self.spec.lock().unwrap_or_else(PoisonError::into_inner);
        handle
            .reload(filter)
            .map_err(|e| LogError::Install(e.to_string()))?;
        *current = spec.to_string();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("warn,sphr::orderer=debug").is_ok());
        assert!(matches!(
            parse_filter("info,x=loud"),
            Err(LogError::BadFilter { .. })
        ));
        assert!(matches!(
            parse_filter(&"a".repeat(MAX_FILTER_BYTES + 1)),
            Err(LogError::TooLong)
        ));
        let d = LogControl::detached("warn");
        assert_eq!(d.spec(), "warn");
        assert!(matches!(d.set("info"), Err(LogError::NotInstalled)));
        assert!(matches!(d.set("x=loud"), Err(LogError::BadFilter { .. })));
        assert_eq!(d.spec(), "warn");
    }
}
