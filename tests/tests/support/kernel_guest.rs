//! A Linux guest with the kernel's iSCSI initiator (iscsi_tcp + open-iscsi) for the
//! kernel-initiator system tests.
//!
//! Everything the guest runs comes from Debian 12 packages fetched with `apt-get download`
//! and unpacked with `dpkg-deb -x` into `target/kernel-guest-cache/<key>/`, where `<key>`
//! hashes the exact `.deb` file names apt resolves (so a new package version rebuilds the
//! cache) and the builder's own inputs (module list, init script, [`BUILD_REVISION`]).
//! QEMU runs from the same unpacked tree, because the machine's preinstalled `qemu-utils`
//! conflicts with Debian 12's `qemu-system-x86`.
//!
//! The guest boots with `-kernel`/`-initrd`: a base initramfs (busybox, the modules in
//! dependency order, iscsid/iscsiadm, e2fsprogs, fio, dmsetup and their shared libraries)
//! and a small second archive holding the case's script, concatenated (the kernel unpacks
//! concatenated newc archives in order). Its only network is a tap device inside a network
//! namespace the test creates ([`Netns`]); the data plane listens in the same namespace.
//! The guest reports on its serial console with `TGT-` markers that [`Guest`] waits for.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::support::{poll_until, strip_escapes, workspace_root};

/// Bump when the way the cache is built changes in a way the hashed inputs do not show.
const BUILD_REVISION: u32 = 1;

/// The target-side address of the namespace's tap device (the data plane's portal).
pub const HOST_ADDR: &str = "10.77.0.1";
/// The guest's address; it exists only inside the test's namespace.
pub const GUEST_ADDR: &str = "10.77.0.2";

/// Debian 12 packages the guest and QEMU are built from. The libraries of QEMU, fio and
/// open-iscsi that the host does not have are listed explicitly (found with `ldd`); the
/// rest (libc, libaio, ...) are copied from the host, a Debian 12 system with the same ABI.
const PACKAGES: &[&str] = &[
    // The guest kernel: the cloud flavour has iscsi_tcp, dm-multipath and virtio_net.
    "linux-image-6.1.0-57-cloud-amd64",
    "busybox-static",
    "open-iscsi",
    "libopeniscsiusr",
    "libisns0",
    "e2fsprogs",
    "dmsetup",
    "libdevmapper1.02.1",
    "fio",
    // fio is linked against the Ceph, Gluster, NBD and PMEM engines.
    "libgfapi0",
    "libgfrpc0",
    "libgfxdr0",
    "libglusterfs0",
    "libnbd0",
    "librados2",
    "librbd1",
    "libpmem1",
    "libpmemblk1",
    "libndctl6",
    "libdaxctl1",
    "libboost-thread1.74.0",
    "libfmt9",
    // QEMU and its firmware.
    "qemu-system-x86",
    "qemu-system-common",
    "qemu-system-data",
    "seabios",
    "ipxe-qemu",
    "libcapstone4",
    "libfdt1",
    "libslirp0",
    "libvdeplug2",
];

/// Kernel modules the guest loads (their dependencies are added from `.modinfo`).
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "sd_mod",
    "iscsi_tcp",
    "dm_multipath",
    "dm_round_robin",
];

/// Guest programs: (path inside the unpacked packages, path in the guest).
const PROGRAMS: &[(&str, &str)] = &[
    ("sbin/iscsid", "/sbin/iscsid"),
    ("sbin/iscsiadm", "/sbin/iscsiadm"),
    ("sbin/mke2fs", "/sbin/mkfs.ext4"),
    ("sbin/e2fsck", "/sbin/e2fsck"),
    ("sbin/dmsetup", "/sbin/dmsetup"),
    ("usr/bin/fio", "/usr/bin/fio"),
];

