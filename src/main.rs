//! `ensemble-node`: runs one cluster node, or one of the tools around it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use ensemble_cluster::bench::BenchArgs;
use ensemble_cluster::command::Command;
use ensemble_cluster::config::{self, Settings};
use ensemble_cluster::console::ConsoleOptions;
use ensemble_cluster::ctl;
use ensemble_cluster::net::{Secret, TlsFiles};
use ensemble_cluster::node;
use ensemble_cluster::tools::certs::{run_certs, CertsArgs};
use ensemble_cluster::tools::{
    run_gen, run_offline, run_simulate, GenArgs, OfflineArgs, SimulateArgs,
};
use ensemble_cluster::Error;

#[derive(Parser)]
#[command(
    name = "ensemble-node",
    version,
    about = "A node of an ensemble-learning cluster",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    tool: Option<Tool>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    /// The node's config file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print every command's answer as one JSON object on one line.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Tool {
    /// Run one console command on a running node and print its JSON answer.
    Ctl(CtlArgs),
    /// Run the training / cross-validation protocol on shards in one process (no cluster);
    /// prints one JSON line.
    Offline(OfflineArgs),
    /// Load a running node with predictions (or pings) and print latency and throughput.
    Bench(BenchCli),
    /// Write a seeded synthetic shard (Friedman #1 regression or classification); prints one
    /// JSON line.
    Gen(GenArgs),
    /// Create the cluster CA (once, in DIR) and a certificate + key per node and client; prints
    /// one JSON line.
    Certs(CertsArgs),
    /// Run the membership protocol on N simulated nodes (virtual time, lossy network, a join, a
    /// kill, a pause); prints one JSON line of what it measured.
    Simulate(SimulateArgs),
}

#[derive(Args)]
struct BenchCli {
    #[command(flatten)]
    bench: BenchArgs,
    #[command(flatten)]
    auth: AuthArgs,
}

/// How a client proves it belongs to the cluster.
#[derive(Args)]
struct AuthArgs {
    /// The cluster secret (else $ENSEMBLE__CLUSTER__SECRET, else the one in --config).
    #[arg(long)]
    secret: Option<String>,
    /// A node config to take the cluster name and secret from.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The cluster name (else the one in --config, else "default").
    #[arg(long)]
    cluster: Option<String>,
    /// The cluster CA certificate, for TLS (else $ENSEMBLE__TLS__CA, else `[tls]` in --config).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// This client's certificate (else $ENSEMBLE__TLS__CERT, else `[tls]` in --config).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// This client's private key (else $ENSEMBLE__TLS__KEY, else `[tls]` in --config).
    #[arg(long)]
    key: Option<PathBuf>,
}

#[derive(Args)]
struct CtlArgs {
    /// The node's address (host:port).
    addr: String,
    /// The command and its arguments, as typed on the console.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    #[command(flatten)]
    auth: AuthArgs,
    /// How long to wait for the answer, in milliseconds.
    #[arg(long, default_value_t = 300_000)]
    timeout_ms: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.tool {
        None => run_node(cli.run),
        Some(Tool::Ctl(args)) => run_ctl(args),
        Some(Tool::Offline(args)) => match run_offline(&args) {
            Ok(value) => report(value),
            Err(e) => failure(e.to_string()),
        },
        Some(Tool::Bench(args)) => run_bench(args),
        Some(Tool::Gen(args)) => match run_gen(&args) {
            Ok(value) => report(value),
            Err(e) => failure(e.to_string()),
        },
        Some(Tool::Certs(args)) => match run_certs(&args) {
            Ok(value) => report(value),
            Err(e) => failure(e.to_string()),
        },
        Some(Tool::Simulate(args)) => match run_simulate(&args) {
            Ok(value) => report(value),
            Err(e) => failure(e.to_string()),
        },
    }
}

