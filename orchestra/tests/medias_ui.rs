//! The API the web UI relies on, over real HTTP with real ffmpeg: thumbnails, the files of a
//! media's directory, the media cookie, root's tokens, the overview counts, the
//! `finished_after` filter and the `field` of 422 answers.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{App, As, ROOT_SECRET, assert_error, clip, read};
use oscied_protocol::sandbox::SandboxMode;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

const ADA_MAIL: &str = "ada@example.com";
const ADA_SECRET: &str = "analytical-engine";
const ADA: As = As::User(ADA_MAIL, ADA_SECRET);
const BOB: As = As::User("bob@example.com", "bobs-secret");

async fn app_with_users() -> App {
    let app = App::start().await;
    app.user(ADA_MAIL, ADA_SECRET, false).await;
    app.user("bob@example.com", "bobs-secret", false).await;
    app
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

async fn uploaded(app: &App, who: As<'_>, path: &Path, title: &str) -> Value {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let (status, media) = app.upload(who, path, &name, title).await;
    assert_eq!(status, StatusCode::CREATED, "{media}");
    media
}

/// `seconds` of a 440 Hz tone, AAC in MP4: a media without a video stream.
fn audio_clip(dir: &Path, name: &str, seconds: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args(["-c:a", "aac"])
        .arg(&path)
        .status()
        .expect("ffmpeg must be installed");
    assert!(status.success());
    path
}

/// What ffprobe says of a picture's bytes: (codec, width, height).
async fn picture(bytes: &[u8]) -> (String, u32, u32) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("picture.jpg");
    std::fs::write(&file, bytes).unwrap();
    let probe = oscied_protocol::probe::probe(&file, SandboxMode::On)
        .await
        .expect("ffprobe reads the picture");
    let video = probe.video().expect("a picture stream").clone();
    (
        video.codec_name.unwrap_or_default(),
        video.width.unwrap_or(0),
        video.height.unwrap_or(0),
    )
}

