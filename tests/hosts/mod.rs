//! Test hosts: N Linux network namespaces on one private switch, for tests that need several
//! machines (nodes listening on `0.0.0.0`, a host whose link goes down).
//!
//! Layout: a "switch" namespace holds a bridge `br0`; each host namespace has one veth `eth0`
//! whose peer `p<i>` is a port of that bridge, with the address `10.203.S.<i+1>/24` (S derived
//! from the process id). Everything lives inside namespaces this harness creates, so nothing on
//! the machine's own network (addresses, routes, firewall) is touched, and two harnesses never
//! see each other even with the same subnet. Namespaces are named `ensemble-<pid>-<k>-...`;
//! they are deleted on drop (also when a test panics) and, should a test process have been
//! killed, by the next harness of another process.
//!
//! Use from a test file with `mod hosts;`. [`Hosts::create`] returns `Err(reason)` when
//! namespaces can't be made (not root, no `ip` from iproute2): the test then prints
//! `skipped: <reason>` and returns.

#![allow(dead_code)] // Each test file uses its own part of the harness.

use std::io;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const PREFIX: &str = "ensemble-";

/// Harnesses made by this process so far, so each gets its own names.
static CREATED: AtomicU32 = AtomicU32::new(0);

/// One test host: a network namespace with one interface on the switch.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name (for `ip netns exec`).
    pub ns: String,
    /// Its address on the switch.
    pub addr: Ipv4Addr,
}

/// A set of test hosts on one switch; removed on drop.
#[derive(Debug)]
pub struct Hosts {
    switch: String,
    hosts: Vec<Host>,
    /// Every namespace made so far, deleted on drop even if creation failed half way.
    made: Vec<String>,
}

impl Hosts {
    /// Creates `n` hosts (at most 250), or says why it can't.
    pub fn create(n: usize) -> Result<Hosts, String> {
        if n == 0 || n > 250 {
            return Err(format!("{n} hosts asked, 1 to 250 possible"));
        }
        match Command::new("ip").arg("-V").output() {
            Ok(out) if out.status.success() => {}
            _ => return Err("no `ip` command (install iproute2)".into()),
        }
        remove_stale();
        let pid = std::process::id();
        let k = CREATED.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{pid}-{k}");
        let subnet = ((pid as usize + k as usize * 37) % 250 + 1) as u8;
        let mut hosts = Hosts {
            switch: format!("{base}-sw"),
            hosts: Vec::new(),
            made: Vec::new(),
        };
        hosts
            .add_namespace(&hosts.switch.clone())
            .map_err(|e| format!("cannot create network namespaces: {e}"))?;
        let sw = hosts.switch.clone();
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{base}-h{i}");
            hosts.add_namespace(&ns)?;
            let port = format!("p{i}");
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            let addr = Ipv4Addr::new(10, 203, subnet, i as u8 + 1);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            hosts.hosts.push(Host { ns, addr });
        }
        Ok(hosts)
    }

    fn add_namespace(&mut self, ns: &str) -> Result<(), String> {
        ip(&["netns", "add", ns])?;
        self.made.push(ns.to_string());
        // Nodes may also talk to themselves over loopback.
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Every namespace of this harness, the switch's included.
    pub fn namespaces(&self) -> Vec<String> {
        self.made.clone()
    }

    /// A command that runs `program` inside host `i` (`ip netns exec`, which execs `program`, so
    /// the child's pid is the program's).
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i].ns]).arg(program);
        cmd
    }

    /// Starts `cmd` (from [`Hosts::command`]); the child is killed when the guard drops.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<HostProcess> {
        cmd.spawn().map(HostProcess)
    }

    /// Sets host `i`'s link to the switch down or up, as a pulled and replugged cable.
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.hosts[i].ns, "link", "set", "eth0", state])
    }

    /// Runs `f` on a thread that has entered host `i`'s network namespace: sockets it creates
    /// belong to that host for their whole life, whichever thread uses them later.
    pub fn in_host<T, F>(&self, i: usize, f: F) -> io::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let path = format!("/var/run/netns/{}", self.hosts[i].ns);
        let thread = std::thread::spawn(move || -> io::Result<T> {
            let file = std::fs::File::open(&path)?;
            // SAFETY: setns only switches this thread's network namespace, to a namespace file
            // we hold open; the thread runs nothing but `f` afterwards and then ends.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        });
        thread
            .join()
            .map_err(|_| io::Error::other("the closure panicked"))?
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("hosts: could not remove namespace {ns}: {e}");
            }
        }
    }
}

/// A process started in a host; killed and reaped on drop.
#[derive(Debug)]
pub struct HostProcess(pub Child);

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `ip ARGS`; the error quotes the command and its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out: Output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes namespaces of this harness left by test processes that no longer run (killed before
/// their drop could run). Only names of this harness's pattern whose pid is gone are touched.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
