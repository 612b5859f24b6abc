//! `sphr-node`: the node daemon and its command-line client.
//!
//! `sphr-node run` prints `sphr-node operations <url>` and then `sphr-node serving <url>` on
//! stdout once both ports serve, and tells systemd `READY=1` (Type=notify); on SIGTERM or
//! SIGINT it tells systemd `STOPPING=1`, stops gracefully and exits 0. A config that does not
//! validate exits with 78 (EX_CONFIG), which the unit file does not restart.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use sphr_node::cli::{ClientArgs, ClientCtx, print_response, split_name};
use sphr_node::client::make_proposal;
use sphr_node::config::{ConfigError, NodeConfig};
use sphr_node::genesis::{GenesisSpec, NetworkManifest};
use sphr_node::logging::LogControl;

/// jemalloc instead of glibc's malloc: the node allocates and frees many small buffers on
/// several threads at once (decoded transactions, sled's copied leaves), where glibc's arenas
/// spent about a quarter of the apply thread's time (BENCHMARKS.md, session 13).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The dev network spec, built in so that `sphr-node dev` needs no files.
const DEV_SPEC: &str = include_str!("../../genesis/dev.toml");

/// Exit status for a configuration that does not validate (sysexits.h EX_CONFIG); the systemd
/// unit lists it in RestartPreventExitStatus, since restarting cannot fix a config.
const EXIT_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "sphr-node",
    version,
    about = "sphr: a permissioned blockchain for sharing patient health records under the patient's consent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node from its configuration file.
    Run {
        /// Path of node.toml (see configs/node.toml).
        #[arg(long, short = 'c', env = "SPHR_CONFIG")]
        config: PathBuf,
    },
    /// Run a one-org, one-node development network in a folder, with zero setup.
    ///
    /// On first start it makes the network (keys, certificates, block 0) in DIR/network and a
    /// node.toml in DIR; later starts reuse them.
    Dev {
        /// Folder for the network, the node's data and its config.
        #[arg(long, default_value = ".sphr-dev")]
        dir: PathBuf,
    },
    /// Make a network from a spec: block 0, org CAs, node and user identities, TLS certificates.
    Genesis {
        /// The network spec (TOML), e.g. genesis/four-orgs.toml.
        #[arg(long)]
        spec: PathBuf,
        /// Output folder; refused if it already holds a network.
        #[arg(long)]
        out: PathBuf,
    },
    /// Look at a network folder.
    Network {
        #[command(subcommand)]
        command: NetworkCommand,
    },
    /// Write or check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the metrics reference (docs/metrics.md), generated from the registered metrics.
    MetricsDoc,
    /// Submit a transaction: endorse, order, and wait for its commit.
    Invoke {
        #[command(flatten)]
        client: ClientArgs,
        /// Answer once ordered instead of waiting for the commit.
        #[arg(long)]
        no_wait: bool,
        /// Contract name, e.g. kv.
        contract: String,
        /// Function name, e.g. put.
        function: String,
        /// Arguments (UTF-8 text).
        args: Vec<String>,
    },
    /// Evaluate a function on committed state, without ordering anything.
    Query {
        #[command(flatten)]
        client: ClientArgs,
        /// Contract name, e.g. kv.
        contract: String,
        /// Function name, e.g. get.
        function: String,
        /// Arguments (UTF-8 text).
        args: Vec<String>,
    },
    /// Show a node's height, tip and Raft leader.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a block.
    Block {
        #[command(flatten)]
        client: ClientArgs,
        /// Block number.
        number: u64,
    },
    /// Show where and how a transaction committed.
    Tx {
        #[command(flatten)]
        client: ClientArgs,
        /// Transaction id (64 hex characters).
        tx_id: String,
    },
    /// Renew a node's certificates (then SIGHUP the node), or show their validity.
    Cert {
        #[command(subcommand)]
        command: sphr_node::cli::cert::CertCommand,
    },
    /// The healthcare contract of the thesis, one subcommand per function, per role.
    Hc {
        #[command(subcommand)]
        command: sphr_node::cli::healthcare::HcCommand,
    },
    /// The hospital's SPHR data vault on this host: ingest, tags, profiles, patient links.
    Vault {
        #[command(subcommand)]
        command: sphr_node::cli::vault::VaultCommand,
    },
    /// FHIR R4 exports: consent rules, access records, decrypted SPHR bundles.
    Fhir {
        #[command(subcommand)]
        command: sphr_node::cli::fhir::FhirCommand,
    },
    /// The consent contract: hospitals, staff, patients, rules, access requests, audit.
    Consent {
        #[command(subcommand)]
        command: sphr_node::cli::consent::ConsentCommand,
    },
    /// Sealed SPHR bundles: fetch, verify and decrypt those of a granted request.
    Bundle {
        #[command(subcommand)]
        command: sphr_node::cli::consent::BundleCommand,
    },
}

