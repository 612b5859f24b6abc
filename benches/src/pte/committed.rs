//! `--committed-out FILE`: every transaction the load generator saw committed, one per line,
//! for checks after the run (testnet/chaos.sh looks each one up on every node).
//!
//! ```text
//!  <tx id hex> <validation code> <block>
//!  3f9a...e1 VALID 42
//!  77c0...0b MVCC_READ_CONFLICT 43
//! ```
//!
//! A line is written when the client learns the commit: the answer of
//! `POST /v1/transactions?wait=true` (gateway flow) or the commit event (client flow), valid
//! or not. Transactions whose fate the client never learnt (timeouts, a node killed while it
//! waited) are not written: they were never acknowledged. Lines go through a buffer flushed
//! at the end of the run and every [`FLUSH_EVERY`] lines, so a killed load generator loses
//! at most that many.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Lines between flushes.
pub const FLUSH_EVERY: u64 = 256;

/// The file of committed transactions, shared by every process of a run.
pub struct CommittedLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    out: BufWriter<File>,
    lines: u64,
    error: Option<String>,
}

impl CommittedLog {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> std::io::Result<CommittedLog> {
        let file = File::create(path)?;
        Ok(CommittedLog {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                out: BufWriter::new(file),
                lines: 0,
                error: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one committed transaction. The first write error is kept (see
    /// [`CommittedLog::finish`]) and later lines are dropped.
    pub fn record(&self, tx_id: &str, code: &str, block: Option<u64>) {
        let mut g = self.lock();
        if g.error.is_some() {
            return;
        }
        let block = block.map_or_else(|| "-".to_string(), |b| b.to_string());
        let mut result = writeln!(g.out, "{tx_id} {code} {block}");
        g.lines += 1;
        if result.is_ok() && g.lines.is_multiple_of(FLUSH_EVERY) {
            result = g.out.flush();
        }
        if let Err(e) = result {
            g.error = Some(e.to_string());
        }
    }

    /// Lines recorded so far.
    pub fn lines(&self) -> u64 {
        self.lock().lines
    }

    /// Flushes; the first error met while writing, naming the file.
    pub fn finish(&self) -> Result<u64, String> {
        let mut g = self.lock();
        if let Some(e) = &g.error {
            return Err(format!("{}: {e}", self.path.display()));
        }
        g.out
            .flush()
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(g.lines)
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    /// Transactions in the file (acknowledged to the load generator).
    pub acknowledged: u64,
    /// Of which VALID.
    pub valid: u64,
    /// Nodes asked.
    pub nodes: usize,
    /// Transactions found on every node with the code the load generator saw.
    pub found_on_every_node: u64,
    /// (node, tx id, code in the file, what the node said), the first 20.
    pub problems: Vec<(String, String, String, String)>,
    /// Number of (node, tx) lookups that disagreed or failed.
    pub problem_count: u64,
}

/// Lookups in flight per node.
const CHECK_CONCURRENCY: usize = 16;

/// Looks up every transaction of a `--committed-out` file on every node of the network
/// (`GET /v1/transactions/{id}`) and compares the validation codes.
pub async fn check(network: &Path, file: &Path) -> Result<CheckReport, String> {
    use futures_util::StreamExt;
    let manifest_path = network.join(sphr_node::genesis::NETWORK_FILE);
    let manifest =
        sphr_node::genesis::NetworkManifest::load(&manifest_path).map_err(|e| e.to_string())?;
    let tls = sphr_node::tls::client_config(&network.join(&manifest.tls_ca))
        .map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut want: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some(id), Some(code)) => want.push((id.to_string(), code.to_string())),
            _ => {
                return Err(format!(
                    "{}:{}: expected `<tx id> <code>`",
                    file.display(),
                    n + 1
                ));
            }
        }
    }
    let mut report = CheckReport {
        acknowledged: want.len() as u64,
        valid: want.iter().filter(|(_, c)| c == "VALID").count() as u64,
        nodes: manifest.nodes.len(),
        ..CheckReport::default()
    };
    let mut ok_count = vec![0usize; want.len()];
    for node in &manifest.nodes {
        let name = format!("{}@{}", node.name, node.org);
        let client =
            sphr_node::client::Client::new(&format!("https://{}", node.api_addr), tls.clone())
                .map_err(|e| format!("{name}: {e}"))?
                .with_timeout(std::time::Duration::from_secs(10));
        let answers: Vec<(usize, Result<String, String>)> =
            futures_util::stream::iter(want.iter().enumerate())
                .map(|(i, (id, _))| {
                    let client = client.clone();
                    async move {
                        let r = client
                            .tx_status(id)
                            .await
                            .map(|s| s.code)
                            .map_err(|e| e.to_string());
                        (i, r)
                    }
                })
                .buffer_unordered(CHECK_CONCURRENCY)
                .collect()
                .await;
        for (i, r) in answers {
            let Some((id, code)) = want.get(i) else {
                continue;
            };
            let said = match r {
                Ok(c) if c == *code => {
                    if let Some(k) = ok_count.get_mut(i) {
                        *k += 1;
                    }
                    continue;
                }
                Ok(c) => c,
                Err(e) => e,
            };
            report.problem_count += 1;
            if report.problems.len() < 20 {
                report
                    .problems
                    .push((name.clone(), id.clone(), code.clone(), said));
            }
        }
    }
    report.found_on_every_node = ok_count.iter().filter(|k| **k == report.nodes).count() as u64;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_line_per_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("committed.txt");
        let log = CommittedLog::create(&path).unwrap();
        log.record("aa", "VALID", Some(3));
        log.record("bb", "MVCC_READ_CONFLICT", None);
        assert_eq!(log.finish().unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "aa VALID 3\nbb MVCC_READ_CONFLICT -\n");
    }
}
