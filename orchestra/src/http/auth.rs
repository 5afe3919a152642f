//! `/auth/token(s)`: bearer tokens for the web UI, and their revocation.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::bearer_token;
use super::media_auth;
use super::responses::Authed;
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorBody};
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
        .routes(routes!(set_media_cookie, clear_media_cookie))
}

/// Exchange Basic credentials (a user's `mail:secret`, or `root:<root secret>`) for a bearer
/// token that acts as them. A bearer token cannot mint one (403). A change of the user's
/// secret, or a rotation of root's, revokes all their tokens.
#[utoipa::path(post, path = "/auth/token", tag = "auth", security(("basic" = [])),
    responses(Authed, (status = 201, description = "a new bearer token", body = TokenAnswer),
        (status = 403, description = "node credentials, or called with a bearer token", body = ErrorBody)))]
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
        (status = 403, description = "node credentials", body = ErrorBody)))]
async fn revoke_token(State(state): State<AppState>, auth: Authenticated) -> ApiResult<StatusCode> {
    tokens::revoke_this(&state, &auth).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke every bearer token of the caller (log out everywhere).
#[utoipa::path(delete, path = "/auth/tokens", tag = "auth",
    responses(Authed, (status = 204, description = "all revoked"), (status = 403, description = "node credentials", body = ErrorBody)))]
async fn revoke_tokens(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<StatusCode> {
    tokens::revoke_mine(&state, &auth).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set the media cookie for the web UI's players and pictures: `oscied_media=<this bearer
/// token>; Path=/api/v1/medias; HttpOnly; SameSite=Strict` (`; Secure` when the request says
/// `X-Forwarded-Proto: https`). It authenticates GET and HEAD of `/medias/{id}/download`,
/// `/medias/{id}/files/{path}` and `/medias/{id}/thumbnail` only, as the token does, until
/// the token is revoked or expires; every other route ignores it.
#[utoipa::path(put, path = "/auth/cookie", tag = "auth", security(("bearer" = [])),
    responses(Authed,
        (status = 204, description = "the cookie is set", headers(("Set-Cookie" = String, description = "`oscied_media=<token>; Path=/api/v1/medias; HttpOnly; SameSite=Strict`"))),
        (status = 403, description = "called with HTTP Basic or node credentials: the cookie holds a bearer token, so call with one", body = ErrorBody)))]
async fn set_media_cookie(auth: Authenticated, headers: HeaderMap) -> ApiResult<Response> {
    let token = auth
        .token
        .as_ref()
        .and_then(|_| bearer_token(&headers))
        .ok_or_else(|| {
            ApiError::forbidden(
                "the media cookie holds a bearer token: call with Authorization: Bearer <token> \
                 (POST /api/v1/auth/token makes one)",
            )
        })?;
    Ok(with_cookie(media_auth::set_cookie(Some(&token), &headers)))
}

/// Clear the media cookie (sign-out calls it before `DELETE /auth/token`). Needs no
/// credentials: it only answers the expiring `Set-Cookie`.
#[utoipa::path(delete, path = "/auth/cookie", tag = "auth", security(()),
    responses((status = 204, description = "the cookie is cleared", headers(("Set-Cookie" = String, description = "`oscied_media=; Path=/api/v1/medias; HttpOnly; SameSite=Strict; Max-Age=0`")))))]
async fn clear_media_cookie(headers: HeaderMap) -> Response {
    with_cookie(media_auth::set_cookie(None, &headers))
}

fn with_cookie(cookie: String) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    // The answer carries a credential: never kept by a cache.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
