//! Validation of a [`Config`] into a [`ValidConfig`], the only form the data plane serves.
//!
//! Validation is pure: it checks types, bounds, syntax and cross-references, but not
//! whether backing files exist or portals can be bound, which only the data plane can
//! tell. It collects every problem instead of stopping at the first, so an operator fixes
//! a config in one round; each problem names the JSON path of the key it is about, in the
//! form `storages[1].deviceID` or `iscsitargets."iqn.x".luns."1"`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::config::{Alua, AluaState, ALUA_ID_MIN, ALUA_PEER_GROUPS_MAX};
use crate::config::{
    BackendType, Config, Performance, Portal, Storage, Target, BLOCK_SIZE_BYTES_DEFAULT,
    IO_URING_QUEUE_DEPTH_DEFAULT, IO_URING_QUEUE_DEPTH_MAX, ISCSI_PORT_DEFAULT, LUN_MAX,
    NUMA_BUFFER_POOL_SIZE_DEFAULT, NUMA_BUFFER_POOL_SIZE_MAX, NUMA_BUFFER_SIZE_BYTES_DEFAULT,
    NUMA_BUFFER_SIZE_BYTES_MAX, NUMA_BUFFER_SIZE_BYTES_MIN, NUMA_NODE_MAX, WORKER_THREADS_MAX,
};
use crate::config::{Chap, ChapAlgorithmName};
use crate::cpu_list::CpuList;
use crate::name::check_iscsi_name;

/// Longest backing path accepted, `PATH_MAX` minus the terminating NUL.
const PATH_BYTES_MAX: usize = 4095;

/// One problem found by validation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldError {
    /// JSON path of the offending key, such as `storages[1].deviceID`.
    pub path: String,
    /// What is wrong, including the offending value.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a config; displayed one per line. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The problems, in document order (storages, portals, targets, performance).
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

/// A validated config. Only [`Config::validate`] builds one, so holding a `ValidConfig`
/// proves every reference resolves and every value is in range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig {
    source: Config,
    storages: BTreeMap<u64, ValidStorage>,
    portals: BTreeMap<u16, ValidPortal>,
    targets: BTreeMap<String, ValidTarget>,
    performance: ValidPerformance,
    discovery_chap: Option<ValidChap>,
    alua: ValidAlua,
}

/// The `alua` section resolved: this gateway's target port group and relative target
/// port, and its peers', each as `(group, relative port)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAlua {
    local: (u16, u16),
    peers: Vec<(u16, u16)>,
}

impl Default for ValidAlua {
    /// No `alua` section: group 1, relative target port 1, no peers.
    fn default() -> Self {
        Self {
            local: (1, 1),
            peers: Vec::new(),
        }
    }
}

impl ValidAlua {
    /// This gateway's target port group.
    pub fn target_port_group(&self) -> u16 {
        self.local.0
    }

    /// This gateway's relative target port identifier.
    pub fn relative_target_port(&self) -> u16 {
        self.local.1
    }

    /// The peer groups as `(target port group, relative target port)`, in config order.
    pub fn peers(&self) -> &[(u16, u16)] {
        &self.peers
    }

    /// Whether `group` is this gateway's or a peer's.
    pub fn knows_group(&self, group: u16) -> bool {
        self.local.0 == group || self.peers.iter().any(|(g, _)| *g == group)
    }
}

/// Longest CHAP secret or name we accept, in bytes: the iSCSI text value limit (RFC 7143
/// §6.1), so any secret configured here can be used by a standard initiator.
pub const CHAP_SECRET_BYTES_MAX: usize = 255;

/// Shortest CHAP secret that draws no warning: RFC 7143 §12.1.3 (and RFC 3723) recommend
/// at least 96 bits of secret for CHAP.
pub const CHAP_SECRET_BYTES_RECOMMENDED_MIN: usize = 12;

/// Validated CHAP credentials. `Debug` never prints the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct ValidChap {
    username: String,
    secret: String,
    mutual: Option<(String, String)>,
    algorithms: Vec<ChapAlgorithmName>,
}

impl std::fmt::Debug for ValidChap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidChap")
            .field("username", &self.username)
            .field("mutual", &self.mutual.as_ref().map(|(n, _)| n))
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl ValidChap {
    /// The name the initiator must send.
    pub fn username(&self) -> &str {
        &self.username
    }
    /// The initiator's secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }
    /// Mutual CHAP: the name and secret the target answers with.
    pub fn mutual(&self) -> Option<(&str, &str)> {
        self.mutual.as_ref().map(|(n, s)| (n.as_str(), s.as_str()))
    }
    /// Algorithms accepted (never empty).
    pub fn algorithms(&self) -> &[ChapAlgorithmName] {
        &self.algorithms
    }
    /// Whether a secret is shorter than [`CHAP_SECRET_BYTES_RECOMMENDED_MIN`]: allowed,
    /// but the data plane warns.
    pub fn has_short_secret(&self) -> bool {
        self.secret.len() < CHAP_SECRET_BYTES_RECOMMENDED_MIN
            || self
                .mutual
                .as_ref()
                .is_some_and(|(_, s)| s.len() < CHAP_SECRET_BYTES_RECOMMENDED_MIN)
    }
}

/// Who may log in to a target: a validated ACL and CHAP credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidAccess {
    initiators: Option<Vec<String>>,
    networks: Option<Vec<Cidr>>,
    chap: Option<ValidChap>,
}

impl ValidAccess {
    /// Allowed initiator names, lowercased (iSCSI names compare case-insensitively).
    pub fn initiators(&self) -> Option<&[String]> {
        self.initiators.as_deref()
    }
    /// Allowed source networks.
    pub fn networks(&self) -> Option<&[Cidr]> {
        self.networks.as_deref()
    }
    /// CHAP credentials, if required.
    pub fn chap(&self) -> Option<&ValidChap> {
        self.chap.as_ref()
    }
    /// Whether neither an ACL nor CHAP protects the target.
    pub fn is_open(&self) -> bool {
        self.initiators.is_none() && self.networks.is_none() && self.chap.is_none()
    }
}

fn validate_chap(p: &mut Problems, at: &str, c: &Chap) -> Option<ValidChap> {
    let before = p.0.len();
    let name_ok = |n: &str| !n.is_empty() && n.len() <= CHAP_SECRET_BYTES_MAX && !n.contains('\0');
    if !name_ok(&c.username) {
        p.push(
            format!("{at}.username"),
            format!("must be 1..={CHAP_SECRET_BYTES_MAX} bytes without NUL"),
        );
    }
    // Messages never quote a secret: they only say what rule it breaks.
    fn check_secret(p: &mut Problems, at: &str, field: &str, v: Option<&String>) -> Option<String> {
        match v {
            None => {
                p.push(format!("{at}.{field}"), "is required");
                None
            }
            Some(s) if s.is_empty() || s.len() > CHAP_SECRET_BYTES_MAX || s.contains('\0') => {
                p.push(
                    format!("{at}.{field}"),
                    format!("must be 1..={CHAP_SECRET_BYTES_MAX} bytes without NUL"),
                );
                None
            }
            Some(s) => Some(s.clone()),
        }
    }
    let secret = check_secret(p, at, "secret", c.secret.as_ref());
    let mutual = match (&c.mutual_username, &c.mutual_secret) {
        (None, None) => None,
        (Some(n), s) => {
            if !name_ok(n) {
                p.push(
                    format!("{at}.mutualUsername"),
                    format!("must be 1..={CHAP_SECRET_BYTES_MAX} bytes without NUL"),
                );
            }
            let s = check_secret(p, at, "mutualSecret", s.as_ref());
            if s.is_some() && s == secret {
                // The same secret both ways lets an attacker reflect one side's answer.
                p.push(format!("{at}.mutualSecret"), "must differ from secret");
            }
            s.map(|s| (n.clone(), s))
        }
        (None, Some(_)) => {
            p.push(
                format!("{at}.mutualUsername"),
                "is required with mutualSecret",
            );
            None
        }
    };
    let mut algorithms = c.algorithms.clone().unwrap_or_else(|| {
        vec![
            ChapAlgorithmName::Md5,
            ChapAlgorithmName::Sha1,
            ChapAlgorithmName::Sha256,
            ChapAlgorithmName::Sha3_256,
        ]
    });
    algorithms.sort();
    algorithms.dedup();
    if algorithms.is_empty() {
        p.push(
            format!("{at}.algorithms"),
            "must name at least one algorithm",
        );
    }
    (p.0.len() == before).then(|| ValidChap {
        username: c.username.clone(),
        secret: secret.unwrap_or_default(),
        mutual,
        algorithms,
    })
}

