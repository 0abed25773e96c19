//! Messages of the control socket between the control plane (or CLI) and the data plane.
//!
//! The socket is a Unix stream socket carrying frames. A frame is an 8-byte header, the
//! protocol version and the payload length, each a big-endian `u32`, followed by the
//! payload: one JSON-encoded [`Request`] from the client or one [`Response`] from the data
//! plane. Every request gets exactly one response, in order. JSON encoding is left to the
//! callers so that this crate needs only `serde`.
//!
//! The data plane validates an [`Request::ApplyConfig`] again on receipt, because the
//! socket is a trust boundary, and alone decides whether a change is allowed given live
//! state; a refusal is a typed [`Refusal`] that the control plane maps to an HTTP status.
//!
//! Requests refuse unknown fields (a misspelt key must not be ignored), but the status,
//! statistics and session views the data plane answers with do not: the control plane
//! serves them as REST responses, and a client such as tgtctl must keep working when a
//! newer server adds a field (docs/api-changes.md).

// Wire and text codec: conversions that could truncate or lose a sign are `try_from`, never
// `as` (STYLE.md, hot-path rules).
#![deny(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{BackendType, Config, FieldError};

/// Version carried in every frame header; bumped on any incompatible message change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Length of a frame header: version (`u32`) and payload length (`u32`), big-endian.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Largest payload accepted. A full config with thousands of LUNs is well under 1 MiB;
/// the bound keeps a broken peer from making the reader allocate without limit.
pub const MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;

/// Why a frame cannot be sent or received.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The peer speaks another protocol version.
    #[error("unsupported protocol version {got} (expected {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version in the header.
        got: u32,
    },
    /// The payload is longer than [`MAX_FRAME_BYTES`].
    #[error("frame payload of {len} bytes exceeds the maximum {MAX_FRAME_BYTES}")]
    TooLarge {
        /// The payload length.
        len: u64,
    },
}

/// Prefixes `payload` with a frame header.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let too_large = || FrameError::TooLarge {
        len: u64::try_from(payload.len()).unwrap_or(u64::MAX),
    };
    let len = u32::try_from(payload.len()).map_err(|_| too_large())?;
    if len > MAX_FRAME_BYTES {
        return Err(too_large());
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    frame.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// Checks a frame header and returns the length of the payload that follows it.
pub fn decode_frame_len(header: &[u8; FRAME_HEADER_BYTES]) -> Result<usize, FrameError> {
    let [v0, v1, v2, v3, l0, l1, l2, l3] = *header;
    let version = u32::from_be_bytes([v0, v1, v2, v3]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion { got: version });
    }
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
        });
    }
    usize::try_from(len).map_err(|_| FrameError::TooLarge {
        len: u64::from(len),
    })
}

/// A request to the data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Request {
    /// Replace the running config. Answered by [`Response::Applied`] or
    /// [`Response::Refused`].
    ApplyConfig {
        /// Generation number of this config; must be greater than the applied one, so a
        /// delayed or repeated request cannot roll the config back.
        generation: u64,
        /// The new config; the data plane validates it again.
        config: Config,
    },
    /// Ask for the running state. Answered by [`Response::Status`].
    GetStatus,
    /// Ask for counters. Answered by [`Response::Stats`].
    GetStats,
    /// Ask for the logged-in sessions. Answered by [`Response::Sessions`].
    ListSessions,
    /// Close every connection of a session. Answered by [`Response::SessionClosed`] or
    /// [`Response::Refused`] with [`Refusal::NoSuchSession`].
    CloseSession {
        /// Target Session Identifying Handle of the session.
        tsih: u16,
    },
}

/// The data plane's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Response {
    /// The config of `generation` is now live.
    Applied {
        /// The generation now applied.
        generation: u64,
    },
    /// The request was not carried out; nothing changed.
    Refused {
        /// Why.
        reason: Refusal,
    },
    /// Answer to [`Request::GetStatus`].
    Status(Status),
    /// Answer to [`Request::GetStats`].
    Stats(Stats),
    /// Answer to [`Request::ListSessions`].
    Sessions {
        /// The sessions, ascending by TSIH.
        sessions: Vec<SessionInfo>,
    },
    /// The session's connections have been closed.
    SessionClosed {
        /// TSIH of the closed session.
        tsih: u16,
    },
}

