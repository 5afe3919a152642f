//! Task statuses and the progress a unit reports, shared by orchestra and units.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Celery's words, as OSCIED used them (docs/architecture.md §3). The orchestra's `lifecycle` module
/// decides which changes are legal; units only ever ask for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskStatus {
    Pending,
    Started,
    Progress,
    Success,
    Failure,
    Retry,
    Revoking,
    Revoked,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 8] = [
        TaskStatus::Pending,
        TaskStatus::Started,
        TaskStatus::Progress,
        TaskStatus::Success,
        TaskStatus::Failure,
        TaskStatus::Retry,
        TaskStatus::Revoking,
        TaskStatus::Revoked,
    ];
    /// Waiting in a queue for a unit.
    pub const QUEUED: [TaskStatus; 2] = [TaskStatus::Pending, TaskStatus::Retry];
    /// Held by a unit under a lease.
    pub const RUNNING: [TaskStatus; 3] = [
        TaskStatus::Started,
        TaskStatus::Progress,
        TaskStatus::Revoking,
    ];
    /// Not final: queued or running.
    pub const ACTIVE: [TaskStatus; 5] = [
        TaskStatus::Pending,
        TaskStatus::Retry,
        TaskStatus::Started,
        TaskStatus::Progress,
        TaskStatus::Revoking,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Started => "STARTED",
            TaskStatus::Progress => "PROGRESS",
            TaskStatus::Success => "SUCCESS",
            TaskStatus::Failure => "FAILURE",
            TaskStatus::Retry => "RETRY",
            TaskStatus::Revoking => "REVOKING",
            TaskStatus::Revoked => "REVOKED",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Success | TaskStatus::Failure | TaskStatus::Revoked
        )
    }

    pub fn is_running(self) -> bool {
        TaskStatus::RUNNING.contains(&self)
    }

    pub fn is_queued(self) -> bool {
        TaskStatus::QUEUED.contains(&self)
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a running transform stands. Times are seconds; `percent` is out_time over the input
/// duration (0–100), `eta` is estimated from the speed so far. Fields ffmpeg has not reported
/// yet are null.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressReport {
    pub percent: f64,
    pub frame: Option<u64>,
    pub fps: Option<f64>,
    /// Times real time (`2.5` = 2.5x).
    pub speed: Option<f64>,
    /// Seconds of output written.
    pub out_time: Option<f64>,
    /// Seconds since the unit started ffmpeg.
    pub elapsed: f64,
    /// Seconds left, estimated.
    pub eta: Option<f64>,
}
