//! A lean load generator for the SCIM benches: each client holds one HTTP/1.1 connection of its
//! own (hyper's connection API, no pool to lock), requests go out as prepared bytes, and answers
//! are handed back as bytes for the caller to read only what it checks. The server under test
//! shares the machine's cores with this generator, so every microsecond the generator spends is
//! one the server does not get: profiled over the creates of `scim_server`, the reqwest client with a
//! JSON document per answer took about half as much CPU as the server it drove.

// Each bench that includes this file uses part of it.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the generator sends requests: `http://host:port` plus the SCIM base path, and the token.
#[derive(Clone)]
pub struct Target {
    addr: String,
    base_path: String,
    auth: String,
}

impl Target {
    /// `base` as `http://127.0.0.1:8080/scim/v2` (no trailing slash).
    pub fn new(base: &str, token: &str) -> Target {
        let rest = base
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the lean generator speaks plain HTTP only: {base}"));
        let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
        Target {
            addr: addr.to_string(),
            base_path: if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            },
            auth: format!("Bearer {token}"),
        }
    }
}

/// One request: method, path under the SCIM base (`/Users?filter=…`) and JSON body.
pub struct Req {
    pub method: hyper::Method,
    pub path: String,
    pub body: Option<Vec<u8>>,
}

impl Req {
    pub fn get(path: String) -> Req {
        Req {
            method: hyper::Method::GET,
            path,
            body: None,
        }
    }

    pub fn with_json(method: hyper::Method, path: String, body: &serde_json::Value) -> Req {
        Req {
            method,
            path,
            body: Some(serde_json::to_vec(body).unwrap()),
        }
    }
}

/// One client's connection.
struct Conn {
    send: SendRequest<Full<Bytes>>,
    target: Target,
}

impl Conn {
    async fn open(target: &Target) -> Conn {
        let stream = tokio::net::TcpStream::connect(&target.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(async move {
            // The connection ends when the client drops its sender or the server goes away.
            let _ = conn.await;
        });
        Conn {
            send,
            target: target.clone(),
        }
    }

    async fn send(&mut self, req: Req) -> (u16, Bytes) {
        let mut b = hyper::Request::builder()
            .method(req.method)
            .uri(format!("{}{}", self.target.base_path, req.path))
            .header("host", &self.target.addr)
            .header("authorization", &self.target.auth);
        if req.body.is_some() {
            b = b.header("content-type", "application/scim+json");
        }
        let request = b
            .body(Full::new(Bytes::from(req.body.unwrap_or_default())))
            .unwrap();
        self.send.ready().await.unwrap();
        let resp = self.send.send_request(request).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }
}

/// Runs `n` requests from `clients` concurrent clients, each on its own connection, sending its
/// next request when the last is answered: `req(i)` makes request `i`, `check(i, status, body)`
/// reads its answer. The wall time and each request's latency (send to last body byte) and
/// result, in request order.
pub async fn drive<R, C, T>(
    target: &Target,
    clients: usize,
    n: usize,
    req: R,
    check: C,
) -> (Duration, Vec<(Duration, T)>)
where
    R: Fn(usize) -> Req + Send + Sync + 'static,
    C: Fn(usize, u16, &[u8]) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(Conn::open(target).await);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let (req, check) = (Arc::new(req), Arc::new(check));
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (next, req, check) = (next.clone(), req.clone(), check.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = req(i);
                    let t = Instant::now();
                    let (status, body) = conn.send(r).await;
                    let took = t.elapsed();
                    out.push((i, took, check(i, status, &body)));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let wall = started.elapsed();
    all.sort_by_key(|(i, _, _)| *i);
    (wall, all.into_iter().map(|(_, d, v)| (d, v)).collect())
}

/// The `id` of a created resource's answer, without building the whole document.
pub fn created_id(status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Created {
        id: String,
    }
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(body));
    serde_json::from_slice::<Created>(body).unwrap().id
}

/// `totalResults` of a list answer, without building the whole document.
pub fn total_results(status: u16, body: &[u8]) -> u64 {
    #[derive(serde::Deserialize)]
    struct List {
        #[serde(rename = "totalResults")]
        total: u64,
    }
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(body));
    serde_json::from_slice::<List>(body).unwrap().total
}
