//! The Linux kernel's iSCSI initiator (iscsi_tcp driven by open-iscsi's iscsid/iscsiadm)
//! against the real data plane: a Debian 12 guest under QEMU (TCG) in a private network
//! namespace, one guest per case (see `support/kernel_guest.rs` and
//! docs/kernel-initiator.md).
//!
//! The cases exercise what the kernel does its own way: SendTargets discovery (RFC 7143
//! §12.13) and login, the LUN scan with INQUIRY/VPD, READ CAPACITY(16) and MODE SENSE
//! (SBC-3 §5.16, §6.5: block sizes, WCE and DPOFUA), a file system with its flushes and FUA
//! writes, verified random I/O, and session recovery after the target dies (RFC 7143 §6.3
//! connection reinstatement after a time-out).

#[path = "support/kernel_guest.rs"]
mod kernel_guest;
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kernel_guest::{Guest, Netns, Verdict, HOST_ADDR};
use std::net::SocketAddr;

use support::{binary, http, start_controlplane, wait_for_file, wait_in_sync, Daemon, TempDir};

/// The iSCSI port inside the namespace; the namespace is private, so the default is free.
const PORT: u16 = 3260;

/// The target every case logs in to.
fn iqn(tag: &str) -> String {
    format!("iqn.2026-12.org.example.kernel:{tag}")
}

/// The data plane's config: one target, LUN 1 on a sparse file of `size_bytes`, with a
/// `block_size` logical block size, and the given portal ports (all in one portal group).
fn write_config(dir: &Path, tag: &str, size_bytes: u64, block_size: u32, ports: &[u16]) {
    let image = dir.join("disk.img");
    if !image.exists() {
        let f = std::fs::File::create(&image).expect("create image");
        f.set_len(size_bytes).expect("size image");
    }
    let portals: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!(r#"{{"id":{i},"portal":"{HOST_ADDR}:{p}"}}"#))
        .collect();
    let ids: Vec<String> = (0..ports.len()).map(|i| i.to_string()).collect();
    let config = format!(
        r#"{{"storages":[{{"deviceID":1000,"path":"{}","online":true,"backendType":"file","blockSize":{block_size}}}],
"iscsiportals":[{}],
"iscsitargets":{{"{}":{{"tpgts":{{"1":[{}]}},"luns":{{"1":1000}}}}}}}}"#,
        image.display(),
        portals.join(","),
        iqn(tag),
        ids.join(",")
    );
    std::fs::write(dir.join("config.json"), config).expect("write config");
}

