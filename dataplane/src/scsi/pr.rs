//! Persistent reservations (SPC-4 5.9, PERSISTENT RESERVE IN 6.13, OUT 6.14).
//!
//! Registrations belong to an I_T nexus, identified by the initiator port name: they
//! persist after the session ends, and a new session from the same port finds them again.
//! APTPL (persist through power loss), SPEC_I_PT and REGISTER AND MOVE are not supported.
//! The state is in memory only.

#![warn(clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use super::cdb::Command;
use super::sense::Sense;
use std::sync::Arc;

/// Reservation types (SPC-4 6.14.3).
#[allow(missing_docs)]
pub mod pr_type {
    pub const WRITE_EXCLUSIVE: u8 = 1;
    pub const EXCLUSIVE_ACCESS: u8 = 3;
    pub const WE_REGISTRANTS_ONLY: u8 = 5;
    pub const EA_REGISTRANTS_ONLY: u8 = 6;
    pub const WE_ALL_REGISTRANTS: u8 = 7;
    pub const EA_ALL_REGISTRANTS: u8 = 8;
}

fn valid_type(t: u8) -> bool {
    matches!(t, 1 | 3 | 5 | 6 | 7 | 8)
}

fn all_registrants(t: u8) -> bool {
    matches!(t, pr_type::WE_ALL_REGISTRANTS | pr_type::EA_ALL_REGISTRANTS)
}

/// One registered I_T nexus.
#[derive(Clone, Debug)]
struct Registration {
    port: Arc<str>,
    /// Session that registered last, for unit attentions.
    nexus: u64,
    key: u64,
}

#[derive(Clone, Debug)]
struct Reservation {
    holder: Arc<str>,
    pr_type: u8,
}

/// Who is asking: the I_T nexus of a command.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    /// Session id.
    pub nexus: u64,
    /// Initiator port name.
    pub port: &'a Arc<str>,
}

/// Result of a PR OUT: either a sense error, a RESERVATION CONFLICT, or success together
/// with the sessions that must see a unit attention.
#[derive(Debug, PartialEq, Eq)]
pub enum PrOutcome {
    /// GOOD; raise the unit attention for each listed session.
    Done(Vec<(u64, Sense)>),
    /// RESERVATION CONFLICT status.
    Conflict,
}

/// Persistent reservation state of one logical unit.
#[derive(Debug, Default)]
pub struct PersistentReservations {
    generation: u32,
    regs: Vec<Registration>,
    res: Option<Reservation>,
}

/// Most registrations kept per LU: every registration costs memory an initiator controls.
pub const PR_REGISTRATIONS_MAX: usize = 256;

impl PersistentReservations {
    fn reg(&self, port: &str) -> Option<&Registration> {
        self.regs.iter().find(|r| &*r.port == port)
    }

    fn is_holder(&self, port: &str) -> bool {
        match &self.res {
            Some(r) if all_registrants(r.pr_type) => self.reg(port).is_some(),
            Some(r) => &*r.holder == port,
            None => false,
        }
    }

    /// True when a reservation exists.
    pub fn reserved(&self) -> bool {
        self.res.is_some()
    }

    /// SPC-4 5.9.1 conflict rules for commands from a non-holder.
    pub fn conflicts(&self, port: &str, cmd: &Command) -> bool {
        let Some(res) = &self.res else { return false };
        if self.is_holder(port) {
            return false;
        }
        let registered = self.reg(port).is_some();
        let (reads_blocked, writes_blocked) = match res.pr_type {
            pr_type::WRITE_EXCLUSIVE => (false, true),
            pr_type::EXCLUSIVE_ACCESS => (true, true),
            pr_type::WE_REGISTRANTS_ONLY | pr_type::WE_ALL_REGISTRANTS => (false, !registered),
            _ => (!registered, !registered),
        };
        let is_read = matches!(
            cmd,
            Command::Read { .. } | Command::Verify { .. } | Command::Prefetch { .. }
        );
        let is_write = matches!(
            cmd,
            Command::Write { .. }
                | Command::CompareAndWrite { .. }
                | Command::WriteSame { .. }
                | Command::Unmap { .. }
                | Command::Sanitize { .. }
                | Command::ExtendedCopy { .. }
                | Command::SyncCache { .. }
                | Command::ModeSelect { .. }
                | Command::Reserve
                | Command::Release
        );
        (is_read && reads_blocked) || (is_write && writes_blocked)
    }

