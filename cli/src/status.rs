//! `tgtctl status` (the control plane's view of the data plane) and `tgtctl metrics` (a
//! summary of the key counters of `/metrics`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::client::Client;
use crate::render::{self, cell, emit, fields, table, Format};
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
    let v = c.get("/api/v1/status")?.body;
    emit(out, &v, || status_table(c.base(), &v));
    Ok(())
}

fn status_table(base: &str, v: &Value) -> String {
    let dp = &v["dataplane"];
    let connected = v["dataplaneConnected"] == true;
    let mut rows = vec![("control plane", base.to_string())];
    rows.push((
        "data plane",
        if connected {
            "connected".into()
        } else {
            "NOT CONNECTED (is tgt-dataplane running, on the socket the control plane uses?)".into()
        },
    ));
    let applied = v["appliedGeneration"]
        .as_u64()
        .map(|g| g.to_string())
        .unwrap_or("-".into());
    rows.push((
        "generation",
        format!(
            "desired {}, applied {applied}{}",
            cell(&v["desiredGeneration"]),
            if v["inSync"] == true {
                " (in sync)"
            } else {
                " (NOT in sync)"
            }
        ),
    ));
    if let Some(e) = v["lastError"].as_str() {
        rows.push(("last error", e.to_string()));
    }
    if dp.is_object() {
        rows.push(("uptime", duration(dp["uptimeMs"].as_u64().unwrap_or(0))));
        rows.push((
            "sessions",
            format!(
                "{} ({} connections)",
                cell(&dp["sessionCount"]),
                cell(&dp["connectionCount"])
            ),
        ));
    }
    if let Some(nodes) = dp["numaNodes"].as_array() {
        let list: Vec<String> = nodes
            .iter()
            .map(|n| format!("node {} cpus {}", cell(&n["id"]), cpu_list(&n["cpus"])))
            .collect();
        rows.push((
            "numa nodes",
            format!("{} ({})", nodes.len(), list.join("; ")),
        ));
    }
    if let Some(cpus) = dp["pinnedCpus"].as_array() {
        let pinned = if cpus.is_empty() {
            "not pinned".to_string()
        } else {
            cpu_list(&dp["pinnedCpus"])
        };
        rows.push(("worker cpus", pinned));
    }
    let mut s = fields(&rows);
    if let Some(portals) = dp["portals"].as_array() {
        let rows: Vec<Vec<String>> = portals
            .iter()
            .map(|p| vec![cell(&p["id"]), cell(&p["bound"])])
            .collect();
        s.push('\n');
        s.push_str(&table(&["PORTAL", "LISTENING ON"], &rows));
    }
    if let Some(targets) = dp["targets"].as_array() {
        let mut rows = Vec::new();
        for t in targets {
            for l in t["luns"].as_array().into_iter().flatten() {
                rows.push(vec![
                    cell(&t["name"]),
                    cell(&l["lun"]),
                    cell(&l["deviceId"]),
                    cell(&l["activeBackend"]),
                    l["sizeBytes"]
                        .as_u64()
                        .map(render::bytes)
                        .unwrap_or_default(),
                    cell(&l["blockSize"]),
                    if l["online"] == true { "yes" } else { "no" }.into(),
                    if l["readOnly"] == true { "yes" } else { "no" }.into(),
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
            &rows,
        ));
    }
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

fn num(v: f64) -> Value {
    // Counters and gauges here are whole numbers; show them without a fraction.
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        #[allow(clippy::cast_possible_truncation)]
        let i = v as i64;
        json!(i)
    } else {
        json!(v)
    }
}

/// The key counters, as one JSON document.
pub fn summarize(samples: &[Sample]) -> Value {
    let one = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| num(s.value))
            .unwrap_or(Value::Null)
    };
    let mut luns: BTreeMap<(String, String), serde_json::Map<String, Value>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name.starts_with("tgt_lun_")) {
        let (Some(t), Some(l)) = (s.labels.get("target"), s.labels.get("lun")) else {
            continue;
        };
        let e = luns.entry((t.clone(), l.clone())).or_default();
        e.insert("target".into(), json!(t));
        e.insert("lun".into(), json!(l.parse::<u64>().ok()));
        let key = match s.name.as_str() {
            "tgt_lun_backend_info" => {
                e.insert("backend".into(), json!(s.labels.get("backend")));
                continue;
            }
            "tgt_lun_capacity_bytes" => "capacityBytes",
            "tgt_lun_read_commands_total" => "readCommands",
            "tgt_lun_write_commands_total" => "writeCommands",
            "tgt_lun_read_bytes_total" => "readBytes",
            "tgt_lun_write_bytes_total" => "writeBytes",
            "tgt_lun_check_conditions_total" => "checkConditions",
            _ => continue,
        };
        e.insert(key.into(), num(s.value));
    }
    json!({
        "controlplaneConfigGeneration": one("tgt_controlplane_config_generation"),
        "dataplaneConnected": one("tgt_controlplane_dataplane_connected") == json!(1),
        "dataplaneConfigGeneration": one("tgt_dataplane_config_generation"),
        "dataplaneUptimeSeconds": one("tgt_dataplane_uptime_seconds"),
        "sessions": one("tgt_session_sessions"),
        "connections": one("tgt_conn_connections"),
        "logins": one("tgt_login_logins_total"),
        "loginFailures": one("tgt_login_failures_total"),
        "digestErrors": one("tgt_pdu_digest_errors_total"),
        "luns": luns.into_values().map(Value::Object).collect::<Vec<_>>(),
    })
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
                    cell(&v["controlplaneConfigGeneration"]),
                    cell(&v["dataplaneConfigGeneration"])
                ),
            ),
            (
                "data plane",
                if v["dataplaneConnected"] == true {
                    format!(
                        "connected, up {}",
                        duration(v["dataplaneUptimeSeconds"].as_u64().unwrap_or(0) * 1000)
                    )
                } else {
                    "NOT CONNECTED (the counters below are missing)".into()
                },
            ),
            (
                "sessions",
                format!(
                    "{} ({} connections)",
                    cell(&v["sessions"]),
                    cell(&v["connections"])
                ),
            ),
            (
                "logins",
                format!(
                    "{} ok, {} failed",
                    cell(&v["logins"]),
                    cell(&v["loginFailures"])
                ),
            ),
            ("digest errors", cell(&v["digestErrors"])),
        ];
        let mut s = fields(&rows);
        let lun_rows: Vec<Vec<String>> = v["luns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                let b = |k: &str| l[k].as_u64().map(render::bytes).unwrap_or("-".into());
                vec![
                    cell(&l["target"]),
                    cell(&l["lun"]),
                    cell(&l["backend"]),
                    b("capacityBytes"),
                    cell(&l["readCommands"]),
                    b("readBytes"),
                    cell(&l["writeCommands"]),
                    b("writeBytes"),
                    cell(&l["checkConditions"]),
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
        assert_eq!(v["logins"], 3);
        assert_eq!(v["luns"][0]["readBytes"], 4096);
        assert_eq!(v["luns"][0]["backend"], "file");
        assert_eq!(v["dataplaneConnected"], false);
    }
}

/// A JSON array of CPU ids as Linux list syntax ("0-3,6").
fn cpu_list(v: &serde_json::Value) -> String {
    let mut cpus: Vec<u64> = v
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default();
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
        assert_eq!(
            super::cpu_list(&serde_json::json!([0, 1, 2, 3, 6])),
            "0-3,6"
        );
        assert_eq!(super::cpu_list(&serde_json::json!([5])), "5");
        assert_eq!(super::cpu_list(&serde_json::json!([])), "");
    }
}
