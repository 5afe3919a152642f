//! Start-up and logs, as an operator sees them with the real `orchestra` binary: the root
//! secret shared by every orchestra on one store and announced once, the data dir lock, bind
//! errors that name their variable, JSON lines, no colour in a pipe, one line per request.

use oscied_e2e::api;
use oscied_e2e::free_port;
use oscied_e2e::nx::NxServer;
use oscied_e2e::orchestra::{Orchestra, run_to_exit};
use oscied_e2e::rabbit::Vhost;
use serde_json::Value;

const ANNOUNCED: &str = "root secret generated";

/// The secret of the human-format announcement line, if the log has one.
fn announced_secret(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains(ANNOUNCED))?;
    let value = line.split("root_secret=").nth(1)?;
    Some(value.split_whitespace().next()?.to_owned())
}

fn users_as_root(orchestra: &Orchestra, secret: &str) -> u16 {
    orchestra.client().as_user("root", secret).get("/users").0
}

#[test]
fn orchestras_on_one_store_share_the_root_secret_announced_once() {
    let nx = NxServer::start();
    let vhost = Vhost::create();
    let storage = tempfile::tempdir().unwrap();
    let (mongo, amqp) = (nx.uri(), vhost.uri());
    let root = storage.path().to_str().unwrap();
    let env = [
        ("OSCIED_MONGODB_URI", mongo.as_str()),
        ("OSCIED_AMQP_URI", amqp.as_str()),
        ("OSCIED_STORAGE_ROOT", root),
        ("OSCIED_NODE_SECRET", "e2e-node-secret"),
    ];
    // Each in its own working directory, so each has its own ./oscied-data.
    let first = Orchestra::start(&env);
    let second = Orchestra::start(&env);
    let secret = announced_secret(&first.log()).expect("the first orchestra announced it");
    assert_eq!(
        announced_secret(&second.log()),
        None,
        "{}",
        second.log_tail()
    );
    assert!(!second.log().contains(&secret));
    assert!(first.stdout().is_empty() && second.stdout().is_empty());
    for orchestra in [&first, &second] {
        assert_eq!(users_as_root(orchestra, &secret), 200);
        assert_eq!(users_as_root(orchestra, "not-the-secret"), 401);
    }
    let kept = std::fs::read_to_string(first.workdir().join("oscied-data/root_secret")).unwrap();
    assert_eq!(kept.trim(), secret);
    assert!(!second.workdir().join("oscied-data/root_secret").exists());

    // A different explicit secret is refused, loudly, naming the way out.
    let mut with_other = env.to_vec();
    with_other.push(("OSCIED_ROOT_SECRET", "another-secret"));
    let (status, log, _) = run_to_exit(free_port(), &with_other);
    assert!(!status.success());
    assert!(
        log.contains("OSCIED_ROOT_SECRET is not root's secret on this store")
            && log.contains("OSCIED_ROTATE_ROOT_SECRET"),
        "{log}"
    );
    // Cluster mode without the node secret is refused, saying which variable is missing.
    let without_node: Vec<_> = env
        .iter()
        .copied()
        .filter(|(k, _)| *k != "OSCIED_NODE_SECRET")
        .collect();
    let (status, log, _) = run_to_exit(free_port(), &without_node);
    assert!(!status.success());
    assert!(log.contains("needs OSCIED_NODE_SECRET"), "{log}");
}

#[test]
fn a_second_orchestra_on_one_data_dir_exits_naming_the_holder() {
    let first = Orchestra::start(&[]);
    let data = first.workdir().join("oscied-data");
    let (status, log, _) = run_to_exit(free_port(), &[("OSCIED_DATA_DIR", data.to_str().unwrap())]);
    assert!(!status.success());
    let holder = format!("pid {} on ", first.pid());
    assert!(
        log.contains("is in use by another orchestra") && log.contains(&holder),
        "{log}"
    );
    // The first one is untouched.
    assert_eq!(first.client().health().0, 200);
}

#[test]
fn a_busy_port_names_its_variable_and_spends_no_secret() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let (status, log, stdout) = run_to_exit(port, &[]);
    assert!(!status.success());
    assert!(log.contains("OSCIED_LISTEN"), "{log}");
    assert!(
        !log.contains(ANNOUNCED) && !stdout.contains(ANNOUNCED),
        "{log}"
    );

    let publisher = format!("127.0.0.1:{port}");
    let (status, log, _) = run_to_exit(free_port(), &[("OSCIED_PUBLISHER_LISTEN", &publisher)]);
    assert!(!status.success());
    assert!(log.contains("OSCIED_PUBLISHER_LISTEN"), "{log}");
    assert!(!log.contains(ANNOUNCED), "{log}");
}

