//! Which CPUs the data plane's worker threads run on, decided from the config and the
//! topology (pure), and applied at thread start by the binary.
//!
//! Precedence: `performance.cpuList` (the reference design's "fine-grained CPU affinity"
//! enhancement) wins; else, with NUMA enabled, the union of the CPUs of every node a storage
//! names with `numaNode` (the workers serving those storages run next to their memory);
//! else no pinning. A `numaNode` the machine does not have is a config error; a CPU list
//! naming CPUs the machine lacks is one too.

use super::pin::PinError;
use super::Topology;

/// The worker CPU set, or `None` to leave scheduling to the kernel.
pub fn worker_cpus(
    topology: &Topology,
    cpu_list: Option<&[u32]>,
    numa_enabled: bool,
    storage_nodes: &[u32],
) -> Result<Option<Vec<u32>>, PinError> {
    if let Some(cpus) = cpu_list {
        let known: Vec<u32> = topology
            .nodes()
            .iter()
            .flat_map(|n| n.cpus.iter().copied())
            .collect();
        if let Some(&bad) = cpus.iter().find(|c| !known.contains(c)) {
            return Err(PinError::CpuOutOfRange { cpu: bad });
        }
        return Ok((!cpus.is_empty()).then(|| cpus.to_vec()));
    }
    if !numa_enabled || storage_nodes.is_empty() {
        return Ok(None);
    }
    let mut cpus = Vec::new();
    for &node in storage_nodes {
        cpus.extend_from_slice(super::cpus_for_node(topology, node)?);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(Some(cpus))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numa::topology::tests::fake_sysfs;

    #[test]
    fn numa_storages_pin_workers_to_their_nodes_on_fake_2_and_4_node_trees() {
        let two = fake_sysfs("aff2", 2, 4);
        let t2 = Topology::from_sysfs(&two.0).unwrap();
        assert_eq!(
            worker_cpus(&t2, None, true, &[1]).unwrap(),
            Some(vec![4, 5, 6, 7])
        );
        assert_eq!(
            worker_cpus(&t2, None, false, &[1]).unwrap(),
            None,
            "NUMA off: no pinning"
        );
        let four = fake_sysfs("aff4", 4, 2);
        let t4 = Topology::from_sysfs(&four.0).unwrap();
        assert_eq!(
            worker_cpus(&t4, None, true, &[3, 1, 3]).unwrap(),
            Some(vec![2, 3, 6, 7])
        );
        assert!(matches!(worker_cpus(&t4, None, true, &[9]), Err(e) if e.is_config_error()));
    }

    #[test]
    fn cpu_list_overrides_nodes_and_must_name_real_cpus() {
        let four = fake_sysfs("aff4b", 4, 2);
        let t4 = Topology::from_sysfs(&four.0).unwrap();
        assert_eq!(
            worker_cpus(&t4, Some(&[1, 5]), true, &[0]).unwrap(),
            Some(vec![1, 5])
        );
        assert!(matches!(worker_cpus(&t4, Some(&[64]), false, &[]), Err(e) if e.is_config_error()));
        assert_eq!(worker_cpus(&t4, None, true, &[]).unwrap(), None);
    }
}
