//! Bearer tokens: minted from a secret, revoked one at a time, all at once, or by a secret
//! change. They live in the store (by hash), so every replica sees a revocation at once.
//! Root's tokens are kept like users', under [`ROOT_OWNER`], stamped with root's secret hash:
//! a rotation (`OSCIED_ROTATE_ROOT_SECRET`) revokes them as a user's secret change does.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::auth::{Authenticated, Caller};
use crate::error::{ApiError, ApiResult};
pub use crate::models::ROOT_OWNER;
use crate::models::{Token, now};
use crate::secrets::{digest, random_token, secret_stamp};
use crate::state::AppState;

/// Whose tokens a caller's are.
fn owner(caller: &Caller) -> Uuid {
    caller.user_id().unwrap_or(ROOT_OWNER)
}

/// The secret hash a token of `owner` is stamped with now: the user's, or root's.
pub async fn current_stamp(state: &AppState, owner: Uuid) -> ApiResult<Option<String>> {
    let hash = if owner == ROOT_OWNER {
        state.store.root_secret_hash().await?
    } else {
        state.store.get_user(owner).await?.map(|r| r.secret_hash)
    };
    Ok(hash.map(|hash| secret_stamp(&hash)))
}

/// A new token for the caller (a user or root), who must have sent its secret (a token
/// cannot mint tokens: a stolen one would never expire). Returns the token and when it
/// expires.
pub async fn mint(state: &AppState, auth: &Authenticated) -> ApiResult<(String, DateTime<Utc>)> {
    auth.require_secret("making a token")?;
    let owner = owner(&auth.caller);
    // The stamp is of the stored hash as it is now.
    let stamp = current_stamp(state, owner)
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
            user_id: owner,
            expires_at,
            secret_stamp: stamp,
        })
        .await?;
    Ok((token, expires_at))
}

/// Revoke the token the caller called with.
pub async fn revoke_this(state: &AppState, auth: &Authenticated) -> ApiResult<()> {
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
    revoke_all(state, owner(&auth.caller)).await
}

/// Revoke every token of `user_id` (a secret change, a deleted user; [`ROOT_OWNER`]: root's).
pub async fn revoke_all(state: &AppState, user_id: Uuid) -> ApiResult<u64> {
    let revoked = state.store.delete_user_tokens(user_id).await?;
    if revoked > 0 {
        tracing::info!(user = %user_id, revoked, "tokens revoked");
    }
    Ok(revoked)
}
