//! The configuration document as written: gotgt's JSON format plus our own optional keys.
//!
//! Every struct refuses unknown keys so that a typo is an error rather than a silently
//! ignored setting. Optional keys are `Option` and are skipped when serialising, so a
//! document round-trips with the same shape. Nothing here is checked beyond JSON types;
//! see [`Config::validate`](crate::Config::validate) for the rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Highest LUN number accepted: the flat addressing method of SAM-5 has 14 bits.
pub const LUN_MAX: u16 = 16383;

/// The IANA-assigned iSCSI port, used when a portal omits its port (as gotgt does).
pub const ISCSI_PORT_DEFAULT: u16 = 3260;

/// Logical block size used when a storage sets neither `blockSize` nor `blockShift`.
pub const BLOCK_SIZE_BYTES_DEFAULT: u32 = 512;

/// io_uring queue depth used when neither the storage nor `performance` sets one.
pub const IO_URING_QUEUE_DEPTH_DEFAULT: u32 = 256;

/// The kernel refuses io_uring rings with more than 32768 submission entries
/// (`IORING_MAX_ENTRIES`).
pub const IO_URING_QUEUE_DEPTH_MAX: u32 = 32768;

/// Highest NUMA node number: Linux supports at most 1024 nodes (`NODES_SHIFT` = 10).
pub const NUMA_NODE_MAX: u32 = 1023;

/// Default buffer size of the NUMA buffer pools (gotgt's default, 256 KiB).
pub const NUMA_BUFFER_SIZE_BYTES_DEFAULT: u64 = 256 * 1024;

/// Smallest NUMA buffer: one page, because buffers are page-aligned for O_DIRECT.
pub const NUMA_BUFFER_SIZE_BYTES_MIN: u64 = 4096;

/// Largest NUMA buffer: 16 MiB covers the largest MaxBurstLength we negotiate.
pub const NUMA_BUFFER_SIZE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Default number of buffers per NUMA node (gotgt's default).
pub const NUMA_BUFFER_POOL_SIZE_DEFAULT: u32 = 1024;

/// Most buffers per NUMA node; beyond this the pool is a configuration mistake.
pub const NUMA_BUFFER_POOL_SIZE_MAX: u32 = 1_000_000;

/// Most worker threads; far above any core count we run on, it only catches typos.
pub const WORKER_THREADS_MAX: u32 = 1024;

/// Highest CPU index in a `cpuList`: Linux's largest `NR_CPUS` is 8192.
pub const CPU_INDEX_MAX: u32 = 8191;

/// The whole configuration document. Every section is optional and defaults to empty.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Backing stores, each identified by a unique `deviceID`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storages: Vec<Storage>,
    /// Network portals (listening addresses), each identified by a unique `id`.
    #[serde(
        default,
        rename = "iscsiportals",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub iscsi_portals: Vec<Portal>,
    /// Targets keyed by their iSCSI name (`iqn.`, `eui.` or `naa.` form).
    #[serde(
        default,
        rename = "iscsitargets",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub iscsi_targets: BTreeMap<String, Target>,
    /// Process-wide performance settings and defaults for the storages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<Performance>,
    /// Settings of discovery sessions (SendTargets); absent: discovery needs no login
    /// credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Box<Discovery>>,
    /// This gateway's place in a group of gateways that export the same logical units
    /// (asymmetric logical unit access, SPC-4 5.15); absent: target port group 1 with
    /// relative target port 1 and no peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alua: Option<Alua>,
}

/// Lowest target port group and relative target port identifier: SPC-4 reserves 0 for
/// both (7.8.6.6.7, 7.8.6.6.8).
pub const ALUA_ID_MIN: u16 = 1;

/// Most peer groups one gateway lists: REPORT TARGET PORT GROUPS data stays small, and no
/// HA group we deploy has more than a handful of gateways.
pub const ALUA_PEER_GROUPS_MAX: usize = 32;

