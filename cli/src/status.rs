//! `tgtctl status` (the control plane's view of the data plane) and `tgtctl metrics` (a
//! summary of the key counters of `/metrics`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Number;
use tgt_proto::api::StatusView;

use crate::client::Client;
use crate::render::{self, emit, fields, opt, table, yes_no, Format};
use crate::Result;

fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Runs `tgtctl status`.
pub fn status(c: &Client, out: Format) -> Result<()> {
    let v: StatusView = c.get("/api/v1/status")?.body;
    emit(out, &v, || status_table(c.base(), &v));
    Ok(())
}

fn status_table(base: &str, v: &StatusView) -> String {
    let mut rows = vec![("control plane", base.to_string())];
    rows.push((
        "data plane",
        if v.dataplane_connected {
            "connected".into()
        } else {
            "NOT CONNECTED (is tgt-dataplane running, on the socket the control plane uses?)".into()
        },
    ));
    rows.push((
        "generation",
        format!(
            "desired {}, applied {}{}",
            v.desired_generation,
            opt(v.applied_generation),
            if v.in_sync {
                " (in sync)"
            } else {
                " (NOT in sync)"
            }
        ),
    ));
    if let Some(e) = &v.last_error {
        rows.push(("last error", e.clone()));
    }
    if !v.open_targets.is_empty() {
        rows.push((
            "open targets",
            format!(
                "{} (no ACL and no CHAP: any initiator may log in; see `tgtctl target acl set` and `tgtctl target auth set`)",
                v.open_targets.join(", ")
            ),
        ));
    }
    let Some(dp) = &v.dataplane else {
        return fields(&rows);
    };
    rows.push(("uptime", duration(dp.uptime_ms)));
    rows.push((
        "sessions",
        format!("{} ({} connections)", dp.session_count, dp.connection_count),
    ));
    let list: Vec<String> = dp
        .numa_nodes
        .iter()
        .map(|n| format!("node {} cpus {}", n.id, cpu_list(&n.cpus)))
        .collect();
    rows.push((
        "numa nodes",
        format!("{} ({})", dp.numa_nodes.len(), list.join("; ")),
    ));
    let pinned = if dp.pinned_cpus.is_empty() {
        "not pinned".to_string()
    } else {
        cpu_list(&dp.pinned_cpus)
    };
    rows.push(("worker cpus", pinned));
    let mut s = fields(&rows);
    let portal_rows: Vec<Vec<String>> = dp
        .portals
        .iter()
        .map(|p| vec![p.id.to_string(), p.bound.to_string()])
        .collect();
    s.push('\n');
    s.push_str(&table(&["PORTAL", "LISTENING ON"], &portal_rows));
    let mut lun_rows = Vec::new();
    for t in &dp.targets {
        for l in &t.luns {
            lun_rows.push(vec![
                t.name.clone(),
                l.lun.to_string(),
                l.device_id.to_string(),
                l.active_backend.clone(),
                render::bytes(l.size_bytes),
                l.block_size.to_string(),
                yes_no(l.online),
                yes_no(l.read_only),
            ]);
        }
    }
    s.push('\n');
    s.push_str(&table(
        &[
            "TARGET",
            "LUN",
            "DEVICE",
            "BACKEND",
            "SIZE",
            "BLOCK",
            "ONLINE",
            "READ-ONLY",
        ],
        &lun_rows,
    ));
    s
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped, escapes in label
/// values honoured, anything unreadable skipped).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices();
            let mut key = String::new();
            let mut end = None;
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '}' => {
                        end = Some(i + 1);
                        break;
                    }
                    ',' | ' ' => {}
                    '=' => {
                        let mut val = String::new();
                        let _ = chars.next(); // the opening quote
                        while let Some((_, c)) = chars.next() {
                            match c {
                                '\\' => match chars.next().map(|(_, e)| e) {
                                    Some('n') => val.push('\n'),
                                    Some(e) => val.push(e),
                                    None => {}
                                },
                                '"' => break,
                                c => val.push(c),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), val);
                    }
                    c => key.push(c),
                }
            }
            let Some(end) = end else { continue };
            rest = &r[end..];
        }
        let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// A sample's value as JSON: whole numbers without a fraction (counters and gauges here
