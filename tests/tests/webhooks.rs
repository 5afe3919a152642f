//! Webhooks (issue 15) with the real binaries and a real HTTP receiver: every event of a
//! task reaches a subscription, signed, once per delivery id although the receiver failed
//! the first three requests; a task's `callback_url` gets that task's events; another user's
//! subscription gets none of them; deliveries pending when an orchestra dies are delivered
//! after its restart, or by another replica; a failing subscription is disabled and a PATCH
//! enables it again; replay sends a delivery again; redirects are not followed; SSRF targets
//! are refused.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Cluster, pretty, str_of};
use oscied_e2e::api::Api;
use oscied_e2e::receiver::{Received, Receiver};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(30);
const ENCODE: Duration = Duration::from_secs(120);
const SECRET: &str = "a-shared-secret-for-tests";

/// A receiver on loopback may be reached, the retries are quick.
const LOOPBACK: &[(&str, &str)] = &[
    ("OSCIED_WEBHOOK_ALLOWED_NETS", "127.0.0.1/32"),
    ("OSCIED_WEBHOOK_RETRY_SECS", "0.2"),
];

fn subscribe(api: &Api, url: &str, events: &[&str]) -> Value {
    let (status, hook) = api.post(
        "/webhooks",
        &json!({"url": url, "events": events, "secret": SECRET}),
    );
    assert_eq!(status, 201, "{}", pretty(&hook));
    assert_eq!(hook["secret"], SECRET, "the secret is answered once");
    hook
}

fn deliveries(api: &Api, hook: &str) -> Vec<Value> {
    let (status, page) = api.get(&format!("/webhooks/{hook}/deliveries?limit=1000"));
    assert_eq!(status, 200, "{}", pretty(&page));
    page["items"].as_array().cloned().unwrap_or_default()
}

/// The requests answered 2xx, by delivery id.
fn delivered(received: &[Received]) -> BTreeMap<String, Vec<&Received>> {
    let mut by_id: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in received.iter().filter(|r| (200..300).contains(&r.answered)) {
        by_id.entry(r.delivery().to_owned()).or_default().push(r);
    }
    by_id
}

fn task_events<'a>(received: &'a [Received], task: &str) -> Vec<&'a Received> {
    received
        .iter()
        .filter(|r| r.json()["task_id"] == task)
        .collect()
}

