//! Test harness: makes real networks with `sphr-node genesis` logic in a temp dir and starts
//! real nodes (sled on disk, raft-rs, HTTPS on loopback), in-process or as processes.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sphr_crypto::hash::Hash32;
use sphr_node::client::{Client, make_proposal};
use sphr_node::config::NodeConfig;
use sphr_node::genesis::{GenesisSpec, NetworkManifest, generate};
use sphr_node::identity::Identity;
use sphr_node::service::{RunningNode, start};
use sphr_types::{Proposal, SignedProposal};
use tempfile::TempDir;

/// A network made on disk.
pub struct TestNet {
    pub dir: TempDir,
    pub net: PathBuf,
    pub manifest: NetworkManifest,
}

/// Options of a one-node test network.
pub struct NetOpts {
    /// Block cutting: most txs per block.
    pub max_tx: u32,
    /// Block cutting: batch timeout (ms).
    pub batch_timeout_ms: u64,
    /// The kv contract's policy.
    pub policy: &'static str,
    /// A second org without nodes (for policies that need it).
    pub second_org: bool,
}

impl Default for NetOpts {
    fn default() -> Self {
        NetOpts {
            max_tx: 100,
            batch_timeout_ms: 10,
            policy: "ANY",
            second_org: false,
        }
    }
}

impl TestNet {
    /// A network with one org (OrgA) and one consenter node (node0), users alice and bob.
    pub fn new(o: NetOpts) -> TestNet {
        let dir = tempfile::tempdir().unwrap();
        let second = if o.second_org {
            "\n[[orgs]]\nname = \"OrgB\"\n[[orgs.users]]\nname = \"carol\"\nrole = \"client\"\n"
        } else {
            ""
        };
        let spec = format!(
            r#"
network = "test"
[block]
max_tx = {max_tx}
batch_timeout_ms = {bt}
[raft]
tick_ms = 20
election_ticks = 10
heartbeat_ticks = 2
snapshot_interval = 50
[[orgs]]
name = "OrgA"
[[orgs.nodes]]
name = "node0"
api_port = 17443
p2p_port = 17000
ops_port = 19443
[[orgs.users]]
name = "alice"
role = "client"
[[orgs.users]]
name = "bob"
role = "doctor"
{second}
[[contracts]]
name = "kv"
policy = "{policy}"
"#,
            max_tx = o.max_tx,
            bt = o.batch_timeout_ms,
            policy = o.policy,
        );
        let spec = GenesisSpec::from_toml_str(&spec, Path::new("test.toml")).unwrap();
        let net = dir.path().join("network");
        generate(&spec, &net, sphr_node::now_ms()).unwrap();
        let manifest = NetworkManifest::load(&net.join("network.json")).unwrap();
        TestNet { dir, net, manifest }
    }

    /// A node.toml for node0 with its data in `data_name`, API on an OS-chosen port.
    pub fn config_text(&self, data_name: &str) -> String {
        let n = &self.manifest.nodes[0];
        format!(
            "[node]\ngenesis = \"{g}\"\nidentity = \"{i}\"\ndata_dir = \"{d}\"\n\n[api]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{c}\"\ntls_key = \"{k}\"\ncommit_timeout_ms = 20000\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n[log]\nfilter = \"warn\"\n",
            g = self.net.join(&self.manifest.genesis_block).display(),
            i = self.net.join(&n.identity).display(),
            d = self.dir.path().join(data_name).display(),
            c = self.net.join(&n.tls_cert).display(),
            k = self.net.join(&n.tls_key).display(),
        )
    }

    /// Writes node.toml and returns its path.
    pub fn write_config(&self, data_name: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{data_name}.toml"));
        std::fs::write(&p, self.config_text(data_name)).unwrap();
        p
    }

    /// Starts node0 in this process.
    pub async fn start(&self) -> RunningNode {
        let cfg = NodeConfig::load(&self.write_config("data")).unwrap();
        start(&cfg).await.unwrap()
    }

