//! NUMA topology read from sysfs: nodes, their CPUs, memory and distances.
//!
//! The source is `/sys/devices/system/node/node<N>/{cpulist,meminfo,distance}` (see the
//! kernel's `Documentation/ABI/stable/sysfs-devices-node`). The sysfs root is injectable so
//! tests build fake trees in a temporary directory. A machine without that directory (a
//! kernel built without `CONFIG_NUMA`, some containers) is one node holding every online CPU.
//! A file that exists but cannot be parsed is an error naming the file: guessing a topology
//! would silently pin threads and bind memory to the wrong place.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tgt_proto::{parse_kernel_cpu_list, CpuListError};

/// CPU ids we accept, exclusive: one past the largest index a CPU list may name
/// ([`tgt_proto::CPU_INDEX_MAX`], the kernel's `NR_CPUS` limit on x86-64).
pub const CPU_ID_LIMIT: u32 = tgt_proto::CPU_INDEX_MAX + 1;

/// Node ids we accept, exclusive. Matches `MAX_NUMNODES` with the largest `NODES_SHIFT` (10)
/// the kernel allows.
pub const NODE_ID_LIMIT: u32 = 1024;

/// Why the topology could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A CPU list file (`cpulist`, `cpu/online`) was malformed.
    #[error("malformed cpu list in {}", path.display())]
    CpuList {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: CpuListError,
    },
    /// Some other file had content we do not understand.
    #[error("malformed {}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The node directory exists but holds no `node<N>` entries.
    #[error("no numa nodes under {}", path.display())]
    NoNodes {
        /// The node directory.
        path: PathBuf,
    },
}

/// One NUMA node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node id, as in `node<N>`.
    pub id: u32,
    /// Its CPUs, ascending; empty for a memory-only node.
    pub cpus: Vec<u32>,
    /// Its memory in bytes, when known (the single-node fallback does not know it).
    pub mem_total_bytes: Option<u64>,
    /// Distance to every node of the topology, in the order of [`Topology::nodes`].
    /// The kernel reports 10 for local memory and larger values for remote memory.
    pub distances: Vec<u32>,
}

/// The machine's NUMA layout: nodes ascending by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    nodes: Vec<Node>,
}

/// Distance the kernel reports from a node to itself (`LOCAL_DISTANCE`).
pub const LOCAL_DISTANCE: u32 = 10;

impl Topology {
    /// Reads the topology of this machine.
    pub fn detect() -> Result<Self, TopologyError> {
        Self::from_sysfs(Path::new("/"))
    }

    /// Reads the topology below `root`, which stands in for `/`.
    pub fn from_sysfs(root: &Path) -> Result<Self, TopologyError> {
        let node_dir = root.join("sys/devices/system/node");
        let entries = match fs::read_dir(&node_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Self::single_node_fallback(root);
            }
            Err(source) => {
                return Err(TopologyError::Io {
                    path: node_dir,
                    source,
                })
            }
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| TopologyError::Io {
                path: node_dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(node_id_from_name) else {
                continue;
            };
            ids.push(id);
        }
        if ids.is_empty() {
            return Err(TopologyError::NoNodes { path: node_dir });
        }
        ids.sort_unstable();
        let mut nodes = Vec::with_capacity(ids.len());
        for &id in &ids {
            let dir = node_dir.join(format!("node{id}"));
            let cpus = read_cpu_list_file(&dir.join("cpulist"))?;
            let mem_total_bytes = Some(read_meminfo(&dir.join("meminfo"), id)?);
            let distances = read_distances(&dir.join("distance"), ids.len())?;
            nodes.push(Node {
                id,
                cpus,
                mem_total_bytes,
                distances,
            });
        }
        Ok(Self { nodes })
    }

    /// One node 0 holding `cpus`, for machines without NUMA and for tests.
    pub fn single_node(cpus: Vec<u32>) -> Self {
        Self {
            nodes: vec![Node {
                id: 0,
                cpus,
                mem_total_bytes: None,
                distances: vec![LOCAL_DISTANCE],
            }],
        }
    }

