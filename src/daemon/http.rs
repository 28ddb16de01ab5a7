//! The HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready` and a landing page at `/`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::debug;

use super::metrics::Metrics;

const LANDING: &str = "<!doctype html>
<html><head><title>shuffle-janitor</title></head>
<body><h1>shuffle-janitor</h1>
<p>Deletes stale Apache Spark shuffle files from this node's local dirs.</p>
<ul><li><a href=\"metrics\">metrics</a></li><li><a href=\"-/healthy\">health</a></li><li><a href=\"-/ready\">readiness</a></li></ul>
</body></html>
";

/// Serves on `listener` until the runtime stops. `ready` turns true once the daemon has loaded
/// its config and is watching.
pub fn spawn(listener: TcpListener, metrics: Arc<Metrics>, ready: Arc<AtomicBool>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let (metrics, ready) = (metrics.clone(), ready.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let (metrics, ready) = (metrics.clone(), ready.clone());
                    async move { Ok::<_, Infallible>(respond(&req, &metrics, &ready)) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(%peer, error = %e, "http connection");
                }
            });
        }
    });
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
        "/-/healthy" => reply(StatusCode::OK, text, b"shuffle-janitor is healthy.\n".to_vec()),
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
