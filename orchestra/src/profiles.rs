//! Transform profiles: validation of new and changed profiles, who may change them, and the
//! built-ins' seeding.

use oscied_protocol::EncoderName;
use oscied_protocol::builtins::BUILTIN_PROFILES;
use oscied_protocol::encoder::validate_encoder_string;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::models::{ListOptions, Page, ProfileFilter, TransformProfile, now};
use crate::state::AppState;
use crate::store::{Store, StoreError, StoreResult};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProfile {
    /// Unique; 1 to 200 characters, not blank, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub title: String,
    /// At most 4000 characters.
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub description: String,
    pub encoder_name: EncoderName,
    /// ffmpeg output options (see GET /transform/encoders); ignored by `copy`.
    #[serde(default)]
    pub encoder_string: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub title: Option<String>,
    #[schema(max_length = 4000)]
    pub description: Option<String>,
    pub encoder_name: Option<EncoderName>,
    pub encoder_string: Option<String>,
}

fn check_title(title: &str) -> ApiResult<String> {
    // Counted as sent and in characters, as the document's maxLength counts.
    let too_long = title.chars().count() > 200;
    let title = title.trim();
    if title.is_empty() || too_long || title.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "title",
            "title must be 1 to 200 characters, without control characters",
        ));
    }
    Ok(title.to_owned())
}

fn check_description(description: &str) -> ApiResult<String> {
    if description.chars().count() > 4000 {
        return Err(ApiError::invalid_field(
            "description",
            "description must be at most 4000 characters",
        ));
    }
    Ok(description.trim().to_owned())
}

/// A profile's encoder string must validate for its encoder (docs/architecture.md §6).
fn check_encoder(name: EncoderName, encoder_string: &str) -> ApiResult<()> {
    match name {
        EncoderName::Ffmpeg => validate_encoder_string(encoder_string)
            .map(drop)
            .map_err(|e| ApiError::invalid_field("encoder_string", e.to_string())),
        EncoderName::Copy => Ok(()),
    }
}

impl NewProfile {
    pub fn into_profile(self, owner: Option<Uuid>) -> ApiResult<TransformProfile> {
        check_encoder(self.encoder_name, &self.encoder_string)?;
        Ok(TransformProfile {
            id: Uuid::new_v4(),
            user_id: owner,
            builtin: false,
            title: check_title(&self.title)?,
            description: check_description(&self.description)?,
            encoder_name: self.encoder_name,
            encoder_string: self.encoder_string.trim().to_owned(),
            created_at: now(),
        })
    }
}

impl ProfilePatch {
    pub fn apply(self, profile: &mut TransformProfile) -> ApiResult<()> {
        if let Some(title) = self.title {
            profile.title = check_title(&title)?;
        }
        if let Some(description) = self.description {
            profile.description = check_description(&description)?;
        }
        if let Some(name) = self.encoder_name {
            profile.encoder_name = name;
        }
        if let Some(encoder_string) = self.encoder_string {
            profile.encoder_string = encoder_string.trim().to_owned();
        }
        check_encoder(profile.encoder_name, &profile.encoder_string)
    }
}

/// Create a profile owned by the caller (root's are ownerless).
pub async fn create(
    state: &AppState,
    caller: &Caller,
    new: NewProfile,
) -> ApiResult<TransformProfile> {
    let profile = new.into_profile(caller.user_id())?;
    state.store.create_profile(&profile).await?;
    Ok(profile)
}

/// A page of profiles (every user sees all of them).
pub async fn list(
    state: &AppState,
    filter: &ProfileFilter,
    opts: &ListOptions,
) -> ApiResult<Page<TransformProfile>> {
    Ok(state.store.list_profiles(filter, opts).await?)
}

/// A profile.
pub async fn get(state: &AppState, id: Uuid) -> ApiResult<TransformProfile> {
    state
        .store
        .get_profile(id)
        .await?
        .ok_or_else(|| ApiError::not_found("profile", id))
}

/// Owners change their profiles; admins change any, built-ins included.
fn require_owner(caller: &Caller, profile: &TransformProfile) -> ApiResult<()> {
    if caller.is_admin() || (profile.user_id.is_some() && profile.user_id == caller.user_id()) {
        Ok(())
    } else if profile.user_id.is_none() {
        Err(ApiError::forbidden(
            "built-in profiles are changed by admins only",
        ))
    } else {
        Err(ApiError::forbidden(
            "only the profile's owner or an admin may change it",
        ))
    }
}

/// Apply `patch` to a profile the caller may change.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    patch: ProfilePatch,
) -> ApiResult<TransformProfile> {
    let mut profile = get(state, id).await?;
    require_owner(caller, &profile)?;
    patch.apply(&mut profile)?;
    if !state.store.update_profile(&profile).await? {
        return Err(ApiError::not_found("profile", profile.id));
    }
    Ok(profile)
}

/// Delete a profile the caller may change.
pub async fn delete(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<()> {
    let profile = get(state, id).await?;
    require_owner(caller, &profile)?;
    state.store.delete_profile(profile.id).await?;
    Ok(())
}

/// Seed the built-in profiles into a store that has no profile at all (its first start), so
/// an admin's later deletions or edits of built-ins are not undone at the next start.
pub async fn seed_builtins(store: &dyn Store) -> StoreResult<usize> {
    if store
        .list_profiles(&ProfileFilter::default(), &ListOptions::count_only())
        .await?
        .total
        > 0
    {
        mark_legacy_builtins(store).await?;
        return Ok(0);
    }
    let mut seeded = 0;
    for builtin in BUILTIN_PROFILES {
        let profile = TransformProfile {
            id: Uuid::new_v4(),
            user_id: None,
            builtin: true,
            title: builtin.title.to_owned(),
            description: builtin.description.to_owned(),
            encoder_name: builtin.encoder_name,
            encoder_string: builtin.encoder_string.to_owned(),
            created_at: now(),
        };
        match store.create_profile(&profile).await {
            Ok(()) => seeded += 1,
            // Another orchestra seeding the same store at the same time.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(seeded)
}

/// Stores seeded before profiles said `builtin` hold the built-ins as ownerless profiles
/// with `builtin: false`; flag those still exactly as seeded (title, encoder and string).
async fn mark_legacy_builtins(store: &dyn Store) -> StoreResult<()> {
    for builtin in BUILTIN_PROFILES {
        let filter = ProfileFilter {
            q: Some(builtin.title.to_owned()),
            encoder_name: Some(builtin.encoder_name),
            user_id: None,
        };
        let opts = ListOptions {
            limit: 100,
            skip: 0,
            sort: "title",
            descending: false,
            uncounted: false,
        };
        for mut profile in store.list_profiles(&filter, &opts).await?.items {
            if !profile.builtin
                && profile.user_id.is_none()
                && profile.title == builtin.title
                && profile.encoder_string == builtin.encoder_string
            {
                profile.builtin = true;
                store.update_profile(&profile).await?;
            }
        }
    }
    Ok(())
}
