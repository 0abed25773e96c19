//! Router tests: every request goes through the real router and service, with no data
//! plane running (changes are stored and would be pushed once it appears).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, AppState};
use crate::dataplane::DataplaneClient;
use crate::service::Service;
use crate::store::Store;

const IQN: &str = "iqn.2026-01.org.example:api";

fn state_dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("tgt-cp-api-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn app(dir: &std::path::Path, token: Option<&str>) -> Router {
    let (store, desired) = Store::open(dir).unwrap();
    let client = DataplaneClient::new(&dir.join("no-dataplane.sock"));
    router(AppState {
        service: Arc::new(Service::new(store, desired, client)),
        token: token.map(Arc::from),
    })
}

struct Reply {
    status: StatusCode,
    etag: Option<String>,
    content_type: String,
    body: Value,
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<&str>) -> Reply {
    call_with(app, method, uri, body, &[]).await
}

async fn call_with(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let etag = resp
        .headers()
        .get(header::ETAG)
        .map(|v| v.to_str().unwrap().to_string());
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        etag,
        content_type,
        body,
    }
}

fn storage(id: u64, dir: &std::path::Path) -> String {
    json!({"deviceID": id, "path": dir.join(format!("{id}.img")).display().to_string(), "size": 1048576})
        .to_string()
}

