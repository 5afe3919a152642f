//! The one error type of the orchestra's API, mapped to HTTP in one place:
//! `{"error": {"code": "snake_case", "message": "..."}}` with the status of docs/architecture.md §4.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 answers).
    pub retry_after: Option<u64>,
    /// The request field at fault (422 answers), when the code knows it.
    pub field: Option<String>,
}

/// The error body every route answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: `malformed_json`, `invalid_field`, `not_found`, `conflict`...
    pub code: String,
    /// What was wrong, for a person.
    pub message: String,
    /// The request field at fault (`title`, `encoder_string`, `file`...), on 422 answers
    /// where it is known; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The `WWW-Authenticate` of a 401.
const BASIC_CHALLENGE: &str = "Basic realm=\"OSCIED\", charset=\"UTF-8\"";

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            field: None,
        }
    }

    /// The same error, naming the request field at fault.
    pub fn on(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// [`Self::on`] for a 404 only: the field names the missing object; another error (the
    /// store unreachable) is not the field's.
    pub fn on_not_found(self, field: impl Into<String>) -> Self {
        if self.status == StatusCode::NOT_FOUND {
            self.on(field)
        } else {
            self
        }
    }

    /// A 422 `invalid_field` naming its field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(message).on(field)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// `what` is the resource (`media`, `user`...).
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} with id {id}"),
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn illegal_state(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "illegal_state", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 429 with `Retry-After: secs`.
    pub fn too_many_requests(message: impl Into<String>, secs: u64) -> Self {
        ApiError {
            retry_after: Some(secs),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// A request body that stopped arriving: the client sent nothing for
    /// `OSCIED_BODY_IDLE_SECS` (408). None when `e` is another error.
    pub fn stalled_body(e: &(dyn std::error::Error + 'static)) -> Option<Self> {
        oscied_protocol::http::is_body_timeout(e).then(|| {
            Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body stalled: no bytes arrived within OSCIED_BODY_IDLE_SECS",
            )
        })
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let retry_after = self.retry_after;
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if unauthorized {
            // A browser's scripts and elements get `Bearer` instead (`http::browser_challenge`).
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BASIC_CHALLENGE),
            );
        }
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // Every store error that reaches a caller passes here: the one place to count them.
        crate::metrics::store_error(&e);
        match e {
            StoreError::Conflict(field) => {
                let conflict = ApiError::conflict(format!("{field} is already taken"));
                // A user's mail and a profile's title are fields the client sent.
                match field {
                    "mail" | "title" => conflict.on(field),
                    _ => conflict,
                }
            }
            StoreError::Unavailable(m) => ApiError::unavailable(format!("store unavailable: {m}")),
            StoreError::Corrupt(m) => ApiError::internal(format!("store data error: {m}")),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(format!("storage error: {e}"))
    }
}