#[test]
fn a_receiver_gets_every_event_of_a_task_signed_once_per_delivery_although_it_failed_at_first() {
    let cluster = Cluster::standalone_with(LOOPBACK);
    let api = cluster.api();
    let eve = cluster.other_user("eve@example.com");

    // The receiver fails its first three requests.
    let receiver = Receiver::scripted(Box::new(|n, _| (if n < 3 { 500 } else { 200 }, vec![])));
    let hook = subscribe(api, &receiver.url("/oscied?from=test"), &["task"]);
    let hook_id = str_of(&hook, "id").to_owned();
    assert_eq!(hook["enabled"], true);
    assert_eq!(hook["events"], json!(["task"]));
    let (_, shown) = api.get(&format!("/webhooks/{hook_id}"));
    assert_eq!(shown["secret"], Value::Null, "shown once only: {shown}");
    assert_eq!(shown["url"], receiver.url("/oscied?from=test"));

    // Eve's subscription to everything sees none of this user's events.
    let eves = Receiver::start();
    subscribe(&eve, &eves.url("/eve"), &[]);
    let (status, _) = eve.get(&format!("/webhooks/{hook_id}"));
    assert_eq!(status, 404, "another user's webhook is not found");
    let (_, listed) = eve.get("/webhooks");
    assert_eq!(listed["total"], 1, "{listed}");

    // A task with its own callback; its secret is generated and answered once.
    let callback = Receiver::start();
    let input = cluster.upload_clip("input.mp4", 3, 320, 180);
    let media_in = str_of(&input, "id").to_owned();
    let profile = cluster.realtime_profile();
    let (status, task) = cluster.try_launch(
        &media_in,
        &profile,
        "out.mp4",
        json!({"callback_url": callback.url("/done")}),
    );
    assert_eq!(status, 201, "{}", pretty(&task));
    let id = str_of(&task, "id").to_owned();
    assert_eq!(task["callback_url"], callback.url("/done"));
    let callback_secret = str_of(&task, "callback_secret").to_owned();
    assert!(callback_secret.len() >= 32, "{callback_secret}");
    assert_eq!(cluster.task(&id)["callback_secret"], Value::Null);
    let done = cluster.wait_status(&id, "SUCCESS", ENCODE);

    // Every event of the task arrives, each delivery once with a 2xx.
    let received = receiver.wait_until(SOON, |got| {
        let finished = task_events(got, &id)
            .iter()
            .any(|r| r.json()["type"] == "task.finished" && r.answered == 200);
        let sent: BTreeSet<&str> = got.iter().map(|r| r.delivery()).collect();
        finished && sent.len() == delivered(got).len()
    });
    assert_eq!(
        received.iter().filter(|r| r.answered == 500).count(),
        3,
        "three failed"
    );
    let by_id = delivered(&received);
    let ids: BTreeSet<&str> = received.iter().map(|r| r.delivery()).collect();
    assert_eq!(
        ids.len(),
        by_id.len(),
        "every delivery was delivered in the end"
    );
    for (delivery, got) in &by_id {
        assert_eq!(
            got.len(),
            1,
            "delivery {delivery} answered 2xx more than once"
        );
    }
    for r in &received {
        assert!(r.signed_with(SECRET), "a bad signature: {:?}", r.headers);
        assert!(!r.signed_with("another secret"));
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("x-oscied-event"), r.json()["type"]);
        let at: i64 = r.header("x-oscied-timestamp").parse().expect("a timestamp");
        let now = chrono::Utc::now().timestamp();
        assert!((now - 300..=now + 5).contains(&at), "{at} vs {now}");
        assert!(r.header("user-agent").starts_with("OSCIED-Webhooks/"));
    }
    // The whole life of the task: created, its statuses, progress, finished.
    let life = task_events(&received, &id);
    let kinds: BTreeSet<String> = life
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.json()["type"].as_str().unwrap_or("?").to_owned())
        .collect();
    for kind in ["task.created", "task.status", "task.finished"] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    let statuses: BTreeSet<String> = life
        .iter()
        .filter_map(|r| {
            r.json()["data"]["task"]["status"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for status in ["PENDING", "STARTED", "SUCCESS"] {
        assert!(
            statuses.contains(status),
            "{status} missing from {statuses:?}"
        );
    }
    let finished = life
        .iter()
        .find(|r| r.json()["type"] == "task.finished")
        .expect("finished")
        .json();
    assert_eq!(finished["data"]["task"]["finished_at"], done["finished_at"]);

    // The API shows each delivery with its attempts; the failed ones say why.
    let listed = deliveries(api, &hook_id);
    assert_eq!(listed.len(), by_id.len(), "{}", pretty(&json!(listed)));
    let attempts: Vec<Value> = listed
        .iter()
        .flat_map(|d| d["attempts"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(attempts.len(), received.len());
    let failed: Vec<&Value> = attempts.iter().filter(|a| a["status"] == 500).collect();
    assert_eq!(failed.len(), 3);
    for attempt in failed {
        assert!(
            attempt["error"]
                .as_str()
                .unwrap_or_default()
                .contains("500"),
            "{attempt}"
        );
        assert!(attempt["latency_ms"].is_u64());
    }
    for d in &listed {
        assert_eq!(d["status"], "delivered", "{}", pretty(d));
        assert_eq!(d["webhook_id"], hook_id.as_str());
    }

    // The callback got the task's events (no progress), signed with its own secret.
    let calls = callback.wait_until(SOON, |got| {
        got.iter().any(|r| r.json()["type"] == "task.finished")
    });
    for r in &calls {
        assert!(r.signed_with(&callback_secret));
        assert_eq!(r.json()["task_id"], id.as_str());
        assert_ne!(r.json()["type"], "task.progress");
    }
    let (_, callbacks) = api.get(&format!("/webhooks?task_id={id}"));
    assert_eq!(callbacks["total"], 1, "{}", pretty(&callbacks));
    assert_eq!(callbacks["items"][0]["url"], callback.url("/done"));

    // Eve saw nothing of this user's.
    let owner = task["user_id"].clone();
    for r in eves.received() {
        assert_ne!(r.json()["user_id"], owner, "{}", r.body);
    }

    // Deleting Eve deletes her webhooks.
    let (_, me) = eve.get("/users/me");
    let eve_id = str_of(&me, "id").to_owned();
    let (status, _) = cluster
        .root_api()
        .call("DELETE", &format!("/users/{eve_id}"), None);
    assert_eq!(status, 204);
    let (_, left) = cluster
        .root_api()
        .get(&format!("/webhooks?user_id={eve_id}"));
    assert_eq!(left["total"], 0, "{}", pretty(&left));

    // The README's verification script agrees.
    let sample = &received[received.len() - 1];
    assert!(readme_verifies(SECRET, sample));
    let mut forged = sample.clone();
    forged.body = forged.body.replace("SUCCESS", "FAILURE");
    if forged.body != sample.body {
        assert!(!readme_verifies(SECRET, &forged));
    }
}

/// Run README's five-line verification script on a received request.
fn readme_verifies(secret: &str, r: &Received) -> bool {
    let readme =
        std::fs::read_to_string(oscied_e2e::workspace_root().join("README.md")).expect("README.md");
    let script = readme
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a python block in README");
    assert!(script.lines().count() <= 6, "{script}");
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            r.header("x-oscied-timestamp"),
            r.header("x-oscied-signature"),
        ])
        .env("WEBHOOK_SECRET", secret)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(r.body.as_bytes())
        .expect("write the body");
    child.wait().expect("python3 ran").success()
}

#[test]
fn deliveries_pending_when_the_orchestra_dies_are_delivered_after_its_restart() {
    let mut cluster = Cluster::standalone_with(&[
        ("OSCIED_WEBHOOK_ALLOWED_NETS", "127.0.0.1/32"),
        ("OSCIED_WEBHOOK_RETRY_SECS", "1"),
    ]);
    let api = cluster.api().on(0);
    // Nobody listens there yet: connection refused, retried.
    let port = oscied_e2e::free_port();
    let hook = subscribe(&api, &format!("http://127.0.0.1:{port}/later"), &["media"]);
    let hook_id = str_of(&hook, "id").to_owned();
    let media = cluster.upload_clip("a.mp4", 1, 160, 90);
    let pending = cluster.wait_until("a failed attempt", SOON, || {
        let listed = deliveries(&api, &hook_id);
        let tried = !listed.is_empty()
            && listed.iter().all(|d| {
                d["status"] == "pending" && !d["attempts"].as_array().is_none_or(Vec::is_empty)
            });
        if tried {
            Ok(listed)
        } else {
            Err(pretty(&json!(listed)))
        }
    });
    let error = pending[0]["attempts"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(!error.is_empty(), "{}", pretty(&pending[0]));
    let ids: BTreeSet<String> = pending.iter().map(|d| str_of(d, "id").to_owned()).collect();

    cluster.kill_replica(0);
    let receiver = Receiver::on(port, Box::new(|_, _| (200, vec![])));
    cluster.restart_replica(0);
    let got = receiver.wait_until(SOON, |got| {
        delivered(got).keys().cloned().collect::<BTreeSet<_>>() == ids
    });
    for r in &got {
        assert!(r.signed_with(SECRET));
        assert_eq!(r.json()["media_id"], media["id"]);
    }
    cluster.wait_until("all delivered", SOON, || {
        let listed = deliveries(&api, &hook_id);
        if listed.iter().all(|d| d["status"] == "delivered") {
            Ok(())
        } else {
            Err(pretty(&json!(listed)))
        }
    });
}

#[test]
fn another_replica_delivers_what_a_dead_one_left_pending() {
    let mut cluster = Cluster::replicas(
        2,
        0,
        &[
            ("OSCIED_WEBHOOK_ALLOWED_NETS", "127.0.0.1/32"),
            ("OSCIED_WEBHOOK_RETRY_SECS", "1"),
            ("OSCIED_TASK_LEASE_SECS", "4"),
        ],
    );
    let api = cluster.api().on(0);
    let port = oscied_e2e::free_port();
    let hook = subscribe(
        &api,
        &format!("http://127.0.0.1:{port}/later"),
        &["media.status"],
    );
    let hook_id = str_of(&hook, "id").to_owned();
    // Registered on replica 0, so its events are matched and first sent there.
    let clip = cluster.clip("b.mp4", 1, 160, 90);
    let (status, media) = api.upload(&clip, &[("title", "b")]);
    assert_eq!(status, 201, "{media}");
    let pending = cluster.wait_until("a failed attempt", SOON, || {
        let listed = deliveries(&api, &hook_id);
        let tried = !listed.is_empty()
            && listed
                .iter()
                .all(|d| !d["attempts"].as_array().is_none_or(Vec::is_empty));
        if tried {
            Ok(listed)
        } else {
            Err(pretty(&json!(listed)))
        }
    });
    let ids: BTreeSet<String> = pending.iter().map(|d| str_of(d, "id").to_owned()).collect();
    cluster.kill_replica(0);
    let receiver = Receiver::on(port, Box::new(|_, _| (200, vec![])));
    receiver.wait_until(SOON, |got| {
        delivered(got).keys().cloned().collect::<BTreeSet<_>>() == ids
    });
}

#[test]
fn a_failing_subscription_is_disabled_then_enabled_again_and_replay_sends_again() {
    let cluster = Cluster::standalone_with(&[
        ("OSCIED_WEBHOOK_ALLOWED_NETS", "127.0.0.1/32"),
        ("OSCIED_WEBHOOK_RETRY_SECS", "0.2"),
        ("OSCIED_WEBHOOK_MAX_FAILURES", "3"),
    ]);
    let api = cluster.api();
    let receiver = Receiver::scripted(Box::new(|_, _| (503, vec![])));
    let hook = subscribe(api, &receiver.url("/flaky"), &["media.status"]);
    let hook_id = str_of(&hook, "id").to_owned();
    cluster.upload_clip("a.mp4", 1, 160, 90);

    let disabled = cluster.wait_until("the webhook disabled", SOON, || {
        let (_, hook) = api.get(&format!("/webhooks/{hook_id}"));
        if hook["enabled"] == false {
            Ok(hook)
        } else {
            Err(pretty(&hook))
        }
    });
    let reason = disabled["disabled_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("attempts failed in a row"), "{reason}");
    assert!(reason.contains("503"), "{reason}");
    // (Attempts already in flight when the third failed may still land.)
    std::thread::sleep(Duration::from_millis(500));
    let tried = receiver.received().len();
    assert!((3..=5).contains(&tried), "{tried} attempts");

    // Disabled: new events reach it no more; its pending deliveries are cancelled.
    cluster.upload_clip("b.mp4", 1, 160, 90);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        receiver.received().len(),
        tried,
        "sent to a disabled webhook"
    );
    let listed = deliveries(api, &hook_id);
    assert!(
        listed.iter().all(|d| d["status"] != "delivered"),
        "{}",
        pretty(&json!(listed))
    );
    let first = listed.last().expect("a delivery").clone();
    let replay = format!(
        "/webhooks/{hook_id}/deliveries/{}/replay",
        str_of(&first, "id")
    );
    let (status, refused) = api.post(&replay, &json!({}));
    assert_eq!(status, 409, "{}", pretty(&refused));
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("disabled"),
        "{refused}"
    );

    // A PATCH enables it again; replay sends the first event again, as a new delivery.
    receiver.answer(Box::new(|_, _| (204, vec![])));
    let (status, enabled) = api.call(
        "PATCH",
        &format!("/webhooks/{hook_id}"),
        Some(&json!({"enabled": true})),
    );
    assert_eq!(status, 200, "{}", pretty(&enabled));
    assert_eq!(enabled["enabled"], true);
    assert_eq!(enabled["failures"], 0);
    assert_eq!(enabled["disabled_reason"], Value::Null);
    let (status, again) = api.post(&replay, &json!({}));
    assert_eq!(status, 202, "{}", pretty(&again));
    assert_eq!(again["replay_of"], first["id"]);
    assert_ne!(again["id"], first["id"]);
    let got = receiver.wait_until(SOON, |got| got.iter().any(|r| r.answered == 204));
    let replayed = got.iter().find(|r| r.answered == 204).expect("replayed");
    assert_eq!(replayed.delivery(), str_of(&again, "id"));
    assert_eq!(replayed.body, str_of(&first, "body"));
    assert!(replayed.signed_with(SECRET));
    cluster.wait_until("the replay delivered", SOON, || {
        let (_, d) = api.get(&format!(
            "/webhooks/{hook_id}/deliveries/{}",
            str_of(&again, "id")
        ));
        if d["status"] == "delivered" {
            Ok(())
        } else {
            Err(pretty(&d))
        }
    });

    // A 4xx other than 408/429 is final, and a redirect is not followed.
    let elsewhere = Receiver::start();
    let target = elsewhere.url("/stolen");
    let redirecting = Receiver::scripted(Box::new(move |_, _| {
        (302, vec![("Location".to_owned(), target.clone())])
    }));
    let gone = Receiver::scripted(Box::new(|_, _| (410, vec![])));
    let hook_302 = subscribe(api, &redirecting.url("/moved"), &["media.status"]);
    let hook_410 = subscribe(api, &gone.url("/gone"), &["media.status"]);
    cluster.upload_clip("c.mp4", 1, 160, 90);
    for (hook, code) in [(&hook_302, 302), (&hook_410, 410)] {
        let hook_id = str_of(hook, "id").to_owned();
        let failed = cluster.wait_until("a final failure", SOON, || {
            let listed = deliveries(api, &hook_id);
            if !listed.is_empty() && listed.iter().all(|d| d["status"] == "failed") {
                Ok(listed)
            } else {
                Err(pretty(&json!(listed)))
            }
        });
        for d in failed {
            let attempts = d["attempts"].as_array().cloned().unwrap_or_default();
            assert_eq!(attempts.len(), 1, "not retried: {}", pretty(&d));
            assert_eq!(attempts[0]["status"], code);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(elsewhere.received().is_empty(), "the redirect was followed");

    // Deleting a webhook deletes its deliveries.
    let (status, _) = api.call("DELETE", &format!("/webhooks/{hook_id}"), None);
    assert_eq!(status, 204);
    let (status, _) = api.get(&format!("/webhooks/{hook_id}/deliveries"));
    assert_eq!(status, 404);
}

#[test]
fn ssrf_targets_and_bad_subscriptions_are_refused_with_the_reason() {
    let cluster = Cluster::standalone();
    let api = cluster.api();
    for (url, why) in [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/hook", "private"),
        ("http://192.168.1.10/hook", "private"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://0x7f000001/hook", "loopback"),
        ("http://0.0.0.0:5000/", "unspecified"),
        ("ftp://example.com/hook", "scheme"),
        ("http://user:pass@example.com/hook", "credentials"),
    ] {
        let (status, refused) = api.post("/webhooks", &json!({"url": url}));
        assert_eq!(status, 422, "{url}: {}", pretty(&refused));
        assert_eq!(refused["error"]["field"], "url", "{url}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{url}: {message}");
    }
    for (body, field) in [
        (
            json!({"url": "https://example.com/", "events": ["task.nope"]}),
            "events[0]",
        ),
        (
            json!({"url": "https://example.com/", "secret": "short"}),
            "secret",
        ),
        (json!({"url": "https://example.com/", "extra": 1}), "extra"),
    ] {
        let (status, refused) = api.post("/webhooks", &body);
        assert_eq!(status, 422, "{body}: {}", pretty(&refused));
        assert_eq!(refused["error"]["field"], field, "{body}: {refused}");
    }
    let (status, listed) = api.get("/webhooks");
    assert_eq!((status, listed["total"].as_u64()), (200, Some(0)));

    // A task's callback likewise, and nothing is created.
    let input = cluster.upload_clip("in.mp4", 1, 160, 90);
    let media_in = str_of(&input, "id").to_owned();
    let profile = cluster.profile_id("File Copy");
    let (status, refused) = cluster.try_launch(
        &media_in,
        &profile,
        "out.mp4",
        json!({"callback_url": "http://169.254.169.254/"}),
    );
    assert_eq!(status, 422, "{}", pretty(&refused));
    assert_eq!(refused["error"]["field"], "callback_url");
    let (_, tasks) = api.get("/transform/tasks");
    assert_eq!(tasks["total"], 0, "{}", pretty(&tasks));
    let (_, medias) = api.get("/medias");
    assert_eq!(medias["total"], 1, "no output media: {}", pretty(&medias));
    let (status, refused) = api.post(
        "/publisher/tasks",
        &json!({"media_id": media_in, "callback_url": "http://10.1.1.1/x"}),
    );
    assert_eq!(status, 422, "{}", pretty(&refused));
    assert_eq!(refused["error"]["field"], "callback_url");

    // Root owns no webhooks; an unknown one is a 404.
    let (status, _) = cluster
        .root_api()
        .post("/webhooks", &json!({"url": "https://example.com/"}));
    assert_eq!(status, 403);
    let (status, _) = api.get(&format!("/webhooks/{}", uuid::Uuid::new_v4()));
    assert_eq!(status, 404);
    let (status, _) = api.get("/webhooks/not-an-id/deliveries");
    assert_eq!(status, 404);
}
