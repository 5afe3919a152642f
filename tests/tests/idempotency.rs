//! Idempotent submits (issue 15) with the real binaries: two orchestra replicas on NX-27017
//! and RabbitMQ. Twenty copies of one POST with one `Idempotency-Key`, sent at once over both
//! replicas, make one task and one output media, and all answer the same; another body with
//! that key is a 422; a failure is not replayed; a registered file is adopted once.

mod common;

use common::{Cluster, pretty, str_of};
use oscied_e2e::api::{Api, Reply};
use serde_json::{Value, json};

const COPIES: usize = 20;

fn post_with_key(api: &Api, path: &str, key: &str, body: &Value) -> Reply {
    let text = body.to_string();
    let header = format!("Idempotency-Key: {key}");
    api.send(
        path,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
            &header,
            "-d",
            &text,
        ],
    )
}

#[test]
fn one_key_makes_one_task_however_many_copies_race_over_the_replicas() {
    let cluster = Cluster::replicas(2, 0, &[]);
    let api = cluster.api();
    let input = cluster.upload_clip("in.mp4", 1, 160, 90);
    let body = json!({
        "media_in_id": input["id"], "profile_id": cluster.profile_id("File Copy"),
        "filename": "copy.mp4", "metadata": {"title": "copy"}, "queue": "nobody-runs-this",
    });

    // Twenty at once, half on each replica.
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let sent: Vec<_> = (0..COPIES)
            .map(|n| {
                let (api, body) = (api.on(n % 2), &body);
                scope.spawn(move || post_with_key(&api, "/transform/tasks", "retry-me-1", body))
            })
            .collect();
        sent.into_iter()
            .map(|s| s.join().expect("a sender"))
            .collect()
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|s| *s == 201),
        "{statuses:?}\n{}",
        cluster.logs()
    );
    let first = replies[0].json();
    assert!(
        replies.iter().all(|r| r.json() == first),
        "the answers differ"
    );
    let replayed = replies
        .iter()
        .filter(|r| r.header("idempotent-replayed") == Some("true"))
        .count();
    assert_eq!(
        replayed,
        COPIES - 1,
        "one answer is the first, the others are replays"
    );

    // One task, one output media.
    let tasks = cluster.get("/transform/tasks");
    assert_eq!(tasks["total"], 1, "{}", pretty(&tasks));
    assert_eq!(tasks["items"][0]["id"], first["id"]);
    let children = cluster.get(&format!("/medias?parent_id={}", str_of(&input, "id")));
    assert_eq!(children["total"], 1, "{}", pretty(&children));

    // The same key with another body: refused, nothing made.
    let mut other = body.clone();
    other["filename"] = json!("other.mp4");
    let refused = post_with_key(api, "/transform/tasks", "retry-me-1", &other);
    assert_eq!(refused.status, 422, "{}", refused.text());
    let error = refused.json()["error"].clone();
    assert_eq!(error["field"], "Idempotency-Key", "{error}");
    assert!(
        str_of(&error, "message").contains("another request body"),
        "{error}"
    );
    assert_eq!(cluster.get("/transform/tasks")["total"], 1);

    // Keys are per user: another user's same key is its own request.
    let (status, user) = cluster.root_api().post(
        "/users",
        &json!({"first_name": "Eve", "last_name": "Other", "mail": "eve@example.com", "secret": "eve-secret-1"}),
    );
    assert_eq!(status, 201, "{user}");
    let eve = api.as_user("eve@example.com", "eve-secret-1");
    let hers = post_with_key(&eve, "/transform/tasks", "retry-me-1", &body);
    assert_eq!(
        hers.status,
        404,
        "her request runs (and she cannot see the media): {}",
        hers.text()
    );

    // A failure is not kept: the same request runs again (and fails again).
    let mut missing = body.clone();
    missing["media_in_id"] = json!(uuid::Uuid::new_v4());
    for _ in 0..2 {
        let failed = post_with_key(api, "/transform/tasks", "retry-me-2", &missing);
        assert_eq!(failed.status, 404, "{}", failed.text());
        assert_eq!(failed.header("idempotent-replayed"), None);
    }

    // A key that is not one.
    let long = "k".repeat(256);
    let refused = post_with_key(api, "/transform/tasks", &long, &body);
    assert_eq!(refused.status, 422, "{}", refused.text());
    assert_eq!(refused.json()["error"]["field"], "Idempotency-Key");

    // Publications take a key too.
    let (status, ready) = api.call(
        "DELETE",
        &format!("/transform/tasks/{}", str_of(&first, "id")),
        None,
    );
    assert_eq!(status, 200, "{ready}");
    let publish = json!({"media_id": input["id"], "queue": "nobody-publishes"});
    let a = post_with_key(api, "/publisher/tasks", "publish-1", &publish);
    let b = post_with_key(api, "/publisher/tasks", "publish-1", &publish);
    assert_eq!(
        (a.status, b.status),
        (201, 201),
        "{} {}",
        a.text(),
        b.text()
    );
    assert_eq!(a.json()["id"], b.json()["id"]);
    assert_eq!(cluster.get("/publisher/tasks")["total"], 1);
}

#[test]
fn a_registered_file_is_adopted_once_and_uploads_refuse_a_key() {
    let cluster = Cluster::standalone();
    let clip = cluster.clip("drop.mp4", 1, 160, 90);
    let uploads = cluster.storage().join("uploads");
    std::fs::create_dir_all(&uploads).expect("uploads/");
    std::fs::copy(&clip, uploads.join("drop.mp4")).expect("drop the file");
    let body = json!({"uri": "uploads/drop.mp4", "metadata": {"title": "From the drop folder"}});
    let first = post_with_key(cluster.api(), "/medias", "register-1", &body);
    assert_eq!(first.status, 201, "{}", first.text());
    // The file has moved into the media: only the replay can answer this one.
    let again = post_with_key(cluster.api(), "/medias", "register-1", &body);
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json());
    assert_eq!(cluster.get("/medias")["total"], 1);
    // Without the key, the same registration finds no file.
    let (status, body) = cluster.api().post("/medias", &body);
    assert_eq!(status, 422, "{body}");

    let header = "Idempotency-Key: upload-1".to_string();
    let form = format!("file=@{}", clip.display());
    let upload = cluster
        .api()
        .send("/medias", &["-H", &header, "-F", &form, "-F", "title=up"]);
    assert_eq!(upload.status, 422, "{}", upload.text());
    assert!(
        upload.text().contains("not to uploads"),
        "{}",
        upload.text()
    );
    assert_eq!(cluster.get("/medias")["total"], 1);
}