    /// A client of a node at `addr`, trusting the network's TLS CAs.
    pub fn client(&self, addr: std::net::SocketAddr) -> Client {
        let tls = sphr_node::tls::client_config(&self.net.join("tls-ca.pem")).unwrap();
        Client::new(&format!("https://{addr}"), tls).unwrap()
    }

    /// A user's identity.
    pub fn user(&self, name: &str) -> Identity {
        let u = self.manifest.users.iter().find(|u| u.name == name).unwrap();
        Identity::load(&self.net.join(&u.identity)).unwrap()
    }

    /// The network id.
    pub fn network_id(&self) -> Hash32 {
        Hash32::from_hex(&self.manifest.network_id).unwrap()
    }

    /// A signed proposal by `user`.
    pub fn proposal(
        &self,
        user: &str,
        function: &str,
        args: &[&str],
    ) -> (Proposal, SignedProposal) {
        make_proposal(&self.user(user), self.network_id(), "kv", function, args).unwrap()
    }
}

/// A node running as a child process.
pub struct NodeProcess {
    pub child: Child,
    /// The client API (HTTPS).
    pub addr: std::net::SocketAddr,
    /// The operations endpoint (plain HTTP on loopback), when enabled.
    pub ops: Option<std::net::SocketAddr>,
}

impl NodeProcess {
    /// Starts `sphr-node run --config <config>` and waits until it serves.
    pub fn spawn(config: &Path) -> NodeProcess {
        Self::spawn_with(config, |_| {})
    }

