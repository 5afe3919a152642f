//! The live event stream (`GET /api/v1/events`, issue 15) with the real binaries: a user's
//! `curl -N` sees a task's whole life in order and none of another user's; a client that
//! reconnects with `Last-Event-ID` gets what it missed (or a `reset`); filters and refusals
//! answer as documented; two replicas on NX-27017 and RabbitMQ each stream the other's events.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Cluster, ROOT_SECRET, pretty, str_of};
use oscied_e2e::api::Api;
use oscied_e2e::sse::{EventStream, SseEvent};
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(20);
const ENCODE: Duration = Duration::from_secs(120);

fn open(api: &Api, query: &str, last_id: Option<&str>) -> EventStream {
    api.events(query, last_id)
        .unwrap_or_else(|(status, body)| panic!("GET /events{query}: {status} {body}"))
}

fn refused(api: &Api, query: &str) -> (u16, Value) {
    match api.events(query, None) {
        Ok(_) => panic!("GET /events{query} was not refused"),
        Err(refusal) => refusal,
    }
}

fn of_task<'a>(events: &'a [SseEvent], id: &str) -> Vec<&'a SseEvent> {
    events
        .iter()
        .filter(|e| e.json()["task_id"] == id)
        .collect()
}

fn about_media<'a>(events: &'a [SseEvent], id: &str) -> Vec<&'a SseEvent> {
    events
        .iter()
        .filter(|e| e.event == "media.status" && e.json()["media_id"] == id)
        .collect()
}

fn millis(event: &SseEvent) -> i64 {
    let at = event.json()["at"].as_str().unwrap_or_default().to_owned();
    chrono::DateTime::parse_from_rfc3339(&at)
        .unwrap_or_else(|e| panic!("`at` of {event:?}: {e}"))
        .timestamp_millis()
}

