//! The resource commands: `target`, `lun`, `storage`, `portal`, `perf` and `session`,
//! each a thin mapping of verbs onto the REST endpoints of the same name.

use std::collections::BTreeMap;

use clap::Subcommand;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tgt_proto::api::LunMapping;
use tgt_proto::socket::SessionInfo;
use tgt_proto::{BackendType, Performance, Portal, Storage, Target};

use crate::client::Client;
use crate::render::{self, document_fields, emit, json_of, opt, table, yes_no, Format};
use crate::{CliError, Result};

/// Percent-encodes one path segment (iSCSI names hold `:`, which is fine, but be safe
/// with anything else a user types).
pub(crate) fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn done<T: Serialize + ?Sized>(out: Format, value: &T, sentence: String) {
    emit(out, value, || format!("{sentence}\n"));
}

/// POSTs a new resource to `collection` and prints what the control plane stored.
fn create<T: Serialize + DeserializeOwned>(
    c: &Client,
    out: Format,
    collection: &str,
    body: &T,
    sentence: String,
) -> Result<()> {
    let v: T = c.call(Method::POST, collection, Some(body), &[])?.body;
    done(out, &v, sentence);
    Ok(())
}

/// DELETEs the resource at `path` and prints `{"deleted": what}`.
fn delete<T: Serialize>(
    c: &Client,
    out: Format,
    path: &str,
    what: T,
    sentence: String,
) -> Result<()> {
    c.delete(path)?;
    done(out, &Deleted { deleted: what }, sentence);
    Ok(())
}

/// What `-o json` prints after a delete: `{"deleted": ...}`.
#[derive(Serialize)]
struct Deleted<T> {
    deleted: T,
}

/// One LUN of `tgtctl lun list` and of `lun delete`'s output.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LunRef<'a> {
    target: &'a str,
    lun: u16,
}

/// One row of `tgtctl lun list`.
#[derive(Serialize)]
struct LunRow {
    target: String,
    /// The LUN, `null` for a key in the map that is not a number.
    lun: Option<u64>,
    #[serde(rename = "deviceID")]
    device_id: u64,
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
    /// CHAP authentication of logins to a target.
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl target auth set iqn.2026-01.com.example:disk1 --username host1 --secret-file host1.secret\n  tgtctl target auth clear iqn.2026-01.com.example:disk1"
    )]
    Auth(crate::access::TargetAuthCmd),
    /// Which initiators (names, source networks) may log in to a target.
    #[command(
        subcommand,
        after_help = "Examples:\n  tgtctl target acl set iqn.2026-01.com.example:disk1 --initiator iqn.1993-08.org.debian:01:host1\n  tgtctl target acl clear iqn.2026-01.com.example:disk1"
    )]
    Acl(crate::access::TargetAclCmd),
}