/// This data plane's target port group and its peers (SPC-4 5.15: implicit asymmetric
/// logical unit access). One gateway is one target port group with one SCSI target port:
/// every portal of this data plane reaches the same port, because an iSCSI session (and
/// so an I_T nexus) may span the portals of its portal group (RFC 7143 §4.4.1).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Alua {
    /// This gateway's target port group (1..=65535), reported in the Device
    /// Identification VPD page and by REPORT TARGET PORT GROUPS. Each gateway of an HA
    /// group has its own.
    pub target_port_group: u16,
    /// This gateway's relative target port identifier (1..=65535), unique within the HA
    /// group. Defaults to `targetPortGroup`, so two gateways with groups 1 and 2 get
    /// ports 1 and 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_target_port: Option<u16>,
    /// The other gateways of the HA group, listed by REPORT TARGET PORT GROUPS with the
    /// state each storage's `aluaStates` gives them (at most 32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_groups: Vec<AluaPeerGroup>,
}

/// Another gateway of the HA group, as this gateway reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AluaPeerGroup {
    /// The peer's target port group (1..=65535), different from every other group.
    pub target_port_group: u16,
    /// The peer's relative target port identifier (1..=65535), different from every
    /// other port of the HA group. Defaults to `targetPortGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_target_port: Option<u16>,
}

/// The asymmetric access state of a target port group for a logical unit (SPC-4 5.15.2.4).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum AluaState {
    /// Every command, at full speed: the preferred path (the default).
    #[default]
    ActiveOptimized,
    /// Every command, possibly slower: a path the initiator uses when no optimized one is
    /// left.
    ActiveNonOptimized,
    /// Medium access refused with NOT READY, TARGET PORT IN STANDBY STATE; INQUIRY,
    /// REPORT LUNS, REPORT TARGET PORT GROUPS, REQUEST SENSE, mode and reservation
    /// commands still served.
    Standby,
    /// Only INQUIRY, REPORT LUNS, REPORT TARGET PORT GROUPS and REQUEST SENSE served;
    /// the rest is NOT READY, TARGET PORT IN UNAVAILABLE STATE.
    Unavailable,
    /// Changing state: the same commands as unavailable served, the rest NOT READY,
    /// ASYMMETRIC ACCESS STATE TRANSITION (the initiator retries).
    Transitioning,
}

impl AluaState {
    /// The configuration name (`active-optimized`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AluaState::ActiveOptimized => "active-optimized",
            AluaState::ActiveNonOptimized => "active-non-optimized",
            AluaState::Standby => "standby",
            AluaState::Unavailable => "unavailable",
            AluaState::Transitioning => "transitioning",
        }
    }

    /// Every state, in SPC-4's order.
    pub const ALL: [AluaState; 5] = [
        AluaState::ActiveOptimized,
        AluaState::ActiveNonOptimized,
        AluaState::Standby,
        AluaState::Unavailable,
        AluaState::Transitioning,
    ];
}

impl std::fmt::Display for AluaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AluaState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AluaState::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not an ALUA state (active-optimized, active-non-optimized, \
                     standby, unavailable, transitioning)"
                )
            })
    }
}

/// Settings of discovery sessions.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// Authentication discovery sessions must pass; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
}

/// How logins authenticate (RFC 7143 §12).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// CHAP credentials (RFC 7143 §12.1.3); absent: no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap: Option<Chap>,
}

/// A CHAP digest algorithm, by its configuration name.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ChapAlgorithmName {
    /// MD5, CHAP_A=5.
    #[serde(rename = "md5")]
    Md5,
    /// SHA-1, CHAP_A=6.
    #[serde(rename = "sha1")]
    Sha1,
    /// SHA-256, CHAP_A=7.
    #[serde(rename = "sha256")]
    Sha256,
    /// SHA3-256, CHAP_A=8.
    #[serde(rename = "sha3-256")]
    Sha3_256,
}

/// CHAP credentials. The secrets are write-only: the REST API never returns them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Chap {
    /// The name the initiator sends as CHAP_N (1..=255 bytes).
    pub username: String,
    /// The secret the initiator proves it knows (1..=255 bytes; under 12 is warned about).
    /// Required when writing; never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(write_only))]
    pub secret: Option<String>,
    /// For mutual CHAP: the name the target answers with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_username: Option<String>,
    /// For mutual CHAP: the target's secret (same bounds as `secret`, and different from
    /// it). Never returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(write_only))]
    pub mutual_secret: Option<String>,
    /// Algorithms accepted, strongest chosen; absent: all four. Leave out `md5` to refuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<ChapAlgorithmName>>,
}