#[test]
fn a_stream_shows_a_tasks_whole_life_in_order_and_nothing_of_other_users() {
    let mut cluster = Cluster::standalone_with(&[("OSCIED_EVENTS_KEEPALIVE_SECS", "1")]);
    let eve = cluster.other_user("eve@example.com");
    let mut mine = open(cluster.api(), "?types=task,media", None);
    let mut hers = open(&eve, "", None);
    let mut root = open(
        &cluster.api().as_user("root", ROOT_SECRET),
        "?types=task",
        None,
    );

    let input = cluster.upload_clip("input.mp4", 4, 320, 180);
    let media_in = str_of(&input, "id").to_owned();
    let uploaded = mine.until(SOON, |e| e.event == "media.status");
    let ready = uploaded[0].json();
    assert_eq!(ready["media_id"], media_in.as_str(), "{}", pretty(&ready));
    assert_eq!(ready["data"]["from"], Value::Null, "{}", pretty(&ready));
    assert_eq!(ready["data"]["media"]["status"], "READY");

    let profile = cluster.realtime_profile();
    let task = cluster.launch(&media_in, &profile, "out.mp4");
    let id = str_of(&task, "id").to_owned();
    let media_out = str_of(&task, "media_out_id").to_owned();
    let seen = mine.until(ENCODE, |e| e.event == "task.finished");

    // The task's events, in the order they happened.
    let life = of_task(&seen, &id);
    let kinds: Vec<&str> = life.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"task.created"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"task.finished"), "{kinds:?}");
    let statuses: Vec<String> = life
        .iter()
        .filter(|e| e.event == "task.status" || e.event == "task.finished")
        .map(|e| {
            e.json()["data"]["task"]["status"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("STARTED"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.get(1).map(String::as_str),
        Some("PROGRESS"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("SUCCESS"),
        "{statuses:?}"
    );
    let finished = life.last().expect("finished").json();
    assert_eq!(
        finished["data"]["from"],
        "PROGRESS",
        "{}",
        pretty(&finished)
    );
    assert_eq!(finished["task_kind"], "transform");
    assert_eq!(finished["media_id"], media_out.as_str());
    assert_eq!(finished["media_in_id"], media_in.as_str());
    assert_eq!(finished["user_id"], input["user_id"]);

    // Progress: some, rising, at most one a second.
    let progress: Vec<&&SseEvent> = life.iter().filter(|e| e.event == "task.progress").collect();
    assert!(progress.len() >= 2, "{kinds:?}");
    let percents: Vec<f64> = progress
        .iter()
        .map(|e| {
            e.json()["data"]["progress"]["percent"]
                .as_f64()
                .unwrap_or(-1.0)
        })
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    assert!(
        percents.iter().all(|p| (0.0..=100.0).contains(p)),
        "{percents:?}"
    );
    for pair in progress.windows(2) {
        let gap = millis(pair[1]) - millis(pair[0]);
        assert!(gap >= 950, "two progress events {gap} ms apart: {pair:?}");
    }

    // The output media: PENDING when the task was made, READY before the task finished.
    let out = about_media(&seen, &media_out);
    let out_statuses: Vec<&str> = out
        .iter()
        .map(|e| {
            e.json()["data"]["media"]["status"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .map(|s| {
            if s == "PENDING" {
                "PENDING"
            } else if s == "READY" {
                "READY"
            } else {
                "?"
            }
        })
        .collect();
    assert_eq!(out_statuses, ["PENDING", "READY"], "{out:#?}");

    // Every id is unique; the stream is what the API says.
    let ids: BTreeSet<&str> = seen.iter().filter_map(|e| e.id.as_deref()).collect();
    assert_eq!(ids.len(), seen.len(), "{seen:#?}");
    assert_eq!(cluster.task(&id)["status"], "SUCCESS");

    // root sees the task too; the other user sees no event of it, only the units'.
    let roots = root.until(SOON, |e| e.event == "task.finished");
    assert_eq!(of_task(&roots, &id).len(), life.len(), "{roots:#?}");
    let others = hers.drain(Duration::from_secs(2));
    assert!(
        others
            .iter()
            .all(|e| e.json()["user_id"].is_null() && e.event.starts_with("unit.")),
        "another user's stream showed: {others:#?}"
    );

    // An idle stream gets keep-alive comments.
    mine.drain(Duration::from_millis(2500));
    assert!(
        mine.comments().iter().any(|c| c == "keep-alive"),
        "{:?}",
        mine.comments()
    );

    // Stopping the orchestra ends the streams instead of waiting for them.
    cluster.orchestra_mut().sigterm();
    assert!(
        mine.ends_within(Duration::from_secs(15)),
        "the stream outlived the stop"
    );
    let exited = cluster.orchestra_mut().wait_exit(Duration::from_secs(20));
    assert!(
        exited.is_some_and(|s| s.success()),
        "{exited:?}\n{}",
        cluster.logs()
    );
}

#[test]
fn a_client_resuming_with_last_event_id_gets_what_it_missed() {
    let cluster = Cluster::standalone_with(&[("OSCIED_EVENTS_MAX_STREAMS", "3")]);
    let eve = cluster.other_user("eve@example.com");
    let api = cluster.api();

    let mut first = open(api, "?types=media.status", None);
    let m1 = cluster.upload_clip("one.mp4", 1, 160, 90);
    let e1 = first.until(SOON, |e| e.event == "media.status").remove(0);
    assert_eq!(e1.json()["media_id"], m1["id"]);
    let e1_id = e1.id.clone().expect("an id");
    drop(first);

    // Missed while away.
    let m2 = cluster.upload_clip("two.mp4", 1, 160, 90);
    let m3 = cluster.upload_clip("three.mp4", 1, 160, 90);
    let mut resumed = open(api, "?types=media.status", Some(&e1_id));
    let got = resumed.until(SOON, |e| e.json()["media_id"] == m3["id"]);
    let medias: Vec<Value> = got.iter().map(|e| e.json()["media_id"].clone()).collect();
    assert_eq!(medias, [m2["id"].clone(), m3["id"].clone()], "{got:#?}");

    // The same with the query parameter (for clients that cannot set the header), and
    // narrowed to one media.
    let mut narrowed = open(
        api,
        &format!("?media_id={}&last_event_id={e1_id}", str_of(&m2, "id")),
        None,
    );
    let got = narrowed.until(SOON, |e| e.json()["media_id"] == m2["id"]);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(narrowed.drain(Duration::from_millis(500)).is_empty());

    // An id this orchestra does not know: a reset, telling the client to reload.
    let mut unknown = open(api, "", Some("1-nobody-0"));
    let reset = unknown.next(SOON).expect("a first event");
    assert_eq!(reset.event, "reset", "{reset:?}");
    assert!(reset.id.is_none(), "{reset:?}");
    assert!(
        reset.json()["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unknown")),
        "{reset:?}"
    );

    // Three streams are open for this user: a fourth is refused, until one closes.
    let (status, body) = refused(api, "");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
    assert!(
        str_of(&body["error"], "message").contains("OSCIED_EVENTS_MAX_STREAMS"),
        "{body}"
    );
    drop(unknown);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(stream) = api.events("", None) {
            again = Some(stream);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        again.is_some(),
        "a stream could not be opened after one closed"
    );
    drop(again);

    // Refusals say what was wrong.
    let (status, body) = refused(api, "?types=task.status,bogus");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "types", "{body}");
    assert!(
        str_of(&body["error"], "message").contains("\"bogus\""),
        "{body}"
    );
    let (status, body) = refused(api, "?task_id=not-a-uuid");
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (422, json!("task_id")),
        "{body}"
    );
    let (status, body) = refused(&eve, &format!("?media_id={}", str_of(&m1, "id")));
    assert_eq!(status, 404, "another user's media: {body}");
    let (status, body) = refused(&eve, &format!("?task_id={}", uuid::Uuid::new_v4()));
    assert_eq!(status, 404, "{body}");
    let (status, body) = refused(&Api::new(api.base()), "");
    assert_eq!(status, 401, "{body}");
    let (status, body) = refused(api, "?limit=3");
    assert_eq!(status, 422, "an unknown parameter: {body}");
}

#[test]
fn each_replica_streams_the_events_of_the_others() {
    let cluster = Cluster::replicas(2, 0, &[]);
    let api = cluster.api();
    let mut on_second = open(&api.on(1), "", None);
    let mut on_first = open(&api.on(0), "?types=task", None);

    // An upload on the first replica shows on the second's stream.
    let clip = cluster.clip("in.mp4", 1, 160, 90);
    let (status, media) = api.on(0).upload(&clip, &[("title", "in")]);
    assert_eq!(status, 201, "{media}");
    let got = on_second.until(SOON, |e| e.event == "media.status");
    assert_eq!(
        got.last().map(|e| e.json()["media_id"].clone()),
        Some(media["id"].clone())
    );

    // A task made on the first (no unit runs it) and revoked on the second: both streams see
    // both events, in order, with the same ids.
    let (status, task) = api.on(0).post(
        "/transform/tasks",
        &json!({"media_in_id": media["id"], "profile_id": cluster.profile_id("File Copy"),
                "filename": "copy.mp4", "metadata": {"title": "copy"}}),
    );
    assert_eq!(status, 201, "{task}");
    let id = str_of(&task, "id");
    let (status, revoked) = api
        .on(1)
        .call("DELETE", &format!("/transform/tasks/{id}"), None);
    assert_eq!(status, 200, "{revoked}");
    let firsts = on_first.until(SOON, |e| e.event == "task.finished");
    let seconds = on_second.until(SOON, |e| e.event == "task.finished");
    let ids = |events: &[SseEvent]| -> Vec<(String, String)> {
        of_task(events, id)
            .iter()
            .map(|e| (e.event.clone(), e.id.clone().unwrap_or_default()))
            .collect()
    };
    assert_eq!(ids(&firsts).len(), 2, "{firsts:#?}");
    assert_eq!(ids(&firsts), ids(&seconds));
    assert_eq!(ids(&firsts)[0].0, "task.created");
    let finished = firsts.last().expect("finished").json();
    assert_eq!(
        finished["data"]["task"]["status"],
        "REVOKED",
        "{}",
        pretty(&finished)
    );

    // A client resumes on the other replica from an event it saw on this one.
    let created_id = ids(&firsts)[0].1.clone();
    let mut moved = open(&api.on(1), "?types=task", Some(&created_id));
    let replayed = moved.until(SOON, |e| e.event == "task.finished");
    assert_eq!(ids(&replayed), ids(&firsts)[1..].to_vec(), "{replayed:#?}");
}

#[test]
fn a_lists_total_follows_every_change_made_on_any_replica() {
    // On MongoDB a replica keeps a page's total from one count to the next while no task
    // changes (`orchestra/src/totals.rs`); the events of the other replicas' changes are
    // what tell it the total moved.
    let cluster = Cluster::replicas(2, 0, &[]);
    let api = cluster.api();
    let clip = cluster.clip("in.mp4", 1, 160, 90);
    let (status, media) = api.on(0).upload(&clip, &[("title", "in")]);
    assert_eq!(status, 201, "{media}");
    let copy = cluster.profile_id("File Copy");
    let make = |on: usize, name: &str| -> String {
        let (status, task) = api.on(on).post(
            "/transform/tasks",
            &json!({"media_in_id": media["id"], "profile_id": copy, "filename": name,
                    "metadata": {"title": name}}),
        );
        assert_eq!(status, 201, "{task}");
        str_of(&task, "id").to_owned()
    };
    // A full page of one: its total is counted, then kept.
    const PAGE: &str = "/transform/tasks?status=PENDING&limit=1";
    let total = |on: usize| -> u64 {
        let (status, page) = api.on(on).get(PAGE);
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
        page["total"].as_u64().expect("total")
    };
    // The kept total lives 5 s; an event brings the change in a few milliseconds.
    let follows = |on: usize, expected: u64, what: &str| {
        let start = std::time::Instant::now();
        while total(on) != expected {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "replica {on} still answers {} after {what}, not {expected}",
                total(on)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    make(0, "a.mp4");
    make(0, "b.mp4");
    assert_eq!((total(1), total(1)), (2, 2));
    // Made on the other replica.
    let third = make(0, "c.mp4");
    follows(1, 3, "a task made on replica 0");
    // Made on this one: right at once.
    make(1, "d.mp4");
    assert_eq!(total(1), 4);
    // Revoked on the other: no longer PENDING.
    let (status, revoked) = api
        .on(0)
        .call("DELETE", &format!("/transform/tasks/{third}"), None);
    assert_eq!(status, 200, "{revoked}");
    follows(1, 3, "a task revoked on replica 0");
    follows(0, 3, "a task revoked on replica 0 itself");
    // Past the last item: no items, the total still told.
    let (status, page) = api
        .on(1)
        .get("/transform/tasks?status=PENDING&limit=1&skip=50");
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (
            page["items"].as_array().map(Vec::len),
            page["total"].as_u64()
        ),
        (Some(0), Some(3)),
        "{page}"
    );
}