    /// PERSISTENT RESERVE IN parameter data (untruncated).
    pub fn pr_in(&self, service_action: u8) -> Result<Vec<u8>, Sense> {
        let mut out = self.generation.to_be_bytes().to_vec();
        match service_action {
            0 => {
                let len = u32::try_from(self.regs.len() * 8).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                for r in &self.regs {
                    out.extend_from_slice(&r.key.to_be_bytes());
                }
            }
            1 => match &self.res {
                None => out.extend_from_slice(&0u32.to_be_bytes()),
                Some(r) => {
                    out.extend_from_slice(&16u32.to_be_bytes());
                    let key = if all_registrants(r.pr_type) {
                        0
                    } else {
                        self.reg(&r.holder).map_or(0, |g| g.key)
                    };
                    out.extend_from_slice(&key.to_be_bytes());
                    out.extend_from_slice(&[0; 4]);
                    out.push(0);
                    out.push(r.pr_type & 0x0F);
                    out.extend_from_slice(&[0; 2]);
                }
            },
            2 => {
                out.clear();
                out.extend_from_slice(&8u16.to_be_bytes());
                // ATP_C=0, SIP_C=0, PTPL_C=0; TMV=1, ALLOW COMMANDS=0.
                out.push(0);
                out.push(0x80);
                // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX | EX_AC_AR.
                out.push(0x80 | 0x40 | 0x20 | 0x08 | 0x02);
                out.push(0x01);
                out.extend_from_slice(&[0; 2]);
            }
            3 => {
                let mut body = Vec::new();
                for r in &self.regs {
                    body.extend_from_slice(&r.key.to_be_bytes());
                    body.extend_from_slice(&[0; 4]);
                    let holder = self.is_holder(&r.port);
                    body.push(if holder { 0x01 } else { 0 });
                    body.push(match (&self.res, holder) {
                        (Some(res), true) => res.pr_type & 0x0F,
                        _ => 0,
                    });
                    body.extend_from_slice(&[0; 4]);
                    // RELATIVE TARGET PORT IDENTIFIER 1.
                    body.extend_from_slice(&1u16.to_be_bytes());
                    let tid = iscsi_transport_id(&r.port);
                    body.extend_from_slice(&u32::try_from(tid.len()).unwrap_or(0).to_be_bytes());
                    body.extend_from_slice(&tid);
                }
                out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
                out.extend_from_slice(&body);
            }
            _ => return Err(Sense::invalid_field_in_cdb(1, Some(4))),
        }
        Ok(out)
    }