/// Starts the data plane inside the namespace with `DIR/config.json`; `n` numbers its log
/// and ready file so a restarted one does not read the old ones.
fn start_dataplane(ns: &Netns, dir: &Path, n: u32) -> Daemon {
    let ready = dir.join(format!("ready-{n}.json"));
    let log = dir.join(format!("dataplane-{n}.log"));
    let child = ns
        .command(&binary("tgt-dataplane"))
        .arg("--config")
        .arg(dir.join("config.json"))
        .arg("--ready-file")
        .arg(&ready)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn tgt-dataplane in the namespace");
    let mut d = Daemon { child, log };
    wait_for_file(&mut d, &ready, "tgt-dataplane");
    d
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

/// Fails the test with the guest's reason and its dmesg lines unless the case passed.
fn expect_ok(v: &Verdict, guest: &Guest, what: &str) {
    assert!(
        v.ok,
        "{what}: the guest reports: {}\n{}",
        v.reason,
        guest.report()
    );
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

const BOOT_LIMIT: Duration = Duration::from_secs(120);

/// Case 1: SendTargets discovery, login, the disk's attributes as the data plane advertises
/// them (capacity, 4096-byte blocks, write-back cache, FUA), then ext4 on it: files of known
/// content survive unmount and remount, and `e2fsck -fn` finds nothing.
#[test]
fn discovery_login_disk_attributes_and_ext4() {
    let _one = kernel_guest::serialize();
    let tag = "case1";
    let dir = TempDir::new("kernel-case1");
    let ns = Netns::new();
    let size_bytes: u64 = 128 << 20;
    write_config(dir.path(), tag, size_bytes, 4096, &[PORT]);
    let mut dp = start_dataplane(&ns, dir.path(), 0);
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
        login = login_script(&iqn(tag), PORT, "sda")
    );
    let mut guest = Guest::boot(&ns, &script, dir.path());
    let v = guest.verdict(Duration::from_secs(240));
    print_figures("case 1", &guest, &v);
    expect_ok(
        &v,
        &guest,
        "discovery, login and ext4 through the kernel initiator",
    );
    let get = |k: &str| v.values.get(k).map(String::as_str).unwrap_or("<missing>");
    let expect = [
        ("size_512", (size_bytes / 512).to_string()),
        ("logical_block_size", "4096".to_string()),
        ("physical_block_size", "4096".to_string()),
        ("cache_type", "write back".to_string()),
        ("fua", "1".to_string()),
        ("lun", "1".to_string()),
    ];
    for (k, want) in expect {
        assert_eq!(
            get(k),
            want,
            "the kernel sees {k} = {}, the data plane advertises {want}\n{}",
            get(k),
            guest.report()
        );
    }
    assert!(dp.alive(), "data plane died; log:\n{}", dp.log_text());
}

/// Case 2: fio random 4 KiB and 128 KiB writes with crc32c verification, 0 errors.
#[test]
fn fio_crc32c_verify() {
    let _one = kernel_guest::serialize();
    let tag = "case2";
    let dir = TempDir::new("kernel-case2");
    let ns = Netns::new();
    write_config(dir.path(), tag, 256 << 20, 512, &[PORT]);
    let mut dp = start_dataplane(&ns, dir.path(), 0);
    let script = format!(
        "{}{}{}ok\n",
        login_script(&iqn(tag), PORT, "sda"),
        fio_script("rand4k", "4k", "0", "16m"),
        fio_script("rand128k", "128k", "64m", "96m"),
    );
    let mut guest = Guest::boot(&ns, &script, dir.path());
    let v = guest.verdict(Duration::from_secs(240));
    print_figures("case 2", &guest, &v);
    expect_ok(
        &v,
        &guest,
        "fio crc32c verification through the kernel initiator",
    );
    assert!(dp.alive(), "data plane died; log:\n{}", dp.log_text());
}

/// Case 3: the data plane is killed with SIGKILL while fio writes, and restarted on the same
/// portal and image a few seconds later; the kernel logs in again by itself (iscsid's
/// session recovery, RFC 7143 §6.3) and fio completes with 0 verify errors.
#[test]
fn sigkill_and_restart_during_fio() {
    let _one = kernel_guest::serialize();
    let tag = "case3";
    let dir = TempDir::new("kernel-case3");
    let ns = Netns::new();
    write_config(dir.path(), tag, 256 << 20, 512, &[PORT]);
    let dp = start_dataplane(&ns, dir.path(), 0);
    let script = format!(
        r#"{login}
echo TGT-FIO-START
{fio}
dmesg | grep -iE 'conn error|recovery|timed out' | sed 's/^/TGT-INFO /'
dmesg | grep -q 'detected conn error' || fail "the kernel never saw the connection drop"
ok
"#,
        login = login_script(&iqn(tag), PORT, "sda"),
        fio = fio_script("killed", "4k", "0", "48m"),
    );
    let mut guest = Guest::boot(&ns, &script, dir.path());
    guest.wait_for("TGT-FIO-START", BOOT_LIMIT);
    // Kill only once fio's writes reach the image, so the kill lands inside the I/O.
    let image = dir.path().join("disk.img");
    let written = |min: u64| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&image)
            .map(|m| m.blocks() * 512)
            .unwrap_or(0)
            >= min
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !written(4 << 20) {
        assert!(
            Instant::now() < deadline,
            "fio wrote under 4 MiB in 120 s\n{}",
            guest.report()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed_at = Instant::now();
    drop(dp); // SIGKILL (Child::kill) and reap.
              // The target stays down for a few seconds: the initiator must notice the dead
              // connection and retry its login, not just resend on the old socket.
    std::thread::sleep(Duration::from_secs(3));
    let mut dp = start_dataplane(&ns, dir.path(), 1);
    eprintln!(
        "case 3: data plane restarted {:.1} s after SIGKILL",
        killed_at.elapsed().as_secs_f64()
    );
    let v = guest.verdict(Duration::from_secs(240));
    print_figures("case 3", &guest, &v);
    expect_ok(&v, &guest, "fio across a data plane SIGKILL and restart");
    assert!(
        dp.alive(),
        "the restarted data plane died; log:\n{}",
        dp.log_text()
    );
}

/// A data plane inside the namespace that waits for the control plane on `DIR/dp.sock`,
/// and a control plane on the host's loopback pushing to it; returns both and the REST
/// address. The Unix socket crosses the namespace boundary because the file system is
/// shared.
fn start_managed(ns: &Netns, dir: &Path) -> (Daemon, Daemon, SocketAddr) {
    let ready = dir.join("dp-ready.json");
    let log = dir.join("dataplane.log");
    let child = ns
        .command(&binary("tgt-dataplane"))
        .arg("--control-socket")
        .arg(dir.join("dp.sock"))
        .arg("--ready-file")
        .arg(&ready)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn tgt-dataplane in the namespace");
    let mut dp = Daemon { child, log };
    wait_for_file(&mut dp, &ready, "tgt-dataplane");
    let (cp, api) = start_controlplane(dir);
    (dp, cp, api)
}

/// One REST call that must answer with one of `ok` statuses.
fn rest(api: SocketAddr, method: &str, path: &str, body: &str, ok: &[u16]) {
    let r = http(api, method, path, Some(body));
    assert!(
        ok.contains(&r.status),
        "{method} {path} {body}: {} {}",
        r.status,
        r.body
    );
}

/// Storages 1000 (and `more`) of 128 MiB, portals on `ports`, and the target with LUN 1,
/// through REST.
fn configure(api: SocketAddr, dir: &Path, tag: &str, ports: &[u16], more: &[u64]) {
    for id in std::iter::once(1000).chain(more.iter().copied()) {
        let body = format!(
            r#"{{"deviceID":{id},"path":"{}","size":{}}}"#,
            dir.join(format!("disk-{id}.img")).display(),
            128u64 << 20
        );
        rest(api, "POST", "/api/v1/storages", &body, &[201]);
    }
    for (i, p) in ports.iter().enumerate() {
        let body = format!(r#"{{"id":{i},"portal":"{HOST_ADDR}:{p}"}}"#);
        rest(api, "POST", "/api/v1/portals", &body, &[201]);
    }
    let ids: Vec<String> = (0..ports.len()).map(|i| i.to_string()).collect();
    let body = format!(
        r#"{{"tpgts":{{"1":[{}]}},"luns":{{"1":1000}}}}"#,
        ids.join(",")
    );
    rest(
        api,
        "PUT",
        &format!("/api/v1/targets/{}", iqn(tag)),
        &body,
        &[200, 201],
    );
}

/// Case 4, LUN addition: a LUN mapped through the REST API while the kernel is logged in
/// raises REPORTED LUNS DATA HAS CHANGED (SPC-4 §6.37 / SAM-5 unit attention 3Fh/0Eh) on the
/// next command; the kernel logs it and, as a udev rule would on its uevent, the guest asks
/// open-iscsi to rescan the session, after which the new disk is there.
#[test]
fn lun_added_through_rest_appears_after_rescan() {
    let _one = kernel_guest::serialize();
    let tag = "case4";
    let dir = TempDir::new("kernel-case4");
    let ns = Netns::new();
    let (mut dp, _cp, api) = start_managed(&ns, dir.path());
    configure(api, dir.path(), tag, &[PORT], &[1001]);
    wait_in_sync(api, &mut dp);
    let script = format!(
        r#"{login}
echo TGT-ADD-LUN
i=0
until dmesg | grep -q 'LUN assignments on this target have changed'; do
  [ $i -lt 240 ] || fail "no REPORTED LUNS DATA HAS CHANGED in 60 s"
  dd if=/dev/sda of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null
  sleep 0.25; i=$((i+1))
done
dmesg | grep 'LUN assignments' | sed 's/^/TGT-INFO /'
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
ok
"#,
        login = login_script(&iqn(tag), PORT, "sda"),
    );
    let mut guest = Guest::boot(&ns, &script, dir.path());
    guest.wait_for("TGT-ADD-LUN", BOOT_LIMIT);
    rest(
        api,
        "PUT",
        &format!("/api/v1/targets/{}/luns/2", iqn(tag)),
        r#"{"deviceID":1001}"#,
        &[200, 201],
    );
    wait_in_sync(api, &mut dp);
    let v = guest.verdict(Duration::from_secs(180));
    print_figures("case 4", &guest, &v);
    expect_ok(&v, &guest, "a LUN added through REST, seen by the kernel");
    assert_eq!(
        v.values.get("new_size_512").map(String::as_str),
        Some("262144"),
        "the new LUN's size\n{}",
        guest.report()
    );
    assert_eq!(
        v.values.get("new_lun").map(String::as_str),
        Some("2"),
        "the new disk's LUN\n{}",
        guest.report()
    );
}

/// Case 6: two portals of one target, one session through each, dm-multipath (a
/// round-robin table built with dmsetup) on top; one portal is removed through REST and its
/// connection cut while fio writes; dm-multipath fails that path and fio finishes with 0
/// verify errors on the remaining one.
#[test]
fn multipath_survives_portal_removal() {
    let _one = kernel_guest::serialize();
    let tag = "case6";
    let dir = TempDir::new("kernel-case6");
    let ns = Netns::new();
    let (mut dp, _cp, api) = start_managed(&ns, dir.path());
    configure(api, dir.path(), tag, &[PORT, PORT + 1], &[]);
    wait_in_sync(api, &mut dp);
    let t = iqn(tag);
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
[ $rc -eq 0 ] || {{ cat /tmp/fio; fail "fio on dm-multipath exited with $rc"; }}
grep -q ' err= 0' /tmp/fio || {{ cat /tmp/fio; fail "fio on dm-multipath reported errors"; }}
dmsetup status mpath | grep -q ' F ' || fail "no path failed: the removed portal's path stayed in use"
ok
"#
    );
    let mut guest = Guest::boot(&ns, &script, dir.path());
    guest.wait_for("TGT-FIO-START", BOOT_LIMIT);
    let image = dir.path().join("disk-1000.img");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(&image)
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
        .unwrap_or(0)
        < 4 << 20
    {
        assert!(
            Instant::now() < deadline,
            "fio wrote under 4 MiB in 120 s\n{}",
            guest.report()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The second portal leaves the target's portal group, then the configuration.
    rest(
        api,
        "PUT",
        &format!("/api/v1/targets/{t}"),
        r#"{"tpgts":{"1":[0]},"luns":{"1":1000}}"#,
        &[200, 201],
    );
    rest(api, "DELETE", "/api/v1/portals/1", "", &[200, 204]);
    wait_in_sync(api, &mut dp);
    // The data plane keeps sessions already logged in through a removed portal (see
    // docs/kernel-initiator.md), so the path's TCP connection is cut as well: its login
    // retries are then refused and, after the 5 s replacement timeout, dm-multipath fails
    // the path and sends its I/O down the other one.
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "ss", "-K", "-t", "sport", "=", ":3261",
        ])
        .output()
        .expect("run ss -K in the namespace");
    assert!(
        out.status.success(),
        "ss -K: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("case 6: portal {HOST_ADDR}:{} removed during fio", PORT + 1);
    let v = guest.verdict(Duration::from_secs(240));
    print_figures("case 6", &guest, &v);
    expect_ok(&v, &guest, "dm-multipath I/O across a portal removal");
    assert!(dp.alive(), "data plane died; log:\n{}", dp.log_text());
}
