//! `sphr-node vault ...`: the hospital's SPHR data vault, run on the node's host by its staff.
//!
//! ```text
//!  vault ingest --source S --table T.csv --columns C.csv --hubs H.csv [--allow-bad-rows]
//!               [--profile-json FILE]       progress bar; report; column profile
//!  vault tags [--source S] [--set tags.csv] list the tag maps, or replace one from a file
//!  vault profile [--ingest N | --source S] [--json]   the Assess step's profile of an ingest
//!  vault ingests                            every ingest: id, source, rows, SHA-256
//!  vault link-patient --patient id@org --chi KEY [--unlink]
//! ```
//!
//! Every command opens the vault database under the node's data directory (see
//! [`crate::vault`]: a database of its own, so the node keeps running) and waits up to
//! `--wait-lock-ms` while the node holds it to package a bundle. The node's `--config` gives
//! the data directory and, through its identity, the hospital (the org).

use std::io::IsTerminal;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use sphr_vault::{ColumnControl, HubControl, IngestOptions, Progress, VaultError};

use crate::cli::split_name;
use crate::config::NodeConfig;
use crate::identity::Identity;
use crate::vault::{VaultDb, vault_path};

/// Which node's vault.
#[derive(Args, Clone)]
pub struct LocalArgs {
    /// The node's node.toml (its data directory holds the vault; its identity names the
    /// hospital).
    #[arg(long, short = 'c', env = "SPHR_CONFIG")]
    pub config: PathBuf,
    /// How long to wait while the node (packaging a bundle) or another command holds the vault.
    #[arg(long, default_value_t = 30_000)]
    pub wait_lock_ms: u64,
}