fn validate_access(p: &mut Problems, base: &str, t: &Target) -> ValidAccess {
    let mut access = ValidAccess::default();
    if let Some(acl) = &t.acl {
        if let Some(names) = &acl.initiators {
            let mut out = Vec::with_capacity(names.len());
            for (i, n) in names.iter().enumerate() {
                match check_iscsi_name(n) {
                    Ok(()) => out.push(n.to_ascii_lowercase()),
                    Err(e) => p.push(
                        format!("{base}.acl.initiators[{i}]"),
                        format!("invalid iSCSI name {n:?}: {e}"),
                    ),
                }
            }
            access.initiators = Some(out);
        }
        if let Some(nets) = &acl.networks {
            let mut out = Vec::with_capacity(nets.len());
            for (i, n) in nets.iter().enumerate() {
                match Cidr::parse(n) {
                    Ok(c) => out.push(c),
                    Err(e) => p.push(
                        format!("{base}.acl.networks[{i}]"),
                        format!("invalid network {n:?}: {e}"),
                    ),
                }
            }
            access.networks = Some(out);
        }
    }
    if let Some(c) = t.auth.as_ref().and_then(|a| a.chap.as_ref()) {
        access.chap = validate_chap(p, &format!("{base}.auth.chap"), c);
    }
    access
}

/// A validated storage with every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidStorage {
    device_id: u64,
    path: PathBuf,
    online: bool,
    backend: BackendType,
    read_only: bool,
    block_size: u32,
    physical_block_size: u32,
    removable: bool,
    direct_io: bool,
    size_bytes: Option<u64>,
    io_uring_queue_depth: u32,
    numa_node: Option<u32>,
    numa_enabled: bool,
    thin_provisioning: bool,
    cpu_list: Option<CpuList>,
    alua_states: BTreeMap<u16, AluaState>,
}

/// A validated portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidPortal {
    id: u16,
    addr: SocketAddr,
}

/// A validated target: its name, LUN map and portal groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidTarget {
    name: String,
    luns: BTreeMap<u16, ValidStorage>,
    tpgs: BTreeMap<u16, Vec<u16>>,
    access: ValidAccess,
}

/// The `performance` section with every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPerformance {
    enable_numa: Option<bool>,
    io_uring_enabled: Option<bool>,
    io_uring_queue_depth: u32,
    numa_buffer_pool_size: u32,
    numa_buffer_size_bytes: u64,
    worker_threads: Option<u32>,
    cpu_list: Option<CpuList>,
}

impl ValidConfig {
    /// The config as it was written (with `file:` paths and unresolved defaults), for
    /// showing or re-sending it.
    pub fn as_config(&self) -> &Config {
        &self.source
    }

    /// Gives back the config as it was written.
    pub fn into_config(self) -> Config {
        self.source
    }

    /// All storages, ascending by device id.
    pub fn storages(&self) -> impl Iterator<Item = &ValidStorage> + '_ {
        self.storages.values()
    }

    /// The storage with `device_id`, if any.
    pub fn storage(&self, device_id: u64) -> Option<&ValidStorage> {
        self.storages.get(&device_id)
    }

    /// All portals as `(id, address)`, ascending by id.
    pub fn portals(&self) -> impl Iterator<Item = (u16, SocketAddr)> + '_ {
        self.portals.values().map(|p| (p.id, p.addr))
    }

    /// The address of portal `id`, if any.
    pub fn portal(&self, id: u16) -> Option<SocketAddr> {
        self.portals.get(&id).map(|p| p.addr)
    }

    /// All targets, ascending by name.
    pub fn targets(&self) -> impl Iterator<Item = &ValidTarget> + '_ {
        self.targets.values()
    }

    /// The target called `name`, if any.
    pub fn target(&self, name: &str) -> Option<&ValidTarget> {
        self.targets.get(name)
    }

    /// CHAP credentials discovery sessions must present, if any.
    pub fn discovery_chap(&self) -> Option<&ValidChap> {
        self.discovery_chap.as_ref()
    }

    /// The resolved `alua` section.
    pub fn alua(&self) -> &ValidAlua {
        &self.alua
    }

    /// The resolved `performance` section.
    pub fn performance(&self) -> &ValidPerformance {
        &self.performance
    }

    /// `performance.workerThreads` as a thread count, if set.
    pub fn performance_worker_threads(&self) -> Option<usize> {
        self.performance.worker_threads_usize()
    }
}

impl ValidStorage {
    /// The storage's `deviceID`.
    pub fn device_id(&self) -> u64 {
        self.device_id
    }

    /// Backing path with any `file:` prefix removed. Not checked for existence.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether media access is enabled (default true).
    pub fn online(&self) -> bool {
        self.online
    }

    /// The effective backend after applying `performance.enableIoUring`.
    pub fn backend(&self) -> BackendType {
        self.backend
    }

    /// Whether writes are refused (default false).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Logical block size in bytes: 512 or 4096.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Physical block size in bytes: a power of two, a multiple of
    /// [`block_size`](Self::block_size) by at most 128 (`physicalBlockSize`, defaults to
    /// the logical block size).
    pub fn physical_block_size(&self) -> u32 {
        self.physical_block_size
    }

    /// Whether the medium is removable (`removable`, default false).
    pub fn removable(&self) -> bool {
        self.removable
    }

    /// Whether to open with O_DIRECT: true only for the `iouring` backend with `directIO`
    /// not set to false.
    pub fn direct_io(&self) -> bool {
        self.direct_io
    }

    /// Size of the sparse file to create if `path` is missing; a non-zero multiple of
    /// [`block_size`](Self::block_size). Raised on a storage in use, the data plane grows
    /// the medium online.
    pub fn size_bytes(&self) -> Option<u64> {
        self.size_bytes
    }

    /// True when `other` is this storage with another `size` and nothing else changed:
    /// the change the data plane applies as an online resize instead of reopening.
    pub fn differs_only_in_size(&self, other: &ValidStorage) -> bool {
        self.size_bytes != other.size_bytes
            && *self
                == ValidStorage {
                    size_bytes: self.size_bytes,
                    ..other.clone()
                }
    }

    /// True when `other` is this storage, except perhaps for its `size` and `aluaStates`:
    /// the changes the data plane applies to open logical units (an online resize, new
    /// access states) instead of reopening them.
    pub fn same_but_live_settings(&self, other: &ValidStorage) -> bool {
        *self
            == ValidStorage {
                size_bytes: self.size_bytes,
                alua_states: self.alua_states.clone(),
                ..other.clone()
            }
    }

    /// The access state of target port group `group` for this storage's logical units:
    /// its `aluaStates` entry, else active/optimized.
    pub fn alua_state(&self, group: u16) -> AluaState {
        self.alua_states.get(&group).copied().unwrap_or_default()
    }

    /// io_uring queue depth in 1..=32768, not yet rounded to a power of two: the storage's
    /// value, else `performance.ioUringQueueDepth`, else 256.
    pub fn io_uring_queue_depth(&self) -> u32 {
        self.io_uring_queue_depth
    }

    /// Whether NUMA placement is enabled for this storage.
    pub fn numa_enabled(&self) -> bool {
        self.numa_enabled
    }

    /// The NUMA node to bind to: `Some` only when NUMA is enabled and `numaNode` is set.
    pub fn numa_node(&self) -> Option<u32> {
        self.numa_node
    }

    /// Whether to advertise logical block provisioning (`thinprovisioning`).
    pub fn thin_provisioning(&self) -> bool {
        self.thin_provisioning
    }

    /// CPUs for this storage's I/O threads, if restricted.
    pub fn cpu_list(&self) -> Option<&CpuList> {
        self.cpu_list.as_ref()
    }
}

impl ValidPortal {
    /// The portal's id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The address to listen on; port 0 means the OS chooses.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl ValidTarget {
    /// The target's iSCSI name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The LUN map as `(lun, storage)`, ascending by LUN.
    pub fn luns(&self) -> impl Iterator<Item = (u16, &ValidStorage)> + '_ {
        self.luns.iter().map(|(lun, s)| (*lun, s))
    }

    /// The storage behind `lun`, if mapped.
    pub fn lun(&self, lun: u16) -> Option<&ValidStorage> {
        self.luns.get(&lun)
    }

    /// Target portal groups as `(tag, portal ids)`, ascending by tag; each portal id
    /// exists and appears in at most one group.
    pub fn tpgs(&self) -> impl Iterator<Item = (u16, &[u16])> + '_ {
        self.tpgs.iter().map(|(tag, ids)| (*tag, ids.as_slice()))
    }

    /// Who may log in: the ACL and CHAP credentials.
    pub fn access(&self) -> &ValidAccess {
        &self.access
    }

    /// The tag of the portal group containing portal `portal_id`, if any.
    pub fn tpg_of_portal(&self, portal_id: u16) -> Option<u16> {
        self.tpgs
            .iter()
            .find(|(_, ids)| ids.contains(&portal_id))
            .map(|(tag, _)| *tag)
    }
}

impl ValidPerformance {
    /// Whether NUMA-local buffer pools and pinning are enabled (default false).
    pub fn numa_enabled(&self) -> bool {
        self.enable_numa.unwrap_or(false)
    }

    /// `enableIoUring` as written: `None` means each storage decides.
    pub fn io_uring_enabled(&self) -> Option<bool> {
        self.io_uring_enabled
    }

    /// Default io_uring queue depth (default 256).
    pub fn io_uring_queue_depth(&self) -> u32 {
        self.io_uring_queue_depth
    }

    /// Buffers per NUMA node (default 1024).
    pub fn numa_buffer_pool_size(&self) -> u32 {
        self.numa_buffer_pool_size
    }

    /// Size of each pool buffer in bytes (default 262144), a multiple of 4096.
    pub fn numa_buffer_size_bytes(&self) -> u64 {
        self.numa_buffer_size_bytes
    }