fn run_node(args: RunArgs) -> ExitCode {
    let Some(path) = args.config else {
        eprintln!("error: --config FILE is required to run a node (see --help)");
        return ExitCode::from(2);
    };
    let settings = match Settings::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match node::run(settings, ConsoleOptions { json: args.json }) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e @ Error::Config { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `{"ok": false, "error": ...}` and returns exit code 1.
fn failure(message: String) -> ExitCode {
    println!("{}", serde_json::json!({"ok": false, "error": message}));
    ExitCode::FAILURE
}

impl AuthArgs {
    /// The TLS files for an HTTPS client (`bench --http https://...`), from the flags, the
    /// environment or `--config`.
    fn https_files(&self) -> Result<Option<TlsFiles>, Error> {
        let settings = match &self.config {
            Some(path) => Some(Settings::load(path)?),
            None => None,
        };
        tls_files(
            [self.ca.clone(), self.cert.clone(), self.key.clone()],
            settings.as_ref().and_then(|s| s.tls.as_ref()),
        )
    }

    /// Where and how to connect to the node at `addr`.
    fn target(self, addr: &str, timeout: Duration) -> Result<ctl::Target, Error> {
        let settings = match &self.config {
            Some(path) => Some(Settings::load(path)?),
            None => None,
        };
        config::check_host_port(addr).map_err(|e| Error::Other(e.to_string()))?;
        let addr = addr.to_string();
        let secret = self
            .secret
            .or_else(|| std::env::var(config::ENV_SECRET).ok())
            .or_else(|| settings.as_ref().and_then(|s| s.cluster.secret.clone()));
        let cluster = self
            .cluster
            .or_else(|| settings.as_ref().map(|s| s.cluster.name.clone()))
            .unwrap_or_else(|| "default".into());
        let tls = tls_files(
            [self.ca, self.cert, self.key],
            settings.as_ref().and_then(|s| s.tls.as_ref()),
        )?;
        Ok(ctl::Target {
            addr,
            cluster,
            secret: Secret::new(secret),
            timeout,
            max_frame_bytes: settings
                .as_ref()
                .map(|s| s.cluster.max_frame_bytes)
                .unwrap_or(256 * 1024 * 1024),
            tls,
        })
    }
}

/// The client's TLS files: each from its flag, else its `ENSEMBLE__TLS__*` variable, else the
/// config's `[tls]`. None at all means a plain connection; some but not all is an error.
fn tls_files(
    flags: [Option<PathBuf>; 3],
    from_config: Option<&config::TlsSettings>,
) -> Result<Option<TlsFiles>, Error> {
    let envs = [
        config::ENV_TLS_CA,
        config::ENV_TLS_CERT,
        config::ENV_TLS_KEY,
    ];
    let configured = from_config.map(|t| [t.ca.clone(), t.cert.clone(), t.key.clone()]);
    let [ca, cert, key] = [0, 1, 2].map(|i| {
        flags[i]
            .clone()
            .or_else(|| std::env::var_os(envs[i]).map(PathBuf::from))
            .or_else(|| configured.as_ref().map(|c| c[i].clone()))
    });
    match (ca, cert, key) {
        (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles { ca, cert, key })),
        (None, None, None) => Ok(None),
        _ => Err(Error::Other(
            "TLS needs all three of --ca, --cert and --key (or ENSEMBLE__TLS__CA/CERT/KEY)".into(),
        )),
    }
}

/// Prints a JSON report; exit code 0 when it says `"ok": true` and, for a cluster-wide training
/// or evaluation, at least its quorum of nodes completed.
fn report(value: serde_json::Value) -> ExitCode {
    println!("{value}");
    let ok = value.get("ok") == Some(&serde_json::Value::Bool(true));
    let short = match (value["completed"].as_u64(), value["quorum"].as_u64()) {
        (Some(completed), Some(quorum)) => completed < quorum,
        _ => false,
    };
    if short {
        eprintln!("warning: fewer nodes completed than the quorum");
    }
    if ok && !short {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_ctl(args: CtlArgs) -> ExitCode {
    let target = match args
        .auth
        .target(&args.addr, Duration::from_millis(args.timeout_ms))
    {
        Ok(t) => t,
        Err(e) => return failure(e.to_string()),
    };
    let line = args.command.join(" ");
    let system = actix_rt::System::new();
    // The client's files stay the client's: it streams them itself.
    let work = async {
        match ensemble_cluster::command::parse(&line) {
            Ok(Some(Command::PredictFile { input, output })) => {
                ctl::predict_file(&target, &input, output.as_deref()).await
            }
            _ => ctl::run_command(&target, &line).await,
        }
    };
    match system.block_on(work) {
        Ok(value) => report(value),
        Err(e) => failure(e.to_string()),
    }
}

fn run_bench(args: BenchCli) -> ExitCode {
    if let Some(url) = &args.bench.http {
        let tls = match args.auth.https_files() {
            Ok(t) => t,
            Err(e) => return failure(e.to_string()),
        };
        let system = actix_rt::System::new();
        let work = ensemble_cluster::bench::run_http(&args.bench, url, tls.as_ref());
        return match system.block_on(work) {
            Ok(value) => report(value),
            Err(e) => failure(e.to_string()),
        };
    }
    let timeout = Duration::from_millis(args.bench.timeout_ms);
    let addr = args.bench.addr.clone().unwrap_or_default();
    let target = match args.auth.target(&addr, timeout) {
        Ok(t) => t,
        Err(e) => return failure(e.to_string()),
    };
    let system = actix_rt::System::new();
    match system.block_on(ensemble_cluster::bench::run(&args.bench, &target)) {
        Ok(value) => report(value),
        Err(e) => failure(e.to_string()),
    }
}
