//! `/auth/token(s)`: bearer tokens for the web UI, and their revocation.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::responses::Authed;
use crate::auth::Authenticated;
use crate::error::{ApiResult, ErrorBody};
use crate::models::ts;
use crate::state::AppState;
use crate::tokens;

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenAnswer {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    #[serde(with = "ts")]
    pub expires_at: DateTime<Utc>,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, revoke_token))
        .routes(routes!(revoke_tokens))
}

/// Exchange a user's Basic credentials for a bearer token. A bearer token cannot mint one
/// (403). A change of the user's secret revokes all its tokens.
#[utoipa::path(post, path = "/auth/token", tag = "auth", security(("basic" = [])),
    responses(Authed, (status = 201, description = "a new bearer token", body = TokenAnswer),
        (status = 403, description = "root or node credentials, or called with a bearer token", body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<(StatusCode, Json<TokenAnswer>)> {
    let (token, expires_at) = tokens::mint(&state, &auth).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenAnswer {
            token,
            token_type: "Bearer",
            expires_at,
        }),
    ))
}

/// Revoke the bearer token this request is made with (log out).
#[utoipa::path(delete, path = "/auth/token", tag = "auth", security(("bearer" = [])),
    responses(Authed, (status = 204, description = "revoked"), (status = 400, description = "not called with a bearer token", body = ErrorBody),
        (status = 403, description = "root or node credentials", body = ErrorBody)))]
async fn revoke_token(State(state): State<AppState>, auth: Authenticated) -> ApiResult<StatusCode> {
    tokens::revoke_this(&state, &auth).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke every bearer token of the caller (log out everywhere).
#[utoipa::path(delete, path = "/auth/tokens", tag = "auth",
    responses(Authed, (status = 204, description = "all revoked"), (status = 403, description = "root or node credentials", body = ErrorBody)))]
async fn revoke_tokens(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<StatusCode> {
    tokens::revoke_mine(&state, &auth).await?;
    Ok(StatusCode::NO_CONTENT)
}