    /// Number of worker threads, if set.
    pub fn worker_threads(&self) -> Option<u32> {
        self.worker_threads
    }

    /// CPUs for the worker threads, if restricted.
    pub fn cpu_list(&self) -> Option<&CpuList> {
        self.cpu_list.as_ref()
    }

    fn worker_threads_usize(&self) -> Option<usize> {
        self.worker_threads.and_then(|n| usize::try_from(n).ok())
    }
}

/// Accumulates problems while validating.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Quotes a map key for a JSON path: `"key"` with `"`, `\` and control characters escaped.
fn quote_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    out.push('"');
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parses a plain decimal number: ASCII digits only (no sign, no spaces), at most u64.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn in_range_u32(
    p: &mut Problems,
    path: String,
    value: Option<u32>,
    lo: u32,
    hi: u32,
) -> Option<u32> {
    let v = value?;
    if (lo..=hi).contains(&v) {
        Some(v)
    } else {
        p.push(path, format!("{v} is out of range {lo}..={hi}"));
        None
    }
}

fn cpu_list(p: &mut Problems, path: String, value: Option<&String>) -> Option<CpuList> {
    match CpuList::parse(value?) {
        Ok(l) => Some(l),
        Err(e) => {
            p.push(path, e.to_string());
            None
        }
    }
}

/// Turns a written path into a filesystem path: strips gotgt's `file:` scheme and
/// refuses other schemes, empty paths and paths `open(2)` cannot take.
fn storage_path(raw: &str) -> Result<PathBuf, String> {
    let plain = if let Some(rest) = raw.strip_prefix("file:") {
        // `file:///x` and `file:/x` both name `/x`.
        match rest.strip_prefix("//") {
            Some(r) if r.starts_with('/') => r,
            _ => rest,
        }
    } else {
        if let Some((scheme, _)) = raw.split_once(':') {
            let looks_like_scheme = scheme.len() > 1
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric())
                && scheme
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic());
            if looks_like_scheme {
                return Err(format!(
                    "{raw:?}: unsupported scheme \"{scheme}:\" (only \"file:\" or a plain path)"
                ));
            }
        }
        raw
    };
    if plain.is_empty() {
        return Err(format!("{raw:?}: path is empty"));
    }
    if plain.contains('\0') {
        return Err(format!("{raw:?}: path contains a NUL byte"));
    }
    if plain.len() > PATH_BYTES_MAX {
        return Err(format!(
            "path is {} bytes long, more than the maximum {PATH_BYTES_MAX}",
            plain.len()
        ));
    }
    Ok(PathBuf::from(plain))
}

/// Parses a portal `host[:port]`; see [`Portal::portal`].
fn portal_addr(raw: &str) -> Result<SocketAddr, String> {
    let bad_port = |port: &str| format!("{raw:?}: port {port:?} is not an integer in 0..=65535");
    let port_of = |port: &str| {
        parse_decimal(port)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| bad_port(port))
    };
    if raw.is_empty() {
        return Err("portal is empty".to_owned());
    }
    if let Some(rest) = raw.strip_prefix('*') {
        let port = match rest.strip_prefix(':') {
            Some(port) => port_of(port)?,
            None if rest.is_empty() => ISCSI_PORT_DEFAULT,
            None => return Err(format!("{raw:?}: expected \"*:port\"")),
        };
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    if raw.starts_with('[') {
        let Some(close) = raw.find(']') else {
            return Err(format!("{raw:?}: missing ']' after the IPv6 address"));
        };
        let after = &raw[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => port_of(port)?,
            None if after.is_empty() => ISCSI_PORT_DEFAULT,
            None => return Err(format!("{raw:?}: expected \"[address]:port\"")),
        };
        let with_port = format!("{}:{port}", &raw[..=close]);
        return with_port
            .parse::<SocketAddr>()
            .map_err(|_| format!("{raw:?}: {:?} is not an IPv6 address", &raw[1..close]));
    }
    let (host, port) = match raw.split_once(':') {
        Some((_, rest)) if rest.contains(':') => {
            return Err(format!(
                "{raw:?}: IPv6 addresses must be in brackets, like \"[::1]:3260\""
            ));
        }
        Some((host, port)) => (host, port_of(port)?),
        None => (raw, ISCSI_PORT_DEFAULT),
    };
    match host.parse::<Ipv4Addr>() {
        Ok(ip) => Ok(SocketAddr::from((ip, port))),
        Err(_) => Err(format!(
            "{raw:?}: {host:?} is not an IPv4 address or a bracketed IPv6 address \
             (host names are not resolved)"
        )),
    }
}

impl Config {
    /// Checks the whole config and returns its typed, resolved form, or every problem
    /// found. This is the only way to build a [`ValidConfig`].
    pub fn validate(self) -> Result<ValidConfig, ValidationError> {
        let mut p = Problems::default();
        // The performance section is resolved first because it supplies the storages'
        // defaults, but its problems are reported last, in document order.
        let mut perf_problems = Problems::default();
        let performance = validate_performance(&mut perf_problems, self.performance.as_ref());
        // The alua section is resolved before the storages that name its groups; its
        // problems are reported after the targets', in document order.
        let mut alua_problems = Problems::default();
        let alua = validate_alua(&mut alua_problems, self.alua.as_ref());
        let storages = validate_storages(&mut p, &self.storages, &performance, &alua);
        let portals = validate_portals(&mut p, &self.iscsi_portals);
        let mut targets = BTreeMap::new();
        for (name, target) in &self.iscsi_targets {
            if let Some(t) = validate_target(&mut p, name, target, &storages, &portals) {
                targets.insert(name.clone(), t);
            }
        }
        let discovery_chap = self
            .discovery
            .as_ref()
            .and_then(|d| d.auth.as_ref())
            .and_then(|a| a.chap.as_ref())
            .and_then(|c| validate_chap(&mut p, "discovery.auth.chap", c));
        p.0.append(&mut alua_problems.0);
        p.0.append(&mut perf_problems.0);
        if p.0.is_empty() {
            Ok(ValidConfig {
                source: self,
                storages,
                portals,
                targets,
                performance,
                discovery_chap,
                alua,
            })
        } else {
            Err(ValidationError { errors: p.0 })
        }
    }
}

fn validate_performance(p: &mut Problems, perf: Option<&Performance>) -> ValidPerformance {
    let default = Performance::default();
    let perf = perf.unwrap_or(&default);
    let path = |key: &str| format!("performance.{key}");
    let io_uring_queue_depth = in_range_u32(
        p,
        path("ioUringQueueDepth"),
        perf.io_uring_queue_depth,
        1,
        IO_URING_QUEUE_DEPTH_MAX,
    );
    let numa_buffer_pool_size = in_range_u32(
        p,
        path("numaBufferPoolSize"),
        perf.numa_buffer_pool_size,
        1,
        NUMA_BUFFER_POOL_SIZE_MAX,
    );
    let numa_buffer_size_bytes = match perf.numa_buffer_size {
        Some(n) if !(NUMA_BUFFER_SIZE_BYTES_MIN..=NUMA_BUFFER_SIZE_BYTES_MAX).contains(&n) => {
            p.push(
                path("numaBufferSize"),
                format!(
                    "{n} is out of range \
                     {NUMA_BUFFER_SIZE_BYTES_MIN}..={NUMA_BUFFER_SIZE_BYTES_MAX} bytes"
                ),
            );
            None
        }
        Some(n) if n % NUMA_BUFFER_SIZE_BYTES_MIN != 0 => {
            p.push(
                path("numaBufferSize"),
                format!("{n} is not a multiple of {NUMA_BUFFER_SIZE_BYTES_MIN} bytes"),
            );
            None
        }
        other => other,
    };
    let worker_threads = in_range_u32(
        p,
        path("workerThreads"),
        perf.worker_threads,
        1,
        WORKER_THREADS_MAX,
    );
    let cpu_list = cpu_list(p, path("cpuList"), perf.cpu_list.as_ref());
    ValidPerformance {
        enable_numa: perf.enable_numa,
        io_uring_enabled: perf.enable_io_uring,
        io_uring_queue_depth: io_uring_queue_depth.unwrap_or(IO_URING_QUEUE_DEPTH_DEFAULT),
        numa_buffer_pool_size: numa_buffer_pool_size.unwrap_or(NUMA_BUFFER_POOL_SIZE_DEFAULT),
        numa_buffer_size_bytes: numa_buffer_size_bytes.unwrap_or(NUMA_BUFFER_SIZE_BYTES_DEFAULT),
        worker_threads,
        cpu_list,
    }
}

