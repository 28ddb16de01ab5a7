//! The HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready` and a landing page at `/`, served so
//! that no client can starve the daemon: connections are capped, idle and slow ones time out
//! (faster when many are open), request heads are bounded, and accept errors back off.
//!
//! TLS and basic auth follow the web config file ([`crate::web_config`]), read at each new
//! connection from a [`WebHandle`] that a reload (SIGHUP) replaces: a connection keeps the
//! configuration it started with, the next one gets the new one.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::metrics::Metrics;
use crate::web_config::WebConfig;

/// The web configuration in force; a reload swaps the `Arc` inside.
pub type WebHandle = Arc<RwLock<Arc<WebConfig>>>;

const LANDING: &str = "<!doctype html>
<html><head><title>shuffle-janitor</title></head>
<body><h1>shuffle-janitor</h1>
<p>Deletes stale Apache Spark shuffle files from this node's local dirs.</p>
<ul><li><a href=\"metrics\">metrics</a></li><li><a href=\"-/healthy\">health</a></li><li><a href=\"-/ready\">readiness</a></li></ul>
</body></html>
";

/// Connections served at once; more are accepted and closed at once, so strangers can never
/// hold more than this many of the daemon's file descriptors.
const MAX_CONNECTIONS: usize = 128;
/// Past this many open connections, a new one must send its request head within
/// [`CROWDED_HEADER_TIMEOUT`] instead of [`HEADER_TIMEOUT`]: idle sockets are shed fast when
/// many are open, and a scrape is served.
const CROWDED: usize = 16;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const CROWDED_HEADER_TIMEOUT: Duration = Duration::from_millis(250);
/// A connection (keep-alive included) lives at most this long.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// The request head (line and headers) may not be larger.
const MAX_HEAD: usize = 16 * 1024;

/// Serves on `listener` until the runtime stops. `ready` turns true once the daemon has loaded
/// its config and is watching.
pub fn spawn(listener: TcpListener, metrics: Arc<Metrics>, ready: Arc<AtomicBool>, web: WebHandle) {
    tokio::spawn(async move {
        let open = Arc::new(AtomicUsize::new(0));
        let mut said_error = false;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning on the error.
                    if !said_error {
                        warn!(error = %e, "cannot accept a metrics connection (further ones at debug)");
                        said_error = true;
                    } else {
                        debug!(error = %e, "cannot accept a metrics connection");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let now_open = open.fetch_add(1, Ordering::AcqRel) + 1;
            let guard = Open(open.clone());
            if now_open > MAX_CONNECTIONS {
                debug!(%peer, "too many metrics connections; closed");
                drop(stream);
                drop(guard);
                continue;
            }
            let header_timeout = if now_open > CROWDED {
                CROWDED_HEADER_TIMEOUT
            } else {
                HEADER_TIMEOUT
            };
            let (metrics, ready) = (metrics.clone(), ready.clone());
            let web = web.read().expect("not poisoned").clone();
            tokio::spawn(async move {
                let _guard = guard;
                let Some(tls) = web.tls.clone() else {
                    serve(stream, peer, header_timeout, metrics, ready, web).await;
                    return;
                };
                // The handshake is bounded like a request head: a stalled client holds nothing long.
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve(stream, peer, header_timeout, metrics, ready, web).await,
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
}

/// Serves HTTP/1.1 on one connection, plain or TLS.
async fn serve<S>(
    stream: S,
    peer: std::net::SocketAddr,
    header_timeout: Duration,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    web: Arc<WebConfig>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let (metrics, ready, web) = (metrics.clone(), ready.clone(), web.clone());
        async move {
            if web.needs_auth() {
                let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes().to_vec());
                let check = web.clone();
                // bcrypt is slow on purpose: off the async workers, which keep serving others.
                let ok = tokio::task::spawn_blocking(move || check.check_basic_auth(header.as_deref()))
                    .await
                    .unwrap_or(false);
                if !ok {
                    debug!(%peer, "unauthorized metrics request");
                    return Ok::<_, Infallible>(unauthorized());
                }
            }
            Ok::<_, Infallible>(respond(&req, &metrics, &ready))
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
        Ok(Err(e)) => debug!(%peer, error = %e, "http connection"),
        Err(_) => debug!(%peer, "http connection closed after its lifetime"),
        Ok(Ok(())) => {}
    }
}

fn unauthorized() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(WWW_AUTHENTICATE, "Basic")
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(b"Unauthorized\n")))
        .expect("a valid response")
}

/// Counts an open connection until dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn respond(req: &Request<Incoming>, metrics: &Metrics, ready: &AtomicBool) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &str, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, ctype)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    let text = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, text, b"only GET and HEAD\n".to_vec());
    }
    match req.uri().path() {
        "/metrics" => {
            let (body, ctype) = metrics.render();
            reply(StatusCode::OK, &ctype, body)
        }
        "/-/healthy" => match metrics.health.stuck() {
            None => reply(StatusCode::OK, text, b"shuffle-janitor is healthy.\n".to_vec()),
            Some(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                text,
                format!("shuffle-janitor is stuck: {why}\n").into_bytes(),
            ),
        },
        "/-/ready" if ready.load(Ordering::Relaxed) => {
            reply(StatusCode::OK, text, b"shuffle-janitor is ready.\n".to_vec())
        }
        "/-/ready" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            b"shuffle-janitor is starting.\n".to_vec(),
        ),
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", LANDING.as_bytes().to_vec()),
        _ => reply(StatusCode::NOT_FOUND, text, b"not found; try /metrics\n".to_vec()),
    }
}
