//! `tgt-dataplane`: the iSCSI target's fast path.
//!
//! Layers, lowest first (see `docs/ARCHITECTURE.md`): [`limits`]; [`pdu`] (codec, digests,
//! text keys); [`login`] (negotiation state machine); [`session`] (session table, CmdSN
//! window); [`task`] (R2T and Data-Out sequencing); [`scsi`] (SPC-4/SBC-3 command set,
//! transport-agnostic); [`backend`] (block devices); [`lu`] (runs SCSI commands on a
//! backend); [`conn`] (the only socket code of the protocol path); [`accept`] (a portal's
//! accept loop); [`live`] (the config snapshot the fast path reads); [`control`] (every
//! config change, through the one [`live::Writer`], and the control socket); [`lun`] (the
//! SAM LUN field codec that `pdu` and `scsi` share). `pdu`, `login`, `session`, `task` and
//! `scsi` do no I/O.

pub mod accept;
pub mod backend;
pub mod buf;
pub mod conn;
pub mod control;
pub mod io;
pub mod limits;
pub mod live;
pub mod login;
pub mod lu;
pub mod lun;
pub mod metrics;
pub mod numa;
pub mod pdu;
pub mod scsi;
pub mod session;
pub mod task;

pub mod serve;

pub use serve::{run, ReadyHook, RunError, RunOptions};