    /// Like [`NodeProcess::spawn`], after `setup` adjusts the command (environment, stderr).
    pub fn spawn_with(config: &Path, setup: impl FnOnce(&mut Command)) -> NodeProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sphr-node"));
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .stderr(Stdio::inherit());
        setup(&mut cmd);
        Self::from_command(cmd)
    }

    /// Starts a command that runs `sphr-node run` (possibly through a wrapper) and waits
    /// until it serves; stdout is read for the addresses.
    pub fn from_command(mut cmd: Command) -> NodeProcess {
        cmd.stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut ops = None;
            while let Some(Ok(line)) = lines.next() {
                if let Some(rest) = line.strip_prefix("sphr-node operations http://") {
                    ops = rest.split_whitespace().next().map(str::to_string);
                }
                if let Some(rest) = line.strip_prefix("sphr-node serving https://") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send((addr, ops.clone()));
                }
            }
        });
        let (addr, ops) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("node did not start serving within 60 s");
        NodeProcess {
            child,
            addr: addr.parse().unwrap(),
            ops: ops.map(|o| o.parse().unwrap()),
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL, and reap.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Generates the network a genesis spec (TOML text; `name` for its errors) describes into
/// `dir/network`: that folder and its manifest.
pub fn generate_network(dir: &Path, spec_toml: &str, name: &str) -> (PathBuf, NetworkManifest) {
    let spec = GenesisSpec::from_toml_str(spec_toml, Path::new(name)).unwrap();
    let net = dir.join("network");
    generate(&spec, &net, sphr_node::now_ms()).unwrap();
    let manifest = NetworkManifest::load(&net.join("network.json")).unwrap();
    (net, manifest)
}

/// The identity of user `name` of `org` in a generated network.
pub fn user_identity(net: &Path, manifest: &NetworkManifest, name: &str, org: &str) -> Identity {
    let u = manifest
        .users
        .iter()
        .find(|u| u.name == name && u.org == org)
        .unwrap();
    Identity::load(&net.join(&u.identity)).unwrap()
}

/// A free TCP port on 127.0.0.1 (bound, then released), never one this test process has
/// handed out before: the kernel may give a just-released port again, and two nodes of one
/// network must not be told the same port. The port is outside the kernel's ephemeral range,
/// so that no outgoing connection (clients, dialing nodes: they get ephemeral ports) can take
/// it between this check and the node's own bind, which made a node fail to listen.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (lo, hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    // Below the range if there is room (the usual case), else above it.
    let (start, end) = if lo >= 12_000 {
        (lo - 10_000, lo)
    } else {
        (hi + 1, 65_536)
    };
    let span = end.saturating_sub(start).max(1);
    // Test processes may run side by side: each starts at its own place.
    let offset = (std::process::id().wrapping_mul(7919) + given.len() as u32) % span;
    for i in 0..span {
        let port = u16::try_from(start + (offset + i) % span).unwrap_or(0);
        if port == 0 || given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {start}..{end}");
}

/// A network of `orgs` orgs (Org1..OrgN), one consenter node each, with p2p on free loopback
/// ports and one `client` user per org.
pub struct MultiNet {
    pub dir: TempDir,
    pub net: PathBuf,
    pub manifest: NetworkManifest,
}

impl MultiNet {
    pub fn new(orgs: usize, policy: &str, max_tx: u32, snapshot_interval: u64) -> MultiNet {
        Self::with_observers(orgs, 0, policy, max_tx, snapshot_interval)
    }

    /// Like `new`, with the last `observers` orgs' nodes not consenters (they follow by gossip
    /// and range fetch).
    pub fn with_observers(
        orgs: usize,
        observers: usize,
        policy: &str,
        max_tx: u32,
        snapshot_interval: u64,
    ) -> MultiNet {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = format!(
            "network = \"multi\"\n[block]\nmax_tx = {max_tx}\nbatch_timeout_ms = 10\n\
             [raft]\ntick_ms = 20\nelection_ticks = 10\nheartbeat_ticks = 2\nsnapshot_interval = {snapshot_interval}\n"
        );
        for i in 1..=orgs {
            spec.push_str(&format!(
                "[[orgs]]\nname = \"Org{i}\"\n[[orgs.nodes]]\nname = \"node\"\napi_port = {}\np2p_port = {}\nops_port = {}\nconsenter = {}\n[[orgs.users]]\nname = \"user\"\nrole = \"client\"\n",
                free_port(),
                free_port(),
                free_port(),
                i <= orgs - observers
            ));
        }
        spec.push_str(&format!(
            "[[contracts]]\nname = \"kv\"\npolicy = \"{policy}\"\n"
        ));
        let spec = GenesisSpec::from_toml_str(&spec, Path::new("multi.toml")).unwrap();
        let net = dir.path().join("network");
        generate(&spec, &net, sphr_node::now_ms()).unwrap();
        let manifest = NetworkManifest::load(&net.join("network.json")).unwrap();
        MultiNet { dir, net, manifest }
    }

    /// node.toml of node `i` (0-based), API on an OS-chosen port.
    pub fn write_config(&self, i: usize) -> PathBuf {
        let n = &self.manifest.nodes[i];
        let text = format!(
            "[node]\ngenesis = \"{g}\"\nidentity = \"{id}\"\ndata_dir = \"{d}\"\n\n[api]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{c}\"\ntls_key = \"{k}\"\ncommit_timeout_ms = 20000\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n[log]\nfilter = \"warn\"\n",
            g = self.net.join(&self.manifest.genesis_block).display(),
            id = self.net.join(&n.identity).display(),
            d = self.dir.path().join(format!("data{i}")).display(),
            c = self.net.join(&n.tls_cert).display(),
            k = self.net.join(&n.tls_key).display(),
        );
        let p = self.dir.path().join(format!("node{i}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Writes every node's config and starts each as a `sphr-node` process.
    pub fn spawn_all(&self) -> (Vec<PathBuf>, Vec<Option<NodeProcess>>) {
        let configs: Vec<PathBuf> = (0..self.manifest.nodes.len())
            .map(|i| self.write_config(i))
            .collect();
        let procs = configs
            .iter()
            .map(|c| Some(NodeProcess::spawn(c)))
            .collect();
        (configs, procs)
    }

    /// The index of the node named `name@org`.
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.manifest
            .nodes
            .iter()
            .position(|n| format!("{}@{}", n.name, n.org) == name)
    }

    /// Starts node `i` in this process.
    pub async fn start(&self, i: usize) -> RunningNode {
        self.start_with(i, |_| {}).await
    }

    /// Starts node `i` in this process with its configuration changed by `change`.
    pub async fn start_with(&self, i: usize, change: impl FnOnce(&mut NodeConfig)) -> RunningNode {
        let mut cfg = NodeConfig::load(&self.write_config(i)).unwrap();
        change(&mut cfg);
        start(&cfg).await.unwrap()
    }

    pub fn client(&self, addr: std::net::SocketAddr) -> Client {
        let tls = sphr_node::tls::client_config(&self.net.join("tls-ca.pem")).unwrap();
        Client::new(&format!("https://{addr}"), tls).unwrap()
    }

    pub fn network_id(&self) -> Hash32 {
        Hash32::from_hex(&self.manifest.network_id).unwrap()
    }

    /// The `user` of org `i` (0-based).
    pub fn user(&self, i: usize) -> Identity {
        let org = format!("Org{}", i + 1);
        let u = self.manifest.users.iter().find(|u| u.org == org).unwrap();
        Identity::load(&self.net.join(&u.identity)).unwrap()
    }

    pub fn proposal(&self, org: usize, function: &str, args: &[&str]) -> SignedProposal {
        make_proposal(&self.user(org), self.network_id(), "kv", function, args)
            .unwrap()
            .1
    }
}

/// Waits until every client reports the same height >= `min` and the same tip; returns it.
pub async fn converge(clients: &[Client], min: u64, timeout: Duration) -> (u64, String) {
    wait_for(timeout, || async {
        let mut seen = Vec::new();
        for c in clients {
            let s = c.status().await.ok()?;
            seen.push((s.height, s.tip));
        }
        let first = seen[0].clone();
        (first.0 >= min && seen.iter().all(|s| *s == first)).then_some(first)
    })
    .await
}

/// A test that fails (panics) must not leave its nodes running: they would hold ports, data
/// folders and the test's output pipe. A node already waited for is left alone.
impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts every node of a generated network in this process (data under `dir`), each with its
/// API on `127.0.0.1:0` or, with `api_from_manifest`, where network.json says (so that the CLI,
/// or the nodes themselves, find each org's node); then waits until every node sees at least
/// `min_peers` peers and a Raft leader.
pub async fn start_all(
    dir: &Path,
    net: &Path,
    manifest: &NetworkManifest,
    api_from_manifest: bool,
    min_peers: usize,
) -> (Vec<RunningNode>, Vec<Client>) {
    let mut nodes = Vec::new();
    for (i, n) in manifest.nodes.iter().enumerate() {
        let api = if api_from_manifest {
            n.api_addr.clone()
        } else {
            "127.0.0.1:0".to_string()
        };
        let cfg = format!(
            "[node]\ngenesis = \"{g}\"\nidentity = \"{id}\"\ndata_dir = \"{d}\"\n[api]\nlisten = \"{api}\"\ntls_cert = \"{c}\"\ntls_key = \"{k}\"\n[ops]\nlisten = \"127.0.0.1:0\"\n[log]\nfilter = \"warn\"\n",
            g = net.join(&manifest.genesis_block).display(),
            id = net.join(&n.identity).display(),
            d = dir.join(format!("data{i}")).display(),
            c = net.join(&n.tls_cert).display(),
            k = net.join(&n.tls_key).display(),
        );
        let p = dir.join(format!("node{i}.toml"));
        std::fs::write(&p, cfg).unwrap();
        nodes.push(start(&NodeConfig::load(&p).unwrap()).await.unwrap());
    }
    let tls = sphr_node::tls::client_config(&net.join("tls-ca.pem")).unwrap();
    let clients: Vec<Client> = nodes
        .iter()
        .map(|n| Client::new(&format!("https://{}", n.api_addr()), tls.clone()).unwrap())
        .collect();
    wait_for(Duration::from_secs(30), || async {
        for c in &clients {
            let s = c.status().await.ok()?;
            if s.peers < min_peers || s.leader.is_none() {
                return None;
            }
        }
        Some(())
    })
    .await;
    (nodes, clients)
}
