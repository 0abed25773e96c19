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

mod support;
#[path = "support/kernel_guest.rs"]
mod kernel_guest;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kernel_guest::{Guest, Netns, Verdict, HOST_ADDR};
use support::{binary, wait_for_file, Daemon, TempDir};

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
    expect_ok(&v, &guest, "discovery, login and ext4 through the kernel initiator");
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
    expect_ok(&v, &guest, "fio crc32c verification through the kernel initiator");
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
        std::fs::metadata(&image).map(|m| m.blocks() * 512).unwrap_or(0) >= min
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