#[tokio::test]
async fn storages_are_created_read_replaced_and_deleted() {
    let d = state_dir("crud");
    let app = app(&d, None);
    let r = call(&app, "POST", "/api/v1/storages", Some(&storage(1, &d))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let dup = call(&app, "POST", "/api/v1/storages", Some(&storage(1, &d))).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.content_type, "application/problem+json");
    let got = call(&app, "GET", "/api/v1/storages/1", None).await;
    assert_eq!(got.status, StatusCode::OK);
    let etag = got.etag.unwrap();
    let stale = call_with(
        &app,
        "PUT",
        "/api/v1/storages/1",
        Some(&storage(1, &d)),
        &[("if-match", "\"0000000000000000\"")],
    )
    .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let ok = call_with(
        &app,
        "PUT",
        "/api/v1/storages/1",
        Some(&storage(1, &d)),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let put = call(
        &app,
        "PUT",
        &format!("/api/v1/targets/{IQN}"),
        Some(r#"{"luns":{"0":1}}"#),
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    let in_use = call(&app, "DELETE", "/api/v1/storages/1", None).await;
    assert_eq!(in_use.status, StatusCode::CONFLICT);
    let lun = call(
        &app,
        "DELETE",
        &format!("/api/v1/targets/{IQN}/luns/0"),
        None,
    )
    .await;
    assert_eq!(lun.status, StatusCode::NO_CONTENT);
    let gone = call(&app, "DELETE", "/api/v1/storages/1", None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let missing = call(&app, "GET", "/api/v1/storages/1", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["status"], 404);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn bad_requests_get_problems_naming_the_field_and_change_nothing() {
    let d = state_dir("bad");
    let app = app(&d, None);
    let before = call(&app, "GET", "/api/v1/config", None).await;
    let cases: [(&str, StatusCode, &str); 5] = [
        ("{\"deviceID\": 1, \"path\": ", StatusCode::BAD_REQUEST, ""),
        (
            r#"{"deviceID": 1, "path": "/x", "colour": "red"}"#,
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            r#"{"deviceID": "one", "path": "/x"}"#,
            StatusCode::BAD_REQUEST,
            "deviceID",
        ),
        (
            r#"{"deviceID": 1, "path": "/x", "blockSize": 1000}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "storages[0].blockSize",
        ),
        (
            r#"{"deviceID": 1, "path": "ceph:pool/img"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "storages[0].path",
        ),
    ];
    for (body, status, path) in cases {
        let r = call(&app, "POST", "/api/v1/storages", Some(body)).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        assert_eq!(r.content_type, "application/problem+json");
        if !path.is_empty() {
            let paths: Vec<&str> = r.body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["path"].as_str().unwrap())
                .collect();
            assert!(paths.iter().any(|p| p.contains(path)), "{body}: {paths:?}");
        }
    }
    let huge = format!(
        r#"{{"deviceID": 1, "path": "{}"}}"#,
        "a".repeat(super::BODY_BYTES_MAX)
    );
    let r = call(&app, "POST", "/api/v1/storages", Some(&huge)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let after = call(&app, "GET", "/api/v1/config", None).await;
    assert_eq!(before.etag, after.etag);
    assert_eq!(before.body, after.body);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn every_call_but_the_probes_needs_the_token_when_one_is_set() {
    let d = state_dir("token");
    let app = app(&d, Some("s3cret"));
    let r = call(&app, "POST", "/api/v1/storages", Some(&storage(1, &d))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let wrong = call_with(
        &app,
        "POST",
        "/api/v1/storages",
        Some(&storage(1, &d)),
        &[("authorization", "Bearer guess")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    for uri in ["/api/v1/storages", "/api/v1/config", "/metrics"] {
        let r = call(&app, "GET", uri, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    // A token that only starts like the right one, or is longer, is as wrong as a guess.
    for wrong in ["Bearer s3c", "Bearer s3cret2", "Bearer S3cret", "s3cret"] {
        let r = call_with(
            &app,
            "GET",
            "/api/v1/config",
            None,
            &[("authorization", wrong)],
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{wrong}");
    }
    assert_eq!(
        call(&app, "GET", "/healthz", None).await.status,
        StatusCode::OK
    );
    let r = call_with(
        &app,
        "GET",
        "/api/v1/storages",
        None,
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let ok = call_with(
        &app,
        "POST",
        "/api/v1/storages",
        Some(&storage(1, &d)),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn config_put_honours_if_match_and_dry_run_changes_nothing() {
    let d = state_dir("config");
    let app = app(&d, None);
    let cfg = json!({
        "storages": [{"deviceID": 7, "path": "/tmp/x.img"}],
        "iscsiportals": [{"id": 0, "portal": "127.0.0.1:0"}],
        "iscsitargets": {IQN: {"tpgts": {"1": [0]}, "luns": {"0": 7}}}
    })
    .to_string();
    let dry = call(&app, "PUT", "/api/v1/config?dry_run=true", Some(&cfg)).await;
    assert_eq!(dry.status, StatusCode::OK);
    assert_eq!(dry.body["valid"], true);
    assert_eq!(dry.body["diff"]["storagesAdded"], json!([7]));
    let cur = call(&app, "GET", "/api/v1/config", None).await;
    assert_eq!(cur.etag.as_deref(), Some("\"0\""));
    assert_eq!(cur.body, json!({}));
    let stale = call_with(
        &app,
        "PUT",
        "/api/v1/config",
        Some(&cfg),
        &[("if-match", "\"5\"")],
    )
    .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let ok = call_with(
        &app,
        "PUT",
        "/api/v1/config",
        Some(&cfg),
        &[("if-match", "\"0\"")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.etag.as_deref(), Some("\"1\""));
    // A restart restores the stored config.
    let again = app_restart(&d);
    let restored = call(&again, "GET", "/api/v1/config", None).await;
    assert_eq!(restored.etag.as_deref(), Some("\"1\""));
    assert_eq!(restored.body["storages"][0]["deviceID"], 7);
    let _ = std::fs::remove_dir_all(&d);
}

fn app_restart(d: &std::path::Path) -> Router {
    app(d, None)
}

#[tokio::test]
async fn live_views_report_the_data_plane_away() {
    let d = state_dir("live");
    let app = app(&d, None);
    assert_eq!(
        call(&app, "GET", "/healthz", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "GET", "/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let s = call(&app, "GET", "/api/v1/status", None).await;
    assert_eq!(s.body["dataplaneConnected"], false);
    assert_eq!(
        call(&app, "GET", "/api/v1/sessions", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&app, "GET", "/api/v1/nothing", None).await.status,
        StatusCode::NOT_FOUND
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn metrics_follow_the_naming_rules() {
    use tgt_proto::socket::{LatencyHistogram, LunStats, Stats, Status, UringStats};
    let status = Status {
        generation: 2,
        uptime_ms: 5000,
        portals: vec![],
        targets: vec![],
        session_count: 1,
        connection_count: 1,
        numa_nodes: vec![],
        pinned_cpus: vec![],
    };
    let stats = Stats {
        logins_total: 3,
        login_failures_total: 0,
        login_authentication_failures_total: 0,
        login_authorization_failures_total: 0,
        login_throttled_total: 0,
        login_lockouts_total: 0,
        login_locked_sources: 0,
        digest_errors_total: 0,
        luns: vec![LunStats {
            target: IQN.into(),
            lun: 0,
            read_commands_total: 4,
            write_commands_total: 5,
            read_bytes_total: 2048,
            write_bytes_total: 2560,
            check_conditions_total: 0,
            commands_total: 9,
            commands_in_flight: 0,
            copies_total: 2,
            copy_bytes_total: 1_048_576,
            copy_failures_total: 1,
            read_latency: LatencyHistogram {
                bounds_ns: vec![10_000],
                counts: vec![4, 0],
                sum_ns: 20_000,
            },
            write_latency: LatencyHistogram {
                bounds_ns: vec![10_000],
                counts: vec![5, 0],
                sum_ns: 25_000,
            },
        }],
        uring: UringStats {
            submissions_total: 0,
            completions_total: 0,
            enter_calls_total: 0,
            sq_full_total: 0,
        },
        portals: vec![],
        numa_pools: vec![],
    };
    let text = super::metrics::render(
        2,
        &std::collections::BTreeMap::new(),
        Some(&(status, stats)),
    )
    .unwrap();
    assert!(text.contains("tgt_login_logins_total 3"), "{text}");
    assert!(
        text.contains("tgt_lun_read_bytes_total{lun=\"0\""),
        "{text}"
    );
    for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (name, kind) = (parts[2], parts[3]);
        assert!(name.starts_with("tgt_"), "{line}");
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
    }
}

#[test]
fn checked_in_openapi_spec_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let generated = super::openapi::spec_json();
    if std::env::var_os("TGT_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "openapi/openapi.json is out of date: run `TGT_UPDATE_OPENAPI=1 cargo test -p tgt-controlplane checked_in_openapi` and commit it"
    );
}

#[tokio::test]
async fn an_array_where_an_object_belongs_is_a_bad_request_naming_its_path() {
    let d = state_dir("arrays");
    let app = app(&d, None);
    let before = call(&app, "GET", "/api/v1/config", None).await;
    let target = format!("/api/v1/targets/{IQN}");
    let cases: [(&str, &str, &str, &str); 6] = [
        ("PUT", "/api/v1/performance", "[null, null]", "$"),
        ("PUT", "/api/v1/performance", "[]", "$"),
        ("POST", "/api/v1/storages", "[7, \"/x\"]", "$"),
        ("PUT", &target, r#"{"auth": []}"#, "auth"),
        ("PUT", &target, r#"{"acl": [null, null]}"#, "acl"),
        (
            "PUT",
            "/api/v1/config?dry_run=true",
            r#"{"discovery": {"auth": {"chap": ["u", "secret-123456"]}}}"#,
            "discovery.auth.chap",
        ),
    ];
    for (method, uri, body, path) in cases {
        let r = call(&app, method, uri, Some(body)).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{uri} {body}: {:?}",
            r.body
        );
        assert_eq!(r.content_type, "application/problem+json");
        assert_eq!(
            r.body["errors"][0]["path"], path,
            "{uri} {body}: {:?}",
            r.body
        );
    }
    let after = call(&app, "GET", "/api/v1/config", None).await;
    assert_eq!(before.etag, after.etag);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_dry_run_of_an_invalid_config_fails_like_the_real_request() {
    let d = state_dir("dry-invalid");
    let app = app(&d, None);
    let bad = json!({"storages": [{"deviceID": 1, "path": "/x", "blockSize": 1000}]}).to_string();
    let dry = call(&app, "PUT", "/api/v1/config?dry_run=true", Some(&bad)).await;
    let real = call(&app, "PUT", "/api/v1/config", Some(&bad)).await;
    assert_eq!(real.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(dry.status, real.status);
    assert_eq!(dry.content_type, real.content_type);
    assert_eq!(dry.body, real.body);
    // A stale If-Match is refused by the dry run too.
    let good = json!({"storages": [{"deviceID": 1, "path": "/x"}]}).to_string();
    let stale = call_with(
        &app,
        "PUT",
        "/api/v1/config?dry_run=true",
        Some(&good),
        &[("if-match", "\"9\"")],
    )
    .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_target_read_and_written_back_keeps_its_secrets() {
    let d = state_dir("keep-secret");
    let app = app(&d, None);
    let path = format!("/api/v1/targets/{IQN}");
    let target = json!({
        "auth": {"chap": {"username": "alice", "secret": "alice-secret-1",
                          "mutualUsername": "tgt", "mutualSecret": "target-secret-2"}},
        "acl": {"initiators": ["iqn.2026-01.org.example:host1"]}
    });
    let r = call(&app, "PUT", &path, Some(&target.to_string())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let got = call(&app, "GET", &path, None).await;
    assert!(!got.body.to_string().contains("secret-"), "{:?}", got.body);
    let etag = got.etag.clone().unwrap();
    let back = call_with(
        &app,
        "PUT",
        &path,
        Some(&got.body.to_string()),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(back.status, StatusCode::OK, "{:?}", back.body);
    assert_eq!(back.etag, got.etag);
    // The whole config, read and written back, keeps them too.
    let cfg = call(&app, "GET", "/api/v1/config", None).await;
    let dry = call(
        &app,
        "PUT",
        "/api/v1/config?dry_run=true",
        Some(&cfg.body.to_string()),
    )
    .await;
    assert_eq!(dry.status, StatusCode::OK, "{:?}", dry.body);
    assert!(dry.body["diff"]["targetsChanged"]
        .as_array()
        .unwrap()
        .is_empty());
    let put = call(&app, "PUT", "/api/v1/config", Some(&cfg.body.to_string())).await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    let stored = std::fs::read_to_string(d.join("desired.json")).unwrap();
    assert!(stored.contains("alice-secret-1"), "{stored}");
    assert!(stored.contains("target-secret-2"), "{stored}");
    // Dropping chap drops CHAP and its secrets.
    let open = json!({"acl": {"initiators": ["iqn.2026-01.org.example:host1"]}});
    let r = call(&app, "PUT", &path, Some(&open.to_string())).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let stored = std::fs::read_to_string(d.join("desired.json")).unwrap();
    assert!(!stored.contains("alice-secret-1"), "{stored}");
    let _ = std::fs::remove_dir_all(&d);
}
