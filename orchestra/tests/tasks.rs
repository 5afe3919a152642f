//! The transform task API and the node protocol over real HTTP. Tasks go to a queue no unit
//! consumes (`nobody`), and the test plays the unit through the node API, so each step of
//! docs/architecture.md §5 (claim, progress, lease, completion fencing) is checked on its own.
//! The end-to-end runs with real units are in `tests/tests/transform*.rs`.

mod common;

use std::time::Duration;

use common::{App, As, ROOT_SECRET, assert_error, clip};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MAIL: &str = "eve@example.com";
const SECRET: &str = "eve-secret-123";
const EVE: As = As::User(MAIL, SECRET);

struct Fixture {
    app: App,
    media: String,
    profile: String,
    node_secret: String,
}

async fn fixture(lease_secs: u64) -> Fixture {
    let app = App::start_with(|c| {
        c.task_lease_secs = lease_secs;
        c.task_max_attempts = 2;
    })
    .await;
    app.user(MAIL, SECRET, false).await;
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 2, 320, 240);
    let (status, media) = app.upload(EVE, &input, "in.mp4", "input").await;
    assert_eq!(status, StatusCode::CREATED, "{media}");
    let (_, profiles) = app.get("/transform/profiles?q=force%20720p", EVE).await;
    let node_secret = app.running.state.secrets.node.clone();
    Fixture {
        media: media["id"].as_str().unwrap().to_owned(),
        profile: profiles["items"][0]["id"].as_str().unwrap().to_owned(),
        app,
        node_secret,
    }
}

