//! User accounts: what a new user and a change must hold, and how they apply.

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::logins::Argon;
use crate::models::{User, UserRecord, now};

pub const MIN_SECRET_LEN: usize = 8;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub first_name: String,
    pub last_name: String,
    pub mail: String,
    /// At least 8 characters; stored as an argon2id hash, never answered.
    pub secret: String,
    #[serde(default)]
    pub admin_platform: bool,
}

/// Fields to change; absent ones stay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub mail: Option<String>,
    pub secret: Option<String>,
    /// Only root or an admin may change it.
    pub admin_platform: Option<bool>,
}

fn check_name(field: &str, value: &str) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() || value.len() > 100 || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field} must be 1 to 100 characters, without control characters"
        )));
    }
    Ok(value.to_owned())
}

fn check_mail(mail: &str) -> ApiResult<String> {
    let mail = mail.trim();
    if mail.contains(':') {
        return Err(ApiError::invalid(format!(
            "mail {mail:?} contains ':', which HTTP Basic authentication (mail:secret) cannot carry"
        )));
    }
    let valid = mail.len() <= 254
        && !mail.chars().any(|c| c.is_whitespace() || c.is_control())
        && mail.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if !valid || mail.eq_ignore_ascii_case("root") || mail.eq_ignore_ascii_case("node") {
        return Err(ApiError::invalid(format!(
            "mail {mail:?} is not a valid address"
        )));
    }
    Ok(mail.to_owned())
}

fn check_secret(secret: &str) -> ApiResult<()> {
    if secret.chars().count() < MIN_SECRET_LEN || secret.len() > 1024 {
        return Err(ApiError::invalid(format!(
            "secret must be {MIN_SECRET_LEN} to 1024 characters"
        )));
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
