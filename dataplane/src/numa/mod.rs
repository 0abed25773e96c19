//! NUMA awareness for the data plane: topology, per-node buffer pools, thread pinning and
//! connection placement.
//!
//! At startup the data plane reads the [`Topology`], builds one [`BufferPool`] per configured
//! node ([`NumaPools`]), starts worker threads per node and pins each to its node's CPUs
//! ([`pin_current_thread`]). When a connection logs in, [`place_connection`] picks the worker
//! closest to the storage its target exports, so command buffers, backend I/O and the
//! worker's stack all live on one node. Only startup reads sysfs and maps memory; the per-
//! command path only takes and returns pooled buffers.

pub mod affinity;
pub mod pin;
pub mod pool;
pub mod runtimes;
pub mod topology;

pub use affinity::worker_cpus;
pub use pin::{cpus_for_node, current_thread_affinity, pin_current_thread, PinError};
pub use pool::{BufferPool, LenError, NumaPools, PoolBuf, PoolError, PoolStats};
pub use runtimes::{node_cpu_groups, NodeRuntimes, Seat};
pub use topology::{Node, Topology, TopologyError};

/// Which worker threads run on which node, numbered 0.. in node order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerLayout {
    /// `(node, workers on it)`, ascending by node, no zero counts.
    nodes: Vec<(u32, usize)>,
}

/// One worker thread: its node, its index among that node's workers and its index overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerId {
    /// The node the worker is pinned to.
    pub node: u32,
    /// Index among the workers of `node`.
    pub index_on_node: usize,
    /// Index among all workers; the index into the `loads` slice of [`place_connection`].
    pub index: usize,
}

impl WorkerLayout {
    /// A layout from `(node, worker count)` pairs; order does not matter, counts for the same
    /// node add up and zero counts are dropped.
    pub fn new(per_node: &[(u32, usize)]) -> Self {
        let mut nodes: Vec<(u32, usize)> = Vec::with_capacity(per_node.len());
        let mut sorted = per_node.to_vec();
        sorted.sort_unstable();
        for (node, count) in sorted {
            match nodes.last_mut() {
                Some((last, total)) if *last == node => *total += count,
                _ if count > 0 => nodes.push((node, count)),
                _ => {}
            }
        }
        Self { nodes }
    }

    /// `per_node` workers on every node of `topology` that has CPUs.
    pub fn uniform(topology: &Topology, per_node: usize) -> Self {
        let pairs: Vec<(u32, usize)> = topology
            .nodes()
            .iter()
            .filter(|n| !n.cpus.is_empty())
            .map(|n| (n.id, per_node))
            .collect();
        Self::new(&pairs)
    }

    /// All workers.
    pub fn worker_count(&self) -> usize {
        self.nodes.iter().map(|&(_, c)| c).sum()
    }

    /// Workers, in index order.
    pub fn workers(&self) -> impl Iterator<Item = WorkerId> + '_ {
        let mut index = 0;
        self.nodes.iter().flat_map(move |&(node, count)| {
            let first = index;
            index += count;
            (0..count).map(move |i| WorkerId {
                node,
                index_on_node: i,
                index: first + i,
            })
        })
    }
}

/// Chooses the worker for a new connection. Pure: it reads nothing but its arguments.
///
/// `storage_nodes` holds the `numaNode` of every storage the connection's target exports
/// (`None` where unset). `loads` holds each worker's current connection count, by
/// [`WorkerId::index`]; missing entries count as zero.
///
/// The node chosen is the one with workers whose summed NUMA distance to those storages is
/// smallest, so the node holding most of the storage wins, and a storage on a node without
/// workers pulls towards the nearest node that has some. Ties (including "no storage has a
/// node") go to the node with the lower total load, then the lower id. Within the node the
/// least-loaded worker wins, then the lowest index. Storages on nodes the topology does not
/// know are ignored. `None` only when the layout has no workers.
pub fn place_connection(
    topology: &Topology,
    layout: &WorkerLayout,
    storage_nodes: &[Option<u32>],
    loads: &[usize],
) -> Option<WorkerId> {
    let load_of = |w: &WorkerId| loads.get(w.index).copied().unwrap_or(0);
    let cost_of = |node: u32| -> u64 {
        storage_nodes
            .iter()
            .flatten()
            .filter_map(|&s| topology.distance(node, s))
            .map(u64::from)
            .sum()
    };
    let node_load = |node: u32| -> usize {
        layout
            .workers()
            .filter(|w| w.node == node)
            .map(|w| load_of(&w))
            .sum()
    };
    let (best_node, _) = layout
        .nodes
        .iter()
        .map(|&(node, _)| (node, (cost_of(node), node_load(node), node)))
        .min_by_key(|&(_, key)| key)?;
    layout
        .workers()
        .filter(|w| w.node == best_node)
        .min_by_key(|w| (load_of(w), w.index))
}

