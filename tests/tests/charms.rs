//! The Juju charms (`charms/`, Python): ruff, each charm's ops.testing suite, the cross-charm
//! tests and the real-binaries test (`charms/tests/test_real_binaries.py`: the files the
//! charms render start the real orchestra, transform and publisher on NX-27017 and RabbitMQ).
//!
//! One Rust test per step, so a failure names it; each runs its Python tool in a process of
//! its own (every charm's module is called `charm`, so two charms never share one). They take
//! turns: seven Python runs at once are more than two cores take. The Python is
//! `$OSCIED_CHARMS_PYTHON`, else `<workspace>/.venv/bin/python` (`.ci/run` installs the
//! pinned packages there); pytest's output is printed, in full when a step fails.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use oscied_e2e::orchestra::{binary, worker_publisher_binary, worker_transform_binary};
use oscied_e2e::workspace_root;

/// The environment variable naming the Python that has the charms' test packages.
const ENV_PYTHON: &str = "OSCIED_CHARMS_PYTHON";

/// What the charms' tests import, and the line that installs it.
const MODULES: &str = "import ops, ops.testing, pytest, ruff, yaml, charmlibs.systemd, \
                       charmlibs.apt, charmlibs.passwd";
/// The same pins as `.ci/run`.
const INSTALL: &str = "python3 -m venv .venv && .venv/bin/pip install 'ops[testing]==3.9.0' \
                       ops-scenario==8.9.0 pytest==9.2.0 ruff==0.17.6 PyYAML==6.0.4 \
                       charmlibs-systemd==1.0.0.post0 charmlibs-apt==1.0.0.post1 \
                       charmlibs-passwd==1.0.1.post0";

/// One `#[test]` per charm running its `tests/unit`, and the list of them.
macro_rules! unit_tests {
    ($($name:ident => $charm:literal),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                let dir = workspace_root().join("charms").join($charm);
                run_python(
                    &format!("charms/{} unit tests", $charm),
                    &dir,
                    &pytest(&["tests/unit"]),
                    &[],
                    Duration::from_secs(900),
                );
            }
        )+
        const CHARMS: &[&str] = &[$($charm),+];
    };
}

unit_tests! {
    unit_orchestra => "orchestra",
    unit_transform => "transform",
    unit_publisher => "publisher",
    unit_storage => "storage",
}

/// The steps take turns (see the module comment).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn every_charm_has_a_unit_test() {
    let mut found: Vec<String> = std::fs::read_dir(workspace_root().join("charms"))
        .expect("charms/")
        .flatten()
        .filter(|e| e.path().join("charmcraft.yaml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    found.sort();
    let mut listed: Vec<String> = CHARMS.iter().map(|c| c.to_string()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "charms/ and unit_tests! in tests/tests/charms.rs disagree: add each charm there"
    );
}

#[test]
fn ruff_check() {
    run_python(
        "ruff check charms/",
        &workspace_root(),
        &["-m", "ruff", "check", "charms/"],
        &[],
        Duration::from_secs(300),
    );
}

#[test]
fn ruff_format() {
    run_python(
        "ruff format --check charms/",
        &workspace_root(),
        &["-m", "ruff", "format", "--check", "charms/"],
        &[],
        Duration::from_secs(300),
    );
}

#[test]
fn cross_charm() {
    run_python(
        "charms/tests (cross-charm)",
        &workspace_root(),
        &pytest(&[
            "charms/tests",
            "--ignore=charms/tests/test_real_binaries.py",
        ]),
        &[],
        Duration::from_secs(600),
    );
}

#[test]
fn real_binaries() {
    // Resolved (and built when stale) before taking the turn: a build is no Python run.
    let env = [
        ("OSCIED_ORCHESTRA_BIN", binary().into_os_string()),
        (
            "OSCIED_WORKER_TRANSFORM_BIN",
            worker_transform_binary().into_os_string(),
        ),
        (
            "OSCIED_WORKER_PUBLISHER_BIN",
            worker_publisher_binary().into_os_string(),
        ),
        (
            oscied_e2e::nx::ENV_EXECUTABLE,
            oscied_e2e::nx::executable().into_os_string(),
        ),
    ];
    run_python(
        "charms/tests/test_real_binaries.py",
        &workspace_root(),
        &pytest(&["charms/tests/test_real_binaries.py"]),
        &env,
        Duration::from_secs(900),
    );
}

/// `-m pytest` with `args`: no cache written into the repository, a summary of what did not
/// pass, short tracebacks.
fn pytest<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-ra",
        "--tb=short",
    ];
    all.extend_from_slice(args);
    all
}

/// `$OSCIED_CHARMS_PYTHON`, else `<workspace>/.venv/bin/python`, checked once to import what
/// the tests need; panics with how to install it otherwise.
fn python() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CHECKED
        .get_or_init(find_python)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn find_python() -> Result<PathBuf, String> {
    let root = workspace_root();
    let (python, named) = match std::env::var_os(ENV_PYTHON) {
        Some(path) => (PathBuf::from(path), true),
        None => (root.join(".venv/bin/python"), false),
    };
    let how = format!(
        "install the packages with `{INSTALL}` (run in {})",
        root.display()
    );
    if !python.is_file() {
        return Err(if named {
            format!("{ENV_PYTHON}={} is not a file", python.display())
        } else {
            format!(
                "{} not found: set {ENV_PYTHON} to a Python that has them, or {how}",
                python.display()
            )
        });
    }
    let output = Command::new(&python)
        .args(["-c", MODULES])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} does not run: {e}", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} lacks the charms' test packages ({}): {how}",
            python.display(),
            // The ImportError, not the whole traceback.
            String::from_utf8_lossy(&output.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    Ok(python)
}

/// Run the Python with `args` in `dir` (plus `env`) until it exits, at most `timeout`; print
/// its output, and panic with it unless it succeeded.
fn run_python(what: &str, dir: &Path, args: &[&str], env: &[(&str, OsString)], timeout: Duration) {
    let python = python();
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::Builder::new()
        .prefix("oscied-charms-run-")
        .tempdir()
        .expect("temp dir");
    let output_path = tmp.path().join("output.txt");
    let output = File::create(&output_path).expect("the output file");
    let mut command = Command::new(&python);
    command
        .args(args)
        .current_dir(dir)
        // No __pycache__ left in the repository.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The tests choose their own charm root.
        .env_remove("OSCIED_CHARM_ROOT")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("clone the output file"))
        .stderr(output);
    // Its own process group, so a timeout ends whatever it started with it.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let start = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", python.display()));
    let status = oscied_e2e::wait_exit(&mut child, timeout);
    if status.is_none() {
        let _ = Command::new("kill")
            .args(["-KILL", &format!("-{}", child.id())])
            .status();
        let _ = child.wait();
    }
    let printed = std::fs::read_to_string(&output_path).unwrap_or_default();
    let took = start.elapsed().as_secs_f32();
    match status {
        Some(status) if status.success() => print!("{printed}\n{what}: passed in {took:.1} s\n"),
        Some(status) => panic!("{what} failed ({status}) in {took:.1} s:\n{printed}"),
        None => panic!("{what} did not finish in {timeout:?} and was killed:\n{printed}"),
    }
}
