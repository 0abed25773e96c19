//! Typed views of the PDUs an initiator sends (RFC 7143 §11.3, §11.5, §11.8, §11.9,
//! §11.10, §11.12, §11.14, §11.16): each names the fields and flags of its Basic Header
//! Segment, so code above this module never reads the header at a byte offset.
//!
//! A view is a small `Copy` struct decoded from a [`Bhs`]; it does not check values
//! (that is the job of the handler, which chooses between reply, Reject and drop).

use super::{
    flag, op, Bhs, AT_EXP_SN, AT_FLAGS, AT_LUN, AT_SN, AT_WORD10, AT_WORD5, AT_WORD8, AT_WORD9,
};

/// Task management function codes (RFC 7143 §11.5.1).
pub mod tmf_function {
    /// ABORT TASK.
    pub const ABORT_TASK: u8 = 1;
    /// ABORT TASK SET.
    pub const ABORT_TASK_SET: u8 = 2;
    /// CLEAR ACA.
    pub const CLEAR_ACA: u8 = 3;
    /// CLEAR TASK SET.
    pub const CLEAR_TASK_SET: u8 = 4;
    /// LOGICAL UNIT RESET.
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    /// TARGET WARM RESET.
    pub const TARGET_WARM_RESET: u8 = 6;
    /// TARGET COLD RESET.
    pub const TARGET_COLD_RESET: u8 = 7;
    /// TASK REASSIGN.
    pub const TASK_REASSIGN: u8 = 8;
}

/// Logout reason codes (RFC 7143 §11.14.1).
pub mod logout_reason {
    /// Close the session.
    pub const CLOSE_SESSION: u8 = 0;
    /// Close the connection named by the CID.
    pub const CLOSE_CONNECTION: u8 = 1;
    /// Remove the connection for recovery.
    pub const REMOVE_FOR_RECOVERY: u8 = 2;
}

/// A SCSI Command (RFC 7143 §11.3).
#[derive(Clone, Copy, Debug)]
pub struct ScsiCommand {
    /// I: immediate delivery.
    pub immediate: bool,
    /// F: no unsolicited Data-Out follows.
    pub final_bit: bool,
    /// R: the command reads data from the target.
    pub read: bool,
    /// W: the command writes data to the target.
    pub write: bool,
    /// ATTR: the task attribute.
    pub attr: u8,
    /// The LUN field as sent.
    pub lun_raw: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected Data Transfer Length.
    pub edtl: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// The first 16 CDB bytes (more come in an extended-CDB AHS).
    pub cdb: [u8; 16],
}

impl ScsiCommand {
    /// The view of `b`, which must be a SCSI Command.
    pub fn parse(b: &Bhs) -> Self {
        let f = b.u8_at(AT_FLAGS);
        let mut cdb = [0u8; 16];
        cdb.copy_from_slice(&b.0[AT_WORD8..AT_WORD8 + 16]);
        Self {
            immediate: b.immediate(),
            final_bit: f & flag::FINAL != 0,
            read: f & flag::READ != 0,
            write: f & flag::WRITE != 0,
            attr: f & flag::ATTR_MASK,
            lun_raw: b.lun_raw(),
            itt: b.itt(),
            edtl: b.u32_at(AT_WORD5),
            cmd_sn: b.u32_at(AT_SN),
            exp_stat_sn: b.u32_at(AT_EXP_SN),
            cdb,
        }
    }

    /// The operation code (CDB byte 0).
    pub fn opcode(&self) -> u8 {
        self.cdb[0]
    }
}

/// A SCSI Data-Out (RFC 7143 §11.7).
#[derive(Clone, Copy, Debug)]
pub struct DataOut {
    /// F: the last PDU of its sequence.
    pub final_bit: bool,
    /// The LUN field as sent.
    pub lun_raw: u64,
    /// Initiator Task Tag of the command.
    pub itt: u32,
    /// Target Transfer Tag: of the R2T answered, or reserved for unsolicited data.
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// DataSN within the sequence.
    pub data_sn: u32,
    /// Buffer Offset of the data segment.
    pub buffer_offset: u32,
}