/// The guest's PID 1. It prepares the system, then sources `/case.sh` (the second
/// archive), which ends with `ok` or `fail <reason>`.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /run/lock/iscsi /var/lib/iscsi /etc/iscsi/nodes /etc/iscsi/send_targets /mnt
# Prints the kernel's lines about disks, SCSI, iSCSI and device-mapper for the test.
dmesg_dump() {
  dmesg | grep -iE 'sd[a-z]|scsi|iscsi|connection|session|i/o error|blk_update|device-mapper|multipath|ext4' | sed 's/^/TGT-DMESG /'
}
fail() {
  echo "TGT-CASE-FAIL $*"
  dmesg_dump
  echo TGT-END
  poweroff -f
}
ok() {
  echo TGT-CASE-OK
  echo TGT-END
  poweroff -f
}
value() { echo "TGT-VALUE $1=$2"; }
for m in $(cat /etc/tgt-modules); do
  insmod "/lib/modules/$m" || fail "insmod $m"
done
ip link set lo up
ip link set eth0 up || fail "no eth0"
ip addr add GUEST_ADDR/24 dev eth0
iscsid || fail "iscsid did not start"
echo "TGT-GUEST-READY $(cut -d' ' -f1 /proc/uptime)"
. /case.sh
fail "case script returned without a verdict"
"#;

/// The unpacked packages and the built base initramfs.
pub struct GuestImage {
    pub root: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `.deb` file names apt would download for [`PACKAGES`], as the cache key's input.
fn resolved_debs() -> Result<Vec<String>, String> {
    let print = || {
        run(Command::new("apt-get")
            .args(["download", "--print-uris"])
            .args(PACKAGES))
    };
    let text = match print() {
        Ok(t) => t,
        Err(_) => {
            // A fresh machine may have no package lists yet.
            run(Command::new("apt-get").args(["update", "-qq"]))?;
            print()?
        }
    };
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    names.sort();
    if names.len() != PACKAGES.len() {
        return Err(format!(
            "apt-get resolved {} of {} packages: {names:?}",
            names.len(),
            PACKAGES.len()
        ));
    }
    Ok(names)
}

impl GuestImage {
    /// The cached guest, built on first use in this process (and on disk once per input).
    pub fn get() -> &'static GuestImage {
        static IMAGE: OnceLock<GuestImage> = OnceLock::new();
        IMAGE.get_or_init(|| match Self::build() {
            Ok(g) => g,
            Err(e) => panic!("cannot build the kernel-initiator guest: {e}"),
        })
    }

