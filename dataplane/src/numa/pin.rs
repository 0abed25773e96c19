//! Pinning worker threads to the CPUs of a NUMA node with `sched_setaffinity(2)`.
//!
//! Errors come in two kinds, and [`PinError::is_config_error`] tells them apart. A node or CPU
//! that does not exist is a configuration error and should stop startup. A refusal by the
//! kernel (EPERM without CAP_SYS_NICE over the thread, EINVAL when a cpuset leaves none of
//! the CPUs usable) is environmental: log a warning and run unpinned.

use std::io;

use super::topology::Topology;

/// CPUs a `cpu_set_t` can name (`CPU_SETSIZE`); ids past it cannot be pinned with the glibc
/// fixed-size set.
pub const CPU_SET_CAPACITY: u32 = libc::CPU_SETSIZE.unsigned_abs();

/// Why a thread could not be pinned.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The node is not in the topology: a configuration error.
    #[error("numa node {node} does not exist")]
    UnknownNode {
        /// The node.
        node: u32,
    },
    /// The node has no CPUs (a memory-only node): a configuration error.
    #[error("numa node {node} has no cpus")]
    NodeWithoutCpus {
        /// The node.
        node: u32,
    },
    /// The CPU list was empty: a configuration error.
    #[error("empty cpu list")]
    NoCpus,
    /// A CPU id past what `cpu_set_t` holds: a configuration error.
    #[error("cpu {cpu} out of range")]
    CpuOutOfRange {
        /// The CPU.
        cpu: u32,
    },
    /// The kernel refused (EPERM or EINVAL): warn and continue unpinned.
    #[error("kernel refused cpu affinity")]
    Refused {
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Any other failure of the affinity calls.
    #[error("cpu affinity call failed")]
    Os {
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl PinError {
    /// Whether this is a mistake in the configuration (stop), as opposed to the environment
    /// refusing (warn and run unpinned).
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            Self::UnknownNode { .. }
                | Self::NodeWithoutCpus { .. }
                | Self::NoCpus
                | Self::CpuOutOfRange { .. }
        )
    }

    fn from_os(source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EINVAL) => Self::Refused { source },
            _ => Self::Os { source },
        }
    }
}

/// The CPUs of `node`, or a configuration error if it does not exist or has none.
pub fn cpus_for_node(topology: &Topology, node: u32) -> Result<&[u32], PinError> {
    let found = topology.node(node).ok_or(PinError::UnknownNode { node })?;
    if found.cpus.is_empty() {
        return Err(PinError::NodeWithoutCpus { node });
    }
    Ok(&found.cpus)
}

/// Restricts the calling thread to `cpus`.
pub fn pin_current_thread(cpus: &[u32]) -> Result<(), PinError> {
    if cpus.is_empty() {
        return Err(PinError::NoCpus);
    }
    // SAFETY: cpu_set_t is a plain bit array for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= CPU_SET_CAPACITY {
            return Err(PinError::CpuOutOfRange { cpu });
        }
        // SAFETY: CPU_SET only indexes the bit array of `set`; `cpu < CPU_SETSIZE`, checked
        // above, keeps the index inside it.
        unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    }
    // SAFETY: `set` is a valid, initialised cpu_set_t and the size passed is its own; pid 0
    // means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(PinError::from_os(io::Error::last_os_error()));
    }
    Ok(())
}

/// Restricts the calling thread to the CPUs of `node`.
pub fn pin_current_thread_to_node(topology: &Topology, node: u32) -> Result<(), PinError> {
    pin_current_thread(cpus_for_node(topology, node)?)
}

/// The CPUs the calling thread may run on, ascending.
pub fn current_thread_affinity() -> Result<Vec<u32>, PinError> {
    // SAFETY: cpu_set_t is a plain bit array for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t and the size passed is its own; pid 0 means the
    // calling thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(PinError::from_os(io::Error::last_os_error()));
    }
    Ok((0..CPU_SET_CAPACITY)
        // SAFETY: CPU_ISSET only reads the bit array of `set`; the range stops at
        // CPU_SETSIZE, so every index is inside it.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu as usize, &set) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numa::topology::Node;

    fn two_nodes_one_memory_only() -> Topology {
        Topology::from_nodes(vec![
            Node {
                id: 0,
                cpus: vec![0, 1],
                mem_total_bytes: None,
                distances: vec![10, 20],
            },
            Node {
                id: 1,
                cpus: vec![],
                mem_total_bytes: None,
                distances: vec![20, 10],
            },
        ])
    }

    #[test]
    fn pins_current_thread_to_cpu_0() {
        std::thread::spawn(|| {
            pin_current_thread(&[0]).unwrap();
            assert_eq!(current_thread_affinity().unwrap(), vec![0]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn pins_current_thread_to_a_node() {
        std::thread::spawn(|| {
            let topo = Topology::detect().unwrap();
            let node = topo.nodes()[0].id;
            pin_current_thread_to_node(&topo, node).unwrap();
            let expected: Vec<u32> = topo.nodes()[0].cpus.clone();
            assert_eq!(current_thread_affinity().unwrap(), expected);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn unknown_node_is_a_config_error() {
        let topo = two_nodes_one_memory_only();
        let err = cpus_for_node(&topo, 7).unwrap_err();
        assert!(matches!(err, PinError::UnknownNode { node: 7 }));
        assert!(err.is_config_error());
        let err = cpus_for_node(&topo, 1).unwrap_err();
        assert!(matches!(err, PinError::NodeWithoutCpus { node: 1 }));
        assert!(err.is_config_error());
        assert_eq!(cpus_for_node(&topo, 0).unwrap(), &[0, 1]);
    }

    #[test]
    fn bad_cpu_lists_are_config_errors() {
        let err = pin_current_thread(&[]).unwrap_err();
        assert!(matches!(err, PinError::NoCpus) && err.is_config_error());
        let err = pin_current_thread(&[CPU_SET_CAPACITY]).unwrap_err();
        assert!(matches!(err, PinError::CpuOutOfRange { .. }) && err.is_config_error());
    }

    #[test]
    fn offline_cpu_is_a_refusal_not_a_config_error() {
        // A CPU this machine does not have (but cpu_set_t can name): the kernel says EINVAL.
        let online = current_thread_affinity().unwrap();
        let Some(absent) = (0..CPU_SET_CAPACITY).rev().find(|c| !online.contains(c)) else {
            return;
        };
        let err = std::thread::spawn(move || pin_current_thread(&[absent]).unwrap_err())
            .join()
            .unwrap();
        assert!(matches!(err, PinError::Refused { .. }), "{err:?}");
        assert!(!err.is_config_error());
    }
}
