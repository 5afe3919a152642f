//! HTTP plumbing the orchestra and the publisher share: [`serve`] with timeouts and request
//! size bounds, [`file`] answers with conditional requests and Range, and [`metrics`]
//! expositions.

pub mod file;
pub mod metrics;
pub mod range;
mod server;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub use server::{
    MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES, ServeLimits, is_body_timeout, serve,
};

/// The error answer of every OSCIED HTTP server: `{"error": {"code", "message"}}`. The
/// orchestra's `ApiError` renders the same shape.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}