/// Checks the `alua` section: ids in 1..=65535, every group and every relative target
/// port of the HA group distinct, at most [`ALUA_PEER_GROUPS_MAX`] peers.
fn validate_alua(p: &mut Problems, alua: Option<&Alua>) -> ValidAlua {
    let Some(a) = alua else {
        return ValidAlua::default();
    };
    let id = |p: &mut Problems, path: String, v: u16| {
        if v < ALUA_ID_MIN {
            p.push(path, "0 is reserved (SPC-4): use 1..=65535");
        }
        v
    };
    let group = id(p, "alua.targetPortGroup".into(), a.target_port_group);
    let port = match a.relative_target_port {
        Some(r) => id(p, "alua.relativeTargetPort".into(), r),
        None => group,
    };
    if a.peer_groups.len() > ALUA_PEER_GROUPS_MAX {
        p.push(
            "alua.peerGroups",
            format!(
                "{} peer groups, at most {ALUA_PEER_GROUPS_MAX}",
                a.peer_groups.len()
            ),
        );
    }
    let mut peers: Vec<(u16, u16)> = Vec::new();
    for (i, peer) in a.peer_groups.iter().enumerate() {
        let at = |key: &str| format!("alua.peerGroups[{i}].{key}");
        let g = id(p, at("targetPortGroup"), peer.target_port_group);
        let r = match peer.relative_target_port {
            Some(r) => id(p, at("relativeTargetPort"), r),
            None => g,
        };
        // Each id must differ from this gateway's own and from every earlier peer's.
        let clash = |v: u16, own: u16, own_name: &str, of: fn(&(u16, u16)) -> u16| {
            if v == own {
                Some(own_name.to_string())
            } else {
                peers
                    .iter()
                    .position(|x| of(x) == v)
                    .map(|j| format!("alua.peerGroups[{j}]"))
            }
        };
        if let Some(other) = clash(g, group, "alua.targetPortGroup", |x| x.0) {
            p.push(
                at("targetPortGroup"),
                format!("duplicate target port group {g} (also {other})"),
            );
        }
        let own_port = "this gateway's relative target port";
        if let Some(other) = clash(r, port, own_port, |x| x.1) {
            p.push(
                at("relativeTargetPort"),
                format!("duplicate relative target port {r} (also {other})"),
            );
        }
        peers.push((g, r));
    }
    ValidAlua {
        local: (group, port),
        peers,
    }
}

fn validate_storages(
    p: &mut Problems,
    storages: &[Storage],
    perf: &ValidPerformance,
    alua: &ValidAlua,
) -> BTreeMap<u64, ValidStorage> {
    // A storage with a problem is still recorded (the config is refused anyway), so that
    // LUNs referring to it are not also reported as referring to a missing storage.
    let mut out: BTreeMap<u64, ValidStorage> = BTreeMap::new();
    let mut first_by_id: HashMap<u64, usize> = HashMap::new();
    let mut first_by_path: HashMap<PathBuf, usize> = HashMap::new();
    for (i, s) in storages.iter().enumerate() {
        let at = |key: &str| format!("storages[{i}].{key}");
        let duplicate_id = match first_by_id.get(&s.device_id) {
            Some(first) => {
                p.push(
                    at("deviceID"),
                    format!("duplicate id {} (also storages[{first}])", s.device_id),
                );
                true
            }
            None => {
                first_by_id.insert(s.device_id, i);
                false
            }
        };
        let path = match storage_path(&s.path) {
            Ok(path) => {
                match first_by_path.get(&path) {
                    Some(first) => p.push(
                        at("path"),
                        format!(
                            "duplicate path {:?} (also storages[{first}])",
                            path.display().to_string()
                        ),
                    ),
                    None => {
                        first_by_path.insert(path.clone(), i);
                    }
                }
                path
            }
            Err(msg) => {
                p.push(at("path"), msg);
                PathBuf::new()
            }
        };
        if let Some(n) = s.numa_node.filter(|n| *n > NUMA_NODE_MAX) {
            p.push(
                at("numaNode"),
                format!("{n} is out of range 0..={NUMA_NODE_MAX}"),
            );
        }
        let depth = in_range_u32(
            p,
            at("ioUringQueueDepth"),
            s.io_uring_queue_depth,
            1,
            IO_URING_QUEUE_DEPTH_MAX,
        );
        let block_size = match storage_block_size(s) {
            Ok(b) => b,
            Err((key, msg)) => {
                p.push(at(key), msg);
                BLOCK_SIZE_BYTES_DEFAULT
            }
        };
        let physical_block_size = match s.physical_block_size {
            None => block_size,
            Some(pb)
                if pb.is_power_of_two()
                    && pb >= block_size
                    && pb <= PHYSICAL_BLOCK_SIZE_BYTES_MAX
                    && pb / block_size <= LOGICAL_PER_PHYSICAL_MAX =>
            {
                pb
            }
            Some(pb) => {
                p.push(
                    at("physicalBlockSize"),
                    format!(
                        "{pb} is not a power of two from the block size {block_size} to {} and at most {LOGICAL_PER_PHYSICAL_MAX} blocks",
                        PHYSICAL_BLOCK_SIZE_BYTES_MAX
                    ),
                );
                block_size
            }
        };
        match s.size {
            Some(0) => p.push(at("size"), "0 is not a positive number of bytes"),
            Some(n) if n % u64::from(block_size) != 0 => p.push(
                at("size"),
                format!("{n} is not a multiple of the block size {block_size}"),
            ),
            _ => {}
        }
        let cpus = cpu_list(p, at("cpuList"), s.cpu_list.as_ref());
        let mut alua_states = BTreeMap::new();
        for (key, state) in &s.alua_states {
            let path = format!("storages[{i}].aluaStates.{}", quote_key(key));
            match parse_decimal(key).and_then(|g| u16::try_from(g).ok()) {
                Some(g) if alua.knows_group(g) => {
                    if alua_states.insert(g, *state).is_some() {
                        p.push(path, format!("target port group {g} is given twice"));
                    }
                }
                Some(g) => p.push(
                    path,
                    format!(
                        "target port group {g} is neither alua.targetPortGroup ({}) nor in alua.peerGroups",
                        alua.target_port_group()
                    ),
                ),
                None => p.push(path, "not a target port group number 1..=65535"),
            }
        }
        if duplicate_id {
            continue;
        }
        // enableIoUring: false is a global switch that wins over every storage.
        let backend = match (s.backend_type, perf.io_uring_enabled) {
            (_, Some(false)) => BackendType::File,
            (Some(t), _) => t,
            (None, Some(true)) => BackendType::Iouring,
            (None, None) => BackendType::File,
        };
        // Likewise enableNUMA: false in `performance` disables NUMA for every storage.
        let numa_enabled = match perf.enable_numa {
            Some(false) => false,
            global => s.enable_numa.or(global).unwrap_or(false),
        };
        out.insert(
            s.device_id,
            ValidStorage {
                device_id: s.device_id,
                path,
                online: s.online.unwrap_or(true),
                backend,
                read_only: s.read_only.unwrap_or(false),
                block_size,
                physical_block_size,
                removable: s.removable.unwrap_or(false),
                direct_io: backend == BackendType::Iouring && s.direct_io.unwrap_or(true),
                size_bytes: s.size,
                io_uring_queue_depth: depth.unwrap_or(perf.io_uring_queue_depth),
                numa_node: s.numa_node.filter(|_| numa_enabled),
                numa_enabled,
                thin_provisioning: s.thin_provisioning.unwrap_or(true),
                cpu_list: cpus,
                alua_states,
            },
        );
    }
    out
}

/// Largest `physicalBlockSize`: the largest logical block the data plane serves.
const PHYSICAL_BLOCK_SIZE_BYTES_MAX: u32 = 65536;
/// Most logical blocks per physical block: 2^7, so the exponent READ CAPACITY (16) carries
/// in four bits stays small and a physical block of 512-byte blocks is at most 64 KiB.
const LOGICAL_PER_PHYSICAL_MAX: u32 = 128;

/// Resolves `blockSize` and gotgt's `blockShift` into one block size, or names the key
/// that is wrong.
fn storage_block_size(s: &Storage) -> Result<u32, (&'static str, String)> {
    let from_size = match s.block_size {
        None => None,
        Some(b @ (512 | 4096)) => Some(b),
        Some(b) => return Err(("blockSize", format!("{b} is not 512 or 4096"))),
    };
    let from_shift = match s.block_shift {
        None | Some(0) => None,
        Some(9) => Some(512),
        Some(12) => Some(4096),
        Some(n) => {
            return Err((
                "blockShift",
                format!("{n} is not 9 (512 bytes) or 12 (4096 bytes)"),
            ))
        }
    };
    match (from_size, from_shift) {
        (Some(b), Some(sh)) if b != sh => Err((
            "blockShift",
            format!("gives {sh} bytes but blockSize is {b}"),
        )),
        (b, sh) => Ok(b.or(sh).unwrap_or(BLOCK_SIZE_BYTES_DEFAULT)),
    }
}

