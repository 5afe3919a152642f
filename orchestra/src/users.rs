//! User accounts: what a new user and a change must hold, who may see and change whom, and
//! how changes reach the store (a new secret or a deletion revokes the user's tokens).

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Authenticated, Caller};
use crate::error::{ApiError, ApiResult};
use crate::logins::Argon;
use crate::models::{ListOptions, MediaFilter, Page, User, UserFilter, UserRecord, now};
use crate::state::AppState;
use crate::{tokens, webhooks};

pub const MIN_SECRET_LEN: usize = 8;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1 to 100 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub first_name: String,
    /// 1 to 100 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub last_name: String,
    /// `local@domain`, at most 254 characters, without whitespace, control characters or `:`.
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = r"^\s*[^\s\u0000-\u001f\u007f-\u009f:@]+@[^\s\u0000-\u001f\u007f-\u009f:@]+\s*$"
    )]
    pub mail: String,
    /// 8 to 1024 characters; stored as an argon2id hash, never answered.
    #[schema(min_length = 8, max_length = 1024)]
    pub secret: String,
    #[serde(default)]
    pub admin_platform: bool,
}

/// Fields to change; absent ones stay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub first_name: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub last_name: Option<String>,
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = r"^\s*[^\s\u0000-\u001f\u007f-\u009f:@]+@[^\s\u0000-\u001f\u007f-\u009f:@]+\s*$"
    )]
    pub mail: Option<String>,
    #[schema(min_length = 8, max_length = 1024)]
    pub secret: Option<String>,
    /// Only root or an admin may change it.
    pub admin_platform: Option<bool>,
}

fn check_name(field: &str, value: &str) -> ApiResult<String> {
    // Counted as sent and in characters, as the document's maxLength counts.
    let too_long = value.chars().count() > 100;
    let value = value.trim();
    if value.is_empty() || too_long || value.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must be 1 to 100 characters, without control characters"),
        ));
    }
    Ok(value.to_owned())
}

fn check_mail(mail: &str) -> ApiResult<String> {
    let too_long = mail.chars().count() > 254;
    let mail = mail.trim();
    if mail.contains(':') {
        return Err(ApiError::invalid_field(
            "mail",
            format!(
                "mail {mail:?} contains ':', which HTTP Basic authentication (mail:secret) cannot carry"
            ),
        ));
    }
    let valid = !too_long
        && !mail.chars().any(|c| c.is_whitespace() || c.is_control())
        && mail.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if !valid || mail.eq_ignore_ascii_case("root") || mail.eq_ignore_ascii_case("node") {
        return Err(ApiError::invalid_field(
            "mail",
            format!("mail {mail:?} is not a valid address"),
        ));
    }
    Ok(mail.to_owned())
}

fn check_secret(secret: &str) -> ApiResult<()> {
    if secret.chars().count() < MIN_SECRET_LEN || secret.chars().count() > 1024 {
        return Err(ApiError::invalid_field(
            "secret",
            format!("secret must be {MIN_SECRET_LEN} to 1024 characters"),
        ));
    }
    Ok(())
}

impl NewUser {
    pub async fn into_record(self, argon: &Argon) -> ApiResult<UserRecord> {
        let mut user = User {
            id: Uuid::new_v4(),
            first_name: check_name("first_name", &self.first_name)?,
            last_name: check_name("last_name", &self.last_name)?,
            mail: check_mail(&self.mail)?,
            admin_platform: self.admin_platform,
            name: String::new(),
            created_at: now(),
        };
        user.compute_name();
        check_secret(&self.secret)?;
        Ok(UserRecord {
            user,
            secret_hash: argon.hash(self.secret).await?,
        })
    }
}

