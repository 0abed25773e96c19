//! What a session is bound to (its target, I_T nexus and session-table entry), and
//! following configuration changes of that target's LUN map while the session lives.

use std::sync::Arc;

use tracing::debug;

use super::Conn;
use crate::live::TargetEntry;
use crate::lu::{Nexus, NexusAttentions};
use crate::session::KillSwitch;

/// The target, nexus and session entry of a connection in full feature phase.
#[derive(Default)]
pub(super) struct Bound {
    /// The session's target (none for discovery sessions).
    pub(super) target: Option<Arc<TargetEntry>>,
    /// Snapshot generation `target` was taken from.
    pub(super) target_gen: u64,
    /// REPORTED LUNS DATA HAS CHANGED conditions of this connection's I_T nexus (one
    /// connection per session, so the connection is the nexus).
    pub(super) attentions: NexusAttentions,
    pub(super) nexus: Option<Nexus>,
    /// TSIH and nexus id of the session-table entry.
    pub(super) session: Option<(u16, u64)>,
    /// Fires when the session is reinstated elsewhere or closed by the operator.
    pub(super) kill: Option<KillSwitch>,
}

impl Conn {
    /// Follows configuration changes: after a new snapshot, the next command sees the
    /// target's new LUN map (a LUN added is reachable, one removed answers LOGICAL UNIT NOT
    /// SUPPORTED). Commands already running keep the map they started with. A target that
    /// was removed keeps its old entry; the control plane refuses that while sessions exist.
    ///
    /// When the LUN numbers differ from the map this nexus had, REPORTED LUNS DATA HAS
    /// CHANGED becomes pending on its LUNs (SPC-4 6.33; rules in `scsi::ua`). Done here, at
    /// the nexus's first command after the change and before that command is judged, so
    /// the inventory the condition speaks of is exactly the one this nexus is served.
    pub(super) fn refresh_target(&mut self) {
        let g = self.shared.generation();
        let bound = &mut self.bound;
        if g == bound.target_gen {
            return;
        }
        bound.target_gen = g;
        let Some(new) = self
            .shared
            .current()
            .targets
            .get(&self.neg.target_name)
            .cloned()
        else {
            return;
        };
        if let Some(old) = &bound.target {
            if bound
                .attentions
                .target_replaced(&old.scsi, &new.scsi, bound.nexus.as_ref())
            {
                debug!(
                    peer = %self.sock.peer,
                    target = %self.neg.target_name,
                    "LUN inventory changed: REPORTED LUNS DATA HAS CHANGED pending"
                );
            }
        }
        bound.target = Some(new);
    }
}
