//! The publisher task API with standalone mode's in-process publisher: real HTTP, real files,
//! the unit's own web server. The cluster runs (RabbitMQ, `worker-publisher` processes) are
//! in `tests/tests/publish.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{App, As, assert_error, clip};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MAIL: &str = "pat@example.com";
const SECRET: &str = "pat-secret-123";
const PAT: As = As::User(MAIL, SECRET);

async fn wait_status(app: &App, id: &str, wanted: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, task) = app.get(&format!("/publisher/tasks/{id}"), PAT).await;
        assert_eq!(status, StatusCode::OK, "{task}");
        if task["status"] == wanted {
            return task;
        }
        assert!(
            Instant::now() < deadline,
            "publisher task never became {wanted}: {task}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn publish_serve_refuse_delete_unpublish() {
    let app = App::start().await;
    app.user(MAIL, SECRET, false).await;
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "talk.mp4", 2, 320, 240);
    let stored = std::fs::read(&input).unwrap();
    let (status, media) = app.upload(PAT, &input, "talk.mp4", "a talk").await;
    assert_eq!(status, StatusCode::CREATED, "{media}");
    let media_id = media["id"].as_str().unwrap().to_owned();

    let (status, task) = app
        .post("/publisher/tasks", PAT, json!({"media_id": media_id}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["media_id"], media_id);
    assert_eq!(task["queue"], "publisher");

    // Once is enough: publishing it again is a 409 that names the task.
    let again = app
        .post("/publisher/tasks", PAT, json!({"media_id": media_id}))
        .await;
    assert_error(&again, StatusCode::CONFLICT, "illegal_state", &id);

    let task = wait_status(&app, &id, "SUCCESS").await;
    let uri = task["publish_uri"]
        .as_str()
        .expect("publish_uri")
        .to_owned();
    assert!(
        uri.ends_with(&format!("/medias/{media_id}/talk.mp4")),
        "{uri}"
    );
    assert_eq!(task["unit_id"], "standalone-publisher");
    let (_, media) = app.get(&format!("/medias/{media_id}"), PAT).await;
    assert_eq!(media["public_uris"][&id], uri.as_str(), "{media}");

    // The bytes served are the bytes stored, with a player's content type, also by Range.
    let client = reqwest::Client::new();
    let full = client.get(&uri).send().await.unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(full.headers()["content-type"], "video/mp4");
    assert_eq!(full.bytes().await.unwrap().as_ref(), stored.as_slice());
    let part = client
        .get(&uri)
        .header("range", "bytes=100-1099")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &stored[100..1100]);

    // A published media cannot be deleted; the answer says which publication holds it.
    let refused = app.delete(&format!("/medias/{media_id}"), PAT).await;
    assert_error(&refused, StatusCode::CONFLICT, "conflict", &id);

    // Unpublish: REVOKING at once, REVOKED once the unit removed the files.
    let (status, task) = app.delete(&format!("/publisher/tasks/{id}"), PAT).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task}");
    assert_eq!(task["status"], "REVOKING");
    wait_status(&app, &id, "REVOKED").await;
    let gone = client.get(&uri).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let (_, media) = app.get(&format!("/medias/{media_id}"), PAT).await;
    assert_eq!(media["public_uris"], json!({}), "{media}");
    let twice = app.delete(&format!("/publisher/tasks/{id}"), PAT).await;
    assert_error(&twice, StatusCode::CONFLICT, "illegal_state", "REVOKED");

    // Free again: it can be published anew, and deleted once unpublished.
    let (status, task) = app
        .post("/publisher/tasks", PAT, json!({"media_id": media_id}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let second = task["id"].as_str().unwrap().to_owned();
    wait_status(&app, &second, "SUCCESS").await;
    app.delete(&format!("/publisher/tasks/{second}"), PAT).await;
    wait_status(&app, &second, "REVOKED").await;
    let (status, body) = app.delete(&format!("/medias/{media_id}"), PAT).await;
    assert!(status.is_success(), "{status} {body}");

    // Lists filter by media and status.
    let (_, list) = app
        .get(
            &format!("/publisher/tasks?media_id={media_id}&status=REVOKED"),
            PAT,
        )
        .await;
    assert_eq!(list["total"], 2, "{list}");
    let (_, queues) = app.get("/publisher/queues", PAT).await;
    let publisher = queues["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "publisher")
        .expect("the publisher queue is listed");
    assert_eq!(
        publisher["units"],
        json!(["standalone-publisher"]),
        "{queues}"
    );
}

#[tokio::test]
async fn bad_publications_are_refused_with_clear_errors() {
    let app = App::start().await;
    app.user(MAIL, SECRET, false).await;
    let unknown = app
        .post(
            "/publisher/tasks",
            PAT,
            json!({"media_id": "6f1c2d3e-4b5a-4c6d-8e7f-000000000000"}),
        )
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found", "media");
    let bad_queue = app
        .post(
            "/publisher/tasks",
            PAT,
            json!({"media_id": "6f1c2d3e-4b5a-4c6d-8e7f-000000000000", "queue": "a b"}),
        )
        .await;
    assert_error(
        &bad_queue,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "queue",
    );
    let (status, _) = app.get("/publisher/tasks/not-a-uuid", PAT).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, list) = app.get("/publisher/tasks?status=DONE", PAT).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{list}");
}

/// A call to the node API, as a unit makes it.
async fn node(app: &App, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
    common::read(
        app.client
            .request(method, format!("{}/node{path}", app.base))
            .basic_auth("node", Some(&app.running.state.secrets.node))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A publication goes to a publisher queue only: `publisher`, `publisher-…`, or a named queue
/// no transform unit consumes; `unit@…` is the orchestra's to send to.
#[tokio::test]
async fn publications_go_to_publisher_queues_only() {
    let app = App::start().await;
    app.user(MAIL, SECRET, false).await;
    let publish = |queue: &str| {
        app.post(
            "/publisher/tasks",
            PAT,
            json!({"media_id": "6f1c2d3e-4b5a-4c6d-8e7f-000000000000", "queue": queue}),
        )
    };
    let beat = json!({"kind": "transform", "queues": ["gpu"], "hostname": "gpu", "version": "test",
        "ffmpeg_version": null, "concurrency": 1, "running_tasks": [], "heartbeat_secs": 1});
    let (status, body) = node(&app, reqwest::Method::PUT, "/units/gpu-1", beat).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (queue, why) in [
        (
            "transform",
            "\"transform\" is a transform queue; publisher work goes to publisher queues",
        ),
        ("transform.gpu", "\"transform.gpu\" is a transform queue"),
        ("unit@standalone-publisher", "a unit's own queue"),
        (
            "gpu",
            "\"gpu\" is consumed by transform units (gpu-1): a publisher task there would never run",
        ),
    ] {
        assert_error(
            &publish(queue).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            why,
        );
    }
    let beat = json!({"kind": "publisher", "queues": ["cdn", "transform-x"], "hostname": "cdn",
        "version": "test", "ffmpeg_version": null, "concurrency": 1, "running_tasks": [],
        "heartbeat_secs": 1});
    assert_error(
        &node(&app, reqwest::Method::PUT, "/units/cdn-1", beat).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "a publisher unit cannot consume queue \"transform-x\"",
    );
    // A named queue of nobody's, or of publishers', is fine (the media is what is missing).
    for queue in ["cdn", "publisher-eu"] {
        assert_error(
            &publish(queue).await,
            StatusCode::NOT_FOUND,
            "not_found",
            "media",
        );
    }
}

#[tokio::test]
async fn an_unpublish_waits_for_a_gone_unit_until_an_admin_forgets_it() {
    let app = App::start().await;
    app.user(MAIL, SECRET, false).await;
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "talk.mp4", 1, 160, 120);
    let (_, media) = app.upload(PAT, &input, "talk.mp4", "a talk").await;
    let media_id = media["id"].as_str().unwrap().to_owned();

    // A publisher of its own queue (the in-process one does not consume it), played here.
    let unit = "far-publisher";
    let beat = json!({"kind": "publisher", "queues": ["far"], "hostname": "far", "version": "test",
        "ffmpeg_version": null, "concurrency": 1, "running_tasks": [], "heartbeat_secs": 1});
    let (status, body) = node(&app, reqwest::Method::PUT, &format!("/units/{unit}"), beat).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, task) = app
        .post(
            "/publisher/tasks",
            PAT,
            json!({"media_id": media_id, "queue": "far"}),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let uri = format!("http://far.example/medias/{media_id}/talk.mp4");
    let (status, body) = node(
        &app,
        reqwest::Method::POST,
        &format!("/publisher/tasks/{id}/claim"),
        json!({"unit_id": unit, "attempt": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = node(
        &app,
        reqwest::Method::POST,
        &format!("/publisher/tasks/{id}/complete"),
        json!({"unit_id": unit, "attempt": 1, "status": "SUCCESS", "publish_uri": uri}),
    )
    .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("SUCCESS"))
    );
    let (_, held) = node(
        &app,
        reqwest::Method::GET,
        &format!("/units/{unit}/publications"),
        Value::Null,
    )
    .await;
    assert_eq!(held["media_ids"], json!([media_id]));
    assert_eq!(
        held["publications"],
        json!([{"media_id": media_id, "task_id": id, "attempt": 1, "status": "SUCCESS"}])
    );

    // The unit goes silent; the unpublish waits for it in REVOKING, however long.
    let (status, task) = app.delete(&format!("/publisher/tasks/{id}"), PAT).await;
    assert_eq!(
        (status, task["status"].clone()),
        (StatusCode::ACCEPTED, json!("REVOKING"))
    );
    let (_, held) = node(
        &app,
        reqwest::Method::GET,
        &format!("/units/{unit}/publications"),
        Value::Null,
    )
    .await;
    assert_eq!(
        held["publications"],
        json!([{"media_id": media_id, "task_id": id, "attempt": 1, "status": "REVOKING"}])
    );
    let refused = app.delete(&format!("/units/{unit}"), As::Root).await;
    assert_error(&refused, StatusCode::CONFLICT, "illegal_state", "online");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (_, task) = app.get(&format!("/publisher/tasks/{id}"), PAT).await;
    assert_eq!(task["status"], "REVOKING", "{task}");
    let still = app.delete(&format!("/medias/{media_id}"), PAT).await;
    assert_error(&still, StatusCode::CONFLICT, "conflict", &id);

    // Only an admin may forget it; then the publication is REVOKED and the media free.
    let (status, _) = app.delete(&format!("/units/{unit}"), PAT).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, forgotten) = app.delete(&format!("/units/{unit}"), As::Root).await;
    assert_eq!(status, StatusCode::OK, "{forgotten}");
    assert_eq!(forgotten["publications_revoked"], json!([id]));
    let (_, task) = app.get(&format!("/publisher/tasks/{id}"), PAT).await;
    assert_eq!(task["status"], "REVOKED", "{task}");
    assert!(
        task["error"].as_str().unwrap().contains("forgotten"),
        "{task}"
    );
    let (_, media) = app.get(&format!("/medias/{media_id}"), PAT).await;
    assert_eq!(media["public_uris"], json!({}), "{media}");
    let (_, units) = app.get("/units", PAT).await;
    assert!(
        !units["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == unit),
        "{units}"
    );
    let (status, _) = app.delete(&format!("/units/{unit}"), As::Root).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.delete(&format!("/medias/{media_id}"), PAT).await;
    assert!(status.is_success(), "{status} {body}");
}

/// A publisher unit of its own queue `far` (the in-process one does not consume it), played
/// here: registered with a 1 s heartbeat, then silent.
async fn far_publisher(app: &App, unit: &str) {
    let beat = json!({"kind": "publisher", "queues": ["far"], "hostname": "far", "version": "test",
        "ffmpeg_version": null, "concurrency": 1, "running_tasks": [], "heartbeat_secs": 1});
    let (status, body) = node(app, reqwest::Method::PUT, &format!("/units/{unit}"), beat).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A publication of a fresh upload on queue `far`, claimed by `unit`; its id and media's.
async fn claimed_by(app: &App, unit: &str, dir: &std::path::Path, name: &str) -> (String, String) {
    let input = clip(dir, name, 1, 160, 120);
    let (_, media) = app.upload(PAT, &input, name, name).await;
    let media_id = media["id"].as_str().unwrap().to_owned();
    let (status, task) = app
        .post(
            "/publisher/tasks",
            PAT,
            json!({"media_id": media_id, "queue": "far"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let (status, body) = node(
        app,
        reqwest::Method::POST,
        &format!("/publisher/tasks/{id}/claim"),
        json!({"unit_id": unit, "attempt": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (id, media_id)
}

async fn listed_unit(app: &App, unit: &str) -> Option<Value> {
    let (status, units) = app.get("/units", PAT).await;
    assert_eq!(status, StatusCode::OK, "{units}");
    units["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == unit)
        .cloned()
}

/// `GET /units` lists a unit's running tasks from the tasks: a claimed task shows at once
/// though the heartbeat said none, and a finished one leaves at once, before any heartbeat.
#[tokio::test]
async fn units_list_running_tasks_from_the_tasks() {
    let app = App::start().await;
    app.user(MAIL, SECRET, false).await;
    let dir = tempfile::tempdir().unwrap();
    let unit = "far-publisher";
    far_publisher(&app, unit).await;
    let (id, media_id) = claimed_by(&app, unit, dir.path(), "talk.mp4").await;
    let listed = listed_unit(&app, unit).await.expect("listed");
    assert_eq!(listed["running_tasks"], json!([id]), "{listed}");
    let uri = format!("http://far.example/medias/{media_id}/talk.mp4");
    let (status, body) = node(
        &app,
        reqwest::Method::POST,
        &format!("/publisher/tasks/{id}/complete"),
        json!({"unit_id": unit, "attempt": 1, "status": "SUCCESS", "publish_uri": uri}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = listed_unit(&app, unit).await.expect("listed");
    assert_eq!(listed["running_tasks"], json!([]), "{listed}");
    // The heartbeat's own list is not believed either: the answer is the tasks'.
    let beat = json!({"kind": "publisher", "queues": ["far"], "hostname": "far", "version": "test",
        "ffmpeg_version": null, "concurrency": 1, "running_tasks": [id], "heartbeat_secs": 1});
    let (status, answer) = node(&app, reqwest::Method::PUT, &format!("/units/{unit}"), beat).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["running_tasks"], json!([]), "{answer}");
    let listed = listed_unit(&app, unit).await.expect("listed");
    assert_eq!(listed["running_tasks"], json!([]), "{listed}");
}

/// With `OSCIED_UNIT_FORGET_SECS=2`, an offline unit holding nothing leaves `GET /units` on
/// its own; one holding a publication, or a running task, stays.
#[tokio::test]
async fn offline_units_holding_nothing_are_dropped() {
    let app = App::start_with(|c| c.unit_forget_secs = 2).await;
    app.user(MAIL, SECRET, false).await;
    let dir = tempfile::tempdir().unwrap();
    for unit in ["idle-publisher", "publishing", "published"] {
        far_publisher(&app, unit).await;
    }
    let beat = json!({"kind": "transform", "queues": ["transform"], "hostname": "t",
        "version": "test", "ffmpeg_version": null, "concurrency": 1, "running_tasks": [],
        "heartbeat_secs": 1});
    let (status, body) = node(&app, reqwest::Method::PUT, "/units/idle-transform", beat).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Running (the lease, 30 s, outlasts the test) and published.
    let (running, _) = claimed_by(&app, "publishing", dir.path(), "a.mp4").await;
    let (done, media) = claimed_by(&app, "published", dir.path(), "b.mp4").await;
    let uri = format!("http://far.example/medias/{media}/b.mp4");
    let (status, body) = node(
        &app,
        reqwest::Method::POST,
        &format!("/publisher/tasks/{done}/complete"),
        json!({"unit_id": "published", "attempt": 1, "status": "SUCCESS", "publish_uri": uri}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Offline after 3 s (three missed 1 s beats), dropped 2 s after the last beat: within
    // a sweep (2 s) of that.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let idle = (
            listed_unit(&app, "idle-publisher").await,
            listed_unit(&app, "idle-transform").await,
        );
        if idle == (None, None) {
            break;
        }
        assert!(Instant::now() < deadline, "still listed: {idle:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let publishing = listed_unit(&app, "publishing").await.expect("kept");
    assert_eq!(publishing["online"], false, "{publishing}");
    assert_eq!(
        publishing["running_tasks"],
        json!([running]),
        "{publishing}"
    );
    let published = listed_unit(&app, "published").await.expect("kept");
    assert_eq!(published["online"], false, "{published}");
    // A dropped unit that beats again is registered anew.
    far_publisher(&app, "idle-publisher").await;
    assert!(listed_unit(&app, "idle-publisher").await.is_some());
}