impl DataOut {
    /// The view of `b`, which must be a Data-Out.
    pub fn parse(b: &Bhs) -> Self {
        Self {
            final_bit: b.final_bit(),
            lun_raw: b.lun_raw(),
            itt: b.itt(),
            ttt: b.u32_at(AT_WORD5),
            exp_stat_sn: b.u32_at(AT_EXP_SN),
            data_sn: b.u32_at(AT_WORD9),
            buffer_offset: b.u32_at(AT_WORD10),
        }
    }
}

/// A NOP-Out (RFC 7143 §11.18).
#[derive(Clone, Copy, Debug)]
pub struct NopOut {
    /// I: immediate delivery.
    pub immediate: bool,
    /// The LUN field as sent (echoed in the NOP-In).
    pub lun_raw: u64,
    /// Initiator Task Tag; reserved when the NOP-Out answers our NOP-In.
    pub itt: u32,
    /// Target Transfer Tag: of the NOP-In answered, or reserved.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl NopOut {
    /// The view of `b`, which must be a NOP-Out.
    pub fn parse(b: &Bhs) -> Self {
        Self {
            immediate: b.immediate(),
            lun_raw: b.lun_raw(),
            itt: b.itt(),
            ttt: b.u32_at(AT_WORD5),
            cmd_sn: b.u32_at(AT_SN),
            exp_stat_sn: b.u32_at(AT_EXP_SN),
        }
    }
}

/// A Task Management Function Request (RFC 7143 §11.5).
#[derive(Clone, Copy, Debug)]
pub struct TaskMgmtRequest {
    /// I: immediate delivery.
    pub immediate: bool,
    /// The function (see [`tmf_function`]).
    pub function: u8,
    /// The LUN field as sent.
    pub lun_raw: u64,
    /// Initiator Task Tag of this request.
    pub itt: u32,
    /// Referenced Task Tag (ABORT TASK).
    pub rtt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// RefCmdSN (ABORT TASK).
    pub ref_cmd_sn: u32,
    /// ExpDataSN (TASK REASSIGN).
    pub exp_data_sn: u32,
}

impl TaskMgmtRequest {
    /// The view of `b`, which must be a Task Management Function Request.
    pub fn parse(b: &Bhs) -> Self {
        Self {
            immediate: b.immediate(),
            function: b.u8_at(AT_FLAGS) & flag::CODE_MASK,
            lun_raw: b.lun_raw(),
            itt: b.itt(),
            rtt: b.u32_at(AT_WORD5),
            cmd_sn: b.u32_at(AT_SN),
            exp_stat_sn: b.u32_at(AT_EXP_SN),
            ref_cmd_sn: b.u32_at(AT_WORD8),
            exp_data_sn: b.u32_at(AT_WORD9),
        }
    }
}

