//! Reading a `/metrics` exposition the way Prometheus does: with the OpenMetrics parser of
//! the official Python client (`prometheus-client`, pinned in [`crate::tools`]), which refuses
//! what a scraper would (a malformed line, a missing `# EOF`, a counter without `_total`).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::tools::PROMETHEUS_PYTHON;

/// One sample of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// With its suffix (`_total`, `_bucket`, `_count`, `_sum`).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Each sample as a JSON line; the value as text, since JSON has no infinity.
const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps({"name": s.name, "labels": s.labels, "value": repr(float(s.value))}))
"#;

/// Parse `text`; panics with the parser's complaint when it is not a valid exposition.
pub fn parse(text: &str) -> Vec<Sample> {
    let python = PROMETHEUS_PYTHON.path();
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the exposition");
    let out = child.wait_with_output().expect("the parser ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "{} lacks prometheus_client: install '{}' (`.ci/run` does)",
        python.display(),
        PROMETHEUS_PYTHON.package
    );
    assert!(
        out.status.success(),
        "not a valid OpenMetrics exposition: {stderr}\n{text}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let labels = v["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            Sample {
                name: v["name"].as_str().unwrap_or_default().to_owned(),
                labels,
                value: v["value"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels`, if there is one.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .find(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}
