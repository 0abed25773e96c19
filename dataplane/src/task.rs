//! Write-data bookkeeping for one SCSI command (RFC 7143 §4.2.5.2, §11.7, §11.8):
//! immediate and unsolicited data up to FirstBurstLength, then R2Ts of at most
//! MaxBurstLength each with at most MaxOutstandingR2T in flight, and the checks on every
//! Data-Out (TTT, DataSN, Buffer Offset, F bit). Pure: the caller copies the bytes.

use crate::pdu::RESERVED_TAG;

/// One R2T to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct R2t {
    /// Target Transfer Tag.
    pub ttt: u32,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Buffer Offset.
    pub offset: u32,
    /// Desired Data Transfer Length.
    pub len: u32,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    ttt: u32,
    offset: u32,
    len: u32,
    next: u32,
    data_sn: u32,
}

/// Why a Data-Out PDU was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DataOutError {
    /// Unsolicited data when none may be sent (InitialR2T=Yes or F set on the command).
    #[error("unsolicited data-out not allowed")]
    UnsolicitedNotAllowed,
    /// TTT names no outstanding R2T.
    #[error("unknown target transfer tag {0:#x}")]
    UnknownTtt(u32),
    /// DataSN out of sequence.
    #[error("DataSN {got}, expected {want}")]
    DataSn {
        /// What arrived.
        got: u32,
        /// What was expected.
        want: u32,
    },
    /// Buffer offset not where the sequence stands, or data beyond the burst.
    #[error("buffer offset {offset}+{len} outside the expected range")]
    Offset {
        /// Buffer Offset field.
        offset: u32,
        /// Data segment length.
        len: u32,
    },
    /// F bit ended an R2T sequence before all solicited bytes arrived.
    #[error("sequence ended with {missing} solicited bytes missing")]
    ShortSequence {
        /// Bytes still missing.
        missing: u32,
    },
}

/// Negotiated limits that govern write data of a connection.
#[derive(Clone, Copy, Debug)]
pub struct WriteLimits {
    /// FirstBurstLength.
    pub first_burst: u32,
    /// MaxBurstLength.
    pub max_burst: u32,
    /// MaxOutstandingR2T.
    pub outstanding_r2t_max: u16,
    /// InitialR2T.
    pub initial_r2t: bool,
}

/// Progress of one command's write data.
#[derive(Debug)]
pub struct WriteState {
    edtl: u32,
    received: u32,
    unsol_open: bool,
    unsol_next: u32,
    unsol_end: u32,
    unsol_data_sn: u32,
    solicit: Vec<(u32, u32)>,
    r2t_sn: u32,
    slots: Vec<Slot>,
}

impl WriteState {
    /// Starts a write of `edtl` bytes whose command carried `immediate` bytes and whose F
    /// bit was `final_bit` (no unsolicited Data-Out follows when set).
    pub fn new(
        edtl: u32,
        immediate: u32,
        final_bit: bool,
        lim: &WriteLimits,
    ) -> Result<Self, DataOutError> {
        if immediate > edtl || immediate > lim.first_burst {
            return Err(DataOutError::Offset {
                offset: 0,
                len: immediate,
            });
        }
        let unsol_open = !final_bit && immediate < edtl;
        if unsol_open && lim.initial_r2t {
            return Err(DataOutError::UnsolicitedNotAllowed);
        }
        let unsol_end = if unsol_open {
            lim.first_burst.min(edtl)
        } else {
            immediate
        };
        let mut solicit = Vec::with_capacity(2);
        if unsol_end < edtl {
            solicit.push((unsol_end, edtl));
        }
        Ok(Self {
            edtl,
            received: immediate,
            unsol_open,
            unsol_next: immediate,
            unsol_end,
            unsol_data_sn: 0,
            solicit,
            r2t_sn: 0,
            slots: Vec::new(),
        })
    }

    /// True when every byte of the transfer has arrived.
    pub fn complete(&self) -> bool {
        self.received >= self.edtl && self.slots.is_empty() && !self.unsol_open
    }

    /// Bytes received so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Issues as many R2Ts as the limits allow, calling `emit` for each; `ttt` makes tags.
    pub fn issue_r2ts(
        &mut self,
        lim: &WriteLimits,
        mut ttt: impl FnMut() -> u32,
        mut emit: impl FnMut(R2t),
    ) {
        while self.slots.len() < usize::from(lim.outstanding_r2t_max.max(1)) {
            let Some(&(from, to)) = self.solicit.first() else {
                break;
            };
            let len = (to - from).min(lim.max_burst.max(512));
            if from + len >= to {
                self.solicit.remove(0);
            } else if let Some(first) = self.solicit.first_mut() {
                first.0 = from + len;
            }
            let r = R2t {
                ttt: ttt(),
                r2t_sn: self.r2t_sn,
                offset: from,
                len,
            };
            self.r2t_sn = self.r2t_sn.wrapping_add(1);
            self.slots.push(Slot {
                ttt: r.ttt,
                offset: from,
                len,
                next: from,
                data_sn: 0,
            });
            emit(r);
        }
    }

