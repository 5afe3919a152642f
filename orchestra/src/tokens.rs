//! Bearer tokens: minted from a secret, revoked one at a time, all at once, or by a secret
//! change. They live in the store (by hash), so every replica sees a revocation at once.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::auth::{Authenticated, Caller, digest, random_token, secret_stamp};
use crate::error::{ApiError, ApiResult};
use crate::models::{Token, User, now};
use crate::state::AppState;

/// The user a token route acts for; root has no tokens.
fn token_user(auth: &Authenticated) -> ApiResult<&User> {
    match &auth.caller {
        Caller::User(user) => Ok(user),
        Caller::Root => Err(ApiError::forbidden(
            "root authenticates with HTTP Basic, not tokens",
        )),
    }
}

/// A new token for the caller, who must have sent its secret (a token cannot mint tokens:
/// a stolen one would never expire). Returns the token and when it expires.
pub async fn mint(state: &AppState, auth: &Authenticated) -> ApiResult<(String, DateTime<Utc>)> {
    let user = token_user(auth)?;
    auth.require_secret("making a token")?;
    // The stamp is of the stored hash as it is now.
    let record = state
        .store
        .get_user(user.id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the user is gone"))?;
    // Expired tokens are refused anyway; minting is when they are cleared from the store.
    state.store.delete_expired_tokens(now()).await?;
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
            secret_stamp: secret_stamp(&record),
        })
        .await?;
    Ok((token, expires_at))
}

/// Revoke the token the caller called with.
pub async fn revoke_this(state: &AppState, auth: &Authenticated) -> ApiResult<()> {
    token_user(auth)?;
    let hash = auth.token.as_deref().ok_or_else(|| {
        ApiError::bad_request(
            "no_token",
            "call with the token to revoke (Authorization: Bearer <token>); DELETE /auth/tokens revokes them all",
        )
    })?;
    state.store.delete_token(hash).await?;
    Ok(())
}

/// Revoke every token of the caller.
pub async fn revoke_mine(state: &AppState, auth: &Authenticated) -> ApiResult<u64> {
    let user = token_user(auth)?;
    revoke_all(state, user.id).await
}

/// Revoke every token of `user_id` (a secret change, a deleted user).
pub async fn revoke_all(state: &AppState, user_id: Uuid) -> ApiResult<u64> {
    let revoked = state.store.delete_user_tokens(user_id).await?;
    if revoked > 0 {
        tracing::info!(user = %user_id, revoked, "tokens revoked");
    }
    Ok(revoked)
}
