//! The harness: start `ensemble-node` processes with generated configs, drive them through their
//! console (`--json`, one line per command) or `ctl`, signal them, and wait for conditions with
//! deadlines.
//!
//! - [`TestDir`]: a fresh directory per test under `target/tmp/cluster/`, removed when the test
//!   passes, kept (and its path printed) when it fails.
//! - [`NodeSpec`] → [`Node::start`]: one node process; its stdout is read by a thread into a
//!   channel so every read has a deadline; its stderr goes to `<id>.log` in the test dir and is
//!   printed if the test fails. Dropping a [`Node`] kills its process.
//! - [`Cluster`]: N nodes seeded by the first one, with a helper that waits until all see each
//!   other up.
//! - [`run`]: any one-shot run of the binary (`ctl`, a node fed a script on stdin, a bad config).
//! - [`wait_until`]: polls a condition until it holds or a deadline passes.
//!
//! Only 127.0.0.1 and ports the OS picks; every loop and every wait is bounded.

// A shared harness: later scenarios (training, prediction) use parts these ones do not.
#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The node binary cargo built for this test run (debug or release, as the test itself).
pub const BIN: &str = env!("CARGO_BIN_EXE_ensemble-node");

/// How long a node may take to start and answer its first command (a busy CI machine is slow).
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one console command or one `ctl` run may take (a `train` of the default learner
/// chooses its kind by cross-validation on every node at once: seconds on a busy machine).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two checks of a condition.
const POLL: Duration = Duration::from_millis(50);
/// Lines of a node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// The default cluster of a test: every node generated from a default [`NodeSpec`] joins it.
pub const CLUSTER: &str = "test-cluster";
pub const SECRET: &str = "test-secret";

/// Polls `cond` every 50 ms until it returns true (→ true) or `within` has passed (→ false).
/// The condition is always checked at least once, and once more at the deadline.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(POLL.min(deadline - now));
    }
}

