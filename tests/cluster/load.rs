//! A prediction load on a node: `ensemble-node bench` run as a child process with a deadline,
//! whose JSON report (requests, errors, how many nodes answered each prediction) is read when it
//! ends. The process is killed if the test ends first, passed or failed.

use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::util::{bin_command, tail, wait_until, CLUSTER, SECRET};

/// A `bench` run against one node, on its own; killed if dropped before it ends.
pub struct Load {
    child: Option<Child>,
    stdout: Option<thread::JoinHandle<String>>,
    log: PathBuf,
    within: Duration,
}

impl Load {
    /// Predicts the rows of `rows` in turn, 4 at a time, for `ms` milliseconds, from inside
    /// `netns` if given, with the client's TLS `flags` if any; its stderr goes to
    /// `dir/bench.log`.
    pub fn start(
        netns: Option<&str>,
        flags: &[String],
        addr: SocketAddr,
        rows: &Path,
        ms: u64,
        dir: &Path,
    ) -> Load {
        let log = dir.join("bench.log");
        let stderr = File::create(&log).expect("bench log file");
        let mut cmd = bin_command(netns);
        cmd.args([
            "bench",
            &addr.to_string(),
            "--cluster",
            CLUSTER,
            "--secret",
            SECRET,
        ])
        .arg("--rows-from")
        .arg(rows)
        .args(["--requests", "100000000", "--in-flight", "4"])
        .args(["--duration-ms", &ms.to_string(), "--timeout-ms", "4000"])
        .args(flags)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
        let mut child = cmd.spawn().expect("bench starts");
        let mut out = child.stdout.take().expect("piped stdout");
        let stdout = thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        Load {
            child: Some(child),
            stdout: Some(stdout),
            log,
            within: Duration::from_millis(ms) + Duration::from_secs(60),
        }
    }

    /// Ends the run now; what it printed.
    pub fn stop(mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let (out, log) = self.printed();
        format!("{out}\n{}", tail(&log, 40))
    }

    /// What the run wrote to its stdout (once it has ended) and to its log.
    fn printed(&mut self) -> (String, String) {
        let out = self
            .stdout
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        (out, log)
    }

    /// Waits for the run to end and returns its JSON report.
    pub fn finish(mut self) -> Value {
        let mut child = self.child.take().expect("a started load");
        let mut status = None;
        wait_until(self.within, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let (out, log) = self.printed();
        assert!(
            status.is_some(),
            "bench did not finish within {:?}:\n{}",
            self.within,
            tail(&log, 40)
        );
        let line = out.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "bench printed no JSON report ({e}): {out}\n{}",
                tail(&log, 40)
            )
        })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
