//! The resource commands: `target`, `lun`, `storage`, `portal`, `perf` and `session`,
//! each a thin mapping of verbs onto the REST endpoints of the same name.

use std::collections::BTreeMap;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::Client;
use crate::render::{self, cell, emit, fields, table, Format};
use crate::{CliError, Result};

/// Percent-encodes one path segment (iSCSI names hold `:`, which is fine, but be safe
/// with anything else a user types).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn done(out: Format, value: &Value, sentence: String) {
    emit(out, value, || format!("{sentence}\n"));
}

/// `tgtctl target ...`
#[derive(Subcommand, Debug)]
pub enum TargetCmd {
    /// Lists every target.
    #[command(after_help = "Examples:\n  tgtctl target list\n  tgtctl target list -o yaml")]
    List,
    /// Shows one target.
    #[command(after_help = "Examples:\n  tgtctl target get iqn.2026-01.com.example:disk1")]
    Get {
        /// The target's iSCSI name.
        name: String,
    },
    /// Creates a target (refused if it exists).
    #[command(
        after_help = "Examples:\n  tgtctl target create iqn.2026-01.com.example:disk1 --portal 0 --lun 0=1\n  tgtctl target create iqn.2026-01.com.example:two --portal-group 1=0,1 --lun 0=1 --lun 1=2"
    )]
    Create {
        /// The target's iSCSI name (iqn., eui. or naa. form).
        name: String,
        /// A portal id to put in portal group 1 (repeatable).
        #[arg(long = "portal", value_name = "ID")]
        portals: Vec<u16>,
        /// A portal group as TAG=ID[,ID...] (repeatable).
        #[arg(long = "portal-group", value_name = "TAG=IDS")]
        groups: Vec<String>,
        /// A LUN mapping as LUN=DEVICE_ID (repeatable).
        #[arg(long = "lun", value_name = "LUN=DEVICE_ID")]
        luns: Vec<String>,
    },
    /// Deletes a target.
    #[command(after_help = "Examples:\n  tgtctl target delete iqn.2026-01.com.example:disk1")]
    Delete {
        /// The target's iSCSI name.
        name: String,
    },
}

