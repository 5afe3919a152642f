//! The README's curl walkthrough, run as written against the real `orchestra` binary: once on
//! the embedded SQLite store, once on NX-27017 through `OSCIED_MONGODB_URI`.

use std::path::Path;
use std::process::Command;

use oscied_e2e::nx::NxServer;
use oscied_e2e::orchestra::{Orchestra, curl};

/// The shell blocks between the walkthrough markers of the README, in order.
fn walkthrough_script() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md at the workspace root");
    let start = readme
        .find("<!-- walkthrough:start -->")
        .expect("walkthrough start marker");
    let end = readme
        .find("<!-- walkthrough:end -->")
        .expect("walkthrough end marker");
    let mut script = String::from("set -euo pipefail\n");
    let mut in_block = false;
    for line in readme[start..end].lines() {
        match (in_block, line.trim()) {
            (false, "```sh") => in_block = true,
            (true, "```") => in_block = false,
            (true, _) => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    assert!(script.contains("curl"), "the walkthrough has curl commands");
    script
}

/// Run the walkthrough in the orchestra's working directory, as a user next to it would.
fn run_walkthrough(orchestra: &Orchestra) -> String {
    // A hung step (a task that never ends) fails the test instead of hanging it.
    let output = Command::new("timeout")
        .args(["300", "bash", "-c"])
        .arg(walkthrough_script())
        .current_dir(orchestra.workdir())
        .env("API", orchestra.api())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the README walkthrough failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\norchestra log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        orchestra.log_tail()
    );
    stdout
}

/// What the walkthrough prints that a user would look at.
fn check_output(stdout: &str, store: &str) {
    assert!(
        stdout.contains(&format!("\"store_kind\": \"{store}\"")),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"status\": \"READY\""),
        "the uploaded media is READY: {stdout}"
    );
    assert!(
        stdout.contains("\"height\": 360"),
        "the probe shows the clip's height: {stdout}"
    );
    assert!(
        stdout.contains("\"My first clip\""),
        "the list finds the clip: {stdout}"
    );
    assert!(
        stdout.contains("\"demo\""),
        "the metadata patch applied: {stdout}"
    );
    for builtin in ["File Copy", "Tablet 480p/25", "HLS 720p", "DASH 720p"] {
        assert!(
            stdout.contains(builtin),
            "built-in {builtin} listed: {stdout}"
        );
    }
    assert!(
        stdout.contains("\"Small 240p\""),
        "the new profile: {stdout}"
    );
    assert!(
        stdout.contains("\"height\": 720") && stdout.contains("\"status\":\"SUCCESS\""),
        "the transform succeeded and its output probes 720 high: {stdout}"
    );
    assert!(
        stdout.contains("\"percent\":"),
        "progress was shown: {stdout}"
    );
    assert!(
        stdout.contains("202") && stdout.contains("\"DELETED\""),
        "the running task was revoked (202) and its output DELETED: {stdout}"
    );
    assert!(
        stdout.contains("200 video/mp4") && stdout.contains("\n206\n"),
        "the published URL serves the file, whole and by Range: {stdout}"
    );
    assert!(
        stdout.contains("unpublish it first") && stdout.contains("\n404\n"),
        "the published media could not be deleted; unpublished, its URL answers 404: {stdout}"
    );
    assert!(
        stdout.contains("\n{}\n"),
        "public_uris is empty once unpublished: {stdout}"
    );
    assert!(
        stdout.contains("\"Ada Lovelace\""),
        "the token works: {stdout}"
    );
}

#[test]
fn readme_walkthrough_standalone() {
    let orchestra = Orchestra::start(&[]);
    let stdout = run_walkthrough(&orchestra);
    check_output(&stdout, "sqlite");
    // The root secret was printed once at first start and kept in the data dir.
    let secret =
        std::fs::read_to_string(orchestra.workdir().join("oscied-data/root_secret")).unwrap();
    assert!(orchestra.log().contains(secret.trim()));
    // The bytes served are the bytes stored.
    // The upload and the 720p output; the revoked task left nothing.
    let stored = walk_media_files(&orchestra.workdir().join("oscied-data/storage/medias"));
    assert_eq!(stored.len(), 2, "{stored:?}");
    let copy = std::fs::read(orchestra.workdir().join("copy.mp4")).unwrap();
    assert!(stored.iter().any(|f| std::fs::read(f).unwrap() == copy));
    let tmp = orchestra.workdir().join("oscied-data/storage/tmp");
    assert_eq!(
        std::fs::read_dir(tmp).unwrap().count(),
        0,
        "no tmp files left"
    );
}

#[test]
fn readme_walkthrough_on_mongodb() {
    let nx = NxServer::start();
    let uri = nx.uri();
    let orchestra = Orchestra::start(&[("OSCIED_MONGODB_URI", uri.as_str())]);
    let stdout = run_walkthrough(&orchestra);
    check_output(&stdout, "mongodb");
    // The records live in MongoDB, not in a SQLite file.
    assert!(!orchestra.workdir().join("oscied-data/oscied.db").exists());

    // A restart against the same database keeps everything and seeds nothing twice.
    drop(orchestra);
    let again = Orchestra::start(&[("OSCIED_MONGODB_URI", uri.as_str())]);
    let (status, page) = curl(&[
        "-u",
        "ada@example.com:analytical-engine",
        &format!("{}/transform/profiles?limit=0", again.api()),
    ]);
    assert_eq!(status, 200, "{}", again.log_tail());
    let builtins = oscied_protocol::builtins::BUILTIN_PROFILES.len() as u64;
    assert_eq!(
        page["total"],
        builtins + 2,
        "the built-ins, Small 240p and Slow 240p, once each"
    );
}

fn walk_media_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        for file in std::fs::read_dir(entry.path()).unwrap().flatten() {
            files.push(file.path());
        }
    }
    files
}