/// A frame as 80x45 grey pixels: of `source` at `at` seconds, or of a picture file.
fn grey(source: &Path, at: Option<f64>) -> Vec<u8> {
    let mut command = std::process::Command::new("ffmpeg");
    command.args(["-nostdin", "-v", "error"]);
    if let Some(at) = at {
        command.args(["-ss", &format!("{at}")]);
    }
    let output = command
        .arg("-i")
        .arg(source)
        .args(["-frames:v", "1", "-vf", "scale=80:45", "-pix_fmt", "gray"])
        .args(["-f", "rawvideo", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout.len(), 80 * 45);
    output.stdout
}

fn distance(a: &[u8], b: &[u8]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum()
}

async fn get_raw(app: &App, path: &str, who: As<'_>) -> reqwest::Response {
    app.req(Method::GET, path, who).send().await.unwrap()
}

/// Wait until `GET path` says `status` is `wanted`.
async fn wait_for(app: &App, path: &str, who: As<'_>, wanted: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = app.get(path, who).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] == wanted {
            return body;
        }
        assert!(
            !matches!(body["status"].as_str(), Some("FAILURE" | "REVOKED")),
            "{path} ended {body}"
        );
        assert!(Instant::now() < deadline, "{path} never {wanted}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn profile_id(app: &App, title: &str) -> String {
    let (_, profiles) = app
        .get(
            &format!("/transform/profiles?q={}", title.replace(' ', "%20")),
            ADA,
        )
        .await;
    id_of(&profiles["items"][0])
}

/// Ada launches a transform of `media` with the profile titled `profile`.
async fn launch(app: &App, media: &Value, profile: &str, filename: &str, queue: &str) -> Value {
    let (status, task) = app
        .post(
            "/transform/tasks",
            ADA,
            json!({"media_in_id": id_of(media), "profile_id": profile_id(app, profile).await,
                "filename": filename, "metadata": {"title": filename}, "queue": queue}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    task
}

/// A step of a transform task's node API (`claim`, `complete`) as a unit calls it: 200.
async fn unit_step(app: &App, task: &Value, step: &str, body: Value) {
    let secret = app.running.state.secrets.node.clone();
    let answer = app
        .client
        .post(format!(
            "{}/node/transform/tasks/{}/{step}",
            app.base,
            id_of(task)
        ))
        .basic_auth("node", Some(secret))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, body) = read(answer).await;
    assert_eq!(status, StatusCode::OK, "{step}: {body}");
}

#[tokio::test]
async fn thumbnails_are_made_at_upload_and_served_with_validators() {
    let app = app_with_users().await;
    let dir = tempfile::tempdir().unwrap();
    // 20 s: the frame at 10 % is the one at 2 s.
    let input = clip(dir.path(), "long.mp4", 20, 640, 360);
    let media = uploaded(&app, ADA, &input, "long").await;
    let id = id_of(&media);
    let kept = app.storage().join(format!("thumbnails/{id}.jpg"));
    assert!(kept.is_file(), "made with the upload, beside medias/");
    assert!(
        !app.storage()
            .join(format!("medias/{id}/thumbnail.jpg"))
            .exists()
            && std::fs::read_dir(app.storage().join(format!("medias/{id}")))
                .unwrap()
                .count()
                == 1,
        "the media's dir holds its file only"
    );
    assert!(
        std::fs::read_dir(app.storage().join("tmp"))
            .unwrap()
            .count()
            == 0,
        "no scratch left in tmp/"
    );

    let path = format!("/medias/{id}/thumbnail");
    let answer = get_raw(&app, &path, ADA).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::CONTENT_TYPE], "image/jpeg");
    let cache = answer.headers()[header::CACHE_CONTROL].to_str().unwrap();
    assert!(
        cache.starts_with("private") && cache.contains("max-age="),
        "{cache}"
    );
    let etag = answer.headers()[header::ETAG].to_str().unwrap().to_owned();
    let bytes = answer.bytes().await.unwrap();
    assert_eq!(
        picture(&bytes).await,
        ("mjpeg".to_owned(), 320, 180),
        "a JPEG 320 wide, 16:9 as the clip"
    );
    // The frame at 2 s: nearer to it than to those at 1 s and 3 s (testsrc moves).
    let shown = grey(&kept, None);
    let near = distance(&shown, &grey(&input, Some(2.0)));
    for other in [1.0, 3.0] {
        let far = distance(&shown, &grey(&input, Some(other)));
        assert!(near < far, "frame at 2 s: {near} vs at {other} s: {far}");
    }

    // Revalidation: 304 with the ETag.
    let again = app
        .req(Method::GET, &path, ADA)
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG].to_str().unwrap(), etag);

    // Visibility as the media's: another user 404, root sees it.
    assert_error(
        &app.get(&path, BOB).await,
        StatusCode::NOT_FOUND,
        "not_found",
        &id,
    );
    assert_eq!(
        get_raw(&app, &path, As::Root).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_raw(&app, &path, As::Nobody).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Missing (a media from before thumbnails): made on the first request.
    std::fs::remove_file(&kept).unwrap();
    let remade = get_raw(&app, &path, ADA).await;
    assert_eq!(remade.status(), StatusCode::OK);
    assert_eq!(picture(&remade.bytes().await.unwrap()).await.1, 320);
    assert!(kept.is_file());

    // A clip under 2 s gets the middle frame; a portrait one stays portrait.
    let short = clip(dir.path(), "short.mp4", 1, 180, 320);
    let short = uploaded(&app, ADA, &short, "short").await;
    let answer = get_raw(&app, &format!("/medias/{}/thumbnail", id_of(&short)), ADA).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let (_, width, height) = picture(&answer.bytes().await.unwrap()).await;
    assert_eq!((width, height), (320, 568));

    // Audio only: no thumbnail, a JSON 404 that says why, nothing made.
    let song = audio_clip(dir.path(), "tone.m4a", 2);
    let song = uploaded(&app, ADA, &song, "tone").await;
    let song_id = id_of(&song);
    assert_error(
        &app.get(&format!("/medias/{song_id}/thumbnail"), ADA).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "no video stream",
    );
    assert!(
        !app.storage()
            .join(format!("thumbnails/{song_id}.jpg"))
            .exists()
    );

    // Deleting the media removes its thumbnail.
    let (status, _) = app.delete(&format!("/medias/{id}"), ADA).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!kept.exists(), "the thumbnail went with the media");
    assert_error(
        &app.get(&path, ADA).await,
        StatusCode::NOT_FOUND,
        "not_found",
        &id,
    );
}