    /// Checks one Data-Out; on `Ok` the caller places the bytes at `offset`.
    pub fn data_out(
        &mut self,
        ttt: u32,
        data_sn: u32,
        offset: u32,
        len: u32,
        final_bit: bool,
    ) -> Result<(), DataOutError> {
        let end = offset
            .checked_add(len)
            .ok_or(DataOutError::Offset { offset, len })?;
        if ttt == RESERVED_TAG {
            if !self.unsol_open {
                return Err(DataOutError::UnsolicitedNotAllowed);
            }
            if data_sn != self.unsol_data_sn {
                return Err(DataOutError::DataSn {
                    got: data_sn,
                    want: self.unsol_data_sn,
                });
            }
            if offset != self.unsol_next || end > self.unsol_end {
                return Err(DataOutError::Offset { offset, len });
            }
            self.unsol_data_sn = self.unsol_data_sn.wrapping_add(1);
            self.unsol_next = end;
            self.received += len;
            if final_bit || end == self.unsol_end {
                self.unsol_open = false;
                if end < self.unsol_end {
                    // The initiator ended its unsolicited burst early: solicit the gap.
                    self.solicit.insert(0, (end, self.unsol_end));
                }
            }
            return Ok(());
        }
        let idx = self
            .slots
            .iter()
            .position(|s| s.ttt == ttt)
            .ok_or(DataOutError::UnknownTtt(ttt))?;
        let slot = &mut self.slots[idx];
        if data_sn != slot.data_sn {
            return Err(DataOutError::DataSn {
                got: data_sn,
                want: slot.data_sn,
            });
        }
        if offset != slot.next || end > slot.offset + slot.len {
            return Err(DataOutError::Offset { offset, len });
        }
        slot.data_sn = slot.data_sn.wrapping_add(1);
        slot.next = end;
        self.received += len;
        let slot_end = slot.offset + slot.len;
        if final_bit || end == slot_end {
            self.slots.remove(idx);
            if end < slot_end {
                return Err(DataOutError::ShortSequence {
                    missing: slot_end - end,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(first_burst: u32, max_burst: u32, outstanding: u16, initial_r2t: bool) -> WriteLimits {
        WriteLimits {
            first_burst,
            max_burst,
            outstanding_r2t_max: outstanding,
            initial_r2t,
        }
    }

    fn all_r2ts(w: &mut WriteState, l: &WriteLimits, next: &mut u32) -> Vec<R2t> {
        let mut v = Vec::new();
        w.issue_r2ts(
            l,
            || {
                *next += 1;
                *next
            },
            |r| v.push(r),
        );
        v
    }

    #[test]
    fn immediate_then_unsolicited_then_solicited() {
        let l = lim(8192, 16384, 2, false);
        let mut w = WriteState::new(65536, 4096, false, &l).unwrap();
        let mut tag = 0;
        let r = all_r2ts(&mut w, &l, &mut tag);
        assert_eq!(
            r,
            vec![
                R2t {
                    ttt: 1,
                    r2t_sn: 0,
                    offset: 8192,
                    len: 16384
                },
                R2t {
                    ttt: 2,
                    r2t_sn: 1,
                    offset: 24576,
                    len: 16384
                },
            ]
        );
        w.data_out(RESERVED_TAG, 0, 4096, 4096, true).unwrap();
        w.data_out(1, 0, 8192, 8192, false).unwrap();
        w.data_out(1, 1, 16384, 8192, true).unwrap();
        let r = all_r2ts(&mut w, &l, &mut tag);
        assert_eq!(
            r,
            vec![R2t {
                ttt: 3,
                r2t_sn: 2,
                offset: 40960,
                len: 16384
            }]
        );
        w.data_out(2, 0, 24576, 16384, true).unwrap();
        let r = all_r2ts(&mut w, &l, &mut tag);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].offset, 57344);
        assert_eq!(r[0].len, 8192);
        w.data_out(3, 0, 40960, 16384, true).unwrap();
        assert!(!w.complete());
        w.data_out(4, 0, 57344, 8192, true).unwrap();
        assert!(w.complete());
    }

    #[test]
    fn refuses_bad_data_out() {
        let l = lim(8192, 8192, 1, true);
        assert_eq!(
            WriteState::new(16384, 0, false, &l).unwrap_err(),
            DataOutError::UnsolicitedNotAllowed
        );
        let mut w = WriteState::new(16384, 0, true, &l).unwrap();
        let mut tag = 10;
        let r = all_r2ts(&mut w, &l, &mut tag);
        assert_eq!(r.len(), 1);
        assert_eq!(
            w.data_out(RESERVED_TAG, 0, 0, 512, false),
            Err(DataOutError::UnsolicitedNotAllowed)
        );
        assert_eq!(
            w.data_out(99, 0, 0, 512, false),
            Err(DataOutError::UnknownTtt(99))
        );
        assert_eq!(
            w.data_out(11, 1, 0, 512, false),
            Err(DataOutError::DataSn { got: 1, want: 0 })
        );
        assert_eq!(
            w.data_out(11, 0, 512, 512, false),
            Err(DataOutError::Offset {
                offset: 512,
                len: 512
            })
        );
        assert_eq!(
            w.data_out(11, 0, 0, 512, true),
            Err(DataOutError::ShortSequence { missing: 7680 })
        );
    }

    #[test]
    fn early_end_of_unsolicited_data_is_solicited() {
        let l = lim(8192, 65536, 1, false);
        let mut w = WriteState::new(8192, 0, false, &l).unwrap();
        w.data_out(RESERVED_TAG, 0, 0, 4096, true).unwrap();
        let mut tag = 0;
        let r = all_r2ts(&mut w, &l, &mut tag);
        assert_eq!(
            r,
            vec![R2t {
                ttt: 1,
                r2t_sn: 0,
                offset: 4096,
                len: 4096
            }]
        );
        w.data_out(1, 0, 4096, 4096, true).unwrap();
        assert!(w.complete());
    }
}
