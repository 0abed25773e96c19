//! Every bound the data plane enforces, in one place.
//!
//! A limit that is reached is an explicit outcome (a login reject, a Reject PDU, a dropped
//! connection, back-pressure), never a panic or an unbounded allocation; each has a test.

/// Connections accepted across all portals; past this a new connection is closed at once.
pub const CONNECTIONS_MAX: usize = 1024;

/// Sessions (of any type) alive at once; past this a login gets "out of resources".
pub const SESSIONS_MAX: usize = 1024;

/// Commands a session may have outstanding: the CmdSN window (MaxCmdSN - ExpCmdSN + 1).
/// 128 covers the queue depths initiators use (Linux defaults to 32/128) while bounding the
/// memory one session can pin to 128 x `BURST_LEN_BYTES_MAX`.
pub const CMD_WINDOW: u32 = 128;

/// The MaxRecvDataSegmentLength we declare: the largest data segment we accept in one PDU.
pub const RECV_DATA_SEGMENT_BYTES: u32 = 262_144;

/// The largest data segment we ever send, whatever the initiator declares.
pub const SEND_DATA_SEGMENT_BYTES_MAX: u32 = 262_144;

/// Largest MaxBurstLength / FirstBurstLength we agree to (RFC 7143 allows up to 2^24-1).
pub const BURST_LEN_BYTES_MAX: u32 = 1_048_576;

/// Largest single command transfer (Expected Data Transfer Length) we buffer.
/// Matches the MAXIMUM TRANSFER LENGTH the block limits VPD page reports (in bytes).
pub const TRANSFER_BYTES_MAX: u32 = 8 * 1_048_576;

/// R2Ts we keep outstanding per command at most; the negotiated MaxOutstandingR2T is capped here.
pub const OUTSTANDING_R2T_MAX: u16 = 16;

/// Bytes of key=value text accumulated across continued Login or Text PDUs.
pub const TEXT_BYTES_MAX: usize = 65_536;

/// Login or Text request PDUs in one negotiation before we give up on the initiator.
pub const TEXT_PDUS_MAX: u32 = 64;

/// Total AHS length we accept (in bytes); only the extended-CDB AHS is meaningful to us.
pub const AHS_BYTES_MAX: usize = 1020;

/// Bytes buffered for output on one connection before we stop reading its socket.
pub const OUTPUT_BUFFER_BYTES_HIGH: usize = 4 * 1_048_576;

/// PDUs handled in one turn of a connection's loop before it yields to others.
pub const PDUS_PER_TURN_MAX: usize = 64;

/// Seconds of silence on a full-feature connection before we send a NOP-In ping.
pub const NOP_IN_INTERVAL_SECS: u64 = 20;

/// Seconds we wait for the answer to a NOP-In ping before dropping the connection.
pub const NOP_IN_TIMEOUT_SECS: u64 = 20;

/// Milliseconds a connection stops reading while its LU's buffer pool is empty, before the
/// write command at the head of its input takes a heap buffer instead. Stopping is the
/// back-pressure; the bound breaks the one cycle it could close: every buffer held by
/// writes whose Data-Out waits behind commands that wait for a buffer.
pub const POOL_WAIT_MS_MAX: u64 = 200;

/// Pool buffers one connection may hold for writes still waiting for their Data-Out; more
/// writes get vectors. Without a cap, an initiator that never answers its R2Ts could hold
/// CMD_WINDOW buffers per connection and drain a node's pool for everyone.
pub const POOL_BUFFERS_PER_CONN_MAX: usize = 32;

/// Seconds a connection may take from accept to the end of login.
pub const LOGIN_TIMEOUT_SECS: u64 = 30;

const _: () = assert!(RECV_DATA_SEGMENT_BYTES <= BURST_LEN_BYTES_MAX);
const _: () = assert!(BURST_LEN_BYTES_MAX <= TRANSFER_BYTES_MAX);
const _: () = assert!(RECV_DATA_SEGMENT_BYTES >= 512 && RECV_DATA_SEGMENT_BYTES < (1 << 24));
const _: () = assert!(CMD_WINDOW >= 1 && CMD_WINDOW < (1 << 30));

/// Bytes of the CHAP challenge we send. RFC 7143 §12.1.3 asks for at least 16 so that a
/// recorded response is useless; 32 matches the longest digest we offer (SHA-256,
/// SHA3-256), so the challenge carries as much entropy as the response can hold.
pub const CHAP_CHALLENGE_BYTES: usize = 32;

/// Fewest bytes we accept in an initiator's mutual-CHAP challenge: the same floor of 16 that
/// RFC 7143 §12.1.3 sets for ours, so a short challenge cannot make our answer guessable.
pub const CHAP_CHALLENGE_PEER_BYTES_MIN: usize = 16;

/// Most bytes in an initiator's CHAP challenge: RFC 7143 §12.1.3 caps binary challenges at
/// 1024 bytes.
pub const CHAP_CHALLENGE_PEER_BYTES_MAX: usize = 1024;

/// Longest CHAP_N we compare: the iSCSI text value limit of 255 bytes (RFC 7143 §6.1).
pub const CHAP_NAME_BYTES_MAX: usize = 255;

/// Entries of a CHAP_A list we look at; open-iscsi offers four, so more is noise.
pub const CHAP_ALGORITHMS_OFFERED_MAX: usize = 16;

/// Failed logins (authentication 0201 or authorization 0202) from one source address within
/// [`LOGIN_FAILURE_WINDOW`] that lock the source out for [`LOGIN_LOCKOUT`]. Ten lets an
/// operator mistype a secret a few times while an online guesser gets about ten guesses a
/// minute.
pub const LOGIN_FAILURES_PER_SOURCE_MAX: u32 = 10;

/// The window in which [`LOGIN_FAILURES_PER_SOURCE_MAX`] failures lock a source out.
pub const LOGIN_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a locked-out source's logins are refused (0301, service unavailable).
pub const LOGIN_LOCKOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Source addresses whose failures are tracked at once; beyond it the least recently seen
/// source without a lockout is forgotten (a few hundred KiB at most).
pub const LOGIN_THROTTLE_SOURCES_MAX: usize = 4096;

const _: () = assert!(LOGIN_FAILURES_PER_SOURCE_MAX >= 3);
const _: () = assert!(CHAP_CHALLENGE_BYTES >= 16);
const _: () = assert!(CHAP_CHALLENGE_PEER_BYTES_MIN >= 16);
const _: () = assert!(CHAP_CHALLENGE_PEER_BYTES_MAX * 2 + 2 <= TEXT_BYTES_MAX);
