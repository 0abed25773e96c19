//! The one path a command to a logical unit takes (SAM-5 5: task execution), for disks and
//! for the LUN 0 controller alike: the unit-attention gate (SAM-5 5.14, rules in
//! `crate::scsi::ua`), CDB decode (`crate::scsi::cdb`), SPC-2 and persistent reservation
//! checks (SPC-4 5.9, 5.12), the command, and the transfer length the CDB asked for. The
//! commands that need no medium are answered here from `crate::scsi` builders; medium
//! commands are `super::medium`.

use super::controller;
use super::target::Target;
use super::unit::{LogicalUnit, Role};
use super::{Nexus, ScsiResponse};
use crate::buf::IoBuf;
use crate::scsi::cdb::{self, Command};
use crate::scsi::check_lba_range;
use crate::scsi::mode;
use crate::scsi::opcodes::{self, RsocRequest};
use crate::scsi::pr::{PrOutcome, Requester};
use crate::scsi::sense::Sense;
use crate::scsi::ua;

/// Parameter data cut to the CDB's ALLOCATION LENGTH (SPC-4 4.2.5.6).
pub(super) fn truncate(mut d: Vec<u8>, alloc_len: u32) -> Vec<u8> {
    let n = usize::try_from(alloc_len).unwrap_or(usize::MAX);
    d.truncate(n);
    d
}

impl LogicalUnit {
    /// Runs one command on this logical unit, disk or controller: the unit-attention gate,
    /// CDB decode, reservation checks, the command, and the transfer length it asked for.
    pub(super) async fn execute(
        &self,
        target: &Target,
        nexus: &Nexus,
        cdb_bytes: &[u8],
        data_out: IoBuf,
    ) -> ScsiResponse {
        // SAM-5 5.14: a pending unit attention is reported before the command is otherwise
        // processed, so before its CDB is even decoded.
        let opcode = cdb_bytes.first().copied().unwrap_or(0xFF);
        let access = {
            let mut st = self.state();
            if let Some(s) = st.ua.gate(nexus.id, opcode) {
                return ScsiResponse::check(s);
            }
            st.alua.local().state
        };
        let cmd = match cdb::decode(cdb_bytes) {
            Ok(c) => c,
            Err(s) => return ScsiResponse::check(s),
        };
        let transfer = cmd.transfer(self.block_size);
        // SPC-4 5.15.2.4: what this gateway's target port group may serve in its state.
        if let Some(s) = access.refuses(&cmd) {
            return ScsiResponse::check(s).with_transfer(transfer);
        }
        if let Some(s) = self.sanitize_gate(&cmd) {
            return ScsiResponse::check(s).with_transfer(transfer);
        }
        let conflict = {
            let st = self.state();
            st.res.conflicts(nexus.id, &cmd) || st.pr.conflicts(&nexus.initiator_port, &cmd)
        };
        let resp = if conflict {
            ScsiResponse::conflict()
        } else {
            self.run(target, nexus, &cmd, data_out).await
        };
        resp.with_transfer(transfer)
    }