    fn build() -> Result<GuestImage, String> {
        let debs = resolved_debs()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (BUILD_REVISION, &debs, MODULES, PROGRAMS, INIT).hash(&mut h);
        let cache = workspace_root().join("target").join("kernel-guest-cache");
        let dir = cache.join(format!("{:016x}", h.finish()));
        let done = dir.join("done");
        if !done.exists() {
            let _ = std::fs::remove_dir_all(&dir);
            let tmp = cache.join(format!("building-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(tmp.join("debs")).map_err(|e| e.to_string())?;
            Self::populate(&tmp)?;
            std::fs::write(tmp.join("done"), debs.join("\n")).map_err(|e| e.to_string())?;
            if let Err(e) = std::fs::rename(&tmp, &dir) {
                // Another test process finished the same key first.
                let _ = std::fs::remove_dir_all(&tmp);
                if !done.exists() {
                    return Err(format!("cannot move the guest cache into place: {e}"));
                }
            }
        }
        let root = dir.join("root");
        let kernel = find_kernel(&root)?;
        Ok(GuestImage {
            root,
            kernel,
            initrd: dir.join("initrd.cpio"),
        })
    }

    fn populate(dir: &Path) -> Result<(), String> {
        let debs = dir.join("debs");
        run(Command::new("apt-get")
            .current_dir(&debs)
            .args(["download", "-qq"])
            .args(PACKAGES))?;
        let root = dir.join("root");
        for e in std::fs::read_dir(&debs).map_err(|e| e.to_string())? {
            let p = e.map_err(|e| e.to_string())?.path();
            run(Command::new("dpkg-deb").arg("-x").arg(&p).arg(&root))?;
        }
        let kernel = find_kernel(&root)?;
        let version = kernel
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .ok_or("kernel file name")?
            .to_string();
        let mut cpio = Cpio::default();
        for d in [
            "bin", "sbin", "usr", "usr/bin", "usr/sbin", "lib", "lib64", "etc", "proc", "sys",
            "dev", "run", "var", "var/lib", "tmp",
        ] {
            cpio.dir(d);
        }
        cpio.file(
            "init",
            INIT.replace("GUEST_ADDR", GUEST_ADDR).as_bytes(),
            0o755,
        );
        cpio.file("bin/busybox", &read(&root.join("bin/busybox"))?, 0o755);
        cpio.file(
            "etc/iscsi/initiatorname.iscsi",
            b"InitiatorName=iqn.2026-12.org.example.kernel-guest:initiator\n",
            0o644,
        );
        cpio.file("etc/iscsi/iscsid.conf", ISCSID_CONF.as_bytes(), 0o644);
        cpio.file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n", 0o644);
        cpio.file("etc/group", b"root:x:0:\n", 0o644);

        // Modules in dependency order.
        let mod_root = root.join("lib/modules").join(&version);
        let mut index = HashMap::new();
        index_modules(&mod_root.join("kernel"), &mut index)?;
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for m in MODULES {
            module_order(m, &index, &mut seen, &mut order)?;
        }
        let mut list = String::new();
        for name in &order {
            let path = &index[name];
            let file = format!("{name}.ko");
            cpio.file(&format!("lib/modules/{file}"), &read(path)?, 0o644);
            list.push_str(&file);
            list.push('\n');
        }
        cpio.file("etc/tgt-modules", list.as_bytes(), 0o644);

        // Programs and the shared libraries they load.
        let lib_path = library_path(&root);
        let mut libs = BTreeMap::new();
        for (src, dst) in PROGRAMS {
            let p = root.join(src);
            cpio.file(dst.trim_start_matches('/'), &read(&p)?, 0o755);
            for (name, path) in ldd(&p, &lib_path)? {
                libs.insert(name, path);
            }
        }
        for (name, path) in &libs {
            let dst = if name.starts_with("ld-linux") {
                format!("lib64/{name}")
            } else {
                format!("lib/x86_64-linux-gnu/{name}")
            };
            cpio.file(&dst, &read(path)?, 0o755);
        }
        let out = cpio.finish();
        std::fs::write(dir.join("initrd.cpio"), out).map_err(|e| e.to_string())?;
        // The .debs are not needed any more; the unpacked tree holds QEMU and the kernel.
        let _ = std::fs::remove_dir_all(&debs);
        Ok(())
    }

    /// `LD_LIBRARY_PATH` that lets the unpacked QEMU find the unpacked libraries.
    pub fn qemu_library_path(&self) -> String {
        library_path(&self.root)
    }
}

/// iscsid defaults for the guest: short NOP-Out pings so a dead target is noticed within
/// seconds, and a replacement timeout long enough for case 3's restart.
const ISCSID_CONF: &str = "\
node.startup = manual
node.session.timeo.replacement_timeout = 60
node.conn[0].timeo.noop_out_interval = 2
node.conn[0].timeo.noop_out_timeout = 4
node.conn[0].timeo.login_timeout = 10
node.session.initial_login_retry_max = 4
";

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()))
}

fn find_kernel(root: &Path) -> Result<PathBuf, String> {
    let boot = root.join("boot");
    std::fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("no vmlinuz in {}", boot.display()))
}

fn library_path(root: &Path) -> String {
    [
        "usr/lib/x86_64-linux-gnu",
        "lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu/ceph",
        "lib",
    ]
    .iter()
    .map(|d| root.join(d).display().to_string())
    .collect::<Vec<_>>()
    .join(":")
}

/// Module name (with `_`) -> `.ko` path, for every module under `dir`.
fn index_modules(dir: &Path, index: &mut HashMap<String, PathBuf>) -> Result<(), String> {
    for e in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let p = e.path();
        if p.is_dir() {
            index_modules(&p, index)?;
        } else if let Some(stem) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            index.insert(stem.replace('-', "_"), p);
        }
    }
    Ok(())
}

