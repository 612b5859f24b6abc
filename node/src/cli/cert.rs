//! `sphr-node cert`: certificates of a node after genesis.
//!
//! ```text
//!  sphr-node cert renew --network DIR --node name@org [--days N] [--ca-key FILE]
//!     org CA key (DIR/orgs/<Org>/ca.key) ─signs─> new node certificate (same key) -> identity.json
//!                                          └────> new TLS certificate (same key)  -> tls.crt
//!  then: kill -HUP <the node's pid>   (the node reloads both; see README, "Rotating a node
//!        certificate")
//!  sphr-node cert show --network DIR --node name@org
//!     the validity of the node's certificate and TLS certificate on disk
//! ```
//!
//! The key stays: genesis pins a node's key (its libp2p identity and Raft member), so a node
//! with a new key is a new node of a new genesis. Run `renew` where the org CA key is (the org
//! admin's machine), then copy `identity.json` (mode 0600) and `tls.crt` to the node's host.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;

use crate::genesis::{NetworkManifest, load_ca_key, renew_node};
use crate::identity::Identity;

/// The `cert` subcommands.
#[derive(Subcommand)]
pub enum CertCommand {
    /// Renew a node's certificate and TLS certificate (same key), signed by its org CA.
    Renew {
        /// The network folder made by `sphr-node genesis`.
        #[arg(long)]
        network: PathBuf,
        /// The node, `name@org`.
        #[arg(long)]
        node: String,
        /// Validity of the new certificates, in days from now.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// The org CA key file. Default: <network>/orgs/<Org>/ca.key.
        #[arg(long)]
        ca_key: Option<PathBuf>,
    },
    /// Show the validity of a node's certificate and TLS certificate, as on disk.
    Show {
        /// The network folder made by `sphr-node genesis`.
        #[arg(long)]
        network: PathBuf,
        /// The node, `name@org`.
        #[arg(long)]
        node: String,
    },
}

/// Runs one `cert` subcommand.
pub fn run(cmd: CertCommand) -> Result<ExitCode> {
    match cmd {
        CertCommand::Renew {
            network,
            node,
            days,
            ca_key,
        } => {
            let org = node
                .split_once('@')
                .map(|(_, o)| o.to_string())
                .ok_or_else(|| anyhow!("--node {node:?}: expected name@org"))?;
            let ca_path = ca_key.unwrap_or_else(|| {
                network
                    .join(crate::genesis::ORGS_DIR)
                    .join(&org)
                    .join("ca.key")
            });
            let ca = load_ca_key(&ca_path)?;
            let r = renew_node(&network, &node, &ca, days, crate::now_ms())?;
            println!(
                "renewed {}: valid {} .. {} (Unix s)\n  {}\n  {}\nnow send SIGHUP to the node (kill -HUP <pid>) to use them",
                r.node,
                r.not_before,
                r.not_after,
                r.identity.display(),
                r.tls_cert.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CertCommand::Show { network, node } => {
            let manifest = NetworkManifest::load(&network.join(crate::genesis::NETWORK_FILE))?;
            let (name, org) = node
                .split_once('@')
                .ok_or_else(|| anyhow!("--node {node:?}: expected name@org"))?;
            let m = manifest
                .node(org, name)
                .ok_or_else(|| anyhow!("{node} is not a node of this network"))?;
            let id = Identity::load(&network.join(&m.identity))?;
            let tls = crate::certs::tls_not_after(&network.join(&m.tls_cert))
                .map_err(|e| anyhow!(e))
                .context("TLS certificate")?;
            let now = crate::now_ms() / 1000;
            let left = |t: u64| -> String {
                if t > now {
                    format!("{} days left", (t - now) / 86_400)
                } else {
                    "EXPIRED".to_string()
                }
            };
            println!(
                "node={node} cert_not_after={} ({}) tls_not_after={tls} ({})",
                id.cert.body.not_after,
                left(id.cert.body.not_after),
                left(tls)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
