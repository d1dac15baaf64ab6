//! What the benches that load a SCIM server from this process with many clients share
//! (`big_group`, `scim_peers`): the daemon as a child process, the load driver, the SCIM bodies
//! and client, the host's load average, and their command-line sizes.

#[path = "child.rs"]
pub mod child;
#[path = "host.rs"]
pub mod host;
#[path = "load.rs"]
pub mod load;
#[path = "../../tests/it/common/scim.rs"]
pub mod scim;

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

/// Creates `n` users, user `i` named `name(i)`, from [`CLIENTS`] clients; each must get a 201.
/// The wall time and the users' ids, in the order of `i`.
pub async fn create_users<N>(
    api: &scim::Client,
    n: usize,
    name: N,
) -> (std::time::Duration, Vec<String>)
where
    N: Fn(usize) -> String + Send + Sync + 'static,
{
    let api = api.clone();
    let name = std::sync::Arc::new(name);
    let (wall, created) = load::load_with(CLIENTS, n, move |i| {
        let (api, name) = (api.clone(), name.clone());
        async move {
            let (status, body) = api
                .send(reqwest::Method::POST, "/Users", Some(&scim::user(&name(i))))
                .await;
            assert_eq!(status, 201, "{body}");
            body["id"].as_str().unwrap().to_string()
        }
    })
    .await;
    (wall, created.into_iter().map(|(_, id)| id).collect())
}