/// A GET with optional `X-Request-Id`: the status and the answer's `X-Request-Id`.
fn request_id(url: &str, args: &[&str], sent: Option<&str>) -> (u16, Option<String>) {
    let header = sent.map(|id| format!("X-Request-Id: {id}"));
    let mut all = vec!["-o", "/dev/null"];
    all.extend_from_slice(args);
    if let Some(header) = &header {
        all.extend(["-H", header.as_str()]);
    }
    let reply = api::run(url, &all);
    let id = reply.header("x-request-id").map(str::to_owned);
    (reply.status, id)
}

#[test]
fn json_logs_are_json_lines_with_one_line_per_answered_request() {
    let orchestra = Orchestra::start(&[("OSCIED_LOG_FORMAT", "json")]);
    let users = format!("{}/users", orchestra.api());
    // A sane client id is kept and echoed; an odd one (too long) is replaced.
    let (status, echoed) = request_id(&users, &[], Some("client-id-42"));
    assert_eq!((status, echoed.as_deref()), (401, Some("client-id-42")));
    let long = "x".repeat(200);
    let (_, replaced) = request_id(&users, &[], Some(&long));
    let replaced = replaced.expect("an id is returned");
    assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");
    let (status, generated) = request_id(&format!("{}/health", orchestra.api()), &[], None);
    assert_eq!(status, 200);
    assert!(uuid::Uuid::parse_str(&generated.unwrap()).is_ok());
    // A unit's refused login on a node route is a 4xx too.
    let node = format!("{}/node/units/unit-x/publications", orchestra.api());
    let (status, node_id) = request_id(&node, &["-u", "node:wrong"], None);
    assert_eq!(status, 401);
    std::thread::sleep(std::time::Duration::from_millis(300));

    let log = orchestra.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    assert!(orchestra.stdout().is_empty(), "{}", orchestra.stdout());
    let announced: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(ANNOUNCED))
        })
        .collect();
    assert_eq!(announced.len(), 1, "{log}");
    let secret = announced[0]["fields"]["root_secret"].as_str().unwrap();
    assert_eq!(
        log.matches(secret).count(),
        1,
        "the secret appears once, in the announcement"
    );
    // List fields are arrays (the in-process transform unit's start line).
    let queues: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l["fields"].get("queues"))
        .collect();
    assert!(!queues.is_empty(), "{log}");
    assert!(queues.iter().all(|q| q.is_array()), "{queues:?}");
    assert!(
        queues.contains(&&serde_json::json!(["transform"])),
        "{queues:?}"
    );

    let answered = |id: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == "answered" && l["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no line for request {id}:\n{log}"))
            .clone()
    };
    let line = answered("client-id-42");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["status"], 401);
    assert!(line["fields"]["latency_ms"].is_number(), "{line}");
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["span"]["route"], "/api/v1/users");
    assert_eq!(answered(&replaced)["fields"]["status"], 401);
    let line = answered(node_id.as_deref().unwrap());
    assert_eq!(
        line["span"]["route"],
        "/api/v1/node/units/{unit_id}/publications"
    );
    assert_eq!(
        line["span"]["path"],
        "/api/v1/node/units/unit-x/publications"
    );
    // 2xx answers are at debug: not in an info log.
    assert!(!lines.iter().any(|l| l["fields"]["status"] == 200), "{log}");
}

#[test]
fn human_logs_in_a_pipe_have_no_colour_and_one_line_per_event() {
    let orchestra = Orchestra::start(&[("RUST_LOG", "info")]);
    assert_eq!(
        orchestra.client().as_user("root", "wrong").get("/users").0,
        401
    );
    // A unit's hostname is logged as it sent it: newlines and an ANSI escape in it.
    let node =
        std::fs::read_to_string(orchestra.workdir().join("oscied-data/node_secret")).unwrap();
    let beat = serde_json::json!({
        "kind": "transform", "queues": ["transform"],
        "hostname": "first line\nsecond line\u{1b}[31m", "version": "0", "ffmpeg_version": null,
        "concurrency": 1, "running_tasks": [], "heartbeat_secs": 5,
    });
    let (status, _) = orchestra.client().as_user("node", node.trim()).call(
        "PUT",
        "/node/units/multi-line",
        Some(&beat),
    );
    assert!((200..300).contains(&status), "{status}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = orchestra.log();
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(log.contains(ANNOUNCED), "{log}");
    // Every line is one event: it starts with a timestamp.
    for line in log.lines() {
        assert!(
            line.get(..4)
                .is_some_and(|y| y.bytes().all(|b| b.is_ascii_digit())),
            "{line:?}"
        );
    }
    let line = log
        .lines()
        .find(|l| l.contains("answered") && l.contains("status=401"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("route=/api/v1/users"), "{line}");
    assert!(!line.contains("Some("), "{line}");
    let line = log
        .lines()
        .find(|l| l.contains("unit registered") && l.contains("multi-line"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("hostname=first line\\nsecond line\\u{1b}[31m"),
        "{line}"
    );
}
