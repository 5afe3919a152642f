//! With MongoDB gone, the orchestra answers 503 with the JSON error body instead of hanging
//! or failing with a 500, and says so on /health.

use oscied_e2e::nx::NxServer;
use oscied_e2e::orchestra::Orchestra;

fn curl_root(orchestra: &Orchestra, path: &str) -> (u16, serde_json::Value) {
    orchestra
        .client()
        .as_user("root", "e2e-root-secret")
        .get(path)
}

#[test]
fn a_lost_database_is_a_503_not_a_500() {
    let nx = NxServer::start();
    let orchestra = Orchestra::start(&[
        ("OSCIED_MONGODB_URI", nx.uri().as_str()),
        ("OSCIED_ROOT_SECRET", "e2e-root-secret"),
    ]);
    let (status, page) = curl_root(&orchestra, "/users");
    assert_eq!((status, page["total"].clone()), (200, serde_json::json!(0)));

    drop(nx);
    let reply = orchestra.client().send("/health", &[]);
    assert_eq!(reply.status, 503, "{}", reply.text());
    let health: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        (health["status"].as_str(), health["store"].as_str()),
        (Some("degraded"), Some("down"))
    );
    let (status, error) = curl_root(&orchestra, "/users");
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["error"]["code"], "unavailable");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("store unavailable")
    );
}