fn target_row(name: &str, t: &Value) -> Vec<String> {
    let groups = t["tpgts"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(tag, ids)| {
                    let ids: Vec<String> = ids
                        .as_array()
                        .map(|a| a.iter().map(Value::to_string).collect())
                        .unwrap_or_default();
                    format!("{tag}:[{}]", ids.join(","))
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let luns = t["luns"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(l, d)| format!("{l}->{d}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    vec![
        name.to_string(),
        if groups.is_empty() {
            "-".into()
        } else {
            groups
        },
        if luns.is_empty() { "-".into() } else { luns },
    ]
}

const TARGET_HEADERS: [&str; 3] = [
    "NAME",
    "PORTAL GROUPS (TAG:[PORTALS])",
    "LUNS (LUN->DEVICE)",
];

fn split_pair<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str)> {
    s.split_once('=')
        .ok_or_else(|| CliError::Usage(format!("{what} {s:?} must look like A=B")))
}

/// Runs a `target` command.
pub fn target(c: &Client, out: Format, cmd: TargetCmd) -> Result<()> {
    match cmd {
        TargetCmd::List => {
            let v = c.get("/api/v1/targets")?.body;
            emit(out, &v, || {
                let rows: Vec<Vec<String>> = v
                    .as_object()
                    .map(|m| m.iter().map(|(n, t)| target_row(n, t)).collect())
                    .unwrap_or_default();
                table(&TARGET_HEADERS, &rows)
            });
        }
        TargetCmd::Get { name } => {
            let v = c.get(&format!("/api/v1/targets/{}", seg(&name)))?.body;
            emit(out, &v, || table(&TARGET_HEADERS, &[target_row(&name, &v)]));
        }
        TargetCmd::Create {
            name,
            portals,
            groups,
            luns,
        } => {
            let mut tpgts: BTreeMap<String, Vec<u16>> = BTreeMap::new();
            if !portals.is_empty() {
                tpgts.entry("1".into()).or_default().extend(portals);
            }
            for g in &groups {
                let (tag, ids) = split_pair(g, "--portal-group")?;
                let ids = ids
                    .split(',')
                    .map(|i| {
                        i.trim().parse::<u16>().map_err(|_| {
                            CliError::Usage(format!(
                                "--portal-group {g:?}: {i:?} is not a portal id"
                            ))
                        })
                    })
                    .collect::<Result<Vec<u16>>>()?;
                tpgts.entry(tag.trim().to_string()).or_default().extend(ids);
            }
            let mut lunmap: BTreeMap<String, u64> = BTreeMap::new();
            for l in &luns {
                let (lun, dev) = split_pair(l, "--lun")?;
                let dev = dev.trim().parse::<u64>().map_err(|_| {
                    CliError::Usage(format!("--lun {l:?}: {dev:?} is not a deviceID"))
                })?;
                lunmap.insert(lun.trim().to_string(), dev);
            }
            let body = json!({"tpgts": tpgts, "luns": lunmap});
            let v = c
                .call(
                    Method::PUT,
                    &format!("/api/v1/targets/{}", seg(&name)),
                    Some(&body),
                    &[("If-None-Match", "*")],
                )?
                .body;
            if tpgts.is_empty() && out == Format::Table {
                eprintln!("note: target {name} has no portal group, so initiators cannot reach it; add --portal ID");
            }
            done(out, &v, format!("target {name} created"));
        }
        TargetCmd::Delete { name } => {
            c.call(
                Method::DELETE,
                &format!("/api/v1/targets/{}", seg(&name)),
                None,
                &[],
            )?;
            done(
                out,
                &json!({"deleted": name}),
                format!("target {name} deleted"),
            );
        }
    }
    Ok(())
}

/// `tgtctl lun ...`
#[derive(Subcommand, Debug)]
pub enum LunCmd {
    /// Lists the LUNs of one target, or of every target.
    #[command(
        after_help = "Examples:\n  tgtctl lun list\n  tgtctl lun list iqn.2026-01.com.example:disk1"
    )]
    List {
        /// Only this target.
        target: Option<String>,
    },
    /// Shows one LUN.
    #[command(after_help = "Examples:\n  tgtctl lun get iqn.2026-01.com.example:disk1 0")]
    Get {
        /// The target's iSCSI name.
        target: String,
        /// The LUN (0..=16383).
        lun: u16,
    },
    /// Maps a LUN to a storage (refused if the LUN exists).
    #[command(
        after_help = "Examples:\n  tgtctl lun create iqn.2026-01.com.example:disk1 1 --storage 2"
    )]
    Create {
        /// The target's iSCSI name.
        target: String,
        /// The LUN (0..=16383).
        lun: u16,
        /// deviceID of the storage behind it.
        #[arg(long, value_name = "DEVICE_ID")]
        storage: u64,
    },
    /// Unmaps a LUN.
    #[command(after_help = "Examples:\n  tgtctl lun delete iqn.2026-01.com.example:disk1 1")]
    Delete {
        /// The target's iSCSI name.
        target: String,
        /// The LUN.
        lun: u16,
    },
}

