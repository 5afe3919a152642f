//! The messages the orchestra puts on a queue. A message holds everything a unit needs to do
//! the work (the profile itself, storage-relative paths) and never a secret.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::encoder::EncoderName;

/// One attempt at one transform task, as queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformJob {
    pub task_id: Uuid,
    /// The attempt this message is for; a unit claims with it, and the orchestra refuses a
    /// claim for any other (so a stale redelivery is dropped, not run twice).
    pub attempt: u32,
    /// The input media's main file, relative to the storage root (`medias/<id>/<filename>`).
    pub media_in_uri: String,
    /// Seconds, from the input's probe; the unit turns out_time into a percent with it.
    pub media_in_duration: Option<f64>,
    pub media_out_id: Uuid,
    /// The output's main file name; `.m3u8`/`.mpd` make a package.
    pub filename: String,
    pub profile_title: String,
    pub encoder_name: EncoderName,
    pub encoder_string: String,
}

/// Where a unit writes an attempt's files, relative to the storage root. The orchestra moves
/// this directory into `medias/<media_out_id>/` when it accepts the completion.
/// A publisher unit's job (docs/architecture.md §5, §7). Publish jobs go to the task's queue
/// (`publisher` unless named); unpublish jobs go to the holding unit's own queue
/// ([`crate::queue::unit_queue`]), since only that unit has the files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishJob {
    pub task_id: Uuid,
    pub attempt: u32,
    pub action: PublishAction,
    pub media_id: Uuid,
    /// The media's main file, relative to the storage root: `medias/<id>/<filename>`. Its
    /// directory is what gets published (a package's segments live beside its manifest).
    pub media_uri: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishAction {
    /// Claim the task, copy or hard-link the media dir into `<www root>/medias/<id>/`,
    /// check its public URL answers, complete SUCCESS with `publish_uri`.
    Publish,
    /// Remove `<www root>/medias/<id>/`, complete REVOKED (no claim: the unit already holds
    /// the task). Sent only to the unit that published.
    Unpublish,
}

/// Where a publisher unit serves a media: `medias/<id>/` under its www root and its public
/// URL.
pub fn published_dir(media_id: Uuid) -> String {
    format!("medias/{media_id}")
}

pub fn tmp_dir(task_id: Uuid, attempt: u32) -> String {
    format!("tmp/{task_id}/{attempt}")
}

/// The directory of all attempts of a task (removed when the task ends).
pub fn task_tmp_root(task_id: Uuid) -> String {
    format!("tmp/{task_id}")
}
