//! `scim-sync demo`: the daemon for real, on a local redb file, next to the bundled control-plane
//! simulator, with fresh tokens and copy-paste commands.

pub mod walkthrough;

use crate::config::{Config, ENV_ADMIN_TOKEN, ENV_PORTKEY_API_KEY, ENV_SCIM_TOKEN};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub store: PathBuf,
    pub scim_port: u16,
    pub admin_port: u16,
    pub sim_port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the control-plane simulator on port {port} (--sim-port): {reason}")]
    Sim { port: u16, reason: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0} (choose other ports with --scim-port / --admin-port)")]
    App(#[from] crate::app::AppError),
    #[error("the daemon stopped unexpectedly: {0}")]
    Stopped(String),
    #[error("walkthrough: {0}")]
    Walkthrough(String),
}

fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The simulator both demos run: an organisation with its owner, and `api_key` as its key.
fn sim_options(api_key: &str, auto_accept: Option<Duration>) -> portkey_sim::SimOptions {
    portkey_sim::SimOptions {
        api_key: api_key.to_string(),
        auto_accept,
        seed: Some(portkey_sim::Seed {
            users: vec![portkey_sim::SeedUser {
                email: "owner@example.com".into(),
                first_name: Some("Olivia".into()),
                last_name: Some("Owner".into()),
                role: "owner".into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The three secrets, as the environment `Config` reads them from.
fn secrets(scim_token: &str, admin_token: &str, api_key: &str) -> HashMap<String, String> {
    [
        (ENV_SCIM_TOKEN, scim_token),
        (ENV_ADMIN_TOKEN, admin_token),
        (ENV_PORTKEY_API_KEY, api_key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs until `shutdown` completes.
pub async fn run(
    opts: DemoOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DemoError> {
    let api_key = random_token();
    let sim_addr: SocketAddr = ([127, 0, 0, 1], opts.sim_port).into();
    let sim = portkey_sim::spawn(
        sim_addr,
        sim_options(&api_key, Some(Duration::from_secs(2))),
    )
    .await
    .map_err(|e| DemoError::Sim {
        port: opts.sim_port,
        reason: e.to_string(),
    })?;

    let scim_token = random_token();
    let admin_token = random_token();
    let env = secrets(&scim_token, &admin_token, &api_key);
    let toml = format!(
        "[scim]\nlisten = \"127.0.0.1:{}\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n[store]\npath = {:?}\n[portkey]\nbase_url = \"{}\"\n",
        opts.scim_port,
        opts.admin_port,
        opts.store.display().to_string(),
        sim.base_url()
    );
    let config = Config::from_toml(&toml, std::path::Path::new("(demo)"), &env)?;
    let running = crate::app::start(&config, shutdown).await?;

    let scim = format!("http://{}{}", running.scim_addr, config.scim.base_path);
    let admin = format!("http://{}", running.admin_addr);
    println!(
        r#"
scim-sync demo is running. Ctrl-C stops it.

  SCIM base URL      {scim}
  SCIM token         {scim_token}
  Admin API          {admin}   (token {admin_token})
  Store              {store}
  Control plane      {sim}  (simulator; state at {control}/state)

Try it:

  export SCIM={scim} TOKEN={scim_token}
  # create a user, as Okta or Entra would
  curl -s -X POST $SCIM/Users -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/scim+json' \
    -d '{{"userName":"alice@example.com","name":{{"givenName":"Alice","familyName":"Example"}},"emails":[{{"value":"alice@example.com","primary":true}}],"active":true}}'
  # push a group that means "member of workspace Demo"
  curl -s -X POST $SCIM/Groups -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/scim+json' \
    -d '{{"displayName":"ws-Demo-role-member","members":[{{"value":"<id of alice from the answer above>"}}]}}'
  # look up alice the way an IdP does
  curl -s "$SCIM/Users?filter=userName+eq+%22alice%40example.com%22" -H "Authorization: Bearer $TOKEN"
  # the daemon's status, and the simulator's state
  curl -s {admin}/admin/status -H "Authorization: Bearer {admin_token}"
  curl -s {control}/state

Every SCIM request is logged below.
"#,
        store = config.store.path.display(),
        sim = sim.base_url(),
        control = sim.control_url(),
    );
    let done = running.done.await;
    sim.shutdown().await;
    done.map_err(|e| DemoError::Stopped(e.to_string()))
}