    async fn run(
        &self,
        target: &Target,
        nexus: &Nexus,
        cmd: &Command,
        data_out: IoBuf,
    ) -> ScsiResponse {
        if self.role == Role::Controller && !controller::serves(cmd) {
            return ScsiResponse::check(Sense::invalid_opcode());
        }
        // The medium's data path moves pool buffers end to end; everything else works on
        // borrowed bytes and answers with small vectors.
        match *cmd {
            Command::Read { lba, blocks, .. } => {
                return ScsiResponse::from_result(self.read(lba, blocks).await)
            }
            Command::Write {
                kind,
                lba,
                blocks,
                fua,
                ..
            } => {
                return ScsiResponse::from_result(
                    self.write(kind, lba, blocks, fua, data_out).await,
                )
            }
            _ => {}
        }
        let data_out = data_out.as_slice();
        let r: Result<Vec<u8>, Sense> = match *cmd {
            Command::TestUnitReady => self.ready().map(|()| Vec::new()),
            Command::Inquiry {
                evpd,
                page,
                alloc_len,
            } => {
                let d = if evpd {
                    self.identity.vpd(page)
                } else {
                    Ok(self.identity.standard())
                };
                d.map(|d| truncate(d, alloc_len))
            }
            Command::RequestSense { desc, alloc_len } => self.request_sense(nexus, desc, alloc_len),
            Command::ReportLuns { select, alloc_len } => target.report_luns(select, alloc_len),
            Command::ReportTargetPortGroups {
                extended,
                alloc_len,
            } => Ok(truncate(self.state().alua.report(extended), alloc_len)),
            Command::ReportSupportedOpcodes {
                rctd,
                options,
                opcode,
                service_action,
                alloc_len,
            } => opcodes::report(
                RsocRequest {
                    rctd,
                    options,
                    opcode,
                    service_action,
                },
                &self.supported_ops(),
            )
            .map(|d| truncate(d, alloc_len)),
            Command::ModeSense {
                ten,
                dbd,
                llbaa,
                pc,
                page,
                subpage,
                alloc_len,
            } => {
                let st = self.state().mode;
                mode::mode_sense(
                    mode::SenseRequest {
                        ten,
                        dbd,
                        llbaa,
                        pc,
                        page,
                        subpage,
                    },
                    &st,
                    self.mode_device(),
                )
                .map(|d| truncate(d, alloc_len))
            }
            Command::ModeSelect {
                ten,
                pf,
                sp,
                param_len,
            } => self.mode_select(nexus, ten, pf, sp, param_len, data_out),
            Command::StartStopUnit {
                power_condition,
                loej,
                start,
                ..
            } => self.start_stop(nexus, power_condition, loej, start),
            Command::PreventAllow { prevent } => self.prevent_allow(nexus, prevent),
            Command::Reserve => {
                let mut st = self.state();
                // SPC-4 5.9.2: RESERVE(6/10) conflicts with any persistent reservation.
                if st.pr.reserved() || st.res.reserve(nexus.id).is_err() {
                    return ScsiResponse::conflict();
                }
                Ok(Vec::new())
            }
            Command::Release => {
                self.state().res.release(nexus.id);
                Ok(Vec::new())
            }
            Command::PrIn {
                service_action,
                alloc_len,
            } => self
                .state()
                .pr
                .pr_in(service_action)
                .map(|d| truncate(d, alloc_len)),
            Command::PrOut {
                service_action,
                scope,
                pr_type,
                param_len,
            } => {
                // Without SPEC_I_PT the basic parameter list is exactly 24 bytes (SPC-4 6.14.1).
                if param_len != 24 || data_out.len() < 24 {
                    return ScsiResponse::check(Sense::param_list_length_error());
                }
                let mut st = self.state();
                let who = Requester {
                    nexus: nexus.id,
                    port: &nexus.initiator_port,
                };
                match st
                    .pr
                    .pr_out(who, service_action, scope, pr_type, &data_out[..24])
                {
                    Ok(PrOutcome::Conflict) => return ScsiResponse::conflict(),
                    Ok(PrOutcome::Done(uas)) => {
                        for (id, c) in uas {
                            st.ua.raise(id, c);
                        }
                        Ok(Vec::new())
                    }
                    Err(s) => Err(s),
                }
            }
            Command::ReadCapacity10 => self.medium().map(|_| self.read_capacity10()),
            Command::ReadCapacity16 { alloc_len } => self
                .medium()
                .map(|_| truncate(self.read_capacity16(), alloc_len)),
            // Served above.
            Command::Read { .. } | Command::Write { .. } => Ok(Vec::new()),
            Command::Verify {
                lba,
                blocks,
                bytchk,
            } => self.verify(lba, blocks, bytchk, data_out).await,
            Command::CompareAndWrite { lba, blocks, fua } => {
                self.compare_and_write(lba, blocks, fua, data_out).await
            }
            Command::WriteSame {
                lba,
                blocks,
                unmap,
                ndob,
                sixteen,
            } => {
                self.write_same(lba, blocks, unmap, ndob, sixteen, data_out)
                    .await
            }
            // Without logical block provisioning UNMAP is not a command we offer (SBC-3 §4.7).
            Command::Unmap { .. } if !self.identity.thin => Err(Sense::invalid_opcode()),
            Command::Unmap { param_len } => self.unmap(param_len, data_out).await,
            Command::ExtendedCopy { param_len } => {
                self.extended_copy(target, nexus, param_len, data_out).await
            }
            Command::ReceiveCopyResults {
                service_action,
                list_id,
                alloc_len,
            } => self
                .receive_copy_results(nexus, service_action, list_id)
                .map(|d| truncate(d, alloc_len)),
            Command::Sanitize {
                action,
                immed,
                ause,
                param_len,
            } => {
                self.sanitize(target, nexus.id, action, immed, ause, param_len, data_out)
                    .await
            }
            Command::GetLbaStatus { lba, alloc_len } => self.get_lba_status(lba, alloc_len).await,
            Command::SyncCache { lba, blocks } => self.sync_cache(lba, blocks).await,
            Command::Prefetch { lba, blocks } => self
                .medium()
                .and_then(|_| check_lba_range(lba, blocks, self.blocks()))
                .map(|()| Vec::new()),
            Command::ReadDefectData {
                twelve,
                plist,
                glist,
                format,
                alloc_len,
            } => self
                .medium()
                .map(|_| truncate(read_defect_data(twelve, plist, glist, format), alloc_len)),
        };
        ScsiResponse::from_result(r)
    }