/// Why the data plane refused a request. The control plane maps `Invalid` and `Malformed`
/// to 400, `NoSuchSession` to 404 and the rest to 409.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Error)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Refusal {
    /// The request could not be decoded.
    #[error("malformed request: {message}")]
    Malformed {
        /// The decoder's message.
        message: String,
    },
    /// The config failed validation.
    #[error("invalid config ({} errors)", errors.len())]
    Invalid {
        /// Every problem found.
        errors: Vec<FieldError>,
    },
    /// The generation is not newer than the applied one.
    #[error("generation {requested} is not newer than the applied generation {current}")]
    StaleGeneration {
        /// Generation currently applied.
        current: u64,
        /// Generation in the request.
        requested: u64,
    },
    /// A storage's backing file cannot be opened or created.
    #[error("storage {device_id} is unavailable: {message}")]
    StorageUnavailable {
        /// The storage's `deviceID`.
        device_id: u64,
        /// The operating system's error.
        message: String,
    },
    /// A storage's `size` is below the size of its medium: shrinking would cut off data the
    /// initiators wrote, so the data plane only grows a storage in use.
    #[error("storage {device_id} is {current_bytes} bytes: shrinking it to {size_bytes} would lose data")]
    StorageShrink {
        /// The storage's `deviceID`.
        device_id: u64,
        /// The `size` asked for.
        size_bytes: u64,
        /// The medium's size now.
        current_bytes: u64,
    },
    /// A portal's address cannot be listened on.
    #[error("portal {id} ({address}) cannot listen: {message}")]
    PortalUnavailable {
        /// The portal's id.
        id: u16,
        /// The address as configured.
        address: String,
        /// The operating system's error.
        message: String,
    },
    /// The change would remove or replace a target that sessions are logged in to.
    #[error("target {target} has sessions logged in")]
    TargetBusy {
        /// Target name.
        target: String,
    },
    /// No session has this TSIH.
    #[error("no session with tsih {tsih}")]
    NoSuchSession {
        /// The TSIH asked for.
        tsih: u16,
    },
}

/// Running state of the data plane.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Generation of the applied config (the startup config file is generation 1).
    pub generation: u64,
    /// Milliseconds since the data plane started.
    pub uptime_ms: u64,
    /// Portals being listened on, ascending by id.
    pub portals: Vec<PortalStatus>,
    /// Targets served, ascending by name.
    pub targets: Vec<TargetStatus>,
    /// Number of logged-in sessions, discovery sessions included.
    pub session_count: u32,
    /// Number of open connections, including those still logging in.
    pub connection_count: u32,
    /// NUMA nodes of the machine the data plane runs on (one node when it has no NUMA).
    #[serde(default)]
    pub numa_nodes: Vec<NumaNodeStatus>,
    /// CPUs the data plane's worker threads are pinned to; empty when not pinned.
    #[serde(default)]
    pub pinned_cpus: Vec<u32>,
}

/// One NUMA node as the data plane sees it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumaNodeStatus {
    /// Node id.
    pub id: u32,
    /// Its CPUs.
    pub cpus: Vec<u32>,
    /// Its memory in bytes, when the kernel reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_total_bytes: Option<u64>,
}

/// One portal being listened on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortalStatus {
    /// The portal's id.
    pub id: u16,
    /// The address actually bound (with the OS-chosen port if the config said 0).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub bound: SocketAddr,
}

/// One target being served.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// The target's iSCSI name.
    pub name: String,
    /// Its LUNs, ascending.
    pub luns: Vec<LunStatus>,
}

/// One logical unit being served.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LunStatus {
    /// The LUN.
    pub lun: u16,
    /// `deviceID` of the storage behind it.
    pub device_id: u64,
    /// Backend asked for by the config (`backendType` after `performance` defaults).
    pub backend: BackendType,
    /// The engine actually serving I/O after any fallback: `file`, `iouring`,
    /// `iouring+odirect`, or `none` for an offline storage.
    pub active_backend: String,
    /// Whether media access is enabled.
    pub online: bool,
    /// Whether writes are refused.
    pub read_only: bool,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// Capacity in bytes.
    pub size_bytes: u64,
}