    /// Builds a topology from nodes given directly; used for fake topologies in tests of
    /// code that consumes a `Topology`. Nodes are sorted by id.
    pub fn from_nodes(mut nodes: Vec<Node>) -> Self {
        nodes.sort_unstable_by_key(|n| n.id);
        Self { nodes }
    }

    fn single_node_fallback(root: &Path) -> Result<Self, TopologyError> {
        let online = root.join("sys/devices/system/cpu/online");
        let cpus = match fs::read_to_string(&online) {
            Ok(text) => parse_kernel_cpu_list(&text).map_err(|source| TopologyError::CpuList {
                path: online.clone(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let count = std::thread::available_parallelism().map_or(1, |n| n.get());
                (0..u32::try_from(count).unwrap_or(u32::MAX).min(CPU_ID_LIMIT)).collect()
            }
            Err(source) => {
                return Err(TopologyError::Io {
                    path: online,
                    source,
                })
            }
        };
        tracing::debug!(cpus = cpus.len(), "no numa sysfs directory; one node");
        Ok(Self::single_node(cpus))
    }

    /// All nodes, ascending by id.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node with id `id`.
    pub fn node(&self, id: u32) -> Option<&Node> {
        self.position(id).map(|i| &self.nodes[i])
    }

    /// How many nodes there are.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The distance from node `from` to node `to`, when both exist and it is known.
    pub fn distance(&self, from: u32, to: u32) -> Option<u32> {
        let to_index = self.position(to)?;
        self.node(from)?.distances.get(to_index).copied()
    }

    /// The node a CPU belongs to.
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.nodes
            .iter()
            .find(|n| n.cpus.binary_search(&cpu).is_ok())
            .map(|n| n.id)
    }

    fn position(&self, id: u32) -> Option<usize> {
        self.nodes.binary_search_by_key(&id, |n| n.id).ok()
    }
}

/// `node12` -> 12; anything else (`online`, `possible`, `power`, `node`) -> None.
fn node_id_from_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("node")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&id| id < NODE_ID_LIMIT)
}

fn read_file(path: &Path) -> Result<String, TopologyError> {
    fs::read_to_string(path).map_err(|source| TopologyError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read_cpu_list_file(path: &Path) -> Result<Vec<u32>, TopologyError> {
    parse_kernel_cpu_list(&read_file(path)?).map_err(|source| TopologyError::CpuList {
        path: path.to_owned(),
        source,
    })
}

/// Finds `Node <id> MemTotal: <n> kB` and returns the bytes.
fn read_meminfo(path: &Path, id: u32) -> Result<u64, TopologyError> {
    let malformed = |reason| TopologyError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let text = read_file(path)?;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("Node") {
            continue;
        }
        let node_word = words.next();
        if words.next() != Some("MemTotal:") {
            continue;
        }
        if node_word.and_then(|w| w.parse::<u32>().ok()) != Some(id) {
            return Err(malformed("MemTotal line names another node"));
        }
        let kib: u64 = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| malformed("MemTotal value is not a number"))?;
        if words.next() != Some("kB") {
            return Err(malformed("MemTotal unit is not kB"));
        }
        return kib
            .checked_mul(1024)
            .ok_or_else(|| malformed("MemTotal too large"));
    }
    Err(malformed("no MemTotal line"))
}