fn validate_portals(p: &mut Problems, portals: &[Portal]) -> BTreeMap<u16, ValidPortal> {
    let mut out: BTreeMap<u16, ValidPortal> = BTreeMap::new();
    let mut first_by_id: HashMap<u16, usize> = HashMap::new();
    let mut bound: Vec<(usize, SocketAddr)> = Vec::new();
    for (i, portal) in portals.iter().enumerate() {
        let at = |key: &str| format!("iscsiportals[{i}].{key}");
        let duplicate_id = match first_by_id.get(&portal.id) {
            Some(first) => {
                p.push(
                    at("id"),
                    format!("duplicate id {} (also iscsiportals[{first}])", portal.id),
                );
                true
            }
            None => {
                first_by_id.insert(portal.id, i);
                false
            }
        };
        let addr = match portal_addr(&portal.portal) {
            Ok(addr) => {
                // Port 0 lets the OS pick a free port, so such portals never collide.
                if addr.port() != 0 {
                    let clash = bound.iter().find(|(_, other)| {
                        other.port() == addr.port()
                            && other.is_ipv4() == addr.is_ipv4()
                            && (other.ip() == addr.ip()
                                || other.ip().is_unspecified()
                                || addr.ip().is_unspecified())
                    });
                    match clash {
                        Some((first, other)) if *other == addr => p.push(
                            at("portal"),
                            format!("duplicate address {addr} (also iscsiportals[{first}])"),
                        ),
                        Some((first, other)) => p.push(
                            at("portal"),
                            format!("address {addr} overlaps {other} of iscsiportals[{first}]"),
                        ),
                        None => bound.push((i, addr)),
                    }
                }
                addr
            }
            Err(msg) => {
                p.push(at("portal"), msg);
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
            }
        };
        if !duplicate_id {
            out.insert(
                portal.id,
                ValidPortal {
                    id: portal.id,
                    addr,
                },
            );
        }
    }
    out
}