/// A directory for one test's files.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// A new empty directory named after the test.
    pub fn new(name: &str) -> Arc<TestDir> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("cluster")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Arc::new(TestDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` in this directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// What to start a node with. `NodeSpec::new("n1")` is a member of [`CLUSTER`] with [`SECRET`],
/// listening on a free loopback port, with no seeds and no data.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: String,
    /// `host:port`; port 0 lets the OS choose (the bound address is read from `status`).
    pub listen: String,
    pub seeds: Vec<SocketAddr>,
    pub cluster: String,
    pub secret: Option<String>,
    /// Extra `key = value` lines of the `[cluster]` table (timing, frame size).
    pub cluster_toml: String,
    /// Appended to the file as is: `[data]`, `[model]`, ... tables.
    pub extra_toml: String,
    /// Extra environment of the process (`ENSEMBLE__*` overrides, `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl NodeSpec {
    pub fn new(id: &str) -> NodeSpec {
        NodeSpec {
            id: id.into(),
            listen: "127.0.0.1:0".into(),
            seeds: Vec::new(),
            cluster: CLUSTER.into(),
            secret: Some(SECRET.into()),
            cluster_toml: String::new(),
            extra_toml: String::new(),
            env: Vec::new(),
        }
    }

    pub fn seeds(mut self, seeds: &[SocketAddr]) -> Self {
        self.seeds = seeds.to_vec();
        self
    }

    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.into();
        self
    }

    pub fn cluster(mut self, name: &str) -> Self {
        self.cluster = name.into();
        self
    }

    pub fn secret(mut self, secret: Option<&str>) -> Self {
        self.secret = secret.map(String::from);
        self
    }

    /// Adds a line to the `[cluster]` table, e.g. `handshake_timeout_ms = 1000`.
    pub fn cluster_key(mut self, line: &str) -> Self {
        self.cluster_toml.push_str(line);
        self.cluster_toml.push('\n');
        self
    }

    /// Appends TOML tables (`[data]`, `[model]`, ...) to the config.
    pub fn toml(mut self, tables: &str) -> Self {
        self.extra_toml.push_str(tables);
        self.extra_toml.push('\n');
        self
    }

    /// Adds a `[data]` table; `shard` is relative to the repository (e.g.
    /// `shards/house_prices/A.csv`), since nodes run in their test directory.
    pub fn data(self, shard: &str, label: &str, task: &str, drop: &[&str]) -> Self {
        let drop: Vec<String> = drop.iter().map(|c| quote(c)).collect();
        self.toml(&format!(
            "[data]\nshard = {}\nlabel = {}\ntask = {}\ndrop = [{}]",
            quote(&repo_file(shard).display().to_string()),
            quote(label),
            quote(task),
            drop.join(", ")
        ))
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The config file for this spec, with its state dir under `dir`.
    pub fn to_toml(&self, dir: &Path) -> String {
        let seeds: Vec<String> = self.seeds.iter().map(|s| quote(&s.to_string())).collect();
        let state_dir = dir.join(format!("{}-state", self.id));
        let mut toml = format!(
            "[node]\nid = {}\nlisten = {}\nseeds = [{}]\nstate_dir = {}\n\n[cluster]\nname = {}\n",
            quote(&self.id),
            quote(&self.listen),
            seeds.join(", "),
            quote(&state_dir.display().to_string()),
            quote(&self.cluster),
        );
        if let Some(secret) = &self.secret {
            toml.push_str(&format!("secret = {}\n", quote(secret)));
        }
        toml.push_str(&self.cluster_toml);
        if !self.extra_toml.is_empty() {
            toml.push('\n');
            toml.push_str(&self.extra_toml);
        }
        toml
    }
}

/// A file of the repository, by its path from the repository's root.
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A TOML basic string (JSON's escapes are a subset of TOML's for the strings we write).
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// One node process, driven through its `--json` console.
pub struct Node {
    pub id: String,
    spec: NodeSpec,
    dir: Arc<TestDir>,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Answers to commands sent but not read yet (after a timeout), skipped by the next read.
    unread: usize,
    addr: Option<SocketAddr>,
}

impl Node {
    /// Writes `<id>.toml` into `dir`, starts the node and waits until it answers `status`.
    pub fn start(dir: &Arc<TestDir>, spec: NodeSpec) -> Node {
        let config = dir.write(&format!("{}.toml", spec.id), &spec.to_toml(dir.path()));
        let log = dir.path().join(format!("{}.log", spec.id));
        let (_tx, lines) = mpsc::channel();
        let mut node = Node {
            id: spec.id.clone(),
            spec,
            dir: dir.clone(),
            config,
            log,
            child: None,
            stdin: None,
            lines,
            unread: 0,
            addr: None,
        };
        node.spawn(None);
        node
    }

    /// Starts the process; `listen` overrides the config's address (a restart keeps its port).
    fn spawn(&mut self, listen: Option<SocketAddr>) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--json")
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        hermetic_env(&mut cmd);
        for (k, v) in &self.spec.env {
            cmd.env(k, v);
        }
        if let Some(addr) = listen {
            cmd.env("ENSEMBLE__NODE__LISTEN", addr.to_string());
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.stdin = child.stdin.take();
        self.child = Some(child);
        self.lines = rx;
        self.unread = 0;
        let status = self
            .try_command("status", START_TIMEOUT)
            .unwrap_or_else(|e| self.fail(&format!("did not start: {e}")));
        let addr = status["listen"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("status has no listen address: {status}")));
        self.addr = Some(addr);
    }

    /// The address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("a started node has an address")
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("node {} is not running", self.id))
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// Everything the node wrote to stderr so far (all its runs).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the node's log contains `text`.
    pub fn wait_for_log(&self, text: &str, within: Duration) -> bool {
        wait_until(within, || self.log().contains(text))
    }

    /// Sends one console line and returns the JSON line it answers, or why there is none.
    pub fn try_command(&mut self, line: &str, within: Duration) -> Result<Value, String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("node {} has no console", self.id))?;
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("cannot write to the console: {e}"))?;
        self.unread += 1;
        let deadline = Instant::now() + within;
        let mut answer = String::new();
        while self.unread > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            answer = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no answer to {line:?} within {within:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("stdout closed before an answer to {line:?}"))
                }
            };
            self.unread -= 1;
        }
        serde_json::from_str(&answer).map_err(|e| format!("{line:?} answered {answer:?}: {e}"))
    }

    /// Runs one console command; fails the test if there is no JSON answer in time.
    pub fn command(&mut self, line: &str) -> Value {
        self.try_command(line, COMMAND_TIMEOUT)
            .unwrap_or_else(|e| self.fail(&e))
    }

    pub fn status(&mut self) -> Value {
        let status = self.command("status");
        if status["ok"] != true {
            self.fail(&format!("status failed: {status}"));
        }
        status
    }

    /// `peers` as (id, state) pairs, sorted by id.
    pub fn peer_states(&mut self) -> Vec<(String, String)> {
        let peers = self.command("peers");
        let mut states: Vec<(String, String)> = peers["peers"]
            .as_array()
            .unwrap_or_else(|| self.fail(&format!("peers failed: {peers}")))
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap_or_default().to_string(),
                    p["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        states.sort();
        states
    }

    /// The state this node sees `peer` in, if it knows it.
    pub fn peer_state(&mut self, peer: &str) -> Option<String> {
        self.peer_states()
            .into_iter()
            .find(|(id, _)| id == peer)
            .map(|(_, state)| state)
    }

    /// Runs `ensemble-node ctl <addr> <command...>` with this node's cluster name and secret.
    pub fn ctl(&self, command: &[&str]) -> Ran {
        let mut args = vec!["--cluster", self.spec.cluster.as_str()];
        if let Some(secret) = &self.spec.secret {
            args.extend(["--secret", secret.as_str()]);
        }
        ctl(self.addr(), &args, command)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// kill -9, and reap the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stdin = None;
    }

    /// SIGSTOP: the process freezes, its sockets stay open.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT after [`Node::pause`].
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// SIGTERM (a clean stop, like Ctrl-C).
    pub fn terminate(&self) {
        signal(self.pid(), "TERM");
    }

    /// Stops the node (kill -9 if it still runs) and starts it again with the same config file
    /// on the same address; returns once it answers `status`.
    pub fn restart(&mut self) {
        self.kill();
        let addr = self.addr();
        self.spawn(Some(addr));
        assert_eq!(self.addr(), addr, "node {} came back elsewhere", self.id);
    }

    /// Types `quit` and waits for the process to exit.
    pub fn quit(&mut self) -> ExitStatus {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "quit").and_then(|_| stdin.flush());
        }
        self.wait_exit(COMMAND_TIMEOUT)
            .unwrap_or_else(|| self.fail("did not exit after quit"))
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let mut exited = None;
        wait_until(within, || {
            exited = child.try_wait().ok().flatten();
            exited.is_some()
        });
        if exited.is_some() {
            self.child = None;
            self.stdin = None;
        }
        exited
    }

    /// Closes the node's stdin (end of file on its console).
    pub fn close_console(&mut self) {
        self.stdin = None;
    }

    /// Fails the test with the node's log attached.
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "node {}: {why}\n{}",
            self.id,
            tail(&self.log(), LOG_TAIL_LINES)
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "----- log of node {} ({}) -----\n{}",
                self.id,
                self.log.display(),
                tail(&self.log(), LOG_TAIL_LINES)
            );
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends a signal by name (`STOP`, `CONT`, `TERM`, `KILL`) with the `kill` command.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success(), "kill -{name} {pid} failed: {status}");
}