/// A Text Request (RFC 7143 §11.10).
#[derive(Clone, Copy, Debug)]
pub struct TextRequest {
    /// I: immediate delivery.
    pub immediate: bool,
    /// F: the last PDU of the request.
    pub final_bit: bool,
    /// C: more request text follows in the next PDU.
    pub cont: bool,
    /// The LUN field as sent (echoed in the response).
    pub lun_raw: u64,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag: reserved for a new request, else the one of our last response.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl TextRequest {
    /// The view of `b`, which must be a Text Request.
    pub fn parse(b: &Bhs) -> Self {
        let f = b.u8_at(AT_FLAGS);
        Self {
            immediate: b.immediate(),
            final_bit: f & flag::FINAL != 0,
            cont: f & flag::CONTINUE != 0,
            lun_raw: b.lun_raw(),
            itt: b.itt(),
            ttt: b.u32_at(AT_WORD5),
            cmd_sn: b.u32_at(AT_SN),
            exp_stat_sn: b.u32_at(AT_EXP_SN),
        }
    }
}

/// A Login Request (RFC 7143 §11.12).
#[derive(Clone, Copy, Debug)]
pub struct LoginRequest {
    /// T: the initiator is ready to go to the next stage.
    pub transit: bool,
    /// C: more request text follows in the next PDU.
    pub cont: bool,
    /// CSG: current stage.
    pub csg: u8,
    /// NSG: next stage (meaningful with T).
    pub nsg: u8,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// ISID.
    pub isid: [u8; 6],
    /// TSIH: 0 for a new session.
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl LoginRequest {
    /// The view of `b`, which must be a Login Request.
    pub fn parse(b: &Bhs) -> Self {
        let f = b.u8_at(AT_FLAGS);
        let mut isid = [0u8; 6];
        isid.copy_from_slice(&b.0[AT_LUN..AT_LUN + 6]);
        Self {
            transit: f & flag::TRANSIT != 0,
            cont: f & flag::CONTINUE != 0,
            csg: (f & flag::CSG_MASK) >> flag::CSG_SHIFT,
            nsg: f & flag::NSG_MASK,
            version_max: b.u8_at(2),
            version_min: b.u8_at(3),
            isid,
            tsih: b.u16_at(AT_LUN + 6),
            itt: b.itt(),
            cid: b.u16_at(AT_WORD5),
            cmd_sn: b.u32_at(AT_SN),
            exp_stat_sn: b.u32_at(AT_EXP_SN),
        }
    }
}

/// A Logout Request (RFC 7143 §11.14).
#[derive(Clone, Copy, Debug)]
pub struct LogoutRequest {
    /// I: immediate delivery.
    pub immediate: bool,
    /// The reason code (see [`logout_reason`]).
    pub reason: u8,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID of the connection to close (reason 1 and 2).
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

impl LogoutRequest {
    /// The view of `b`, which must be a Logout Request.
    pub fn parse(b: &Bhs) -> Self {
        Self {
            immediate: b.immediate(),
            reason: b.u8_at(AT_FLAGS) & flag::CODE_MASK,
            itt: b.itt(),
            cid: b.u16_at(AT_WORD5),
            cmd_sn: b.u32_at(AT_SN),
            exp_stat_sn: b.u32_at(AT_EXP_SN),
        }
    }
}

/// An initiator PDU, by kind (RFC 7143 §11.2.1.2).
#[derive(Clone, Copy, Debug)]
pub enum Request {
    /// NOP-Out.
    NopOut(NopOut),
    /// SCSI Command.
    ScsiCommand(ScsiCommand),
    /// Task Management Function Request.
    TaskMgmt(TaskMgmtRequest),
    /// Login Request.
    Login(LoginRequest),
    /// Text Request.
    Text(TextRequest),
    /// SCSI Data-Out.
    DataOut(DataOut),
    /// Logout Request.
    Logout(LogoutRequest),
    /// SNACK Request: recognised, and refused, since it needs ErrorRecoveryLevel > 0
    /// (RFC 7143 §11.16); its fields are not read.
    Snack,
    /// Any other opcode, including the target's own.
    Other(u8),
}

impl Request {
    /// The typed view of the PDU whose header is `b`.
    pub fn parse(b: &Bhs) -> Self {
        match b.opcode() {
            op::NOP_OUT => Self::NopOut(NopOut::parse(b)),
            op::SCSI_CMD => Self::ScsiCommand(ScsiCommand::parse(b)),
            op::TASK_MGMT => Self::TaskMgmt(TaskMgmtRequest::parse(b)),
            op::LOGIN => Self::Login(LoginRequest::parse(b)),
            op::TEXT => Self::Text(TextRequest::parse(b)),
            op::DATA_OUT => Self::DataOut(DataOut::parse(b)),
            op::LOGOUT => Self::Logout(LogoutRequest::parse(b)),
            op::SNACK => Self::Snack,
            other => Self::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{Out, BHS_LEN};

    fn bhs(h: &Out) -> Bhs {
        let mut b = [0u8; BHS_LEN];
        b.copy_from_slice(&h.0);
        Bhs(b)
    }

    #[test]
    fn scsi_command_fields_and_flags() {
        let mut h = Out::new(op::SCSI_CMD | flag::IMMEDIATE, 0x80 | 0x20 | 0x01);
        h.lun(0x0001_0000_0000_0000)
            .itt(9)
            .u32(20, 4096)
            .u32(24, 17)
            .u32(28, 3)
            .u8(32, 0x2a)
            .u8(47, 0xcc);
        let Request::ScsiCommand(c) = Request::parse(&bhs(&h)) else {
            panic!("not a SCSI command");
        };
        assert!(c.immediate && c.final_bit && c.write && !c.read);
        assert_eq!(c.attr, 1);
        assert_eq!(
            (c.lun_raw, c.itt, c.edtl, c.cmd_sn, c.exp_stat_sn),
            (0x0001_0000_0000_0000, 9, 4096, 17, 3)
        );
        assert_eq!((c.opcode(), c.cdb[15]), (0x2a, 0xcc));
    }

    #[test]
    fn data_out_fields() {
        let mut h = Out::new(op::DATA_OUT, 0x80);
        h.itt(4).u32(20, 77).u32(28, 5).u32(36, 2).u32(40, 8192);
        let Request::DataOut(d) = Request::parse(&bhs(&h)) else {
            panic!("not a Data-Out");
        };
        assert!(d.final_bit);
        assert_eq!(
            (d.itt, d.ttt, d.exp_stat_sn, d.data_sn, d.buffer_offset),
            (4, 77, 5, 2, 8192)
        );
    }

    #[test]
    fn login_request_stages_and_identity() {
        let mut h = Out::new(op::LOGIN | flag::IMMEDIATE, 0x80 | 0x40 | (1 << 2) | 3);
        h.0[8..14].copy_from_slice(&[0x80, 1, 2, 3, 4, 5]);
        h.u16(14, 0x1234)
            .itt(1)
            .u16(20, 7)
            .u32(24, 10)
            .u32(28, 11)
            .u8(2, 0)
            .u8(3, 0);
        let Request::Login(l) = Request::parse(&bhs(&h)) else {
            panic!("not a login");
        };
        assert!(l.transit && l.cont);
        assert_eq!((l.csg, l.nsg), (1, 3));
        assert_eq!(l.isid, [0x80, 1, 2, 3, 4, 5]);
        assert_eq!(
            (l.tsih, l.itt, l.cid, l.cmd_sn, l.exp_stat_sn),
            (0x1234, 1, 7, 10, 11)
        );
    }

    #[test]
    fn task_management_text_logout_and_nop() {
        let mut h = Out::new(op::TASK_MGMT | flag::IMMEDIATE, 0x80 | 1);
        h.itt(3).u32(20, 2).u32(24, 8).u32(32, 6).u32(36, 1);
        let Request::TaskMgmt(t) = Request::parse(&bhs(&h)) else {
            panic!("not a TMF");
        };
        assert_eq!(t.function, tmf_function::ABORT_TASK);
        assert_eq!((t.rtt, t.cmd_sn, t.ref_cmd_sn, t.exp_data_sn), (2, 8, 6, 1));

        let mut h = Out::new(op::TEXT, 0x40);
        h.itt(5).u32(20, 0xffff_ffff);
        let Request::Text(t) = Request::parse(&bhs(&h)) else {
            panic!("not a text request");
        };
        assert!(t.cont && !t.final_bit);
        assert_eq!((t.itt, t.ttt), (5, 0xffff_ffff));

        let mut h = Out::new(op::LOGOUT | flag::IMMEDIATE, 0x80 | 1);
        h.itt(6).u16(20, 9);
        let Request::Logout(l) = Request::parse(&bhs(&h)) else {
            panic!("not a logout");
        };
        assert_eq!((l.reason, l.cid), (logout_reason::CLOSE_CONNECTION, 9));

        let mut h = Out::new(op::NOP_OUT, 0x80);
        h.itt(0xffff_ffff).u32(20, 12);
        let Request::NopOut(n) = Request::parse(&bhs(&h)) else {
            panic!("not a NOP-Out");
        };
        assert_eq!((n.itt, n.ttt), (0xffff_ffff, 12));

        assert!(matches!(
            Request::parse(&bhs(&Out::new(op::SNACK, 0x80))),
            Request::Snack
        ));
        assert!(matches!(
            Request::parse(&bhs(&Out::new(0x1c, 0x80))),
            Request::Other(0x1c)
        ));
    }
}
