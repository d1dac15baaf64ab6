//! What the benches that load a SCIM server from this process with many clients share
//! (`big_group`, `scim_peers`): the daemon as a child process, the load driver, the SCIM bodies
//! and client, the host's load average, and their command-line sizes.

#[path = "child.rs"]
pub mod child;
#[path = "host.rs"]
pub mod host;
#[path = "../../tests/it/common/scim.rs"]
pub mod scim;
#[path = "wire.rs"]
pub mod wire;

/// Concurrent clients of the load driver.
pub const CLIENTS: usize = 16;

/// An HTTP client that keeps a connection for each of the [`CLIENTS`].
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap()
}

/// The number after `name` on the command line (`-- --users 1000`), else `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Creates `n` users, user `i` named `name(i)`, from [`CLIENTS`] clients of the lean generator
/// ([`wire`]); each must get a 201. The wall time and the users' ids, in the order of `i`.
pub async fn create_users<N>(
    api: &scim::Client,
    n: usize,
    name: N,
) -> (std::time::Duration, Vec<String>)
where
    N: Fn(usize) -> String + Send + Sync + 'static,
{
    let (wall, created) = wire::drive(
        &target(api),
        CLIENTS,
        n,
        move |i| {
            wire::Req::with_json(
                reqwest::Method::POST,
                "/Users".into(),
                &scim::user(&name(i)),
            )
        },
        |_, status, body| wire::created_id(status, body),
    )
    .await;
    (wall, created.into_iter().map(|(_, id)| id).collect())
}

/// The lean generator's view of `api`'s server.
pub fn target(api: &scim::Client) -> wire::Target {
    wire::Target::new(&api.base, &api.token)
}
