//! The `scim-sync` command line. Parsing and exit codes only; the work is in the library.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::Context;
use clap::{Parser, Subcommand};
use scim_sync::config::{Config, LogFormat, ProcessEnv};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "scim-sync",
    version,
    about = "SCIM 2.0 service provider that keeps a Portkey control plane in line with your IdP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: the SCIM server for the IdP and the admin server.
    Serve {
        /// The TOML config file (every key: config/scim-sync.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the daemon for real on a local redb file next to the bundled control-plane
    /// simulator, with fresh tokens, and print copy-paste commands.
    Demo {
        /// The redb store file.
        #[arg(long, default_value = "scim-sync-demo.redb")]
        store: PathBuf,
        #[arg(long, default_value_t = 8080)]
        scim_port: u16,
        #[arg(long, default_value_t = 8081)]
        admin_port: u16,
        /// Port of the control-plane simulator.
        #[arg(long, default_value_t = 8090)]
        sim_port: u16,
    },
    /// Validate a config file and the secrets in the environment, then exit (0 = valid).
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the hash of a token for `token_hashes` (reads the token from stdin if not given).
    HashToken {
        /// The token; omit to read it from stdin (keeps it out of shell history).
        token: Option<String>,
    },
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCIM_SYNC_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path, &ProcessEnv)?)
}

async fn serve(config: PathBuf) -> anyhow::Result<()> {
    let config = load(&config)?;
    init_logging(config.log.format, &config.log.level);
    let running = scim_sync::app::start(&config, scim_sync::app::shutdown_signal()).await?;
    running.done.await.context("server task failed")?;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|rt| rt.block_on(serve(config))),
        Command::Demo {
            store,
            scim_port,
            admin_port,
            sim_port,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|rt| {
                rt.block_on(async {
                    init_logging(LogFormat::Text, "info");
                    let opts = scim_sync::demo::DemoOptions {
                        store,
                        scim_port,
                        admin_port,
                        sim_port,
                    };
                    scim_sync::demo::run(opts, scim_sync::app::shutdown_signal())
                        .await
                        .map_err(anyhow::Error::from)
                })
            }),
        Command::CheckConfig { config } => load(&config).map(|c| {
            println!(
                "config OK: SCIM on {}{} ({} token(s)), admin on {}, store {}, control plane {}",
                c.scim.listen,
                c.scim.base_path,
                c.scim.tokens.len(),
                c.admin.listen,
                c.store.path.display(),
                c.portkey.base_url
            );
        }),
        Command::HashToken { token } => {
            let token = match token {
                Some(t) => Ok(t),
                None => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .map(|_| s.trim().to_string())
                        .context("cannot read the token from stdin")
                }
            };
            token.and_then(|t| {
                if t.is_empty() {
                    anyhow::bail!("empty token");
                }
                println!("{}", scim_sync::token::hash_token(&t));
                Ok(())
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scim-sync: {e:#}");
            ExitCode::from(2)
        }
    }
}