/// Parses a `distance` file: one distance per node, in node order.
fn read_distances(path: &Path, node_count: usize) -> Result<Vec<u32>, TopologyError> {
    let malformed = |reason| TopologyError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let text = read_file(path)?;
    let mut distances = Vec::with_capacity(node_count);
    for word in text.split_whitespace() {
        if distances.len() == node_count {
            return Err(malformed("more distances than nodes"));
        }
        let d = word
            .parse()
            .map_err(|_| malformed("distance is not a number"))?;
        distances.push(d);
    }
    if distances.len() != node_count {
        return Err(malformed("fewer distances than nodes"));
    }
    Ok(distances)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A temporary directory removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static SEQ: AtomicU32 = AtomicU32::new(0);
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("numa-test-{}-{tag}-{seq}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Builds a fake sysfs tree with `nodes` nodes of `cpus_per_node` CPUs each and the
    /// distance matrix the kernel reports for a symmetric machine (10 local, 20/21 remote).
    pub(crate) fn fake_sysfs(tag: &str, nodes: u32, cpus_per_node: u32) -> TempDir {
        let dir = TempDir::new(tag);
        let node_dir = dir.0.join("sys/devices/system/node");
        fs::create_dir_all(&node_dir).unwrap();
        fs::write(node_dir.join("online"), format!("0-{}\n", nodes - 1)).unwrap();
        fs::write(node_dir.join("possible"), format!("0-{}\n", nodes - 1)).unwrap();
        fs::create_dir_all(node_dir.join("power")).unwrap();
        for n in 0..nodes {
            let d = node_dir.join(format!("node{n}"));
            fs::create_dir_all(&d).unwrap();
            let first = n * cpus_per_node;
            let last = first + cpus_per_node - 1;
            fs::write(d.join("cpulist"), format!("{first}-{last}\n")).unwrap();
            fs::write(
                d.join("meminfo"),
                format!(
                    "Node {n} MemTotal:       {} kB\nNode {n} MemFree:        1000 kB\n",
                    (u64::from(n) + 1) * 1_048_576
                ),
            )
            .unwrap();
            let distances: Vec<String> = (0..nodes)
                .map(|m| {
                    let d = match n.abs_diff(m) {
                        0 => 10,
                        1 => 20,
                        _ => 21,
                    };
                    d.to_string()
                })
                .collect();
            fs::write(d.join("distance"), format!("{}\n", distances.join(" "))).unwrap();
        }
        dir
    }

    #[test]
    fn a_malformed_cpulist_names_its_file() {
        let dir = fake_sysfs("badcpulist", 1, 2);
        let file = dir.0.join("sys/devices/system/node/node0/cpulist");
        fs::write(&file, "0-1,\n").unwrap();
        match Topology::from_sysfs(&dir.0) {
            Err(TopologyError::CpuList { path, source }) => {
                assert_eq!(path, file);
                assert!(matches!(source, CpuListError::EmptyItem { .. }));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_one_node_tree() {
        let dir = fake_sysfs("one", 1, 4);
        let topo = Topology::from_sysfs(&dir.0).unwrap();
        assert_eq!(topo.node_count(), 1);
        let n = &topo.nodes()[0];
        assert_eq!(n.id, 0);
        assert_eq!(n.cpus, vec![0, 1, 2, 3]);
        assert_eq!(n.mem_total_bytes, Some(1_048_576 * 1024));
        assert_eq!(n.distances, vec![10]);
    }

    #[test]
    fn reads_two_node_tree() {
        let dir = fake_sysfs("two", 2, 2);
        let topo = Topology::from_sysfs(&dir.0).unwrap();
        assert_eq!(topo.node_count(), 2);
        assert_eq!(topo.node(1).unwrap().cpus, vec![2, 3]);
        assert_eq!(
            topo.node(1).unwrap().mem_total_bytes,
            Some(2 * 1_048_576 * 1024)
        );
        assert_eq!(topo.distance(0, 1), Some(20));
        assert_eq!(topo.distance(1, 1), Some(10));
        assert_eq!(topo.distance(0, 2), None);
        assert_eq!(topo.node_of_cpu(3), Some(1));
        assert_eq!(topo.node_of_cpu(4), None);
    }

    #[test]
    fn reads_four_node_tree_in_id_order() {
        let dir = fake_sysfs("four", 4, 8);
        let topo = Topology::from_sysfs(&dir.0).unwrap();
        let ids: Vec<u32> = topo.nodes().iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![0, 1, 2, 3]);
        assert_eq!(topo.node(3).unwrap().cpus, (24..32).collect::<Vec<_>>());
        assert_eq!(topo.distance(0, 3), Some(21));
        assert_eq!(topo.distance(2, 1), Some(20));
    }

    #[test]
    fn accepts_memory_only_node() {
        let dir = fake_sysfs("memonly", 2, 2);
        fs::write(dir.0.join("sys/devices/system/node/node1/cpulist"), "\n").unwrap();
        let topo = Topology::from_sysfs(&dir.0).unwrap();
        assert!(topo.node(1).unwrap().cpus.is_empty());
    }

    fn error_text(e: &TopologyError) -> String {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    #[test]
    fn malformed_files_are_errors_naming_the_file() {
        let cases: &[(&str, &str, &str)] = &[
            ("node1/cpulist", "0-x\n", "node1/cpulist"),
            ("node1/cpulist", "3-1\n", "ends before it starts"),
            (
                "node0/meminfo",
                "Node 0 MemTotal: lots kB\n",
                "node0/meminfo",
            ),
            ("node0/meminfo", "Node 0 MemFree: 5 kB\n", "no MemTotal"),
            ("node0/meminfo", "Node 1 MemTotal: 5 kB\n", "another node"),
            ("node0/meminfo", "Node 0 MemTotal: 5 MB\n", "unit"),
            ("node1/distance", "20\n", "fewer distances"),
            ("node1/distance", "20 10 10\n", "more distances"),
            ("node1/distance", "20 ten\n", "node1/distance"),
        ];
        for (file, content, needle) in cases {
            let dir = fake_sysfs("bad", 2, 2);
            fs::write(dir.0.join("sys/devices/system/node").join(file), content).unwrap();
            let err = Topology::from_sysfs(&dir.0).unwrap_err();
            let text = error_text(&err);
            assert!(text.contains(needle), "{file} {content:?}: {text}");
            assert!(text.contains(file), "{file} {content:?}: {text}");
        }
    }

    #[test]
    fn missing_node_file_is_an_error_naming_it() {
        let dir = fake_sysfs("missing", 2, 2);
        fs::remove_file(dir.0.join("sys/devices/system/node/node1/distance")).unwrap();
        let err = Topology::from_sysfs(&dir.0).unwrap_err();
        assert!(matches!(err, TopologyError::Io { .. }));
        assert!(err.to_string().contains("node1/distance"), "{err}");
    }

    #[test]
    fn empty_node_dir_is_an_error() {
        let dir = TempDir::new("empty");
        fs::create_dir_all(dir.0.join("sys/devices/system/node/power")).unwrap();
        let err = Topology::from_sysfs(&dir.0).unwrap_err();
        assert!(matches!(err, TopologyError::NoNodes { .. }), "{err}");
    }

    #[test]
    fn missing_node_dir_is_one_node_with_online_cpus() {
        let dir = TempDir::new("nonuma");
        let cpu_dir = dir.0.join("sys/devices/system/cpu");
        fs::create_dir_all(&cpu_dir).unwrap();
        fs::write(cpu_dir.join("online"), "0-5\n").unwrap();
        let topo = Topology::from_sysfs(&dir.0).unwrap();
        assert_eq!(topo, Topology::single_node(vec![0, 1, 2, 3, 4, 5]));
    }

    #[test]
    fn missing_sysfs_is_one_node_with_available_cpus() {
        let dir = TempDir::new("nosys");
        let topo = Topology::from_sysfs(&dir.0).unwrap();
        assert_eq!(topo.node_count(), 1);
        let expected = std::thread::available_parallelism().unwrap().get();
        assert_eq!(topo.nodes()[0].cpus.len(), expected);
    }

    #[test]
    fn malformed_online_file_is_an_error() {
        let dir = TempDir::new("badonline");
        let cpu_dir = dir.0.join("sys/devices/system/cpu");
        fs::create_dir_all(&cpu_dir).unwrap();
        fs::write(cpu_dir.join("online"), "zero\n").unwrap();
        let err = Topology::from_sysfs(&dir.0).unwrap_err();
        assert!(err.to_string().contains("cpu/online"), "{err}");
    }

    #[test]
    fn detects_this_machine() {
        let topo = Topology::detect().unwrap();
        assert!(topo.node_count() >= 1);
        assert!(topo.nodes().iter().any(|n| !n.cpus.is_empty()));
    }
}
