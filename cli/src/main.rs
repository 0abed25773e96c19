//! `tgtctl`: the command-line client over the control plane's REST API.
//!
//! Built out in the CLI issue; this binary holds its place in the workspace.

fn main() {
    eprintln!("tgtctl: not built yet; see the CLI issue");
    std::process::exit(2);
}
