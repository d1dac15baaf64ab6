//! The accept loop both HTTP listeners run: hyper's HTTP/1.1 server with a connection cap and
//! per-connection timers, because `warp::serve` offers neither (it builds hyper without a timer,
//! so nothing bounds how long a client may take to send a request head or hold a connection).
//!
//! - **HTTP/1.1 only.** The IdPs speak HTTP/1.1 to the SCIM endpoint and the TLS proxy in front
//!   terminates HTTP/2; cleartext HTTP/2 (h2c, by prior knowledge or `Upgrade: h2c`) would only
//!   add a second protocol stack with its own limits for clients that have no reason to use it.
//!   Upgrades of any kind are refused: the connection stays HTTP/1.1.
//! - **Timers, per connection.** A connection with no request in flight is *idle*. Idle with no
//!   byte received, it is closed after `idle_timeout`; once the first byte of a request head has
//!   arrived, the whole head must follow within `header_read_timeout` (slow headers). While a
//!   request is in flight nothing here times it (the SCIM handler bounds the body read itself),
//!   except a client that takes none of its answer for `idle_timeout`.
//! - **Connection cap.** At `max_connections` a new connection is still accepted: the connection
//!   idle the longest is closed in its place, so a flood of idle connections cannot lock out the
//!   IdP or a health probe. Only when every connection has a request in flight is the newcomer
//!   refused (a short 503, then closed). Both are counted in
//!   `scim_sync_http_connections_closed_total`.
//! - **Accept errors** (EMFILE and the like) back off from 10 ms up to 1 s and are logged at most
//!   once every 10 s, so running out of descriptors neither spins a core nor floods the log.
//! - **Graceful shutdown**: stop accepting, close idle connections, let requests in flight finish
//!   (their answers carry `Connection: close`), then return.
//!
//! A connection is never closed while its request is in flight or its answer is being written
//! (short of a client that reads none of it for `idle_timeout`): the decision to close takes the
//! connection from idle to closing in one atomic step, and a request that arrives on a
//! connection already closing is not run (the client may send it again safely).

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use warp::http::Request;

pub use crate::net::{Limits, TrustedProxies};

/// Where a request came from, set on every request by the accept loop and read by handlers with
/// `warp::ext::optional::<Peer>()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The TCP peer: the proxy, when there is one.
    pub tcp: SocketAddr,
    /// The client: the TCP peer, or the address a trusted proxy put in `X-Forwarded-For`.
    pub client: IpAddr,
}

/// Per-connection read buffer, which bounds a request head (see `serve_connection`).
pub const MAX_READ_BUFFER: usize = 64 * 1024;

/// How one listener is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// `listener` label in the connection metrics: `"scim"` or `"admin"`.
    pub name: &'static str,
    pub limits: Limits,
    pub trusted_proxies: TrustedProxies,
}

/// Why the server closed a connection on its own: the `reason` label, a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Evicted,
    HeaderTimeout,
    IdleTimeout,
    /// The client took none of its answer for `idle_timeout`.
    WriteTimeout,
    /// Shutdown: an idle connection is closed now.
    ShutdownIdle,
    /// Shutdown: a request is in flight; it is answered, then the connection closes.
    ShutdownBusy,
}

impl Closing {
    fn label(self) -> Option<&'static str> {
        match self {
            Closing::Evicted => Some("evicted"),
            Closing::HeaderTimeout => Some("header_timeout"),
            Closing::IdleTimeout => Some("idle_timeout"),
            Closing::WriteTimeout => Some("write_timeout"),
            Closing::ShutdownIdle | Closing::ShutdownBusy => None,
        }
    }
}

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const CLOSING: u8 = 2;
const NO_HEAD: u64 = u64::MAX;

/// One connection's shared state, seen by its task, its request service, its socket reads and
/// the accept loop (which may evict it).
struct Conn {
    state: AtomicU8,
    /// Milliseconds (on the listener's clock) when the connection last became idle.
    idle_since: AtomicU64,
    /// When the first byte of the request head being read arrived; `NO_HEAD` when none has.
    head_started: AtomicU64,
    /// Since when the socket has refused to take more of an answer (the client reads nothing);
    /// `NO_HEAD` when writes go through.
    write_blocked: AtomicU64,
    wake: Notify,
}

impl Conn {
    fn new(now: u64) -> Self {
        Self {
            state: AtomicU8::new(IDLE),
            idle_since: AtomicU64::new(now),
            head_started: AtomicU64::new(NO_HEAD),
            write_blocked: AtomicU64::new(NO_HEAD),
            wake: Notify::new(),
        }
    }