/// Runs a `lun` command.
pub fn lun(c: &Client, out: Format, cmd: LunCmd) -> Result<()> {
    let headers = ["TARGET", "LUN", "DEVICE ID"];
    match cmd {
        LunCmd::List { target } => {
            let targets: Vec<(String, Value)> = match target {
                Some(t) => vec![(
                    t.clone(),
                    c.get(&format!("/api/v1/targets/{}/luns", seg(&t)))?.body,
                )],
                None => c
                    .get("/api/v1/targets")?
                    .body
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(n, t)| (n.clone(), t["luns"].clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let mut list = Vec::new();
            for (t, luns) in &targets {
                for (l, d) in luns.as_object().into_iter().flatten() {
                    list.push(json!({"target": t, "lun": l.parse::<u64>().ok(), "deviceID": d}));
                }
            }
            let v = Value::Array(list);
            emit(out, &v, || {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| vec![cell(&r["target"]), cell(&r["lun"]), cell(&r["deviceID"])])
                    .collect();
                table(&headers, &rows)
            });
        }
        LunCmd::Get { target, lun } => {
            let v = c
                .get(&format!("/api/v1/targets/{}/luns/{lun}", seg(&target)))?
                .body;
            emit(out, &v, || {
                table(
                    &headers,
                    &[vec![target.clone(), lun.to_string(), cell(&v["deviceID"])]],
                )
            });
        }
        LunCmd::Create {
            target,
            lun,
            storage,
        } => {
            let path = format!("/api/v1/targets/{}/luns/{lun}", seg(&target));
            match c.get(&path) {
                Ok(existing) => {
                    return Err(CliError::Api {
                        status: 409,
                        message: format!(
                        "target {target} already has lun {lun} (on storage {}); delete it first",
                        cell(&existing.body["deviceID"])
                    ),
                    })
                }
                Err(CliError::Api {
                    status: 404,
                    message,
                }) if message.contains("no lun") => {}
                Err(e) => return Err(e),
            }
            let v = c
                .call(Method::PUT, &path, Some(&json!({"deviceID": storage})), &[])?
                .body;
            done(
                out,
                &v,
                format!("lun {lun} of target {target} created on storage {storage}"),
            );
        }
        LunCmd::Delete { target, lun } => {
            c.call(
                Method::DELETE,
                &format!("/api/v1/targets/{}/luns/{lun}", seg(&target)),
                None,
                &[],
            )?;
            done(
                out,
                &json!({"deleted": {"target": target, "lun": lun}}),
                format!("lun {lun} of target {target} deleted"),
            );
        }
    }
    Ok(())
}

/// `tgtctl storage ...`
#[derive(Subcommand, Debug)]
pub enum StorageCmd {
    /// Lists every storage.
    #[command(after_help = "Examples:\n  tgtctl storage list\n  tgtctl storage list -o json")]
    List,
    /// Shows one storage.
    #[command(after_help = "Examples:\n  tgtctl storage get 1")]
    Get {
        /// The storage's deviceID.
        id: u64,
    },
    /// Adds a storage (refused if the deviceID is taken).
    #[command(
        after_help = "Examples:\n  tgtctl storage create --id 1 --path /var/lib/tgt/disk1.img --size 10G\n  tgtctl storage create --id 2 --path /dev/nvme0n1 --backend iouring --block-size 4096"
    )]
    Create {
        /// Unique deviceID; LUNs refer to it and the LU serial number derives from it.
        #[arg(long)]
        id: u64,
        /// Backing file or block device.
        #[arg(long)]
        path: String,
        /// Size such as 10G; a missing file is created sparse with this size.
        #[arg(long, value_parser = render::parse_bytes)]
        size: Option<u64>,
        /// I/O engine.
        #[arg(long, value_parser = ["file", "iouring"])]
        backend: Option<String>,
        /// Logical block size in bytes (512 or 4096).
        #[arg(long)]
        block_size: Option<u32>,
        /// Refuse writes.
        #[arg(long)]
        read_only: bool,
        /// Start offline (INQUIRY answers, I/O reports NOT READY).
        #[arg(long)]
        offline: bool,
    },
    /// Removes a storage (refused while a LUN uses it).
    #[command(after_help = "Examples:\n  tgtctl storage delete 1")]
    Delete {
        /// The storage's deviceID.
        id: u64,
    },
}

fn storage_row(s: &Value) -> Vec<String> {
    vec![
        cell(&s["deviceID"]),
        cell(&s["path"]),
        s["size"].as_u64().map(render::bytes).unwrap_or("-".into()),
        s["backendType"].as_str().unwrap_or("default").to_string(),
        if s["online"] == false { "no" } else { "yes" }.into(),
        if s["readOnly"] == true { "yes" } else { "no" }.into(),
    ]
}

const STORAGE_HEADERS: [&str; 6] = [
    "DEVICE ID",
    "PATH",
    "SIZE",
    "BACKEND",
    "ONLINE",
    "READ-ONLY",
];

