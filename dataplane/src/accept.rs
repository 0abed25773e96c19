//! The accept loop of one portal: admits each connection under
//! [`CONNECTIONS_MAX`](crate::limits::CONNECTIONS_MAX), places it on a NUMA node's runtime
//! when the data plane runs one per node, and hands it to [`crate::conn::serve`].
//!
//! `control` starts one loop per bound portal with the portal's [`PortalSockets`], and
//! when the portal is removed aborts the loop and closes, through those, the connections it
//! accepted (each connection is registered with the portal it was accepted on).

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use crate::limits;
use crate::live::{PortalConnection, PortalSockets, Shared};
use crate::numa::BufferPool;

/// The NUMA node of every LU a portal exports (the node of the pool its buffers come from),
/// for placing the portal's connections.
fn portal_storage_nodes(shared: &Shared, portal_id: u16) -> Vec<Option<u32>> {
    let snap = shared.current();
    snap.targets
        .values()
        .filter(|t| t.tpgs.values().any(|ps| ps.contains(&portal_id)))
        .flat_map(|t| {
            t.scsi
                .logical_units()
                .map(|lu| lu.pool().and_then(BufferPool::numa_node))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Accepts connections on one portal until the task is aborted, registering each in
/// `sockets`.
pub(crate) async fn accept_loop(
    portal_id: u16,
    listener: TcpListener,
    shared: Arc<Shared>,
    sockets: Arc<PortalSockets>,
) {
    let open = shared.portal_connections(portal_id);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin, then go on.
                warn!(portal = portal_id, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = shared.admit_connection() else {
            warn!(%peer, limit = limits::CONNECTIONS_MAX, "connection refused: too many connections");
            drop(stream);
            continue;
        };
        // The permit and the portal registration live in the connection's task: they are
        // dropped when the task ends, however it ends.
        let counted = match PortalConnection::open(&open, &sockets, &stream) {
            Ok(c) => c,
            Err(e) => {
                warn!(%peer, portal = portal_id, error = %e, "connection refused: cannot register its socket");
                continue;
            }
        };
        let placed = shared
            .placement()
            .and_then(|p| p.place(&portal_storage_nodes(&shared, portal_id)));
        let Some((seat, node_runtime)) = placed else {
            let conn = crate::conn::serve(stream, peer, portal_id, shared.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let _counted = counted;
                conn.await;
            });
            continue;
        };
        info!(%peer, portal = portal_id, node = seat.worker().node, "connection placed on numa node");
        // The socket moves to the node runtime's reactor too, so its readiness is handled
        // on that node's threads rather than on the accepting runtime's.
        let shared = shared.clone();
        let moved = stream.into_std();
        node_runtime.spawn(async move {
            let _permit = permit;
            let _seat = seat;
            let _counted = counted;
            match moved.and_then(TcpStream::from_std) {
                Ok(stream) => crate::conn::serve(stream, peer, portal_id, shared).await,
                Err(e) => warn!(%peer, error = %e, "cannot move the connection to its numa node"),
            }
        });
    }
}