/// Removes inherited `ENSEMBLE__*` overrides and pins the log level, so that the environment
/// of whoever runs the tests cannot change them. `ENSEMBLE_TEST_LOG` sets the nodes' `RUST_LOG`.
fn hermetic_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ENSEMBLE__") {
            cmd.env_remove(key);
        }
    }
    let level = std::env::var("ENSEMBLE_TEST_LOG").unwrap_or_else(|_| "info".into());
    cmd.env("RUST_LOG", level).env("NO_COLOR", "1");
}

/// A finished one-shot run of the binary.
#[derive(Debug)]
pub struct Ran {
    /// `None` when killed (by a signal, or for running past its deadline).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The JSON object on the last line of stdout (what `ctl` prints).
    pub fn json(&self) -> Value {
        let line = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout is not one JSON line ({e}):\n{self}"))
    }

    /// Stdout's lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.stdout,
            tail(&self.stderr, LOG_TAIL_LINES)
        )
    }
}

/// Runs the binary with `args` in `cwd`, feeds it `input` then closes its stdin, and waits for
/// it to exit; a run still going after `within` is killed (and reported with code `None`).
pub fn run(args: &[&str], env: &[(&str, &str)], input: &str, cwd: &Path, within: Duration) -> Ran {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    hermetic_env(&mut cmd);
    cmd.envs(env.iter().copied());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let collect = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = collect(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = collect(Box::new(child.stderr.take().expect("piped stderr")));
    if let Some(mut stdin) = child.stdin.take() {
        // The child may exit before reading everything; that is its business, not an error here.
        let _ = stdin.write_all(input.as_bytes());
    }
    let mut exited = None;
    wait_until(within, || {
        exited = child.try_wait().ok().flatten();
        exited.is_some()
    });
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ran {
        code: exited.and_then(|s| s.code()),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// `ensemble-node ctl <addr> <options...> <command...>` with a 10 s deadline.
pub fn ctl(addr: SocketAddr, options: &[&str], command: &[&str]) -> Ran {
    let addr = addr.to_string();
    let timeout = COMMAND_TIMEOUT.as_millis().to_string();
    let mut args = vec!["ctl", addr.as_str(), "--timeout-ms", timeout.as_str()];
    args.extend_from_slice(options);
    args.extend_from_slice(command);
    run(
        &args,
        &[],
        "",
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        COMMAND_TIMEOUT + Duration::from_secs(5),
    )
}

/// A cluster of nodes `n1..nN` in one [`TestDir`], all seeded by `n1`.
pub struct Cluster {
    pub dir: Arc<TestDir>,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` default nodes (see [`NodeSpec::new`]) and waits until all see each other up.
    pub fn start(name: &str, n: usize) -> Cluster {
        Self::start_with(name, n, |spec| spec)
    }

    /// Like [`Cluster::start`], with each node's spec adjusted by `adjust` (data, timing).
    pub fn start_with(
        name: &str,
        n: usize,
        mut adjust: impl FnMut(NodeSpec) -> NodeSpec,
    ) -> Cluster {
        let dir = TestDir::new(name);
        let mut cluster = Cluster {
            dir,
            nodes: Vec::new(),
        };
        for i in 1..=n {
            let spec = adjust(cluster.member_spec(&format!("n{i}")));
            cluster.add(spec);
        }
        cluster.wait_formed(START_TIMEOUT);
        cluster
    }

    /// The spec of a new member: seeded by the first node.
    pub fn member_spec(&self, id: &str) -> NodeSpec {
        let seeds: Vec<SocketAddr> = self.nodes.first().map(Node::addr).into_iter().collect();
        NodeSpec::new(id).seeds(&seeds)
    }

    /// Starts a node in this cluster's directory and adds it to the cluster.
    pub fn add(&mut self, spec: NodeSpec) -> &mut Node {
        let node = Node::start(&self.dir, spec);
        self.nodes.push(node);
        self.nodes.last_mut().expect("just pushed")
    }

    /// The node with this id.
    pub fn node(&mut self, id: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The node at this index.
    pub fn at(&mut self, index: usize) -> &mut Node {
        &mut self.nodes[index]
    }

    /// Whether every running node reports `members = N`, `peers_up = N-1` and every peer up
    /// (peers that left aside), where N is the number of running nodes. The second value says what each node sees.
    pub fn formed(&mut self) -> (bool, String) {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect();
        let n = running.len();
        let mut ok = n > 0;
        let mut views = Vec::new();
        for i in running {
            let node = &mut self.nodes[i];
            let status = node.status();
            // A peer that left on purpose is listed as such, not counted.
            let peers: Vec<(String, String)> = node
                .peer_states()
                .into_iter()
                .filter(|(_, s)| s != "left")
                .collect();
            let all_up = peers.len() == n - 1 && peers.iter().all(|(_, s)| s == "up");
            ok &= status["members"] == n && status["peers_up"] == n - 1 && all_up;
            views.push(format!(
                "{}: members={} peers_up={} peers={peers:?}",
                node.id, status["members"], status["peers_up"]
            ));
        }
        (ok, views.join("\n"))
    }

    /// Waits until [`Cluster::formed`]; fails the test with every node's view if it does not.
    pub fn wait_formed(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        let mut last = String::new();
        let formed = wait_until(within, || {
            let (ok, views) = self.formed();
            last = views;
            ok
        });
        assert!(
            formed,
            "the cluster did not form within {within:?}:\n{last}"
        );
        started.elapsed()
    }
}
