//! The `scim-sync` command line. Parsing, printing and exit codes only; the work is in the
//! library ([`scim_sync::cli`] for the commands that talk to a running daemon).

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::Context;
use clap::Parser;
use scim_sync::cli::{exit, Cli, Command};
use scim_sync::config::{LogFormat, ProcessEnv};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCIM_SYNC_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: in a file, journald or a pipe they are noise
    // that breaks grep. NO_COLOR (https://no-color.org) turns them off at a terminal too.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn runtime(multi_thread: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The daemon. An invalid config, or a listener or store that cannot be opened, exits 2 (the
/// message names the key); a failure while serving exits 1.
fn serve(config: PathBuf, env_file: Option<PathBuf>) -> ExitCode {
    let (config, warnings) = match scim_sync::cli::load_config(&config, env_file.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&e, e.exit_code()),
    };
    let rt = match runtime(true) {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("{e:#}"), exit::FAILED),
    };
    rt.block_on(async {
        init_logging(config.log.format, &config.log.level);
        for w in &warnings {
            tracing::warn!(key = %w.key, fix = %w.fix, "{}", w.problem);
        }
        let running = match scim_sync::app::start(&config, scim_sync::app::shutdown_signal()).await
        {
            Ok(r) => r,
            Err(e) => return fail(&e, exit::USAGE),
        };
        if let Err(e) = running.done.await.context("server task failed") {
            return fail(&format!("{e:#}"), exit::FAILED);
        }
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// `demo --walkthrough`: the story on stdout, logs only for warnings (they would interleave).
#[cfg(feature = "simulator")]
fn demo_walkthrough() -> ExitCode {
    let result = runtime(true).and_then(|rt| {
        rt.block_on(async {
            init_logging(LogFormat::Text, "warn");
            scim_sync::demo::walkthrough::run(&mut std::io::stdout())
                .await
                .map_err(anyhow::Error::from)
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}"), exit::FAILED),
    }
}

#[cfg(feature = "simulator")]
fn demo(opts: scim_sync::demo::DemoOptions) -> ExitCode {
    let result = runtime(true).and_then(|rt| {
        rt.block_on(async {
            init_logging(LogFormat::Text, "info");
            scim_sync::demo::run(opts, scim_sync::app::shutdown_signal())
                .await
                .map_err(anyhow::Error::from)
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}"), exit::USAGE),
    }
}

/// `check-config [--online]`: the offline checks (exit 2 on a bad config), their warnings on
/// stderr, then the control plane with the key.
fn check_config(path: &Path, env_file: Option<&Path>, online: bool) -> ExitCode {
    let (config, warnings, line) = match scim_sync::cli::check_config(path, env_file) {
        Ok(c) => c,
        Err(e) => return fail(&e, e.exit_code()),
    };
    for w in &warnings {
        eprintln!("scim-sync: warning: {w}");
    }
    print(&format!("{line}\n"));
    if !online {
        return ExitCode::SUCCESS;
    }
    let report = match runtime(false) {
        Ok(rt) => rt.block_on(scim_sync::preflight::check(&config.portkey)),
        Err(e) => return fail(&format!("{e:#}"), exit::FAILED),
    };
    print(&report.render());
    ExitCode::from(report.exit_code())
}

/// `init`: write the files, print what to paste into the IdP, then check the result online.
fn init(opts: &scim_sync::init::InitOptions, online: bool) -> ExitCode {
    let setup = match scim_sync::init::run(opts, &ProcessEnv, &mut scim_sync::init::Terminal) {
        Ok(s) => s,
        Err(e) => {
            let e = scim_sync::cli::CliError::from(e);
            return fail(&e, e.exit_code());
        }
    };
    print(&setup.output);
    if !online {
        return ExitCode::SUCCESS;
    }
    print(&format!(
        "\nscim-sync check-config --online --config {} --env-file {}\n",
        setup.config_path.display(),
        setup.env_path.display()
    ));
    check_config(&setup.config_path, Some(&setup.env_path), true)
}

fn fail(e: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("scim-sync: {e}");
    ExitCode::from(code)
}

fn print(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_ok()
}

fn outcome(r: Result<scim_sync::cli::Outcome, scim_sync::cli::CliError>) -> ExitCode {
    match r {
        Ok(o) => {
            print(&o.output);
            ExitCode::from(o.code)
        }
        Err(e) => fail(&e, e.exit_code()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, secrets } => serve(config, secrets.env_file),
        Command::Init {
            public_url,
            portkey_url,
            idp,
            config_dir,
            state_dir,
            force,
            no_online_check,
            scim_listen,
            admin_listen,
            dry_run,
        } => init(
            &scim_sync::init::InitOptions {
                public_url,
                portkey_url,
                idp,
                config_dir,
                state_dir,
                force,
                scim_listen,
                admin_listen,
                dry_run,
            },
            !no_online_check,
        ),
        Command::Demo {
            store,
            scim_port,
            admin_port,
            sim_port,
            walkthrough,
        } => {
            #[cfg(feature = "simulator")]
            {
                if walkthrough {
                    return demo_walkthrough();
                }
                demo(scim_sync::demo::DemoOptions {
                    store,
                    scim_port,
                    admin_port,
                    sim_port,
                })
            }
            #[cfg(not(feature = "simulator"))]
            {
                let _unused = (store, scim_port, admin_port, sim_port, walkthrough);
                fail(
                    &"this build has no control-plane simulator, so no demo (it was built with \
                     --no-default-features; build with the default features for `demo`)",
                    exit::USAGE,
                )
            }
        }
        Command::CheckConfig {
            config,
            secrets,
            online,
        } => check_config(&config, secrets.env_file.as_deref(), online),
        Command::HashToken { token } => match scim_sync::cli::hash_token(token, std::io::stdin()) {
            Ok(hash) => {
                print(&format!("{hash}\n"));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e, e.exit_code()),
        },
        Command::Backup { file, force, admin } => {
            let rt = match runtime(false) {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("{e:#}"), exit::FAILED),
            };
            outcome(rt.block_on(scim_sync::cli::backup(&file, force, &admin)))
        }
        Command::CheckStore { file, json } => outcome(scim_sync::cli::check_store(&file, json)),
        Command::Compact { config } => outcome(scim_sync::cli::compact(&config)),
        Command::Admin(cmd) => {
            let rt = match runtime(false) {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("{e:#}"), exit::FAILED),
            };
            match rt.block_on(scim_sync::cli::run_admin(&cmd)) {
                Ok(outcome) => {
                    print(&outcome.output);
                    ExitCode::from(outcome.code)
                }
                Err(e) => fail(&e, e.exit_code()),
            }
        }
    }
}