/// Counters since the data plane started, which only grow, and gauges of the state now
/// (fields named `..._in_flight`, `connections`, `sessions` and `buffers_...`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Successful logins.
    pub logins_total: u64,
    /// Refused or failed logins, for any reason.
    pub login_failures_total: u64,
    /// Of those, CHAP failures (status 0201).
    #[serde(default)]
    pub login_authentication_failures_total: u64,
    /// Of those, initiators refused by a target's ACL (status 0202).
    #[serde(default)]
    pub login_authorization_failures_total: u64,
    /// Of those, logins refused (status 0301) because their source address was locked out
    /// after too many failed logins.
    #[serde(default)]
    pub login_throttled_total: u64,
    /// Times a source address was locked out.
    #[serde(default)]
    pub login_lockouts_total: u64,
    /// Source addresses locked out now.
    #[serde(default)]
    pub login_locked_sources: u64,
    /// Header or data digest mismatches.
    pub digest_errors_total: u64,
    /// Per logical unit I/O counters, ascending by target and LUN.
    pub luns: Vec<LunStats>,
    /// Counters of the io_uring engine, summed over the rings of every worker thread; all
    /// zero when no storage uses the `iouring` backend.
    pub uring: UringStats,
    /// Connections and sessions per portal, ascending by portal id: every portal listened
    /// on, plus removed portals whose accepted connections are still open.
    pub portals: Vec<PortalStats>,
    /// The data buffer pools, ascending by NUMA node; empty until the pools exist (they are
    /// built when the first config with a LUN is applied).
    pub numa_pools: Vec<NumaPoolStats>,
}

/// A latency histogram with fixed buckets.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyHistogram {
    /// Inclusive upper bounds of the buckets in nanoseconds, ascending. The last bucket
    /// has no bound (+Inf) and is not listed.
    pub bounds_ns: Vec<u64>,
    /// Commands per bucket, not cumulative: `counts[i]` took more than `boundsNs[i-1]` and
    /// at most `boundsNs[i]`; the last entry, one past the bounds, took longer than every
    /// bound. Their sum is the number of commands recorded.
    pub counts: Vec<u64>,
    /// Sum of every recorded duration, in nanoseconds.
    pub sum_ns: u64,
}

/// Counters of the io_uring engine.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UringStats {
    /// Submission queue entries (SQEs) placed in a ring: one per read, write, fsync or
    /// fallocate.
    pub submissions_total: u64,
    /// Completion queue entries (CQEs) reaped.
    pub completions_total: u64,
    /// `io_uring_enter` system calls made to submit or to flush completions.
    pub enter_calls_total: u64,
    /// Times an SQE found its submission queue full; the ring then submits what it holds
    /// and the SQE tries again.
    pub sq_full_total: u64,
}

/// Connections and sessions of one portal.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortalStats {
    /// The portal's id.
    pub id: u16,
    /// TCP connections accepted on this portal and still open, logging in or not (a gauge).
    pub connections: u64,
    /// Logged-in sessions, discovery included, whose connection arrived on this portal
    /// (a gauge).
    pub sessions: u64,
}

/// Buffers of one NUMA node's data buffer pool.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumaPoolStats {
    /// The NUMA node whose memory holds the pool (0 for the single pool with NUMA off).
    pub node: u32,
    /// Whether the pool's memory is bound to the node (false with NUMA off, or after a
    /// tolerated `mbind` failure).
    pub bound: bool,
    /// Size of every buffer in bytes (`numaBufferSize`).
    pub buffer_size_bytes: u64,
    /// Buffers in the pool (`numaBufferPoolSize`).
    pub buffers_total: u64,
    /// Buffers free now (a gauge).
    pub buffers_free: u64,
    /// Buffers held by commands now (a gauge).
    pub buffers_in_use: u64,
    /// Times a buffer was asked of the pool while it was empty: the asking command waited
    /// (back-pressure).
    pub exhausted_total: u64,
    /// Transfers served from heap buffers instead of the pool: longer than one buffer
    /// (raise `numaBufferSize`), or the pool stayed empty too long (raise
    /// `numaBufferPoolSize`).
    pub heap_fallbacks_total: u64,
}