impl UserPatch {
    /// Apply to `record` as `auth` would have it; true when the secret changed (the user's
    /// tokens are then revoked). Changing a secret needs a secret, not a bearer token.
    pub async fn apply(
        self,
        auth: &Authenticated,
        argon: &Argon,
        record: &mut UserRecord,
    ) -> ApiResult<bool> {
        let caller = &auth.caller;
        if self.secret.is_some() {
            auth.require_secret("changing the secret")?;
        }
        if self
            .admin_platform
            .is_some_and(|a| a != record.user.admin_platform)
        {
            caller.require_admin()?;
        }
        let user = &mut record.user;
        if let Some(v) = self.first_name {
            user.first_name = check_name("first_name", &v)?;
        }
        if let Some(v) = self.last_name {
            user.last_name = check_name("last_name", &v)?;
        }
        if let Some(v) = self.mail {
            user.mail = check_mail(&v)?;
        }
        if let Some(v) = self.admin_platform {
            user.admin_platform = v;
        }
        user.compute_name();
        if let Some(secret) = self.secret {
            check_secret(&secret)?;
            record.secret_hash = argon.hash(secret).await?;
            return Ok(true);
        }
        Ok(false)
    }
}

/// Create a user (root or an admin).
pub async fn create(state: &AppState, caller: &Caller, new: NewUser) -> ApiResult<User> {
    caller.require_admin()?;
    let record = new.into_record(&state.argon).await?;
    state.store.create_user(&record).await?;
    tracing::info!(user = %record.user.id, "user created");
    Ok(record.user)
}

/// Users whose mail or name holds `q`: all of them for root and admins, oneself for others.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    q: Option<String>,
    opts: &ListOptions,
) -> ApiResult<Page<User>> {
    let filter = UserFilter {
        q,
        id: if caller.is_admin() {
            None
        } else {
            caller.user_id()
        },
    };
    Ok(state.store.list_users(&filter, opts).await?)
}

/// A user that the caller may see (itself, or any for admins); others are a 404.
async fn visible(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<UserRecord> {
    if !caller.can_see(Some(id)) {
        return Err(ApiError::not_found("user", id));
    }
    state
        .store
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user", id))
}

/// A user, if the caller may see it.
pub async fn get(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<User> {
    Ok(visible(state, caller, id).await?.user)
}

/// Apply `patch` to a user the caller may see (see [`UserPatch::apply`]); a new secret
/// revokes the user's tokens.
pub async fn update(
    state: &AppState,
    auth: &Authenticated,
    id: Uuid,
    patch: UserPatch,
) -> ApiResult<User> {
    let mut record = visible(state, &auth.caller, id).await?;
    let new_secret = patch.apply(auth, &state.argon, &mut record).await?;
    if !state.store.update_user(&record).await? {
        return Err(ApiError::not_found("user", record.user.id));
    }
    if new_secret {
        // Already invalid by their stamp; this clears them from the store.
        tokens::revoke_all(state, record.user.id).await?;
    }
    Ok(record.user)
}

/// Delete a user that owns no medias, and its tokens.
pub async fn delete(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<()> {
    let record = visible(state, caller, id).await?;
    let filter = MediaFilter {
        user_id: Some(record.user.id),
        ..MediaFilter::default()
    };
    let owned = state
        .store
        .list_medias(&filter, &ListOptions::oldest_first(5))
        .await?;
    if owned.total > 0 {
        // Named, so that whoever reads the refusal knows what to delete.
        let mut named: Vec<String> = owned
            .items
            .iter()
            .map(|m| format!("{:?} ({})", m.title(), m.id))
            .collect();
        if owned.total > named.len() as u64 {
            named.push(format!("and {} more", owned.total - named.len() as u64));
        }
        return Err(ApiError::conflict(format!(
            "user {} still owns {} media(s): {}; delete them first",
            record.user.id,
            owned.total,
            named.join(", ")
        )));
    }
    state.store.delete_user(record.user.id).await?;
    tokens::revoke_all(state, record.user.id).await?;
    webhooks::forget_user(state, record.user.id).await?;
    Ok(())
}
