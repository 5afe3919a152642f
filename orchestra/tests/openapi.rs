//! The OpenAPI document held against the server: `openapi-spec-validator` checks the
//! document, and a bounded schemathesis run (`--checks all` but `use_after_free`, see below) against a standalone orchestra,
//! authenticated as a user, finds no server error, no undocumented status and no answer
//! outside its schema. Both tools are pinned in `.ci/run`; a missing one fails the test.

mod common;

use std::process::Output;

use common::{App, As};
use oscied_e2e::tools;
use reqwest::StatusCode;

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
    assert!(
        output.status.success(),
        "{}",
        report("openapi-spec-validator", &output)
    );
}

/// Where a valid input's answer may be a 4xx other than the defaults (401, 403, 404, 409,
/// 429): rules a JSON Schema cannot state (422 on the operations named), a route that needs a
/// bearer token (400 with Basic), and a schemathesis quirk in the stateful phase. Each says
/// why; every other check stays as `--checks all` has it.
const CONFIG: &str = r#"
# Stateful links carry a response's values into requests, and schemathesis sends a null (a
# built-in profile's user_id) as the text `None`, which a uuid parameter refuses (422).
[phases.stateful.checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

# Revoking "the token this request is made with" needs one: 400 with Basic credentials.
[[operations]]
include-operation-id = "revoke_token"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "429"]

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

# url: a public address (not loopback, private...) the name resolves to now; events: known
# types; an account's count of webhooks.
[[operations]]
include-operation-id = ["create_webhook", "patch_webhook"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

# queues: not reserved to the other kind; complete: the output a SUCCESS must carry.
[[operations]]
include-operation-id = ["heartbeat", "complete"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"#;

/// Users the run authenticates as: ada for every operation but those that would change or
/// delete her (and lock her out for the rest of the run), which a second run drives as bob.
const ADA: &str = "ada@example.com:analytical-engine";
const BOB: &str = "bob@example.com:bobs-secret";
const SELF_CHANGING: [&str; 2] = ["patch_user", "delete_user"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure() {
    let schemathesis = tools::SCHEMATHESIS.path();
    // Its ignored_auth check sends wrong credentials on purpose: keep those from locking the
    // users out for the rest of the run (the limits have their own tests).
    let app = App::start_with(|config| {
        config.login_account_burst = 1_000_000;
        config.login_address_burst = 1_000_000;
    })
    .await;
    let mut ids = vec![];
    for user in [ADA, BOB] {
        let (mail, secret) = user.split_once(':').unwrap();
        ids.push(app.user(mail, secret, false).await);
    }
    let ada_config = app.dir.path().join("ada.toml");
    std::fs::write(&ada_config, CONFIG).unwrap();
    // Bob's run changes and deletes bob himself (nothing links to his id there).
    let bob_config = app.dir.path().join("bob.toml");
    let pinned = format!(
        "\n[[operations]]\ninclude-operation-id = {SELF_CHANGING:?}\nparameters = {{ id = {:?} }}\n",
        ids[1]
    );
    std::fs::write(&bob_config, format!("{CONFIG}{pinned}")).unwrap();
    let started = std::time::Instant::now();
    let mut ada = vec!["--auth", ADA, "--max-time", "110"];
    let mut bob = vec!["--auth", BOB, "--max-time", "25"];
    for id in SELF_CHANGING {
        ada.extend(["--exclude-operation-id", id]);
        bob.extend(["--include-operation-id", id]);
    }
    // An event stream never ends on its own: every call of it would only time out. Its
    // answers (the stream, each refusal) are tested in tests/tests/events.rs.
    ada.extend(["--exclude-operation-id", "stream_events"]);
    for (who, config, args) in [("ada", ada_config, ada), ("bob", bob_config, bob)] {
        let output = tokio::process::Command::new(&schemathesis)
            .arg("--config-file")
            .arg(&config)
            .arg("--no-color")
            .arg("run")
            .arg(format!("{}/openapi.json", app.base))
            .args(["--checks", "all"])
            // `use_after_free` expects a DELETEd resource to 404, but here DELETE is a status
            // change whose record stays readable by design: a task is revoked (REVOKED, its
            // history kept), a media becomes DELETED (lineage through `parent_id` kept).
            .args(["--exclude-checks", "use_after_free"])
            .args(&args)
            // Bounded: every operation gets examples in each phase, and each run ends at its
            // --max-time. One worker: hypothesis' lambda descriptions are not thread-safe.
            .args(["--max-examples", "25", "--seed", "10", "--workers", "1"])
            .args(["--request-timeout", "20", "--generation-database", "none"])
            .current_dir(app.dir.path())
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", schemathesis.display()));
        // It exits 0 only without a failure or an error.
        assert!(
            output.status.success(),
            "{}",
            report(&format!("schemathesis as {who}"), &output)
        );
    }
    eprintln!("schemathesis passed in {:?}", started.elapsed());
}

/// What schemathesis found the server and the document disagreed on: lengths are counted in
/// characters as sent (maxLength's way), and a skip past int64 is refused, not answered.
#[tokio::test]
async fn the_server_enforces_the_documented_bounds() {
    let app = App::start().await;
    let (status, _) = app.get("/medias?skip=9223372036854775807", As::Root).await;
    assert_eq!(status, StatusCode::OK);
    let answer = app.get("/medias?skip=9223372036854775808", As::Root).await;
    common::assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "skip",
    );

    // 200 two-byte characters: 400 bytes, within the documented 200 characters.
    let title = "é".repeat(200);
    let (status, body) = app
        .post(
            "/transform/profiles",
            As::Root,
            serde_json::json!({"title": title, "encoder_name": "copy", "description": "ü".repeat(4000)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for too_long in [format!("{title}x"), format!(" {title}")] {
        let answer = app
            .post(
                "/transform/profiles",
                As::Root,
                serde_json::json!({"title": too_long, "encoder_name": "copy"}),
            )
            .await;
        common::assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "title",
        );
    }
    let (status, body) = app
        .post(
            "/users",
            As::Root,
            serde_json::json!({"first_name": "ß".repeat(100), "last_name": "L", "mail": "u@example.com", "secret": "ü".repeat(1024)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
