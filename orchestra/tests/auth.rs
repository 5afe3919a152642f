//! Logins and tokens under attack (issue 9): failed logins are limited per account and per
//! client address (429, Retry-After, the JSON error), an unknown mail costs what a wrong
//! secret costs, mails Basic auth cannot carry are refused, and tokens are revoked by a
//! secret change and on request, on every replica of one store.

mod common;

use std::net::IpAddr;
use std::time::Instant;

use common::{App, As, assert_error, read};
use orchestra::config::Config;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

const ADA: As = As::User("ada@example.com", "analytical-engine");
const ADA_WRONG: As = As::User("ada@example.com", "not-her-secret");
/// A node route a unit reads.
const NODE_ROUTE: &str = "/node/units/unit-1/publications";

/// An orchestra with ada, and these login limits (bursts; refills of an hour, so nothing
/// comes back during a test).
async fn app_limited(account_burst: u32, address_burst: u32) -> App {
    let app = App::start_with(|c: &mut Config| {
        c.login_account_burst = account_burst;
        c.login_account_refill_secs = 3600;
        c.login_address_burst = address_burst;
        c.login_address_refill_secs = 3600;
    })
    .await;
    app.user("ada@example.com", "analytical-engine", false)
        .await;
    app
}

/// A 429 with Retry-After in (0, max] seconds and the JSON error naming `whom`.
async fn assert_limited(response: reqwest::Response, max_secs: u64, whom: &str) {
    let retry: u64 = response
        .headers()
        .get(header::RETRY_AFTER)
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry > 0 && retry <= max_secs, "Retry-After: {retry}");
    let answer = read(response).await;
    assert_error(
        &answer,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        whom,
    );
}

