//! The admin API client: where the daemon is, and one request at a time with its answer decoded
//! as the contract's type ([`crate::admin_api`]).

use super::args::{AdminArgs, ENV_CONFIG};
use super::CliError;
use crate::config::{ConfigError, DEFAULT_ADMIN_LISTEN};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---- finding the admin API -------------------------------------------------------------------

/// The admin API's base URL from a config file, reading only `[admin] listen` (default
/// 127.0.0.1:8081). An unspecified address (0.0.0.0, ::) becomes the loopback address.
pub fn admin_url_from_config(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    admin_url_from_toml(&text, path)
}

/// [`admin_url_from_config`] on TOML text; `origin` only names the file in errors.
pub fn admin_url_from_toml(text: &str, origin: &Path) -> Result<String, ConfigError> {
    let file = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            reason: e.to_string(),
        })?;
    let invalid = |problem: String| ConfigError::Invalid {
        key: "[admin] listen".into(),
        problem,
        fix: format!("use the form {DEFAULT_ADMIN_LISTEN}, or pass --admin-url"),
    };
    let listen = match file.get::<String>("admin.listen") {
        Ok(s) => s,
        Err(config::ConfigError::NotFound(_)) => DEFAULT_ADMIN_LISTEN.to_string(),
        Err(e) => return Err(invalid(e.to_string())),
    };
    let addr: SocketAddr = listen
        .trim()
        .parse()
        .map_err(|_| invalid(format!("'{listen}' is not an IP address and port")))?;
    if addr.port() == 0 {
        return Err(ConfigError::Invalid {
            key: "[admin] listen".into(),
            problem: "port 0 lets the daemon pick any free port, so it cannot be found from here"
                .into(),
            fix: "pass --admin-url with the address the daemon logged at startup".into(),
        });
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(format!("http://{}", SocketAddr::new(ip, addr.port())))
}

/// The store file named by `[store] path` in a config file (default `scim-sync.redb`, relative to
/// the working directory as for the daemon). Only that key is read.
pub fn store_path_from_config(path: &Path) -> Result<PathBuf, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let file = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .build()
        .map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    match file.get::<String>("store.path") {
        Ok(s) if !s.trim().is_empty() => Ok(PathBuf::from(s)),
        Ok(_) => Err(ConfigError::Invalid {
            key: "[store] path".into(),
            problem: "empty".into(),
            fix: "name the store file, e.g. /var/lib/scim-sync/store.redb".into(),
        }),
        Err(config::ConfigError::NotFound(_)) => {
            Ok(PathBuf::from(crate::config::DEFAULT_STORE_PATH))
        }
        Err(e) => Err(ConfigError::Invalid {
            key: "[store] path".into(),
            problem: e.to_string(),
            fix: "name the store file, e.g. /var/lib/scim-sync/store.redb".into(),
        }),
    }
}

/// The admin base URL and token from the arguments (and the environment, through clap).
pub fn resolve(args: &AdminArgs) -> Result<(String, String), CliError> {
    let url = match (nonempty(args.admin_url.as_deref()), &args.config) {
        (Some(u), _) => {
            let u = u.trim().trim_end_matches('/');
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 9 {
                return Err(CliError::Usage(format!(
                    "--admin-url '{u}' is not an http(s) URL. Fix: use e.g. http://127.0.0.1:8081"
                )));
            }
            u.to_string()
        }
        (None, Some(path)) => admin_url_from_config(path)?,
        (None, None) => {
            return Err(CliError::Usage(format!(
                "where is the daemon? Pass --config FILE (its [admin] listen is used) or \
                 --admin-url URL, or set {ENV_CONFIG}"
            )))
        }
    };
    let token = nonempty(args.admin_token.as_deref()).ok_or_else(|| {
        CliError::Usage(format!(
            "no admin token. Fix: export {}=<the daemon's admin token> (or pass --admin-token)",
            crate::config::ENV_ADMIN_TOKEN
        ))
    })?;
    Ok((url, token.trim().to_string()))
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|v| !v.trim().is_empty())
}

// ---- the admin API client --------------------------------------------------------------------

pub(super) struct AdminClient {
    pub(super) base: String,
    pub(super) token: String,
    timeout: Duration,
    pub(super) http: reqwest::Client,
}