/// I/O counters of one logical unit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LunStats {
    /// Target name.
    pub target: String,
    /// The LUN.
    pub lun: u16,
    /// Completed read commands.
    pub read_commands_total: u64,
    /// Completed write commands.
    pub write_commands_total: u64,
    /// Bytes read.
    pub read_bytes_total: u64,
    /// Bytes written.
    pub write_bytes_total: u64,
    /// Commands that ended in CHECK CONDITION.
    pub check_conditions_total: u64,
    /// Commands the logical unit completed, of every opcode.
    pub commands_total: u64,
    /// Commands executing in the logical unit now (a gauge).
    pub commands_in_flight: u64,
    /// EXTENDED COPY commands this logical unit ran as copy manager (it received them):
    /// those whose parameter list it accepted and that got a copy slot, good or failed.
    /// Absent from data planes older than the counter.
    #[serde(default)]
    pub copies_total: u64,
    /// Bytes those copies wrote to their destinations, failed copies' partial work included.
    #[serde(default)]
    pub copy_bytes_total: u64,
    /// Those copies that failed (COPY ABORTED).
    #[serde(default)]
    pub copy_failures_total: u64,
    /// How long completed read commands (READ 6/10/12/16) executed in the logical unit,
    /// backend I/O and waits for a data buffer included. Timing starts when the command
    /// reaches the logical unit and stops when its status is known, before Data-In is
    /// sent: network transfer is excluded.
    pub read_latency: LatencyHistogram,
    /// How long completed write commands (WRITE, WRITE AND VERIFY, WRITE SAME, COMPARE AND
    /// WRITE) executed in the logical unit, backend I/O included. Timing starts after all
    /// of the command's Data-Out has arrived and stops when its status is known: network
    /// transfer is excluded.
    pub write_latency: LatencyHistogram,
}

/// One logged-in session.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Target Session Identifying Handle.
    pub tsih: u16,
    /// Initiator Session ID (48 bits).
    pub isid: u64,
    /// The initiator's iSCSI name.
    pub initiator_name: String,
    /// The target's iSCSI name; absent for discovery sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// The session's connections, ascending by CID.
    pub connections: Vec<ConnectionInfo>,
    /// Session-wide operational parameters agreed at login (RFC 7143 §13).
    pub negotiated: SessionParams,
}

/// Session-wide login keys as negotiated (RFC 7143 §13).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionParams {
    /// `SessionType`: `Normal` or `Discovery`.
    pub session_type: String,
    /// `MaxBurstLength` in bytes: the most data in one R2T sequence or Data-In burst.
    pub max_burst_length: u32,
    /// `FirstBurstLength` in bytes: the most unsolicited data per command.
    pub first_burst_length: u32,
    /// `InitialR2T`: false when the initiator may send unsolicited Data-Out.
    pub initial_r2t: bool,
    /// `ImmediateData`: whether data may ride in the SCSI Command PDU.
    pub immediate_data: bool,
    /// `MaxOutstandingR2T` per command.
    pub max_outstanding_r2t: u16,
    /// `DefaultTime2Wait` in seconds.
    pub default_time2_wait: u16,
    /// `DefaultTime2Retain` in seconds.
    pub default_time2_retain: u16,
    /// `MaxConnections` (always 1: multiple connections per session are not offered).
    pub max_connections: u16,
    /// `ErrorRecoveryLevel` (always 0).
    pub error_recovery_level: u8,
    /// `AuthMethod` agreed: `None` or `CHAP`.
    pub auth_method: String,
}

