//! Connection placement onto per-node workers.
//!
//! When the worker CPUs span more than one NUMA node, the binary starts one tokio runtime per
//! node whose threads are pinned to that node's CPUs ([`node_cpu_groups`] decides the
//! groups). Each accepted connection then runs on the runtime of the node that holds the
//! storage its portal exports ([`super::place_connection`] chooses), so the connection's
//! task, its io_uring ring (one per thread), its data buffers (the LU's node pool) and the
//! backend I/O stay on one node. With one node there is one runtime and nothing to place.
//!
//! Placement is by portal, at accept time: the initiator has not named its target yet, and
//! a portal usually exports the targets of one node. A connection keeps its worker for life.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{place_connection, Topology, WorkerId, WorkerLayout};

/// The worker CPUs grouped by node, ascending by node; CPUs the topology does not place
/// are left out.
pub fn node_cpu_groups(topology: &Topology, cpus: &[u32]) -> Vec<(u32, Vec<u32>)> {
    let mut groups: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &cpu in cpus {
        if let Some(node) = topology.node_of_cpu(cpu) {
            groups.entry(node).or_default().push(cpu);
        }
    }
    groups.into_iter().collect()
}

/// One runtime per node, and how many connections each worker holds.
pub struct NodeRuntimes {
    topology: Topology,
    layout: WorkerLayout,
    /// Runtime handle per node, ascending by node.
    handles: Vec<(u32, tokio::runtime::Handle)>,
    /// Open connections per worker, by [`WorkerId::index`].
    loads: Vec<AtomicUsize>,
}

impl std::fmt::Debug for NodeRuntimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRuntimes")
            .field("layout", &self.layout)
            .finish()
    }
}

/// A connection's seat on a worker; dropping it frees the seat.
#[derive(Debug)]
pub struct Seat {
    runtimes: Arc<NodeRuntimes>,
    worker: WorkerId,
}

impl Seat {
    /// The worker the connection was placed on.
    pub fn worker(&self) -> WorkerId {
        self.worker
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some(l) = self.runtimes.loads.get(self.worker.index) {
            l.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl NodeRuntimes {
    /// `runtimes` holds `(node, handle, worker threads)` for each node runtime.
    pub fn new(topology: Topology, runtimes: Vec<(u32, tokio::runtime::Handle, usize)>) -> Self {
        let pairs: Vec<(u32, usize)> = runtimes.iter().map(|(n, _, w)| (*n, *w)).collect();
        let layout = WorkerLayout::new(&pairs);
        let mut handles: Vec<(u32, tokio::runtime::Handle)> =
            runtimes.into_iter().map(|(n, h, _)| (n, h)).collect();
        handles.sort_by_key(|(n, _)| *n);
        handles.dedup_by_key(|(n, _)| *n);
        let loads = (0..layout.worker_count())
            .map(|_| AtomicUsize::new(0))
            .collect();
        Self {
            topology,
            layout,
            handles,
            loads,
        }
    }

    /// Picks the worker for a connection whose portal exports storages on
    /// `storage_nodes`, takes a seat on it, and returns the seat and its node's runtime.
    pub fn place(
        self: &Arc<Self>,
        storage_nodes: &[Option<u32>],
    ) -> Option<(Seat, tokio::runtime::Handle)> {
        let loads: Vec<usize> = self
            .loads
            .iter()
            .map(|l| l.load(Ordering::Relaxed))
            .collect();
        let worker = place_connection(&self.topology, &self.layout, storage_nodes, &loads)?;
        let handle = self
            .handles
            .iter()
            .find(|(n, _)| *n == worker.node)
            .map(|(_, h)| h.clone())?;
        self.loads
            .get(worker.index)?
            .fetch_add(1, Ordering::Relaxed);
        Some((
            Seat {
                runtimes: Arc::clone(self),
                worker,
            },
            handle,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numa::topology::tests::fake_sysfs;

    #[test]
    fn groups_worker_cpus_by_node_on_a_fake_4_node_tree() {
        let tree = fake_sysfs("rt4", 4, 2);
        let t = Topology::from_sysfs(&tree.0).unwrap();
        assert_eq!(
            node_cpu_groups(&t, &[0, 1, 5, 6, 99]),
            vec![(0, vec![0, 1]), (2, vec![5]), (3, vec![6])]
        );
    }

    #[test]
    fn connections_go_to_the_node_of_their_storage_and_seats_are_freed() {
        let tree = fake_sysfs("rt2", 2, 2);
        let t = Topology::from_sysfs(&tree.0).unwrap();
        let rt0 = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let rt1 = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let nr = Arc::new(NodeRuntimes::new(
            t,
            vec![(1, rt1.handle().clone(), 2), (0, rt0.handle().clone(), 2)],
        ));
        let (a, _) = nr.place(&[Some(1)]).unwrap();
        assert_eq!(a.worker().node, 1);
        let (b, _) = nr.place(&[Some(1), Some(1), Some(0)]).unwrap();
        assert_eq!(b.worker().node, 1);
        assert_ne!(
            a.worker().index,
            b.worker().index,
            "least-loaded worker first"
        );
        let (c, _) = nr.place(&[Some(0)]).unwrap();
        assert_eq!(c.worker().node, 0);
        // No storage with a node: the less loaded node wins.
        let (d, _) = nr.place(&[None]).unwrap();
        assert_eq!(d.worker().node, 0);
        drop((a, b));
        // Workers of node 0 come first in the layout; node 1's are indexes 2 and 3.
        assert_eq!(nr.loads[2].load(Ordering::Relaxed), 0);
        assert_eq!(nr.loads[3].load(Ordering::Relaxed), 0);
        drop((c, d));
        assert!(nr.loads.iter().all(|l| l.load(Ordering::Relaxed) == 0));
    }
}
