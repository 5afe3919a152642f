//! The web UI in a real browser: each `tests/ui/*.test.mjs` runs under `node --test` against
//! its own standalone orchestra (in-process transform and publisher units), driving Debian's
//! headless chromium through playwright-core (tests/ui/lib/harness.mjs).
//!
//! One Rust test per file, listed below; a file without one fails
//! `every_browser_test_file_has_a_rust_test`, so none is silently skipped. The files run one
//! at a time: a browser and an ffmpeg at once are what two cores take.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use oscied_e2e::free_port;
use oscied_e2e::orchestra::Orchestra;

/// One `#[test]` per browser test file, and the list of them.
macro_rules! browser_tests {
    ($($name:ident => $file:literal),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_browser_test($file);
            }
        )+
        const FILES: &[&str] = &[$($file),+];
    };
}

browser_tests! {
    shell => "shell.test.mjs",
    medias => "medias.test.mjs",
    admin => "admin.test.mjs",
    tasks => "tasks.test.mjs",
    profiles => "profiles.test.mjs",
    publications => "publications.test.mjs",
    live => "live.test.mjs",
}

/// OSCIED_MAX_UPLOAD_BYTES of the browser tests' orchestras (64 MiB; every clip is smaller).
const UPLOAD_LIMIT: &str = "67108864";

/// A file's whole run, orchestra start to node's exit, may take this long...
const TIMEOUT: Duration = Duration::from_secs(900);
/// ...and each of its tests this long (node fails it, naming it).
const TEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The browser tests take turns (see the module comment).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn every_browser_test_file_has_a_rust_test() {
    let mut found: Vec<String> = std::fs::read_dir(ui_dir())
        .expect("tests/ui")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    found.sort();
    let missing: Vec<_> = found
        .iter()
        .filter(|f| !FILES.contains(&f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "tests/ui has browser tests no Rust test runs: {missing:?}; add each to \
         browser_tests! in tests/tests/ui.rs"
    );
    let gone: Vec<_> = FILES
        .iter()
        .filter(|f| !found.iter().any(|n| n == *f))
        .collect();
    assert!(
        gone.is_empty(),
        "browser_tests! lists missing files: {gone:?}"
    );
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn ui_dir() -> PathBuf {
    workspace().join("tests/ui")
}

/// `<target>/ui-screenshots`, beside the profile directory this test runs from.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>
    exe.ancestors()
        .nth(3)
        .map_or_else(|| workspace().join("target"), Path::to_path_buf)
        .join("ui-screenshots")
}

/// `$OSCIED_UI_CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    std::env::var_os("OSCIED_UI_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), Into::into)
}

/// Node, the harness's npm packages and chromium are there, or say how to get them.
fn check_tools() {
    let node = Command::new("node").arg("--version").output();
    let version = node
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let Some(version) = version else {
        panic!(
            "node is not on the PATH: the browser tests need Node.js 20 or later (`apt-get install nodejs npm`)"
        );
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "node {version} is too old: the browser tests need Node.js 20 or later"
    );
    for package in ["playwright-core", "axe-core"] {
        let manifest = ui_dir()
            .join("node_modules")
            .join(package)
            .join("package.json");
        assert!(
            manifest.is_file(),
            "{package} is not installed for the browser tests: run `npm ci --prefix tests/ui` \
             in {} (.ci/run does)",
            workspace().display()
        );
    }
    let chromium = chromium();
    assert!(
        chromium.is_file(),
        "{} not found: the browser tests run Debian's chromium (`apt-get install chromium`), \
         or set OSCIED_UI_CHROMIUM to a chromium binary",
        chromium.display()
    );
}

fn run_browser_test(file: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    check_tools();
    let root_secret = format!("ui-root-{}", uuid::Uuid::new_v4().simple());
    let publisher_port = free_port();
    let publisher_listen = format!("127.0.0.1:{publisher_port}");
    // A small upload limit, so the medias page's 413 can be shown without gigabytes.
    let orchestra = Orchestra::start(&[
        ("OSCIED_ROOT_SECRET", &root_secret),
        ("OSCIED_PUBLISHER_LISTEN", &publisher_listen),
        ("OSCIED_MAX_UPLOAD_BYTES", UPLOAD_LIMIT),
    ]);
    // Node's temp dir, so chromium's profile (and the clips) land in a directory named for
    // these tests, which .ci/run's clean-up matches and which goes with the test.
    let tmp = tempfile::Builder::new()
        .prefix("oscied-ui-")
        .tempdir()
        .expect("temp dir");
    let screenshots = screenshot_dir();
    std::fs::create_dir_all(&screenshots).expect("the screenshot dir");
    let output_path = tmp.path().join("node-output.txt");
    let output = File::create(&output_path).expect("node's output file");
    let mut command = Command::new("node");
    command
        .args(["--test", "--test-reporter=spec"])
        .arg(format!("--test-timeout={}", TEST_TIMEOUT.as_millis()))
        .arg(ui_dir().join(file))
        .current_dir(ui_dir())
        .env(
            "OSCIED_UI_URL",
            format!("http://127.0.0.1:{}", orchestra.port()),
        )
        .env("OSCIED_UI_ROOT_SECRET", &root_secret)
        .env(
            "OSCIED_UI_PUBLISHER_URL",
            format!("http://{publisher_listen}"),
        )
        .env("OSCIED_UI_WORKDIR", orchestra.workdir())
        .env("OSCIED_UI_MAX_UPLOAD_BYTES", UPLOAD_LIMIT)
        .env("OSCIED_UI_SCREENSHOTS", &screenshots)
        .env("OSCIED_UI_CHROMIUM", chromium())
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("clone the output file"))
        .stderr(output);
    // Its own process group, so a timeout ends the browser with it.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().expect("node runs");
    let status = oscied_e2e::wait_exit(&mut child, TIMEOUT);
    if status.is_none() {
        let _ = Command::new("kill")
            .args(["-KILL", &format!("-{}", child.id())])
            .status();
        let _ = child.wait();
    }
    let printed = std::fs::read_to_string(&output_path).unwrap_or_default();
    match status {
        Some(status) if status.success() => print!("{printed}"),
        Some(status) => panic!(
            "tests/ui/{file} failed ({status}):\n{printed}\n--- orchestra log (tail) ---\n{}",
            orchestra.log_tail()
        ),
        None => panic!(
            "tests/ui/{file} did not finish in {TIMEOUT:?} and was killed:\n{printed}\n\
             --- orchestra log (tail) ---\n{}",
            orchestra.log_tail()
        ),
    }
}
