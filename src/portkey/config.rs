//! Client settings. The config module builds a [`ClientConfig`] from TOML; everything here has a
//! default so a config file only needs the base URL and the key.

use std::fmt;
use std::time::Duration;

/// The Admin API key. It only leaves this type through [`ApiKey::expose`], which the client calls
/// once per request to fill the header; `Debug` and `Display` never print it, so a config or
/// client dumped into a log line or a panic message cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the `x-portkey-api-key` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for ApiKey {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for ApiKey {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Exponential backoff with jitter: the `backon` crate's exponential schedule, each wait then
/// drawn from `interval * (1 ± randomization_factor)`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Wait before the first retry.
    pub initial_interval: Duration,
    /// Cap on a single wait (before jitter). A `Retry-After` longer than this is still honoured.
    pub max_interval: Duration,
    /// Growth factor of the wait between attempts.
    pub multiplier: f64,
    /// Give-up time, counted from the first attempt of a call. No retry starts after it.
    pub max_elapsed: Duration,
    /// Jitter: each wait is drawn from `interval * (1 ± randomization_factor)`.
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            multiplier: 2.0,
            max_elapsed: Duration::from_secs(120),
            randomization_factor: 0.5,
        }
    }
}

/// Everything the client needs. See [`ClientConfig::default`] for the defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Admin API base, including the version segment: `https://api.portkey.ai/v1`, or for a
    /// self-hosted control plane something like `https://portkey.internal/api/v1`. A trailing
    /// slash is allowed; endpoint paths (`/admin/users`) are appended to it.
    pub base_url: String,
    pub api_key: ApiKey,
    /// Per-attempt limit, from sending the request to having read the whole body.
    pub request_timeout: Duration,
    pub retry: RetryConfig,
    /// Upper bound on HTTP requests in flight at once, across all callers of one client.
    pub max_in_flight: usize,
    /// Upper bound on the request rate (token bucket; bursts up to one second's worth).
    /// `f64::INFINITY` disables the limit.
    pub requests_per_second: f64,
    /// Items asked for per page when listing. The server may cap it lower; the client copes.
    pub page_size: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.portkey.ai/v1".to_owned(),
            api_key: ApiKey::new(String::new()),
            request_timeout: Duration::from_secs(30),
            retry: RetryConfig::default(),
            max_in_flight: 8,
            requests_per_second: 10.0,
            page_size: 100,
        }
    }
}

impl ClientConfig {
    /// Checks the settings a client cannot work with. The config module calls this at startup so
    /// a bad file fails before anything binds.
    pub fn validate(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| format!("portkey base_url {:?} is not a URL: {e}", self.base_url))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!(
                "portkey base_url {:?} must be http or https",
                self.base_url
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "portkey base_url {:?} must not have a query or fragment",
                self.base_url
            ));
        }
        if self.api_key.is_empty() {
            return Err("portkey api_key is empty".to_owned());
        }
        if self.request_timeout.is_zero() {
            return Err("portkey request_timeout must be positive".to_owned());
        }
        if self.max_in_flight == 0 {
            return Err("portkey max_in_flight must be at least 1".to_owned());
        }
        if self.requests_per_second.is_nan() || self.requests_per_second <= 0.0 {
            return Err("portkey requests_per_second must be positive".to_owned());
        }
        if self.page_size == 0 {
            return Err("portkey page_size must be at least 1".to_owned());
        }
        let r = &self.retry;
        if r.multiplier.is_nan() || r.multiplier < 1.0 {
            return Err("portkey retry.multiplier must be at least 1".to_owned());
        }
        if r.randomization_factor.is_nan() || !(0.0..=1.0).contains(&r.randomization_factor) {
            return Err("portkey retry.randomization_factor must be within 0..=1".to_owned());
        }
        if r.max_interval < r.initial_interval {
            return Err("portkey retry.max_interval must be at least initial_interval".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_redacted_everywhere() {
        let cfg = ClientConfig {
            api_key: ApiKey::new("pk-super-secret"),
            ..ClientConfig::default()
        };
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("pk-super-secret"), "{debug}");
        assert!(debug.contains("[redacted]"));
        assert_eq!(cfg.api_key.to_string(), "[redacted]");
        assert_eq!(cfg.api_key.expose(), "pk-super-secret");
    }

    #[test]
    fn validation() {
        let good = ClientConfig {
            api_key: ApiKey::new("k"),
            ..ClientConfig::default()
        };
        assert!(good.validate().is_ok());
        assert!(ClientConfig::default().validate().is_err(), "empty key");
        for bad in [
            ClientConfig {
                base_url: "ftp://x/v1".into(),
                ..good.clone()
            },
            ClientConfig {
                base_url: "not a url".into(),
                ..good.clone()
            },
            ClientConfig {
                page_size: 0,
                ..good.clone()
            },
            ClientConfig {
                max_in_flight: 0,
                ..good.clone()
            },
            ClientConfig {
                requests_per_second: 0.0,
                ..good.clone()
            },
            ClientConfig {
                requests_per_second: f64::NAN,
                ..good.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let unlimited = ClientConfig {
            requests_per_second: f64::INFINITY,
            ..good
        };
        assert!(unlimited.validate().is_ok());
    }
}