/// The `depends=` list of a module's `.modinfo` section.
fn module_depends(path: &Path) -> Result<Vec<String>, String> {
    let bytes = read(path)?;
    let key = b"depends=";
    let Some(at) = bytes.windows(key.len()).position(|w| w == key) else {
        return Ok(Vec::new());
    };
    let rest = &bytes[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Ok(String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect())
}

fn module_order(
    name: &str,
    index: &HashMap<String, PathBuf>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) -> Result<(), String> {
    let name = name.replace('-', "_");
    if !seen.insert(name.clone()) {
        return Ok(());
    }
    let path = index
        .get(&name)
        .ok_or_else(|| format!("module {name} not in the guest kernel package"))?;
    for dep in module_depends(path)? {
        module_order(&dep, index, seen, order)?;
    }
    order.push(name);
    Ok(())
}

/// (soname, resolved file) of every library `bin` loads, the dynamic loader included.
fn ldd(bin: &Path, lib_path: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let text = run(Command::new("ldd")
        .arg(bin)
        .env("LD_LIBRARY_PATH", lib_path))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            return Err(format!(
                "{}: {line} (add its package to PACKAGES)",
                bin.display()
            ));
        }
        if let Some((name, rest)) = line.split_once(" => ") {
            if let Some(path) = rest
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
            {
                out.push((name.to_string(), PathBuf::from(path)));
            }
        } else if let Some(path) = line
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            let name = Path::new(path)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            out.push((name, PathBuf::from(path)));
        }
    }
    Ok(out)
}

/// A newc ("070701") cpio archive, the format the kernel unpacks as an initramfs.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let size = u32::try_from(data.len()).expect("initramfs member under 4 GiB");
        let header = format!(
            "070701{:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{size:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            self.ino,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// A directory (and its parents), once.
    pub fn dir(&mut self, name: &str) {
        let mut path = String::new();
        for part in name.split('/') {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            if self.dirs.insert(path.clone()) {
                let p = path.clone();
                self.entry(&p, 0o040_755, &[]);
            }
        }
    }

    /// A regular file, its directories created first.
    pub fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent);
        }
        self.entry(name, 0o100_000 | perm, data);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

