//! `GET /health` tells the truth (issue 10): the programs the orchestra runs, a storage tree it
//! can write, the store and the broker with why it is down; `degraded` with 503 when one it
//! needs is missing. Real ffprobe/ffmpeg, real files, the real RabbitMQ of the test machine.

mod common;

use std::time::{Duration, Instant};

use common::{App, As};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_reports_the_tools_the_storage_and_the_broker() {
    let app = App::start().await;
    let (status, health) = app.get("/health", As::Nobody).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    for tool in ["ffprobe", "ffmpeg"] {
        assert_eq!(health[tool]["found"], true, "{health}");
        // Standalone: uploads need ffprobe, the in-process unit ffmpeg.
        assert_eq!(health[tool]["required"], true, "{health}");
        let version = health[tool]["version"].as_str().unwrap_or_default();
        assert!(version.starts_with(&format!("{tool} version ")), "{health}");
    }
    assert_eq!(health["storage"], "ok", "{health}");
    assert!(health["storage_error"].is_null(), "{health}");
    assert_eq!(health["broker"], "ok", "{health}");
    assert!(health["broker_error"].is_null(), "{health}");
    assert_eq!(health["mode"], "standalone", "{health}");
    assert_eq!(health["store_kind"], "sqlite", "{health}");
    // The probe leaves nothing behind.
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());
}

#[tokio::test]
async fn health_is_degraded_when_the_storage_cannot_be_written() {
    let app = App::start().await;
    // Tests run as root, so permissions would not stop a write: a file where tmp/ should be
    // does.
    let tmp = app.storage().join("tmp");
    std::fs::remove_dir_all(&tmp).expect("remove tmp/");
    std::fs::write(&tmp, b"not a directory").expect("a file in its place");
    let (status, health) = app.get("/health", As::Nobody).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["storage"], "down", "{health}");
    let why = health["storage_error"].as_str().unwrap_or_default();
    assert!(why.contains("tmp/"), "{health}");
    // Only the storage is wrong.
    assert_eq!(health["store"], "ok", "{health}");
    assert_eq!(health["ffprobe"]["found"], true, "{health}");

    // Put back, it is healthy again.
    std::fs::remove_file(&tmp).expect("remove the file");
    std::fs::create_dir(&tmp).expect("tmp/ again");
    let (status, health) = app.get("/health", As::Nobody).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["storage"], "ok", "{health}");
}

/// Poll `/health` until the broker is down with a cause containing `words`.
async fn broker_down_with(app: &App, words: &str) -> Value {
    let start = Instant::now();
    loop {
        let (status, health) = app.get("/health", As::Nobody).await;
        let why = health["broker_error"].as_str().unwrap_or_default();
        if status == StatusCode::SERVICE_UNAVAILABLE && why.contains(words) {
            return health;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no broker error with {words:?}: {status} {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn health_says_why_rabbitmq_refuses_the_orchestra() {
    let vhost = format!("oscied-test-missing-{}", uuid::Uuid::new_v4().simple());
    let app = App::start_with(|config| {
        config.amqp_uri = Some(format!("amqp://guest:guest@127.0.0.1:5672/{vhost}"));
        config.node_secret = Some("a-node-secret".into());
    })
    .await;
    let health = broker_down_with(&app, &vhost).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["broker"], "down", "{health}");
    let why = health["broker_error"].as_str().unwrap_or_default();
    assert!(why.contains("not found"), "{health}");
    assert!(why.contains("rabbitmqctl add_vhost"), "{health}");
    // Cluster mode: ffmpeg is the units' business.
    assert_eq!(health["mode"], "cluster", "{health}");
    assert_eq!(health["ffmpeg"]["required"], false, "{health}");
    assert_eq!(health["ffprobe"]["required"], true, "{health}");

    let app = App::start_with(|config| {
        config.amqp_uri = Some("amqp://guest:not-the-password@127.0.0.1:5672/%2f".into());
        config.node_secret = Some("a-node-secret".into());
    })
    .await;
    let health = broker_down_with(&app, "ACCESS_REFUSED").await;
    let why = health["broker_error"].as_str().unwrap_or_default();
    assert!(why.contains("user and password"), "{health}");
    assert!(!why.contains("not-the-password"), "{health}");
}
