//! `portkey-sim`: the simulator as a standalone server, for demos and manual testing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use portkey_sim::{Faults, Quirks, Seed, SimOptions, ADMIN_API_SCOPES};

/// In-memory Portkey Admin API (under /v1) with test controls (under /_sim).
#[derive(Debug, Parser)]
#[command(name = "portkey-sim", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Expected `x-portkey-api-key`.
    #[arg(long, env = "PORTKEY_SIM_API_KEY", default_value = "sim-key")]
    api_key: String,
    /// JSON seed: {"users":[…],"workspaces":[…],"invites":[…]}.
    #[arg(long)]
    seed_file: Option<PathBuf>,
    /// Accept pending invites automatically this many milliseconds after creation.
    #[arg(long)]
    auto_accept_ms: Option<u64>,
    /// JSON fault settings, same shape as `PUT /_sim/faults`.
    #[arg(long)]
    faults_file: Option<PathBuf>,
    /// Answer 403 AB03 instead of 404 AB08 for missing resources (quirk `missing_is_403`).
    #[arg(long)]
    missing_is_403: bool,
    /// `GET /admin/users` rows leave out `workspace_ids` (quirk `lists_omit_workspace_ids`).
    #[arg(long)]
    lists_omit_workspace_ids: bool,
    /// `email=` list filters match the stored email exactly, case included
    /// (quirk `email_filter_case_sensitive`).
    #[arg(long)]
    email_filter_case_sensitive: bool,
    /// An Admin-API key scope the key lacks: requests needing it get 403 AB03 and are not
    /// applied (quirk `denied_scopes`). Repeat the flag or separate scopes with commas.
    #[arg(
        long = "deny-scope",
        value_name = "SCOPE",
        value_delimiter = ',',
        value_parser = clap::builder::PossibleValuesParser::new(ADMIN_API_SCOPES)
    )]
    deny_scopes: Vec<String>,
    /// Page size cap and default.
    #[arg(long, default_value_t = 100)]
    max_page_size: usize,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &PathBuf) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let seed: Option<Seed> = args.seed_file.as_ref().map(read_json).transpose()?;
    let faults: Faults = match &args.faults_file {
        Some(p) => read_json(p)?,
        None => Faults::default(),
    };
    let opts = SimOptions {
        api_key: args.api_key,
        seed,
        auto_accept: args.auto_accept_ms.map(Duration::from_millis),
        faults,
        missing_is_403: args.missing_is_403,
        max_page_size: args.max_page_size,
        quirks: Quirks {
            missing_is_403: args.missing_is_403,
            lists_omit_workspace_ids: args.lists_omit_workspace_ids,
            email_filter_case_sensitive: args.email_filter_case_sensitive,
            denied_scopes: args.deny_scopes,
        },
    };
    let sim = portkey_sim::spawn(args.listen, opts).await?;
    println!("{}", sim.base_url());
    tracing::info!(base_url = %sim.base_url(), control_url = %sim.control_url(), "portkey-sim listening");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    sim.shutdown().await;
    Ok(())
}
