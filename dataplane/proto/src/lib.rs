//! Shared configuration model, its validation and the control-socket messages of the
//! iSCSI target.
//!
//! The data plane owns this crate because it is the consumer of the config; the control
//! plane and the CLI depend on it so that no config struct is ever duplicated.
//!
//! * [`Config`] is the gotgt-style JSON document exactly as written by an operator or sent
//!   over the control socket. It round-trips through serde unchanged (absent optional keys
//!   stay absent). The examples of gotgt's "Performance Optimizations" document load as-is.
//! * [`Config::validate`] checks every cross-reference and bound, collects *all* problems
//!   into a [`ValidationError`] (one [`FieldError`] per problem, each naming the JSON path
//!   of the offending key), and is the only way to obtain a [`ValidConfig`].
//! * [`ValidConfig`] exposes typed, resolved values: portals as [`std::net::SocketAddr`],
//!   LUN and TPG numbers as integers, effective per-storage settings with the
//!   `performance` section's defaults applied.
//! * [`is_valid_iscsi_name`] / [`check_iscsi_name`] implement the RFC 7143 §4.2.7 name
//!   rules and are also used by the data plane for initiator names.
//! * [`socket`] holds the control-socket `Request` / `Response` enums and the frame codec.
//! * [`api`] holds the REST documents that are not config (status, dry runs, problem
//!   details), so the control plane and `tgtctl` share one definition of each.
//! * [`Config::references`] and its lookups say which target still uses a storage or a
//!   portal, the check the control plane makes before deleting one.
//!
//! The crate is pure: it performs no I/O, so validation cannot check that a backing file
//! exists or that a portal address can be bound. The data plane checks both when it
//! applies a config and answers with a typed [`socket::Refusal`].
//!
//! JSON parsing is left to callers (`serde_json::from_str::<Config>`), so the crate depends
//! only on `serde` and `thiserror`. The optional `openapi` feature derives
//! `utoipa::ToSchema` on the config and socket types; every public field's doc comment
//! becomes its OpenAPI description.

#![deny(missing_docs)]

pub mod api;
mod cidr;
mod config;
mod cpu_list;
mod name;
mod refs;
pub mod socket;
mod validate;

pub use cidr::{Cidr, CidrError};
pub use config::{
    Acl, Alua, AluaPeerGroup, AluaState, Auth, BackendType, Chap, ChapAlgorithmName, Config,
    Discovery, Performance, Portal, Storage, Target, ALUA_ID_MIN, ALUA_PEER_GROUPS_MAX,
    BLOCK_SIZE_BYTES_DEFAULT, CPU_INDEX_MAX, IO_URING_QUEUE_DEPTH_DEFAULT,
    IO_URING_QUEUE_DEPTH_MAX, ISCSI_PORT_DEFAULT, LUN_MAX, NUMA_BUFFER_POOL_SIZE_DEFAULT,
    NUMA_BUFFER_POOL_SIZE_MAX, NUMA_BUFFER_SIZE_BYTES_DEFAULT, NUMA_BUFFER_SIZE_BYTES_MAX,
    NUMA_BUFFER_SIZE_BYTES_MIN, NUMA_NODE_MAX, WORKER_THREADS_MAX,
};
pub use cpu_list::{parse_kernel_cpu_list, CpuList, CpuListError};
pub use name::{check_iscsi_name, is_valid_iscsi_name, IscsiNameError, ISCSI_NAME_BYTES_MAX};
pub use refs::Use;
pub use validate::{
    FieldError, ValidAccess, ValidAlua, ValidChap, ValidConfig, ValidPerformance, ValidPortal,
    ValidStorage, ValidTarget, ValidationError, CHAP_SECRET_BYTES_MAX,
    CHAP_SECRET_BYTES_RECOMMENDED_MIN,
};
