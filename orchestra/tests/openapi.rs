//! The OpenAPI document held against the server: `openapi-spec-validator` checks the
//! document, and a bounded schemathesis run (`--checks all`) against a standalone orchestra,
//! authenticated as a user, finds no server error, no undocumented status and no answer
//! outside its schema. Both tools are pinned in `.ci/run`; a missing one fails the test.

mod common;

use std::process::Output;

use common::{App, As};
use oscied_e2e::tools;
use reqwest::StatusCode;

const ADA: (&str, &str) = ("ada@example.com", "analytical-engine");

fn report(what: &str, output: &Output) -> String {
    format!(
        "{what} exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let validator = tools::SPEC_VALIDATOR.path();
    let app = App::start().await;
    let (status, doc) = app.get("/openapi.json", As::Nobody).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let file = app.dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let output = tokio::process::Command::new(&validator)
        .arg("--schema")
        .arg("3.1.0")
        .arg(&file)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", validator.display()));
    assert!(output.status.success(), "{}", report("openapi-spec-validator", &output));
}

/// Semantic rules a JSON Schema cannot state, answered 422 to input the schema allows; the
/// run accepts 422 there as a valid input's answer (and nowhere else).
const CONFIG: &str = r#"
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]

# uri: the file must exist under uploads/; a multipart file must be readable media.
[[operations]]
include-operation-id = "create_media"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

# encoder_string: the ffmpeg allow list (GET /transform/encoders).
[[operations]]
include-operation-id = ["create_profile", "patch_profile"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

# filename: the container extension an ffmpeg profile needs; queue: not reserved to the
# other kind nor consumed by its units.
[[operations]]
include-operation-id = ["create_transform_task", "create_publisher_task"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

# queues: not reserved to the other kind; complete: the output a SUCCESS must carry.
[[operations]]
include-operation-id = ["heartbeat", "complete"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure() {
    let schemathesis = tools::SCHEMATHESIS.path();
    // Its ignored_auth check sends wrong credentials on purpose: keep those from locking the
    // user out for the rest of the run (the limits have their own tests).
    let app = App::start_with(|config| {
        config.login_account_burst = 1_000_000;
        config.login_address_burst = 1_000_000;
    })
    .await;
    app.user(ADA.0, ADA.1, false).await;
    let config = app.dir.path().join("schemathesis.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let reports = app.dir.path().join("schemathesis-report");
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .arg("run")
        .arg(format!("{}/openapi.json", app.base))
        .args(["--checks", "all"])
        .arg("--auth")
        .arg(format!("{}:{}", ADA.0, ADA.1))
        // Bounded: every operation gets examples in each phase, the run ends within minutes.
        .args(["--max-examples", "25", "--seed", "10", "--workers", "2"])
        .args(["--max-time", "150", "--request-timeout", "20"])
        .args(["--generation-database", "none"])
        .arg("--report-dir")
        .arg(&reports)
        .current_dir(app.dir.path())
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", schemathesis.display()));
    let text = report("schemathesis", &output);
    assert!(output.status.success(), "{text}");
    // It exits 0 only without failures; say so in the log as well, with the time it took.
    eprintln!("schemathesis passed in {:?}", started.elapsed());
}
