//! `--demo`: a ready-to-try target on a sparse file in a local state directory.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The demo target's name.
pub const DEMO_IQN: &str = "iqn.2026-01.io.github.tgt-rs:demo";

const DEMO_SIZE_BYTES: u64 = 1 << 30;

/// Creates (first run) or reuses the demo image and writes the demo config; returns its path.
pub fn prepare(state_dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
    let state_dir = state_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", state_dir.display()))?;
    let image = state_dir.join("demo.img");
    if !image.exists() {
        let f = std::fs::File::create(&image)
            .with_context(|| format!("cannot create {}", image.display()))?;
        f.set_len(DEMO_SIZE_BYTES)
            .with_context(|| format!("cannot size {}", image.display()))?;
    }
    // The standard iSCSI port if it is free, else any free port (printed once listening).
    let port = match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 3260))) {
        Ok(_) => 3260,
        Err(_) => 0,
    };
    let config = format!(
        r#"{{
  "storages": [{{"deviceID": 1, "path": "{}", "online": true, "backendType": "file"}}],
  "iscsiportals": [{{"id": 0, "portal": "127.0.0.1:{port}"}}],
  "iscsitargets": {{"{DEMO_IQN}": {{"tpgts": {{"1": [0]}}, "luns": {{"1": 1}}}}}}
}}
"#,
        image.display()
    );
    let path = state_dir.join("demo-config.json");
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Prints what to run next once the portal listens.
pub fn banner(portals: &[(u16, SocketAddr)]) {
    for (_, addr) in portals {
        println!("tgt demo target is up");
        println!("  portal : {addr}");
        println!("  target : {DEMO_IQN} (LUN 1, 1 GiB sparse file)");
        println!("next:");
        println!("  iscsi-ls -s iscsi://{addr}");
        println!("  iscsi-inq iscsi://{addr}/{DEMO_IQN}/1");
        println!("  on a Linux host with open-iscsi:");
        println!("    iscsiadm -m discovery -t sendtargets -p {addr}");
        println!("    iscsiadm -m node -T {DEMO_IQN} -p {addr} --login");
        println!("Ctrl-C stops it.");
    }
}
