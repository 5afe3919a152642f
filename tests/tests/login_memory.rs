//! 256 concurrent wrong logins against the real `orchestra` binary (issue 9): each argon2
//! check holds 19 MiB, and unbounded they took the orchestra to 3 GB. With the argon2
//! semaphore the peak stays under 300 MB and the orchestra keeps answering.
//!
//! The login limits are raised for this test (`OSCIED_LOGIN_*_BURST`), so that every one of
//! the 256 logins is an argon2 check instead of a quick 429.

use std::time::{Duration, Instant};

use oscied_e2e::orchestra::{Orchestra, curl};

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
    let api = orchestra.api();
    let (status, body) = curl(&[
        "-u",
        &format!("root:{ROOT}"),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"first_name": "M", "last_name": "L", "mail": "m@example.com", "secret": "the-right-secret"}"#,
        &format!("{api}/users"),
    ]);
    assert_eq!(status, 201, "{body}");
    let pid = orchestra.pid();
    let idle = status_kb(pid, "VmRSS:");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let statuses: Vec<u16> = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let calls = (0..LOGINS).map(|n| {
            let client = client.clone();
            let url = format!("{api}/users/me");
            // Half guess the user's secret, half try mails that have no account.
            let mail = if n % 2 == 0 {
                "m@example.com".to_owned()
            } else {
                format!("guess{n}@example.com")
            };
            tokio::spawn(async move {
                client
                    .get(url)
                    .basic_auth(mail, Some(format!("wrong-guess-{n}")))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        });
        let mut statuses = vec![];
        for call in calls.collect::<Vec<_>>() {
            statuses.push(call.await.unwrap());
        }
        statuses
    });
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
    assert_eq!(
        orchestra.get("/api/v1/health").map(|(s, _)| s),
        Some(200),
        "the orchestra still answers"
    );
    let (status, me) = curl(&[
        "-u",
        "m@example.com:the-right-secret",
        &format!("{api}/users/me"),
    ]);
    assert_eq!((status, me["mail"].as_str()), (200, Some("m@example.com")));
}
