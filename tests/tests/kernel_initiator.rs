//! The Linux kernel's iSCSI initiator (iscsi_tcp driven by open-iscsi's iscsid/iscsiadm)
//! against the real data plane: a Debian 12 guest under QEMU (TCG) in a private network
//! namespace, one guest per case (see `support/kernel_guest.rs` and
//! docs/kernel-initiator.md).
//!
//! The cases exercise what the kernel does its own way: SendTargets discovery (RFC 7143
//! §12.13) and login, the LUN scan with INQUIRY/VPD, READ CAPACITY(16) and MODE SENSE
//! (SBC-3 §5.16, §6.5: block sizes, WCE and DPOFUA), a file system with its flushes and FUA
//! writes, verified random I/O, session recovery after the target dies (RFC 7143 §6.3
//! connection reinstatement after a time-out), unit attentions for a LUN added and a
//! medium grown online (SPC-4 §6.37, SBC-3 §4.11), and dm-multipath across a portal
//! removal.

#[path = "support/kernel_guest.rs"]
mod kernel_guest;
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use kernel_guest::{Guest, Netns, Verdict, HOST_ADDR};
use support::{
    binary, http, poll_until, spawn_dataplane, start_controlplane, wait_in_sync, Daemon, TempDir,
};

/// The iSCSI port inside the namespace; the namespace is private, so the default is free.
const PORT: u16 = 3260;

/// How long a guest may take to boot and log in before its first marker.
const BOOT_LIMIT: Duration = Duration::from_secs(120);

/// The target every case logs in to.
fn iqn(tag: &str) -> String {
    format!("iqn.2026-12.org.example.kernel:{tag}")
}

