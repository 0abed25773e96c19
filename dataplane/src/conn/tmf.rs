//! Task management (RFC 7143 §11.5, §11.6; SAM-5 §7): aborting tasks of this connection
//! (held, collecting data, or running), asking the logical units to reset, and answering
//! once every aborted running command has finished (SAM-5 §7.2).

use super::command::Task;
use super::{Conn, Outcome};
use crate::lu::{TmFunction, TmResponse};
use crate::pdu::request::{tmf_function, TaskMgmtRequest};
use crate::pdu::response::tmf_response;
use crate::pdu::{self, SerialNumber};

/// A task management response waiting for aborted commands to finish.
pub(super) struct PendingTmf {
    itt: u32,
    response: u8,
    waiting: Vec<u32>,
}

impl Conn {
    pub(super) fn on_task_mgmt(&mut self, t: &TaskMgmtRequest) -> Outcome {
        self.refresh_target();
        let itt = t.itt;
        let func = t.function;
        let lun = pdu::decode_lun(t.lun_raw).unwrap_or(u16::MAX);
        let Some(target) = self.bound.target.clone() else {
            self.send_tmf_response(itt, tmf_response::NOT_SUPPORTED);
            return Outcome::Reply;
        };
        let lun_based = matches!(
            func,
            tmf_function::ABORT_TASK..=tmf_function::LOGICAL_UNIT_RESET
        );
        if lun_based && !target.scsi.lun_exists(lun) {
            self.send_tmf_response(itt, tmf_response::NO_LUN);
            return Outcome::Reply;
        }
        let nexus = self.bound.nexus.clone();
        match func {
            tmf_function::ABORT_TASK => {
                let rtt = t.rtt;
                if self.cmds.tasks.contains_key(&rtt) {
                    // The logical unit ends what it waits for on the task's behalf (a
                    // SANITIZE waiting for its operation), so the abort need not wait for it.
                    if let Some(n) = &nexus {
                        let _ = target.scsi.task_management(TmFunction::AbortTask, lun, n);
                    }
                    let waiting = self.abort_tasks(|t_itt, _| t_itt == rtt);
                    self.queue_tmf(itt, tmf_response::COMPLETE, waiting);
                    return Outcome::Reply;
                }
                let mut found_held = false;
                for h in self.sn.window.held_mut() {
                    if h.bhs.itt() == rtt {
                        h.aborted = true;
                        found_held = true;
                    }
                }
                if found_held {
                    self.send_tmf_response(itt, tmf_response::COMPLETE);
                    return Outcome::Reply;
                }
                // RFC 7143 §11.5.1: a task not found whose RefCmdSN is inside the CmdSN window
                // and before this request was never received: count it received, "function
                // complete". Otherwise (it already completed, its CmdSN is behind ExpCmdSN):
                // "task does not exist".
                let rc = SerialNumber(t.ref_cmd_sn);
                let exp = SerialNumber(self.sn.window.exp_cmd_sn());
                let max = SerialNumber(self.sn.window.max_cmd_sn(self.in_progress()));
                let in_window = !rc.lt(exp) && !rc.gt(max);
                let resp = if in_window && rc.lt(SerialNumber(t.cmd_sn)) {
                    tmf_response::COMPLETE
                } else {
                    tmf_response::NO_TASK
                };
                self.send_tmf_response(itt, resp);
            }
            tmf_function::ABORT_TASK_SET
            | tmf_function::CLEAR_TASK_SET
            | tmf_function::LOGICAL_UNIT_RESET => {
                // Every task of this LUN.
                let waiting = self.abort_tasks(|_, t| t.lun == lun);
                for h in self.sn.window.held_mut() {
                    if pdu::decode_lun(h.bhs.lun_raw()) == Some(lun) {
                        h.aborted = true;
                    }
                }
                if let Some(n) = &nexus {
                    let f = match func {
                        tmf_function::ABORT_TASK_SET => TmFunction::AbortTaskSet,
                        tmf_function::CLEAR_TASK_SET => TmFunction::ClearTaskSet,
                        _ => TmFunction::LogicalUnitReset,
                    };
                    let r = target.scsi.task_management(f, lun, n);
                    if !matches!(r, TmResponse::Complete) {
                        self.queue_tmf(itt, tmf_response::NOT_SUPPORTED, waiting);
                        return Outcome::Reply;
                    }
                }
                self.queue_tmf(itt, tmf_response::COMPLETE, waiting);
            }
            tmf_function::TARGET_WARM_RESET | tmf_function::TARGET_COLD_RESET => {
                // Every task of the session, then the target.
                let waiting = self.abort_tasks(|_, _| true);
                for h in self.sn.window.held_mut() {
                    h.aborted = true;
                }
                if let Some(n) = &nexus {
                    let f = if func == tmf_function::TARGET_WARM_RESET {
                        TmFunction::TargetWarmReset
                    } else {
                        TmFunction::TargetColdReset
                    };
                    let _ = target.scsi.task_management(f, 0, n);
                }
                self.queue_tmf(itt, tmf_response::COMPLETE, waiting);
            }
            tmf_function::TASK_REASSIGN => {
                self.send_tmf_response(itt, tmf_response::NO_REASSIGN);
            }
            _ => self.send_tmf_response(itt, tmf_response::NOT_SUPPORTED),
        }
        Outcome::Reply
    }

    /// Aborts matching tasks: ones still collecting data go at once; running ones are marked
    /// and their ITTs returned so the TMF response waits for them (SAM-5 §7.2).
    pub(super) fn abort_tasks(&mut self, pred: impl Fn(u32, &Task) -> bool) -> Vec<u32> {
        let victims: Vec<u32> = self
            .cmds
            .tasks
            .iter()
            .filter(|(i, t)| pred(**i, t))
            .map(|(i, _)| *i)
            .collect();
        let mut waiting = Vec::new();
        for v in victims {
            if let Some(t) = self.cmds.tasks.get_mut(&v) {
                if t.running {
                    t.aborted = true;
                    waiting.push(v);
                } else {
                    self.cmds.tasks.remove(&v);
                    self.mark_dead(v);
                }
            }
        }
        waiting
    }

    fn queue_tmf(&mut self, itt: u32, response: u8, waiting: Vec<u32>) {
        if waiting.is_empty() {
            self.send_tmf_response(itt, response);
        } else {
            self.tmfs.push(PendingTmf {
                itt,
                response,
                waiting,
            });
        }
    }

    /// An aborted command finished: answer the task management functions that waited only
    /// for it.
    pub(super) fn finish_tmf_wait(&mut self, done_itt: u32) {
        let mut ready = Vec::new();
        self.tmfs.retain_mut(|t| {
            t.waiting.retain(|&i| i != done_itt);
            if t.waiting.is_empty() {
                ready.push((t.itt, t.response));
                false
            } else {
                true
            }
        });
        for (itt, resp) in ready {
            self.send_tmf_response(itt, resp);
        }
    }
}
