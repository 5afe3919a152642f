//! Serving an axum app over HTTP/1.1 with bounds a slow or oversized client cannot get past.
//!
//! `axum::serve` sets no timer on hyper, so hyper's `header_read_timeout` never fires and a
//! client may send its headers a byte a minute; nothing bounds a stalled body either. This
//! loop serves each connection with hyper directly:
//! - the request head (headers, or the wait for the next request on a kept-alive
//!   connection) must arrive within `header_timeout`, else the connection is closed;
//! - a body that sends no bytes for `body_idle` fails its read (tower-http's `TimeoutBody`,
//!   an idle timeout between frames): the handler sees an error and cleans up;
//! - a request target over [`MAX_URI_BYTES`] is answered 414, headers over [`MAX_HEADERS`]
//!   fields or [`MAX_HEADER_BYTES`] bytes 431, both with the JSON error body. hyper's own
//!   limits (about 64 KiB of target, 400 KiB of head) stay above ours as a backstop; past
//!   those hyper answers alone, without a body.
//!
//! Each request carries `ConnectInfo<SocketAddr>`, as with `into_make_service_with_connect_info`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::timeout::{TimeoutBody, TimeoutError};

use super::error_response;

/// Longest request target (path and query) answered normally.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields in a request.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values in a request.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// hyper's own field count limit, above ours so ours answers first.
const HYPER_MAX_HEADERS: usize = 1000;

/// The timeouts of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time a client has to send a request's head (`OSCIED_HEADER_TIMEOUT_SECS`).
    pub header_timeout: Duration,
    /// Longest silence inside a request body (`OSCIED_BODY_IDLE_SECS`).
    pub body_idle: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(30),
            body_idle: Duration::from_secs(60),
        }
    }
}

/// Serve `app` on `listener` until `shutdown` completes, then wait for open connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(HYPER_MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(app, remote, limits, request).await) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%remote, "connection closed: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn handle(
    app: Router,
    remote: SocketAddr,
    limits: ServeLimits,
    request: Request<Incoming>,
) -> Response {
    if let Some(refusal) = check_bounds(&request) {
        return refusal;
    }
    let mut request = request.map(|body| Body::new(TimeoutBody::new(limits.body_idle, body)));
    request.extensions_mut().insert(ConnectInfo(remote));
    match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// 414 or 431 with the JSON body, for a request over [`MAX_URI_BYTES`], [`MAX_HEADERS`] or
/// [`MAX_HEADER_BYTES`].
fn check_bounds<B>(request: &Request<B>) -> Option<Response> {
    let uri = request.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(error_response(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            &format!("the request target is {target} bytes; the limit is {MAX_URI_BYTES}"),
        ));
    }
    let headers = request.headers();
    if headers.len() > MAX_HEADERS {
        return Some(error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &format!(
                "the request has {} header fields; the limit is {MAX_HEADERS}",
                headers.len()
            ),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Some(error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &format!("the request headers are {bytes} bytes; the limit is {MAX_HEADER_BYTES}"),
        ));
    }
    None
}

/// Whether a body read failed because the client sent nothing for `body_idle`: walks the
/// error's sources (axum and multer wrap it).
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<TimeoutError>() {
            return true;
        }
        current = e.source();
    }
    false
}
