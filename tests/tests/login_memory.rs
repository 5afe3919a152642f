//! 256 concurrent wrong logins against the real `orchestra` binary (issue 9): each argon2
//! check holds 19 MiB, and unbounded they took the orchestra to 3 GB. With the argon2
//! semaphore the peak stays under 300 MB and the orchestra keeps answering.
//!
//! The login limits are raised for this test (`OSCIED_LOGIN_*_BURST`), so that every one of
//! the 256 logins is an argon2 check instead of a quick 429.

use std::time::Instant;

use oscied_e2e::orchestra::Orchestra;

const ROOT: &str = "memory-root-secret";
const LOGINS: usize = 256;
const LIMIT_KB: u64 = 300 * 1024;

/// A `VmHWM:`-style field of /proc/<pid>/status, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[test]
fn concurrent_wrong_logins_keep_the_orchestra_small() {
    let orchestra = Orchestra::start(&[
        ("OSCIED_ROOT_SECRET", ROOT),
        ("OSCIED_LOGIN_ACCOUNT_BURST", "100000"),
        ("OSCIED_LOGIN_ADDRESS_BURST", "100000"),
    ]);
    let client = orchestra.client();
    let (status, body) = client.as_user("root", ROOT).post(
        "/users",
        &serde_json::json!({"first_name": "M", "last_name": "L", "mail": "m@example.com", "secret": "the-right-secret"}),
    );
    assert_eq!(status, 201, "{body}");
    let pid = orchestra.pid();
    let idle = status_kb(pid, "VmRSS:");

    // Half guess the user's secret, half try mails that have no account.
    let guesses: Vec<String> = (0..LOGINS)
        .map(|n| match n % 2 {
            0 => format!("m@example.com:wrong-guess-{n}"),
            _ => format!("guess{n}@example.com:wrong-guess-{n}"),
        })
        .collect();
    let started = Instant::now();
    // All at once, from one curl process.
    let statuses = client.max_secs(120).parallel("GET", "/users/me", &guesses);
    assert_eq!(statuses.len(), LOGINS, "one status per login: {statuses:?}");
    let took = started.elapsed();
    let peak = status_kb(pid, "VmHWM:");
    let after = status_kb(pid, "VmRSS:");
    let threads = status_kb(pid, "Threads:");
    eprintln!(
        "{LOGINS} wrong logins in {took:?}: RSS idle {idle} kB, peak {peak} kB, after {after} kB, {threads} threads"
    );
    // Every one was checked (a 401, not a 429 nor a failure).
    assert!(
        statuses.iter().all(|&s| s == 401),
        "statuses: {:?}\n{}",
        statuses,
        orchestra.log_tail()
    );
    assert!(
        peak < LIMIT_KB,
        "peak RSS {peak} kB over {LIMIT_KB} kB\n{}",
        orchestra.log_tail()
    );
    assert_eq!(client.health().0, 200, "the orchestra still answers");
    let (status, me) = client
        .as_user("m@example.com", "the-right-secret")
        .get("/users/me");
    assert_eq!((status, me["mail"].as_str()), (200, Some("m@example.com")));
}
