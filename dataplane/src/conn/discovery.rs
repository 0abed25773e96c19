//! Text requests (RFC 7143 §11.10, §11.11) and SendTargets (RFC 7143 Appendix C): requests
//! spread over several PDUs are collected, and long responses are sent in parts of at most
//! the initiator's MaxRecvDataSegmentLength, each fetched with the TTT of the last.

use super::{Conn, Outcome};
use crate::limits;
use crate::login::SessionKind;
use crate::pdu::request::TextRequest;
use crate::pdu::{self, reject, RawPdu, RESERVED_TAG};

/// A text exchange in progress.
pub(super) struct TextExchange {
    /// Request text collected from PDUs with C set.
    input: Vec<u8>,
    /// The response being sent in parts, and how much of it went out.
    output: Vec<u8>,
    output_pos: usize,
    /// The TTT the initiator must send to fetch the next part.
    ttt: u32,
}

impl Default for TextExchange {
    fn default() -> Self {
        Self {
            input: Vec::new(),
            output: Vec::new(),
            output_pos: 0,
            ttt: RESERVED_TAG,
        }
    }
}

impl Conn {
    pub(super) fn on_text(&mut self, p: &RawPdu<'_>, t: &TextRequest) -> Outcome {
        let itt = t.itt;
        if t.ttt != RESERVED_TAG {
            // The initiator asks for the next part of a long response.
            if t.ttt != self.text.ttt {
                return Outcome::Reject(reject::PROTOCOL_ERROR);
            }
            self.send_text_part(itt, t.lun_raw);
            return Outcome::Reply;
        }
        if self.text.input.len() + p.data.len() > limits::TEXT_BYTES_MAX {
            self.text.input.clear();
            return Outcome::Reject(reject::OUT_OF_RESOURCES);
        }
        self.text.input.extend_from_slice(p.data);
        if t.cont {
            // Acknowledge and wait for the rest of the request.
            self.text.output.clear();
            self.text.output_pos = 0;
            let ttt = self.alloc_ttt();
            self.text.ttt = ttt;
            self.send_text_response(itt, t.lun_raw, ttt, false, false, &[]);
            return Outcome::Reply;
        }
        let input = std::mem::take(&mut self.text.input);
        let Ok(pairs) = pdu::text::parse(&input) else {
            return Outcome::Reject(reject::PROTOCOL_ERROR);
        };
        let mut out = Vec::new();
        for (k, v) in &pairs {
            if k == "SendTargets" {
                self.send_targets(v, &mut out);
            } else {
                pdu::text::push(&mut out, k, "NotUnderstood");
            }
        }
        self.text.output = out;
        self.text.output_pos = 0;
        self.send_text_part(itt, t.lun_raw);
        Outcome::Reply
    }

    /// Sends the next part of the response; F and a reserved TTT on the last.
    fn send_text_part(&mut self, itt: u32, lun_raw: u64) {
        let max = usize::try_from(self.neg.send_data_segment_bytes).unwrap_or(usize::MAX);
        let x = &mut self.text;
        let rest = x.output.len() - x.output_pos;
        let n = rest.min(max);
        let chunk = x.output[x.output_pos..x.output_pos + n].to_vec();
        x.output_pos += n;
        if x.output_pos < x.output.len() {
            let ttt = self.alloc_ttt();
            self.text.ttt = ttt;
            self.send_text_response(itt, lun_raw, ttt, false, true, &chunk);
        } else {
            self.text.ttt = RESERVED_TAG;
            self.send_text_response(itt, lun_raw, RESERVED_TAG, true, false, &chunk);
        }
    }

    /// SendTargets (RFC 7143 Appendix C): `All` lists every target in a discovery session;
    /// empty names the session's own target; otherwise the named target. Targets whose
    /// initiator ACL refuses this initiator are left out.
    fn send_targets(&self, which: &str, out: &mut Vec<u8>) {
        let snap = self.shared.current();
        let in_discovery = self.neg.kind == SessionKind::Discovery;
        for t in snap.targets.values() {
            let wanted = match which {
                "All" => in_discovery,
                "" => !in_discovery && t.name == self.neg.target_name,
                name => t.name == name,
            };
            // SendTargets lists only what the asking initiator may log in to (issue 11): an
            // ACL that refuses it hides the target too.
            let allowed = snap
                .access
                .get(&t.name)
                .is_none_or(|a| a.allows(&self.neg.initiator_name, self.sock.peer.ip()));
            if !wanted || !allowed {
                continue;
            }
            let mut addrs = Vec::new();
            for (tag, portals) in &t.tpgs {
                for pid in portals {
                    if let Some(addr) = self.shared.bound_addr(*pid) {
                        let ip = if addr.ip().is_unspecified() {
                            self.sock.local.ip()
                        } else {
                            addr.ip()
                        };
                        let host = match ip {
                            std::net::IpAddr::V4(v4) => v4.to_string(),
                            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                        };
                        addrs.push(format!("{host}:{},{tag}", addr.port()));
                    }
                }
            }
            if addrs.is_empty() {
                continue;
            }
            pdu::text::push(out, "TargetName", &t.name);
            for a in addrs {
                pdu::text::push(out, "TargetAddress", &a);
            }
        }
    }
}
