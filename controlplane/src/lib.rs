//! The control plane: REST API, config persistence and the push to the data plane.
//!
//! Built out in the control-plane issue; this crate holds its place in the workspace.
