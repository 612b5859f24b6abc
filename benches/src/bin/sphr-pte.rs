//! `sphr-pte`: drive load at a sphr network like Hyperledger's PTE and print its statistics.
//!
//! ```sh
//! sphr-pte --network testnet/run/network --mode constant --const-freq 2 --n-request 1000
//! sphr-pte --config pte.toml --json
//! ```

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use sphr_bench::pte::config::{Flow, PayloadType, TransMode, TransType, WorkloadKind};
use sphr_bench::pte::{Phase, Progress, PteConfig};

const ABOUT: &str = "\
A load generator for sphr networks in the manner of Hyperledger's Performance Traffic Engine \
(PTE). Processes (tokio tasks; proc-per-org of them per org) each sign with their org's user \
and use one of their org's nodes as gateway. Prints a PTE line per process and a report (sent, \
received, failures, event timeouts, TPS, and min/avg/p50/p95/p99/max of peer, orderer and \
event latency), or --json.

Flows: --flow gateway (default) submits with POST /v1/transactions?wait=true: the node endorses \
(asking the orgs the policy names), orders and answers after the commit; only the end-to-end \
(event) latency is measured. --flow client endorses at one node of each org the policy names \
(POST /v1/endorse: peer latency), broadcasts the assembled tx (POST /v1/broadcast?wait=false: \
orderer latency) and waits for its commit event on GET /v1/events (event latency, from before \
the proposal is signed to the event).

Workloads: kv put of a random key with a fixed or random-size value (default), or any \
contract/function with argument templates ({key} {value} {proc} {seq}), or --workload \
healthcare-appointment: the appointment flow of seed 003 on the healthcare contract. Each \
process signs as a patient and a doctor of network.json (users with roles patient and doctor, \
registered with registerUser before the clock starts): the patient's requestAppointment, and \
once it commits the doctor's acceptAppointment of it, so a run alternates the two; queries \
are the patient's getAppointmentStatus.

Flags override the --config file; --print-config shows the result as TOML.";

