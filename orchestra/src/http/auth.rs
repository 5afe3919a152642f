//! `POST /auth/token`: a bearer token for the web UI.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, digest, random_token};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::models::{Token, now, ts};
use crate::state::AppState;

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
    OpenApiRouter::new().routes(routes!(create_token))
}

/// Exchange a user's Basic credentials for a bearer token.
#[utoipa::path(post, path = "/auth/token", tag = "auth",
    responses((status = 201, body = TokenAnswer), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<(axum::http::StatusCode, Json<TokenAnswer>)> {
    let user = match &caller {
        Caller::User(user) => user,
        Caller::Root => {
            return Err(ApiError::forbidden(
                "root authenticates with HTTP Basic, not tokens",
            ));
        }
    };
    let token = random_token();
    let ttl = chrono::Duration::seconds(i64::try_from(state.config.token_ttl).unwrap_or(i64::MAX));
    let expires_at = now()
        .checked_add_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    state
        .store
        .create_token(&Token {
            hash: digest(&[&token]),
            user_id: user.id,
            expires_at,
        })
        .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(TokenAnswer {
            token,
            token_type: "Bearer",
            expires_at,
        }),
    ))
}