/// are whole), `None` for NaN and infinities, which JSON cannot hold.
fn num(v: f64) -> Option<Number> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        #[allow(clippy::cast_possible_truncation)]
        let i = v as i64;
        Some(Number::from(i))
    } else {
        Number::from_f64(v)
    }
}

/// What `tgtctl metrics` prints: the key counters of `/metrics`; a counter the server did
/// not export is `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSummary {
    /// `tgt_controlplane_config_generation`.
    pub controlplane_config_generation: Option<Number>,
    /// Whether `tgt_controlplane_dataplane_connected` is 1.
    pub dataplane_connected: bool,
    /// `tgt_dataplane_config_generation`.
    pub dataplane_config_generation: Option<Number>,
    /// `tgt_dataplane_uptime_seconds`.
    pub dataplane_uptime_seconds: Option<Number>,
    /// `tgt_session_sessions`.
    pub sessions: Option<Number>,
    /// `tgt_conn_connections`.
    pub connections: Option<Number>,
    /// `tgt_login_logins_total`.
    pub logins: Option<Number>,
    /// `tgt_login_failures_total`.
    pub login_failures: Option<Number>,
    /// `tgt_pdu_digest_errors_total`.
    pub digest_errors: Option<Number>,
    /// The `tgt_lun_*` counters, one entry per target and LUN.
    pub luns: Vec<LunSummary>,
}

/// The counters of one LUN; a counter the server did not export is left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LunSummary {
    /// The target's name.
    pub target: String,
    /// The LUN, `null` when the label is not a number.
    pub lun: Option<u64>,
    /// The `backend` label of `tgt_lun_backend_info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// `tgt_lun_capacity_bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<Number>,
    /// `tgt_lun_read_commands_total`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_commands: Option<Number>,
    /// `tgt_lun_write_commands_total`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_commands: Option<Number>,
    /// `tgt_lun_read_bytes_total`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_bytes: Option<Number>,
    /// `tgt_lun_write_bytes_total`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_bytes: Option<Number>,
    /// `tgt_lun_check_conditions_total`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_conditions: Option<Number>,
}

/// The key counters, as one document.
pub fn summarize(samples: &[Sample]) -> MetricsSummary {
    let value = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
    let one = |name: &str| value(name).and_then(num);
    let mut luns: BTreeMap<(String, String), LunSummary> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name.starts_with("tgt_lun_")) {
        let (Some(t), Some(l)) = (s.labels.get("target"), s.labels.get("lun")) else {
            continue;
        };
        let e = luns
            .entry((t.clone(), l.clone()))
            .or_insert_with(|| LunSummary {
                target: t.clone(),
                lun: l.parse::<u64>().ok(),
                ..LunSummary::default()
            });
        let field = match s.name.as_str() {
            "tgt_lun_backend_info" => {
                e.backend = s.labels.get("backend").cloned();
                continue;
            }
            "tgt_lun_capacity_bytes" => &mut e.capacity_bytes,
            "tgt_lun_read_commands_total" => &mut e.read_commands,
            "tgt_lun_write_commands_total" => &mut e.write_commands,
            "tgt_lun_read_bytes_total" => &mut e.read_bytes,
            "tgt_lun_write_bytes_total" => &mut e.write_bytes,
            "tgt_lun_check_conditions_total" => &mut e.check_conditions,
            _ => continue,
        };
        *field = num(s.value);
    }
    MetricsSummary {
        controlplane_config_generation: one("tgt_controlplane_config_generation"),
        dataplane_connected: value("tgt_controlplane_dataplane_connected") == Some(1.0),
        dataplane_config_generation: one("tgt_dataplane_config_generation"),
        dataplane_uptime_seconds: one("tgt_dataplane_uptime_seconds"),
        sessions: one("tgt_session_sessions"),
        connections: one("tgt_conn_connections"),
        logins: one("tgt_login_logins_total"),
        login_failures: one("tgt_login_failures_total"),
        digest_errors: one("tgt_pdu_digest_errors_total"),
        luns: luns.into_values().collect(),
    }
}