    /// Idle → closing. False when a request got there first.
    fn try_close(&self) -> bool {
        self.state
            .compare_exchange(IDLE, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Idle → busy, when a request head has been read. False when the connection is closing.
    fn begin(&self) -> bool {
        self.state
            .compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn end(&self, now: u64) {
        self.idle_since.store(now, Ordering::Release);
        self.head_started.store(NO_HEAD, Ordering::Release);
        // Only busy → idle: a connection being closed stays closing.
        let _unchanged_if_closing =
            self.state
                .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire);
        self.wake.notify_one();
    }

    fn on_read(&self, now: u64) {
        if self.state.load(Ordering::Acquire) == IDLE
            && self
                .head_started
                .compare_exchange(NO_HEAD, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.wake.notify_one();
        }
    }

    fn on_write(&self, now: u64, blocked: bool) {
        if !blocked {
            self.write_blocked.store(NO_HEAD, Ordering::Release);
        } else if self
            .write_blocked
            .compare_exchange(NO_HEAD, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.wake.notify_one();
        }
    }
}

/// The listener's connections and settings.
struct Shared {
    opts: Options,
    epoch: Instant,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    draining: AtomicBool,
}

enum Admit {
    Open,
    Evicted,
    Refused,
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        // A panic while holding this lock cannot leave the map inconsistent (each change is
        // one insert or remove), so a poisoned lock is used as is.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes room for connection `id` and registers it, closing the longest-idle connection when
    /// the listener is full.
    fn admit(&self, id: u64, conn: Arc<Conn>) -> Admit {
        let mut conns = self.conns();
        let mut result = Admit::Open;
        if conns.len() >= self.opts.limits.max_connections {
            let mut idle: Vec<(u64, u64)> = conns
                .iter()
                .filter(|(_, c)| {
                    // Idle, and not still writing an answer the client has yet to read.
                    c.state.load(Ordering::Acquire) == IDLE
                        && c.write_blocked.load(Ordering::Acquire) == NO_HEAD
                })
                .map(|(id, c)| (c.idle_since.load(Ordering::Acquire), *id))
                .collect();
            idle.sort_unstable();
            let victim = idle
                .into_iter()
                .find(|(_, id)| conns.get(id).is_some_and(|c| c.try_close()));
            match victim.and_then(|(_, id)| conns.remove(&id)) {
                Some(old) => {
                    old.wake.notify_one();
                    result = Admit::Evicted;
                }
                None => return Admit::Refused,
            }
        }
        conns.insert(id, conn);
        self.set_gauge(conns.len());
        result
    }

    fn remove(&self, id: u64) {
        let mut conns = self.conns();
        if conns.remove(&id).is_some() {
            self.set_gauge(conns.len());
        }
    }

    fn set_gauge(&self, n: usize) {
        crate::metrics::metrics()
            .http_connections
            .get_or_create(&crate::metrics::ListenerLabels {
                listener: self.opts.name,
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    fn count_closed(&self, reason: &'static str) {
        crate::metrics::metrics()
            .http_connections_closed
            .get_or_create(&crate::metrics::ConnClosedLabels {
                listener: self.opts.name,
                reason,
            })
            .inc();
    }

    /// Waits until this connection should be closed, and says why.
    async fn watch(&self, conn: &Conn) -> Closing {
        let limits = self.opts.limits;
        loop {
            let notified = conn.wake.notified();
            if self.draining.load(Ordering::Acquire) {
                return if conn.try_close() {
                    Closing::ShutdownIdle
                } else if conn.state.load(Ordering::Acquire) == CLOSING {
                    Closing::Evicted
                } else {
                    Closing::ShutdownBusy
                };
            }
            let state = conn.state.load(Ordering::Acquire);
            if state == CLOSING {
                return Closing::Evicted;
            }
            let blocked = conn.write_blocked.load(Ordering::Acquire);
            let head = conn.head_started.load(Ordering::Acquire);
            let (deadline, why) = if blocked != NO_HEAD {
                // An answer is waiting for the client to read it. The connection is not idle
                // (closing it would cut the answer off), but a client that reads nothing must
                // not hold it, out of reach of eviction, for as long as it likes.
                (
                    blocked.saturating_add(ms(limits.idle_timeout)),
                    Closing::WriteTimeout,
                )
            } else if state == BUSY {
                notified.await;
                continue;
            } else if head == NO_HEAD {
                let since = conn.idle_since.load(Ordering::Acquire);
                (
                    since.saturating_add(ms(limits.idle_timeout)),
                    Closing::IdleTimeout,
                )
            } else {
                (
                    head.saturating_add(ms(limits.header_read_timeout)),
                    Closing::HeaderTimeout,
                )
            };
            if self.now() >= deadline {
                if why == Closing::WriteTimeout {
                    // Busy or idle, the client is gone; an idle one must not start a request.
                    let _busy_is_fine = conn.try_close();
                    return why;
                }
                if conn.try_close() {
                    return why;
                }
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep_until(self.instant(deadline)) => {}
                () = notified => {}
            }
        }
    }

    /// Starts a graceful shutdown: idle connections close now, busy ones after their answer.
    fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        for c in self.conns().values() {
            c.wake.notify_one();
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How long a connection being closed may take to flush what it has already written.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Accept-error backoff: first wait and longest wait; and how often such errors are logged.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `service` on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns.
pub async fn run<S>(
    listener: TcpListener,
    service: S,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send,
) where
    S: tower_service::Service<
            Request<Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let shared = Arc::new(Shared {
        opts,
        epoch: Instant::now(),
        conns: Mutex::new(HashMap::new()),
        draining: AtomicBool::new(false),
    });
    shared.set_gauge(0);
    // Each connection task holds a sender; when all are dropped, every connection is done.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_id: u64 = 0;
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut last_logged: Option<Instant> = None;
    let mut suppressed: u64 = 0;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = ACCEPT_BACKOFF_MIN;
                pair
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                if last_logged.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY) {
                    tracing::error!(
                        listener = shared.opts.name,
                        error = %e,
                        suppressed,
                        "cannot accept connections (out of file descriptors?); backing off. \
                         Fix: raise LimitNOFILE or lower max_connections"
                    );
                    last_logged = Some(Instant::now());
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let conn = Arc::new(Conn::new(shared.now()));
        match shared.admit(id, conn.clone()) {
            Admit::Open => {}
            Admit::Evicted => {
                shared.count_closed("evicted");
                // Let the evicted connection close before the next accept, so that a burst of
                // new connections does not hold more descriptors than the cap.
                tokio::task::yield_now().await;
            }
            Admit::Refused => {
                shared.count_closed("refused");
                refuse(stream);
                continue;
            }
        }
        let task = serve_connection(stream, peer, id, conn, service.clone(), shared.clone());
        let done = done_tx.clone();
        tokio::spawn(async move {
            task.await;
            drop(done);
        });
    }
    drop(listener);
    shared.drain();
    drop(done_tx);
    // Resolves once every connection task has ended.
    let _all_done = done_rx.recv().await;
}

/// Accept errors about one connection (it went away before we took it), not about the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Tells a connection refused at the cap why, if its socket takes the bytes at once, and closes it.
fn refuse(stream: TcpStream) {
    const BUSY_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
        Connection: close\r\nContent-Length: 0\r\n\r\n";
    // Best effort: a fresh socket's send buffer is empty, and waiting here would let a client
    // that does not read hold up the accept loop.
    let _best_effort = stream.try_write(BUSY_ANSWER);
}

async fn serve_connection<S>(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    conn: Arc<Conn>,
    service: S,
    shared: Arc<Shared>,
) where
    S: tower_service::Service<
            Request<Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(Watched {
        inner: stream,
        conn: conn.clone(),
        shared: shared.clone(),
    });
    let svc = {
        let conn = conn.clone();
        let shared = shared.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let conn = conn.clone();
            let shared = shared.clone();
            let mut service = service.clone();
            async move {
                if !conn.begin() {
                    // The connection is being closed; the request is not run, so the client
                    // can safely send it again.
                    let r = warp::Reply::into_response(warp::reply::with_status(
                        "",
                        warp::http::StatusCode::SERVICE_UNAVAILABLE,
                    ));
                    return Ok::<_, Infallible>(r.map(Guarded::none));
                }
                let guard = IdleGuard {
                    conn,
                    shared: shared.clone(),
                };
                let client = shared.opts.trusted_proxies.client(peer.ip(), req.headers());
                req.extensions_mut().insert(Peer { tcp: peer, client });
                let resp = tower_service::Service::call(&mut service, req).await?;
                Ok(resp.map(|b| Guarded::new(b, guard)))
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder.keep_alive(true);
    // hyper's default read buffer grows to about 400 KiB per connection, so a full set of
    // connections sending long heads could hold hundreds of MiB. A request head never needs
    // more than this (one that does not fit is answered 431; hyper may read one chunk past the
    // limit first); bodies stream through it in chunks.
    builder.max_buf_size(MAX_READ_BUFFER);
    let connection = builder.serve_connection(io, svc);
    let mut connection = std::pin::pin!(connection);
    let closing = tokio::select! {
        r = connection.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(listener = shared.opts.name, %peer, error = %e, "connection ended");
            }
            None
        }
        why = shared.watch(&conn) => Some(why),
    };
    if let Some(why) = closing {
        if let Some(label) = why.label() {
            shared.count_closed(label);
        }
        match why {
            // The request in flight is answered, with `Connection: close`; then hyper closes.
            Closing::ShutdownBusy => {
                connection.as_mut().graceful_shutdown();
                let _ended = connection.await;
            }
            // Half a request head, or an answer nobody reads: nothing to finish.
            Closing::WriteTimeout => {}
            _ if conn.head_started.load(Ordering::Acquire) != NO_HEAD => {}
            // Nothing in flight: hyper closes at once, after flushing an answer it may still
            // be writing.
            _ => {
                connection.as_mut().graceful_shutdown();
                let _ended = tokio::time::timeout(CLOSE_GRACE, connection).await;
            }
        }
    }
    shared.remove(id);
}

/// Marks the connection idle again when the answer has been written (hyper drops the body then).
struct IdleGuard {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl Drop for IdleGuard {
    fn drop(&mut self) {
        self.conn.end(self.shared.now());
    }
}

/// A response body that holds the connection busy until it is dropped.
struct Guarded<B> {
    inner: B,
    _guard: Option<IdleGuard>,
}

impl<B> Guarded<B> {
    fn new(inner: B, guard: IdleGuard) -> Self {
        Self {
            inner,
            _guard: Some(guard),
        }
    }
    fn none(inner: B) -> Self {
        Self {
            inner,
            _guard: None,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when the first byte of a request head arrives on an idle connection.
struct Watched {
    inner: TcpStream,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.on_read(self.shared.now());
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.conn.on_write(self.shared.now(), r.is_pending());
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.conn.on_write(self.shared.now(), r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderMap;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            t.client(ip("192.0.2.7"), &xff(&["203.0.113.9"])),
            ip("192.0.2.7")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &xff(&["1.2.3.4"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusted_peer_gives_the_rightmost_untrusted_hop() {
        let t = trusted(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client forged the first entry; the proxy appended what it saw.
        let h = xff(&["6.6.6.6, 203.0.113.9, 10.1.2.3"]);
        assert_eq!(t.client(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // Several header lines are one list.
        let h = xff(&["6.6.6.6", "203.0.113.9:5555", "10.1.2.3"]);
        assert_eq!(t.client(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        assert_eq!(
            t.client(ip("127.0.0.1"), &xff(&["[2001:db8::1]:80"])),
            ip("2001:db8::1")
        );
        // No header: the proxy itself.
        assert_eq!(
            t.client(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        // Garbage stops the walk at the last real address.
        assert_eq!(
            t.client(ip("127.0.0.1"), &xff(&["1.1.1.1, junk, 10.0.0.9"])),
            ip("10.0.0.9")
        );
        // IPv4-mapped peers match IPv4 networks.
        assert_eq!(
            t.client(ip("::ffff:127.0.0.1"), &xff(&["203.0.113.9"])),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn close_reasons_are_the_documented_label_set() {
        let all = [
            Closing::Evicted,
            Closing::HeaderTimeout,
            Closing::IdleTimeout,
            Closing::WriteTimeout,
            Closing::ShutdownIdle,
            Closing::ShutdownBusy,
        ];
        for c in all {
            if let Some(l) = c.label() {
                assert!(crate::metrics::CONN_CLOSE_REASONS.contains(&l), "{l}");
            }
        }
        assert!(crate::metrics::CONN_CLOSE_REASONS.contains(&"refused"));
    }

    #[tokio::test]
    async fn a_client_that_reads_nothing_of_its_answer_is_cut_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use warp::Filter;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Far more than the socket buffers of both ends hold.
        let big = bytes::Bytes::from(vec![b'x'; 32 << 20]);
        let filter = warp::any().map(move || warp::reply::Response::new(big.clone().into()));
        let opts = Options {
            name: "write-timeout-test",
            limits: Limits {
                max_connections: 4,
                header_read_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_millis(300),
            },
            trusted_proxies: TrustedProxies::default(),
        };
        tokio::spawn(run(
            listener,
            warp::service(filter),
            opts,
            std::future::pending(),
        ));

        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "connection still open");
        assert!(got < 32 << 20, "the whole answer was sent ({got} bytes)");
        let text = crate::metrics::metrics().render();
        assert!(
            text.contains(
                "scim_sync_http_connections_closed_total{listener=\"write-timeout-test\",reason=\"write_timeout\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_long_header_is_read_only_so_far() {
        let t = trusted(&["10.0.0.0/8"]);
        let mut v = "203.0.113.9".to_string();
        for i in 0..1000 {
            v.push_str(&format!(", 10.0.{}.{}", i / 250, i % 250));
        }
        // Every hop examined is trusted: the last one examined is the best known.
        let c = t.client(ip("10.0.0.1"), &xff(&[&v]));
        assert!(t.contains(c), "{c}");
    }
}