#[tokio::test]
async fn transform_outputs_get_a_thumbnail_and_their_files_are_served() {
    let app = app_with_users().await;
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 3, 320, 240);
    let media = uploaded(&app, ADA, &input, "input").await;
    // An HLS package, by the in-process transform unit.
    let task = launch(&app, &media, "HLS 720p", "index.m3u8", "transform").await;
    let out = task["media_out_id"].as_str().unwrap().to_owned();
    // Before it was READY: 409, as the download.
    let early = app.get(&format!("/medias/{out}/thumbnail"), ADA).await;
    if early.0 != StatusCode::OK {
        assert_error(&early, StatusCode::CONFLICT, "illegal_state", "PENDING");
    }
    wait_for(
        &app,
        &format!("/transform/tasks/{}", id_of(&task)),
        ADA,
        "SUCCESS",
    )
    .await;
    // Made unasked just after the SUCCESS (in the background: no completion waits for it).
    let made = app.storage().join(format!("thumbnails/{out}.jpg"));
    let asked = std::time::Instant::now();
    while !made.is_file() {
        assert!(
            asked.elapsed() < std::time::Duration::from_secs(15),
            "no thumbnail made for the output 15 s after its SUCCESS"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let answer = get_raw(&app, &format!("/medias/{out}/thumbnail"), ADA).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(picture(&answer.bytes().await.unwrap()).await.1, 320);

    // The package's files, by their relative paths, with the types players want.
    let media_dir = app.storage().join(format!("medias/{out}"));
    let files = |name: &str| format!("/medias/{out}/files/{name}");
    let manifest = get_raw(&app, &files("index.m3u8"), ADA).await;
    assert_eq!(manifest.status(), StatusCode::OK);
    assert_eq!(
        manifest.headers()[header::CONTENT_TYPE],
        "application/vnd.apple.mpegurl"
    );
    let text = manifest.text().await.unwrap();
    assert_eq!(
        text,
        std::fs::read_to_string(media_dir.join("index.m3u8")).unwrap()
    );
    let segment = text
        .lines()
        .find(|l| l.ends_with(".ts"))
        .expect("a segment in the playlist")
        .to_owned();
    let stored = std::fs::read(media_dir.join(&segment)).unwrap();
    let answer = get_raw(&app, &files(&segment), ADA).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::CONTENT_TYPE], "video/mp2t");
    assert_eq!(answer.bytes().await.unwrap().as_ref(), stored.as_slice());
    // Range, as /download has it.
    let len = stored.len();
    let (status, range, part) = app.ranged(&files(&segment), ADA, "bytes=100-199").await;
    assert_eq!(
        (status, range),
        (
            StatusCode::PARTIAL_CONTENT,
            Some(format!("bytes 100-199/{len}"))
        )
    );
    assert_eq!(part, &stored[100..200]);
    let (status, range, body) = app
        .ranged(&files(&segment), ADA, &format!("bytes={len}-"))
        .await;
    assert_eq!(
        (status, range),
        (
            StatusCode::RANGE_NOT_SATISFIABLE,
            Some(format!("bytes */{len}"))
        )
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "range_not_satisfiable");
    assert_eq!(
        app.head(&files(&segment), ADA).await,
        (StatusCode::OK, Some(len.to_string()))
    );

    // Nothing outside the directory, however it is spelled; no dot-files, no symlink out.
    std::fs::write(app.storage().join("tmp/secret"), b"TOP-SECRET-CONTENT").unwrap();
    std::os::unix::fs::symlink(app.storage().join("tmp/secret"), media_dir.join("out.ts")).unwrap();
    std::fs::write(media_dir.join(".hidden"), b"hidden").unwrap();
    for bad in [
        "../../tmp/secret",
        "..%2F..%2Ftmp%2Fsecret",
        "%2e%2e/%2e%2e/tmp/secret",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "index.m3u8%00",
        ".hidden",
        "out.ts",
        "missing.ts",
        "",
    ] {
        let url = format!("{}/medias/{out}/files/{bad}", app.base);
        let answer = app
            .client
            .get(&url)
            .basic_auth(ADA_MAIL, Some(ADA_SECRET))
            .send()
            .await
            .unwrap();
        let (status, body) = read(answer).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{bad:?}: {body}");
    }
    // The raw request, as a hostile client writes it (no client-side normalisation).
    let request = format!(
        "GET /api/v1/medias/{out}/files/../../../tmp/secret HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        common::basic(ADA_MAIL, ADA_SECRET)
    );
    let raw = common::raw(app.running.addr, request.as_bytes()).await;
    assert_eq!(raw.status, 404, "{:?}", String::from_utf8_lossy(&raw.body));
    assert!(!String::from_utf8_lossy(&raw.body).contains("TOP-SECRET"));
    // Another user's media: 404.
    assert_eq!(
        get_raw(&app, &files("index.m3u8"), BOB).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_completion_through_the_node_api_gets_a_thumbnail() {
    // A worker unit's completion, played through the node API: the orchestra moves the
    // attempt's directory into medias/<id>/ and makes the thumbnail from the shared storage.
    let app = app_with_users().await;
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", 2, 320, 240);
    let media = uploaded(&app, ADA, &input, "input").await;
    let task = launch(&app, &media, "Force 720p", "out.mp4", "nobody").await;
    let claim = json!({"unit_id": "far-1", "attempt": 1});
    unit_step(&app, &task, "claim", claim).await;
    let attempt_dir = app.storage().join(format!("tmp/{}/1", id_of(&task)));
    std::fs::create_dir_all(&attempt_dir).unwrap();
    let out = clip(&attempt_dir, "out.mp4", 2, 1280, 720);
    let probe = oscied_protocol::probe::probe(&out, SandboxMode::On)
        .await
        .unwrap();
    let output = json!({"size": std::fs::metadata(&out).unwrap().len(), "probe": probe});
    let success = json!({"unit_id": "far-1", "attempt": 1, "status": "SUCCESS", "error": null, "output": output});
    unit_step(&app, &task, "complete", success).await;
    let out_id = task["media_out_id"].as_str().unwrap();
    let answer = get_raw(&app, &format!("/medias/{out_id}/thumbnail"), ADA).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(
        app.storage()
            .join(format!("thumbnails/{out_id}.jpg"))
            .is_file()
    );
    assert_eq!(
        picture(&answer.bytes().await.unwrap()).await,
        ("mjpeg".to_owned(), 320, 180)
    );
}

fn cookie_of(answer: &reqwest::Response) -> String {
    answer.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_media_cookie_opens_the_media_routes_only() {
    let app = app_with_users().await;
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "clip.mp4", 2, 320, 240);
    let media = uploaded(&app, ADA, &input, "clip").await;
    let id = id_of(&media);
    let stored = std::fs::read(app.storage().join(media["uri"].as_str().unwrap())).unwrap();
    let ada = app.token(ADA).await;

    // Set with the bearer token; the cookie is that token, scoped, HttpOnly, strict.
    let answer = app
        .req(Method::PUT, "/auth/cookie", As::Bearer(&ada))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        cookie_of(&answer),
        format!("oscied_media={ada}; Path=/api/v1/medias; HttpOnly; SameSite=Strict")
    );
    let answer = app
        .req(Method::PUT, "/auth/cookie", As::Bearer(&ada))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(cookie_of(&answer).ends_with("; Secure"));
    // Basic credentials cannot be put in a cookie: use a token.
    assert_error(
        &read(
            app.req(Method::PUT, "/auth/cookie", ADA)
                .send()
                .await
                .unwrap(),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "bearer",
    );
    assert_eq!(
        app.req(Method::PUT, "/auth/cookie", As::Nobody)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // The cookie alone, as a <video> or an <img> sends it.
    let with_cookie = |method: Method, path: String, value: &str| {
        app.client
            .request(method, format!("{}{path}", app.base))
            .header(header::COOKIE, format!("theme=dark; oscied_media={value}"))
            // What a browser's <img> and <video> say of themselves.
            .header("sec-fetch-mode", "no-cors")
            .send()
    };
    let download = format!("/medias/{id}/download");
    let answer = with_cookie(Method::GET, download.clone(), &ada)
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.bytes().await.unwrap().as_ref(), stored.as_slice());
    let answer = with_cookie(Method::HEAD, download.clone(), &ada)
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let file = format!("/medias/{id}/files/clip.mp4");
    let answer = with_cookie(Method::GET, file.clone(), &ada).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::CONTENT_TYPE], "video/mp4");
    assert_eq!(answer.bytes().await.unwrap().as_ref(), stored.as_slice());
    let thumbnail = format!("/medias/{id}/thumbnail");
    let answer = with_cookie(Method::GET, thumbnail.clone(), &ada)
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()[header::CONTENT_TYPE], "image/jpeg");

    // Everything else ignores it: 401 as without credentials, nothing changed.
    for (method, path) in [
        (Method::GET, "/medias".to_owned()),
        (Method::GET, format!("/medias/{id}")),
        (Method::DELETE, format!("/medias/{id}")),
        (Method::GET, "/users/me".to_owned()),
        (Method::GET, "/overview".to_owned()),
        (Method::PUT, "/auth/cookie".to_owned()),
        (Method::POST, "/auth/token".to_owned()),
    ] {
        let answer = with_cookie(method, path, &ada).await.unwrap();
        assert_error(
            &read(answer).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "authentication required",
        );
    }
    let (status, still) = app.get(&format!("/medias/{id}"), ADA).await;
    assert_eq!(
        (status, still["status"].clone()),
        (StatusCode::OK, json!("READY"))
    );

    // Bob's cookie does not open Ada's media.
    let bob = app.token(BOB).await;
    assert_eq!(
        with_cookie(Method::GET, thumbnail.clone(), &bob)
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // A wrong or revoked token in the cookie: a JSON 401 with a challenge that opens no
    // password dialog in a browser.
    for value in ["not-a-token".to_owned(), ada.clone()] {
        if value == ada {
            let (status, _) = app.delete("/auth/token", As::Bearer(&ada)).await;
            assert_eq!(status, StatusCode::NO_CONTENT);
        }
        for path in [&download, &file, &thumbnail] {
            let answer = with_cookie(Method::GET, path.clone(), &value)
                .await
                .unwrap();
            assert_eq!(
                answer.headers()[header::WWW_AUTHENTICATE].to_str().unwrap(),
                "Bearer realm=\"OSCIED\""
            );
            assert_error(
                &read(answer).await,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "token",
            );
        }
    }
    // Any 401 to a page's request (a fetch of the UI's, an <img>) challenges Bearer, which
    // opens no browser dialog; a link typed in, or curl, still gets Basic.
    for (mode, challenge) in [
        (Some("cors"), "Bearer realm=\"OSCIED\""),
        (Some("same-origin"), "Bearer realm=\"OSCIED\""),
        (Some("no-cors"), "Bearer realm=\"OSCIED\""),
        (
            Some("navigate"),
            "Basic realm=\"OSCIED\", charset=\"UTF-8\"",
        ),
        (None, "Basic realm=\"OSCIED\", charset=\"UTF-8\""),
    ] {
        for (path, who) in [
            (thumbnail.as_str(), As::Nobody),
            ("/medias", As::Nobody),
            ("/users/me", As::User(ADA_MAIL, "wrong-secret")),
        ] {
            let mut request = app.req(Method::GET, path, who);
            if let Some(mode) = mode {
                request = request.header("sec-fetch-mode", mode);
            }
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(
                answer.headers()[header::WWW_AUTHENTICATE].to_str().unwrap(),
                challenge,
                "{path} with {mode:?}"
            );
        }
    }

    // Sign-out clears it, with or without credentials.
    let answer = app
        .req(Method::DELETE, "/auth/cookie", As::Nobody)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    let cleared = cookie_of(&answer);
    assert!(
        cleared.starts_with("oscied_media=; Path=/api/v1/medias; HttpOnly; SameSite=Strict")
            && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn root_mints_tokens_and_a_rotation_revokes_them() {
    let app = app_with_users().await;
    let root = app.token(As::Root).await;
    // It acts as root: every user listed, users created, no user account of its own.
    let (status, users) = app.get("/users", As::Bearer(&root)).await;
    assert_eq!((status, users["total"].clone()), (StatusCode::OK, json!(2)));
    let (status, _) = app
        .post(
            "/users",
            As::Bearer(&root),
            json!({"first_name": "C", "last_name": "Carol", "mail": "carol@example.com", "secret": "carols-secret"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_error(
        &app.get("/users/me", As::Bearer(&root)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "root",
    );
    // A token mints none.
    assert_error(
        &app.post("/auth/token", As::Bearer(&root), json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "secret",
    );
    // Revoked one at a time, and all at once.
    let (status, _) = app.delete("/auth/token", As::Bearer(&root)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/users", As::Bearer(&root)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (one, two) = (app.token(As::Root).await, app.token(As::Root).await);
    let ada = app.token(ADA).await;
    let (status, _) = app.delete("/auth/tokens", As::Bearer(&one)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for revoked in [&one, &two] {
        assert_eq!(
            app.get("/users", As::Bearer(revoked)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.get("/users/me", As::Bearer(&ada)).await.0,
        StatusCode::OK,
        "a user's tokens are the user's"
    );

    // A rotation of root's secret revokes root's tokens, and only those.
    let kept = app.token(As::Root).await;
    assert_eq!(app.get("/users", As::Bearer(&kept)).await.0, StatusCode::OK);
    let old_hash = app
        .running
        .state
        .store
        .root_secret_hash()
        .await
        .unwrap()
        .unwrap();
    let common::App {
        running,
        dir,
        client,
        ..
    } = app;
    let data_dir = running.state.config.data_dir.clone();
    running.shutdown().await.unwrap();
    let mut config = orchestra::config::Config::for_data_dir(data_dir);
    config.root_secret = Some("a-new-root-secret".into());
    config.rotate_root_secret = true;
    config.mongodb_uri = None;
    config.storage_root = None;
    // The lock is this process's own flock; a child another test forked a moment ago holds a
    // copy of it until it execs, so the restart may have to wait a little for it.
    let mut tries = 0;
    let running = loop {
        match orchestra::startup::spawn(config.clone()).await {
            Err(orchestra::startup::StartupError::DataDirBusy(..)) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => break other.expect("restarts"),
        }
    };
    let app = App {
        base: format!("http://{}/api/v1", running.addr),
        running,
        client,
        dir,
    };
    assert_error(
        &app.get("/users", As::Bearer(&kept)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "token",
    );
    // Another replica may still hold one (the rotation cleared this store's): its stamp of
    // the old secret refuses it.
    let straggler = "a-root-token-from-before";
    app.running
        .state
        .store
        .create_token(&orchestra::models::Token {
            hash: orchestra::auth::digest(&[straggler]),
            user_id: orchestra::tokens::ROOT_OWNER,
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            secret_stamp: orchestra::auth::secret_stamp(&old_hash),
        })
        .await
        .unwrap();
    assert_error(
        &app.get("/users", As::Bearer(straggler)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "revoked",
    );
    assert_eq!(
        app.get("/users/me", As::Bearer(&ada)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/users", As::User("root", ROOT_SECRET)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let fresh = app.token(As::User("root", "a-new-root-secret")).await;
    assert_eq!(
        app.get("/users", As::Bearer(&fresh)).await.0,
        StatusCode::OK
    );
}

/// `GET path` as `who`: the list's total.
async fn total(app: &App, path: &str, who: As<'_>) -> u64 {
    let (status, body) = app.get(path, who).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body["total"].as_u64().unwrap()
}

/// Every count of an overview is what the matching list says.
async fn assert_overview_matches_lists(app: &App, who: As<'_>, overview: &Value, since: &str) {
    for (status, n) in overview["medias"].as_object().unwrap() {
        let listed = total(app, &format!("/medias?status={status}"), who).await;
        assert_eq!(n.as_u64(), Some(listed), "medias {status}");
    }
    for kind in ["transform", "publisher"] {
        let counts = &overview[format!("{kind}_tasks")];
        let by_status = counts["by_status"].as_object().unwrap();
        assert_eq!(by_status.len(), 8, "every status: {counts}");
        for (status, n) in by_status {
            let listed = total(app, &format!("/{kind}/tasks?status={status}"), who).await;
            assert_eq!(n.as_u64(), Some(listed), "{kind} {status}");
        }
        let failed = total(
            app,
            &format!("/{kind}/tasks?status=FAILURE&finished_after={since}"),
            who,
        )
        .await;
        assert_eq!(counts["failed_last_24h"].as_u64(), Some(failed), "{kind}");
    }
}

#[tokio::test]
async fn the_overview_counts_what_the_lists_list() {
    let app = app_with_users().await;
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "clip.mp4", 1, 160, 120);
    let kept = uploaded(&app, ADA, &input, "kept").await;
    let gone = uploaded(&app, ADA, &input, "gone").await;
    uploaded(&app, BOB, &input, "bob's").await;
    let (status, _) = app.delete(&format!("/medias/{}", id_of(&gone)), ADA).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Ada: one task left queued, one failed by its unit (played through the node API).
    launch(&app, &kept, "Force 720p", "queued.mp4", "nobody").await;
    let failing = launch(&app, &kept, "Force 720p", "failing.mp4", "nobody").await;
    let claim = json!({"unit_id": "far-1", "attempt": 1});
    unit_step(&app, &failing, "claim", claim).await;
    let failure = json!({"unit_id": "far-1", "attempt": 1, "status": "FAILURE", "error": "ffmpeg said no", "output": null});
    unit_step(&app, &failing, "complete", failure).await;
    // A publication by the in-process publisher.
    let (status, publication) = app
        .post("/publisher/tasks", ADA, json!({"media_id": id_of(&kept)}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{publication}");
    wait_for(
        &app,
        &format!("/publisher/tasks/{}", id_of(&publication)),
        ADA,
        "SUCCESS",
    )
    .await;

    let since = (chrono::Utc::now() - chrono::Duration::hours(24))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, mine) = app.get("/overview", ADA).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    // Ada's own medias: the transform's PENDING output, the failed one's DELETED.
    assert_eq!(
        mine["medias"],
        json!({"PENDING": 1, "READY": 1, "DELETED": 2}),
        "{mine}"
    );
    assert_eq!(mine["transform_tasks"]["by_status"]["PENDING"], 1);
    assert_eq!(mine["transform_tasks"]["by_status"]["FAILURE"], 1);
    assert_eq!(mine["transform_tasks"]["by_status"]["SUCCESS"], 0);
    assert_eq!(mine["transform_tasks"]["failed_last_24h"], 1);
    assert_eq!(mine["publisher_tasks"]["by_status"]["SUCCESS"], 1);
    assert_eq!(mine["publisher_tasks"]["failed_last_24h"], 0);
    // The in-process transform and publisher units.
    assert_eq!(mine["units"], json!({"online": 2, "offline": 0}));
    let status_list = "/medias?status=PENDING,READY,DELETED";
    assert_overview_matches_lists(&app, ADA, &mine, &since).await;

    // Bob counts his own; root everyone's.
    let (_, his) = app.get("/overview", BOB).await;
    assert_eq!(
        his["medias"],
        json!({"PENDING": 0, "READY": 1, "DELETED": 0})
    );
    assert_eq!(his["transform_tasks"]["by_status"]["FAILURE"], 0);
    assert_overview_matches_lists(&app, BOB, &his, &since).await;
    let (_, all) = app.get("/overview", As::Root).await;
    assert_eq!(all["medias"]["READY"], 2);
    assert_eq!(
        total(&app, status_list, As::Root).await,
        all["medias"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    );
    assert_overview_matches_lists(&app, As::Root, &all, &since).await;
    assert_eq!(
        app.get("/overview", As::Nobody).await.0,
        StatusCode::UNAUTHORIZED
    );

    // finished_after: the failed task finished now, so not after a minute from now; a `+`
    // offset sent unencoded (a space) reads as the `+` it was; garbage is a 422 that names it.
    let later = (chrono::Utc::now() + chrono::Duration::minutes(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        total(
            &app,
            &format!("/transform/tasks?status=FAILURE&finished_after={later}"),
            ADA
        )
        .await,
        0
    );
    let plus = (chrono::Utc::now() - chrono::Duration::hours(1))
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    assert!(plus.contains("+02:00"), "{plus}");
    assert_eq!(
        total(
            &app,
            &format!("/transform/tasks?finished_after={plus}"),
            ADA
        )
        .await,
        1
    );
    let (status, body) = app
        .get("/transform/tasks?finished_after=yesterday", ADA)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "finished_after");
    // A comma list of statuses, as the UI's "running" link has it.
    assert_eq!(
        total(
            &app,
            "/transform/tasks?status=STARTED,PROGRESS,REVOKING",
            ADA
        )
        .await,
        0
    );
    assert_eq!(
        total(&app, "/transform/tasks?status=PENDING,FAILURE", ADA).await,
        2
    );
}

/// A 422's `field`, and the message it came with.
fn fault(answer: (StatusCode, Value)) -> (String, String) {
    let (status, body) = answer;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    (
        body["error"]["field"]
            .as_str()
            .unwrap_or("<none>")
            .to_owned(),
        body["error"]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn invalid_fields_are_named() {
    let app = app_with_users().await;
    // Profiles: the allow-list refusal names encoder_string, its message as before.
    let (field, message) = fault(
        app.post(
            "/transform/profiles",
            ADA,
            json!({"title": "evil", "encoder_name": "ffmpeg", "encoder_string": "-i /etc/passwd -f mp4"}),
        )
        .await,
    );
    assert_eq!(field, "encoder_string");
    assert!(message.contains("-i"), "{message}");
    let (status, profile) = app
        .post(
            "/transform/profiles",
            ADA,
            json!({"title": "mine", "encoder_name": "ffmpeg", "encoder_string": "-c:v libx264 -f mp4"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{profile}");
    let profile_path = format!("/transform/profiles/{}", id_of(&profile));
    for (body, wanted) in [
        (json!({"encoder_string": "-f lavfi"}), "encoder_string"),
        (json!({"title": "  "}), "title"),
        (json!({"description": "d".repeat(4001)}), "description"),
        (json!({"encoder_name": "vlc"}), "encoder_name"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let (field, _) = fault(app.patch(&profile_path, ADA, body.clone()).await);
        assert_eq!(field, wanted, "{body}");
    }
    let (status, body) = app
        .post(
            "/transform/profiles",
            ADA,
            json!({"title": "mine", "encoder_name": "copy"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::CONFLICT, json!("title"))
    );

    // Users.
    let user = |mail: &str, secret: &str, first: &str| json!({"first_name": first, "last_name": "L", "mail": mail, "secret": secret});
    for (body, wanted) in [
        (user("no-at-sign", "long-enough", "F"), "mail"),
        (user("a:b@example.com", "long-enough", "F"), "mail"),
        (user("c@example.com", "short", "F"), "secret"),
        (user("c@example.com", "long-enough", " "), "first_name"),
        (
            json!({"first_name": "F", "last_name": "L", "mail": "c@example.com"}),
            "secret",
        ),
    ] {
        let (field, _) = fault(app.post("/users", As::Root, body.clone()).await);
        assert_eq!(field, wanted, "{body}");
    }
    let (status, body) = app
        .post("/users", As::Root, user(ADA_MAIL, "long-enough", "F"))
        .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::CONFLICT, json!("mail"))
    );
    let (_, me) = app.get("/users/me", ADA).await;
    let (field, _) = fault(
        app.patch(
            &format!("/users/{}", id_of(&me)),
            ADA,
            json!({"last_name": ""}),
        )
        .await,
    );
    assert_eq!(field, "last_name");

    // Transform and publisher tasks.
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "clip.mp4", 1, 160, 120);
    let media = uploaded(&app, ADA, &input, "clip").await;
    let copy = profile_id(&app, "Force 720p").await;
    let task = |patch: Value| {
        let mut body = json!({"media_in_id": id_of(&media), "profile_id": copy,
            "filename": "out.mp4", "metadata": {"title": "out"}});
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        app.post("/transform/tasks", ADA, body)
    };
    for (patch, wanted) in [
        (json!({"filename": "out.exe"}), "filename"),
        (json!({"filename": "../out.mp4"}), "filename"),
        (json!({"priority": 12}), "priority"),
        (json!({"priority": -1}), "priority"),
        (json!({"queue": "publisher"}), "queue"),
        (json!({"metadata": {}}), "metadata.title"),
        (json!({"metadata": {"title": 3}}), "metadata.title"),
        (json!({"profile_id": null}), "profile_id"),
        (json!({"media_in_id": "not-a-uuid"}), "media_in_id"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let (field, _) = fault(task(patch.clone()).await);
        assert_eq!(field, wanted, "{patch}");
    }
    let (status, body) = task(json!({"media_in_id": uuid::Uuid::new_v4()})).await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::NOT_FOUND, json!("media_in_id"))
    );
    let (field, _) = fault(
        app.post(
            "/publisher/tasks",
            ADA,
            json!({"media_id": id_of(&media), "queue": "transform"}),
        )
        .await,
    );
    assert_eq!(field, "queue");

    // Medias: upload, register, patch.
    let form = |title: Option<&str>, file: Option<(&str, Vec<u8>)>| {
        let mut form = reqwest::multipart::Form::new();
        if let Some(title) = title {
            form = form.text("title", title.to_owned());
        }
        if let Some((name, bytes)) = file {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
            );
        }
        form
    };
    let video = std::fs::read(&input).unwrap();
    for (form, wanted) in [
        (form(None, Some(("a.mp4", video.clone()))), "title"),
        (form(Some(" "), Some(("a.mp4", video.clone()))), "title"),
        (form(Some("t"), None), "file"),
        (
            form(Some("t"), Some(("notes.txt", b"just text".to_vec()))),
            "file",
        ),
        (
            form(Some("t"), Some((".hidden.mp4", video.clone()))),
            "file",
        ),
    ] {
        let (field, _) = fault(app.post_form(ADA, form).await);
        assert_eq!(field, wanted);
    }
    let (field, _) = fault(
        app.post(
            "/medias",
            ADA,
            json!({"uri": "uploads/missing.mp4", "metadata": {"title": "t"}}),
        )
        .await,
    );
    assert_eq!(field, "uri");
    let (field, _) = fault(
        app.post(
            "/medias",
            ADA,
            json!({"uri": "uploads/x.mp4", "metadata": {}}),
        )
        .await,
    );
    assert_eq!(field, "metadata.title");
    let (field, _) = fault(
        app.patch(
            &format!("/medias/{}", id_of(&media)),
            ADA,
            json!({"metadata": {"title": null}}),
        )
        .await,
    );
    assert_eq!(field, "metadata.title");

    // Where no field is at fault, there is no `field` key at all.
    let (status, body) = app.get("/medias?limit=5000", ADA).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_object().unwrap().get("field").is_none(),
        "{body}"
    );
    let (status, body) = app.get("/medias/nope", ADA).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["code", "message"]
    );
}

#[tokio::test]
async fn what_the_users_page_does_works() {
    let app = app_with_users().await;
    app.user("adm@example.com", "admins-secret", true).await;
    let (_, ada) = app.get("/users/me", ADA).await;
    let ada_path = format!("/users/{}", id_of(&ada));
    let ada_token = app.token(ADA).await;

    // Changing one's own secret: Basic with the current one (auth.rs: a token may not).
    let (status, body) = app
        .patch(&ada_path, ADA, json!({"secret": "a-new-secret-1"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.get("/users/me", ADA).await.0, StatusCode::UNAUTHORIZED);
    let new_ada = As::User(ADA_MAIL, "a-new-secret-1");
    assert_eq!(app.get("/users/me", new_ada).await.0, StatusCode::OK);
    assert_eq!(
        app.get("/users/me", As::Bearer(&ada_token)).await.0,
        StatusCode::UNAUTHORIZED,
        "the change revoked her tokens"
    );

    // An admin with a bearer token toggles admin_platform; a plain user may not.
    let admin_token = app
        .token(As::User("adm@example.com", "admins-secret"))
        .await;
    let (status, body) = app
        .patch(
            &ada_path,
            As::Bearer(&admin_token),
            json!({"admin_platform": true}),
        )
        .await;
    assert_eq!(
        (status, body["admin_platform"].clone()),
        (StatusCode::OK, json!(true)),
        "{body}"
    );
    let (status, body) = app
        .patch(
            &ada_path,
            As::Bearer(&admin_token),
            json!({"admin_platform": false}),
        )
        .await;
    assert_eq!(
        (status, body["admin_platform"].clone()),
        (StatusCode::OK, json!(false)),
        "{body}"
    );
    let (_, bob) = app.get("/users/me", BOB).await;
    assert_error(
        &app.patch(
            &format!("/users/{}", id_of(&bob)),
            BOB,
            json!({"admin_platform": true}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
        "admin",
    );

    // Deleting a user who owns medias: a 409 naming them.
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "clip.mp4", 1, 160, 120);
    let media = uploaded(&app, new_ada, &input, "Ada's lecture").await;
    let refused = app.delete(&ada_path, As::Bearer(&admin_token)).await;
    assert_error(&refused, StatusCode::CONFLICT, "conflict", "Ada's lecture");
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&id_of(&media)),
        "{}",
        refused.1
    );
    let (status, _) = app
        .delete(&format!("/medias/{}", id_of(&media)), new_ada)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.delete(&ada_path, As::Bearer(&admin_token)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}