impl Fixture {
    async fn launch(&self, queue: &str) -> Value {
        let (status, task) = self
            .app
            .post(
                "/transform/tasks",
                EVE,
                json!({"media_in_id": self.media, "profile_id": self.profile, "filename": "out.mp4",
                    "metadata": {"title": "output"}, "queue": queue}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        task
    }

    async fn node(&self, path: String, body: Value) -> (StatusCode, Value) {
        common::read(
            self.app
                .client
                .request(Method::POST, format!("{}/node{path}", self.app.base))
                .basic_auth("node", Some(&self.node_secret))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn task(&self, id: &str) -> Value {
        let (status, task) = self.app.get(&format!("/transform/tasks/{id}"), EVE).await;
        assert_eq!(status, StatusCode::OK, "{task}");
        task
    }

    async fn media(&self, id: &str) -> Value {
        self.app.get(&format!("/medias/{id}"), EVE).await.1
    }

    /// Write what a unit would have produced for `attempt`, and its probe.
    async fn produce(&self, task: &Value, attempt: u32) -> Value {
        let id = task["id"].as_str().unwrap();
        let dir = self.app.storage().join(format!("tmp/{id}/{attempt}"));
        std::fs::create_dir_all(&dir).unwrap();
        let out = clip(&dir, "out.mp4", 2, 1280, 720);
        let probe = oscied_protocol::probe::probe(&out, oscied_protocol::sandbox::SandboxMode::On)
            .await
            .unwrap();
        json!({"size": std::fs::metadata(&out).unwrap().len(), "probe": probe})
    }
}

/// Output filenames are built from a reviewed character set (oscied_protocol::filename): each
/// character ffmpeg or a shell gives meaning to is a 422 that names it, and nothing is created.
#[tokio::test]
async fn task_filenames_refuse_what_ffmpeg_would_read() {
    let f = fixture(30).await;
    let app = &f.app;
    let launch = |filename: String| {
        app.post(
            "/transform/tasks",
            EVE,
            json!({"media_in_id": f.media, "profile_id": f.profile, "filename": filename,
                "metadata": {"title": "t"}, "queue": "nobody"}),
        )
    };
    // The attack of issue 9: with `-f tee`, this sent the output to any host.
    assert_error(
        &launch("a.wav|[f=s16le]tcp:127.0.0.1:9".into()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "the character '|' is not allowed",
    );
    for (c, named) in [
        (':', "':'"),
        ('|', "'|'"),
        ('[', "'['"),
        (']', "']'"),
        ('%', "'%'"),
        ('/', "'/'"),
        ('\\', "'\\'"),
        ('\0', "U+0000"),
        ('\n', "U+000A"),
        ('\u{1b}', "U+001B"),
        ('\u{202e}', "U+202E"),
        ('$', "'$'"),
        ('`', "'`'"),
        (';', "';'"),
        ('*', "'*'"),
        ('\'', "'\''"),
        ('"', "'\"'"),
    ] {
        assert_error(
            &launch(format!("out{c}1.mp4")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            &format!("the character {named} is not allowed"),
        );
    }
    for (filename, why) in [
        ("-y.mp4".to_owned(), "must start with a letter or a digit"),
        (
            ".hidden.mp4".to_owned(),
            "must start with a letter or a digit",
        ),
        ("..".to_owned(), "must start with a letter or a digit"),
        ("".to_owned(), "must not be empty"),
        (format!("{}.mp4", "a".repeat(252)), "at most 255 bytes"),
        ("out.exe".to_owned(), "not a known output container"),
        ("out".to_owned(), "needs an extension"),
    ] {
        assert_error(
            &launch(filename).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            why,
        );
    }
    let (_, tasks) = app.get("/transform/tasks", EVE).await;
    assert_eq!(tasks["total"], 0, "nothing was created: {tasks}");
    let (_, medias) = app.get("/medias", EVE).await;
    assert_eq!(medias["total"], 1, "only the input: {medias}");
    // Letters of any script, digits, spaces, '.', '_' and '-' pass; so does the longest name.
    for filename in [
        "Émission été_v2 - 720p.MP4".to_owned(),
        format!("{}.mp4", "a".repeat(251)),
    ] {
        let (status, task) = launch(filename.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");
        let output = f.media(task["media_out_id"].as_str().unwrap()).await;
        assert_eq!(output["filename"], filename.as_str());
    }
}

/// A transform task goes to a transform queue only: `transform`, `transform-…`, or a named
/// queue no publisher unit consumes; `unit@…` is never a client's. Units are held to the same.
#[tokio::test]
async fn transform_tasks_go_to_transform_queues_only() {
    let f = fixture(30).await;
    let app = &f.app;
    let launch = |queue: &str| {
        app.post(
            "/transform/tasks",
            EVE,
            json!({"media_in_id": f.media, "profile_id": f.profile, "filename": "o.mp4",
                "metadata": {"title": "t"}, "queue": queue}),
        )
    };
    let beat = |unit: &str, kind: &str, queues: Value| {
        app.client
            .put(format!("{}/node/units/{unit}", app.base))
            .basic_auth("node", Some(&f.node_secret))
            .json(
                &json!({"kind": kind, "queues": queues, "hostname": "h", "version": "test",
                "ffmpeg_version": null, "concurrency": 1, "running_tasks": [],
                "heartbeat_secs": 1}),
            )
            .send()
    };
    for (queue, why) in [
        (
            "publisher",
            "\"publisher\" is a publisher queue; transform work goes to transform queues",
        ),
        ("publisher-eu", "\"publisher-eu\" is a publisher queue"),
        ("unit@standalone-publisher", "a unit's own queue"),
        ("amq.direct", "reserved by AMQP"),
    ] {
        assert_error(
            &launch(queue).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            why,
        );
    }
    // A named queue belongs to the kind of the units that consume it.
    let answer = common::read(
        beat("far-publisher", "publisher", json!(["far"]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    assert_error(
        &launch("far").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "\"far\" is consumed by publisher units (far-publisher): a transform task there would never run",
    );
    // A unit may not declare the other kind's queues either.
    assert_error(
        &common::read(
            beat("t-1", "transform", json!(["transform", "publisher"]))
                .await
                .unwrap(),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "a transform unit cannot consume queue \"publisher\"",
    );
    let (_, tasks) = app.get("/transform/tasks", EVE).await;
    assert_eq!(tasks["total"], 0, "nothing was created: {tasks}");
    for queue in ["transform-gpu", "gpu", "nobody"] {
        let task = f.launch(queue).await;
        assert_eq!(task["queue"], queue);
    }
}

#[tokio::test]
async fn creating_a_task_checks_its_input() {
    let f = fixture(30).await;
    let app = &f.app;
    let post = |body: Value| app.post("/transform/tasks", EVE, body);
    let base = json!({"media_in_id": f.media, "profile_id": f.profile, "filename": "o.mp4", "metadata": {"title": "t"}});
    let with = |key: &str, value: Value| {
        let mut body = base.clone();
        body[key] = value;
        body
    };
    let missing = "00000000-0000-4000-8000-000000000000";
    assert_error(
        &post(with("media_in_id", json!(missing))).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "media",
    );
    assert_error(
        &post(with("profile_id", json!(missing))).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "profile",
    );
    assert_error(
        &post(with("filename", json!("../x.mp4"))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "filename",
    );
    assert_error(
        &post(with("filename", json!("noextension"))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "extension",
    );
    assert_error(
        &post(with("metadata", json!({}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "title",
    );
    assert_error(
        &post(with("queue", json!("a b"))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "queue",
    );
    assert_error(
        &post(with("priority", json!(10))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "priority",
    );
    assert_error(
        &post(with("extra", json!(1))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "extra",
    );

    // Another user's media is not found; root owns nothing.
    app.user("mallory@example.com", "mallory-secret", false)
        .await;
    let mallory = As::User("mallory@example.com", "mallory-secret");
    assert_error(
        &app.post("/transform/tasks", mallory, base.clone()).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "media",
    );
    assert_error(
        &app.post("/transform/tasks", As::Root, base.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "root",
    );

    // The output of a running task is PENDING: it cannot be transformed yet.
    let task = f.launch("nobody").await;
    let out = task["media_out_id"].as_str().unwrap();
    assert_error(
        &post(with("media_in_id", json!(out))).await,
        StatusCode::CONFLICT,
        "illegal_state",
        "READY",
    );
    let media = f.media(out).await;
    assert_eq!(media["status"], "PENDING");
    assert_eq!(media["parent_id"], json!(f.media));
    assert_eq!(media["metadata"]["title"], "output");

    // Mallory sees none of Eve's tasks.
    let (status, _) = app
        .get(
            &format!("/transform/tasks/{}", task["id"].as_str().unwrap()),
            mallory,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, page) = app.get("/transform/tasks", mallory).await;
    assert_eq!(page["total"], 0);
}

#[tokio::test]
async fn lists_filter_by_status_media_and_queue() {
    let f = fixture(30).await;
    let a = f.launch("nobody").await;
    let b = f.launch("elsewhere").await;
    let (status, revoked) = f
        .app
        .delete(
            &format!("/transform/tasks/{}", b["id"].as_str().unwrap()),
            EVE,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    let app = &f.app;
    let list = move |q: String| {
        let path = format!("/transform/tasks?{q}");
        async move { app.get(&path, EVE).await }
    };
    let (_, all) = list(String::new()).await;
    assert_eq!(all["total"], 2);
    let (_, pending) = list("status=PENDING".into()).await;
    assert_eq!(pending["total"], 1);
    assert_eq!(pending["items"][0]["id"], a["id"]);
    let (_, queue) = list("queue=elsewhere".into()).await;
    assert_eq!(queue["items"][0]["id"], b["id"]);
    let (_, by_media) = list(format!("media_id={}", a["media_out_id"].as_str().unwrap())).await;
    assert_eq!(by_media["total"], 1);
    let (_, by_input) = list(format!("media_id={}&sort=-created_at", f.media)).await;
    assert_eq!(by_input["total"], 2);
    assert_eq!(by_input["items"][0]["id"], b["id"]);
    assert_error(
        &list("status=DONE".into()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "status",
    );
    assert_error(
        &list("sort=unit".into()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "sort",
    );

    let (status, queues) = f.app.get("/transform/queues", EVE).await;
    assert_eq!(status, StatusCode::OK);
    let nobody = queues["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "nobody")
        .unwrap();
    assert_eq!(nobody["pending"], 1);
    assert_eq!(
        nobody["messages"], 1,
        "the message waits on the broker: {queues}"
    );
    let transform = queues["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "transform")
        .unwrap();
    assert_eq!(transform["units"], json!(["standalone-transform"]));
}

#[tokio::test]
async fn node_routes_take_the_node_secret_only() {
    let f = fixture(30).await;
    let task = f.launch("nobody").await;
    let path = format!(
        "{}/node/transform/tasks/{}/claim",
        f.app.base,
        task["id"].as_str().unwrap()
    );
    let body = json!({"unit_id": "u1", "attempt": 1});
    let send = |user: &'static str, secret: String| {
        let request = f
            .app
            .client
            .post(&path)
            .basic_auth(user, Some(secret))
            .json(&body);
        async move { common::read(request.send().await.unwrap()).await }
    };
    assert_error(
        &send("node", "wrong".into()).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "credentials",
    );
    assert_error(
        &send("root", ROOT_SECRET.into()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "node",
    );
    assert_error(
        &send(MAIL, SECRET.into()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "node",
    );
    // And the node secret opens no user route.
    let (status, _) = f.app.get("/medias", As::User("node", &f.node_secret)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send("node", f.node_secret.clone()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_unit_claims_reports_and_completes_once() {
    let f = fixture(30).await;
    let task = f.launch("nobody").await;
    let id = task["id"].as_str().unwrap();
    assert_eq!(task["status"], "PENDING");
    assert_eq!(task["attempt"], 1);
    assert!(
        task["dispatched_at"].is_string(),
        "queued on the broker: {task}"
    );

    // A claim for another attempt is stale; the right one starts the task, twice the same.
    let claim = |unit: &str, attempt: u32| {
        f.node(
            format!("/transform/tasks/{id}/claim"),
            json!({"unit_id": unit, "attempt": attempt}),
        )
    };
    assert_error(
        &claim("u1", 2).await,
        StatusCode::CONFLICT,
        "stale_attempt",
        "attempt",
    );
    let (status, answer) = claim("u1", 1).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["lease_secs"], 30);
    assert_eq!(
        claim("u1", 1).await.0,
        StatusCode::OK,
        "a redelivery to the same unit"
    );
    assert_error(
        &claim("u2", 1).await,
        StatusCode::CONFLICT,
        "stale_attempt",
        "u2",
    );
    let started = f.task(id).await;
    assert_eq!(started["status"], "STARTED");
    assert_eq!(started["unit_id"], "u1");
    assert!(started["started_at"].is_string() && started["lease_expires_at"].is_string());

    // Progress moves the task and is visible to its owner.
    let report = json!({"unit_id": "u1", "attempt": 1, "progress": {"percent": 42.5, "frame": 50, "fps": 25.0, "speed": 1.0, "out_time": 0.85, "elapsed": 1.0, "eta": 1.2}});
    let (status, answer) = f
        .node(format!("/transform/tasks/{id}/progress"), report.clone())
        .await;
    assert_eq!(
        (status, answer["cancel"].clone()),
        (StatusCode::OK, json!(false))
    );
    let running = f.task(id).await;
    assert_eq!(running["status"], "PROGRESS");
    assert_eq!(running["progress"]["percent"], 42.5);
    assert_eq!(running["progress"]["eta"], 1.2);
    assert!(running["progress"]["updated_at"].is_string());
    let mut other = report.clone();
    other["unit_id"] = json!("u2");
    assert_error(
        &f.node(format!("/transform/tasks/{id}/progress"), other)
            .await,
        StatusCode::CONFLICT,
        "stale_attempt",
        "u2",
    );

    // The input is in use; so is the output.
    let (status, body) = f.app.delete(&format!("/medias/{}", f.media), EVE).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(id),
        "names the task: {body}"
    );

    // Completion: fenced by attempt and unit, then idempotent.
    let output = f.produce(&task, 1).await;
    let complete = |unit: &str, attempt: u32| {
        f.node(format!("/transform/tasks/{id}/complete"), json!({"unit_id": unit, "attempt": attempt, "status": "SUCCESS", "error": null, "output": output}))
    };
    assert_error(
        &complete("u1", 2).await,
        StatusCode::CONFLICT,
        "stale_attempt",
        "attempt",
    );
    assert_error(
        &complete("u2", 1).await,
        StatusCode::CONFLICT,
        "stale_attempt",
        "u2",
    );
    for _ in 0..2 {
        let (status, answer) = complete("u1", 1).await;
        assert_eq!(
            (status, answer["status"].clone()),
            (StatusCode::OK, json!("SUCCESS")),
            "{answer}"
        );
    }
    let done = f.task(id).await;
    assert_eq!(done["status"], "SUCCESS");
    assert_eq!(done["progress"]["percent"], 100.0);
    assert!(done["finished_at"].is_string());
    let out = f.media(done["media_out_id"].as_str().unwrap()).await;
    assert_eq!(out["status"], "READY");
    assert_eq!(out["probe"]["streams"][0]["height"], 720);
    assert!(out["size"].as_u64().unwrap() > 0);
    let stored = f.app.storage().join(out["uri"].as_str().unwrap());
    assert!(stored.is_file(), "moved into medias/<id>/");
    assert!(
        !f.app.storage().join(format!("tmp/{id}")).exists(),
        "tmp cleaned"
    );

    // A finished task is not revoked, nor progressed.
    assert_error(
        &f.app.delete(&format!("/transform/tasks/{id}"), EVE).await,
        StatusCode::CONFLICT,
        "illegal_state",
        "SUCCESS",
    );
    assert_error(
        &f.node(format!("/transform/tasks/{id}/progress"), report)
            .await,
        StatusCode::CONFLICT,
        "stale_attempt",
        "SUCCESS",
    );
    // The input is free again.
    assert_eq!(
        f.app.delete(&format!("/medias/{}", f.media), EVE).await.0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn revoking_a_running_task_waits_for_its_unit() {
    let f = fixture(30).await;
    let task = f.launch("nobody").await;
    let id = task["id"].as_str().unwrap();
    f.node(
        format!("/transform/tasks/{id}/claim"),
        json!({"unit_id": "u1", "attempt": 1}),
    )
    .await;
    f.produce(&task, 1).await;

    let (status, revoking) = f.app.delete(&format!("/transform/tasks/{id}"), EVE).await;
    assert_eq!(
        (status, revoking["status"].clone()),
        (StatusCode::ACCEPTED, json!("REVOKING"))
    );
    let (status, again) = f.app.delete(&format!("/transform/tasks/{id}"), EVE).await;
    assert_eq!(
        (status, again["status"].clone()),
        (StatusCode::ACCEPTED, json!("REVOKING"))
    );
    let (_, answer) = f
        .node(
            format!("/transform/tasks/{id}/progress"),
            json!({"unit_id": "u1", "attempt": 1, "progress": null}),
        )
        .await;
    assert_eq!(answer["cancel"], true, "the unit is told to stop");
    // Even a SUCCESS arriving now ends REVOKED, with the output discarded.
    let (status, answer) = f
        .node(format!("/transform/tasks/{id}/complete"), json!({"unit_id": "u1", "attempt": 1, "status": "REVOKED", "error": null, "output": null}))
        .await;
    assert_eq!(
        (status, answer["status"].clone()),
        (StatusCode::OK, json!("REVOKED"))
    );
    let out = f.media(task["media_out_id"].as_str().unwrap()).await;
    assert_eq!(out["status"], "DELETED");
    assert!(!f.app.storage().join(format!("tmp/{id}")).exists());
    assert!(
        !f.app
            .storage()
            .join(format!("medias/{}", out["id"].as_str().unwrap()))
            .exists()
    );

    // A queued task is revoked at once.
    let queued = f.launch("nobody").await;
    let (status, revoked) = f
        .app
        .delete(
            &format!("/transform/tasks/{}", queued["id"].as_str().unwrap()),
            EVE,
        )
        .await;
    assert_eq!(
        (status, revoked["status"].clone()),
        (StatusCode::OK, json!("REVOKED"))
    );
    assert!(revoked["finished_at"].is_string());
    // Its message is still queued: the unit that takes it finds the claim stale.
    let (status, _) = f
        .node(
            format!("/transform/tasks/{}/claim", queued["id"].as_str().unwrap()),
            json!({"unit_id": "u1", "attempt": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_silent_unit_loses_the_task_to_the_next_attempt() {
    let f = fixture(2).await;
    let task = f.launch("nobody").await;
    let id = task["id"].as_str().unwrap();
    f.node(
        format!("/transform/tasks/{id}/claim"),
        json!({"unit_id": "u1", "attempt": 1}),
    )
    .await;
    f.produce(&task, 1).await;

    // u1 says nothing for the lease: the reaper queues attempt 2.
    let retried = wait_for(&f, id, |t| t["attempt"] == 2).await;
    assert_eq!(retried["status"], "RETRY");
    assert!(
        retried["error"].as_str().unwrap().contains("u1"),
        "{retried}"
    );
    // u1 wakes up: too late, its attempt is stale.
    let late = json!({"unit_id": "u1", "attempt": 1, "status": "SUCCESS", "error": null, "output": f.produce(&task, 1).await});
    assert_error(
        &f.node(format!("/transform/tasks/{id}/complete"), late)
            .await,
        StatusCode::CONFLICT,
        "stale_attempt",
        "attempt",
    );
    // u2 takes attempt 2 and goes silent too: past the last attempt, FAILURE.
    let (status, _) = f
        .node(
            format!("/transform/tasks/{id}/claim"),
            json!({"unit_id": "u2", "attempt": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let failed = wait_for(&f, id, |t| t["status"] == "FAILURE").await;
    assert!(failed["error"].as_str().unwrap().contains("u2"), "{failed}");
    let out = f.media(task["media_out_id"].as_str().unwrap()).await;
    assert_eq!(out["status"], "DELETED");
    assert!(
        !f.app.storage().join(format!("tmp/{id}")).exists(),
        "no orphan files"
    );
}

/// A stopping unit hands its attempt back: RETRY with attempt + 1 at once (the lease is long),
/// queued again, and not counted against the attempt budget (2 here): after two hand-backs a
/// lost lease still retries. Only the current holder's attempt can be handed back.
#[tokio::test]
async fn a_stopping_unit_hands_its_attempt_back() {
    let f = fixture(2).await;
    let task = f.launch("nobody").await;
    let id = task["id"].as_str().unwrap();
    let release = |attempt: u32, unit: &str| {
        (
            format!("/transform/tasks/{id}/release"),
            json!({"unit_id": unit, "attempt": attempt, "reason": "shutdown"}),
        )
    };
    for attempt in 1..=2u32 {
        let (status, _) = f
            .node(
                format!("/transform/tasks/{id}/claim"),
                json!({"unit_id": "u1", "attempt": attempt}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // Another unit, or the wrong attempt: stale.
        for (path, body) in [release(attempt, "u2"), release(attempt + 1, "u1")] {
            assert_error(
                &f.node(path, body).await,
                StatusCode::CONFLICT,
                "stale_attempt",
                "does not hold",
            );
        }
        let (path, body) = release(attempt, "u1");
        let (status, answer) = f.node(path.clone(), body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer, json!({"status": "RETRY", "attempt": attempt + 1}));
        let now = f.task(id).await;
        assert_eq!(now["status"], "RETRY", "{now}");
        assert_eq!(now["attempt"], attempt + 1, "{now}");
        assert_eq!(now["handed_back"], attempt, "{now}");
        assert!(now["lease_expires_at"].is_null(), "{now}");
        assert!(
            now["dispatched_at"].is_string(),
            "queued again at once: {now}"
        );
        assert!(
            now["error"]
                .as_str()
                .unwrap_or_default()
                .contains("handed back by unit u1 at shutdown"),
            "{now}"
        );
        // A repeat (its answer lost) is stale: the attempt is not current any more.
        assert_error(
            &f.node(path, body).await,
            StatusCode::CONFLICT,
            "stale_attempt",
            "attempt",
        );
    }
    // Attempt 3 loses its lease: 1 of 2 attempts used, so it is retried, not failed.
    let (status, _) = f
        .node(
            format!("/transform/tasks/{id}/claim"),
            json!({"unit_id": "u1", "attempt": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let retried = wait_for(&f, id, |t| t["attempt"] == 4).await;
    assert_eq!(retried["status"], "RETRY", "{retried}");
    // A queued task has nothing to hand back.
    let (path, body) = release(4, "u1");
    assert_error(
        &f.node(path, body).await,
        StatusCode::CONFLICT,
        "stale_attempt",
        "nothing to hand back",
    );

    // A task being revoked that is handed back ends REVOKED, its output DELETED.
    let revoked = f.launch("nobody").await;
    let rid = revoked["id"].as_str().unwrap();
    f.node(
        format!("/transform/tasks/{rid}/claim"),
        json!({"unit_id": "u1", "attempt": 1}),
    )
    .await;
    let (status, _) = f.app.delete(&format!("/transform/tasks/{rid}"), EVE).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, answer) = f
        .node(
            format!("/transform/tasks/{rid}/release"),
            json!({"unit_id": "u1", "attempt": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"status": "REVOKED", "attempt": 1}));
    let out = f.media(revoked["media_out_id"].as_str().unwrap()).await;
    assert_eq!(out["status"], "DELETED", "{out}");
    // Finished: stale too; a bad body is a 422, an unknown kind a 404.
    assert_error(
        &f.node(
            format!("/transform/tasks/{rid}/release"),
            json!({"unit_id": "u1", "attempt": 1}),
        )
        .await,
        StatusCode::CONFLICT,
        "stale_attempt",
        "nothing to hand back",
    );
    let (status, _) = f
        .node(
            format!("/transform/tasks/{rid}/release"),
            json!({"attempt": "one"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = f
        .node(
            format!("/encoder/tasks/{rid}/release"),
            json!({"unit_id": "u1", "attempt": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn wait_for(f: &Fixture, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let task = f.task(id).await;
        if done(&task) {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("task {id} never got there: {}", f.task(id).await);
}

/// Jobs a unit cannot run, put on the in-process broker as a misrouting or a bug would: the
/// standalone units fail their tasks through the node API (claim, then FAILURE with why)
/// instead of dropping the message and leaving the task PENDING forever.
#[tokio::test]
async fn jobs_a_unit_cannot_decode_end_their_task_failure() {
    use oscied_protocol::{PublishAction, PublishJob, TransformJob};
    let f = fixture(30).await;
    let app = &f.app;
    let broker = app.running.state.broker.clone();
    let wait_failure = |path: String| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, task) = app.get(&path, EVE).await;
            if task["status"] == "FAILURE" || std::time::Instant::now() > deadline {
                assert_eq!(task["status"], "FAILURE", "{task}");
                return task;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    // A transform job on the publisher's queue.
    let task = f.launch("nobody").await;
    let id: uuid::Uuid = task["id"].as_str().unwrap().parse().unwrap();
    let job = TransformJob {
        task_id: id,
        attempt: 1,
        media_in_uri: "medias/x/in.mp4".into(),
        media_in_duration: Some(2.0),
        media_out_id: task["media_out_id"].as_str().unwrap().parse().unwrap(),
        filename: "out.mp4".into(),
        profile_title: "Force 720p".into(),
        encoder_name: oscied_protocol::EncoderName::Copy,
        encoder_string: String::new(),
    };
    let payload = serde_json::to_vec(&job).unwrap();
    broker.publish("publisher", &payload, 0).await.unwrap();
    let failed = wait_failure(format!("/transform/tasks/{id}")).await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(
            "a transform job reached a publisher unit (unit standalone-publisher, queue publisher)"
        ),
        "{error}"
    );
    assert_eq!(failed["unit_id"], "standalone-publisher");
    let output = f.media(task["media_out_id"].as_str().unwrap()).await;
    assert_eq!(output["status"], "DELETED", "{output}");

    // A publish job on the transform queue.
    let (status, publication) = app
        .post(
            "/publisher/tasks",
            EVE,
            json!({"media_id": f.media, "queue": "elsewhere"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{publication}");
    let pid: uuid::Uuid = publication["id"].as_str().unwrap().parse().unwrap();
    let job = PublishJob {
        task_id: pid,
        attempt: 1,
        action: PublishAction::Publish,
        media_id: f.media.parse().unwrap(),
        media_uri: "medias/x/in.mp4".into(),
    };
    let payload = serde_json::to_vec(&job).unwrap();
    broker.publish("transform", &payload, 0).await.unwrap();
    let failed = wait_failure(format!("/publisher/tasks/{pid}")).await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(
            "a publish job reached a transform unit (unit standalone-transform, queue transform)"
        ),
        "{error}"
    );

    // A malformed transform job on the transform queue.
    let task = f.launch("nobody").await;
    let id = task["id"].as_str().unwrap();
    let payload = json!({"task_id": id, "attempt": 1, "encoder_name": "bogus"}).to_string();
    broker
        .publish("transform", payload.as_bytes(), 0)
        .await
        .unwrap();
    let failed = wait_failure(format!("/transform/tasks/{id}")).await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("the job message could not be decoded: ") && error.contains("bogus"),
        "{error}"
    );

    // Messages that name no task are acked and logged; the unit goes on working.
    for garbage in [
        &b"not json"[..],
        &br#"{"attempt": 1}"#[..],
        &br#"{"task_id": "x", "attempt": 1}"#[..],
    ] {
        broker.publish("transform", garbage, 0).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while broker.queue_stats("transform").await.unwrap().messages > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the garbage was never acked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let task = f.launch("transform").await;
    let id = task["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = f.task(id).await;
        if done["status"] == "SUCCESS" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{done}");
        assert_ne!(done["status"], "FAILURE", "{done}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Standalone mode's in-process unit holds a task to `OSCIED_TASK_MAX_SECS`: the task ends
/// FAILURE naming the limit, its ffmpeg is gone, and nothing is left under tmp/.
#[tokio::test]
async fn the_in_process_unit_stops_a_task_at_its_wall_clock_limit() {
    let app = App::start_with(|c| c.run.task_max_secs = Some(2)).await;
    app.user(MAIL, SECRET, false).await;
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "long.mp4", 20, 160, 120);
    let (status, media) = app.upload(EVE, &input, "long.mp4", "input").await;
    assert_eq!(status, StatusCode::CREATED, "{media}");
    // Paced at 1x by `realtime`: 20 s of work against a 2 s limit.
    let (status, profile) = app
        .post(
            "/transform/profiles",
            EVE,
            json!({"title": "slow", "description": "paced", "encoder_name": "ffmpeg",
                "encoder_string": "-vf realtime -c:v libx264 -preset ultrafast"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    let (status, task) = app
        .post(
            "/transform/tasks",
            EVE,
            json!({"media_in_id": media["id"], "profile_id": profile["id"],
                "filename": "out.mp4", "metadata": {"title": "output"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let mut task = Value::Null;
    for _ in 0..150 {
        let (_, now) = app.get(&format!("/transform/tasks/{id}"), EVE).await;
        task = now;
        if task["status"] == "FAILURE" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(task["status"], "FAILURE", "{task}");
    let error = task["error"].as_str().unwrap_or_default();
    assert!(error.contains("OSCIED_TASK_MAX_SECS=2"), "{error}");
    // No ffmpeg names this task's dir any more, and no file of it is left.
    let tmp = app.storage().join("tmp").join(&id);
    let needle = tmp.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(!text.contains(&needle), "still running: {text}");
        }
    }
    assert!(!tmp.join("1").exists(), "the task dir is left");
    let left: Vec<_> = app
        .stored_files()
        .into_iter()
        .filter(|f| f.starts_with(&tmp))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
