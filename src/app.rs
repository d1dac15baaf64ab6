//! Wiring used by `main`: bind, open the store, serve until shutdown.
//!
//! Order matters for operators: the config is already validated; both listeners are bound
//! before the store is opened, so a port conflict or a locked store fails before anything serves.

use crate::config::Config;
use crate::http::{admin, scim, serve};
use crate::reconcile::{Reconciler, RunSummary};
use crate::scheduler;
use crate::store::{Store, StoreError, StoreOptions, WalOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("config key {key}: cannot listen on {addr}: {reason}. Fix: choose a free port or stop the process using it")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("config key [store] path: {0}")]
    Store(#[from] StoreError),
    #[error("config section [portkey]: {0}")]
    Reconciler(#[from] crate::reconcile::run::ReconcileError),
    #[error(transparent)]
    Scheduler(#[from] crate::scheduler::CronError),
}

/// A running daemon: the bound addresses, and the task that ends when it has shut down.
pub struct Running {
    pub scim_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub store: Store,
    pub reconciler: Arc<Reconciler>,
    pub scheduler: scheduler::Handle<RunSummary>,
    pub done: tokio::task::JoinHandle<()>,
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr).await.map_err(|e| AppError::Bind {
        key,
        addr,
        reason: e.to_string(),
    })
}

/// Binds a listener and reads back its address (port 0 becomes the port the system chose).
async fn bind_addr(
    key: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), AppError> {
    let listener = bind(key, addr).await?;
    let local = listener.local_addr().map_err(|e| AppError::Bind {
        key,
        addr,
        reason: e.to_string(),
    })?;
    Ok((listener, local))
}

/// Opening runs redb's recovery after a crash, which reads the file: off the async threads.
async fn open_store(config: &Config) -> Result<Store, AppError> {
    let path = config.store.path.clone();
    let opts = StoreOptions {
        retention: (&config.store).into(),
        wal: config.store.write_ahead_log.then(WalOptions::default),
        ..StoreOptions::default()
    };
    tokio::task::spawn_blocking(move || Store::open(&path, opts))
        .await
        .map_err(|e| AppError::Store(StoreError::BatchFailed(e.to_string())))?
        .map_err(AppError::from)
}

/// The reconciler finishes its current run if that is quick; a run stuck retrying an
/// unreachable control plane is cut short (the next start converges from live state).
async fn stop_reconciler(mut sched_task: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut sched_task)
        .await
        .is_err()
    {
        sched_task.abort();
        tracing::warn!("reconcile run interrupted by shutdown; the next start converges");
    }
}

/// Starts the SCIM and admin servers. They stop accepting when `shutdown` completes, finish the
/// requests in flight (every acknowledged write is already durable), and then `done` ends.
pub async fn start(
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, AppError> {
    let (scim_listener, scim_addr) = bind_addr("[scim] listen", config.scim.listen).await?;
    let (admin_listener, admin_addr) = bind_addr("[admin] listen", config.admin.listen).await?;
    let store = open_store(config).await?;

    let reconciler = Arc::new(Reconciler::new(
        store.clone(),
        &config.portkey,
        config.sync.clone(),
        config.mappings.clone(),
    )?);
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut rx_sched = tx.subscribe();
    let (sched, sched_task) = scheduler::spawn(
        reconciler.clone(),
        scheduler::Options {
            debounce: std::time::Duration::from_millis(config.sync.debounce_ms),
            debounce_max: std::time::Duration::from_millis(config.sync.debounce_max_ms),
            cron: Some(config.sync.full_resync_cron.clone()),
            run_at_startup: true,
            retry_initial: std::time::Duration::from_secs(5),
            retry_max: std::time::Duration::from_secs(300),
        },
        store.subscribe_changes(),
        async move {
            // A message or a closed channel both mean: shut down.
            let _ = rx_sched.recv().await;
        },
    )
    .await?;

    let scim_state = Arc::new(scim::ScimState {
        store: store.clone(),
        tokens: config.scim.tokens.clone(),
        base_path: config.scim.base_path.clone(),
        public_url: config.scim.public_url.clone(),
        listen_origin: scim::listen_origin(scim_addr),
        max_body_bytes: config.scim.max_body_bytes,
        max_results: config.scim.max_results,
        limits: Arc::new(crate::http::ratelimit::Limits::new(
            config.scim.rate_limit,
            config.scim.tokens.len(),
        )),
        body_read_timeout: config.scim.body_read_timeout,
    });
    let admin_state = Arc::new(admin::AdminState {
        store: store.clone(),
        tokens: config.admin.tokens.clone(),
        started: Instant::now(),
        scim_listen: scim_addr.to_string(),
        scim_base_path: config.scim.base_path.clone(),
        reconciler: reconciler.clone(),
        scheduler: sched.clone(),
    });

    let mut rx_scim = tx.subscribe();
    let mut rx_admin = tx.subscribe();
    let scim_server = serve::run(
        scim_listener,
        warp::service(scim::routes(scim_state)),
        serve::Options {
            name: "scim",
            limits: config.scim.limits,
            trusted_proxies: config.scim.trusted_proxies.clone(),
        },
        async move {
            // A message or a closed channel both mean: shut down.
            let _ = rx_scim.recv().await;
        },
    );
    let admin_server = serve::run(
        admin_listener,
        warp::service(admin::routes(admin_state)),
        serve::Options {
            name: "admin",
            limits: config.admin.limits,
            // The admin listener logs no client addresses.
            trusted_proxies: serve::TrustedProxies::default(),
        },
        async move {
            // A message or a closed channel both mean: shut down.
            let _ = rx_admin.recv().await;
        },
    );
    tracing::info!(
        scim = %format!("http://{scim_addr}{}", config.scim.base_path),
        admin = %format!("http://{admin_addr}"),
        store = %config.store.path.display(),
        "scim-sync is serving"
    );
    let closing = store.clone();
    let done = tokio::spawn(async move {
        let signal = tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing requests in flight");
            // Every receiver may be gone already (both servers stopped on their own): then
            // there is nobody left to tell.
            if tx.send(()).is_err() {
                tracing::debug!("shutdown signal had no listener left");
            }
        });
        tokio::join!(scim_server, admin_server);
        signal.abort();
        stop_reconciler(sched_task).await;
        // Every request has been answered; stop the writer so the store file is released.
        closing.close().await;
    });
    Ok(Running {
        scim_addr,
        admin_addr,
        store,
        reconciler,
        scheduler: sched,
        done,
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                // Without a SIGTERM handler, Ctrl-C is the only way left; if even that cannot
                // be installed, returning means shutting down now rather than never.
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        // As above: a handler that cannot be installed means shutting down now.
        let _ = tokio::signal::ctrl_c().await;
    }
}