/// Runs `ip ARGS` (iproute2, which the README test command installs) and fails the test
/// with its error output unless it succeeds.
fn ip_command(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (the README test command installs iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with a tap device `tap0` holding [`HOST_ADDR`]; removed on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tgtk-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns { name };
        ip_command(&["netns", "add", &ns.name]);
        let ip = |args: &[&str]| {
            ip_command(&[&["netns", "exec", &ns.name, "ip"], args].concat());
        };
        ip(&["link", "set", "lo", "up"]);
        ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
        ip(&["addr", "add", &format!("{HOST_ADDR}/24"), "dev", "tap0"]);
        ip(&["link", "set", "tap0", "up"]);
        ns
    }

    /// A command that runs `program` inside the namespace (`ip netns exec` execs it, so
    /// the child's PID is the program's).
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Guests run one at a time: two TCG guests on two shared cores only slow each other down
/// and make every timeout less meaningful.
pub fn serialize() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running guest: QEMU under TCG in the namespace, its serial console collected.
pub struct Guest {
    child: Child,
    serial: Arc<Mutex<String>>,
    pub started: Instant,
    dir: PathBuf,
}

/// What the guest's case script ended with.
pub struct Verdict {
    pub ok: bool,
    pub reason: String,
    pub values: HashMap<String, String>,
    pub dmesg: Vec<String>,
    pub elapsed: Duration,
}

impl Guest {
    /// Boots the guest in `ns` with `script` as its `/case.sh`; `dir` holds the per-case
    /// initrd.
    pub fn boot(ns: &Netns, script: &str, dir: &Path) -> Guest {
        let image = GuestImage::get();
        let mut cpio = Cpio::default();
        cpio.file("case.sh", script.as_bytes(), 0o755);
        let mut initrd = std::fs::read(&image.initrd).expect("read the cached initramfs");
        initrd.extend_from_slice(&cpio.finish());
        let initrd_path = dir.join("initrd.cpio");
        std::fs::write(&initrd_path, initrd).expect("write the case's initramfs");
        let qemu = image.root.join("usr/bin/qemu-system-x86_64");
        let mut cmd = ns.command(&qemu);
        cmd.env("LD_LIBRARY_PATH", image.qemu_library_path())
            .arg("-L")
            .arg(image.root.join("usr/share/seabios"))
            .arg("-L")
            .arg(image.root.join("usr/share/qemu"))
            .args([
                "-accel",
                "tcg",
                "-m",
                "1024",
                "-smp",
                "1",
                "-nographic",
                "-no-reboot",
                "-nodefaults",
                "-serial",
                "stdio",
                "-netdev",
                "tap,id=n0,ifname=tap0,script=no,downscript=no",
                "-device",
                "virtio-net-pci,netdev=n0,romfile=",
                "-kernel",
            ])
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&initrd_path)
            .args(["-append", "console=ttyS0 quiet panic=-1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn qemu-system-x86_64");
        let serial = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let serial = Arc::clone(&serial);
            let log = dir.join("serial.log");
            std::thread::spawn(move || {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .ok();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(f) = file.as_mut() {
                        let _ = writeln!(f, "{line}");
                    }
                    let mut s = serial.lock().unwrap_or_else(|p| p.into_inner());
                    s.push_str(&strip_escapes(line.trim_end_matches('\r')));
                    s.push('\n');
                }
            });
        }
        Guest {
            child,
            serial,
            started: Instant::now(),
            dir: dir.to_path_buf(),
        }
    }

    /// The serial console so far.
    pub fn console(&self) -> String {
        self.serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn tail(&self) -> String {
        let c = self.console();
        let lines: Vec<&str> = c.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Waits until a console line starts with `marker` and returns the line; fails the
    /// test with the console's tail when the guest fails, ends or `limit` passes first.
    pub fn wait_for(&mut self, marker: &str, limit: Duration) -> String {
        self.wait_line(&[marker], limit)
    }

    /// Waits for the first console line starting with one of `markers`. A case failure
    /// (`TGT-CASE-FAIL`) that is not among them fails the test with the guest's report, as
    /// do the guest ending and `limit` passing.
    fn wait_line(&mut self, markers: &[&str], limit: Duration) -> String {
        poll_until(limit, Duration::from_millis(50), || {
            let console = self.console();
            if let Some(l) = console
                .lines()
                .find(|l| markers.iter().any(|m| l.starts_with(m)))
            {
                return Some(l.to_string());
            }
            if let Some(l) = console.lines().find(|l| l.starts_with("TGT-CASE-FAIL")) {
                // Let the dmesg dump arrive before reporting.
                self.wait_end(Duration::from_secs(10));
                panic!(
                    "guest failed while waiting for {markers:?}: {l}\n{}",
                    self.report()
                );
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            assert!(
                !exited,
                "guest exited before {markers:?}; console tail:\n{}",
                self.tail()
            );
            None
        })
        .unwrap_or_else(|| {
            panic!(
                "no {markers:?} from the guest in {limit:?}; console tail:\n{}",
                self.tail()
            )
        })
    }

    /// Waits (at most `limit`) until the guest has printed its last marker or exited.
    fn wait_end(&mut self, limit: Duration) {
        poll_until(limit, Duration::from_millis(50), || {
            let ended =
                self.console().contains("TGT-END") || matches!(self.child.try_wait(), Ok(Some(_)));
            ended.then_some(())
        });
    }

    /// The guest's dmesg lines and the console's tail, for a failure message.
    pub fn report(&self) -> String {
        let c = self.console();
        let dmesg: Vec<&str> = c
            .lines()
            .filter_map(|l| l.strip_prefix("TGT-DMESG "))
            .collect();
        format!(
            "guest dmesg (sd/scsi/iscsi):\n{}\nconsole tail:\n{}\n(full console: {})",
            dmesg.join("\n"),
            self.tail(),
            self.dir.join("serial.log").display()
        )
    }

    /// Waits for the case's verdict (`TGT-CASE-OK` or `TGT-CASE-FAIL`).
    pub fn verdict(&mut self, limit: Duration) -> Verdict {
        let line = self.wait_line(&["TGT-CASE-OK", "TGT-CASE-FAIL"], limit);
        self.wait_end(Duration::from_secs(10));
        let console = self.console();
        let values = console
            .lines()
            .filter_map(|l| l.strip_prefix("TGT-VALUE "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Verdict {
            ok: line.starts_with("TGT-CASE-OK"),
            reason: line
                .strip_prefix("TGT-CASE-FAIL")
                .unwrap_or_default()
                .trim()
                .to_string(),
            values,
            dmesg: console
                .lines()
                .filter_map(|l| l.strip_prefix("TGT-DMESG "))
                .map(str::to_string)
                .collect(),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