/// Builds the data buffer pools a validated config asks for (`performance`):
/// `numaBufferPoolSize` buffers of `numaBufferSize` bytes, 4 KiB aligned for O_DIRECT. With
/// NUMA awareness on (`enableNUMA`, or a storage with `numaNode`) every node of the machine
/// (read below `sysfs_root`, `None` being `/`) gets a pool bound to it; otherwise one
/// unbound pool serves every LU.
///
/// Maps and touches all the memory: call it off the network threads.
pub fn build_pools(
    cfg: &tgt_proto::ValidConfig,
    sysfs_root: Option<&std::path::Path>,
) -> Result<NumaPools, String> {
    let perf = cfg.performance();
    let count = usize::try_from(perf.numa_buffer_pool_size()).map_err(|e| e.to_string())?;
    let size = usize::try_from(perf.numa_buffer_size_bytes()).map_err(|e| e.to_string())?;
    let numa = perf.numa_enabled() || cfg.storages().any(|s| s.numa_node().is_some());
    let align = pool::DIRECT_IO_ALIGN_BYTES;
    let pools = if numa {
        let topology = Topology::from_sysfs(sysfs_root.unwrap_or(std::path::Path::new("/")))
            .map_err(|e| format!("numa topology: {e}"))?;
        let nodes: Vec<u32> = topology.nodes().iter().map(|n| n.id).collect();
        NumaPools::new(&topology, &nodes, count, size, align)
    } else {
        BufferPool::unbound(count, size, align).map(NumaPools::single)
    }
    .map_err(|e| format!("buffer pools: {e}"))?;
    for st in pools.stats() {
        tracing::info!(
            node = st.node,
            buffers = st.capacity,
            buffer_bytes = size,
            bound = st.bound,
            "data buffer pool ready"
        );
    }
    Ok(pools)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric fake topology of `count` nodes with two CPUs each; nodes are 20 apart when
    /// adjacent and 30 otherwise.
    fn fake_topology(count: u32) -> Topology {
        Topology::from_nodes(
            (0..count)
                .map(|id| Node {
                    id,
                    cpus: vec![2 * id, 2 * id + 1],
                    mem_total_bytes: None,
                    distances: (0..count)
                        .map(|m| match id.abs_diff(m) {
                            0 => 10,
                            1 => 20,
                            _ => 30,
                        })
                        .collect(),
                })
                .collect(),
        )
    }

    #[test]
    fn layout_numbers_workers_in_node_order() {
        let layout = WorkerLayout::new(&[(1, 2), (0, 1), (3, 0), (1, 1)]);
        let ws: Vec<(u32, usize, usize)> = layout
            .workers()
            .map(|w| (w.node, w.index_on_node, w.index))
            .collect();
        assert_eq!(ws, vec![(0, 0, 0), (1, 0, 1), (1, 1, 2), (1, 2, 3)]);
        assert_eq!(layout.worker_count(), 4);
    }

    #[test]
    fn two_nodes_follow_the_storage() {
        let topo = fake_topology(2);
        let layout = WorkerLayout::uniform(&topo, 2);
        let w = place_connection(&topo, &layout, &[Some(1)], &[]).unwrap();
        assert_eq!((w.node, w.index), (1, 2));
        // The least-loaded worker of the node wins.
        let w = place_connection(&topo, &layout, &[Some(1)], &[0, 0, 5, 1]).unwrap();
        assert_eq!((w.node, w.index), (1, 3));
        // Majority wins.
        let w = place_connection(&topo, &layout, &[Some(0), Some(1), Some(1)], &[]).unwrap();
        assert_eq!(w.node, 1);
        // Load does not pull a connection away from its storage.
        let w = place_connection(&topo, &layout, &[Some(0)], &[9, 9, 0, 0]).unwrap();
        assert_eq!((w.node, w.index), (0, 0));
    }

    #[test]
    fn two_nodes_balance_without_storage_affinity() {
        let topo = fake_topology(2);
        let layout = WorkerLayout::uniform(&topo, 2);
        let mut loads = vec![0; 4];
        for _ in 0..8 {
            let w = place_connection(&topo, &layout, &[None], &loads).unwrap();
            loads[w.index] += 1;
        }
        assert_eq!(loads, vec![2, 2, 2, 2]);
        // A tie between the nodes' storage goes to the less loaded node.
        let w = place_connection(&topo, &layout, &[Some(0), Some(1)], &[3, 0, 0, 0]).unwrap();
        assert_eq!(w.node, 1);
    }

    #[test]
    fn four_nodes_use_the_nearest_node_with_workers() {
        let topo = fake_topology(4);
        // Workers only on nodes 0 and 3.
        let layout = WorkerLayout::new(&[(0, 1), (3, 1)]);
        let w = place_connection(&topo, &layout, &[Some(2)], &[]).unwrap();
        assert_eq!(w.node, 3, "node 2 is 20 from node 3 and 30 from node 0");
        let w = place_connection(&topo, &layout, &[Some(1)], &[]).unwrap();
        assert_eq!(w.node, 0);
        let w = place_connection(&topo, &layout, &[Some(1), Some(2), Some(3)], &[]).unwrap();
        assert_eq!(w.node, 3);
    }

    #[test]
    fn four_nodes_full_layout() {
        let topo = fake_topology(4);
        let layout = WorkerLayout::uniform(&topo, 3);
        assert_eq!(layout.worker_count(), 12);
        for node in 0..4 {
            let w = place_connection(&topo, &layout, &[Some(node)], &[]).unwrap();
            assert_eq!((w.node, w.index_on_node), (node, 0));
            assert_eq!(w.index, usize::try_from(node).unwrap() * 3);
        }
        // An unknown storage node is ignored: plain balancing.
        let w = place_connection(&topo, &layout, &[Some(9)], &[1; 12]).unwrap();
        assert_eq!(w.index, 0);
    }

    #[test]
    fn empty_layout_places_nothing() {
        let topo = fake_topology(2);
        let layout = WorkerLayout::new(&[]);
        assert_eq!(place_connection(&topo, &layout, &[Some(0)], &[]), None);
    }
}
