//! `OSCIED_MAX_UPLOAD_BYTES` on the real binary: an upload over it answers 413 with the JSON
//! error body and leaves no partial file; one under it is READY.

use oscied_e2e::orchestra::Orchestra;

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

#[test]
fn uploads_over_the_configured_limit_are_refused_and_leave_nothing() {
    let orchestra = Orchestra::start(&[
        ("OSCIED_MAX_UPLOAD_BYTES", "256K"),
        ("OSCIED_ROOT_SECRET", "limit-root-secret"),
    ]);
    let (status, _) = orchestra.client().as_user("root", "limit-root-secret").post(
        "/users",
        &serde_json::json!({"first_name": "U", "last_name": "L", "mail": "u@example.com", "secret": "upload-limit"}),
    );
    assert_eq!(status, 201);

    let work = orchestra.workdir();
    let small = oscied_e2e::media::clip(work, "small.mp4", 1, 160, 120);
    let big = work.join("big.mp4");
    std::fs::write(&big, vec![0u8; 1024 * 1024]).unwrap();

    let user = orchestra.client().as_user("u@example.com", "upload-limit");
    let upload = |file: &std::path::Path| user.upload(file, &[("title", "t")]);
    let (status, error) = upload(&big);
    assert_eq!(status, 413, "{error}");
    assert_eq!(error["error"]["code"], "payload_too_large");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("262144")
    );

    let storage = work.join("oscied-data/storage");
    assert_eq!(files_under(&storage.join("tmp")), 0);
    assert_eq!(files_under(&storage.join("medias")), 0);

    let (status, media) = upload(&small);
    assert_eq!(
        (status, media["status"].as_str()),
        (201, Some("READY")),
        "{media}"
    );
}
