use clap::{Parser, Subcommand};
use ensemble_cluster::ml::{run_offline, OfflineArgs};

#[derive(Parser)]
#[command(name = "ensemble-node", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the training / validation protocol on shards in one process; prints one JSON line
    Offline(OfflineArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Offline(args) => match run_offline(&args) {
            Ok(v) => {
                println!("{v}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string()})
                );
                std::process::ExitCode::FAILURE
            }
        },
    }
}