/// Portals with ids 0.. on `ports` of [`HOST_ADDR`], and the `tpgts` member naming them all
/// in portal group 1.
fn portals_json(ports: &[u16]) -> (Vec<String>, String) {
    let portals = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!(r#"{{"id":{i},"portal":"{HOST_ADDR}:{p}"}}"#))
        .collect();
    let ids: Vec<String> = (0..ports.len()).map(|i| i.to_string()).collect();
    (portals, format!(r#""tpgts":{{"1":[{}]}}"#, ids.join(",")))
}

/// The data plane's config: LUN 1 on a sparse file of `size_bytes` with a `block_size`
/// logical block size, the given portal ports (all in one portal group), and each target
/// of `targets` (its name and extra JSON members such as `"auth":{...}`) exporting it.
fn write_config(
    dir: &Path,
    targets: &[(String, String)],
    size_bytes: u64,
    block_size: u32,
    ports: &[u16],
) {
    let image = dir.join("disk.img");
    let f = std::fs::File::create(&image).expect("create image");
    f.set_len(size_bytes).expect("size image");
    let (portals, tpgts) = portals_json(ports);
    let targets: Vec<String> = targets
        .iter()
        .map(|(name, extra)| format!(r#""{name}":{{{tpgts},"luns":{{"1":1000}}{extra}}}"#))
        .collect();
    let config = format!(
        r#"{{"storages":[{{"deviceID":1000,"path":"{}","online":true,"backendType":"file","blockSize":{block_size}}}],
"iscsiportals":[{}],
"iscsitargets":{{{}}}}}"#,
        image.display(),
        portals.join(","),
        targets.join(","),
    );
    std::fs::write(dir.join("config.json"), config).expect("write config");
}

/// The data plane inside the namespace with `DIR/config.json`; `n` numbers its log and
/// ready file so a restarted one does not read the old ones.
fn start_dataplane(ns: &Netns, dir: &Path, n: u32) -> Daemon {
    let mut cmd = ns.command(&binary("tgt-dataplane"));
    cmd.arg("--config").arg(dir.join("config.json"));
    spawn_dataplane(cmd, dir, n)
}

/// Storage `id`'s document: a file in `dir` of `size_bytes`.
fn storage_json(dir: &Path, id: u64, size_bytes: u64) -> String {
    format!(
        r#"{{"deviceID":{id},"path":"{}","size":{size_bytes}}}"#,
        dir.join(format!("disk-{id}.img")).display()
    )
}

/// Size of every storage a managed case creates.
const MANAGED_SIZE_BYTES: u64 = 128 << 20;

/// One case's surroundings, torn down in this order when dropped (after the guest, which
/// every case declares later): the data plane and control plane, the namespace, the
/// directory, and last the lock that runs guests one at a time.
struct Case {
    name: &'static str,
    tag: &'static str,
    dp: Daemon,
    /// The control plane and its REST address, for cases configured through REST.
    cp: Option<(Daemon, SocketAddr)>,
    ns: Netns,
    dir: TempDir,
    _one: MutexGuard<'static, ()>,
}

impl Case {
    fn prepare(tag: &'static str) -> (MutexGuard<'static, ()>, TempDir, Netns) {
        let one = kernel_guest::serialize();
        (one, TempDir::new(&format!("kernel-{tag}")), Netns::new())
    }

    /// A data plane started from a config file: the case's target with LUN 1 on a file of
    /// `size_bytes` with `block_size` blocks, portals on `ports`.
    fn standalone(
        name: &'static str,
        tag: &'static str,
        size_bytes: u64,
        block_size: u32,
        ports: &[u16],
    ) -> Case {
        let targets = [(iqn(tag), String::new())];
        Self::with_targets(name, tag, &targets, size_bytes, block_size, ports)
    }

    /// [`Case::standalone`] with `targets` (names and extra members) instead of the case's
    /// one target.
    fn with_targets(
        name: &'static str,
        tag: &'static str,
        targets: &[(String, String)],
        size_bytes: u64,
        block_size: u32,
        ports: &[u16],
    ) -> Case {
        let (one, dir, ns) = Self::prepare(tag);
        write_config(dir.path(), targets, size_bytes, block_size, ports);
        let dp = start_dataplane(&ns, dir.path(), 0);
        Case {
            name,
            tag,
            dp,
            cp: None,
            ns,
            dir,
            _one: one,
        }
    }

    /// A data plane in the namespace waiting on `DIR/dp.sock` for a control plane on the
    /// host's loopback (the Unix socket crosses the namespace boundary because the file
    /// system is shared), configured through REST: storages 1000 and `more`, portals on
    /// `ports`, the target with LUN 1 on storage 1000.
    fn managed(name: &'static str, tag: &'static str, ports: &[u16], more: &[u64]) -> Case {
        let (one, dir, ns) = Self::prepare(tag);
        let mut cmd = ns.command(&binary("tgt-dataplane"));
        cmd.arg("--control-socket").arg(dir.path().join("dp.sock"));
        let dp = spawn_dataplane(cmd, dir.path(), 0);
        let cp = start_controlplane(dir.path());
        let mut case = Case {
            name,
            tag,
            dp,
            cp: Some(cp),
            ns,
            dir,
            _one: one,
        };
        for id in std::iter::once(1000).chain(more.iter().copied()) {
            let body = storage_json(case.dir.path(), id, MANAGED_SIZE_BYTES);
            case.rest("POST", "/api/v1/storages", &body, &[201]);
        }
        let (portals, tpgts) = portals_json(ports);
        for p in portals {
            case.rest("POST", "/api/v1/portals", &p, &[201]);
        }
        let target = format!(r#"{{{tpgts},"luns":{{"1":1000}}}}"#);
        case.rest("PUT", &case.target_path(), &target, &[200, 201]);
        case.sync();
        case
    }

    fn iqn(&self) -> String {
        iqn(self.tag)
    }

    fn target_path(&self) -> String {
        format!("/api/v1/targets/{}", self.iqn())
    }

    fn api(&self) -> SocketAddr {
        self.cp.as_ref().expect("a case configured through REST").1
    }

    /// One REST call that must answer with one of `ok` statuses.
    fn rest(&self, method: &str, path: &str, body: &str, ok: &[u16]) {
        let r = http(self.api(), method, path, Some(body));
        assert!(
            ok.contains(&r.status),
            "{}: {method} {path} {body}: {} {}",
            self.name,
            r.status,
            r.body
        );
    }

    /// Waits until the data plane runs the control plane's config.
    fn sync(&mut self) {
        let api = self.api();
        wait_in_sync(api, &mut self.dp);
    }

    fn image(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Boots the guest with `script` as its case script.
    fn boot(&self, script: &str) -> Guest {
        Guest::boot(&self.ns, script, self.dir.path())
    }

    /// Waits until `image` has at least `min_bytes` allocated (fio's writes reached it),
    /// so that what the case does next lands inside the I/O.
    fn wait_allocated(&self, image: &Path, min_bytes: u64, guest: &Guest) {
        use std::os::unix::fs::MetadataExt;
        let allocated = || std::fs::metadata(image).map_or(0, |m| m.blocks() * 512);
        poll_until(Duration::from_secs(120), Duration::from_millis(50), || {
            (allocated() >= min_bytes).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "{}: fio wrote under {min_bytes} bytes in 120 s\n{}",
                self.name,
                guest.report()
            )
        });
    }

    /// Waits for the guest's verdict, prints the case's figures, fails the test with the
    /// guest's report unless it passed and the data plane is still alive.
    fn finish(&mut self, guest: &mut Guest, limit: Duration, what: &str) -> Verdict {
        let v = guest.verdict(limit);
        print_figures(self.name, guest, &v);
        assert!(
            v.ok,
            "{}: {what}: the guest reports: {}\n{}",
            self.name,
            v.reason,
            guest.report()
        );
        assert!(
            self.dp.alive(),
            "{}: data plane died; log:\n{}",
            self.name,
            self.dp.log_text()
        );
        v
    }

    /// Fails the test unless the guest reported `key` as `want`.
    fn expect_value(&self, v: &Verdict, guest: &Guest, key: &str, want: &str) {
        let got = v.values.get(key).map(String::as_str).unwrap_or("<missing>");
        assert_eq!(
            got,
            want,
            "{}: the kernel sees {key} = {got}, expected {want}\n{}",
            self.name,
            guest.report()
        );
    }

    /// Normal-session logins the data plane logged so far.
    fn logins(&self) -> usize {
        self.dp
            .log_text()
            .lines()
            .filter(|l| l.contains("login complete") && l.contains("Normal"))
            .count()
    }
}

/// Shell lines that log in to `iqn` through the portal on `port` after a SendTargets
/// discovery, and wait for the disk `dev` (sda, sdb, ...) to appear.
fn login_script(iqn: &str, port: u16, dev: &str) -> String {
    format!(
        r#"
P={HOST_ADDR}:{port}
iscsiadm -m discovery -t sendtargets -p $P >/tmp/disc 2>&1 || {{ cat /tmp/disc; fail "SendTargets discovery through $P failed"; }}
sed 's/^/TGT-DISCOVERY /' /tmp/disc
grep -q " {iqn}$" /tmp/disc || fail "discovery did not list {iqn}"
iscsiadm -m node -T {iqn} -p $P --login >/tmp/login 2>&1 || {{ cat /tmp/login; fail "login to {iqn} through $P failed"; }}
i=0
while [ ! -b /dev/{dev} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/{dev} ] || fail "no /dev/{dev} 30 s after login"
echo "TGT-LOGGED-IN $(cut -d' ' -f1 /proc/uptime)"
"#
    )
}

/// Shell lines that run one fio job with crc32c verification on `/dev/sda` and fail the
/// case on any error; fio's summary lines are echoed with `TGT-FIO`.
fn fio_script(name: &str, bs: &str, offset: &str, size: &str) -> String {
    format!(
        r#"
fio --name={name} --filename=/dev/sda --direct=1 --ioengine=libaio --iodepth=8 \
    --rw=randwrite --bs={bs} --offset={offset} --size={size} \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --group_reporting >/tmp/fio-{name} 2>&1
rc=$?
grep -E 'err=|WRITE:|READ:|verify' /tmp/fio-{name} | sed 's/^/TGT-FIO {name} /'
[ $rc -eq 0 ] || {{ cat /tmp/fio-{name}; fail "fio {name} exited with $rc"; }}
grep -q ' err= 0' /tmp/fio-{name} || {{ cat /tmp/fio-{name}; fail "fio {name} reported errors"; }}
"#
    )
}

/// A case's fio summary lines, for the test's output (and the figures in the docs).
fn print_figures(case: &str, guest: &Guest, v: &Verdict) {
    let console = guest.console();
    eprintln!("{case}: verdict after {:.1} s", v.elapsed.as_secs_f64());
    for l in console.lines().filter(|l| {
        l.starts_with("TGT-GUEST-READY")
            || l.starts_with("TGT-LOGGED-IN")
            || l.starts_with("TGT-FIO")
            || l.starts_with("TGT-VALUE")
            || l.starts_with("TGT-INFO")
    }) {
        eprintln!("{case}: {l}");
    }
}

/// Case 1: SendTargets discovery, login, the disk's attributes as the data plane advertises
/// them (capacity, 4096-byte blocks, write-back cache, FUA), then ext4 on it: files of known
/// content survive unmount and remount, and `e2fsck -fn` finds nothing.
#[test]
fn discovery_login_disk_attributes_and_ext4() {
    let size_bytes: u64 = 128 << 20;
    let mut case = Case::standalone("case 1", "case1", size_bytes, 4096, &[PORT]);
    let script = format!(
        r#"{login}
value size_512 $(cat /sys/block/sda/size)
value logical_block_size $(cat /sys/block/sda/queue/logical_block_size)
value physical_block_size $(cat /sys/block/sda/queue/physical_block_size)
d=$(ls /sys/class/scsi_disk/ | head -n 1)
value cache_type "$(cat /sys/class/scsi_disk/$d/cache_type)"
value fua "$(cat /sys/class/scsi_disk/$d/FUA)"
value lun "${{d##*:}}"
mkfs.ext4 -q -F /dev/sda >/tmp/mkfs 2>&1 || {{ cat /tmp/mkfs; fail "mkfs.ext4 failed"; }}
mount -t ext4 /dev/sda /mnt || fail "mount after mkfs failed"
mkdir -p /tmp/ref
for i in 1 2 3 4 5; do
  dd if=/dev/urandom of=/tmp/ref/f$i bs=4096 count=$((i * 97)) 2>/dev/null
  cp /tmp/ref/f$i /mnt/f$i || fail "write of f$i failed"
done
sync
umount /mnt || fail "umount failed"
echo 3 >/proc/sys/vm/drop_caches
mount -t ext4 /dev/sda /mnt || fail "remount failed"
for i in 1 2 3 4 5; do cmp /tmp/ref/f$i /mnt/f$i || fail "f$i differs after remount"; done
umount /mnt || fail "second umount failed"
e2fsck -fn /dev/sda >/tmp/fsck 2>&1 || {{ cat /tmp/fsck; fail "e2fsck -fn found problems"; }}
ok
"#,
        login = login_script(&case.iqn(), PORT, "sda")
    );
    let mut guest = case.boot(&script);
    let v = case.finish(
        &mut guest,
        Duration::from_secs(240),
        "discovery, login and ext4 through the kernel initiator",
    );
    for (key, want) in [
        ("size_512", (size_bytes / 512).to_string()),
        ("logical_block_size", "4096".to_string()),
        ("physical_block_size", "4096".to_string()),
        ("cache_type", "write back".to_string()),
        ("fua", "1".to_string()),
        ("lun", "1".to_string()),
    ] {
        case.expect_value(&v, &guest, key, &want);
    }
}

/// Case 2: fio random 4 KiB and 128 KiB writes with crc32c verification, 0 errors.
#[test]
fn fio_crc32c_verify() {
    let mut case = Case::standalone("case 2", "case2", 256 << 20, 512, &[PORT]);
    let script = format!(
        "{}{}{}ok\n",
        login_script(&case.iqn(), PORT, "sda"),
        fio_script("rand4k", "4k", "0", "16m"),
        fio_script("rand128k", "128k", "64m", "96m"),
    );
    let mut guest = case.boot(&script);
    case.finish(
        &mut guest,
        Duration::from_secs(240),
        "fio crc32c verification through the kernel initiator",
    );
}

/// Case 3: the data plane is killed with SIGKILL while fio writes, and restarted on the same
/// portal and image a few seconds later; the kernel logs in again by itself (iscsid's
/// session recovery, RFC 7143 §6.3) and fio completes with 0 verify errors.
#[test]
fn sigkill_and_restart_during_fio() {
    let mut case = Case::standalone("case 3", "case3", 256 << 20, 512, &[PORT]);
    let script = format!(
        r#"{login}
echo TGT-FIO-START
{fio}
dmesg | grep -iE 'conn error|recovery|timed out' | sed 's/^/TGT-INFO /'
dmesg | grep -q 'detected conn error' || fail "the kernel never saw the connection drop"
ok
"#,
        login = login_script(&case.iqn(), PORT, "sda"),
        fio = fio_script("killed", "4k", "0", "48m"),
    );
    let mut guest = case.boot(&script);
    guest.wait_for("TGT-FIO-START", BOOT_LIMIT);
    // Kill only once fio's writes reach the image, so the kill lands inside the I/O.
    case.wait_allocated(&case.image("disk.img"), 4 << 20, &guest);
    let killed_at = Instant::now();
    // SIGKILL (Child::kill) and reap.
    let _ = case.dp.child.kill();
    let _ = case.dp.child.wait();
    // The target stays down for a few seconds: the initiator must notice the dead
    // connection and retry its login, not just resend on the old socket.
    std::thread::sleep(Duration::from_secs(3));
    case.dp = start_dataplane(&case.ns, case.dir.path(), 1);
    eprintln!(
        "case 3: data plane restarted {:.1} s after SIGKILL",
        killed_at.elapsed().as_secs_f64()
    );
    case.finish(
        &mut guest,
        Duration::from_secs(240),
        "fio across a data plane SIGKILL and restart",
    );
}

/// Storage 1000's size after case 4 grows it.
const GROWN_SIZE_BYTES: u64 = 192 << 20;

/// Case 4: a LUN mapped through the REST API while the kernel is logged in raises
/// REPORTED LUNS DATA HAS CHANGED (SPC-4 §6.37 / SAM-5 unit attention 3Fh/0Eh) on the next
/// command; the kernel logs it and, as a udev rule would on its uevent, the guest asks
/// open-iscsi to rescan the session, after which the new disk is there. Then storage 1000
/// is grown through REST: the kernel gets CAPACITY DATA HAS CHANGED (SBC-3 §4.11, 2Ah/09h),
/// and after the device rescan a udev rule would also ask for, sees the new size and
/// writes beyond the old end, in the same session (no new login).
#[test]
fn lun_added_and_storage_grown_through_rest_are_seen_without_relogin() {
    let mut case = Case::managed("case 4", "case4", &[PORT], &[1001]);
    let grown_512 = GROWN_SIZE_BYTES / 512;
    // The last 16 KiB of the grown disk, in 4 KiB blocks.
    let tail_block = GROWN_SIZE_BYTES / 4096 - 4;
    let script = format!(
        r#"{login}
value sessions_before "$(ls /sys/class/iscsi_session | tr '\n' ' ')"
echo TGT-ADD-LUN
{lun_change}
iscsiadm -m session -R >/dev/null || fail "iscsiadm session rescan failed"
i=0
while [ ! -b /dev/sdb ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/sdb ] || fail "no /dev/sdb after the rescan"
value new_size_512 $(cat /sys/block/sdb/size)
value new_lun "$(basename $(readlink /sys/block/sdb/device) | sed 's/.*://')"
dd if=/dev/urandom of=/tmp/blk bs=4096 count=16 2>/dev/null
dd if=/tmp/blk of=/dev/sdb bs=4096 oflag=direct 2>/dev/null || fail "write to the new LUN failed"
dd if=/dev/sdb of=/tmp/back bs=4096 count=16 iflag=direct 2>/dev/null
cmp /tmp/blk /tmp/back || fail "the new LUN returned other data"
echo TGT-GROW
{capacity_change}
echo 1 >/sys/block/sda/device/rescan || fail "rescan of sda failed"
i=0
while [ "$(cat /sys/block/sda/size)" != "{grown_512}" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
value grown_size_512 $(cat /sys/block/sda/size)
dmesg | grep -iE 'capacity change|logical blocks' | sed 's/^/TGT-INFO /'
dd if=/dev/urandom of=/tmp/tail bs=4096 count=4 2>/dev/null
dd if=/tmp/tail of=/dev/sda bs=4096 seek={tail_block} oflag=direct 2>/dev/null || fail "write beyond the old end failed"
dd if=/dev/sda of=/tmp/tail-back bs=4096 skip={tail_block} count=4 iflag=direct 2>/dev/null
cmp /tmp/tail /tmp/tail-back || fail "the grown area returned other data"
value sessions_after "$(ls /sys/class/iscsi_session | tr '\n' ' ')"
ok
"#,
        login = login_script(&case.iqn(), PORT, "sda"),
        lun_change = await_kernel_log(
            "LUN assignments on this target have changed",
            "REPORTED LUNS DATA HAS CHANGED"
        ),
        capacity_change =
            await_kernel_log("Capacity data has changed", "CAPACITY DATA HAS CHANGED"),
    );
    let mut guest = case.boot(&script);
    guest.wait_for("TGT-ADD-LUN", BOOT_LIMIT);
    let lun2 = format!("{}/luns/2", case.target_path());
    case.rest("PUT", &lun2, r#"{"deviceID":1001}"#, &[200, 201]);
    case.sync();
    guest.wait_for("TGT-GROW", Duration::from_secs(120));
    let logins = case.logins();
    let grown = storage_json(case.dir.path(), 1000, GROWN_SIZE_BYTES);
    case.rest("PUT", "/api/v1/storages/1000", &grown, &[200]);
    case.sync();
    let v = case.finish(
        &mut guest,
        Duration::from_secs(180),
        "a LUN added and a storage grown through REST, seen by the kernel",
    );
    case.expect_value(
        &v,
        &guest,
        "new_size_512",
        &(MANAGED_SIZE_BYTES / 512).to_string(),
    );
    case.expect_value(&v, &guest, "new_lun", "2");
    case.expect_value(&v, &guest, "grown_size_512", &grown_512.to_string());
    let before = v.values.get("sessions_before").cloned().unwrap_or_default();
    case.expect_value(&v, &guest, "sessions_after", &before);
    assert_eq!(
        case.logins(),
        logins,
        "case 4: the kernel logged in again after the grow; data plane log:\n{}",
        case.dp.log_text()
    );
    assert_eq!(
        std::fs::metadata(case.image("disk-1000.img"))
            .map(|m| m.len())
            .ok(),
        Some(GROWN_SIZE_BYTES),
        "case 4: the backing file's size"
    );
}

/// Shell lines that read `/dev/sda` until the kernel logs `line` (its report of the unit
/// attention `what`), and copy that line to the console.
fn await_kernel_log(line: &str, what: &str) -> String {
    format!(
        r#"i=0
until dmesg | grep -q '{line}'; do
  [ $i -lt 240 ] || fail "no {what} in 60 s"
  dd if=/dev/sda of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null
  sleep 0.25; i=$((i+1))
done
dmesg | grep '{line}' | sed 's/^/TGT-INFO /'"#
    )
}

/// CHAP secrets of case 5: 16 bytes, above the 12 RFC 7143 §12.1.3 wants, and different.
const CHAP_SECRET: &str = "kernel-secret-16";
const CHAP_TARGET_SECRET: &str = "target-secret-16";
const CHAP_WRONG_SECRET: &str = "wrong-secret-016";

/// Case 5: CHAP (RFC 7143 §12.1.3, RFC 1994) as open-iscsi's iscsid does it, restricted to
/// SHA-256 on both sides (the target offers only `sha256`, the node sets
/// `node.session.auth.chap_algs = SHA256`, RFC 7143 §13.13 CHAP_A 7): one-way CHAP to one
/// target, mutual CHAP to another (the initiator checks the target's answer), then a login
/// with a wrong secret is refused (authentication failure, 0201h) and so is a target that
/// answers mutual CHAP with a secret the initiator does not expect. The refusals come last:
/// the data plane locks a source out after ten failures in a minute.
#[test]
fn chap_one_way_mutual_sha256_and_wrong_secrets() {
    let one_way = iqn("case5-oneway");
    let mutual = iqn("case5-mutual");
    let targets = [
        (
            one_way.clone(),
            format!(
                r#","auth":{{"chap":{{"username":"kernel","secret":"{CHAP_SECRET}","algorithms":["sha256"]}}}}"#
            ),
        ),
        (
            mutual.clone(),
            format!(
                r#","auth":{{"chap":{{"username":"kernel","secret":"{CHAP_SECRET}","mutualUsername":"array","mutualSecret":"{CHAP_TARGET_SECRET}","algorithms":["sha256"]}}}}"#
            ),
        ),
    ];
    let mut case = Case::with_targets("case 5", "case5", &targets, 64 << 20, 512, &[PORT]);
    let script = format!(
        r#"
P={HOST_ADDR}:{PORT}
iscsiadm -m discovery -t sendtargets -p $P >/tmp/disc 2>&1 || {{ cat /tmp/disc; fail "SendTargets discovery through $P failed"; }}
sed 's/^/TGT-DISCOVERY /' /tmp/disc
grep -q " {one_way}$" /tmp/disc || fail "discovery did not list {one_way}"
grep -q " {mutual}$" /tmp/disc || fail "discovery did not list {mutual}"
# auth TARGET SECRET [TARGET-USER TARGET-SECRET]: the node's CHAP settings.
auth() {{
  set_node() {{ iscsiadm -m node -T $1 -p $P -o update -n $2 -v "$3" || fail "iscsiadm update $2"; }}
  set_node $1 node.session.auth.authmethod CHAP
  set_node $1 node.session.auth.chap_algs SHA256
  set_node $1 node.session.auth.username kernel
  set_node $1 node.session.auth.password $2
  if [ -n "$3" ]; then
    set_node $1 node.session.auth.username_in $3
    set_node $1 node.session.auth.password_in $4
  fi
}}
# works TARGET NAME: logs in, writes and reads back a block on the disk, logs out.
works() {{
  iscsiadm -m node -T $1 -p $P --login >/tmp/login 2>&1 || {{ cat /tmp/login; fail "$2 CHAP login to $1 failed"; }}
  i=0
  while [ ! -b /dev/sda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  [ -b /dev/sda ] || fail "no /dev/sda after the $2 CHAP login"
  dd if=/dev/urandom of=/tmp/blk bs=4096 count=4 2>/dev/null
  dd if=/tmp/blk of=/dev/sda bs=4096 oflag=direct 2>/dev/null || fail "write after the $2 CHAP login failed"
  dd if=/dev/sda of=/tmp/back bs=4096 count=4 iflag=direct 2>/dev/null
  cmp /tmp/blk /tmp/back || fail "read-back after the $2 CHAP login differs"
  value $2 ok
  iscsiadm -m node -T $1 -p $P --logout >/dev/null 2>&1 || fail "logout from $1 failed"
  i=0
  while [ -b /dev/sda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
}}
# refused TARGET NAME: the login must fail; its message is reported.
refused() {{
  if iscsiadm -m node -T $1 -p $P --login >/tmp/login 2>&1; then
    fail "the $2 login to $1 succeeded"
  fi
  sed 's/^/TGT-INFO /' /tmp/login
  value $2 "$(sed -n 's/.*reported error ([0-9]* - \(.*\))$/\1/p' /tmp/login | head -n 1)"
}}
auth {one_way} {CHAP_SECRET}
works {one_way} one_way
auth {mutual} {CHAP_SECRET} array {CHAP_TARGET_SECRET}
works {mutual} mutual
auth {one_way} {CHAP_WRONG_SECRET}
refused {one_way} wrong_secret
auth {mutual} {CHAP_SECRET} array {CHAP_WRONG_SECRET}
refused {mutual} wrong_target_secret
ok
"#
    );
    let mut guest = case.boot(&script);
    let v = case.finish(
        &mut guest,
        Duration::from_secs(180),
        "CHAP logins through the kernel initiator",
    );
    case.expect_value(&v, &guest, "one_way", "ok");
    case.expect_value(&v, &guest, "mutual", "ok");
    case.expect_value(
        &v,
        &guest,
        "wrong_secret",
        "iSCSI login failed due to authorization failure",
    );
    let refused = v.values.get("wrong_target_secret").map(String::as_str);
    assert!(
        refused.is_some_and(|r| !r.is_empty()),
        "case 5: the initiator accepted a target with the wrong mutual secret: {refused:?}\n{}",
        guest.report()
    );
}

/// Case 6: two portals of one target, one session through each, dm-multipath (a
/// round-robin table built with dmsetup) on top; one portal is removed through REST while
/// fio writes, the data plane closes the connection accepted on it, dm-multipath fails that
/// path and fio finishes with 0 verify errors on the remaining one.
#[test]
fn multipath_survives_portal_removal() {
    let mut case = Case::managed("case 6", "case6", &[PORT, PORT + 1], &[]);
    let t = case.iqn();
    let script = format!(
        r#"
iscsiadm -m discovery -t sendtargets -p {HOST_ADDR}:{PORT} >/tmp/disc 2>&1 || {{ cat /tmp/disc; fail "discovery failed"; }}
sed 's/^/TGT-DISCOVERY /' /tmp/disc
[ $(grep -c " {t}$" /tmp/disc) -eq 2 ] || fail "discovery did not list both portals"
# A failed path must fail its commands within seconds so dm-multipath retries them
# on the other path instead of waiting out the default 120 s replacement timeout.
iscsiadm -m node -T {t} -o update -n node.session.timeo.replacement_timeout -v 5 || fail "iscsiadm update"
iscsiadm -m node -T {t} --login >/tmp/login 2>&1 || {{ cat /tmp/login; fail "login failed"; }}
i=0
while [ ! -b /dev/sdb ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/sdb ] || fail "no second path (sdb) after login"
a=$(cat /sys/block/sda/device/wwid); b=$(cat /sys/block/sdb/device/wwid)
[ "$a" = "$b" ] || fail "the two paths show different WWIDs: $a / $b"
value wwid "$a"
n=$(cat /sys/block/sda/size)
dmsetup create --noudevsync mpath --table "0 $n multipath 0 0 1 1 round-robin 0 2 1 $(cat /sys/block/sda/dev) 100 $(cat /sys/block/sdb/dev) 100" || fail "dmsetup create"
[ -b /dev/dm-0 ] || fail "no /dev/dm-0"
dmsetup status mpath | sed 's/^/TGT-INFO before /'
echo TGT-FIO-START
fio --name=mpath --filename=/dev/dm-0 --direct=1 --ioengine=libaio --iodepth=8 \
    --rw=randwrite --bs=4k --size=48m \
    --verify=crc32c --do_verify=1 --verify_fatal=1 >/tmp/fio 2>&1
rc=$?
grep -E 'err=|WRITE:|READ:|verify' /tmp/fio | sed 's/^/TGT-FIO mpath /'
dmsetup status mpath | sed 's/^/TGT-INFO after /'
iscsiadm -m session 2>&1 | sed 's/^/TGT-INFO session /'
dmesg | grep -iE 'conn error' | sed 's/^/TGT-INFO /'
[ $rc -eq 0 ] || {{ cat /tmp/fio; fail "fio on dm-multipath exited with $rc"; }}
grep -q ' err= 0' /tmp/fio || {{ cat /tmp/fio; fail "fio on dm-multipath reported errors"; }}
dmsetup status mpath | grep -q ' F ' || fail "no path failed: the removed portal's path stayed in use"
ok
"#
    );
    let mut guest = case.boot(&script);
    guest.wait_for("TGT-FIO-START", BOOT_LIMIT);
    case.wait_allocated(&case.image("disk-1000.img"), 4 << 20, &guest);
    // The second portal leaves the target's portal group, then the configuration; the
    // data plane closes the connection it accepted, so the path's re-login is refused and,
    // after the 5 s replacement timeout, dm-multipath fails the path and sends its I/O
    // down the other one.
    let target = r#"{"tpgts":{"1":[0]},"luns":{"1":1000}}"#;
    case.rest("PUT", &case.target_path(), target, &[200, 201]);
    case.rest("DELETE", "/api/v1/portals/1", "", &[200, 204]);
    case.sync();
    eprintln!("case 6: portal {HOST_ADDR}:{} removed during fio", PORT + 1);
    case.finish(
        &mut guest,
        Duration::from_secs(240),
        "dm-multipath I/O across a portal removal",
    );
    let log = case.dp.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("portal removed: its connections closed")
                && l.contains("connections=1")),
        "case 6: the data plane did not close the removed portal's connection; log:\n{log}"
    );
}