impl std::fmt::Debug for Chap {
    /// Written by hand so that no `{:?}` can print a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chap")
            .field("username", &self.username)
            .field("mutual_username", &self.mutual_username)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl Chap {
    /// Removes both secrets, for anything shown outside (REST answers, logs).
    pub fn redact(&mut self) {
        self.secret = None;
        self.mutual_secret = None;
    }
}

/// Which initiators may log in to a target; each present list must match.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    /// Initiator names (iqn., eui. or naa. form) allowed; absent: any name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiators: Option<Vec<String>>,
    /// Source networks in CIDR form (`192.0.2.0/24`, `2001:db8::/32`) allowed; absent:
    /// any address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
}

impl Config {
    /// Removes every CHAP secret, for REST answers: secrets are write-only.
    pub fn redact_secrets(&mut self) {
        if let Some(c) = self
            .discovery
            .as_mut()
            .and_then(|d| d.auth.as_mut())
            .and_then(|a| a.chap.as_mut())
        {
            c.redact();
        }
        for t in self.iscsi_targets.values_mut() {
            t.redact_secrets();
        }
    }
}

impl Target {
    /// Whether any initiator that reaches a portal may log in: no CHAP and no initiator
    /// ACL (neither names nor networks). Shown in status and metrics so that an open
    /// target is never silent.
    pub fn is_open(&self) -> bool {
        self.auth.as_ref().and_then(|a| a.chap.as_ref()).is_none()
            && self
                .acl
                .as_ref()
                .is_none_or(|a| a.initiators.is_none() && a.networks.is_none())
    }

    /// Removes the target's CHAP secrets, for REST answers: secrets are write-only.
    pub fn redact_secrets(&mut self) {
        if let Some(c) = self.auth.as_mut().and_then(|a| a.chap.as_mut()) {
            c.redact();
        }
    }
}

/// How a storage's I/O is performed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendType {
    /// Synchronous file I/O on a blocking thread pool (`"file"`, the default).
    File,
    /// Asynchronous I/O through io_uring (`"iouring"`, Linux 5.1 or later).
    Iouring,
}

impl std::fmt::Display for BackendType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendType::File => "file",
            BackendType::Iouring => "iouring",
        })
    }
}

/// One backing store (a regular file or a block device).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Storage {
    /// Unique id of the storage; LUNs refer to it, and the LU's serial number and NAA
    /// identifier derive from it, so it must stay stable across restarts.
    #[serde(rename = "deviceID")]
    pub device_id: u64,
    /// Path of the backing file or block device, absolute or relative to the data plane's
    /// working directory. gotgt's `file:/path` form is accepted and means `/path`; other
    /// schemes (such as `ceph:`) are refused. Whether the file exists is checked by the
    /// data plane, not by validation.
    pub path: String,
    /// Whether the LU serves media access. An offline LU still answers INQUIRY and
    /// REPORT LUNS but reports NOT READY for I/O. Defaults to true (gotgt has no default
    /// because Go always writes the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// I/O engine for this storage: `file` or `iouring`. When absent, `iouring` is used if
    /// `performance.enableIoUring` is true, else `file`. `performance.enableIoUring: false`
    /// turns every storage into `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_type: Option<BackendType>,
    /// Allocate this storage's buffers and pin its I/O threads on `numaNode`. Defaults to
    /// `performance.enableNUMA`; `performance.enableNUMA: false` disables NUMA everywhere.
    #[serde(
        default,
        rename = "enableNUMA",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_numa: Option<bool>,
    /// NUMA node (0..=1023) this storage's buffers and threads are bound to when NUMA is
    /// enabled for it; when absent the data plane picks the node of the backing device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<u32>,
    /// io_uring submission queue depth (1..=32768) for this storage; the data plane rounds
    /// it up to a power of two. Defaults to `performance.ioUringQueueDepth`, else 256.
    /// Ignored by the `file` backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_uring_queue_depth: Option<u32>,
    /// gotgt's thin-provisioning flag: advertise logical block provisioning (UNMAP and
    /// WRITE SAME with UNMAP, SBC-3 §4.7) and punch holes in the file. Defaults to true,
    /// because every backing file we serve can deallocate; `false` hides it from initiators.
    #[serde(
        default,
        rename = "thinprovisioning",
        skip_serializing_if = "Option::is_none"
    )]
    pub thin_provisioning: Option<bool>,
    /// gotgt's way to give the logical block size as a power of two: 9 (512 bytes) or 12
    /// (4096 bytes). 0 means unset, because gotgt writes 0 for "default". If `blockSize` is
    /// also given, both must agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_shift: Option<u32>,
    /// Refuse writes: the LU reports itself write protected. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Logical block size in bytes, 512 or 4096. Defaults to 512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    /// Removable medium: INQUIRY sets RMB, START STOP UNIT with LOEJ ejects and loads the
    /// medium (while ejected, medium access is NOT READY, MEDIUM NOT PRESENT) and PREVENT
    /// ALLOW MEDIUM REMOVAL refuses ejecting while an initiator prevents it. The backing
    /// file stays open either way. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removable: Option<bool>,
    /// Physical block size in bytes: a power of two from the logical block size up to 128
    /// logical blocks and at most 65536. READ CAPACITY (16) reports it as LOGICAL BLOCKS PER
    /// PHYSICAL BLOCK EXPONENT and the Block Limits page as the optimal transfer length and
    /// unmap granularities, so initiators align their I/O to it (for example 512-byte
    /// logical blocks on a 4096-byte physical device). Defaults to the logical block size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_block_size: Option<u32>,
    /// Open the backing file with O_DIRECT, bypassing the page cache. Only the `iouring`
    /// backend uses it. Defaults to true.
    #[serde(default, rename = "directIO", skip_serializing_if = "Option::is_none")]
    pub direct_io: Option<bool>,
    /// Size in bytes (a non-zero multiple of the block size). If set and `path` does not
    /// exist, the data plane creates a sparse file of this size; an existing file keeps
    /// its own size when it is opened. Raising it on a storage in use grows the file and
    /// the live LUNs online (initiators get CAPACITY DATA HAS CHANGED); a size below the
    /// medium's current size is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// CPUs this storage's I/O threads may run on, in Linux list syntax such as `0-3,6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_list: Option<String>,
    /// Asymmetric access state of each target port group for this storage's logical
    /// units: the key is the group (`alua.targetPortGroup` or a peer's, as a decimal
    /// string), the value its state. A group not listed is `active-optimized`, so a
    /// storage without the key behaves as before ALUA. Changing only this key changes the
    /// states live: the logical units stay open and every I_T nexus gets UNIT ATTENTION,
    /// ASYMMETRIC ACCESS STATE CHANGED.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alua_states: BTreeMap<String, AluaState>,
}

