//! `GET /metrics`: Prometheus text format. The data plane's counters are fetched over the
//! control socket at scrape time and exposed through a registry built for that scrape, so
//! the data plane's hot path only bumps its own counters. Labels are bounded: per target
//! and LUN, per portal; never per initiator or per command.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use tgt_proto::socket::{LatencyHistogram, Stats};
use tgt_proto::Target;

use super::AppState;
use crate::error::ApiError;

/// Every metric, in Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn get(State(st): State<AppState>) -> Result<Response, ApiError> {
    let desired = st.service.desired().await;
    let live = st.service.live_stats().await;
    let text = render(
        desired.generation,
        &desired.config.iscsi_targets,
        live.as_ref(),
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
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

fn counter_with(
    r: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (String, u64)>,
) -> prometheus::Result<()> {
    let v = prometheus::IntCounterVec::new(Opts::new(name, help), &[label])?;
    for (l, n) in values {
        v.with_label_values(&[&l]).inc_by(n);
    }
    r.register(Box::new(v))
}

fn gauge_with(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    values: impl IntoIterator<Item = (Vec<String>, u64)>,
) -> prometheus::Result<()> {
    let v = IntGaugeVec::new(Opts::new(name, help), labels)?;
    for (l, n) in values {
        let l: Vec<&str> = l.iter().map(String::as_str).collect();
        v.with_label_values(&l)
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    r.register(Box::new(v))
}

/// Histograms whose observations the data plane already counted into fixed buckets. The
/// crate's `Histogram` only takes observations one by one, so this collector hands the
/// registry a ready-made family instead.
struct Precomputed {
    desc: Desc,
    family: MetricFamily,
}

impl Precomputed {
    /// A histogram family `name` with one metric per `(labels, histogram)`; the label names
    /// are `label_names`, in the same order as each metric's values.
    fn new(
        name: &str,
        help: &str,
        label_names: &[&str],
        metrics: Vec<(Vec<String>, &LatencyHistogram)>,
    ) -> prometheus::Result<Self> {
        let desc = Desc::new(
            name.to_string(),
            help.to_string(),
            label_names.iter().map(|l| l.to_string()).collect(),
            Default::default(),
        )?;
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(MetricType::HISTOGRAM);
        for (values, h) in metrics {
            let mut pairs: Vec<LabelPair> = label_names
                .iter()
                .zip(values)
                .map(|(n, v)| {
                    let mut p = LabelPair::default();
                    p.set_name(n.to_string());
                    p.set_value(v);
                    p
                })
                .collect();
            // The registry's own metrics list labels by name; do the same.
            pairs.sort_by(|a, b| a.name().cmp(b.name()));
            let mut m = Metric::default();
            m.set_label(pairs);
            m.set_histogram(seconds_histogram(h));
            family.mut_metric().push(m);
        }
        Ok(Self { desc, family })
    }
}

impl Collector for Precomputed {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        vec![self.family.clone()]
    }
}

/// Nanoseconds as seconds, Prometheus's base unit for durations.
fn seconds(ns: u64) -> f64 {
    // Exact below 2^53 ns (104 days); beyond that a rounding in the last digits is fine.
    ns as f64 / 1e9
}

/// Turns per-bucket counts into the cumulative buckets of the exposition format. The +Inf
/// bucket is the count of all observations, which the encoder writes itself.
fn seconds_histogram(h: &LatencyHistogram) -> prometheus::proto::Histogram {
    let mut cumulative = 0u64;
    let buckets = h
        .bounds_ns
        .iter()
        .enumerate()
        .map(|(i, bound)| {
            cumulative = cumulative.saturating_add(h.counts.get(i).copied().unwrap_or(0));
            let mut b = Bucket::default();
            b.set_upper_bound(seconds(*bound));
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut out = prometheus::proto::Histogram::default();
    out.set_bucket(buckets);
    out.set_sample_count(h.counts.iter().fold(0u64, |a, c| a.saturating_add(*c)));
    out.set_sample_sum(seconds(h.sum_ns));
    out
}

/// The metrics of the data plane's counters beyond the per-LUN ones: io_uring, portals,
/// buffer pools.
fn engine_metrics(r: &Registry, stats: &Stats) -> prometheus::Result<()> {
    let u = &stats.uring;
    for (name, help, v) in [
        (
            "tgt_uring_submissions_total",
            "Submission queue entries placed in the io_uring rings.",
            u.submissions_total,
        ),
        (
            "tgt_uring_completions_total",
            "Completion queue entries reaped from the io_uring rings.",
            u.completions_total,
        ),
        (
            "tgt_uring_enter_calls_total",
            "io_uring_enter system calls made to submit or flush completions.",
            u.enter_calls_total,
        ),
        (
            "tgt_uring_sq_full_total",
            "Times an SQE found its submission queue full and waited.",
            u.sq_full_total,
        ),
    ] {
        counter(r, name, help, v)?;
    }
    gauge_with(
        r,
        "tgt_portal_connections",
        "TCP connections open per portal, logging in or not.",
        &["portal"],
        stats
            .portals
            .iter()
            .map(|p| (vec![p.id.to_string()], p.connections)),
    )?;
    gauge_with(
        r,
        "tgt_portal_sessions",
        "Logged-in sessions, discovery included, per portal they arrived on.",
        &["portal"],
        stats
            .portals
            .iter()
            .map(|p| (vec![p.id.to_string()], p.sessions)),
    )?;
    gauge_with(
        r,
        "tgt_numa_pool_buffers",
        "Data buffers per NUMA node pool, by state (free or in_use).",
        &["node", "state"],
        stats.numa_pools.iter().flat_map(|p| {
            let node = p.node.to_string();
            [
                (vec![node.clone(), "free".to_string()], p.buffers_free),
                (vec![node, "in_use".to_string()], p.buffers_in_use),
            ]
        }),
    )?;
    gauge_with(
        r,
        "tgt_numa_pool_buffer_size_bytes",
        "Size of each data buffer of a NUMA node's pool.",
        &["node"],
        stats
            .numa_pools
            .iter()
            .map(|p| (vec![p.node.to_string()], p.buffer_size_bytes)),
    )?;
    counter_with(
        r,
        "tgt_numa_pool_exhausted_total",
        "Times a data buffer was asked of an empty pool (back-pressure).",
        "node",
        stats
            .numa_pools
            .iter()
            .map(|p| (p.node.to_string(), p.exhausted_total)),
    )?;
    counter_with(
        r,
        "tgt_numa_pool_heap_fallbacks_total",
        "Transfers served from heap buffers instead of the pool (too long, or the pool stayed empty).",
        "node",
        stats
            .numa_pools
            .iter()
            .map(|p| (p.node.to_string(), p.heap_fallbacks_total)),
    )
}

/// The per-LUN latency histograms and command gauges.
fn lun_io_metrics(r: &Registry, stats: &Stats) -> prometheus::Result<()> {
    let mut hists = Vec::with_capacity(stats.luns.len() * 2);
    for l in &stats.luns {
        let lun = l.lun.to_string();
        for (op, h) in [("read", &l.read_latency), ("write", &l.write_latency)] {
            hists.push((vec![l.target.clone(), lun.clone(), op.to_string()], h));
        }
    }
    if !hists.is_empty() {
        r.register(Box::new(Precomputed::new(
            "tgt_lun_io_duration_seconds",
            "SCSI execution time of read and write commands in the logical unit, backend \
             included and network transfer excluded.",
            &["target", "lun", "op"],
            hists,
        )?))?;
    }
    gauge_with(
        r,
        "tgt_lun_commands_in_flight",
        "Commands executing in the logical unit now.",
        &["target", "lun"],
        stats.luns.iter().map(|l| {
            (
                vec![l.target.clone(), l.lun.to_string()],
                l.commands_in_flight,
            )
        }),
    )
}

/// Renders the metrics from the desired generation and targets and, when the data plane
/// answered, its status and counters.
pub fn render(
    desired_generation: u64,
    desired_targets: &BTreeMap<String, Target>,
    live: Option<&(tgt_proto::socket::Status, tgt_proto::socket::Stats)>,
) -> prometheus::Result<String> {
    let r = Registry::new();
    gauge(
        &r,
        "tgt_controlplane_config_generation",
        "Generation of the desired (persisted) config.",
        desired_generation,
    )?;
    gauge_with(
        &r,
        "tgt_target_open",
        "1 for a desired target that any initiator reaching its portals may log in to (no CHAP, no initiator ACL), 0 for a protected one.",
        &["target"],
        desired_targets
            .iter()
            .map(|(name, t)| (vec![name.clone()], u64::from(t.is_open()))),
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
        let by_reason = [
            ("authentication", stats.login_authentication_failures_total),
            ("authorization", stats.login_authorization_failures_total),
            ("throttled", stats.login_throttled_total),
        ];
        let named: u64 = by_reason.iter().map(|(_, n)| n).sum();
        counter_with(
            &r,
            "tgt_login_failures_total",
            "Refused or failed logins by reason: authentication (CHAP, 0201), authorization (ACL, 0202), throttled (source locked out, 0301), other.",
            "reason",
            by_reason
                .iter()
                .map(|(k, n)| ((*k).to_string(), *n))
                .chain([(
                    "other".to_string(),
                    stats.login_failures_total.saturating_sub(named),
                )]),
        )?;
        counter(
            &r,
            "tgt_login_lockouts_total",
            "Times a source address was locked out after too many failed logins.",
            stats.login_lockouts_total,
        )?;
        gauge(
            &r,
            "tgt_login_locked_sources",
            "Source addresses locked out now.",
            stats.login_locked_sources,
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
            (
                "tgt_lun_commands_total",
                "Commands the logical unit completed, of every opcode.",
            ),
            (
                "tgt_lun_copies_total",
                "EXTENDED COPY commands the logical unit ran as copy manager.",
            ),
            (
                "tgt_lun_copy_bytes_total",
                "Bytes those copies wrote to their destinations.",
            ),
            (
                "tgt_lun_copy_failures_total",
                "Those copies that failed (COPY ABORTED).",
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
                    4 => l.check_conditions_total,
                    5 => l.commands_total,
                    6 => l.copies_total,
                    7 => l.copy_bytes_total,
                    _ => l.copy_failures_total,
                };
                v.with_label_values(&[&l.target, &l.lun.to_string()])
                    .inc_by(n);
            }
            r.register(Box::new(v))?;
        }
        lun_io_metrics(&r, stats)?;
        engine_metrics(&r, stats)?;
    }
    let mut buf = Vec::new();
    TextEncoder::new().encode(&r.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tgt_proto::socket::{LunStats, NumaPoolStats, PortalStats, Status, UringStats};

    const IQN: &str = "iqn.2026-01.org.example:m";

    fn status() -> Status {
        Status {
            generation: 1,
            uptime_ms: 1000,
            portals: vec![],
            targets: vec![],
            session_count: 1,
            connection_count: 2,
            numa_nodes: vec![],
            pinned_cpus: vec![],
        }
    }

    fn histogram(counts: &[u64], sum_ns: u64) -> LatencyHistogram {
        LatencyHistogram {
            bounds_ns: vec![10_000, 25_000, 1_000_000, 10_000_000_000],
            counts: counts.to_vec(),
            sum_ns,
        }
    }

    fn stats() -> Stats {
        Stats {
            logins_total: 1,
            login_failures_total: 7,
            login_authentication_failures_total: 3,
            login_authorization_failures_total: 1,
            login_throttled_total: 2,
            login_lockouts_total: 1,
            login_locked_sources: 1,
            digest_errors_total: 0,
            luns: vec![LunStats {
                target: IQN.into(),
                lun: 3,
                read_commands_total: 10,
                write_commands_total: 4,
                read_bytes_total: 40960,
                write_bytes_total: 16384,
                check_conditions_total: 0,
                commands_total: 15,
                commands_in_flight: 2,
                copies_total: 2,
                copy_bytes_total: 1_048_576,
                copy_failures_total: 1,
                read_latency: histogram(&[1, 2, 3, 0, 4], 12_500_000_000),
                write_latency: histogram(&[0, 0, 4, 0, 0], 2_000_000),
            }],
            uring: UringStats {
                submissions_total: 20,
                completions_total: 19,
                enter_calls_total: 7,
                sq_full_total: 1,
            },
            portals: vec![
                PortalStats {
                    id: 0,
                    connections: 2,
                    sessions: 1,
                },
                PortalStats {
                    id: 5,
                    connections: 0,
                    sessions: 0,
                },
            ],
            numa_pools: vec![NumaPoolStats {
                node: 0,
                bound: true,
                buffer_size_bytes: 262_144,
                buffers_total: 64,
                buffers_free: 60,
                buffers_in_use: 4,
                exhausted_total: 3,
                heap_fallbacks_total: 2,
            }],
        }
    }

    /// The value of the sample whose name and labels start with `prefix`.
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// `(le, cumulative count)` of every bucket of one histogram, in output order.
    fn buckets(text: &str, name: &str, labels: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{{labels},le=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|rest| {
                let (le, value) = rest.split_once("\"} ").unwrap();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, value.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn histograms_are_cumulative_in_seconds_with_inf_equal_to_count() {
        let text = render(1, &BTreeMap::new(), Some(&(status(), stats()))).unwrap();
        let name = "tgt_lun_io_duration_seconds";
        assert!(text.contains(&format!("# TYPE {name} histogram")), "{text}");
        let labels = format!("lun=\"3\",op=\"read\",target=\"{IQN}\"");
        let b = buckets(&text, name, &labels);
        assert_eq!(
            b,
            vec![
                (0.00001, 1.0),
                (0.000025, 3.0),
                (0.001, 6.0),
                (10.0, 6.0),
                (f64::INFINITY, 10.0)
            ],
            "{text}"
        );
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(
            sample(&text, &format!("{name}_count{{{labels}}}")),
            Some(10.0)
        );
        assert_eq!(
            sample(&text, &format!("{name}_sum{{{labels}}}")),
            Some(12.5)
        );
        // The count matches the read counter of the same LUN.
        assert_eq!(
            sample(
                &text,
                &format!("tgt_lun_read_commands_total{{lun=\"3\",target=\"{IQN}\"}}")
            ),
            Some(10.0)
        );
        let labels = format!("lun=\"3\",op=\"write\",target=\"{IQN}\"");
        let b = buckets(&text, name, &labels);
        assert_eq!(b.last(), Some(&(f64::INFINITY, 4.0)), "{text}");
        assert_eq!(b[2], (0.001, 4.0));
        assert_eq!(
            sample(&text, &format!("{name}_sum{{{labels}}}")),
            Some(0.002)
        );
    }

    #[test]
    fn renders_gauges_and_counters_of_luns_rings_portals_and_pools() {
        let text = render(1, &BTreeMap::new(), Some(&(status(), stats()))).unwrap();
        for (prefix, want) in [
            ("tgt_lun_commands_in_flight{lun=\"3\"", 2.0),
            ("tgt_lun_commands_total{lun=\"3\"", 15.0),
            ("tgt_lun_copies_total{lun=\"3\"", 2.0),
            ("tgt_lun_copy_bytes_total{lun=\"3\"", 1_048_576.0),
            ("tgt_lun_copy_failures_total{lun=\"3\"", 1.0),
            ("tgt_uring_submissions_total ", 20.0),
            ("tgt_uring_completions_total ", 19.0),
            ("tgt_uring_enter_calls_total ", 7.0),
            ("tgt_uring_sq_full_total ", 1.0),
            ("tgt_portal_connections{portal=\"0\"}", 2.0),
            ("tgt_portal_connections{portal=\"5\"}", 0.0),
            ("tgt_portal_sessions{portal=\"0\"}", 1.0),
            ("tgt_numa_pool_buffers{node=\"0\",state=\"free\"}", 60.0),
            ("tgt_numa_pool_buffers{node=\"0\",state=\"in_use\"}", 4.0),
            ("tgt_numa_pool_buffer_size_bytes{node=\"0\"}", 262_144.0),
            ("tgt_numa_pool_exhausted_total{node=\"0\"}", 3.0),
            ("tgt_numa_pool_heap_fallbacks_total{node=\"0\"}", 2.0),
        ] {
            assert_eq!(sample(&text, prefix), Some(want), "{prefix}\n{text}");
        }
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (name, kind) = (parts[2], parts[3]);
            assert!(name.starts_with("tgt_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
    }

    #[test]
    fn login_failures_by_reason_add_up_and_open_targets_are_flagged() {
        let open = Target::default();
        let protected = Target {
            acl: Some(tgt_proto::Acl {
                initiators: Some(vec!["iqn.2026-01.org.example:host".into()]),
                networks: None,
            }),
            ..Target::default()
        };
        let targets = BTreeMap::from([
            ("iqn.2026-01.org.example:open".to_string(), open),
            ("iqn.2026-01.org.example:acl".to_string(), protected),
        ]);
        let text = render(1, &targets, Some(&(status(), stats()))).unwrap();
        for (prefix, want) in [
            ("tgt_login_failures_total{reason=\"authentication\"}", 3.0),
            ("tgt_login_failures_total{reason=\"authorization\"}", 1.0),
            ("tgt_login_failures_total{reason=\"throttled\"}", 2.0),
            ("tgt_login_failures_total{reason=\"other\"}", 1.0),
            ("tgt_login_lockouts_total ", 1.0),
            ("tgt_login_locked_sources ", 1.0),
            (
                "tgt_target_open{target=\"iqn.2026-01.org.example:open\"}",
                1.0,
            ),
            (
                "tgt_target_open{target=\"iqn.2026-01.org.example:acl\"}",
                0.0,
            ),
        ] {
            assert_eq!(sample(&text, prefix), Some(want), "{prefix}\n{text}");
        }
    }

    #[test]
    fn a_data_plane_without_luns_or_pools_renders_no_empty_families() {
        let mut st = stats();
        st.luns.clear();
        st.numa_pools.clear();
        st.portals.clear();
        let text = render(1, &BTreeMap::new(), Some(&(status(), st))).unwrap();
        assert!(!text.contains("tgt_lun_io_duration_seconds"), "{text}");
        assert!(!text.contains("tgt_numa_pool"), "{text}");
        assert!(text.contains("tgt_uring_submissions_total 20"), "{text}");
    }
}