    /// PERSISTENT RESERVE OUT with its basic parameter list.
    pub fn pr_out(
        &mut self,
        who: Requester<'_>,
        service_action: u8,
        scope: u8,
        pr_type: u8,
        params: &[u8],
    ) -> Result<PrOutcome, Sense> {
        if params.len() < 24 {
            return Err(Sense::param_list_length_error());
        }
        let rd = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&params[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let (rk, sark) = (rd(0), rd(8));
        let flags = params[20];
        if flags & 0x08 != 0 {
            return Err(Sense::invalid_field_in_param(20, Some(3))); // SPEC_I_PT
        }
        if flags & 0x01 != 0 {
            return Err(Sense::invalid_field_in_param(20, Some(0))); // APTPL
        }
        let port = who.port;
        let current = self.reg(port).map(|r| r.key);
        match service_action {
            0 | 6 => {
                if service_action == 0 {
                    match current {
                        None if rk != 0 => return Ok(PrOutcome::Conflict),
                        Some(k) if k != rk => return Ok(PrOutcome::Conflict),
                        _ => {}
                    }
                }
                match (current, sark) {
                    (None, 0) => {}
                    (None, k) => {
                        if self.regs.len() >= PR_REGISTRATIONS_MAX {
                            return Err(Sense::insufficient_registration_resources());
                        }
                        self.regs.push(Registration {
                            port: Arc::clone(port),
                            nexus: who.nexus,
                            key: k,
                        });
                        self.generation = self.generation.wrapping_add(1);
                    }
                    (Some(_), 0) => {
                        let mut uas = Vec::new();
                        self.unregister(port, &mut uas);
                        self.generation = self.generation.wrapping_add(1);
                        return Ok(PrOutcome::Done(uas));
                    }
                    (Some(_), k) => {
                        for r in self.regs.iter_mut().filter(|r| r.port == *port) {
                            r.key = k;
                            r.nexus = who.nexus;
                        }
                        self.generation = self.generation.wrapping_add(1);
                    }
                }
                Ok(PrOutcome::Done(Vec::new()))
            }
            1..=5 => {
                if current != Some(rk) {
                    return Ok(PrOutcome::Conflict);
                }
                if matches!(service_action, 1 | 4 | 5) {
                    if scope != 0 {
                        return Err(Sense::invalid_field_in_cdb(2, Some(7)));
                    }
                    if !valid_type(pr_type) {
                        return Err(Sense::invalid_field_in_cdb(2, Some(3)));
                    }
                }
                match service_action {
                    1 => self.reserve(port, pr_type),
                    2 => self.release(port, pr_type, who.nexus),
                    3 => {
                        let uas = self
                            .regs
                            .iter()
                            .filter(|r| r.nexus != who.nexus)
                            .map(|r| (r.nexus, super::ua::UA_RESERVATIONS_PREEMPTED))
                            .collect();
                        self.regs.clear();
                        self.res = None;
                        self.generation = self.generation.wrapping_add(1);
                        Ok(PrOutcome::Done(uas))
                    }
                    _ => self.preempt(who, sark, pr_type),
                }
            }
            _ => Err(Sense::invalid_field_in_cdb(1, Some(4))),
        }
    }

    fn unregister(&mut self, port: &str, uas: &mut Vec<(u64, Sense)>) {
        let was_holder = self.res.as_ref().is_some_and(|r| &*r.holder == port);
        self.regs.retain(|r| &*r.port != port);
        if let Some(res) = &self.res {
            let ar = all_registrants(res.pr_type);
            if (ar && self.regs.is_empty()) || (!ar && was_holder) {
                // Registrants-only types tell the others that the reservation went away.
                if matches!(
                    res.pr_type,
                    pr_type::WE_REGISTRANTS_ONLY | pr_type::EA_REGISTRANTS_ONLY
                ) {
                    uas.extend(
                        self.regs
                            .iter()
                            .map(|r| (r.nexus, super::ua::UA_RESERVATIONS_RELEASED)),
                    );
                }
                self.res = None;
            } else if ar && was_holder {
                // Any remaining registrant now holds an all-registrants reservation.
                if let Some(first) = self.regs.first() {
                    let holder = Arc::clone(&first.port);
                    if let Some(r) = self.res.as_mut() {
                        r.holder = holder;
                    }
                }
            }
        }
    }

    fn reserve(&mut self, port: &Arc<str>, pr_type: u8) -> Result<PrOutcome, Sense> {
        match &self.res {
            None => {
                self.res = Some(Reservation {
                    holder: Arc::clone(port),
                    pr_type,
                });
                Ok(PrOutcome::Done(Vec::new()))
            }
            Some(r) if self.is_holder(port) && r.pr_type == pr_type => {
                Ok(PrOutcome::Done(Vec::new()))
            }
            Some(_) => Ok(PrOutcome::Conflict),
        }
    }

    fn release(&mut self, port: &Arc<str>, pr_type: u8, nexus: u64) -> Result<PrOutcome, Sense> {
        let Some(r) = &self.res else {
            return Ok(PrOutcome::Done(Vec::new()));
        };
        if !self.is_holder(port) {
            return Ok(PrOutcome::Done(Vec::new()));
        }
        if r.pr_type != pr_type {
            return Err(Sense::invalid_release_of_persistent_reservation());
        }
        let notify = !matches!(
            r.pr_type,
            pr_type::WRITE_EXCLUSIVE | pr_type::EXCLUSIVE_ACCESS
        );
        self.res = None;
        let uas = if notify {
            self.regs
                .iter()
                .filter(|g| g.nexus != nexus)
                .map(|g| (g.nexus, super::ua::UA_RESERVATIONS_RELEASED))
                .collect()
        } else {
            Vec::new()
        };
        Ok(PrOutcome::Done(uas))
    }

    fn preempt(&mut self, who: Requester<'_>, sark: u64, pr_type: u8) -> Result<PrOutcome, Sense> {
        let ar_res = self
            .res
            .as_ref()
            .is_some_and(|r| all_registrants(r.pr_type));
        let holder_key = self
            .res
            .as_ref()
            .and_then(|r| self.reg(&r.holder))
            .map(|g| g.key);
        let mut uas = Vec::new();
        if sark == 0 {
            if !ar_res {
                return Err(Sense::invalid_field_in_param(8, None));
            }
            // All-registrants reservation: remove every other registration and take it over.
            uas.extend(
                self.regs
                    .iter()
                    .filter(|r| r.port != *who.port)
                    .map(|r| (r.nexus, super::ua::UA_REGISTRATIONS_PREEMPTED)),
            );
            self.regs.retain(|r| r.port == *who.port);
            self.res = Some(Reservation {
                holder: Arc::clone(who.port),
                pr_type,
            });
        } else {
            let victims: Vec<(u64, Sense)> = self
                .regs
                .iter()
                .filter(|r| r.key == sark && r.port != *who.port)
                .map(|r| (r.nexus, super::ua::UA_REGISTRATIONS_PREEMPTED))
                .collect();
            let takes_reservation = !ar_res && holder_key == Some(sark);
            if victims.is_empty() && !takes_reservation {
                return Ok(PrOutcome::Conflict);
            }
            uas.extend(victims);
            self.regs.retain(|r| r.key != sark || r.port == *who.port);
            if takes_reservation {
                self.res = Some(Reservation {
                    holder: Arc::clone(who.port),
                    pr_type,
                });
            } else if let Some(r) = &self.res {
                if !all_registrants(r.pr_type) && self.reg(&r.holder).is_none() {
                    self.res = None;
                }
            }
        }
        self.generation = self.generation.wrapping_add(1);
        Ok(PrOutcome::Done(uas))
    }
}

/// iSCSI TransportID, format 01b (initiator port name with ISID), SPC-4 7.6.4.6.
fn iscsi_transport_id(port: &str) -> Vec<u8> {
    let mut name = port.as_bytes().to_vec();
    name.push(0);
    while !name.len().is_multiple_of(4) {
        name.push(0);
    }
    let mut out = vec![0x45, 0];
    out.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(rk: u64, sark: u64) -> Vec<u8> {
        let mut p = vec![0u8; 24];
        p[0..8].copy_from_slice(&rk.to_be_bytes());
        p[8..16].copy_from_slice(&sark.to_be_bytes());
        p
    }

    fn keys(pr: &PersistentReservations) -> Vec<u64> {
        let d = pr.pr_in(0).unwrap();
        d[8..]
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn register_reserve_release_unregister() {
        let a: Arc<str> = Arc::from("iqn.a,i,0x1");
        let b: Arc<str> = Arc::from("iqn.b,i,0x2");
        let (wa, wb) = (
            Requester { nexus: 1, port: &a },
            Requester { nexus: 2, port: &b },
        );
        let mut pr = PersistentReservations::default();
        assert_eq!(
            pr.pr_out(wa, 6, 0, 0, &params(0, 5)).unwrap(),
            PrOutcome::Done(vec![])
        );
        assert_eq!(keys(&pr), vec![5]);
        assert_eq!(
            pr.pr_out(wa, 0, 0, 0, &params(0, 6)).unwrap(),
            PrOutcome::Conflict
        );
        pr.pr_out(wb, 0, 0, 0, &params(0, 9)).unwrap();
        let g = pr.generation;
        pr.pr_out(wa, 1, 0, 3, &params(5, 0)).unwrap();
        assert_eq!(pr.generation, g);
        let rr = pr.pr_in(1).unwrap();
        assert_eq!(&rr[8..16], &5u64.to_be_bytes());
        assert_eq!(rr[21], 3);
        let read = Command::Read {
            lba: crate::scsi::Lba(0),
            blocks: crate::scsi::BlockCount(1),
            dpo: false,
            fua: false,
        };
        assert!(pr.conflicts("iqn.b,i,0x2", &read));
        assert!(!pr.conflicts("iqn.a,i,0x1", &read));
        assert_eq!(
            pr.pr_out(wb, 1, 0, 3, &params(9, 0)).unwrap(),
            PrOutcome::Conflict
        );
        assert_eq!(pr.pr_out(wa, 2, 0, 1, &params(5, 0)).unwrap_err().asc, 0x26);
        pr.pr_out(wa, 2, 0, 3, &params(5, 0)).unwrap();
        assert!(!pr.reserved());
        pr.pr_out(wa, 0, 0, 0, &params(5, 0)).unwrap();
        assert_eq!(keys(&pr), vec![9]);
    }

    #[test]
    fn all_registrants_reservation_survives_holder_unregistering() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let (wa, wb) = (
            Requester { nexus: 1, port: &a },
            Requester { nexus: 2, port: &b },
        );
        let mut pr = PersistentReservations::default();
        pr.pr_out(wa, 0, 0, 0, &params(0, 1)).unwrap();
        pr.pr_out(wb, 0, 0, 0, &params(0, 2)).unwrap();
        pr.pr_out(wa, 1, 0, 8, &params(1, 0)).unwrap();
        assert_eq!(&pr.pr_in(1).unwrap()[8..16], &0u64.to_be_bytes());
        pr.pr_out(wa, 0, 0, 0, &params(1, 0)).unwrap();
        assert!(pr.reserved());
        pr.pr_out(wb, 2, 0, 8, &params(2, 0)).unwrap();
        assert!(!pr.reserved());
    }

    #[test]
    fn preempt_removes_registration_and_clear_bumps_generation() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let (wa, wb) = (
            Requester { nexus: 1, port: &a },
            Requester { nexus: 2, port: &b },
        );
        let mut pr = PersistentReservations::default();
        pr.pr_out(wa, 0, 0, 0, &params(0, 1)).unwrap();
        pr.pr_out(wb, 0, 0, 0, &params(0, 2)).unwrap();
        let g = pr.generation;
        let out = pr.pr_out(wb, 4, 0, 3, &params(2, 1)).unwrap();
        assert_eq!(
            out,
            PrOutcome::Done(vec![(1, crate::scsi::ua::UA_REGISTRATIONS_PREEMPTED)])
        );
        assert_eq!(keys(&pr), vec![2]);
        assert_eq!(pr.generation, g + 1);
        pr.pr_out(wb, 3, 0, 0, &params(2, 0)).unwrap();
        assert!(keys(&pr).is_empty());
        assert_eq!(pr.generation, g + 2);
        let caps = pr.pr_in(2).unwrap();
        assert_eq!(u16::from_be_bytes([caps[0], caps[1]]), 8);
        assert_eq!(pr.pr_in(4).unwrap_err().asc, 0x24);
        assert_eq!(
            pr.pr_out(wa, 0, 0, 0, &params(0, 1)[..20]).unwrap_err().asc,
            0x1A
        );
    }
}
