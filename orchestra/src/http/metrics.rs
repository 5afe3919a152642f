//! `GET /metrics` (outside `/api/v1`, docs/architecture.md §18) and the middleware that
//! counts every request by route template.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use oscied_protocol::http::metrics::{authorized, exposition, unauthorized};

use crate::metrics::{Metrics, UNMATCHED_ROUTE};
use crate::overview;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// The Prometheus exposition; with `OSCIED_METRICS_TOKEN` set, only for its bearer.
async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !authorized(&headers, state.config.metrics_token.as_deref()) {
        return unauthorized();
    }
    exposition(overview::metrics(&state).await)
}

/// Count the request by method, route template and status, with its latency (to the
/// answer's headers: a download or an event stream goes on after). The template, never the
/// path, and only the standard methods: a client cannot make new series.
pub(crate) async fn track(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let method = match *request.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