/// The innermost cause of an error, which is what says why (connection refused, …).
pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl AdminClient {
    pub(super) fn new(base: String, token: String, timeout: Duration) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| CliError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            base,
            token,
            timeout,
            http,
        })
    }

    /// Sends a request; the answer unless it is an auth refusal or none came.
    pub(super) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::Response, CliError> {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| {
                self.unreachable(if e.is_timeout() {
                    format!(
                        "no answer within {} s (--timeout); anything started keeps running on the \
                         daemon, check it with `scim-sync status`",
                        self.timeout.as_secs()
                    )
                } else {
                    format!(
                        "{}. Is the daemon running, and is this its [admin] listen address?",
                        root_cause(&e)
                    )
                })
            })?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(CliError::AuthRefused {
                url: self.base.clone(),
                status,
            });
        }
        Ok(resp)
    }

    /// The daemon could not be asked, or its answer could not be read, for `reason`.
    pub(super) fn unreachable(&self, reason: String) -> CliError {
        CliError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    /// Sends a request; returns the status and the JSON body of any answer but an auth refusal.
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<(u16, Value), CliError> {
        let unreachable = |reason: String| self.unreachable(reason);
        let resp = self.send(method, path).await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                unreachable(format!(
                    "no complete answer within {} s (--timeout)",
                    self.timeout.as_secs()
                ))
            } else {
                unreachable(format!("the answer was cut short: {}", root_cause(&e)))
            }
        })?;
        let json: Value = serde_json::from_slice(&bytes).map_err(|_| {
            unreachable(format!(
                "HTTP {status} with a body that is not the admin API's JSON; is this the admin \
                 listener (not the SCIM one)?"
            ))
        })?;
        if status == 404 && json.get("error").is_none() {
            return Err(unreachable(format!(
                "HTTP 404 for {path}; is this the admin listener (not the SCIM one)?"
            )));
        }
        Ok((status, json))
    }
}

pub(super) fn daemon_error(status: u16, body: &Value) -> CliError {
    let msg = body
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    CliError::Failed(format!("the daemon answered HTTP {status}: {msg}"))
}

/// The daemon's answer as the contract's type.
pub(super) fn decode<T: DeserializeOwned>(path: &str, body: &Value) -> Result<T, CliError> {
    T::deserialize(body).map_err(|e| {
        CliError::Failed(format!(
            "the admin API's answer to {path} is not what this release of scim-sync reads ({e}); \
             is the daemon the same version as this command?"
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::exit;
    use super::*;

    #[test]
    fn admin_url_comes_from_admin_listen_only() {
        let p = Path::new("x.toml");
        // Other sections, even invalid ones, are not read.
        let url = admin_url_from_toml(
            "[scim]\nbogus = 1\n[admin]\nlisten = \"127.0.0.1:9999\"\n",
            p,
        )
        .unwrap();
        assert_eq!(url, "http://127.0.0.1:9999");
        assert_eq!(admin_url_from_toml("", p).unwrap(), "http://127.0.0.1:8081");
        assert_eq!(
            admin_url_from_toml("[admin]\nlisten = \"0.0.0.0:81\"\n", p).unwrap(),
            "http://127.0.0.1:81"
        );
        assert_eq!(
            admin_url_from_toml("[admin]\nlisten = \"[::]:81\"\n", p).unwrap(),
            "http://[::1]:81"
        );
        let e = admin_url_from_toml("[admin]\nlisten = \"nowhere\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[admin] listen"), "{e}");
        let e = admin_url_from_toml("[admin]\nlisten = \"127.0.0.1:0\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--admin-url"), "{e}");
        let e = admin_url_from_toml("[admin\n", p).unwrap_err().to_string();
        assert!(e.contains("x.toml"), "{e}");
    }

    fn args(url: Option<&str>, config: Option<&str>, token: Option<&str>) -> AdminArgs {
        AdminArgs {
            admin_url: url.map(str::to_string),
            config: config.map(PathBuf::from),
            admin_token: token.map(str::to_string),
            timeout: 5,
            json: false,
        }
    }

    #[test]
    fn resolve_needs_a_place_and_a_token() {
        let (u, t) = resolve(&args(Some("http://h:1/"), None, Some("tok"))).unwrap();
        assert_eq!((u.as_str(), t.as_str()), ("http://h:1", "tok"));
        let e = resolve(&args(None, None, Some("t"))).unwrap_err();
        assert_eq!(e.exit_code(), exit::USAGE);
        assert!(e.to_string().contains("--admin-url"), "{e}");
        let e = resolve(&args(Some("h:1"), None, Some("t"))).unwrap_err();
        assert_eq!(e.exit_code(), exit::USAGE);
        let e = resolve(&args(Some("http://h:1"), None, Some(" "))).unwrap_err();
        assert!(e.to_string().contains("SCIM_SYNC_ADMIN_TOKEN"), "{e}");
        let e = resolve(&args(None, Some("/nonexistent/x.toml"), Some("t"))).unwrap_err();
        assert_eq!(e.exit_code(), exit::USAGE);
        assert!(e.to_string().contains("/nonexistent/x.toml"), "{e}");
    }
}
