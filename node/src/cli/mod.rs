//! Shared parts of the `sphr-node` command-line client: which network, node and identity a
//! command uses ([`ClientArgs`], [`ClientCtx`]). Each area's subcommands live in a module here.

pub mod cert;
pub mod consent;
pub mod fhir;
pub mod healthcare;
pub mod vault;

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use sphr_crypto::hash::Hash32;

use crate::client::Client;
use crate::genesis::NetworkManifest;
use crate::identity::Identity;

/// Where the client finds the network, the node and its identity.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// The network folder made by `sphr-node genesis` (holds network.json and tls-ca.pem).
    #[arg(long, env = "SPHR_NETWORK", default_value = ".sphr-dev/network")]
    pub network: PathBuf,
    /// The node to talk to: an https:// URL, or a node name (`name` or `name@org`) from
    /// network.json. Default: the first node.
    #[arg(long, env = "SPHR_NODE")]
    pub node: Option<String>,
    /// PEM bundle of the TLS CAs to trust. Default: <network>/tls-ca.pem.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Identity file to sign with. Default: the --user's identity.
    #[arg(long, env = "SPHR_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// A user from network.json (`name` or `name@org`). Default: the first user.
    #[arg(long, env = "SPHR_USER")]
    pub user: Option<String>,
    /// Print the node's JSON answer as it is.
    #[arg(long)]
    pub json: bool,
}

pub fn split_name(s: &str) -> (&str, Option<&str>) {
    match s.split_once('@') {
        Some((n, o)) => (n, Some(o)),
        None => (s, None),
    }
}

pub struct ClientCtx {
    pub client: Client,
    pub manifest: Option<NetworkManifest>,
    pub args: ClientArgs,
}

impl ClientCtx {
    pub fn new(args: &ClientArgs) -> Result<ClientCtx> {
        let manifest_path = args.network.join("network.json");
        let manifest = if manifest_path.is_file() {
            Some(NetworkManifest::load(&manifest_path)?)
        } else {
            None
        };
        let url = match (&args.node, &manifest) {
            (Some(u), _) if u.starts_with("https://") => u.clone(),
            (Some(u), _) if u.starts_with("http://") => {
                bail!("--node {u}: sphr nodes serve HTTPS only")
            }
            (node, Some(m)) => {
                let n = match node {
                    Some(name) => {
                        let (n, o) = split_name(name);
                        m.nodes
                            .iter()
                            .find(|x| x.name == n && o.is_none_or(|o| x.org == o))
                            .ok_or_else(|| {
                                anyhow!("no node {name:?} in {}", manifest_path.display())
                            })?
                    }
                    None => m
                        .nodes
                        .first()
                        .ok_or_else(|| anyhow!("{} lists no nodes", manifest_path.display()))?,
                };
                format!("https://{}", n.api_addr)
            }
            (_, None) => bail!(
                "no network.json in {} (pass --network DIR, or --node https://host:port with --ca and --identity)",
                args.network.display()
            ),
        };
        let ca = args
            .ca
            .clone()
            .unwrap_or_else(|| args.network.join("tls-ca.pem"));
        let tls = crate::tls::client_config(&ca)?;
        let client = Client::new(&url, tls)?;
        Ok(ClientCtx {
            client,
            manifest,
            args: args.clone(),
        })
    }

    pub fn identity(&self) -> Result<Identity> {
        let path = match (&self.args.identity, &self.manifest) {
            (Some(p), _) => p.clone(),
            (None, Some(m)) => {
                let u = match &self.args.user {
                    Some(name) => {
                        let (n, o) = split_name(name);
                        m.users
                            .iter()
                            .find(|u| u.name == n && o.is_none_or(|o| u.org == o))
                            .ok_or_else(|| anyhow!("no user {name:?} in network.json"))?
                    }
                    None => m
                        .users
                        .first()
                        .ok_or_else(|| anyhow!("network.json lists no users"))?,
                };
                self.args.network.join(&u.identity)
            }
            (None, None) => bail!("pass --identity FILE (or --network DIR with network.json)"),
        };
        Ok(Identity::load(&path)?)
    }

    pub async fn network_id(&self) -> Result<Hash32> {
        if let Some(m) = &self.manifest {
            return Ok(Hash32::from_hex(&m.network_id)?);
        }
        let s = self.client.status().await?;
        Ok(Hash32::from_hex(&s.network_id)?)
    }
}

pub fn print_response(hex_response: &str) {
    let bytes = hex::decode(hex_response).unwrap_or_default();
    if bytes.is_empty() {
        return;
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) if !text.chars().any(|c| c.is_control() && c != '\n') => {
            println!("response: {text}")
        }
        _ => println!("response (hex): {hex_response}"),
    }
}