fn validate_target(
    p: &mut Problems,
    name: &str,
    target: &Target,
    storages: &BTreeMap<u64, ValidStorage>,
    portals: &BTreeMap<u16, ValidPortal>,
) -> Option<ValidTarget> {
    let base = format!("iscsitargets.{}", quote_key(name));
    let errors_before = p.0.len();
    if let Err(e) = check_iscsi_name(name) {
        p.push(base.clone(), format!("invalid iSCSI name {name:?}: {e}"));
    }
    let mut luns: BTreeMap<u16, ValidStorage> = BTreeMap::new();
    let mut lun_keys: BTreeMap<u16, &str> = BTreeMap::new();
    for (key, device_id) in &target.luns {
        let at = format!("{base}.luns.{}", quote_key(key));
        let lun = match parse_decimal(key).and_then(|n| u16::try_from(n).ok()) {
            Some(n) if n <= LUN_MAX => n,
            _ => {
                p.push(
                    at,
                    format!("LUN {key:?} is not an integer in 0..={LUN_MAX}"),
                );
                continue;
            }
        };
        if let Some(other) = lun_keys.get(&lun) {
            p.push(at, format!("LUN {lun} is also given as {other:?}"));
            continue;
        }
        lun_keys.insert(lun, key);
        match storages.get(device_id) {
            Some(s) => {
                luns.insert(lun, s.clone());
            }
            None => p.push(at, format!("storage {device_id} does not exist")),
        }
    }
    let mut tpgs: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
    let mut tag_keys: BTreeMap<u16, &str> = BTreeMap::new();
    let mut group_of_portal: HashMap<u16, u16> = HashMap::new();
    for (key, ids) in &target.tpgts {
        let at = format!("{base}.tpgts.{}", quote_key(key));
        let tag = match parse_decimal(key).and_then(|n| u16::try_from(n).ok()) {
            Some(n) if n >= 1 => n,
            _ => {
                p.push(
                    at,
                    format!("portal group tag {key:?} is not an integer in 1..=65535"),
                );
                continue;
            }
        };
        if let Some(other) = tag_keys.get(&tag) {
            p.push(
                at,
                format!("portal group tag {tag} is also given as {other:?}"),
            );
            continue;
        }
        tag_keys.insert(tag, key);
        let mut members = Vec::with_capacity(ids.len());
        for (j, id) in ids.iter().enumerate() {
            let at = format!("{at}[{j}]");
            if !portals.contains_key(id) {
                p.push(at, format!("portal {id} does not exist"));
            } else if let Some(group) = group_of_portal.get(id) {
                // RFC 7143 §4.4.1: a network portal belongs to one portal group per target.
                p.push(
                    at,
                    format!("portal {id} is already in portal group {group}"),
                );
            } else {
                group_of_portal.insert(*id, tag);
                members.push(*id);
            }
        }
        tpgs.insert(tag, members);
    }
    let access = validate_access(p, &base, target);
    (p.0.len() == errors_before).then(|| ValidTarget {
        name: name.to_owned(),
        luns,
        tpgs,
        access,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference document's NUMA-only example.
    const DOC_NUMA: &str = r#"{
"performance": {
"enableNUMA": true,
"numaBufferPoolSize": 1024,
"numaBufferSize": 262144
}
}"#;

    /// The reference document's io_uring example.
    const DOC_IOURING: &str = r#"{
"storages": [
{
"deviceID": 1000,
"path": "/var/tmp/disk.img",
"online": true,
"backendType": "iouring",
"ioUringQueueDepth": 4096
}
],
"performance": {
"enableIoUring": true,
"ioUringQueueDepth": 4096
}
}"#;

    /// The reference document's combined example.
    const DOC_COMBINED: &str = r#"{
"storages": [
{
"deviceID": 1000,
"path": "/var/tmp/disk.img",
"online": true,
"backendType": "iouring",
"enableNUMA": true,
"numaNode": 0,
"ioUringQueueDepth": 4096
}
],
"iscsiportals": [
{
"id": 0,
"portal": "192.168.1.100:3260"
}
],
"iscsitargets": {
"iqn.2024-01.com.gotgt:fast-storage": {
"tpgts": { "1": [0] },
"luns": { "1": 1000 }
}
},
"performance": {
"enableNUMA": true,
"enableIoUring": true,
"ioUringQueueDepth": 4096,
"numaBufferPoolSize": 1024,
"numaBufferSize": 262144
}
}"#;

    fn parse(json: &str) -> Config {
        serde_json::from_str(json).unwrap()
    }

    fn valid(json: &str) -> ValidConfig {
        match parse(json).validate() {
            Ok(v) => v,
            Err(e) => panic!("config refused:\n{e}"),
        }
    }

    /// Validates `json`, expecting failure, and returns the error lines.
    fn problems(json: &str) -> Vec<String> {
        match parse(json).validate() {
            Ok(_) => panic!("config accepted: {json}"),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    }

    /// Asserts that validating `json` gives exactly `want`.
    fn check(json: &str, want: &[&str]) {
        assert_eq!(problems(json), want, "{json}");
    }

    fn with_storage(extra: &str) -> String {
        format!(r#"{{"storages":[{{"deviceID":1,"path":"/d/a"{extra}}}]}}"#)
    }

    fn with_portal(addr: &str) -> String {
        format!(r#"{{"iscsiportals":[{{"id":0,"portal":"{addr}"}}]}}"#)
    }

    #[test]
    fn empty_document_is_valid_and_empty() {
        let v = valid("{}");
        assert_eq!(v.storages().count(), 0);
        assert_eq!(v.portals().count(), 0);
        assert_eq!(v.targets().count(), 0);
        assert_eq!(v.performance().io_uring_queue_depth(), 256);
        assert_eq!(v.performance().numa_buffer_size_bytes(), 262_144);
        assert_eq!(v.performance().numa_buffer_pool_size(), 1024);
        assert!(!v.performance().numa_enabled());
        assert_eq!(v.performance_worker_threads(), None);
    }

    #[test]
    fn reference_numa_example_loads() {
        let v = valid(DOC_NUMA);
        assert!(v.performance().numa_enabled());
        assert_eq!(v.performance().numa_buffer_pool_size(), 1024);
        assert_eq!(v.performance().numa_buffer_size_bytes(), 262_144);
    }

    #[test]
    fn reference_io_uring_example_loads() {
        let v = valid(DOC_IOURING);
        let s = v.storage(1000).unwrap();
        assert_eq!(s.backend(), BackendType::Iouring);
        assert_eq!(s.io_uring_queue_depth(), 4096);
        assert_eq!(s.path(), Path::new("/var/tmp/disk.img"));
        assert!(s.online());
        assert!(s.direct_io());
        assert_eq!(s.block_size(), 512);
    }

    #[test]
    fn reference_combined_example_loads_with_resolved_values() {
        let v = valid(DOC_COMBINED);
        assert_eq!(
            v.portals().collect::<Vec<_>>(),
            vec![(0, "192.168.1.100:3260".parse().unwrap())]
        );
        let t = v.target("iqn.2024-01.com.gotgt:fast-storage").unwrap();
        assert_eq!(t.name(), "iqn.2024-01.com.gotgt:fast-storage");
        let luns: Vec<_> = t.luns().map(|(l, s)| (l, s.device_id())).collect();
        assert_eq!(luns, vec![(1, 1000)]);
        assert_eq!(t.tpgs().collect::<Vec<_>>(), vec![(1, &[0u16][..])]);
        assert_eq!(t.tpg_of_portal(0), Some(1));
        assert_eq!(t.tpg_of_portal(1), None);
        let s = t.lun(1).unwrap();
        assert!(s.numa_enabled());
        assert_eq!(s.numa_node(), Some(0));
        assert_eq!(s.backend(), BackendType::Iouring);
    }

    #[test]
    fn config_round_trips_with_the_same_shape() {
        for doc in [DOC_NUMA, DOC_IOURING, DOC_COMBINED] {
            let original: serde_json::Value = serde_json::from_str(doc).unwrap();
            let config = parse(doc);
            let again = serde_json::to_value(&config).unwrap();
            assert_eq!(again, original);
            let back: Config = serde_json::from_value(again).unwrap();
            assert_eq!(back, config);
        }
        let all_keys = r#"{"storages":[{"deviceID":1,"path":"file:/d/a","online":false,
            "backendType":"file","enableNUMA":false,"numaNode":3,"ioUringQueueDepth":8,
            "thinprovisioning":true,"blockShift":12,"readOnly":true,"blockSize":4096,
            "directIO":false,"size":1048576,"cpuList":"0-1"}],
            "performance":{"workerThreads":2,"cpuList":"0"}}"#;
        let original: serde_json::Value = serde_json::from_str(all_keys).unwrap();
        let config = parse(all_keys);
        assert_eq!(serde_json::to_value(&config).unwrap(), original);
        let v = config.clone().validate().unwrap();
        assert_eq!(v.as_config(), &config);
        assert_eq!(v.into_config(), config);
    }

    #[test]
    fn storage_defaults_and_extra_keys_resolve() {
        let v = valid(
            r#"{"storages":[
                {"deviceID":1,"path":"/d/a"},
                {"deviceID":2,"path":"/d/b","readOnly":true,"blockSize":4096,"size":8192,
                 "backendType":"iouring","directIO":false,"cpuList":"0-3,6",
                 "thinprovisioning":false}]}"#,
        );
        let a = v.storage(1).unwrap();
        assert!(a.online() && !a.read_only() && !a.direct_io() && a.thin_provisioning());
        assert_eq!(a.backend(), BackendType::File);
        assert_eq!(a.block_size(), 512);
        assert_eq!(a.size_bytes(), None);
        assert_eq!(a.cpu_list(), None);
        assert_eq!(a.io_uring_queue_depth(), 256);
        let b = v.storage(2).unwrap();
        assert!(b.read_only() && !b.direct_io() && !b.thin_provisioning());
        assert_eq!(b.block_size(), 4096);
        assert_eq!(b.size_bytes(), Some(8192));
        assert_eq!(b.cpu_list().unwrap().cpus(), &[0, 1, 2, 3, 6]);
        assert_eq!(
            v.storages()
                .map(ValidStorage::device_id)
                .collect::<Vec<_>>(),
            [1, 2]
        );
    }

    #[test]
    fn performance_section_supplies_storage_defaults() {
        let v = valid(
            r#"{"storages":[{"deviceID":1,"path":"/d/a","numaNode":2},
                            {"deviceID":2,"path":"/d/b","enableNUMA":false,"ioUringQueueDepth":64}],
                "performance":{"enableIoUring":true,"enableNUMA":true,"ioUringQueueDepth":1000,
                               "workerThreads":4,"cpuList":"1"}}"#,
        );
        let a = v.storage(1).unwrap();
        assert_eq!(a.backend(), BackendType::Iouring);
        assert_eq!(a.io_uring_queue_depth(), 1000);
        assert_eq!(a.numa_node(), Some(2));
        let b = v.storage(2).unwrap();
        assert_eq!(b.io_uring_queue_depth(), 64);
        assert!(!b.numa_enabled());
        assert_eq!(v.performance_worker_threads(), Some(4));
        assert_eq!(v.performance().cpu_list().unwrap().cpus(), &[1]);
    }

    #[test]
    fn global_switches_off_override_storages() {
        let v = valid(
            r#"{"storages":[{"deviceID":1,"path":"/d/a","backendType":"iouring",
                             "enableNUMA":true,"numaNode":0}],
                "performance":{"enableIoUring":false,"enableNUMA":false}}"#,
        );
        let s = v.storage(1).unwrap();
        assert_eq!(s.backend(), BackendType::File);
        assert!(!s.direct_io());
        assert!(!s.numa_enabled());
        assert_eq!(s.numa_node(), None);
    }

    #[test]
    fn file_scheme_prefix_is_stripped() {
        let v = valid(
            r#"{"storages":[{"deviceID":1,"path":"file:/var/tmp/a.img"},
                            {"deviceID":2,"path":"file:///var/tmp/b.img"},
                            {"deviceID":3,"path":"rel/c.img"}]}"#,
        );
        assert_eq!(v.storage(1).unwrap().path(), Path::new("/var/tmp/a.img"));
        assert_eq!(v.storage(2).unwrap().path(), Path::new("/var/tmp/b.img"));
        assert_eq!(v.storage(3).unwrap().path(), Path::new("rel/c.img"));
    }

    #[test]
    fn refuses_bad_paths() {
        check(
            r#"{"storages":[{"deviceID":1,"path":""},{"deviceID":2,"path":"file:"},
                            {"deviceID":3,"path":"ceph:/rbd/image"}]}"#,
            &[
                r#"storages[0].path: "": path is empty"#,
                r#"storages[1].path: "file:": path is empty"#,
                r#"storages[2].path: "ceph:/rbd/image": unsupported scheme "ceph:" (only "file:" or a plain path)"#,
            ],
        );
    }

    #[test]
    fn refuses_duplicate_device_ids_and_paths() {
        check(
            r#"{"storages":[{"deviceID":1000,"path":"/d/a"},{"deviceID":1000,"path":"/d/b"},
                            {"deviceID":3,"path":"file:/d/a"}]}"#,
            &[
                "storages[1].deviceID: duplicate id 1000 (also storages[0])",
                r#"storages[2].path: duplicate path "/d/a" (also storages[0])"#,
            ],
        );
    }

    #[test]
    fn refuses_out_of_range_storage_values() {
        check(
            &with_storage(r#","ioUringQueueDepth":0"#),
            &["storages[0].ioUringQueueDepth: 0 is out of range 1..=32768"],
        );
        check(
            &with_storage(r#","ioUringQueueDepth":32769"#),
            &["storages[0].ioUringQueueDepth: 32769 is out of range 1..=32768"],
        );
        valid(&with_storage(r#","ioUringQueueDepth":32768"#));
        check(
            &with_storage(r#","numaNode":1024"#),
            &["storages[0].numaNode: 1024 is out of range 0..=1023"],
        );
        check(
            &with_storage(r#","blockSize":1024"#),
            &["storages[0].blockSize: 1024 is not 512 or 4096"],
        );
        check(
            &with_storage(r#","physicalBlockSize":3000"#),
            &["storages[0].physicalBlockSize: 3000 is not a power of two from the block size 512 to 65536 and at most 128 blocks"],
        );
        check(
            &with_storage(r#","blockSize":4096,"physicalBlockSize":512"#),
            &["storages[0].physicalBlockSize: 512 is not a power of two from the block size 4096 to 65536 and at most 128 blocks"],
        );
        check(
            &with_storage(r#","physicalBlockSize":131072"#),
            &["storages[0].physicalBlockSize: 131072 is not a power of two from the block size 512 to 65536 and at most 128 blocks"],
        );
        let v = valid(&with_storage(
            r#","physicalBlockSize":4096,"removable":true"#,
        ));
        assert_eq!(v.storage(1).map(|s| s.physical_block_size()), Some(4096));
        assert_eq!(v.storage(1).map(|s| s.removable()), Some(true));
        let v = valid(&with_storage(""));
        assert_eq!(v.storage(1).map(|s| s.removable()), Some(false));
        check(
            &with_storage(r#","blockShift":10"#),
            &["storages[0].blockShift: 10 is not 9 (512 bytes) or 12 (4096 bytes)"],
        );
        check(
            &with_storage(r#","blockShift":12,"blockSize":512"#),
            &["storages[0].blockShift: gives 4096 bytes but blockSize is 512"],
        );
        check(
            &with_storage(r#","size":0"#),
            &["storages[0].size: 0 is not a positive number of bytes"],
        );
        check(
            &with_storage(r#","blockShift":12,"size":6144"#),
            &["storages[0].size: 6144 is not a multiple of the block size 4096"],
        );
        check(
            &with_storage(r##","cpuList":"0-3,""##),
            &[r#"storages[0].cpuList: empty item in cpu list "0-3,""#],
        );
    }

    #[test]
    fn gotgt_block_shift_zero_means_default() {
        let v = valid(&with_storage(r#","blockShift":0,"thinprovisioning":false"#));
        assert_eq!(v.storage(1).unwrap().block_size(), 512);
        let v = valid(&with_storage(r#","blockShift":12"#));
        assert_eq!(v.storage(1).unwrap().block_size(), 4096);
    }

    #[test]
    fn refuses_out_of_range_performance_values() {
        check(
            r#"{"performance":{"ioUringQueueDepth":0,"numaBufferPoolSize":0,
                "numaBufferSize":4095,"workerThreads":0,"cpuList":"x"}}"#,
            &[
                "performance.ioUringQueueDepth: 0 is out of range 1..=32768",
                "performance.numaBufferPoolSize: 0 is out of range 1..=1000000",
                "performance.numaBufferSize: 4095 is out of range 4096..=16777216 bytes",
                "performance.workerThreads: 0 is out of range 1..=1024",
                r#"performance.cpuList: item "x" is not a cpu number or a range like 0-3"#,
            ],
        );
        check(
            r#"{"performance":{"numaBufferSize":6000,"numaBufferPoolSize":1000001}}"#,
            &[
                "performance.numaBufferPoolSize: 1000001 is out of range 1..=1000000",
                "performance.numaBufferSize: 6000 is not a multiple of 4096 bytes",
            ],
        );
        check(
            r#"{"performance":{"numaBufferSize":16781312}}"#,
            &["performance.numaBufferSize: 16781312 is out of range 4096..=16777216 bytes"],
        );
        valid(r#"{"performance":{"numaBufferSize":16777216,"numaBufferPoolSize":1000000}}"#);
    }

    #[test]
    fn parses_portal_forms() {
        let cases = [
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("192.168.1.100:3260", "192.168.1.100:3260"),
            ("192.168.1.100", "192.168.1.100:3260"),
            ("0.0.0.0:3260", "0.0.0.0:3260"),
            ("*:3261", "0.0.0.0:3261"),
            ("*", "0.0.0.0:3260"),
            ("[::]:3260", "[::]:3260"),
            ("[::1]", "[::1]:3260"),
            ("[fe80::1]:65535", "[fe80::1]:65535"),
        ];
        for (raw, want) in cases {
            let v = valid(&with_portal(raw));
            assert_eq!(v.portal(0), Some(want.parse().unwrap()), "{raw}");
        }
    }

    #[test]
    fn refuses_bad_portals() {
        let cases = [
            ("", "portal is empty"),
            (
                "example.com:3260",
                r#""example.com:3260": "example.com" is not an IPv4 address or a bracketed IPv6 address (host names are not resolved)"#,
            ),
            (
                "::1:3260",
                r#""::1:3260": IPv6 addresses must be in brackets, like "[::1]:3260""#,
            ),
            (
                "1.2.3.4:65536",
                r#""1.2.3.4:65536": port "65536" is not an integer in 0..=65535"#,
            ),
            (
                "1.2.3.4:+1",
                r#""1.2.3.4:+1": port "+1" is not an integer in 0..=65535"#,
            ),
            (
                "[::1:3260",
                r#""[::1:3260": missing ']' after the IPv6 address"#,
            ),
            ("[zz]:1", r#""[zz]:1": "zz" is not an IPv6 address"#),
            ("*3260", r#""*3260": expected "*:port""#),
        ];
        for (raw, want) in cases {
            check(
                &with_portal(raw),
                &[&format!("iscsiportals[0].portal: {want}")],
            );
        }
    }

    #[test]
    fn refuses_duplicate_portal_ids_and_addresses() {
        check(
            r#"{"iscsiportals":[{"id":0,"portal":"10.0.0.1:3260"},{"id":0,"portal":"10.0.0.2:3260"},
                                {"id":2,"portal":"10.0.0.1:3260"},{"id":3,"portal":"0.0.0.0:3260"}]}"#,
            &[
                "iscsiportals[1].id: duplicate id 0 (also iscsiportals[0])",
                "iscsiportals[2].portal: duplicate address 10.0.0.1:3260 (also iscsiportals[0])",
                "iscsiportals[3].portal: address 0.0.0.0:3260 overlaps 10.0.0.1:3260 of iscsiportals[0]",
            ],
        );
    }

    #[test]
    fn port_zero_portals_never_collide() {
        let v = valid(
            r#"{"iscsiportals":[{"id":0,"portal":"127.0.0.1:0"},{"id":1,"portal":"127.0.0.1:0"},
                                {"id":2,"portal":"[::1]:3260"},{"id":3,"portal":"127.0.0.1:3260"}]}"#,
        );
        assert_eq!(v.portals().count(), 4);
    }

    #[test]
    fn refuses_lun_referencing_missing_storage() {
        check(
            r#"{"iscsitargets":{"iqn.2024-01.com.example:x":{"luns":{"1":7}}}}"#,
            &[r#"iscsitargets."iqn.2024-01.com.example:x".luns."1": storage 7 does not exist"#],
        );
    }

    #[test]
    fn lun_of_an_invalid_storage_is_not_reported_as_missing() {
        check(
            r#"{"storages":[{"deviceID":7,"path":""}],
                "iscsitargets":{"iqn.2024-01.com.example:x":{"luns":{"1":7}}}}"#,
            &[r#"storages[0].path: "": path is empty"#],
        );
    }

    #[test]
    fn refuses_bad_lun_keys() {
        check(
            r#"{"storages":[{"deviceID":1,"path":"/d/a"}],
                "iscsitargets":{"iqn.2024-01.com.example:x":{"luns":
                  {"16384":1,"-1":1,"x":1,"":1,"01":1,"1":1,"16383":1,"0":1}}}}"#,
            &[
                r#"iscsitargets."iqn.2024-01.com.example:x".luns."": LUN "" is not an integer in 0..=16383"#,
                r#"iscsitargets."iqn.2024-01.com.example:x".luns."-1": LUN "-1" is not an integer in 0..=16383"#,
                r#"iscsitargets."iqn.2024-01.com.example:x".luns."1": LUN 1 is also given as "01""#,
                r#"iscsitargets."iqn.2024-01.com.example:x".luns."16384": LUN "16384" is not an integer in 0..=16383"#,
                r#"iscsitargets."iqn.2024-01.com.example:x".luns."x": LUN "x" is not an integer in 0..=16383"#,
            ],
        );
    }

    #[test]
    fn refuses_bad_tpgs() {
        check(
            r#"{"iscsiportals":[{"id":0,"portal":"127.0.0.1:0"}],
                "iscsitargets":{"iqn.2024-01.com.example:x":{"tpgts":
                  {"0":[0],"65536":[0],"1":[0,5],"2":[0],"02":[]}}}}"#,
            &[
                r#"iscsitargets."iqn.2024-01.com.example:x".tpgts."0": portal group tag "0" is not an integer in 1..=65535"#,
                r#"iscsitargets."iqn.2024-01.com.example:x".tpgts."1"[1]: portal 5 does not exist"#,
                r#"iscsitargets."iqn.2024-01.com.example:x".tpgts."2": portal group tag 2 is also given as "02""#,
                r#"iscsitargets."iqn.2024-01.com.example:x".tpgts."65536": portal group tag "65536" is not an integer in 1..=65535"#,
            ],
        );
        check(
            r#"{"iscsiportals":[{"id":0,"portal":"127.0.0.1:0"}],
                "iscsitargets":{"iqn.2024-01.com.example:x":{"tpgts":{"1":[0],"2":[0]}}}}"#,
            &[
                r#"iscsitargets."iqn.2024-01.com.example:x".tpgts."2"[0]: portal 0 is already in portal group 1"#,
            ],
        );
    }

    #[test]
    fn refuses_invalid_target_names() {
        check(
            r#"{"iscsitargets":{"iqn.2016-09.com.gotgt.gostor:example_tgt_0":{},
                                "IQN.2024-01.com.example":{}, "my \"target\"":{}}}"#,
            &[
                r#"iscsitargets."IQN.2024-01.com.example": invalid iSCSI name "IQN.2024-01.com.example": uppercase 'I' at byte 0: iSCSI names are lowercase"#,
                r#"iscsitargets."iqn.2016-09.com.gotgt.gostor:example_tgt_0": invalid iSCSI name "iqn.2016-09.com.gotgt.gostor:example_tgt_0": character '_' at byte 36 is not allowed (only a-z, 0-9, '-', '.', ':')"#,
                r#"iscsitargets."my \"target\"": invalid iSCSI name "my \"target\"": character ' ' at byte 2 is not allowed (only a-z, 0-9, '-', '.', ':')"#,
            ],
        );
        valid(r#"{"iscsitargets":{"eui.02004567a425678d":{},"naa.52004567ba64678d":{}}}"#);
    }

    #[test]
    fn collects_every_error_and_displays_one_per_line() {
        let err = parse(
            r#"{"storages":[{"deviceID":1,"path":""},{"deviceID":1,"path":"/d/b"}],
                "iscsiportals":[{"id":0,"portal":"nope"}],
                "iscsitargets":{"iqn.2024-01.com.example:x":{"luns":{"0":9},"tpgts":{"1":[4]}}},
                "performance":{"ioUringQueueDepth":40000}}"#,
        )
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            [
                r#"storages[0].path: "": path is empty"#,
                r#"storages[1].deviceID: duplicate id 1 (also storages[0])"#,
                r#"iscsiportals[0].portal: "nope": "nope" is not an IPv4 address or a bracketed IPv6 address (host names are not resolved)"#,
                r#"iscsitargets."iqn.2024-01.com.example:x".luns."0": storage 9 does not exist"#,
                r#"iscsitargets."iqn.2024-01.com.example:x".tpgts."1"[0]: portal 4 does not exist"#,
                r#"performance.ioUringQueueDepth: 40000 is out of range 1..=32768"#,
            ]
            .join("\n")
        );
    }

    #[test]
    fn unknown_keys_are_refused_naming_the_key() {
        for (json, key) in [
            (r#"{"storage":[]}"#, "storage"),
            (
                r#"{"storages":[{"deviceID":1,"path":"/a","readonly":true}]}"#,
                "readonly",
            ),
            (r#"{"iscsiportals":[{"id":0,"portal":"*","tag":1}]}"#, "tag"),
            (
                r#"{"iscsitargets":{"iqn.2024-01.com.a":{"portals":[]}}}"#,
                "portals",
            ),
            (r#"{"performance":{"enableNuma":true}}"#, "enableNuma"),
        ] {
            let err = serde_json::from_str::<Config>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
            assert!(err.contains("unknown field"), "{err}");
        }
    }

    #[test]
    fn unknown_backend_type_is_refused_listing_the_choices() {
        let err = serde_json::from_str::<Config>(
            r#"{"storages":[{"deviceID":1,"path":"/a","backendType":"io_uring"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown variant `io_uring`, expected `file` or `iouring`"),
            "{err}"
        );
    }

    #[test]
    fn required_storage_keys_are_named_when_missing() {
        let err = serde_json::from_str::<Config>(r#"{"storages":[{"path":"/a"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `deviceID`"), "{err}");
    }

    #[test]
    fn keys_with_quotes_are_escaped_in_paths() {
        assert_eq!(quote_key(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote_key("a\nb"), r#""a\u{a}b""#);
    }

    fn access_config(target_extra: &str) -> Config {
        let doc = format!(
            r#"{{"iscsitargets": {{"iqn.2026-01.org.example:t": {{"luns": {{}} {target_extra}}}}}}}"#
        );
        serde_json::from_str(&doc).unwrap()
    }

    #[test]
    fn checks_chap_credentials_and_acls() {
        const SECRET: &str = "s3cret-value-1";
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#", "auth": {"chap": {"username": "u", "secret": "s3cret-value-1"}}"#,
                None,
            ),
            (
                r#", "auth": {"chap": {"username": "u", "secret": ""}}"#,
                Some(".auth.chap.secret"),
            ),
            (
                r#", "auth": {"chap": {"username": "u"}}"#,
                Some(".auth.chap.secret"),
            ),
            (
                r#", "auth": {"chap": {"username": "", "secret": "s3cret-value-1"}}"#,
                Some(".auth.chap.username"),
            ),
            (
                r#", "auth": {"chap": {"username": "u", "secret": "s3cret-value-1", "mutualUsername": "t", "mutualSecret": "s3cret-value-1"}}"#,
                Some(".auth.chap.mutualSecret"),
            ),
            (
                r#", "auth": {"chap": {"username": "u", "secret": "s3cret-value-1", "mutualSecret": "other-secret-2"}}"#,
                Some(".auth.chap.mutualUsername"),
            ),
            (
                r#", "auth": {"chap": {"username": "u", "secret": "s3cret-value-1", "algorithms": []}}"#,
                Some(".auth.chap.algorithms"),
            ),
            (
                r#", "acl": {"initiators": ["iqn.2026-01.org.example:i"], "networks": ["192.0.2.0/24"]}"#,
                None,
            ),
            (
                r#", "acl": {"initiators": ["not a name"]}"#,
                Some(".acl.initiators[0]"),
            ),
            (
                r#", "acl": {"networks": ["10.0.0.1/8"]}"#,
                Some(".acl.networks[0]"),
            ),
        ];
        let long = format!(
            r#", "auth": {{"chap": {{"username": "u", "secret": "{}"}}}}"#,
            "x".repeat(CHAP_SECRET_BYTES_MAX + 1)
        );
        let mut all: Vec<(String, Option<&str>)> =
            cases.iter().map(|(d, w)| (d.to_string(), *w)).collect();
        all.push((long, Some(".auth.chap.secret")));
        for (extra, want) in all {
            match (access_config(&extra).validate(), want) {
                (Ok(_), None) => {}
                (Err(e), Some(field)) => {
                    assert!(
                        e.errors.iter().any(|f| f.path.ends_with(field)),
                        "{extra}: {e:?}"
                    );
                    // Validation messages never quote a secret.
                    assert!(!format!("{e:?} {e}").contains(SECRET), "{extra}");
                }
                (got, _) => panic!("{extra}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn redaction_removes_every_secret() {
        let mut c = access_config(
            r#", "auth": {"chap": {"username": "u", "secret": "s3cret-value-1", "mutualUsername": "t", "mutualSecret": "other-secret-2"}}"#,
        );
        c.discovery = Some(Box::new(crate::Discovery {
            auth: c.iscsi_targets.values().next().and_then(|t| t.auth.clone()),
        }));
        c.redact_secrets();
        let shown = serde_json::to_string(&c).unwrap();
        assert!(
            !shown.contains("s3cret") && !shown.contains("other-secret"),
            "{shown}"
        );
        assert!(shown.contains(r#""username":"u""#), "{shown}");
        assert!(!format!("{c:?}").contains("secret-"));
    }

    #[test]
    fn short_secrets_are_flagged_for_a_warning() {
        let c = access_config(r#", "auth": {"chap": {"username": "u", "secret": "short"}}"#)
            .validate()
            .unwrap();
        let t = c.targets().next().unwrap();
        assert!(t.access().chap().unwrap().has_short_secret());
        assert!(!t.access().is_open());
    }

    #[test]
    fn without_alua_the_gateway_is_group_1_port_1_and_states_are_active_optimized() {
        let c = valid(&with_storage(""));
        assert_eq!(c.alua().target_port_group(), 1);
        assert_eq!(c.alua().relative_target_port(), 1);
        assert!(c.alua().peers().is_empty());
        assert_eq!(
            c.storage(1).unwrap().alua_state(1),
            AluaState::ActiveOptimized
        );
    }

    #[test]
    fn alua_section_resolves_ports_and_storage_states() {
        let c = valid(
            r#"{"alua":{"targetPortGroup":2,"peerGroups":[{"targetPortGroup":1},
                  {"targetPortGroup":7,"relativeTargetPort":70}]},
                "storages":[{"deviceID":1,"path":"/d/a",
                  "aluaStates":{"1":"standby","2":"active-non-optimized"}}]}"#,
        );
        assert_eq!(c.alua().target_port_group(), 2);
        assert_eq!(c.alua().relative_target_port(), 2, "defaults to the group");
        assert_eq!(c.alua().peers(), &[(1, 1), (7, 70)]);
        let s = c.storage(1).unwrap();
        assert_eq!(s.alua_state(2), AluaState::ActiveNonOptimized);
        assert_eq!(s.alua_state(1), AluaState::Standby);
        assert_eq!(s.alua_state(7), AluaState::ActiveOptimized, "not listed");
        // The document round-trips with its shape.
        let json = serde_json::to_string(c.as_config()).unwrap();
        assert!(json.contains(r#""aluaStates":{"1":"standby","2":"active-non-optimized"}"#));
        assert!(!json.contains("relativeTargetPort\":2"));
    }

    #[test]
    fn only_alua_states_and_size_are_live_settings() {
        let a = valid(&with_storage(r#","size":1048576"#));
        let b = valid(&with_storage(
            r#","size":2097152,"aluaStates":{"1":"standby"}"#,
        ));
        let c = valid(&with_storage(r#","readOnly":true"#));
        let (a, b, c) = (
            a.storage(1).unwrap(),
            b.storage(1).unwrap(),
            c.storage(1).unwrap(),
        );
        assert!(a.same_but_live_settings(b));
        assert!(!a.same_but_live_settings(c));
        assert!(!a.differs_only_in_size(b), "the states differ too");
    }

    #[test]
    fn refuses_bad_alua_settings() {
        check(
            r#"{"alua":{"targetPortGroup":0,"relativeTargetPort":0,"peerGroups":[
                  {"targetPortGroup":0},{"targetPortGroup":3,"relativeTargetPort":3},
                  {"targetPortGroup":3,"relativeTargetPort":9},
                  {"targetPortGroup":4,"relativeTargetPort":3}]}}"#,
            &[
                "alua.targetPortGroup: 0 is reserved (SPC-4): use 1..=65535",
                "alua.relativeTargetPort: 0 is reserved (SPC-4): use 1..=65535",
                "alua.peerGroups[0].targetPortGroup: 0 is reserved (SPC-4): use 1..=65535",
                "alua.peerGroups[0].targetPortGroup: duplicate target port group 0 (also alua.targetPortGroup)",
                "alua.peerGroups[0].relativeTargetPort: duplicate relative target port 0 (also this gateway's relative target port)",
                "alua.peerGroups[2].targetPortGroup: duplicate target port group 3 (also alua.peerGroups[1])",
                "alua.peerGroups[3].relativeTargetPort: duplicate relative target port 3 (also alua.peerGroups[1])",
            ],
        );
        check(
            r#"{"storages":[{"deviceID":1,"path":"/d/a",
                  "aluaStates":{"2":"standby","x":"standby","1":"standby","01":"unavailable"}}]}"#,
            &[
                r#"storages[0].aluaStates."1": target port group 1 is given twice"#,
                r#"storages[0].aluaStates."2": target port group 2 is neither alua.targetPortGroup (1) nor in alua.peerGroups"#,
                r#"storages[0].aluaStates."x": not a target port group number 1..=65535"#,
            ],
        );
        let unknown: Result<Config, _> = serde_json::from_str(
            r#"{"storages":[{"deviceID":1,"path":"/d/a","aluaStates":{"1":"active"}}]}"#,
        );
        assert!(unknown.is_err(), "an unknown state name is refused");
    }
}
