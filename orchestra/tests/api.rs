//! The REST API over real HTTP, as a curl user would drive it: real ffprobe, real files.

mod common;

use common::{App, As, ROOT_SECRET, assert_error, clip, read};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

const ADA: As = As::User("ada@example.com", "analytical-engine");
const BOB: As = As::User("bob@example.com", "bobs-secret");

async fn app_with_users() -> App {
    let app = App::start().await;
    app.user("ada@example.com", "analytical-engine", false)
        .await;
    app.user("bob@example.com", "bobs-secret", false).await;
    app
}

#[tokio::test]
async fn health_and_openapi_need_no_credentials() {
    let app = App::start().await;
    let (status, health) = app.get("/health", As::Nobody).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health.get("broker").is_some());

    let (status, doc) = app.get("/openapi.json", As::Nobody).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/health", &["get"][..]),
        ("/api/v1/openapi.json", &["get"]),
        ("/api/v1/auth/token", &["post"]),
        ("/api/v1/users", &["get", "post"]),
        ("/api/v1/users/me", &["get"]),
        ("/api/v1/users/{id}", &["get", "patch", "delete"]),
        ("/api/v1/medias", &["get", "post"]),
        ("/api/v1/medias/{id}", &["get", "patch", "delete"]),
        ("/api/v1/medias/{id}/download", &["get"]),
        ("/api/v1/transform/encoders", &["get"]),
        ("/api/v1/transform/profiles", &["get", "post"]),
        (
            "/api/v1/transform/profiles/{id}",
            &["get", "patch", "delete"],
        ),
    ] {
        for method in methods {
            assert!(
                paths[path].get(*method).is_some(),
                "{method} {path} missing from the document"
            );
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "User",
        "Media",
        "TransformProfile",
        "Probe",
        "ErrorBody",
        "NewUser",
        "NewProfile",
        "MediaStatus",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
}

#[tokio::test]
async fn authentication_and_tokens() {
    let app = app_with_users().await;
    let answer = app
        .req(Method::GET, "/medias", As::Nobody)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(
        answer.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_error(
        &read(answer).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "authentication required",
    );

    assert_error(
        &app.get("/medias", As::User("ada@example.com", "wrong-one"))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "wrong credentials",
    );
    assert_error(
        &app.get("/medias", As::User("nobody@example.com", "whatever1"))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "wrong credentials",
    );
    assert_error(
        &app.get("/medias", As::User("root", "not-the-secret")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "wrong credentials",
    );
    // Mail is case-insensitive for login too.
    assert_eq!(
        app.get(
            "/users/me",
            As::User("ADA@Example.com", "analytical-engine")
        )
        .await
        .0,
        StatusCode::OK
    );
    // Units' credentials do not open user routes.
    let node = app.running.state.secrets.node.clone();
    assert_error(
        &app.get("/medias", As::User("node", &node)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "node",
    );

    let (status, token) = app.post("/auth/token", ADA, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    let bearer = token["token"].as_str().unwrap();
    let (status, me) = app.get("/users/me", As::Bearer(bearer)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["mail"], "ada@example.com");
    assert!(me.get("secret").is_none() && !me.to_string().contains("argon2"));
    assert_error(
        &app.get("/users/me", As::Bearer("made-up")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "token",
    );
    // Root mints tokens too (medias_ui.rs has the rest); units do not.
    let (status, body) = app.post("/auth/token", As::Root, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_error(
        &app.post("/auth/token", As::User("node", &node), json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "node",
    );
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let app = App::start_with(|c| c.token_ttl = 0).await;
    app.user("ada@example.com", "analytical-engine", false)
        .await;
    let (_, token) = app.post("/auth/token", ADA, json!({})).await;
    assert_error(
        &app.get("/users/me", As::Bearer(token["token"].as_str().unwrap()))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "expired",
    );
}

#[tokio::test]
async fn users_are_managed_by_root_and_admins_and_see_themselves() {
    let app = app_with_users().await;
    let (_, ada) = app.get("/users/me", ADA).await;
    let ada_id = ada["id"].as_str().unwrap().to_owned();
    assert_eq!(ada["name"], "Test ada@example.com");
    assert_eq!(ada["admin_platform"], false);

    // Mail is unique whatever its case.
    let dup = app.post("/users", As::Root, json!({"first_name": "A", "last_name": "B", "mail": "ADA@EXAMPLE.COM", "secret": "12345678"})).await;
    assert_error(&dup, StatusCode::CONFLICT, "conflict", "mail");
    // Only root and admins create users.
    let refused = app.post("/users", ADA, json!({"first_name": "A", "last_name": "B", "mail": "c@example.com", "secret": "12345678"})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "forbidden", "admin");
    app.user("admin@example.com", "admin-secret", true).await;
    let admin = As::User("admin@example.com", "admin-secret");
    let (status, _) = app.post("/users", admin, json!({"first_name": "C", "last_name": "D", "mail": "c@example.com", "secret": "12345678"})).await;
    assert_eq!(status, StatusCode::CREATED);

    // A user lists itself only; root and admins list everyone.
    let (_, mine) = app.get("/users", ADA).await;
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["items"][0]["id"], ada_id.as_str());
    let (_, all) = app.get("/users?sort=mail&limit=2", As::Root).await;
    assert_eq!(all["total"], 4);
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert_eq!(all["items"][0]["mail"], "ada@example.com");
    let (_, found) = app.get("/users?q=BOB", admin).await;
    assert_eq!(found["total"], 1);

    // Another user's account is a 404, not a 403.
    let (_, bob) = app.get("/users/me", BOB).await;
    let bob_path = format!("/users/{}", bob["id"].as_str().unwrap());
    assert_error(
        &app.get(&bob_path, ADA).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "user",
    );
    assert_eq!(app.get(&bob_path, admin).await.0, StatusCode::OK);

    // Self-service changes; promotion needs an admin.
    let ada_path = format!("/users/{ada_id}");
    let (status, changed) = app
        .patch(&ada_path, ADA, json!({"first_name": "Augusta"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["name"], "Augusta ada@example.com");
    assert_error(
        &app.patch(&ada_path, ADA, json!({"admin_platform": true}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "admin",
    );
    let (status, _) = app
        .patch(&ada_path, ADA, json!({"secret": "new-analytical"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get("/users/me", ADA).await.0, StatusCode::UNAUTHORIZED);
    let ada2 = As::User("ada@example.com", "new-analytical");
    assert_eq!(app.get("/users/me", ada2).await.0, StatusCode::OK);
    let (status, promoted) = app
        .patch(&ada_path, As::Root, json!({"admin_platform": true}))
        .await;
    assert_eq!(
        (status, promoted["admin_platform"].clone()),
        (StatusCode::OK, json!(true))
    );
    assert_error(
        &app.patch(&ada_path, As::Root, json!({"mail": "BOB@example.com"}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
        "mail",
    );

    assert_eq!(
        app.delete(&bob_path, As::Root).await.0,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &app.get(&bob_path, As::Root).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "user",
    );
    assert_eq!(app.get("/users/me", BOB).await.0, StatusCode::UNAUTHORIZED);
    assert_error(
        &app.get("/users/me", As::Root).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "root",
    );
}

#[tokio::test]
async fn upload_probe_list_download_patch_delete() {
    let app = app_with_users().await;
    let input = clip(app.dir.path(), "clip.mp4", 2, 320, 240);
    let original = std::fs::read(&input).unwrap();

    let (status, media) = app.upload(ADA, &input, "clip.mp4", "My clip").await;
    assert_eq!(status, StatusCode::CREATED, "{media}");
    let id = media["id"].as_str().unwrap().to_owned();
    assert_eq!(media["status"], "READY");
    assert_eq!(media["filename"], "clip.mp4");
    assert_eq!(media["uri"], format!("medias/{id}/clip.mp4"));
    assert_eq!(media["metadata"]["title"], "My clip");
    assert_eq!(media["size"], original.len() as u64);
    assert!(
        (media["duration"].as_f64().unwrap() - 2.0).abs() < 0.1,
        "{media}"
    );
    let streams = media["probe"]["streams"].as_array().unwrap();
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    assert_eq!(
        (video["width"].clone(), video["height"].clone()),
        (json!(320), json!(240))
    );
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["frame_rate"], 25.0);
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(audio["channels"], 2);
    assert_eq!(
        std::fs::read(app.storage().join(media["uri"].as_str().unwrap())).unwrap(),
        original
    );

    // Owner and admins see it; others get 404.
    let path = format!("/medias/{id}");
    assert_eq!(app.get(&path, ADA).await.1["id"], id.as_str());
    assert_error(
        &app.get(&path, BOB).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "media",
    );
    assert_eq!(app.get(&path, As::Root).await.0, StatusCode::OK);
    assert_eq!(app.get("/medias", BOB).await.1["total"], 0);

    // Download: whole, by range, HEAD.
    let download = format!("/medias/{id}/download");
    let whole = app.req(Method::GET, &download, ADA).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()[header::CONTENT_TYPE], "video/mp4");
    assert!(
        whole.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("clip.mp4")
    );
    assert_eq!(whole.bytes().await.unwrap().as_ref(), original.as_slice());
    let len = original.len();
    let (status, range, part) = app.ranged(&download, ADA, "bytes=100-1099").await;
    assert_eq!(
        (status, range),
        (
            StatusCode::PARTIAL_CONTENT,
            Some(format!("bytes 100-1099/{len}"))
        )
    );
    assert_eq!(part, &original[100..1100]);
    let (_, _, tail) = app.ranged(&download, ADA, "bytes=-10").await;
    assert_eq!(tail, &original[len - 10..]);
    let (status, _, _) = app
        .ranged(&download, ADA, &format!("bytes={}-", len + 10))
        .await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        app.head(&download, ADA).await,
        (StatusCode::OK, Some(len.to_string()))
    );
    assert_eq!(
        app.req(Method::GET, &download, BOB)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // Metadata merge patch.
    let (status, patched) = app
        .patch(
            &path,
            ADA,
            json!({"metadata": {"tags": ["a"], "lang": "fr"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["metadata"],
        json!({"title": "My clip", "tags": ["a"], "lang": "fr"})
    );
    let (_, patched) = app
        .patch(
            &path,
            ADA,
            json!({"metadata": {"lang": null, "title": "Renamed"}}),
        )
        .await;
    assert_eq!(
        patched["metadata"],
        json!({"title": "Renamed", "tags": ["a"]})
    );
    assert_error(
        &app.patch(&path, ADA, json!({"metadata": {"title": null}}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "title",
    );
    assert_error(
        &app.patch(&path, BOB, json!({"metadata": {"x": 1}})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "media",
    );
    assert_eq!(app.get(&path, ADA).await.1["metadata"]["title"], "Renamed");

    // Delete: files gone, record DELETED and hidden from the default list.
    assert_error(
        &app.delete(&path, BOB).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "media",
    );
    assert_eq!(app.delete(&path, ADA).await.0, StatusCode::NO_CONTENT);
    assert!(!app.storage().join(format!("medias/{id}")).exists());
    assert_eq!(app.get(&path, ADA).await.1["status"], "DELETED");
    assert_eq!(app.get("/medias", ADA).await.1["total"], 0);
    assert_eq!(app.get("/medias?status=DELETED", ADA).await.1["total"], 1);
    assert_eq!(
        app.req(Method::GET, &download, ADA)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_error(
        &app.delete(&path, ADA).await,
        StatusCode::CONFLICT,
        "illegal_state",
        "deleted",
    );
}

#[tokio::test]
async fn lists_filter_sort_and_page() {
    let app = app_with_users().await;
    let input = clip(app.dir.path(), "c.mp4", 1, 160, 120);
    for title in ["Charlie", "alpha", "Bravo"] {
        assert_eq!(
            app.upload(ADA, &input, "c.mp4", title).await.0,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        app.upload(BOB, &input, "c.mp4", "bob's").await.0,
        StatusCode::CREATED
    );

    let titles = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["metadata"]["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, page) = app.get("/medias", ADA).await;
    assert_eq!(page["total"], 3);
    assert_eq!(
        titles(&page),
        ["Bravo", "alpha", "Charlie"],
        "newest first by default"
    );
    let (_, page) = app.get("/medias?sort=created_at&limit=2&skip=1", ADA).await;
    assert_eq!(
        (page["total"].clone(), titles(&page)),
        (json!(3), vec!["alpha".to_owned(), "Bravo".to_owned()])
    );
    let (_, page) = app.get("/medias?q=ALP", ADA).await;
    assert_eq!(titles(&page), ["alpha"]);
    let (_, page) = app.get("/medias?q=%25", ADA).await;
    assert_eq!(page["total"], 0, "q is literal text, not a pattern");
    let (_, page) = app
        .get("/medias?status=READY,PENDING&sort=-title", ADA)
        .await;
    assert_eq!(page["total"], 3);
    let (_, page) = app.get("/medias", As::Root).await;
    assert_eq!(page["total"], 4);
    let (_, bob) = app.get("/users/me", BOB).await;
    let (_, page) = app
        .get(
            &format!("/medias?user_id={}", bob["id"].as_str().unwrap()),
            As::Root,
        )
        .await;
    assert_eq!(titles(&page), ["bob's"]);
    let (_, page) = app
        .get(
            &format!("/medias?user_id={}", bob["id"].as_str().unwrap()),
            ADA,
        )
        .await;
    assert_eq!(page["total"], 0, "a user never sees another's medias");

    assert_error(
        &app.get("/medias?limit=1001", ADA).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "limit",
    );
    assert_error(
        &app.get("/medias?sort=secret", ADA).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "sort",
    );
    assert_error(
        &app.get("/medias?stauts=READY", ADA).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "stauts",
    );
    assert_error(
        &app.get("/medias?status=DONE", ADA).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "status",
    );
    assert_error(
        &app.get("/medias?limit=many", ADA).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "limit",
    );
    assert_error(
        &app.get("/medias?user_id=nope", As::Root).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "user_id",
    );
}

#[tokio::test]
async fn register_adopts_files_under_uploads_only() {
    let app = app_with_users().await;
    let uploads = app.storage().join("uploads");
    clip(&uploads, "dropped.mp4", 1, 160, 120);
    std::fs::write(app.storage().join("tmp/secret.mp4"), b"x").unwrap();

    let (status, media) = app.post("/medias", ADA, json!({"uri": "uploads/dropped.mp4", "metadata": {"title": "Dropped", "source": "ftp"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{media}");
    assert_eq!(media["filename"], "dropped.mp4");
    assert_eq!(media["metadata"]["source"], "ftp");
    assert!(app.storage().join(media["uri"].as_str().unwrap()).is_file());
    assert!(
        !uploads.join("dropped.mp4").exists(),
        "the file is moved, not copied"
    );

    clip(&uploads, "other.mp4", 1, 160, 120);
    let (status, media) = app.post("/medias", ADA, json!({"uri": "uploads/other.mp4", "filename": "renamed.mp4", "metadata": {"title": "R"}})).await;
    assert_eq!(
        (status, media["filename"].clone()),
        (StatusCode::CREATED, json!("renamed.mp4"))
    );

    for uri in [
        "/etc/passwd",
        "uploads/../tmp/secret.mp4",
        "tmp/secret.mp4",
        "medias/x",
        "uploads/missing.mp4",
        "../uploads/x.mp4",
        "",
    ] {
        let answer = app
            .post(
                "/medias",
                ADA,
                json!({"uri": uri, "metadata": {"title": "t"}}),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "uploads/",
        );
    }
    std::fs::write(uploads.join("notes.txt"), "not a video").unwrap();
    let answer = app
        .post(
            "/medias",
            ADA,
            json!({"uri": "uploads/notes.txt", "metadata": {"title": "t"}}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unreadable_media",
        "notes.txt",
    );
    assert!(
        uploads.join("notes.txt").exists(),
        "a refused file is left where the user put it"
    );
    clip(&uploads, "third.mp4", 1, 160, 120);
    for filename in [
        "../x.mp4",
        "a/b.mp4",
        "..",
        "nul\0.mp4",
        "bell\u{7}.mp4",
        "tab\t.mp4",
    ] {
        let answer = app
            .post(
                "/medias",
                ADA,
                json!({"uri": "uploads/third.mp4", "filename": filename, "metadata": {"title": "t"}}),
            )
            .await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "filename",
        );
    }
    assert!(uploads.join("third.mp4").exists());
    assert_eq!(app.get("/medias", ADA).await.1["total"], 2);
}

#[tokio::test]
async fn bad_uploads_leave_nothing_behind() {
    let app = App::start_with(|c| c.max_upload_bytes = 64 * 1024).await;
    app.user("ada@example.com", "analytical-engine", false)
        .await;
    let input = clip(app.dir.path(), "small.mp4", 1, 160, 120);
    assert!(std::fs::metadata(&input).unwrap().len() < 64 * 1024);

    // Over the limit: 413, no half file, no record.
    let big = app.dir.path().join("big.mp4");
    std::fs::write(&big, vec![7u8; 200 * 1024]).unwrap();
    assert_error(
        &app.upload(ADA, &big, "big.mp4", "Big").await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "limit",
    );
    // Chunked (no Content-Length): the limit holds while streaming.
    let stream = futures_stream(vec![vec![1u8; 32 * 1024]; 8]);
    let form = reqwest::multipart::Form::new()
        .text("title", "Streamed")
        .part(
            "file",
            reqwest::multipart::Part::stream(stream).file_name("s.mp4"),
        );
    assert_error(
        &app.post_form(ADA, form).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "limit",
    );

    // Not media: 422, nothing kept.
    let junk = app.dir.path().join("junk.mp4");
    std::fs::write(&junk, b"this is not a video at all").unwrap();
    assert_error(
        &app.upload(ADA, &junk, "junk.mp4", "Junk").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unreadable_media",
        "junk.mp4",
    );

    // Unsafe filenames.
    for name in [
        "..",
        "../evil.mp4",
        "a/b.mp4",
        "a\\b.mp4",
        "nul\0.mp4",
        "bell\u{7}.mp4",
        "new\nline.mp4",
    ] {
        // Raw control characters cannot travel in an HTTP header: those are a 400.
        let answer = app.upload(ADA, &input, name, "Bad name").await;
        assert!(
            answer.0 == StatusCode::UNPROCESSABLE_ENTITY || answer.0 == StatusCode::BAD_REQUEST,
            "{name:?}: {answer:?}"
        );
        assert!(answer.1["error"]["code"].is_string(), "{answer:?}");
    }
    // Browsers send CR, LF and `"` percent-encoded (WHATWG multipart/form-data): decoded,
    // they are refused as a filename like the others.
    let clip_bytes = std::fs::read(&input).unwrap();
    for encoded in [
        "\"new%0Aline.mp4\"",
        "\"cr%0D.mp4\"",
        "\"../%22evil%22.mp4\"",
        "\"..\"",
    ] {
        let mut body = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nt\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename={encoded}\r\nContent-Type: video/mp4\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&clip_bytes);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        let answer = app
            .req(Method::POST, "/medias", ADA)
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(
            &read(answer).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "filename",
        );
    }
    let answer = app.upload(ADA, &input, "../evil.mp4", "Bad name").await;
    assert_error(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "filename",
    );

    // Missing parts and stray fields.
    let no_title = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(std::fs::read(&input).unwrap()).file_name("x.mp4"),
    );
    assert_error(
        &app.post_form(ADA, no_title).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "title",
    );
    let no_file = reqwest::multipart::Form::new().text("title", "t");
    assert_error(
        &app.post_form(ADA, no_file).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "file",
    );
    let stray = reqwest::multipart::Form::new()
        .text("title", "t")
        .text("colour", "red");
    assert_error(
        &app.post_form(ADA, stray).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "colour",
    );
    let bad_meta = reqwest::multipart::Form::new()
        .text("title", "t")
        .text("metadata", "[1,2]")
        .part(
            "file",
            reqwest::multipart::Part::bytes(std::fs::read(&input).unwrap()).file_name("x.mp4"),
        );
    assert_error(
        &app.post_form(ADA, bad_meta).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "metadata",
    );
    let broken = app
        .req(Method::POST, "/medias", ADA)
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XYZ")
        .body(
            "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\nabc",
        )
        .send()
        .await
        .unwrap();
    let broken = read(broken).await;
    assert!(
        broken.0 == StatusCode::BAD_REQUEST || broken.0 == StatusCode::UNPROCESSABLE_ENTITY,
        "{broken:?}"
    );
    assert_error(
        &read(
            app.req(Method::POST, "/medias", ADA)
                .header(header::CONTENT_TYPE, "text/plain")
                .body("hi")
                .send()
                .await
                .unwrap(),
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "multipart",
    );
    // Root owns nothing.
    assert_error(
        &app.upload(As::Root, &input, "x.mp4", "t").await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "root",
    );

    assert_eq!(
        app.get("/medias?status=PENDING,READY,DELETED", ADA).await.1["total"],
        0
    );
    assert!(
        app.stored_files().is_empty(),
        "left behind: {:?}",
        app.stored_files()
    );

    // And a good one still works at the end.
    let (status, media) = app.upload(ADA, &input, "Émission du soir.mp4", "ok").await;
    assert_eq!(status, StatusCode::CREATED, "{media}");
    assert_eq!(media["filename"], "Émission du soir.mp4");
}

fn futures_stream(chunks: Vec<Vec<u8>>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ))
}

#[tokio::test]
async fn malformed_and_invalid_json_bodies() {
    let app = app_with_users().await;
    let raw = |body: &'static str| {
        app.req(Method::POST, "/transform/profiles", ADA)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };
    assert_error(
        &read(raw("{\"title\": ").await.unwrap()).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        "EOF",
    );
    assert_error(
        &read(raw("not json").await.unwrap()).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        "expected",
    );
    let profiles = "/transform/profiles";
    assert_error(
        &app.post(
            profiles,
            ADA,
            json!({"encoder_name": "ffmpeg", "encoder_string": ""}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "title",
    );
    assert_error(
        &app.post(
            profiles,
            ADA,
            json!({"title": "t", "encoder_name": "ffmpeg", "colour": "red"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "colour",
    );
    assert_error(
        &app.post(
            profiles,
            ADA,
            json!({"title": 42, "encoder_name": "ffmpeg"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "title",
    );
    assert_error(
        &app.post(
            profiles,
            ADA,
            json!({"title": "t", "encoder_name": "dashcast"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "encoder_name",
    );
    assert_error(
        &app.post(
            profiles,
            ADA,
            json!({"title": "  ", "encoder_name": "copy"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "title",
    );
    assert_error(
        &app.post(
            "/users",
            As::Root,
            json!({"first_name": "A", "last_name": "B", "mail": "x@example.com"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "secret",
    );
    assert_error(&app.post("/users", As::Root, json!({"first_name": "A", "last_name": "B", "mail": "not-a-mail", "secret": "12345678"})).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "mail");
    assert_error(&app.post("/users", As::Root, json!({"first_name": "A", "last_name": "B", "mail": "s@example.com", "secret": "short"})).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "secret");
    assert_error(&app.post("/users", As::Root, json!({"first_name": "A", "last_name": "B", "mail": "s@example.com", "secret": "12345678", "admin_platform": "yes"})).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "admin_platform");
    assert_error(
        &app.post("/medias", ADA, json!({"uri": "uploads/x.mp4"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "metadata",
    );
    assert_error(
        &app.post(
            "/medias",
            ADA,
            json!({"uri": "uploads/x.mp4", "metadata": {"lang": "fr"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "title",
    );
    assert_error(
        &app.post(
            "/medias",
            ADA,
            json!({"uri": "uploads/x.mp4", "metadata": {"title": 5}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "title",
    );
    assert_error(
        &app.post(
            "/medias",
            ADA,
            json!({"uri": 5, "metadata": {"title": "t"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "uri",
    );
    // Unknown routes, methods and ids answer JSON too.
    assert_error(
        &app.get("/nothing-here", ADA).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "route",
    );
    assert_error(
        &app.send_json(Method::PUT, "/medias", ADA, json!({})).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "PUT",
    );
    assert_error(
        &app.get("/medias/not-a-uuid", ADA).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "media",
    );
    assert_error(
        &app.get(
            "/transform/profiles/00000000-0000-4000-8000-000000000000",
            ADA,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        "profile",
    );
}

#[tokio::test]
async fn encoder_strings_are_validated_at_profile_creation() {
    let app = app_with_users().await;
    let profile = |s: &str| json!({"title": format!("refused {s}"), "encoder_name": "ffmpeg", "encoder_string": s});
    for (encoder_string, words) in [
        ("-i /etc/passwd -c:v libx264", "-i"),
        ("-c:v libx264 second.mp4", "stray argument"),
        ("-c:v libx264 -f mp4 /tmp/out.mp4", "stray argument"),
        ("-metadata /abs/path", "key=value"),
        ("-metadata ../relative/path", "key=value"),
        ("-vf movie=/etc/passwd", "movie"),
        ("-af amovie=x.wav", "amovie"),
        ("-filter_complex 'movie=x.mp4[a];[0:v][a]overlay'", "movie"),
        ("-vf subtitles=/etc/passwd", "subtitles"),
        ("-vf loop=loop=-1:size=1", "loop"),
        ("-c:v http://example.com/x", "encoder name"),
        ("-c:v file:secret", "-c:v"),
        (
            "-map 0:a -c:a copy -f s16le -force_fps oscied-data/root_secret -map 0 -c:a aac",
            "stray argument",
        ),
        ("-f TEE", "TEE"),
        ("-pass 1", "-pass"),
        ("-x264-params keyint=50:stats=x.log", "stats"),
        ("-x265-params csv=x.csv", "csv"),
        ("-c:v libx264 -nosuchoption 1", "-nosuchoption"),
        ("-vf 'scale=1:2", "quoting"),
        ("-c:v \"libx264", "quoting"),
        ("-progress http://x", "-progress"),
        ("-passlogfile x", "file"),
        ("-f tee", "tee"),
    ] {
        let answer = app
            .post("/transform/profiles", ADA, profile(encoder_string))
            .await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            words,
        );
    }
    assert_eq!(
        app.get("/transform/profiles?q=refused", ADA).await.1["total"],
        0
    );
}

#[tokio::test]
async fn profiles_and_encoders() {
    let app = app_with_users().await;
    let (status, encoders) = app.get("/transform/encoders", ADA).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = encoders["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["copy", "ffmpeg"]);
    // The ffmpeg entry documents its allow-list; copy takes no encoder string.
    assert!(encoders["items"][0].get("allowed").is_none());
    let allowed = &encoders["items"][1]["allowed"];
    let named = |list: &str, name: &str| {
        allowed[list]
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["name"] == name || *item == name)
    };
    assert!(named("options", "-c") && named("options", "-movflags"));
    assert!(!named("options", "-pass") && !named("options", "-passlogfile"));
    assert!(named("filters", "scale") && !named("filters", "movie"));
    assert!(named("formats", "mp4") && !named("formats", "tee"));
    assert!(named("codecs", "libx264") && named("codecs", "copy"));
    assert!(named("x264_params", "keyint") && !named("x264_params", "stats"));
    assert!(named("x265_params", "crf") && !named("x265_params", "csv"));
    let scale = allowed["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "scale")
        .unwrap();
    assert_eq!(scale["positional"][0], "w");
    let c = allowed["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "-c")
        .unwrap();
    assert_eq!(c["specifier"], "stream");
    assert!(c["value"].as_str().unwrap().contains("encoder"));

    // The built-ins are seeded, owned by nobody.
    let (_, builtins) = app.get("/transform/profiles?limit=100", ADA).await;
    let titles: Vec<_> = builtins["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for title in [
        "File Copy",
        "Deinterlace",
        "Force 720p",
        "HQ PAL-SD",
        "Negate",
        "Speed-up 2x",
        "Tablet 480p/25",
        "HLS 720p",
        "DASH 720p",
    ] {
        assert!(
            titles.contains(&title),
            "built-in {title} missing: {titles:?}"
        );
    }
    assert!(
        builtins["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["user_id"].is_null())
    );
    let (_, copy) = app.get("/transform/profiles?encoder_name=copy", ADA).await;
    assert_eq!(copy["total"], 1);
    let builtin_id = copy["items"][0]["id"].as_str().unwrap().to_owned();

    let (status, mine) = app.post("/transform/profiles", ADA, json!({"title": "Small", "description": "tiny", "encoder_name": "ffmpeg", "encoder_string": "-vf scale=-2:240 -c:v libx264 -crf 28"})).await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let (_, ada) = app.get("/users/me", ADA).await;
    assert_eq!(mine["user_id"], ada["id"]);
    let path = format!("/transform/profiles/{}", mine["id"].as_str().unwrap());
    assert_eq!(
        app.get(&path, BOB).await.1["title"],
        "Small",
        "profiles are readable by all users"
    );
    assert_error(
        &app.post(
            "/transform/profiles",
            BOB,
            json!({"title": "Small", "encoder_name": "copy"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
        "title",
    );

    assert_error(
        &app.patch(&path, BOB, json!({"title": "Mine now"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "owner",
    );
    let (status, changed) = app
        .patch(&path, ADA, json!({"encoder_string": "-vf scale=-2:360"}))
        .await;
    assert_eq!(
        (status, changed["encoder_string"].clone()),
        (StatusCode::OK, json!("-vf scale=-2:360"))
    );
    assert_error(
        &app.patch(&path, ADA, json!({"encoder_string": "-i x"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        "-i",
    );
    assert_error(
        &app.patch(&path, ADA, json!({"title": "File Copy"})).await,
        StatusCode::CONFLICT,
        "conflict",
        "title",
    );

    let builtin = format!("/transform/profiles/{builtin_id}");
    assert_error(
        &app.patch(&builtin, ADA, json!({"description": "mine"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "built-in",
    );
    assert_error(
        &app.delete(&builtin, ADA).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "built-in",
    );
    assert_eq!(
        app.patch(&builtin, As::Root, json!({"description": "A copy"}))
            .await
            .1["description"],
        "A copy"
    );

    assert_error(
        &app.delete(&path, BOB).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "owner",
    );
    assert_eq!(app.delete(&path, ADA).await.0, StatusCode::NO_CONTENT);
    assert_error(
        &app.get(&path, ADA).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "profile",
    );
}

#[tokio::test]
async fn the_root_secret_is_generated_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = orchestra::config::Config::for_data_dir(&data);
    config.root_secret = None;
    let first = orchestra::startup::build(config.clone()).await.unwrap();
    let kept = std::fs::read_to_string(data.join("root_secret")).unwrap();
    assert_eq!(Some(kept.trim()), first.secrets.root.as_deref());
    assert_ne!(first.secrets.root.as_deref(), Some(ROOT_SECRET));
    drop(first);
    let again = orchestra::startup::build(config).await.unwrap();
    assert_eq!(again.secrets.root.as_deref(), Some(kept.trim()));
    // Built-ins are seeded once, not again at the next start.
    let opts = orchestra::models::ListOptions::count_only();
    let total = again
        .store
        .list_profiles(&Default::default(), &opts)
        .await
        .unwrap()
        .total;
    assert_eq!(
        total,
        oscied_protocol::builtins::BUILTIN_PROFILES.len() as u64
    );
}

/// Metadata of exactly `bytes` bytes of compact JSON: `{"pad":"x…","title":"t"}`.
fn metadata_of(bytes: usize) -> Value {
    json!({"title": "t", "pad": "x".repeat(bytes - 22)})
}

#[tokio::test]
async fn metadata_is_capped_at_64_kib_wherever_it_is_set() {
    const LIMIT: usize = 64 * 1024;
    let app = app_with_users().await;
    let input = clip(app.dir.path(), "clip.mp4", 1, 160, 120);
    let form = |metadata: &Value| {
        reqwest::multipart::Form::new()
            .text("title", "t")
            .text("metadata", metadata.to_string())
            .part(
                "file",
                reqwest::multipart::Part::bytes(std::fs::read(&input).unwrap())
                    .file_name("clip.mp4"),
            )
    };
    let too_big = |answer: &(StatusCode, Value)| {
        assert_error(
            answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "65536 bytes",
        );
    };

    // Upload: at the limit passes, one byte more is refused and leaves nothing.
    too_big(&app.post_form(ADA, form(&metadata_of(LIMIT + 1))).await);
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());
    let (status, media) = app.post_form(ADA, form(&metadata_of(LIMIT))).await;
    assert_eq!(status, StatusCode::CREATED, "{media}");
    let id = media["id"].as_str().unwrap().to_owned();

    // Register.
    let uploads = app.storage().join("uploads");
    clip(&uploads, "dropped.mp4", 1, 160, 120);
    too_big(
        &app.post(
            "/medias",
            ADA,
            json!({"uri": "uploads/dropped.mp4", "metadata": metadata_of(LIMIT + 1)}),
        )
        .await,
    );
    assert!(
        uploads.join("dropped.mp4").exists(),
        "a refused file stays put"
    );

    // Patch: the merged result counts, not the patch alone.
    let path = format!("/medias/{id}");
    too_big(
        &app.patch(&path, ADA, json!({"metadata": {"more": "y"}}))
            .await,
    );
    let (status, patched) = app
        .patch(&path, ADA, json!({"metadata": {"pad": null, "more": "y"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["metadata"], json!({"title": "t", "more": "y"}));
    too_big(
        &app.patch(&path, ADA, json!({"metadata": {"pad": "x".repeat(LIMIT)}}))
            .await,
    );
    assert_eq!(app.get(&path, ADA).await.1["metadata"], patched["metadata"]);

    // A transform task's output metadata.
    let (_, profiles) = app.get("/transform/profiles?q=force%20720p", ADA).await;
    let task = json!({"media_in_id": id, "profile_id": profiles["items"][0]["id"],
        "filename": "o.mp4", "metadata": metadata_of(LIMIT + 1)});
    too_big(&app.post("/transform/tasks", ADA, task).await);
    assert_eq!(app.get("/transform/tasks", ADA).await.1["total"], 0);
}

#[tokio::test]
async fn dot_filenames_are_refused() {
    let app = app_with_users().await;
    let input = clip(app.dir.path(), "clip.mp4", 1, 160, 120);
    for name in [".hidden.mp4", ".mp4"] {
        assert_error(
            &app.upload(ADA, &input, name, "t").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "must not start with .",
        );
    }
    let uploads = app.storage().join("uploads");
    clip(&uploads, ".dotted.mp4", 1, 160, 120);
    clip(&uploads, "plain.mp4", 1, 160, 120);
    for body in [
        json!({"uri": "uploads/.dotted.mp4", "metadata": {"title": "t"}}),
        json!({"uri": "uploads/plain.mp4", "filename": ".renamed.mp4", "metadata": {"title": "t"}}),
    ] {
        assert_error(
            &app.post("/medias", ADA, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "dot files",
        );
    }
    assert!(uploads.join(".dotted.mp4").exists() && uploads.join("plain.mp4").exists());
    assert_eq!(app.get("/medias", ADA).await.1["total"], 0);
    assert!(app.stored_files().is_empty(), "{:?}", app.stored_files());
}

#[tokio::test]
async fn download_ranges_follow_rfc_9110() {
    let app = app_with_users().await;
    let input = clip(app.dir.path(), "clip.mp4", 2, 320, 240);
    let (_, media) = app.upload(ADA, &input, "clip.mp4", "c").await;
    let stored = std::fs::read(app.storage().join(media["uri"].as_str().unwrap())).unwrap();
    let len = stored.len();
    let download = format!("/medias/{}/download", media["id"].as_str().unwrap());
    let get = |headers: Vec<(&'static str, String)>| {
        let mut request = app.req(Method::GET, &download, ADA);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let whole = get(vec![]).await.unwrap();
    let etag = whole.headers()[header::ETAG].to_str().unwrap().to_owned();
    let modified = whole.headers()[header::LAST_MODIFIED]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(whole.bytes().await.unwrap().as_ref(), stored.as_slice());

    // A suffix longer than the file: the whole file, as 206.
    let r = get(vec![("range", "bytes=-999999999".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()[header::CONTENT_RANGE],
        format!("bytes 0-{}/{len}", len - 1)
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), stored.as_slice());

    // Ignored: another unit, several ranges, a malformed one: 200 with the whole file.
    for range in ["items=0-1", "bytes=0-1,10-20", "bytes=5-2", "bytes=abc"] {
        let r = get(vec![("range", range.into())]).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{range}");
        assert!(r.headers().get(header::CONTENT_RANGE).is_none(), "{range}");
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            stored.as_slice(),
            "{range}"
        );
    }

    // If-Range: the current ETag or date keeps the range; anything else gets the whole file.
    for validator in [etag.clone(), modified.clone()] {
        let r = get(vec![
            ("range", "bytes=10-19".into()),
            ("if-range", validator.clone()),
        ])
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{validator}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &stored[10..20]);
    }
    for validator in [
        "\"other\"".to_owned(),
        format!("W/{etag}"),
        "Mon, 01 Jan 2001 00:00:00 GMT".to_owned(),
    ] {
        let r = get(vec![
            ("range", "bytes=10-19".into()),
            ("if-range", validator.clone()),
        ])
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{validator}");
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            stored.as_slice(),
            "{validator}"
        );
    }

    // Unsatisfiable: 416, Content-Range: bytes */LEN, the JSON body.
    let r = get(vec![("range", format!("bytes={len}-"))]).await.unwrap();
    assert_eq!(r.headers()[header::CONTENT_RANGE], format!("bytes */{len}"));
    assert_error(
        &read(r).await,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
        "range",
    );
    // Conditional GETs.
    let r = get(vec![("if-none-match", etag.clone())]).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = get(vec![("if-match", "\"other\"".into())]).await.unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(read(r).await.1["error"]["code"], "precondition_failed");
}
