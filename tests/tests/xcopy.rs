//! System tests of EXTENDED COPY (SPC-4 6.4) against the real `tgt-dataplane` binary, driven
//! by the project's own initiator: the Third-party Copy VPD page (SPC-4 7.8.17) decodes and
//! advertises the copy manager, and a copy runs from a LUN of one target to a LUN of another
//! target of the same data plane, but only for an initiator logged in to both.

mod support;

use std::time::Duration;

use support::{check_condition, login, ready_value, spawn_config_dataplane, Daemon, TempDir};
use tgt_system_tests::initiator::Session;
use tgt_system_tests::xcopy::{self, Segment};

const TARGET_A: &str = "iqn.2026-11.org.example.systest:xcopy-a";
const TARGET_B: &str = "iqn.2026-11.org.example.systest:xcopy-b";
const BLOCK: u32 = 512;
const IMAGE_BYTES: u64 = 64 << 20;

/// A data plane with two targets, one LUN each (LUN 0, a file and an io_uring storage).
fn two_targets(dir: &TempDir) -> (Daemon, std::net::SocketAddr) {
    let image = |name: &str| {
        let p = dir.path().join(name);
        std::fs::File::create(&p)
            .and_then(|f| f.set_len(IMAGE_BYTES))
            .expect("create image");
        p.display().to_string()
    };
    let config = serde_json::json!({
        "storages": [
            {"deviceID": 2001, "path": image("a.img"), "online": true, "backendType": "file"},
            {"deviceID": 2002, "path": image("b.img"), "online": true, "backendType": "iouring"},
        ],
        "iscsiportals": [{"id": 0, "portal": "127.0.0.1:0"}],
        "iscsitargets": {
            TARGET_A: {"tpgts": {"1": [0]}, "luns": {"0": 2001}},
            TARGET_B: {"tpgts": {"1": [0]}, "luns": {"0": 2002}},
        },
    });
    let (daemon, ready) = spawn_config_dataplane(dir.path(), &config.to_string(), &[]);
    let portal = ready_value(&ready, "addr").expect("portal address in the ready file");
    (daemon, portal)
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// What every disk of the data plane advertises: 3PC in standard INQUIRY, page 8Fh in the
/// Supported VPD Pages, and in it EXTENDED COPY (LID1), RECEIVE COPY RESULTS and the limits.
fn assert_copy_manager_described(s: &Session) {
    let std_inq = s
        .execute(
            0,
            &[0x12, 0, 0, 0, 96, 0],
            tgt_system_tests::initiator::DataDir::Read(96),
        )
        .and_then(|o| o.good())
        .expect("standard INQUIRY");
    assert_eq!(std_inq.data[5] & 0x08, 0x08, "3PC set");
    let pages = s
        .execute(
            0,
            &[0x12, 1, 0, 0, 255, 0],
            tgt_system_tests::initiator::DataDir::Read(255),
        )
        .and_then(|o| o.good())
        .expect("Supported VPD Pages");
    assert!(pages.data[4..].contains(&0x8F), "{:02x?}", pages.data);
    let tpc = xcopy::third_party_copy(s, 0).expect("Third-party Copy VPD page decodes");
    for kind in [0x0001, 0x0004, 0x0008, 0x000C, 0x8001] {
        assert!(tpc.descriptor_types.contains(&kind), "{kind:04x}h: {tpc:?}");
    }
    assert!(tpc.commands.contains(&(0x83, vec![0x00])), "{tpc:?}");
    let rcr = tpc
        .commands
        .iter()
        .find(|(op, _)| *op == 0x84)
        .expect("RECEIVE COPY RESULTS listed");
    assert!(rcr.1.contains(&0x00) && rcr.1.contains(&0x03), "{tpc:?}");
    assert_eq!(tpc.supported_descriptors, [0x02, 0xE4]);
    assert!(tpc.max_cscd_descriptors >= 2 && tpc.max_segment_descriptors >= 1);
    assert!(tpc.total_concurrent_copies >= 1);
    // The copy below (1 MiB in one segment) fits the advertised segment length.
    assert!(tpc.max_segment_bytes >= 1 << 20, "{tpc:?}");
}

#[test]
fn copies_from_a_lun_of_one_target_to_a_lun_of_another_for_an_initiator_of_both() {
    let dir = TempDir::new("xcopy-two-targets");
    let (mut daemon, portal) = two_targets(&dir);
    let a = login(portal, TARGET_A);
    let b = login(portal, TARGET_B);
    assert_copy_manager_described(&a);
    assert_copy_manager_described(&b);
    let (naa_a, naa_b) = (xcopy::naa(&a, 0).unwrap(), xcopy::naa(&b, 0).unwrap());
    assert_ne!(naa_a, naa_b);

    // 1 MiB at LBA 100 of A's LUN, copied by A's copy manager to LBA 5000 of B's LUN.
    let blocks: u16 = 2048;
    let data = pattern(usize::from(blocks) * BLOCK as usize, 7);
    a.write16(0, 100, &data, BLOCK).expect("write the source");
    let seg = Segment {
        source: 0,
        destination: 1,
        blocks,
        source_lba: 100,
        destination_lba: 5000,
    };
    let list = xcopy::parameter_list(3, &[naa_a, naa_b], BLOCK, &[seg]);
    let o = xcopy::extended_copy(&a, 0, &list).expect("EXTENDED COPY answered");
    assert_eq!(o.status, 0, "EXTENDED COPY: {:02x?}", o.sense);
    let back = b
        .read16(0, 5000, u32::from(blocks), BLOCK)
        .expect("read the destination");
    assert!(back == data, "the copy on target B differs from the source");
    assert_eq!(
        xcopy::copy_status(&a, 0, 3).unwrap(),
        (0x01, 1, data.len() as u64),
        "COPY STATUS: completed without error, one segment, every byte"
    );
    // The other way round, through B's copy manager: B's LUN back to A at LBA 9000.
    let back_seg = Segment {
        source: 1,
        destination: 0,
        blocks,
        source_lba: 5000,
        destination_lba: 9000,
    };
    let list = xcopy::parameter_list(4, &[naa_a, naa_b], BLOCK, &[back_seg]);
    let o = xcopy::extended_copy(&b, 0, &list).unwrap();
    assert_eq!(o.status, 0, "{:02x?}", o.sense);
    assert!(a.read16(0, 9000, u32::from(blocks), BLOCK).unwrap() == data);

    // Logged out of B, the initiator can no longer reach B's LUN through A: COPY ABORTED,
    // COPY TARGET DEVICE NOT REACHABLE, and nothing is written.
    b.logout().expect("logout from B");
    // The data plane forgets the session when the connection has closed, just after the
    // Logout Response: poll with a copy of no blocks, which resolves the CSCDs only.
    let probe = Segment { blocks: 0, ..seg };
    let probe = xcopy::parameter_list(6, &[naa_a, naa_b], BLOCK, &[probe]);
    support::poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let o = xcopy::extended_copy(&a, 0, &probe).expect("EXTENDED COPY answered");
        (o.status != 0).then_some(())
    })
    .unwrap_or_else(|| panic!("the session with B outlived its logout"));
    let fresh = pattern(data.len(), 99);
    a.write16(0, 100, &fresh, BLOCK).unwrap();
    let list = xcopy::parameter_list(5, &[naa_a, naa_b], BLOCK, &[seg]);
    let sense = check_condition(
        xcopy::extended_copy(&a, 0, &list).and_then(|o| o.good()),
        "EXTENDED COPY to a target the initiator left",
    );
    assert_eq!((sense.key, sense.asc, sense.ascq), (0x0A, 0x0D, 0x02));
    let b = login(portal, TARGET_B);
    assert!(b.read16(0, 5000, u32::from(blocks), BLOCK).unwrap() == data);
    // Logged in again, the copy goes through.
    let o = xcopy::extended_copy(&a, 0, &list).unwrap();
    assert_eq!(o.status, 0, "{:02x?}", o.sense);
    assert!(b.read16(0, 5000, u32::from(blocks), BLOCK).unwrap() == fresh);
    assert!(daemon.alive(), "{}", daemon.log_text());
}
