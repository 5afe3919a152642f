//! The README's curl walkthrough, run as written against the real `orchestra` binary: twice on
//! the embedded SQLite store (with a restart in between, on the same data dir), once on
//! NX-27017 through `OSCIED_MONGODB_URI`.

use std::path::Path;
use std::process::Command;

use oscied_e2e::nx::NxServer;
use oscied_e2e::orchestra::Orchestra;

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

/// Where the test's orchestras keep their data: `data/` in their working directory, which the
/// walkthrough takes as its scratch directory (`DEMO`), as the README's
/// `OSCIED_DATA_DIR=/tmp/oscied-demo/data` does for `/tmp/oscied-demo`.
const DATA_DIR: (&str, &str) = ("OSCIED_DATA_DIR", "data");

/// Run the walkthrough from an empty directory (standing for the repository a user runs it
/// from), with the orchestra's working directory as `DEMO`; `env` adds variables. The
/// walkthrough must leave that directory empty: its files go under `DEMO`.
fn run_walkthrough(orchestra: &Orchestra, env: &[(&str, &str)]) -> String {
    let repo = tempfile::tempdir().expect("temp dir");
    // A hung step (a task that never ends) fails the test instead of hanging it.
    let output = Command::new("timeout")
        .args(["300", "bash", "-c"])
        .arg(walkthrough_script())
        .current_dir(repo.path())
        .env_remove("ROOT_SECRET")
        .env("API", orchestra.api())
        .env("DEMO", orchestra.workdir())
        .envs(env.iter().copied())
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
    let left: Vec<_> = std::fs::read_dir(repo.path())
        .expect("the directory it ran from")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "the walkthrough left files where it was run from: {left:?}"
    );
    stdout
}

/// What the walkthrough prints that a user would look at, on any run.
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
        stdout.contains("\n\"Ada Lovelace\"\n"),
        "the token works: {stdout}"
    );
}

/// A first run on a fresh data dir creates the user and both profiles.
fn check_first_run(stdout: &str) {
    assert!(
        stdout.contains("\"name\":\"Ada Lovelace\""),
        "the user was created: {stdout}"
    );
    assert!(
        stdout.contains("\"title\":\"Small 240p\"") && stdout.contains("\"title\":\"Slow 240p\""),
        "both profiles were created: {stdout}"
    );
    assert!(
        !stdout.contains("made by an earlier run"),
        "nothing existed before the first run: {stdout}"
    );
}

/// A second run on the same data dir says that the user and the profiles exist (409) and
/// goes on with them: no second profile of either title.
fn check_second_run(stdout: &str) {
    assert!(
        stdout.contains("409 mail is already taken: made by an earlier run, kept"),
        "the user's 409 is said: {stdout}"
    );
    assert_eq!(
        stdout
            .matches("409 title is already taken: made by an earlier run, kept")
            .count(),
        2,
        "each profile's 409 is said: {stdout}"
    );
    for title in ["Small 240p", "Slow 240p"] {
        assert_eq!(
            stdout.lines().filter(|l| *l == title).count(),
            1,
            "the profile list shows {title} once: {stdout}"
        );
    }
}

#[test]
fn readme_walkthrough_standalone_twice() {
    let mut orchestra = Orchestra::start(&[DATA_DIR]);
    let data = orchestra.workdir().join("data");
    let stdout = run_walkthrough(&orchestra, &[]);
    check_output(&stdout, "sqlite");
    check_first_run(&stdout);
    check_storage(&data, 2);
    // The bytes served are the bytes stored.
    let copy = std::fs::read(orchestra.workdir().join("work/copy.mp4")).unwrap();
    let stored = walk_media_files(&data.join("storage/medias"));
    assert!(stored.iter().any(|f| std::fs::read(f).unwrap() == copy));

    // The next day: the orchestra restarted on the same data dir, the walkthrough run again.
    orchestra.restart();
    let stdout = run_walkthrough(&orchestra, &[]);
    check_output(&stdout, "sqlite");
    check_second_run(&stdout);
    check_storage(&data, 4);

    // The root secret was printed once, at the first start, and kept in the data dir.
    let secret = std::fs::read_to_string(data.join("root_secret")).unwrap();
    let log = std::fs::read_to_string(orchestra.workdir().join("orchestra.log")).unwrap();
    assert_eq!(log.matches(secret.trim()).count(), 1, "{log}");
}

#[test]
fn readme_walkthrough_on_mongodb() {
    let nx = NxServer::start();
    let uri = nx.uri();
    // Secrets given as a cluster operator gives them; the standalone test covers the
    // walkthrough's default (the secret the data dir keeps).
    let secrets = [
        ("OSCIED_ROOT_SECRET", "walkthrough-root-secret"),
        ("OSCIED_NODE_SECRET", "walkthrough-node-secret"),
    ];
    let env = [
        ("OSCIED_MONGODB_URI", uri.as_str()),
        DATA_DIR,
        secrets[0],
        secrets[1],
    ];
    let orchestra = Orchestra::start(&env);
    let stdout = run_walkthrough(&orchestra, &[("ROOT_SECRET", secrets[0].1)]);
    check_output(&stdout, "mongodb");
    check_first_run(&stdout);
    // The records live in MongoDB, not in a SQLite file.
    assert!(!orchestra.workdir().join("data/oscied.db").exists());

    // A restart against the same database keeps everything and seeds nothing twice.
    drop(orchestra);
    let again = Orchestra::start(&env);
    let (status, page) = again
        .client()
        .as_user("ada@example.com", "analytical-engine")
        .get("/transform/profiles?limit=0");
    assert_eq!(status, 200, "{}", again.log_tail());
    let builtins = oscied_protocol::builtins::BUILTIN_PROFILES.len() as u64;
    assert_eq!(
        page["total"],
        builtins + 2,
        "the built-ins, Small 240p and Slow 240p, once each"
    );
}

/// The data dir holds `files` media files (each walkthrough keeps its upload and its 720p
/// output; the revoked task left nothing), and no tmp file is left.
fn check_storage(data: &Path, files: usize) {
    let stored = walk_media_files(&data.join("storage/medias"));
    assert_eq!(stored.len(), files, "{stored:?}");
    let tmp = data.join("storage/tmp");
    assert_eq!(
        std::fs::read_dir(tmp).unwrap().count(),
        0,
        "no tmp files left"
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