    fn request_sense(&self, nexus: &Nexus, desc: bool, alloc_len: u32) -> Result<Vec<u8>, Sense> {
        if desc {
            // Descriptor-format sense is not supported (Control page D_SENSE=0).
            return Err(Sense::invalid_field_in_cdb(1, Some(0)));
        }
        let (pending, access) = {
            let mut st = self.state();
            (st.ua.take(nexus.id), st.alua.local().state)
        };
        let s = match pending {
            Some(s) => s,
            None => access
                .not_ready()
                .or_else(|| self.sanitize_sense())
                .or_else(|| self.ready().err())
                .unwrap_or(Sense::no_sense()),
        };
        let s = s.encode();
        Ok(truncate(s, alloc_len))
    }

    fn mode_select(
        &self,
        nexus: &Nexus,
        ten: bool,
        pf: bool,
        sp: bool,
        param_len: u32,
        data_out: &[u8],
    ) -> Result<Vec<u8>, Sense> {
        let n = usize::try_from(param_len)
            .unwrap_or(usize::MAX)
            .min(data_out.len());
        if n < usize::try_from(param_len).unwrap_or(usize::MAX) {
            return Err(Sense::param_list_length_error());
        }
        let mut st = self.state();
        let new = mode::mode_select(ten, pf, sp, &data_out[..n], &st.mode, self.mode_device())?;
        if new != st.mode {
            st.mode = new;
            st.ua.raise_others(Some(nexus.id), ua::UA_MODE_CHANGED);
        }
        Ok(Vec::new())
    }

    /// The commands REPORT SUPPORTED OPERATION CODES lists for this unit: the registry,
    /// without SANITIZE BLOCK ERASE where blocks cannot be deallocated (no provisioning).
    fn supported_ops(&self) -> Vec<opcodes::OpEntry> {
        opcodes::OPS
            .iter()
            .filter(|o| {
                self.identity.thin
                    || !(o.opcode == crate::scsi::cdb::op::SANITIZE
                        && o.service_action
                            == Some(u16::from(crate::scsi::sanitize::action::BLOCK_ERASE)))
            })
            .copied()
            .collect()
    }

    fn read_capacity10(&self) -> Vec<u8> {
        let last = self.blocks().saturating_sub(1);
        let last32 = u32::try_from(last).unwrap_or(u32::MAX);
        let mut d = last32.to_be_bytes().to_vec();
        d.extend_from_slice(&self.block_size.to_be_bytes());
        d
    }

    fn read_capacity16(&self) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        d[0..8].copy_from_slice(&self.blocks().saturating_sub(1).to_be_bytes());
        d[8..12].copy_from_slice(&self.block_size.to_be_bytes());
        // LBPME (thin provisioning enabled) and LBPRZ (unmapped blocks read zero), only when
        // the storage advertises provisioning (`thinprovisioning`, default on).
        // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT; LOWEST ALIGNED LOGICAL BLOCK ADDRESS
        // stays 0: the first physical block starts at LBA 0.
        d[13] = self.identity.limits.physical_exponent & 0x0F;
        if self.identity.thin {
            d[14] = 0x80 | 0x40;
        }
        d
    }
}

/// READ DEFECT DATA (SBC-3 5.17/5.18): we have no defects; report empty lists in the
/// requested format.
fn read_defect_data(twelve: bool, plist: bool, glist: bool, format: u8) -> Vec<u8> {
    let mut flags = format & 0x07;
    if plist {
        flags |= 0x10;
    }
    if glist {
        flags |= 0x08;
    }
    if twelve {
        vec![0, flags, 0, 0, 0, 0, 0, 0]
    } else {
        vec![0, flags, 0, 0]
    }
}