#[tokio::test]
async fn failed_logins_are_limited_per_account() {
    let app = app_limited(3, 1000).await;
    app.user("bob@example.com", "bobs-secret", false).await;
    for _ in 0..3 {
        assert_eq!(
            app.get("/users/me", ADA_WRONG).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = app
        .req(Method::GET, "/users/me", ADA_WRONG)
        .send()
        .await
        .unwrap();
    assert_limited(limited, 3600, "for this account").await;
    // Even the right secret waits while the bucket is empty: otherwise a guesser would keep
    // guessing and learn from the one answer that differs.
    let right = app.req(Method::GET, "/users/me", ADA).send().await.unwrap();
    assert_limited(right, 3600, "for this account").await;
    // Case does not make another account.
    let upper = app
        .req(
            Method::GET,
            "/users/me",
            As::User("ADA@example.com", "analytical-engine"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(upper.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other accounts from the same address are not affected.
    assert_eq!(
        app.get("/users/me", As::User("bob@example.com", "bobs-secret"))
            .await
            .0,
        StatusCode::OK
    );

    // root has a bucket of its own.
    for _ in 0..3 {
        assert_eq!(
            app.get("/users", As::User("root", "not-the-root-secret"))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
    let root = app
        .req(Method::GET, "/users", As::Root)
        .send()
        .await
        .unwrap();
    assert_limited(root, 3600, "for this account").await;
}

#[tokio::test]
async fn only_failures_count() {
    let app = app_limited(2, 2).await;
    assert_eq!(
        app.get("/users/me", ADA_WRONG).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Many right logins, and right logins of accounts never seen before (each an argon2
    // check), take nothing from the buckets.
    for _ in 0..20 {
        assert_eq!(app.get("/users/me", ADA).await.0, StatusCode::OK);
    }
    for n in 0..4 {
        let mail = format!("user{n}@example.com");
        app.user(&mail, "their-secret", false).await;
        assert_eq!(
            app.get("/users/me", As::User(&mail, "their-secret"))
                .await
                .0,
            StatusCode::OK
        );
    }
    let node = app.running.state.secrets.node.clone();
    for _ in 0..5 {
        let (status, body) = app.get(NODE_ROUTE, As::User("node", &node)).await;
        assert!(
            status.is_success() || status == StatusCode::NOT_FOUND,
            "{status} {body}"
        );
    }
    // The second failure is still a plain 401; the third is limited.
    assert_eq!(
        app.get("/users/me", ADA_WRONG).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/users/me", ADA_WRONG).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A client bound to another loopback address (a different peer for the orchestra).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn failed_logins_are_limited_per_address() {
    let app = app_limited(1000, 4).await;
    // Four mails, one failure each: the address has no failure left.
    for n in 0..4 {
        let who = As::User(&format!("guess{n}@example.com"), "whatever-1");
        assert_eq!(
            read(app.req(Method::GET, "/medias", who).send().await.unwrap())
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
    let fifth = app
        .req(
            Method::GET,
            "/medias",
            As::User("guess9@example.com", "whatever-1"),
        )
        .send()
        .await
        .unwrap();
    assert_limited(fifth, 3600, "from this address").await;
    // The address is closed to every account, root and the node secret included...
    let ada = app.req(Method::GET, "/users/me", ADA).send().await.unwrap();
    assert_limited(ada, 3600, "from this address").await;
    let root = app
        .req(Method::GET, "/users", As::Root)
        .send()
        .await
        .unwrap();
    assert_limited(root, 3600, "from this address").await;
    let node = app.running.state.secrets.node.clone();
    let unit = app
        .req(Method::GET, NODE_ROUTE, As::User("node", &node))
        .send()
        .await
        .unwrap();
    assert_limited(unit, 3600, "from this address").await;

    // ...and only to it: the orchestra keys on the TCP peer, not on what a client writes in
    // X-Forwarded-For.
    let other = client_from("127.0.0.2");
    let answer = other
        .get(format!("{}/users/me", app.base))
        .basic_auth("ada@example.com", Some("analytical-engine"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let forged = app
        .req(Method::GET, "/users/me", ADA)
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Real-IP", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// Time one refused `GET /users/me` as `who`, in ms.
async fn timed(app: &App, samples: &mut Vec<f64>, who: As<'_>) {
    let start = Instant::now();
    let (status, _) = app.get("/users/me", who).await;
    samples.push(start.elapsed().as_secs_f64() * 1000.0);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test]
async fn an_unknown_mail_costs_what_a_wrong_secret_costs() {
    let app = app_limited(1000, 1000).await;
    let (mut unknown, mut wrong) = (vec![], vec![]);
    // Interleaved, so a busy machine slows both alike.
    for n in 0..11 {
        let mail = format!("nobody{n}@example.com");
        timed(&app, &mut unknown, As::User(&mail, "not-her-secret")).await;
        timed(&app, &mut wrong, ADA_WRONG).await;
    }
    let (unknown, wrong) = (median(unknown), median(wrong));
    let ratio = unknown / wrong;
    eprintln!("unknown mail {unknown:.1} ms, wrong secret {wrong:.1} ms");
    // Before the dummy hash: 1–6 ms against 19–38 ms.
    assert!(
        (0.6..=1.6).contains(&ratio),
        "unknown mail {unknown:.1} ms, wrong secret {wrong:.1} ms (ratio {ratio:.2})"
    );
    assert!(
        unknown > 3.0,
        "an unknown mail must cost an argon2 check ({unknown:.1} ms)"
    );
}

#[tokio::test]
async fn mails_basic_auth_cannot_carry_are_refused() {
    let app = app_limited(10, 30).await;
    assert_error(
        &app.post(
            "/users",
            As::Root,
            json!({"first_name": "C", "last_name": "L", "mail": "co:lon@example.com", "secret": "12345678"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "basic",
    );
    let (_, ada) = app.get("/users/me", ADA).await;
    let path = format!("/users/{}", ada["id"].as_str().unwrap());
    assert_error(
        &app.patch(&path, ADA, json!({"mail": "ada:lovelace@example.com"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "basic",
    );
    assert_eq!(app.get("/users/me", ADA).await.1["mail"], "ada@example.com");
}

#[tokio::test]
async fn a_bearer_token_can_neither_change_the_secret_nor_mint_tokens() {
    let app = app_limited(10, 30).await;
    let bearer = app.token(ADA).await;
    let (_, me) = app.get("/users/me", As::Bearer(&bearer)).await;
    let path = format!("/users/{}", me["id"].as_str().unwrap());
    assert_error(
        &app.patch(
            &path,
            As::Bearer(&bearer),
            json!({"secret": "stolen-token-secret"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "needs the secret",
    );
    assert_eq!(app.get("/users/me", ADA).await.0, StatusCode::OK);
    assert_error(
        &app.post("/auth/token", As::Bearer(&bearer), json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "needs the secret",
    );
    // Other changes are fine with a token.
    let (status, changed) = app
        .patch(&path, As::Bearer(&bearer), json!({"first_name": "Augusta"}))
        .await;
    assert_eq!(
        (status, changed["first_name"].clone()),
        (StatusCode::OK, json!("Augusta"))
    );
}

#[tokio::test]
async fn tokens_are_revoked_one_or_all_and_by_a_secret_change() {
    let app = app_limited(10, 30).await;
    let (first, second, third) = (
        app.token(ADA).await,
        app.token(ADA).await,
        app.token(ADA).await,
    );
    // Log out: this token only.
    let (status, body) = app.delete("/auth/token", As::Bearer(&first)).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_error(
        &app.get("/users/me", As::Bearer(&first)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "token",
    );
    assert_eq!(
        app.get("/users/me", As::Bearer(&second)).await.0,
        StatusCode::OK
    );
    assert_error(
        &app.delete("/auth/token", ADA).await,
        StatusCode::BAD_REQUEST,
        "no_token",
        "bearer",
    );
    // Root's tokens are root's own: revoking them leaves Ada's.
    assert_eq!(
        app.delete("/auth/tokens", As::Root).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/users/me", As::Bearer(&second)).await.0,
        StatusCode::OK
    );
    // Log out everywhere (a token may do it).
    assert_eq!(
        app.delete("/auth/tokens", As::Bearer(&second)).await.0,
        StatusCode::NO_CONTENT
    );
    for gone in [&second, &third] {
        assert_eq!(
            app.get("/users/me", As::Bearer(gone)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.delete("/auth/tokens", ADA).await.0,
        StatusCode::NO_CONTENT
    );

    // A secret change revokes every token of the user, and not other users'.
    app.user("bob@example.com", "bobs-secret", false).await;
    let bobs = app.token(As::User("bob@example.com", "bobs-secret")).await;
    let before = app.token(ADA).await;
    let (_, me) = app.get("/users/me", ADA).await;
    let path = format!("/users/{}", me["id"].as_str().unwrap());
    let (status, _) = app
        .patch(&path, ADA, json!({"secret": "new-analytical"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.get("/users/me", As::Bearer(&before)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/users/me", As::Bearer(&bobs)).await.0,
        StatusCode::OK
    );
    let after = app
        .token(As::User("ada@example.com", "new-analytical"))
        .await;
    assert_eq!(
        app.get("/users/me", As::Bearer(&after)).await.0,
        StatusCode::OK
    );
    // An admin changing it (with its secret) revokes them too.
    let (status, _) = app
        .patch(&path, As::Root, json!({"secret": "third-analytical"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.get("/users/me", As::Bearer(&after)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_secret_change_on_one_replica_holds_on_the_other() {
    // Two orchestras, each with its own data dir (one orchestra per data dir), on one store.
    let nx = oscied_e2e::nx::NxServer::start();
    let uri = nx.uri();
    let one = App::start_with(|c: &mut Config| {
        c.mongodb_uri = Some(uri.clone());
        c.login_account_burst = 10;
        c.login_account_refill_secs = 3600;
        c.login_address_burst = 30;
        c.login_address_refill_secs = 3600;
    })
    .await;
    one.user("ada@example.com", "analytical-engine", false)
        .await;
    let two = App::start_with(|c: &mut Config| c.mongodb_uri = Some(uri)).await;
    let (_, me) = two.get("/users/me", ADA).await; // cached as verified on two
    assert_eq!(me["mail"], "ada@example.com");
    let bearer = two.token(ADA).await;
    assert_eq!(
        one.get("/users/me", As::Bearer(&bearer)).await.0,
        StatusCode::OK
    );

    let path = format!("/users/{}", me["id"].as_str().unwrap());
    let (status, _) = one
        .patch(&path, ADA, json!({"secret": "new-analytical"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(two.get("/users/me", ADA).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        two.get("/users/me", As::Bearer(&bearer)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        two.get("/users/me", As::User("ada@example.com", "new-analytical"))
            .await
            .0,
        StatusCode::OK
    );
    // And a token revoked on one is refused by the other.
    let again = two
        .token(As::User("ada@example.com", "new-analytical"))
        .await;
    assert_eq!(
        one.delete("/auth/token", As::Bearer(&again)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        two.get("/users/me", As::Bearer(&again)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn profiles_say_whether_they_are_built_in() {
    let app = app_limited(10, 30).await;
    let (_, all) = app.get("/transform/profiles?limit=100", ADA).await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        oscied_protocol::builtins::BUILTIN_PROFILES.len()
    );
    assert!(items.iter().all(|p| p["builtin"] == true), "{all}");
    let (status, by_root) = app
        .post(
            "/transform/profiles",
            As::Root,
            json!({"title": "Root's", "encoder_name": "copy"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{by_root}");
    assert_eq!(
        (by_root["user_id"].clone(), by_root["builtin"].clone()),
        (Value::Null, json!(false))
    );
    let (_, by_ada) = app
        .post(
            "/transform/profiles",
            ADA,
            json!({"title": "Ada's", "encoder_name": "copy"}),
        )
        .await;
    assert_eq!(by_ada["builtin"], false);
    let path = format!("/transform/profiles/{}", by_root["id"].as_str().unwrap());
    assert_eq!(app.get(&path, ADA).await.1["builtin"], false);
    let (_, doc) = app.get("/openapi.json", As::Nobody).await;
    assert!(doc["components"]["schemas"]["TransformProfile"]["properties"]["builtin"].is_object());
}

#[tokio::test]
async fn the_token_routes_are_documented() {
    let app = App::start().await;
    let (_, doc) = app.get("/openapi.json", As::Nobody).await;
    for (path, method) in [
        ("/api/v1/auth/token", "post"),
        ("/api/v1/auth/token", "delete"),
        ("/api/v1/auth/tokens", "delete"),
    ] {
        assert!(
            doc["paths"][path].get(method).is_some(),
            "{method} {path} missing"
        );
    }
}

#[tokio::test]
async fn built_ins_of_an_older_store_are_flagged_at_start() {
    use orchestra::models::{ListOptions, TransformProfile};
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path().join("data"));
    config.root_secret = Some("older-store-root".into());
    let all = ListOptions {
        limit: 100,
        skip: 0,
        sort: "title",
        descending: false,
        uncounted: false,
    };
    let first = orchestra::startup::build(config.clone()).await.unwrap();
    // As an older orchestra left them: no profile says builtin.
    for mut p in first
        .store
        .list_profiles(&Default::default(), &all)
        .await
        .unwrap()
        .items
    {
        p.builtin = false;
        assert!(first.store.update_profile(&p).await.unwrap());
    }
    let by_root = TransformProfile {
        id: uuid::Uuid::new_v4(),
        user_id: None,
        builtin: false,
        title: "Root's copy".into(),
        description: String::new(),
        encoder_name: oscied_protocol::EncoderName::Copy,
        encoder_string: String::new(),
        created_at: orchestra::models::now(),
    };
    first.store.create_profile(&by_root).await.unwrap();
    drop(first);

    let again = orchestra::startup::build(config).await.unwrap();
    let flags: Vec<(String, bool)> = again
        .store
        .list_profiles(&Default::default(), &all)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.title, p.builtin))
        .collect();
    assert_eq!(
        flags.len(),
        oscied_protocol::builtins::BUILTIN_PROFILES.len() + 1
    );
    for (title, builtin) in &flags {
        assert_eq!(*builtin, title != "Root's copy", "{flags:?}");
    }
}