fn target_row(name: &str, t: &Target) -> Vec<String> {
    let groups = t
        .tpgts
        .iter()
        .map(|(tag, ids)| {
            let ids: Vec<String> = ids.iter().map(u16::to_string).collect();
            format!("{tag}:[{}]", ids.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ");
    let luns = t
        .luns
        .iter()
        .map(|(l, d)| format!("{l}->{d}"))
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        name.to_string(),
        if groups.is_empty() {
            "-".into()
        } else {
            groups
        },
        if luns.is_empty() { "-".into() } else { luns },
        access(t),
    ]
}

/// How a target is protected: `chap`, `mutual-chap`, `acl`, both joined by `+`, or `OPEN`
/// (any initiator that reaches a portal may log in).
fn access(t: &Target) -> String {
    let mut parts = Vec::new();
    if let Some(chap) = t.auth.as_ref().and_then(|a| a.chap.as_ref()) {
        parts.push(if chap.mutual_username.is_some() {
            "mutual-chap"
        } else {
            "chap"
        });
    }
    if t.acl
        .as_ref()
        .is_some_and(|a| a.initiators.is_some() || a.networks.is_some())
    {
        parts.push("acl");
    }
    if parts.is_empty() {
        "OPEN".into()
    } else {
        parts.join("+")
    }
}

const TARGET_HEADERS: [&str; 4] = [
    "NAME",
    "PORTAL GROUPS (TAG:[PORTALS])",
    "LUNS (LUN->DEVICE)",
    "ACCESS",
];

fn split_pair<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str)> {
    s.split_once('=')
        .ok_or_else(|| CliError::Usage(format!("{what} {s:?} must look like A=B")))
}

/// Runs a `target` command.
pub fn target(c: &Client, out: Format, cmd: TargetCmd) -> Result<()> {
    match cmd {
        TargetCmd::List => {
            let v: BTreeMap<String, Target> = c.get("/api/v1/targets")?.body;
            emit(out, &v, || {
                let rows: Vec<Vec<String>> = v.iter().map(|(n, t)| target_row(n, t)).collect();
                table(&TARGET_HEADERS, &rows)
            });
        }
        TargetCmd::Get { name } => {
            let v: Target = c.get(&format!("/api/v1/targets/{}", seg(&name)))?.body;
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
            let no_group = tpgts.is_empty();
            let body = Target {
                tpgts,
                luns: lunmap,
                ..Target::default()
            };
            let v: Target = c
                .call(
                    Method::PUT,
                    &format!("/api/v1/targets/{}", seg(&name)),
                    Some(&body),
                    &[("If-None-Match", "*")],
                )?
                .body;
            if no_group && out == Format::Table {
                eprintln!("note: target {name} has no portal group, so initiators cannot reach it; add --portal ID");
            }
            done(out, &v, format!("target {name} created"));
        }
        TargetCmd::Delete { name } => {
            let path = format!("/api/v1/targets/{}", seg(&name));
            let sentence = format!("target {name} deleted");
            delete(c, out, &path, name, sentence)?;
        }
        TargetCmd::Auth(cmd) => crate::access::target_auth(c, out, cmd)?,
        TargetCmd::Acl(cmd) => crate::access::target_acl(c, out, cmd)?,
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
            let targets: Vec<(String, BTreeMap<String, u64>)> = match target {
                Some(t) => {
                    let luns = c.get(&format!("/api/v1/targets/{}/luns", seg(&t)))?.body;
                    vec![(t, luns)]
                }
                None => c
                    .get::<BTreeMap<String, Target>>("/api/v1/targets")?
                    .body
                    .into_iter()
                    .map(|(n, t)| (n, t.luns))
                    .collect(),
            };
            let mut list = Vec::new();
            for (t, luns) in &targets {
                for (l, d) in luns {
                    list.push(LunRow {
                        target: t.clone(),
                        lun: l.parse::<u64>().ok(),
                        device_id: *d,
                    });
                }
            }
            emit(out, &list, || {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|r| vec![r.target.clone(), opt(r.lun), r.device_id.to_string()])
                    .collect();
                table(&headers, &rows)
            });
        }
        LunCmd::Get { target, lun } => {
            let v: LunMapping = c
                .get(&format!("/api/v1/targets/{}/luns/{lun}", seg(&target)))?
                .body;
            emit(out, &v, || {
                table(
                    &headers,
                    &[vec![
                        target.clone(),
                        lun.to_string(),
                        v.device_id.to_string(),
                    ]],
                )
            });
        }
        LunCmd::Create {
            target,
            lun,
            storage,
        } => {
            let path = format!("/api/v1/targets/{}/luns/{lun}", seg(&target));
            match c.get::<LunMapping>(&path) {
                Ok(existing) => {
                    return Err(CliError::Api {
                        status: 409,
                        message: format!(
                        "target {target} already has lun {lun} (on storage {}); delete it first",
                        existing.body.device_id
                    ),
                    })
                }
                Err(CliError::Api {
                    status: 404,
                    message,
                }) if message.contains("no lun") => {}
                Err(e) => return Err(e),
            }
            let body = LunMapping { device_id: storage };
            let v: LunMapping = c.call(Method::PUT, &path, Some(&body), &[])?.body;
            done(
                out,
                &v,
                format!("lun {lun} of target {target} created on storage {storage}"),
            );
        }
        LunCmd::Delete { target, lun } => {
            let path = format!("/api/v1/targets/{}/luns/{lun}", seg(&target));
            let sentence = format!("lun {lun} of target {target} deleted");
            let what = LunRef {
                target: &target,
                lun,
            };
            delete(c, out, &path, what, sentence)?;
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

fn storage_row(s: &Storage) -> Vec<String> {
    vec![
        s.device_id.to_string(),
        s.path.clone(),
        s.size.map(render::bytes).unwrap_or("-".into()),
        s.backend_type
            .map_or_else(|| "default".into(), |b| b.to_string()),
        yes_no(s.online != Some(false)),
        yes_no(s.read_only == Some(true)),
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
            let v: Vec<Storage> = c.get("/api/v1/storages")?.body;
            emit(out, &v, || {
                let rows: Vec<Vec<String>> = v.iter().map(storage_row).collect();
                table(&STORAGE_HEADERS, &rows)
            });
        }
        StorageCmd::Get { id } => {
            let v: Storage = c.get(&format!("/api/v1/storages/{id}"))?.body;
            emit(out, &v, || document_fields(&v));
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
            let body = Storage {
                device_id: id,
                path,
                size,
                backend_type: backend.map(|b| match b.as_str() {
                    "iouring" => BackendType::Iouring,
                    // clap accepts only "file" and "iouring".
                    _ => BackendType::File,
                }),
                block_size,
                read_only: read_only.then_some(true),
                online: offline.then_some(false),
                ..Storage::default()
            };
            let sentence = format!("storage {id} created");
            create(c, out, "/api/v1/storages", &body, sentence)?;
        }
        StorageCmd::Delete { id } => {
            let sentence = format!("storage {id} deleted");
            delete(c, out, &format!("/api/v1/storages/{id}"), id, sentence)?;
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
    let row = |p: &Portal| vec![p.id.to_string(), p.portal.clone()];
    match cmd {
        PortalCmd::List => {
            let v: Vec<Portal> = c.get("/api/v1/portals")?.body;
            emit(out, &v, || {
                let rows: Vec<Vec<String>> = v.iter().map(row).collect();
                table(&headers, &rows)
            });
        }
        PortalCmd::Get { id } => {
            let v: Portal = c.get(&format!("/api/v1/portals/{id}"))?.body;
            emit(out, &v, || table(&headers, &[row(&v)]));
        }
        PortalCmd::Create { id, address } => {
            let body = Portal {
                id,
                portal: address.clone(),
            };
            let sentence = format!("portal {id} created ({address})");
            create(c, out, "/api/v1/portals", &body, sentence)?;
        }
        PortalCmd::Delete { id } => {
            let sentence = format!("portal {id} deleted");
            delete(c, out, &format!("/api/v1/portals/{id}"), id, sentence)?;
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
    let show = |p: &Performance| {
        if *p == Performance::default() {
            "no performance settings (all defaults)\n".to_string()
        } else {
            document_fields(p)
        }
    };
    match cmd {
        PerfCmd::Get => {
            let v: Performance = c.get("/api/v1/performance")?.body;
            emit(out, &v, || show(&v));
        }
        PerfCmd::Set { settings, unset } => {
            if settings.is_empty() && unset.is_empty() {
                return Err(CliError::Usage(
                    "nothing to set: give KEY=VALUE pairs or --unset KEY (see tgtctl perf set --help)"
                        .into(),
                ));
            }
            let cur = c.get::<Performance>("/api/v1/performance")?;
            // The keys are the operator's words: the control plane names any it does not
            // know, so the edit works on the JSON form rather than on the fields.
            let mut m = match json_of(&cur.body) {
                Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            for s in &settings {
                let (k, v) = split_pair(s, "setting")?;
                let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
                m.insert(k.to_string(), v);
            }
            for k in &unset {
                m.remove(k);
            }
            let etag = cur.etag.unwrap_or_else(|| "*".into());
            let v: Performance = c
                .call(
                    Method::PUT,
                    "/api/v1/performance",
                    Some(&m),
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
            let v: Vec<SessionInfo> = c.get("/api/v1/sessions")?.body;
            emit(out, &v, || {
                let rows: Vec<Vec<String>> = v.iter().map(session_row).collect();
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
            c.delete(&format!("/api/v1/sessions/{tsih}"))?;
            /// What `-o json` prints after closing a session.
            #[derive(Serialize)]
            struct Closed {
                closed: u16,
            }
            done(
                out,
                &Closed { closed: tsih },
                format!("session {tsih} closed"),
            );
        }
    }
    Ok(())
}

fn session_row(s: &SessionInfo) -> Vec<String> {
    let peers: Vec<String> = s.connections.iter().map(|c| c.peer.to_string()).collect();
    vec![
        s.tsih.to_string(),
        format!("{:012x}", s.isid),
        s.initiator_name.clone(),
        s.target_name
            .as_deref()
            .unwrap_or("(discovery)")
            .to_string(),
        peers.join(","),
        s.connections
            .first()
            .map(|c| format!("{}/{}", c.header_digest, c.data_digest))
            .unwrap_or_default(),
        s.negotiated.max_burst_length.to_string(),
    ]
}