/// One connection of a session.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    /// Connection ID chosen by the initiator.
    pub cid: u16,
    /// Id of the portal the connection arrived on.
    pub portal_id: u16,
    /// The initiator's address.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub peer: SocketAddr,
    /// Our address.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub local: SocketAddr,
    /// `HeaderDigest` in force: `CRC32C` or `None`.
    pub header_digest: String,
    /// `DataDigest` in force: `CRC32C` or `None`.
    pub data_digest: String,
    /// The initiator's `MaxRecvDataSegmentLength`: the largest data segment we send it.
    pub max_send_data_segment_length: u32,
    /// Our `MaxRecvDataSegmentLength`: the largest data segment it may send us.
    pub max_recv_data_segment_length: u32,
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_views_accept_fields_a_newer_server_adds() {
        let body = r#"{"generation":3,"uptimeMs":5,"portals":[],"targets":[],"sessionCount":0,
            "connectionCount":0,"fieldFromTheFuture":{"x":1}}"#;
        let parsed: super::Status = serde_json::from_str(body).expect("unknown field refused");
        assert_eq!(parsed.generation, 3);
        assert!(parsed.numa_nodes.is_empty());
    }

    use super::*;

    #[test]
    fn lun_stats_from_a_data_plane_without_copy_counters_read_as_zero() {
        let body = r#"{"target":"t","lun":0,"readCommandsTotal":1,"writeCommandsTotal":2,
            "readBytesTotal":3,"writeBytesTotal":4,"checkConditionsTotal":0,"commandsTotal":3,
            "commandsInFlight":0,"readLatency":{"boundsNs":[],"counts":[0],"sumNs":0},
            "writeLatency":{"boundsNs":[],"counts":[0],"sumNs":0}}"#;
        let l: LunStats = serde_json::from_str(body).unwrap();
        assert_eq!(
            (l.copies_total, l.copy_bytes_total, l.copy_failures_total),
            (0, 0, 0)
        );
        assert_eq!(l.commands_total, 3);
    }

    #[test]
    fn frame_header_round_trips() {
        let frame = encode_frame(b"{\"getStatus\":null}").unwrap();
        let header: [u8; FRAME_HEADER_BYTES] = frame[..FRAME_HEADER_BYTES].try_into().unwrap();
        assert_eq!(&header[..4], &[0, 0, 0, 1]);
        let len = decode_frame_len(&header).unwrap();
        assert_eq!(&frame[FRAME_HEADER_BYTES..], b"{\"getStatus\":null}");
        assert_eq!(len, frame.len() - FRAME_HEADER_BYTES);
        let empty = encode_frame(b"").unwrap();
        assert_eq!(empty, vec![0, 0, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn rejects_other_protocol_versions() {
        let header = [0, 0, 0, 2, 0, 0, 0, 5];
        assert_eq!(
            decode_frame_len(&header),
            Err(FrameError::UnsupportedVersion { got: 2 })
        );
    }

    #[test]
    fn rejects_frames_over_the_size_limit() {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        header[..4].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        header[4..].copy_from_slice(&MAX_FRAME_BYTES.to_be_bytes());
        assert_eq!(
            decode_frame_len(&header),
            Ok(usize::try_from(MAX_FRAME_BYTES).unwrap())
        );
        header[4..].copy_from_slice(&(MAX_FRAME_BYTES + 1).to_be_bytes());
        assert_eq!(
            decode_frame_len(&header),
            Err(FrameError::TooLarge {
                len: u64::from(MAX_FRAME_BYTES) + 1
            })
        );
        let big = vec![0u8; usize::try_from(MAX_FRAME_BYTES).unwrap() + 1];
        assert!(matches!(
            encode_frame(&big),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn requests_round_trip_through_json() {
        let config: Config = serde_json::from_str(
            r#"{"storages":[{"deviceID":1,"path":"/tmp/a"}],
                "iscsitargets":{"iqn.2024-01.com.example:t":{"luns":{"0":1}}}}"#,
        )
        .unwrap();
        for req in [
            Request::ApplyConfig {
                generation: 7,
                config,
            },
            Request::GetStatus,
            Request::GetStats,
            Request::ListSessions,
            Request::CloseSession { tsih: 3 },
        ] {
            let json = serde_json::to_string(&req).unwrap();
            let back: Request = serde_json::from_str(&json).unwrap();
            assert_eq!(back, req, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&Request::CloseSession { tsih: 3 }).unwrap(),
            r#"{"closeSession":{"tsih":3}}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::GetStatus).unwrap(),
            r#""getStatus""#
        );
    }

    #[test]
    fn responses_round_trip_through_json() {
        let addr: SocketAddr = "127.0.0.1:3260".parse().unwrap();
        for resp in [
            Response::Applied { generation: 2 },
            Response::Refused {
                reason: Refusal::Invalid {
                    errors: vec![FieldError {
                        path: "storages[0].path".into(),
                        message: "\"\": path is empty".into(),
                    }],
                },
            },
            Response::Refused {
                reason: Refusal::StaleGeneration {
                    current: 3,
                    requested: 2,
                },
            },
            Response::Status(Status {
                generation: 1,
                uptime_ms: 10,
                portals: vec![PortalStatus { id: 0, bound: addr }],
                targets: vec![TargetStatus {
                    name: "iqn.2024-01.com.example:t".into(),
                    luns: vec![LunStatus {
                        lun: 0,
                        device_id: 1,
                        backend: BackendType::Iouring,
                        active_backend: "iouring+odirect".into(),
                        online: true,
                        read_only: false,
                        block_size: 512,
                        size_bytes: 1 << 20,
                    }],
                }],
                session_count: 1,
                connection_count: 1,
                numa_nodes: vec![NumaNodeStatus {
                    id: 0,
                    cpus: vec![0, 1],
                    mem_total_bytes: Some(1 << 30),
                }],
                pinned_cpus: vec![1],
            }),
            Response::Stats(Stats {
                logins_total: 1,
                login_failures_total: 0,
                login_authentication_failures_total: 0,
                login_authorization_failures_total: 0,
                login_throttled_total: 0,
                login_lockouts_total: 0,
                login_locked_sources: 0,
                digest_errors_total: 0,
                luns: vec![LunStats {
                    target: "iqn.2024-01.com.example:t".into(),
                    lun: 0,
                    read_commands_total: 5,
                    write_commands_total: 6,
                    read_bytes_total: 2560,
                    write_bytes_total: 3072,
                    check_conditions_total: 0,
                    commands_total: 12,
                    commands_in_flight: 1,
                    copies_total: 2,
                    copy_bytes_total: 1_048_576,
                    copy_failures_total: 1,
                    read_latency: LatencyHistogram {
                        bounds_ns: vec![10_000, 25_000],
                        counts: vec![3, 1, 1],
                        sum_ns: 90_000,
                    },
                    write_latency: LatencyHistogram {
                        bounds_ns: vec![10_000, 25_000],
                        counts: vec![0, 6, 0],
                        sum_ns: 120_000,
                    },
                }],
                uring: UringStats {
                    submissions_total: 11,
                    completions_total: 11,
                    enter_calls_total: 9,
                    sq_full_total: 0,
                },
                portals: vec![PortalStats {
                    id: 0,
                    connections: 2,
                    sessions: 1,
                }],
                numa_pools: vec![NumaPoolStats {
                    node: 0,
                    bound: true,
                    buffer_size_bytes: 262_144,
                    buffers_total: 64,
                    buffers_free: 63,
                    buffers_in_use: 1,
                    exhausted_total: 0,
                    heap_fallbacks_total: 5,
                }],
            }),
            Response::Sessions {
                sessions: vec![SessionInfo {
                    tsih: 1,
                    isid: 0x23d0_0000_0001,
                    initiator_name: "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test".into(),
                    target_name: None,
                    connections: vec![ConnectionInfo {
                        cid: 0,
                        portal_id: 0,
                        peer: "127.0.0.1:40000".parse().unwrap(),
                        local: addr,
                        header_digest: "CRC32C".into(),
                        data_digest: "None".into(),
                        max_send_data_segment_length: 262_144,
                        max_recv_data_segment_length: 262_144,
                    }],
                    negotiated: SessionParams {
                        session_type: "Normal".into(),
                        max_burst_length: 262_144,
                        first_burst_length: 65_536,
                        initial_r2t: true,
                        immediate_data: true,
                        max_outstanding_r2t: 1,
                        default_time2_wait: 2,
                        default_time2_retain: 20,
                        max_connections: 1,
                        error_recovery_level: 0,
                        auth_method: "None".into(),
                    },
                }],
            },
            Response::SessionClosed { tsih: 1 },
        ] {
            let json = serde_json::to_string(&resp).unwrap();
            let back: Response = serde_json::from_str(&json).unwrap();
            assert_eq!(back, resp, "{json}");
        }
    }

    #[test]
    fn refuses_unknown_fields_in_messages() {
        let err = serde_json::from_str::<Request>(r#"{"closeSession":{"tsih":1,"force":true}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("force"), "{err}");
        let err = serde_json::from_str::<Request>(r#""reboot""#).unwrap_err();
        assert!(err.to_string().contains("reboot"), "{err}");
    }

    #[test]
    fn refusal_display_is_short_and_lowercase() {
        let r = Refusal::StaleGeneration {
            current: 3,
            requested: 2,
        };
        assert_eq!(
            r.to_string(),
            "generation 2 is not newer than the applied generation 3"
        );
    }
}