/// Runs a `storage` command.
pub fn storage(c: &Client, out: Format, cmd: StorageCmd) -> Result<()> {
    match cmd {
        StorageCmd::List => {
            let v = c.get("/api/v1/storages")?.body;
            emit(out, &v, || {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(storage_row)
                    .collect();
                table(&STORAGE_HEADERS, &rows)
            });
        }
        StorageCmd::Get { id } => {
            let v = c.get(&format!("/api/v1/storages/{id}"))?.body;
            emit(out, &v, || {
                let rows: Vec<(&str, String)> = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, x)| (k.as_str(), cell(x)))
                    .collect();
                fields(&rows)
            });
        }
        StorageCmd::Create {
            id,
            path,
            size,
            backend,
            block_size,
            read_only,
            offline,
        } => {
            let mut body = Map::new();
            body.insert("deviceID".into(), json!(id));
            body.insert("path".into(), json!(path));
            if let Some(s) = size {
                body.insert("size".into(), json!(s));
            }
            if let Some(b) = backend {
                body.insert("backendType".into(), json!(b));
            }
            if let Some(b) = block_size {
                body.insert("blockSize".into(), json!(b));
            }
            if read_only {
                body.insert("readOnly".into(), json!(true));
            }
            if offline {
                body.insert("online".into(), json!(false));
            }
            let v = c
                .call(
                    Method::POST,
                    "/api/v1/storages",
                    Some(&Value::Object(body)),
                    &[],
                )?
                .body;
            done(out, &v, format!("storage {id} created"));
        }
        StorageCmd::Delete { id } => {
            c.call(Method::DELETE, &format!("/api/v1/storages/{id}"), None, &[])?;
            done(
                out,
                &json!({"deleted": id}),
                format!("storage {id} deleted"),
            );
        }
    }
    Ok(())
}

/// `tgtctl portal ...`
#[derive(Subcommand, Debug)]
pub enum PortalCmd {
    /// Lists every portal.
    #[command(after_help = "Examples:\n  tgtctl portal list")]
    List,
    /// Shows one portal.
    #[command(after_help = "Examples:\n  tgtctl portal get 0")]
    Get {
        /// The portal's id.
        id: u16,
    },
    /// Adds a portal (refused if the id is taken).
    #[command(
        after_help = "Examples:\n  tgtctl portal create --id 0 --address 0.0.0.0:3260\n  tgtctl portal create --id 1 --address '[::1]:3261'"
    )]
    Create {
        /// Unique id; portal groups refer to it.
        #[arg(long)]
        id: u16,
        /// host:port to listen on (IPv4, [IPv6] or *; port 0 lets the OS choose).
        // The text is also clap's help, which shows `[IPv6]` as written: not a doc link.
        #[allow(rustdoc::broken_intra_doc_links)]
        #[arg(long)]
        address: String,
    },
    /// Removes a portal (refused while a portal group lists it).
    #[command(after_help = "Examples:\n  tgtctl portal delete 0")]
    Delete {
        /// The portal's id.
        id: u16,
    },
}

/// Runs a `portal` command.
pub fn portal(c: &Client, out: Format, cmd: PortalCmd) -> Result<()> {
    let headers = ["ID", "ADDRESS"];
    let row = |p: &Value| vec![cell(&p["id"]), cell(&p["portal"])];
    match cmd {
        PortalCmd::List => {
            let v = c.get("/api/v1/portals")?.body;
            emit(out, &v, || {
                let rows: Vec<Vec<String>> = v.as_array().into_iter().flatten().map(row).collect();
                table(&headers, &rows)
            });
        }
        PortalCmd::Get { id } => {
            let v = c.get(&format!("/api/v1/portals/{id}"))?.body;
            emit(out, &v, || table(&headers, &[row(&v)]));
        }
        PortalCmd::Create { id, address } => {
            let v = c
                .call(
                    Method::POST,
                    "/api/v1/portals",
                    Some(&json!({"id": id, "portal": address})),
                    &[],
                )?
                .body;
            done(out, &v, format!("portal {id} created ({address})"));
        }
        PortalCmd::Delete { id } => {
            c.call(Method::DELETE, &format!("/api/v1/portals/{id}"), None, &[])?;
            done(out, &json!({"deleted": id}), format!("portal {id} deleted"));
        }
    }
    Ok(())
}

