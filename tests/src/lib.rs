//! Test support for the system tests: the project's own iSCSI initiator
//! ([`initiator`], RFC 7143), written independently of the target's codec so the two check each
//! other, and a verified-load driver ([`load`]) built on it that is the acceptance test of a
//! target's data path. [`layering`] checks the workspace's sources against the layering
//! rules of `docs/ARCHITECTURE.md`; [`conformance`] judges a libiscsi `iscsi-test-cu` run;
//! [`xcopy`] drives EXTENDED COPY and decodes the Third-party Copy VPD page.

pub mod conformance;
pub mod initiator;
pub mod layering;
pub mod load;
pub mod xcopy;

pub use load::{verified_load, LoadOptions, LoadReport};