/// Command line. Every flag overrides the same key of the --config file.
#[derive(Parser, Debug)]
#[command(name = "sphr-pte", version, about = "PTE-like load generator for sphr networks", long_about = ABOUT)]
struct Cli {
    /// TOML file with the run's configuration (keys as in `--print-config`; PTE spellings such
    /// as nProcPerOrg, constFreq, burstFreq are accepted).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Network folder made by `sphr-node genesis` (holds network.json and tls-ca.pem).
    /// [config: network; default testnet/run/network]
    #[arg(long, env = "SPHR_NETWORK")]
    network: Option<PathBuf>,
    /// An org that runs processes; repeat for several. Default: every org with a node. [config: orgs]
    #[arg(long = "org")]
    orgs: Vec<String>,
    /// A gateway node, name@org; repeat for several. Default: every node of the chosen orgs,
    /// taken in turn by the org's processes. [config: nodes]
    #[arg(long = "node")]
    nodes: Vec<String>,
    /// Address override, name@org=https://host:port (default: api_addr in network.json);
    /// repeat for several. [config: endpoints]
    #[arg(long = "endpoint", value_name = "NAME@ORG=URL")]
    endpoints: Vec<String>,
    /// The user of each org that signs (genesis/four-orgs.toml has `loadgen` in every org;
    /// the dev network has `alice`). [config: user; default loadgen]
    #[arg(long)]
    user: Option<String>,
    /// Processes per org (PTE nProcPerOrg). [config: proc_per_org; default 1]
    #[arg(long)]
    proc_per_org: Option<u32>,
    /// Transactions per process (PTE nRequest). Default 1000, or unlimited with --run-dur.
    /// [config: n_request]
    #[arg(long)]
    n_request: Option<u64>,
    /// Seconds each process sends for (PTE runDur); with --n-request too, the first limit
    /// reached ends a process. [config: run_dur_s]
    #[arg(long, value_name = "SECONDS")]
    run_dur: Option<f64>,
    /// Pacing: constant (every --const-freq ms ± --dev-freq), burst (--burst-freq/--burst-dur
    /// phases), latency (next tx after the previous commit), mix (invoke, then query the key
    /// once committed, every --mix-freq ms), rate (--rate tx/s over all processes), inflight
    /// (closed loop, --inflight outstanding per process). [config: trans_mode; default constant]
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// invoke (endorse, order, commit) or query (evaluate on one node). [config: trans_type;
    /// default invoke]
    #[arg(long, value_enum)]
    tx_type: Option<TxTypeArg>,
    /// gateway (the node endorses and orders; event latency only) or client (the generator
    /// endorses at each org, broadcasts, and waits for the commit event; peer, orderer and
    /// event latencies). [config: flow; default gateway]
    #[arg(long, value_enum)]
    flow: Option<FlowArg>,
    /// Constant mode: ms between two sends of a process (PTE constFreq; fractions allowed).
    /// [config: constant.const_freq_ms; default 10]
    #[arg(long, value_name = "MS")]
    const_freq: Option<f64>,
    /// Constant mode: each interval is uniform in const-freq ± this, ms (PTE devFreq).
    /// [config: constant.dev_freq_ms; default 0]
    #[arg(long, value_name = "MS")]
    dev_freq: Option<f64>,
    /// Burst mode: ms between sends in each phase, comma-separated (PTE burstFreq).
    /// [config: burst.burst_freq_ms; default 500,200,300,100]
    #[arg(long, value_name = "MS,MS,..", value_delimiter = ',')]
    burst_freq: Option<Vec<f64>>,
    /// Burst mode: length of each phase, ms, comma-separated (PTE burstDur).
    /// [config: burst.burst_dur_ms; default 3000,2000,3000,1000]
    #[arg(long, value_name = "MS,MS,..", value_delimiter = ',')]
    burst_dur: Option<Vec<f64>>,
    /// Mix mode: ms between two invokes of a process (PTE mixFreq). [config: mix.mix_freq_ms;
    /// default 10]
    #[arg(long, value_name = "MS")]
    mix_freq: Option<f64>,
    /// Rate mode: offered tx/s summed over all processes. [config: rate.tps; default 1000]
    #[arg(long, value_name = "TPS")]
    rate: Option<f64>,
    /// Inflight mode: txs kept outstanding per process. [config: inflight.n; default 32]
    #[arg(long, value_name = "N")]
    inflight: Option<u32>,
    /// Open-loop modes: most txs outstanding per process (each has its own connection); a
    /// send that finds none free waits and is counted late. [config: max_inflight; default 256]
    #[arg(long, value_name = "N")]
    max_inflight: Option<u32>,
    /// ms to wait for a commit before counting an event timeout (PTE eventOpt.timeout).
    /// [config: event_timeout_ms; default 60000]
    #[arg(long, value_name = "MS")]
    event_timeout: Option<u64>,
    /// Do not open the connections before the clock starts (first txs then pay the TLS
    /// handshakes). [config: warmup = false]
    #[arg(long)]
    no_warmup: bool,
    /// Seed of the random keys, payloads and jitter. [config: seed; default from the clock]
    #[arg(long)]
    seed: Option<u64>,
    /// template (default) or healthcare-appointment (a patient requests an appointment, the
    /// doctor accepts it). [config: workload.kind]
    #[arg(long, value_enum)]
    workload: Option<WorkloadArg>,
    /// Contract to call. [config: workload.contract; default kv]
    #[arg(long)]
    contract: Option<String>,
    /// Invoke function. [config: workload.invoke_function; default put]
    #[arg(long)]
    function: Option<String>,
    /// Invoke argument template; repeat in order ({key} {value} {proc} {seq} are filled per
    /// tx). [config: workload.invoke_args; default {key} {value}]
    #[arg(long = "arg", value_name = "TEMPLATE")]
    args: Vec<String>,
    /// Query function. [config: workload.query_function; default get]
    #[arg(long)]
    query_function: Option<String>,
    /// Query argument template; repeat in order. [config: workload.query_args; default {key}]
    #[arg(long = "query-arg", value_name = "TEMPLATE")]
    query_args: Vec<String>,
    /// fixed (--payload-min bytes) or random (uniform in --payload-min..=--payload-max).
    /// [config: workload.payload_type; default fixed]
    #[arg(long, value_enum)]
    payload_type: Option<PayloadArg>,
    /// Smallest (or fixed) payload, bytes. [config: workload.payload_min; default 100]
    #[arg(long, value_name = "BYTES")]
    payload_min: Option<u32>,
    /// Largest payload, bytes (random payloads). [config: workload.payload_max; default 100]
    #[arg(long, value_name = "BYTES")]
    payload_max: Option<u32>,
    /// Query runs: keys each process writes first (not measured). [config: workload.preload;
    /// default 100]
    #[arg(long, value_name = "N")]
    preload: Option<u32>,
    /// Print the report as one JSON object on stdout (the per-process lines go to stderr).
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file (the text report still goes to stdout).
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Write every transaction seen committed (valid or not) to this file, one per line:
    /// `<tx id> <validation code> <block>` (for checks after the run, e.g. testnet/chaos.sh).
    #[arg(long, value_name = "FILE")]
    committed_out: Option<PathBuf>,
    /// Do not run load: look up every tx of a --committed-out FILE on every node of
    /// --network and compare validation codes; print a JSON report, exit 1 on a difference.
    #[arg(long, value_name = "FILE")]
    check_committed: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    no_progress: bool,
    /// Also print the run per interval (1 s, wider for runs over 2 minutes): txs sent,
    /// committed and failed, and the p50, p99 and max end-to-end latency of the txs sent in
    /// each interval. The JSON report always has it (`timeline`).
    #[arg(long)]
    timeline: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ModeArg {
    Constant,
    Burst,
    Latency,
    Mix,
    Rate,
    Inflight,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TxTypeArg {
    Invoke,
    Query,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum FlowArg {
    Gateway,
    Client,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum PayloadArg {
    Fixed,
    Random,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum WorkloadArg {
    Template,
    HealthcareAppointment,
}

fn build_config(cli: &Cli) -> Result<PteConfig> {
    let mut cfg = match &cli.config {
        Some(p) => PteConfig::load(p)?,
        None => PteConfig::default(),
    };
    if let Some(v) = &cli.network {
        cfg.network = v.clone();
    }
    if !cli.orgs.is_empty() {
        cfg.orgs = cli.orgs.clone();
    }
    if !cli.nodes.is_empty() {
        cfg.nodes = cli.nodes.clone();
    }
    for e in &cli.endpoints {
        let Some((node, url)) = e.split_once('=') else {
            bail!("--endpoint {e:?}: expected NAME@ORG=https://host:port");
        };
        cfg.endpoints.insert(node.to_string(), url.to_string());
    }
    if let Some(v) = &cli.user {
        cfg.user = v.clone();
    }
    if let Some(v) = cli.proc_per_org {
        cfg.proc_per_org = v;
    }
    if let Some(v) = cli.run_dur {
        cfg.run_dur_s = Some(v);
        // A timed run from the command line is not capped by the file's count unless asked.
        if cli.n_request.is_none() {
            cfg.n_request = None;
        }
    }
    if let Some(v) = cli.n_request {
        cfg.n_request = Some(v);
    }
    if let Some(v) = cli.mode {
        cfg.trans_mode = match v {
            ModeArg::Constant => TransMode::Constant,
            ModeArg::Burst => TransMode::Burst,
            ModeArg::Latency => TransMode::Latency,
            ModeArg::Mix => TransMode::Mix,
            ModeArg::Rate => TransMode::Rate,
            ModeArg::Inflight => TransMode::Inflight,
        };
    }
    if let Some(v) = cli.tx_type {
        cfg.trans_type = match v {
            TxTypeArg::Invoke => TransType::Invoke,
            TxTypeArg::Query => TransType::Query,
        };
    }
    if let Some(v) = cli.flow {
        cfg.flow = match v {
            FlowArg::Gateway => Flow::Gateway,
            FlowArg::Client => Flow::Client,
        };
    }
    if let Some(v) = cli.const_freq {
        cfg.constant.const_freq_ms = v;
    }
    if let Some(v) = cli.dev_freq {
        cfg.constant.dev_freq_ms = v;
    }
    if let Some(v) = &cli.burst_freq {
        cfg.burst.burst_freq_ms = v.clone();
    }
    if let Some(v) = &cli.burst_dur {
        cfg.burst.burst_dur_ms = v.clone();
    }
    if let Some(v) = cli.mix_freq {
        cfg.mix.mix_freq_ms = v;
    }
    if let Some(v) = cli.rate {
        cfg.rate.tps = v;
    }
    if let Some(v) = cli.inflight {
        cfg.inflight.n = v;
    }
    if let Some(v) = cli.max_inflight {
        cfg.max_inflight = v;
    }
    if let Some(v) = cli.event_timeout {
        cfg.event_timeout_ms = v;
    }
    if cli.no_warmup {
        cfg.warmup = false;
    }
    if let Some(v) = cli.seed {
        cfg.seed = Some(v);
    }
    let w = &mut cfg.workload;
    if let Some(v) = cli.workload {
        w.kind = match v {
            WorkloadArg::Template => WorkloadKind::Template,
            WorkloadArg::HealthcareAppointment => WorkloadKind::HealthcareAppointment,
        };
    }
    if let Some(v) = &cli.contract {
        w.contract = v.clone();
    }
    if let Some(v) = &cli.function {
        w.invoke_function = v.clone();
    }
    if !cli.args.is_empty() {
        w.invoke_args = cli.args.clone();
    }
    if let Some(v) = &cli.query_function {
        w.query_function = v.clone();
    }
    if !cli.query_args.is_empty() {
        w.query_args = cli.query_args.clone();
    }
    if let Some(v) = cli.payload_type {
        w.payload_type = match v {
            PayloadArg::Fixed => PayloadType::Fixed,
            PayloadArg::Random => PayloadType::Random,
        };
    }
    if let Some(v) = cli.payload_min {
        w.payload_min = v;
        if cli.payload_max.is_none() && w.payload_max < v {
            w.payload_max = v;
        }
    }
    if let Some(v) = cli.payload_max {
        w.payload_max = v;
    }
    if let Some(v) = cli.preload {
        w.preload = v;
    }
    Ok(cfg)
}

/// Draws a one-line progress display on stderr until `stop` is set: redrawn in place on a
/// terminal (5 times a second), a line every 5 s otherwise.
async fn show_progress(p: Arc<Progress>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    };
    let mut last_done = 0u64;
    let mut last_t = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => break,
        }
        let phase = p.phase();
        if phase != Phase::Running {
            if tty {
                eprint!("\r\x1b[2K[sphr-pte] {phase:?}...");
            }
            continue;
        }
        let sent = p.sent.load(Ordering::Relaxed);
        let received = p.received.load(Ordering::Relaxed);
        let failed = p.failed.load(Ordering::Relaxed);
        let done = received + failed;
        let now = Instant::now();
        let rate = (done - last_done.min(done)) as f64 / now.duration_since(last_t).as_secs_f64();
        last_done = done;
        last_t = now;
        let expected = p.expected.load(Ordering::Relaxed);
        let dur_ms = p.duration_ms.load(Ordering::Relaxed);
        let elapsed = p.elapsed_s();
        let frac = if expected > 0 {
            done as f64 / expected as f64
        } else if dur_ms > 0 {
            (elapsed * 1000.0 / dur_ms as f64).min(1.0)
        } else {
            0.0
        };
        let width = 30usize;
        let filled = ((frac * width as f64) as usize).min(width);
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let line = format!(
            "[sphr-pte] [{bar}] {:>3.0}% sent {sent} received {received} failed {failed} in flight {} | {rate:.0} tx/s | {elapsed:.1} s",
            frac * 100.0,
            sent.saturating_sub(done)
        );
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
    if tty {
        eprint!("\r\x1b[2K");
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let cfg = build_config(&cli)?;
    if let Some(file) = &cli.check_committed {
        let report = sphr_bench::pte::committed::check(&cfg.network, file)
            .await
            .map_err(|e| anyhow::anyhow!("checking {}: {e}", file.display()))?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        if report.problem_count > 0 || report.found_on_every_node != report.acknowledged {
            std::process::exit(1);
        }
        return Ok(());
    }
    if cli.print_config {
        print!("{}", cfg.to_toml()?);
        return Ok(());
    }
    cfg.validate().context("invalid configuration")?;
    let progress = Progress::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let display = if cli.no_progress {
        None
    } else {
        Some(tokio::spawn(show_progress(progress.clone(), stop_rx)))
    };
    let committed = match &cli.committed_out {
        Some(path) => Some(Arc::new(
            sphr_bench::pte::CommittedLog::create(path)
                .with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let result = sphr_bench::pte::run_logged(&cfg, progress, committed.clone()).await;
    if let Some(log) = &committed {
        log.finish()
            .map_err(|e| anyhow::anyhow!("writing the committed transactions: {e}"))?;
    }
    let _ = stop_tx.send(true);
    if let Some(d) = display {
        let _ = d.await;
    }
    let report = result.context("sphr-pte run failed")?;
    if let Some(path) = &cli.json_out {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if cli.json {
        for l in report.process_lines() {
            eprintln!("{l}");
        }
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        for l in report.process_lines() {
            println!("{l}");
        }
        println!();
        print!("{}", report.summary_text());
        if cli.timeline {
            print!("{}", sphr_bench::pte::timeline::table(&report.timeline));
        }
    }
    Ok(())
}
