//! What a listener allows and whom it believes, as values: the limits of one listener and the
//! proxies whose `X-Forwarded-For` is trusted. The config names them and the accept loop
//! (`http::serve`) enforces them; they live here, below both, so that neither imports the other.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use warp::http::HeaderMap;

/// Limits of one listener (`http::serve`'s module doc says what each one bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Proxies whose `X-Forwarded-For` is believed (`[scim] trusted_proxies`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// `X-Forwarded-For` entries looked at, from the right. A chain of proxies is a few hops; the
/// header itself is the client's to fill, so how much of it is read is bounded here.
const MAX_FORWARDED_HOPS: usize = 16;

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client address of a request from `peer`: the TCP peer unless it is a trusted proxy;
    /// then the rightmost `X-Forwarded-For` address that is not itself a trusted proxy (each
    /// proxy appends the address it saw, so entries to the left of the first untrusted one are
    /// whatever the client chose to send). An entry that is not an address ends the walk: the
    /// last address known to be real is used.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        // Several X-Forwarded-For lines are one list, in order (RFC 9110 §5.3).
        let values: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let hops = values
            .iter()
            .rev()
            .flat_map(|v| v.rsplit(','))
            .take(MAX_FORWARDED_HOPS);
        for hop in hops {
            let Some(ip) = parse_hop(hop.trim()) else {
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, or an address with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .or_else(|_| s.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}