#[derive(Subcommand)]
enum NetworkCommand {
    /// List the nodes of a network folder, one per line: `name@org api_addr p2p_addr`.
    List {
        /// The network folder made by `sphr-node genesis`.
        #[arg(long, default_value = ".sphr-dev/network")]
        network: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Write a node.toml for one node of a network folder.
    Init {
        /// The network folder made by `sphr-node genesis`.
        #[arg(long)]
        network: PathBuf,
        /// The node, `name@org`.
        #[arg(long)]
        node: String,
        /// The node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where to write node.toml (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Validate a node.toml: every key, type and value, and that the files it names exist.
    Check {
        /// Path of node.toml.
        file: PathBuf,
    },
}

/// SIGTERM and SIGINT, installed before the node starts so that a signal during start is
/// handled (after start) rather than killing the process half-way.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    /// SIGHUP: reload the node and TLS certificates (after `sphr-node cert renew`).
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("install SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("install SIGHUP handler")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

async fn run_node(cfg: NodeConfig) -> Result<()> {
    let log = LogControl::init(&cfg.log.filter, &cfg.log.format)?;
    let mut signals = Signals::install()?;
    let node = sphr_node::service::start_with(&cfg, log).await?;
    if let Some(url) = node.ops_url() {
        println!("sphr-node operations {url}");
    }
    println!(
        "sphr-node serving https://{} (network {})",
        node.api_addr(),
        node.network_id()
    );
    sphr_node::systemd::notify_or_warn(&format!(
        "READY=1\nSTATUS=serving https://{}, height {}",
        node.api_addr(),
        node.ledger().height()
    ));
    let sig = loop {
        match signals.recv().await {
            "SIGHUP" => {
                // Logged and counted by the node; a refused reload keeps the old certificates.
                let _ = node.reload_certificates().await;
            }
            other => break other,
        }
    };
    tracing::info!(target: "sphr::service", signal = sig, "stopping");
    sphr_node::systemd::notify_or_warn("STOPPING=1\nSTATUS=stopping: draining the orderer");
    node.shutdown().await;
    Ok(())
}

/// Loads a config; a config error becomes exit status 78.
fn load_config(path: &Path) -> std::result::Result<NodeConfig, ConfigError> {
    NodeConfig::load(path)
}

fn config_failure(e: &ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_CONFIG)
}

/// The ops listen address `config init` writes: the manifest's when it is an ip:port,
/// else loopback on its port.
fn ops_listen_for(ops_addr: &str) -> String {
    if ops_addr.parse::<std::net::SocketAddr>().is_ok() {
        return ops_addr.to_string();
    }
    let port = ops_addr.rsplit_once(':').map(|(_, p)| p).unwrap_or("9443");
    format!("127.0.0.1:{port}")
}

fn abs(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn config_init(network: &Path, node: &str, data_dir: &Path, out: &Path) -> Result<()> {
    let m = NetworkManifest::load(&network.join("network.json"))?;
    let (name, org) = split_name(node);
    let n = m
        .nodes
        .iter()
        .find(|n| n.name == name && org.is_none_or(|o| n.org == o))
        .ok_or_else(|| anyhow!("no node {node:?} in {}", network.display()))?;
    let net = abs(network)?;
    let toml = format!(
        "# node.toml for {name}@{org}, made by `sphr-node config init`; every key is explained in\n\
         # configs/node.toml.\n\
         [node]\ngenesis = \"{g}\"\nidentity = \"{i}\"\ndata_dir = \"{d}\"\n\n\
         [api]\nlisten = \"{a}\"\ntls_cert = \"{c}\"\ntls_key = \"{k}\"\n\n\
         [ops]\n# Operations endpoint (/metrics, /healthz, /version, /logspec), plain HTTP.\n\
         listen = \"{o}\"\n\n\
         [p2p]\nlisten = \"{p}\"\n",
        org = n.org,
        g = net.join(&m.genesis_block).display(),
        i = net.join(&n.identity).display(),
        d = abs(data_dir)?.display(),
        a = n.api_addr,
        c = net.join(&n.tls_cert).display(),
        k = net.join(&n.tls_key).display(),
        o = ops_listen_for(&n.ops_addr),
        p = n.p2p_addr,
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("create {}", out.display()))?;
    std::io::Write::write_all(&mut f, toml.as_bytes())?;
    Ok(())
}

fn dev_setup(dir: &Path) -> Result<PathBuf> {
    let net = dir.join("network");
    let cfg_path = dir.join("node.toml");
    if !net.join("genesis.block").is_file() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let spec = GenesisSpec::from_toml_str(DEV_SPEC, Path::new("genesis/dev.toml"))?;
        let made = sphr_node::genesis::generate(&spec, &net, sphr_node::now_ms())?;
        eprintln!("made dev network {} in {}", made.network_id, net.display());
    }
    if !cfg_path.is_file() {
        let m = NetworkManifest::load(&net.join("network.json"))?;
        let n = m
            .nodes
            .first()
            .ok_or_else(|| anyhow!("dev network has no node"))?;
        let toml = format!(
            "# Made by `sphr-node dev`; see configs/node.toml for every key.\n\
             [node]\ngenesis = \"network/{}\"\nidentity = \"network/{}\"\ndata_dir = \"data\"\n\n\
             [api]\nlisten = \"{}\"\ntls_cert = \"network/{}\"\ntls_key = \"network/{}\"\n\n\
             [ops]\nlisten = \"{}\"\n",
            m.genesis_block,
            n.identity,
            n.api_addr,
            n.tls_cert,
            n.tls_key,
            ops_listen_for(&n.ops_addr)
        );
        std::fs::write(&cfg_path, toml).with_context(|| format!("write {}", cfg_path.display()))?;
    }
    Ok(cfg_path)
}

async fn client_command(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Invoke {
            client,
            no_wait,
            contract,
            function,
            args,
        } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let (_, sp) = make_proposal(&id, ctx.network_id().await?, &contract, &function, &args)?;
            let r = ctx.client.submit(&sp, !no_wait).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                match (&r.block, &r.code) {
                    (Some(b), Some(c)) => println!("tx {} committed in block {b}: {c}", r.tx_id),
                    _ => println!("tx {} {}", r.tx_id, r.status),
                }
                print_response(&r.response_hex);
            }
            Ok(match r.code.as_deref() {
                None | Some("VALID") => ExitCode::SUCCESS,
                Some(_) => ExitCode::from(3),
            })
        }
        Command::Query {
            client,
            contract,
            function,
            args,
        } => {
            let ctx = ClientCtx::new(&client)?;
            let id = ctx.identity()?;
            let (_, sp) = make_proposal(&id, ctx.network_id().await?, &contract, &function, &args)?;
            let r = ctx.client.query(&sp).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let bytes = hex::decode(&r.response_hex).unwrap_or_default();
                match String::from_utf8(bytes) {
                    Ok(t) => println!("{t}"),
                    Err(_) => println!("{}", r.response_hex),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { client } => {
            let ctx = ClientCtx::new(&client)?;
            let s = ctx.client.status().await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                let (name, org) = split_name(&s.node);
                println!(
                    "org={} node={} height={} tip={} leader={} peers={} term={}",
                    org.unwrap_or("-"),
                    name,
                    s.height,
                    s.tip,
                    s.leader.as_deref().unwrap_or("-"),
                    s.peers,
                    s.term
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Block { client, number } => {
            let ctx = ClientCtx::new(&client)?;
            let b = ctx.client.block(number).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                println!(
                    "block {} hash={} previous={} txs={} proposer={}",
                    b.number,
                    b.hash,
                    b.previous_hash,
                    b.txs.len(),
                    b.proposer.as_deref().unwrap_or("-")
                );
                for t in &b.txs {
                    println!(
                        "  tx {} {}.{} creator_org={} endorsed_by={} {}",
                        t.tx_id,
                        t.contract,
                        t.function,
                        t.creator_org,
                        t.endorsing_orgs.join(","),
                        t.code
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tx { client, tx_id } => {
            let ctx = ClientCtx::new(&client)?;
            let t = ctx.client.tx_status(&tx_id).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!(
                    "tx {} in block {} at position {}: {}",
                    t.tx_id, t.block, t.position, t.code
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(anyhow!("not a client command")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` reads its config before the runtime starts: `node.worker_threads` sizes it.
    let mut run_config = match &cli.command {
        Command::Run { config } => match load_config(config) {
            Ok(c) => Some(c),
            Err(e) => return config_failure(&e),
        },
        _ => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = run_config
        .as_ref()
        .map(|c| c.node.worker_threads)
        .filter(|n| *n > 0)
    {
        builder.worker_threads(n);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<ExitCode> = rt.block_on(async move {
        match cli.command {
            Command::Run { config } => {
                // Loaded (and refused, if bad) before the runtime started.
                let Some(cfg) = run_config.take() else {
                    return Err(anyhow!(
                        "{}: not loaded before the runtime",
                        config.display()
                    ));
                };
                run_node(cfg).await.map(|_| ExitCode::SUCCESS)
            }
            Command::Dev { dir } => {
                let cfg_path = dev_setup(&dir)?;
                let cfg = match load_config(&cfg_path) {
                    Ok(c) => c,
                    Err(e) => return Ok(config_failure(&e)),
                };
                eprintln!(
                    "dev node: config {}; try: sphr-node invoke --network {} kv put greeting hello",
                    cfg_path.display(),
                    dir.join("network").display()
                );
                run_node(cfg).await.map(|_| ExitCode::SUCCESS)
            }
            Command::Genesis { spec, out } => {
                let s = GenesisSpec::load(&spec)?;
                let made = sphr_node::genesis::generate(&s, &out, sphr_node::now_ms())?;
                println!("network {} written to {}", made.network_id, out.display());
                Ok(ExitCode::SUCCESS)
            }
            Command::Network {
                command: NetworkCommand::List { network },
            } => {
                let m = NetworkManifest::load(&network.join("network.json"))?;
                for n in &m.nodes {
                    println!("{}@{} {} {}", n.name, n.org, n.api_addr, n.p2p_addr);
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Config {
                command:
                    ConfigCommand::Init {
                        network,
                        node,
                        data_dir,
                        out,
                    },
            } => {
                config_init(&network, &node, &data_dir, &out)?;
                println!("wrote {}", out.display());
                Ok(ExitCode::SUCCESS)
            }
            Command::Config {
                command: ConfigCommand::Check { file },
            } => match load_config(&file) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(config_failure(&e)),
            },
            Command::MetricsDoc => {
                let m = sphr_node::metrics::Metrics::new()?;
                print!("{}", m.reference_markdown());
                Ok(ExitCode::SUCCESS)
            }
            Command::Hc { command } => sphr_node::cli::healthcare::run(command).await,
            Command::Vault { command } => {
                sphr_node::cli::vault::run(command).map(|_| ExitCode::SUCCESS)
            }
            Command::Consent { command } => sphr_node::cli::consent::run(command)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Bundle { command } => sphr_node::cli::consent::run_bundle(command)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Fhir { command } => sphr_node::cli::fhir::run(command)
                .await
                .map(|_| ExitCode::SUCCESS),
            Command::Cert { command } => sphr_node::cli::cert::run(command),
            other => client_command(other).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