/// `sphr-node vault ...`
#[derive(Subcommand)]
pub enum VaultCommand {
    /// Ingest a CSV table into the vault: hubs, links and satellites, its column profile and
    /// its raw file with SHA-256. All or nothing: a bad row or a bad control file refuses the
    /// whole file (with line numbers and reasons), unless --allow-bad-rows.
    Ingest {
        #[command(flatten)]
        local: LocalArgs,
        /// The source's name (e.g. smr01): tag maps are per source.
        #[arg(long)]
        source: String,
        /// The table (CSV with a header line).
        #[arg(long)]
        table: PathBuf,
        /// The column control file: name,destination,foreign_key (seed 000, table 3.2).
        #[arg(long)]
        columns: PathBuf,
        /// The hub control file: hub,primary_key (seed 000, table 3.3).
        #[arg(long)]
        hubs: PathBuf,
        /// Skip bad rows (each listed with its line and reason) instead of refusing the file.
        #[arg(long)]
        allow_bad_rows: bool,
        /// Also write the column profile as JSON to this file.
        #[arg(long)]
        profile_json: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// List the tags of each source (tag -> satellites), or set a source's tag map from a CSV
    /// file `tag,satellite` (replacing the previous one).
    Tags {
        #[command(flatten)]
        local: LocalArgs,
        /// Only this source (required with --set).
        #[arg(long)]
        source: Option<String>,
        /// Replace the source's tag map with this file.
        #[arg(long)]
        set: Option<PathBuf>,
    },
    /// Print the column profile of an ingest (type, count, missing, distinct, min/max, top 5).
    Profile {
        #[command(flatten)]
        local: LocalArgs,
        /// The ingest id (see `vault ingests`); default: the latest ingest (of --source).
        #[arg(long)]
        ingest: Option<u64>,
        /// The latest ingest of this source.
        #[arg(long)]
        source: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the ingests: id, state, source, table, rows, SHA-256 of the raw file.
    Ingests {
        #[command(flatten)]
        local: LocalArgs,
    },
    /// Link a patient's certificate identity (id@org) to their business key (the CHI) in this
    /// hospital's vault; bundles for grants naming that patient are packaged from it. The link
    /// stays on this host, never on chain.
    LinkPatient {
        #[command(flatten)]
        local: LocalArgs,
        /// The patient, `id@org` as in their certificate.
        #[arg(long)]
        patient: String,
        /// The business key (e.g. the CHI number); required unless --unlink.
        #[arg(long)]
        chi: Option<String>,
        /// Remove the link instead.
        #[arg(long)]
        unlink: bool,
    },
}

fn open(local: &LocalArgs) -> Result<VaultDb> {
    let cfg = NodeConfig::load(&local.config)?;
    let id = Identity::load(&cfg.node.identity)?;
    let path = vault_path(&cfg.node.data_dir);
    VaultDb::open(
        &path,
        &id.cert.body.org,
        Duration::from_millis(local.wait_lock_ms),
    )
    .with_context(|| format!("opening the vault of {}", id.cert.name()))
}

fn open_file(p: &Path) -> Result<std::fs::File> {
    std::fs::File::open(p).with_context(|| format!("open {}", p.display()))
}

/// A progress bar on stderr (a terminal), or nothing.
struct Bar {
    on: bool,
    last_pct: Option<u64>,
}

impl Bar {
    fn show(&mut self, p: Progress) {
        if !self.on {
            return;
        }
        const WIDTH: u64 = 30;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let line = match p.total_bytes.filter(|t| *t > 0) {
            Some(total) => {
                let pct = (p.bytes.min(total) * 100) / total;
                if self.last_pct == Some(pct) && !p.done {
                    return;
                }
                self.last_pct = Some(pct);
                let filled = (pct * WIDTH / 100) as usize;
                format!(
                    "\r[{}{}] {pct:>3}% {:.1}/{:.1} MiB, {} rows",
                    "#".repeat(filled),
                    ".".repeat(WIDTH as usize - filled),
                    mib(p.bytes),
                    mib(total),
                    p.rows
                )
            }
            None => format!("\r{:.1} MiB, {} rows", mib(p.bytes), p.rows),
        };
        let mut err = std::io::stderr();
        let _ = err.write_all(line.as_bytes());
        if p.done {
            let _ = err.write_all(b"\n");
        }
        let _ = err.flush();
    }
}

/// Runs a `vault` command.
pub fn run(cmd: VaultCommand) -> Result<()> {
    match cmd {
        VaultCommand::Ingest {
            local,
            source,
            table,
            columns,
            hubs,
            allow_bad_rows,
            profile_json,
            quiet,
        } => {
            let vdb = open(&local)?;
            let vault = vdb.vault();
            let limits = vault.config().limits.clone();
            let cols = ColumnControl::parse(
                &columns.display().to_string(),
                open_file(&columns)?,
                &limits,
            )?;
            let hub_ctl =
                HubControl::parse(&hubs.display().to_string(), open_file(&hubs)?, &limits)?;
            let file = open_file(&table)?;
            let size = file.metadata().ok().map(|m| m.len());
            let options = IngestOptions {
                allow_bad_rows,
                table_name: table.display().to_string(),
                load_time_ms: None,
                size_hint: size,
            };
            let mut bar = Bar {
                on: !quiet && std::io::stderr().is_terminal(),
                last_pct: None,
            };
            let reader = std::io::BufReader::with_capacity(256 << 10, file);
            let report = match vault
                .ingest(&source, reader, &cols, &hub_ctl, &options, |p| bar.show(p))
            {
                Ok(r) => r,
                Err(VaultError::BadRows { file, count, rows }) => {
                    for r in &rows {
                        eprintln!("{file}: {r}");
                    }
                    bail!(
                        "{file}: {count} bad row(s); ingest refused, nothing written (--allow-bad-rows skips them)"
                    );
                }
                Err(e) => return Err(e.into()),
            };
            print!("{report}");
            println!();
            print!("{}", report.profile);
            if let Some(p) = profile_json {
                std::fs::write(&p, report.profile.to_json()?)
                    .with_context(|| format!("write {}", p.display()))?;
                println!("profile written to {}", p.display());
            }
            Ok(())
        }
        VaultCommand::Tags { local, source, set } => {
            let vdb = open(&local)?;
            let vault = vdb.vault();
            if let Some(file) = set {
                let source = source
                    .as_deref()
                    .ok_or_else(|| anyhow!("--set needs --source"))?;
                let map = sphr_vault::parse_tag_file(
                    &file.display().to_string(),
                    open_file(&file)?,
                    &vault.config().limits,
                )?;
                vault.set_tags(source, &map)?;
                println!("tag map of {source} set: {} tag(s)", map.len());
            }
            let sources = match source {
                Some(s) => vec![s],
                None => vault.sources()?,
            };
            if sources.is_empty() {
                println!("the vault holds no source yet (see vault ingest)");
            }
            for s in sources {
                let map = vault.tags(&s)?;
                if map.is_empty() {
                    println!("{s}: no tags (set them with vault tags --source {s} --set FILE)");
                }
                for (tag, sats) in map {
                    let sats: Vec<&str> = sats.iter().map(String::as_str).collect();
                    println!("{s}\t{tag}\t{}", sats.join(", "));
                }
            }
            Ok(())
        }
        VaultCommand::Profile {
            local,
            ingest,
            source,
            json,
        } => {
            let vdb = open(&local)?;
            let vault = vdb.vault();
            let id = match ingest {
                Some(id) => id,
                None => vault
                    .ingests()?
                    .iter()
                    .rev()
                    .find(|r| source.as_ref().is_none_or(|s| *s == r.report.source))
                    .map(|r| r.report.ingest_id)
                    .ok_or_else(|| anyhow!("no ingest found (see vault ingests)"))?,
            };
            let profile = vault.profile(id)?;
            if json {
                println!("{}", profile.to_json()?);
            } else {
                print!("{profile}");
            }
            Ok(())
        }
        VaultCommand::Ingests { local } => {
            let vdb = open(&local)?;
            for r in vdb.vault().ingests()? {
                let rep = &r.report;
                println!(
                    "{}\t{:?}\t{}\t{}\t{} of {} rows\tsha256 {}",
                    rep.ingest_id,
                    r.state,
                    rep.source,
                    rep.table_name,
                    rep.rows_ingested,
                    rep.rows_read,
                    rep.raw_sha256
                );
            }
            Ok(())
        }
        VaultCommand::LinkPatient {
            local,
            patient,
            chi,
            unlink,
        } => {
            let (id, org) = split_name(&patient);
            let org = org.ok_or_else(|| anyhow!("--patient must be id@org"))?;
            let party = sphr_contracts::consent::Identity::new(org, id);
            let vdb = open(&local)?;
            if unlink {
                if vdb.unlink_patient(&party)? {
                    println!("link of {party} removed");
                } else {
                    println!("{party} had no link");
                }
                return Ok(());
            }
            let chi = chi.ok_or_else(|| anyhow!("--chi is required (or --unlink)"))?;
            vdb.link_patient(&party, &chi)?;
            let held = vdb.vault().has_patient(&chi).map_err(|e| anyhow!("{e}"))?;
            println!(
                "{party} linked{}",
                if held {
                    ""
                } else {
                    " (the vault holds no data for this key yet)"
                }
            );
            Ok(())
        }
    }
}
