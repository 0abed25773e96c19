//! `GET /metrics`: Prometheus text format. The data plane's counters are fetched over the
//! control socket at scrape time and exposed through a registry built for that scrape, so
//! the data plane's hot path only bumps its own counters. Labels are bounded: per target
//! and LUN, per portal; never per initiator or per command.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use super::AppState;
use crate::error::ApiError;

/// Every metric, in Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn get(State(st): State<AppState>) -> Result<Response, ApiError> {
    let desired = st.service.desired().await.generation;
    let live = st.service.live_stats().await;
    let text = render(desired, live.as_ref()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

fn gauge(r: &Registry, name: &str, help: &str, v: u64) -> prometheus::Result<()> {
    let g = IntGauge::new(name, help)?;
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    r.register(Box::new(g))
}

fn counter(r: &Registry, name: &str, help: &str, v: u64) -> prometheus::Result<()> {
    let c = prometheus::IntCounter::new(name, help)?;
    c.inc_by(v);
    r.register(Box::new(c))
}

/// Renders the metrics from the desired generation and, when the data plane answered,
/// its status and counters.
pub fn render(
    desired_generation: u64,
    live: Option<&(tgt_proto::socket::Status, tgt_proto::socket::Stats)>,
) -> prometheus::Result<String> {
    let r = Registry::new();
    gauge(
        &r,
        "tgt_controlplane_config_generation",
        "Generation of the desired (persisted) config.",
        desired_generation,
    )?;
    gauge(
        &r,
        "tgt_controlplane_dataplane_connected",
        "1 when the data plane answered this scrape.",
        u64::from(live.is_some()),
    )?;
    if let Some((status, stats)) = live {
        gauge(
            &r,
            "tgt_dataplane_config_generation",
            "Generation of the config the data plane runs.",
            status.generation,
        )?;
        gauge(
            &r,
            "tgt_dataplane_uptime_seconds",
            "Seconds since the data plane started.",
            status.uptime_ms / 1000,
        )?;
        gauge(
            &r,
            "tgt_session_sessions",
            "Logged-in sessions, discovery included.",
            u64::from(status.session_count),
        )?;
        gauge(
            &r,
            "tgt_conn_connections",
            "Open connections, including those still logging in.",
            u64::from(status.connection_count),
        )?;
        counter(
            &r,
            "tgt_login_logins_total",
            "Successful logins.",
            stats.logins_total,
        )?;
        counter(
            &r,
            "tgt_login_failures_total",
            "Refused or failed logins.",
            stats.login_failures_total,
        )?;
        counter(
            &r,
            "tgt_pdu_digest_errors_total",
            "Header or data digest mismatches.",
            stats.digest_errors_total,
        )?;
        let portals = IntGaugeVec::new(
            Opts::new(
                "tgt_portal_listening_info",
                "1 per portal being listened on, with its bound address.",
            ),
            &["portal", "address"],
        )?;
        for p in &status.portals {
            portals
                .with_label_values(&[&p.id.to_string(), &p.bound.to_string()])
                .set(1);
        }
        r.register(Box::new(portals))?;
        let backend = IntGaugeVec::new(
            Opts::new(
                "tgt_lun_backend_info",
                "1 per LUN, labelled with the engine actually serving its I/O.",
            ),
            &["target", "lun", "backend"],
        )?;
        let capacity = IntGaugeVec::new(
            Opts::new("tgt_lun_capacity_bytes", "Capacity of each LUN."),
            &["target", "lun"],
        )?;
        for t in &status.targets {
            for l in &t.luns {
                let lun = l.lun.to_string();
                backend
                    .with_label_values(&[&t.name, &lun, &l.active_backend])
                    .set(1);
                capacity
                    .with_label_values(&[&t.name, &lun])
                    .set(i64::try_from(l.size_bytes).unwrap_or(i64::MAX));
            }
        }
        r.register(Box::new(backend))?;
        r.register(Box::new(capacity))?;
        let lun_counters = [
            ("tgt_lun_read_commands_total", "Completed read commands."),
            ("tgt_lun_write_commands_total", "Completed write commands."),
            ("tgt_lun_read_bytes_total", "Bytes read."),
            ("tgt_lun_write_bytes_total", "Bytes written."),
            (
                "tgt_lun_check_conditions_total",
                "Commands that ended in CHECK CONDITION.",
            ),
        ];
        for (i, (name, help)) in lun_counters.iter().enumerate() {
            let v = prometheus::IntCounterVec::new(Opts::new(*name, *help), &["target", "lun"])?;
            for l in &stats.luns {
                let n = match i {
                    0 => l.read_commands_total,
                    1 => l.write_commands_total,
                    2 => l.read_bytes_total,
                    3 => l.write_bytes_total,
                    _ => l.check_conditions_total,
                };
                v.with_label_values(&[&l.target, &l.lun.to_string()])
                    .inc_by(n);
            }
            r.register(Box::new(v))?;
        }
    }
    let mut buf = Vec::new();
    TextEncoder::new().encode(&r.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}