/// One network portal: an address the data plane listens on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Portal {
    /// Unique id of the portal; target portal groups (`tpgts`) refer to it.
    pub id: u16,
    /// Listening address `host:port`, where host is an IPv4 address, a bracketed IPv6
    /// address, or `*` (all IPv4 addresses). Port 0 lets the OS choose; a missing port
    /// means 3260. Host names are refused because resolving them is I/O.
    pub portal: String,
}

/// One target: its target portal groups and its LUN map.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Target portal groups: the key is the portal group tag (1..=65535, as a decimal
    /// string), the value the ids of the portals in that group. A portal may belong to
    /// only one group of a target. A target with no group is not reachable.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tpgts: BTreeMap<String, Vec<u16>>,
    /// LUN map: the key is the LUN (0..=16383, as a decimal string), the value the
    /// `deviceID` of the storage behind it. Several LUNs may share one storage.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub luns: BTreeMap<String, u64>,
    /// Authentication logins to this target must pass; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Initiators allowed to log in (and to see the target in SendTargets); absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
}

/// Process-wide performance settings; each one is optional.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Performance {
    /// Use NUMA-local buffer pools and thread pinning. Defaults to false. It is also the
    /// default of each storage's `enableNUMA`, and `false` here overrides them all.
    #[serde(
        default,
        rename = "enableNUMA",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_numa: Option<bool>,
    /// Allow the io_uring backend. When true, storages without `backendType` use
    /// `iouring`; when false, every storage uses `file`. Absent: each storage decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_io_uring: Option<bool>,
    /// Default io_uring queue depth (1..=32768) for storages that set none. Defaults to 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_uring_queue_depth: Option<u32>,
    /// Number of buffers in each NUMA node's pool (1..=1000000). Defaults to 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_buffer_pool_size: Option<u32>,
    /// Size in bytes of each pool buffer: a multiple of 4096 in 4096..=16777216.
    /// Defaults to 262144 (256 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_buffer_size: Option<u64>,
    /// Number of network worker threads (1..=1024). Defaults to one per CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<u32>,
    /// CPUs the worker threads may run on, in Linux list syntax such as `0-3,6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_list: Option<String>,
}
