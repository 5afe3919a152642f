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
pub fn tmp_dir(task_id: Uuid, attempt: u32) -> String {
    format!("tmp/{task_id}/{attempt}")
}

/// The directory of all attempts of a task (removed when the task ends).
pub fn task_tmp_root(task_id: Uuid) -> String {
    format!("tmp/{task_id}")
}
