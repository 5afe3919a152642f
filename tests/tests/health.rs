//! `/health` tells the truth about the programs the orchestra runs (issue 10): the real
//! `orchestra` binary started with a `PATH` that lacks ffprobe and ffmpeg.

use oscied_e2e::orchestra::Orchestra;
use serde_json::Value;

#[test]
fn health_is_degraded_without_ffprobe_and_says_so() {
    // The orchestra itself needs nothing else from PATH.
    let empty = tempfile::tempdir().expect("temp dir");
    let path = empty.path().to_str().expect("utf-8 temp path");
    let orchestra =
        Orchestra::start_answering(&[("PATH", path), ("OSCIED_ROOT_SECRET", "e2e-root-secret")]);
    let reply = orchestra.client().send("/health", &[]);
    let body = reply.text();
    let health: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let status = reply.status;
    assert_eq!(status, 503, "{health}\n{}", orchestra.log_tail());
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["ffprobe"]["found"], false, "{health}");
    assert_eq!(health["ffprobe"]["required"], true, "{health}");
    assert!(health["ffprobe"]["version"].is_null(), "{health}");
    // Standalone: the in-process transform unit needs ffmpeg too.
    assert_eq!(health["ffmpeg"]["found"], false, "{health}");
    assert_eq!(health["ffmpeg"]["required"], true, "{health}");
    // The rest is fine, and still says so.
    assert_eq!(health["store"], "ok", "{health}");
    assert_eq!(health["broker"], "ok", "{health}");
    assert_eq!(health["storage"], "ok", "{health}");
    assert_eq!(health["mode"], "standalone", "{health}");
}