/// Runs `tgtctl metrics`.
pub fn metrics(c: &Client, out: Format) -> Result<()> {
    let text = c.get_text("/metrics")?;
    let v = summarize(&parse_metrics(&text));
    emit(out, &v, || {
        let rows = vec![
            (
                "config generation",
                format!(
                    "desired {}, data plane {}",
                    opt(v.controlplane_config_generation.as_ref()),
                    opt(v.dataplane_config_generation.as_ref())
                ),
            ),
            (
                "data plane",
                if v.dataplane_connected {
                    let up = v.dataplane_uptime_seconds.as_ref().and_then(Number::as_u64);
                    format!("connected, up {}", duration(up.unwrap_or(0) * 1000))
                } else {
                    "NOT CONNECTED (the counters below are missing)".into()
                },
            ),
            (
                "sessions",
                format!(
                    "{} ({} connections)",
                    opt(v.sessions.as_ref()),
                    opt(v.connections.as_ref())
                ),
            ),
            (
                "logins",
                format!(
                    "{} ok, {} failed",
                    opt(v.logins.as_ref()),
                    opt(v.login_failures.as_ref())
                ),
            ),
            ("digest errors", opt(v.digest_errors.as_ref())),
        ];
        let mut s = fields(&rows);
        let lun_rows: Vec<Vec<String>> = v
            .luns
            .iter()
            .map(|l| {
                let b = |n: &Option<Number>| {
                    n.as_ref()
                        .and_then(Number::as_u64)
                        .map_or_else(|| "-".into(), render::bytes)
                };
                vec![
                    l.target.clone(),
                    opt(l.lun),
                    opt(l.backend.as_ref()),
                    b(&l.capacity_bytes),
                    opt(l.read_commands.as_ref()),
                    b(&l.read_bytes),
                    opt(l.write_commands.as_ref()),
                    b(&l.write_bytes),
                    opt(l.check_conditions.as_ref()),
                ]
            })
            .collect();
        if !lun_rows.is_empty() {
            s.push('\n');
            s.push_str(&table(
                &[
                    "TARGET",
                    "LUN",
                    "BACKEND",
                    "CAPACITY",
                    "READS",
                    "READ",
                    "WRITES",
                    "WRITTEN",
                    "CHECK CONDITIONS",
                ],
                &lun_rows,
            ));
        }
        s
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text_with_labels_and_escapes() {
        let text = "# HELP x y\n# TYPE x counter\ntgt_login_logins_total 3\n\
tgt_lun_read_bytes_total{lun=\"1\",target=\"iqn.a:b\"} 4096\n\
tgt_lun_backend_info{backend=\"file\",lun=\"1\",target=\"iqn.a:b\"} 1\n\
weird{a=\"q\\\"uote\"} 2.5\n";
        let s = parse_metrics(text);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "tgt_login_logins_total");
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].labels["target"], "iqn.a:b");
        assert_eq!(s[3].labels["a"], "q\"uote");
        let v = summarize(&s);
        assert_eq!(v.logins, Some(3.into()));
        assert_eq!(v.luns[0].read_bytes, Some(4096.into()));
        assert_eq!(v.luns[0].backend.as_deref(), Some("file"));
        assert!(!v.dataplane_connected);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["sessions"], serde_json::Value::Null);
        assert!(json["luns"][0].get("writeBytes").is_none());
    }
}

/// CPU ids as Linux list syntax ("0-3,6").
fn cpu_list(ids: &[u32]) -> String {
    let mut cpus = ids.to_vec();
    cpus.sort_unstable();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod cpu_list_tests {
    #[test]
    fn cpu_ids_print_as_linux_ranges() {
        assert_eq!(super::cpu_list(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(super::cpu_list(&[6, 5]), "5-6");
        assert_eq!(super::cpu_list(&[]), "");
    }
}