/// `tgtctl perf ...`
#[derive(Subcommand, Debug)]
pub enum PerfCmd {
    /// Shows the performance settings.
    #[command(after_help = "Examples:\n  tgtctl perf get\n  tgtctl perf get -o json")]
    Get,
    /// Changes some settings, keeping the others (honours the ETag).
    #[command(
        after_help = "Examples:\n  tgtctl perf set workerThreads=2 enableIoUring=true\n  tgtctl perf set cpuList=0-3\n  tgtctl perf set --unset cpuList\n\nKeys: enableNUMA, enableIoUring, ioUringQueueDepth, numaBufferPoolSize, numaBufferSize, workerThreads, cpuList."
    )]
    Set {
        /// KEY=VALUE pairs; VALUE is read as JSON when it parses (4, true) and as a string otherwise.
        #[arg(value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// Keys to remove (back to their defaults).
        #[arg(long, value_name = "KEY")]
        unset: Vec<String>,
    },
}

/// Runs a `perf` command.
pub fn perf(c: &Client, out: Format, cmd: PerfCmd) -> Result<()> {
    let show = |v: &Value| {
        let rows: Vec<(&str, String)> = v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, x)| (k.as_str(), cell(x)))
            .collect();
        if rows.is_empty() {
            "no performance settings (all defaults)\n".to_string()
        } else {
            fields(&rows)
        }
    };
    match cmd {
        PerfCmd::Get => {
            let v = c.get("/api/v1/performance")?.body;
            emit(out, &v, || show(&v));
        }
        PerfCmd::Set { settings, unset } => {
            if settings.is_empty() && unset.is_empty() {
                return Err(CliError::Usage(
                    "nothing to set: give KEY=VALUE pairs or --unset KEY (see tgtctl perf set --help)"
                        .into(),
                ));
            }
            let cur = c.get("/api/v1/performance")?;
            let mut m = cur.body.as_object().cloned().unwrap_or_default();
            for s in &settings {
                let (k, v) = split_pair(s, "setting")?;
                let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
                m.insert(k.to_string(), v);
            }
            for k in &unset {
                m.remove(k);
            }
            let etag = cur.etag.unwrap_or_else(|| "*".into());
            let v = c
                .call(
                    Method::PUT,
                    "/api/v1/performance",
                    Some(&Value::Object(m)),
                    &[("If-Match", etag.as_str())],
                )?
                .body;
            emit(out, &v, || {
                format!("performance settings updated\n{}", show(&v))
            });
        }
    }
    Ok(())
}

/// `tgtctl session ...`
#[derive(Subcommand, Debug)]
pub enum SessionCmd {
    /// Lists logged-in sessions (needs the data plane connected).
    #[command(after_help = "Examples:\n  tgtctl session list\n  tgtctl session list -o json")]
    List,
    /// Closes every connection of a session; the initiator may log in again.
    #[command(after_help = "Examples:\n  tgtctl session close 3")]
    Close {
        /// The session's TSIH (from `tgtctl session list`).
        tsih: u16,
    },
}

/// Runs a `session` command.
pub fn session(c: &Client, out: Format, cmd: SessionCmd) -> Result<()> {
    match cmd {
        SessionCmd::List => {
            let v = c.get("/api/v1/sessions")?.body;
            emit(out, &v, || {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        let peers: Vec<String> = s["connections"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|c| cell(&c["peer"]))
                            .collect();
                        vec![
                            cell(&s["tsih"]),
                            s["isid"]
                                .as_u64()
                                .map(|i| format!("{i:012x}"))
                                .unwrap_or_default(),
                            cell(&s["initiatorName"]),
                            s["targetName"]
                                .as_str()
                                .unwrap_or("(discovery)")
                                .to_string(),
                            peers.join(","),
                            s["connections"]
                                .as_array()
                                .and_then(|c| c.first())
                                .map(|c| {
                                    format!(
                                        "{}/{}",
                                        cell(&c["headerDigest"]),
                                        cell(&c["dataDigest"])
                                    )
                                })
                                .unwrap_or_default(),
                            cell(&s["negotiated"]["maxBurstLength"]),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "TSIH",
                        "ISID",
                        "INITIATOR",
                        "TARGET",
                        "PEERS",
                        "DIGESTS",
                        "MAXBURST",
                    ],
                    &rows,
                )
            });
        }
        SessionCmd::Close { tsih } => {
            c.call(
                Method::DELETE,
                &format!("/api/v1/sessions/{tsih}"),
                None,
                &[],
            )?;
            done(
                out,
                &json!({"closed": tsih}),
                format!("session {tsih} closed"),
            );
        }
    }
    Ok(())
}
