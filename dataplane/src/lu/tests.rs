//! Behaviour of logical units and the target, driven through `Target::execute` as the
//! transport drives it: CDBs in, status, sense and data out.

use super::*;
use crate::backend::fault::{FaultHandle, FaultInner};
use crate::backend::Backend;
use crate::backend::{FaultBackend, FaultEffect, FaultOp, FaultRule, MemoryBackend};

const BS: u32 = 512;
const BLOCKS: u64 = 2048;

fn cfg(lun: u16) -> LuConfig {
    LuConfig {
        device_id: 7,
        path: PathBuf::from("/nonexistent"),
        online: true,
        read_only: false,
        block_size: BS,
        physical_block_size: BS,
        removable: false,
        create_size_bytes: None,
        target_name: "iqn.2024-01.test:tgt".into(),
        engine: Engine::File,
        thin: true,
        pool: None,
        lun,
        alua: crate::scsi::alua::PortGroups::default(),
    }
}

fn mem_target() -> Target {
    let lu = LogicalUnit::with_backend(
        &cfg(0),
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))])
}

#[tokio::test]
async fn pool_buffers_carry_reads_and_writes_within_the_optimal_transfer_length() {
    let pool = BufferPool::unbound(2, 8192, 4096).unwrap();
    let mut c = cfg(0);
    c.pool = Some(pool.clone());
    let lu = LogicalUnit::with_backend(
        &c,
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))]);
    let n = nexus(1);
    // OPTIMAL TRANSFER LENGTH is one 8 KiB buffer: 16 blocks.
    let r = run(&t, &n, &[0x12, 1, 0xB0, 0, 64, 0], &[]).await;
    assert_eq!(&r.data_in[12..16], &16u32.to_be_bytes());
    let data: Vec<u8> = (0..8192u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(run(&t, &n, &c10(0x2A, 0, 8, 16), &data).await.status, 0);
    let r = run(&t, &n, &c10(0x28, 0, 8, 16), &[]).await;
    assert_eq!(r.status, 0);
    assert!(matches!(r.data_in, IoBuf::Pool(_)), "{:?}", r.data_in);
    assert_eq!(r.data_in, data);
    // The response holds one buffer; dropping it gives it back.
    assert_eq!(pool.stats().in_use, 1);
    drop(r);
    assert_eq!(pool.stats().in_use, 0);
    // A longer transfer is served from the heap, and counted.
    let r = run(&t, &n, &c10(0x28, 0, 0, 24), &[]).await;
    assert_eq!(r.status, 0);
    assert!(matches!(r.data_in, IoBuf::Vec(_)));
    assert_eq!(&r.data_in[8 * 512..], &data[..]);
    assert_eq!(pool.stats().heap_total, 1);
    // A buffer too small for two blocks is a configuration error, not a panic.
    let mut c = cfg(0);
    c.block_size = 4096;
    c.pool = Some(BufferPool::unbound(1, 4096, 4096).unwrap());
    assert!(LogicalUnit::with_backend(
        &c,
        Backend::Memory(MemoryBackend::new(1 << 20, false).unwrap()),
    )
    .is_err());
}

#[tokio::test]
async fn a_replacement_lu_tells_each_nexus_what_changed_once() {
    let old = LogicalUnit::with_backend(
        &cfg(0),
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    let same = LogicalUnit::with_backend(
        &cfg(0),
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    let n = nexus(1);
    same.replaced(&old, n.id);
    let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(same))]);
    assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0, "nothing to tell");

    let mut c = cfg(0);
    c.device_id += 1;
    let bigger = LogicalUnit::with_backend(
        &c,
        Backend::Memory(MemoryBackend::new(2 * BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    bigger.replaced(&old, n.id);
    let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(bigger))]);
    assert_eq!(asc(&run(&t, &n, &[0; 6], &[]).await), (6, 0x3F, 0x03));
    assert_eq!(asc(&run(&t, &n, &[0; 6], &[]).await), (6, 0x2A, 0x09));
    assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
    // Another nexus was not told.
    assert_eq!(run(&t, &nexus(2), &[0; 6], &[]).await.status, 0);
}

#[tokio::test]
async fn lun0_switching_between_disk_and_controller_is_inquiry_data_changed() {
    let n = nexus(1);
    // LUN 0 becomes the synthetic controller (the target only has LUN 5).
    let lu = LogicalUnit::with_backend(
        &cfg(5),
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    let t = Target::new("iqn.2024-01.test:tgt", vec![(5, Arc::new(lu))]);
    t.controller_took_lun0(n.id);
    assert_eq!(
        asc(&t.execute(0, &n, &[0; 6], &[], 0).await),
        (6, 0x3F, 0x03)
    );
    assert_eq!(t.execute(0, &n, &[0; 6], &[], 0).await.status, 0);
    // And a disk takes LUN 0 back.
    let disk = LogicalUnit::with_backend(
        &cfg(0),
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    disk.took_lun0(n.id);
    let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(disk))]);
    assert_eq!(asc(&run(&t, &n, &[0; 6], &[]).await), (6, 0x3F, 0x03));
    assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
}

/// Data-Out as if the transport had handed a pool buffer over (it no longer does for
/// these commands, but a command holding a buffer must never wait forever for another).
fn pool_data(pool: &BufferPool, bytes: &[u8]) -> IoBuf {
    let mut b = pool.try_get().expect("pool buffer for data-out");
    b.set_len(bytes.len()).unwrap();
    b.copy_from_slice(bytes);
    IoBuf::Pool(b)
}

fn pooled_target(pool: &BufferPool) -> Target {
    let mut c = cfg(0);
    c.pool = Some(pool.clone());
    let lu = LogicalUnit::with_backend(
        &c,
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))])
}

#[tokio::test]
async fn commands_holding_the_only_pool_buffer_never_wait_forever_for_another() {
    let within = std::time::Duration::from_secs(5);
    let n = nexus(1);
    // WRITE SAME (10) of 4 blocks of 0xFF.
    let pool = BufferPool::unbound(1, 8192, 4096).unwrap();
    let t = pooled_target(&pool);
    let out = pool_data(&pool, &[0xFF; 512]);
    let cdb = [0x41, 0, 0, 0, 0, 0, 0, 0, 4, 0];
    let r = tokio::time::timeout(within, t.execute(0, &n, &cdb, out, 0)).await;
    assert_eq!(r.expect("WRITE SAME finishes").status, 0);
    // COMPARE AND WRITE of one block at LBA 8 (zeros against zeros).
    let mut caw = vec![0u8; 16];
    caw[0] = 0x89;
    caw[9] = 8;
    caw[13] = 1;
    let out = pool_data(&pool, &[0u8; 1024]);
    let r = tokio::time::timeout(within, t.execute(0, &n, &caw, out, 0)).await;
    assert_eq!(r.expect("COMPARE AND WRITE finishes").status, 0);
    // VERIFY (10) BYTCHK=1 of 2 zero blocks at LBA 16.
    let cdb = [0x2F, 0x02, 0, 0, 0, 16, 0, 0, 2, 0];
    let out = pool_data(&pool, &[0u8; 1024]);
    let r = tokio::time::timeout(within, t.execute(0, &n, &cdb, out, 0)).await;
    assert_eq!(r.expect("VERIFY finishes").status, 0);
    assert!(pool.stats().heap_total >= 3, "{:?}", pool.stats());
    assert_eq!(pool.stats().in_use, 0);
}

#[tokio::test]
async fn two_compare_and_writes_on_a_two_buffer_pool_both_finish() {
    let pool = BufferPool::unbound(2, 8192, 4096).unwrap();
    let t = Arc::new(pooled_target(&pool));
    let mut caw = vec![0u8; 16];
    caw[0] = 0x89;
    caw[13] = 1;
    let (a, b) = (
        pool_data(&pool, &[0u8; 1024]),
        pool_data(&pool, &[0u8; 1024]),
    );
    let (t1, t2, c1, c2) = (Arc::clone(&t), Arc::clone(&t), caw.clone(), caw);
    let j1 = tokio::spawn(async move { t1.execute(0, &nexus(1), &c1, a, 0).await.status });
    let j2 = tokio::spawn(async move { t2.execute(0, &nexus(2), &c2, b, 0).await.status });
    let both = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        (j1.await.unwrap(), j2.await.unwrap())
    })
    .await
    .expect("the two CAWs finish");
    assert_eq!(both, (0, 0));
}

fn fault_target() -> (Target, FaultHandle) {
    let fb = FaultBackend::new(FaultInner::Memory(
        MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap(),
    ));
    let h = fb.handle();
    let lu = LogicalUnit::with_backend(&cfg(0), Backend::Fault(fb)).unwrap();
    (
        Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))]),
        h,
    )
}

fn nexus(id: u64) -> Nexus {
    Nexus {
        id,
        initiator_port: Arc::from(format!("iqn.init{id},i,0x000000000001")),
    }
}

fn c10(op: u8, b1: u8, lba: u32, len: u16) -> Vec<u8> {
    let mut v = vec![0u8; 10];
    v[0] = op;
    v[1] = b1;
    v[2..6].copy_from_slice(&lba.to_be_bytes());
    v[7..9].copy_from_slice(&len.to_be_bytes());
    v
}

fn c16(op: u8, b1: u8, lba: u64, len: u32) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[0] = op;
    v[1] = b1;
    v[2..10].copy_from_slice(&lba.to_be_bytes());
    v[10..14].copy_from_slice(&len.to_be_bytes());
    v
}

fn asc(r: &ScsiResponse) -> (u8, u8, u8) {
    assert_eq!(r.status, status::CHECK_CONDITION, "{r:?}");
    (r.sense[2] & 0x0F, r.sense[12], r.sense[13])
}

async fn run(t: &Target, n: &Nexus, cdb: &[u8], out: &[u8]) -> ScsiResponse {
    t.execute(0, n, cdb, out, 1 << 20).await
}

#[tokio::test]
async fn tur_inquiry_and_capacity() {
    let t = mem_target();
    let n = nexus(1);
    assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
    let r = run(&t, &n, &[0x12, 0, 0, 0, 255, 0], &[]).await;
    assert_eq!(r.status, 0);
    assert_eq!(r.data_in.len(), 74);
    assert_eq!(r.cdb_transfer_bytes, Some(255));
    let r = run(&t, &n, &[0x12, 0, 0, 0, 10, 0], &[]).await;
    assert_eq!(r.data_in.len(), 10);
    assert_eq!(
        asc(&run(&t, &n, &[0x12, 0, 0x80, 0, 255, 0], &[]).await),
        (5, 0x24, 0)
    );
    let r = run(&t, &n, &c10(0x25, 0, 0, 0), &[]).await;
    assert_eq!(r.data_in, [0, 0, 0x07, 0xFF, 0, 0, 2, 0]);
    let r = run(&t, &n, &c16(0x9E, 0x10, 0, 32), &[]).await;
    assert_eq!(&r.data_in[0..8], &(BLOCKS - 1).to_be_bytes());
    assert_eq!(r.data_in[14] & 0xC0, 0xC0);
    let r = run(&t, &n, &c16(0x9E, 0x10, 0, 5), &[]).await;
    assert_eq!(r.data_in.len(), 5);
}

#[tokio::test]
async fn write_read_round_trip_and_range_checks() {
    let t = mem_target();
    let n = nexus(1);
    let data: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    let r = run(&t, &n, &c10(0x2A, 0x08, 10, 2), &data).await;
    assert_eq!(r.status, 0);
    assert_eq!(r.cdb_transfer_bytes, Some(1024));
    let r = run(&t, &n, &c10(0x28, 0, 10, 2), &[]).await;
    assert_eq!(r.data_in, data);
    let r = run(&t, &n, &c16(0x88, 0, 10, 2), &[]).await;
    assert_eq!(r.data_in, data);
    assert_eq!(
        asc(&run(&t, &n, &c10(0x28, 0, 2047, 2), &[]).await),
        (5, 0x21, 0)
    );
    assert_eq!(
        asc(&run(&t, &n, &c16(0x88, 0, u64::MAX, 1), &[]).await),
        (5, 0x21, 0)
    );
    assert_eq!(
        asc(&run(&t, &n, &c10(0x28, 0, 2049, 0), &[]).await),
        (5, 0x21, 0)
    );
    let r = run(&t, &n, &c10(0x28, 0, 0, 0), &[]).await;
    assert_eq!((r.status, r.data_in.len()), (0, 0));
    // READ(6) with transfer length 0 reads 256 blocks.
    let r = run(&t, &n, &[0x08, 0, 0, 0, 0, 0], &[]).await;
    assert_eq!(r.data_in.len(), 256 * 512);
    assert_eq!(
        asc(&run(&t, &n, &c10(0x28, 0x20, 0, 1), &[]).await),
        (5, 0x24, 0)
    );
}

#[tokio::test]
async fn short_data_out_writes_only_whole_blocks_received() {
    let t = mem_target();
    let n = nexus(1);
    assert_eq!(
        run(&t, &n, &c10(0x2A, 0, 0, 2), &[b'a'; 1024]).await.status,
        0
    );
    assert_eq!(
        run(&t, &n, &c10(0x2A, 0, 0, 2), &[b'b'; 512]).await.status,
        0
    );
    let r = run(&t, &n, &c10(0x28, 0, 0, 2), &[]).await;
    assert!(r.data_in[..512].iter().all(|&x| x == b'b'));
    assert!(r.data_in[512..].iter().all(|&x| x == b'a'));
}

#[tokio::test]
async fn verify_and_compare_and_write_miscompare() {
    let t = mem_target();
    let n = nexus(1);
    let data = vec![0x5Au8; 1024];
    run(&t, &n, &c10(0x2A, 0, 4, 2), &data).await;
    assert_eq!(run(&t, &n, &c10(0x2F, 0x02, 4, 2), &data).await.status, 0);
    let mut bad = data.clone();
    bad[700] ^= 1;
    let r = run(&t, &n, &c10(0x2F, 0x02, 4, 2), &bad).await;
    assert_eq!(asc(&r), (0x0E, 0x1D, 0));
    assert_eq!(&r.sense[3..7], &700u32.to_be_bytes());
    assert_eq!(run(&t, &n, &c10(0x2F, 0, 4, 2), &bad).await.status, 0);
    // COMPARE AND WRITE: compare 1 block, then write.
    let mut caw = vec![0u8; 16];
    caw[0] = 0x89;
    caw[2..10].copy_from_slice(&4u64.to_be_bytes());
    caw[13] = 1;
    let mut payload = vec![0x5Au8; 512];
    payload.extend_from_slice(&[0x11u8; 512]);
    assert_eq!(run(&t, &n, &caw, &payload).await.status, 0);
    let r = run(&t, &n, &c10(0x28, 0, 4, 1), &[]).await;
    assert!(r.data_in.iter().all(|&x| x == 0x11));
    let r = run(&t, &n, &caw, &payload).await;
    assert_eq!(asc(&r), (0x0E, 0x1D, 0));
    assert_eq!(asc(&run(&t, &n, &caw, &payload[..512]).await), (5, 0x24, 0));
}

#[tokio::test]
async fn orwrite_ors_data() {
    let t = mem_target();
    let n = nexus(1);
    run(&t, &n, &c10(0x2A, 0, 0, 1), &[0xA5; 512]).await;
    assert_eq!(
        run(&t, &n, &c16(0x8B, 0, 0, 1), &[0x5A; 512]).await.status,
        0
    );
    let r = run(&t, &n, &c10(0x28, 0, 0, 1), &[]).await;
    assert!(r.data_in.iter().all(|&x| x == 0xFF));
}

#[tokio::test]
async fn write_same_unmap_and_lba_status() {
    let t = mem_target();
    let n = nexus(1);
    run(&t, &n, &c10(0x2A, 0, 0, 64), &vec![0xFF; 64 * 512]).await;
    let r = run(&t, &n, &c10(0x41, 0, 0, 8), &[7u8; 512]).await;
    assert_eq!(r.status, 0);
    let r = run(&t, &n, &c10(0x28, 0, 0, 9), &[]).await;
    assert!(r.data_in[..8 * 512].iter().all(|&x| x == 7));
    assert!(r.data_in[8 * 512..].iter().all(|&x| x == 0xFF));
    // UNMAP bit with a zero block deallocates 8..16 (one memory page).
    assert_eq!(
        run(&t, &n, &c10(0x41, 0x08, 8, 8), &[0u8; 512])
            .await
            .status,
        0
    );
    let r = run(&t, &n, &c16(0x9E, 0x12, 8, 64), &[]).await;
    assert_eq!(r.status, 0);
    assert_eq!(&r.data_in[8..16], &8u64.to_be_bytes());
    assert_eq!(r.data_in[8 + 12], 1);
    let r = run(&t, &n, &c10(0x28, 0, 8, 8), &[]).await;
    assert!(r.data_in.iter().all(|&x| x == 0));
    // Wrong data-out size, ANCHOR, protection, beyond the end.
    assert_eq!(
        asc(&run(&t, &n, &c10(0x41, 0, 0, 1), &[0u8; 256]).await),
        (5, 0x24, 0)
    );
    assert_eq!(
        asc(&run(&t, &n, &c10(0x41, 0x10, 0, 1), &[0u8; 512]).await),
        (5, 0x24, 0)
    );
    assert_eq!(
        asc(&run(&t, &n, &c10(0x41, 0, 2048, 1), &[0u8; 512]).await),
        (5, 0x21, 0)
    );
    // Zero blocks = to the end of the medium.
    assert_eq!(
        run(&t, &n, &c10(0x41, 0x08, 2040, 0), &[0u8; 512])
            .await
            .status,
        0
    );
    assert_eq!(
        asc(&run(&t, &n, &c16(0x9E, 0x12, 2048, 24), &[]).await),
        (5, 0x21, 0)
    );
}

#[tokio::test]
async fn unmap_command() {
    let t = mem_target();
    let n = nexus(1);
    run(&t, &n, &c10(0x2A, 0, 0, 16), &vec![1u8; 16 * 512]).await;
    let mut list = vec![0u8; 8];
    list[0..2].copy_from_slice(&22u16.to_be_bytes());
    list[2..4].copy_from_slice(&16u16.to_be_bytes());
    list.extend_from_slice(&0u64.to_be_bytes());
    list.extend_from_slice(&16u32.to_be_bytes());
    list.extend_from_slice(&[0; 4]);
    let cdb = c10(0x42, 0, 0, 24);
    assert_eq!(run(&t, &n, &cdb, &list).await.status, 0);
    let r = run(&t, &n, &c10(0x28, 0, 0, 16), &[]).await;
    assert!(r.data_in.iter().all(|&x| x == 0));
    assert_eq!(run(&t, &n, &c10(0x42, 0, 0, 0), &[]).await.status, 0);
    list[8..16].copy_from_slice(&2040u64.to_be_bytes());
    assert_eq!(asc(&run(&t, &n, &cdb, &list).await), (5, 0x21, 0));
}

#[tokio::test]
async fn without_thin_provisioning_unmap_is_not_offered_and_lbpme_is_clear() {
    let mut c = cfg(0);
    c.thin = false;
    let lu = LogicalUnit::with_backend(
        &c,
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))]);
    let n = nexus(1);
    let rc16 = run(
        &t,
        &n,
        &[0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
        &[],
    )
    .await;
    assert_eq!(rc16.status, 0);
    assert_eq!(rc16.data_in[14] & 0xc0, 0, "LBPME and LBPRZ clear");
    let mut list = vec![0u8; 8];
    list[0..2].copy_from_slice(&22u16.to_be_bytes());
    list[2..4].copy_from_slice(&16u16.to_be_bytes());
    list.extend_from_slice(&0u64.to_be_bytes());
    list.extend_from_slice(&16u32.to_be_bytes());
    list.extend_from_slice(&[0; 4]);
    assert_eq!(
        asc(&run(&t, &n, &c10(0x42, 0, 0, 24), &list).await),
        (5, 0x20, 0)
    );
    // WRITE SAME with UNMAP still writes the block (deallocation is only a hint).
    let mut ws = c10(0x41, 0x08, 0, 4);
    ws[7..9].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(run(&t, &n, &ws, &[7u8; 512]).await.status, 0);
    let r = run(&t, &n, &c10(0x28, 0, 0, 4), &[]).await;
    assert!(r.data_in.iter().all(|&x| x == 7));
}

#[tokio::test]
async fn eio_enospc_and_short_write_map_to_sense() {
    let (t, h) = fault_target();
    let n = nexus(1);
    h.add(FaultRule {
        op: FaultOp::Read,
        start: 512 * 100,
        end: 512 * 101,
        effect: FaultEffect::Eio,
    });
    assert_eq!(run(&t, &n, &c10(0x28, 0, 99, 1), &[]).await.status, 0);
    assert_eq!(
        asc(&run(&t, &n, &c10(0x28, 0, 99, 2), &[]).await),
        (3, 0x11, 0)
    );
    h.clear();
    h.add(FaultRule {
        op: FaultOp::Write,
        start: 512 * 10,
        end: 512 * 11,
        effect: FaultEffect::Short,
    });
    assert_eq!(
        asc(&run(&t, &n, &c10(0x2A, 0, 8, 4), &[3u8; 2048]).await),
        (3, 0x0C, 0)
    );
    h.clear();
    h.add(FaultRule {
        op: FaultOp::Write,
        start: 0,
        end: 1 << 30,
        effect: FaultEffect::NoSpace,
    });
    assert_eq!(
        asc(&run(&t, &n, &c10(0x2A, 0, 0, 1), &[3u8; 512]).await),
        (7, 0x27, 0x07)
    );
    h.clear();
    h.add(FaultRule {
        op: FaultOp::Flush,
        start: 0,
        end: 0,
        effect: FaultEffect::Eio,
    });
    assert_eq!(
        asc(&run(&t, &n, &c10(0x35, 0, 0, 0), &[]).await),
        (3, 0x0C, 0)
    );
}

#[tokio::test]
async fn mode_sense_select_and_unit_attention_for_other_nexus() {
    let t = mem_target();
    let (a, b) = (nexus(1), nexus(2));
    run(&t, &a, &[0; 6], &[]).await;
    run(&t, &b, &[0; 6], &[]).await;
    let r = run(&t, &a, &[0x1A, 0x08, 0x08, 0, 255, 0], &[]).await;
    assert_eq!(r.status, 0);
    assert_eq!(r.data_in[4], 0x08);
    assert_eq!(r.data_in[6] & 0x04, 0x04);
    let mut sel = r.data_in.to_vec();
    sel[0] = 0;
    sel[6] &= !0x04;
    let cdb = [0x15, 0x10, 0, 0, u8::try_from(sel.len()).unwrap(), 0];
    assert_eq!(run(&t, &a, &cdb, &sel).await.status, 0);
    let r = run(&t, &a, &[0x1A, 0x08, 0x08, 0, 255, 0], &[]).await;
    assert_eq!(r.data_in[6] & 0x04, 0);
    // Nexus b sees MODE PARAMETERS CHANGED once; INQUIRY does not consume it.
    assert_eq!(run(&t, &b, &[0x12, 0, 0, 0, 36, 0], &[]).await.status, 0);
    assert_eq!(asc(&run(&t, &b, &[0; 6], &[]).await), (6, 0x2A, 0x01));
    assert_eq!(run(&t, &b, &[0; 6], &[]).await.status, 0);
    // Saved values are not supported.
    assert_eq!(
        asc(&run(&t, &a, &[0x1A, 0, 0xFF, 0, 255, 0], &[]).await),
        (5, 0x39, 0)
    );
    // Writes still work with WCE=0 (flushed before GOOD).
    assert_eq!(
        run(&t, &a, &c10(0x2A, 0, 0, 1), &[1u8; 512]).await.status,
        0
    );
}

#[tokio::test]
async fn lun_reset_raises_ua_and_request_sense_returns_it() {
    let t = mem_target();
    let n = nexus(1);
    run(&t, &n, &[0; 6], &[]).await;
    assert_eq!(
        t.task_management(TmFunction::LogicalUnitReset, 0, &n),
        TmResponse::Complete
    );
    let r = run(&t, &n, &[0x03, 0, 0, 0, 18, 0], &[]).await;
    assert_eq!(r.status, 0);
    assert_eq!((r.data_in[2], r.data_in[12]), (6, 0x29));
    let r = run(&t, &n, &[0x03, 0, 0, 0, 18, 0], &[]).await;
    assert_eq!((r.data_in[2], r.data_in[12]), (0, 0));
    assert_eq!(
        t.task_management(TmFunction::LogicalUnitReset, 9, &n),
        TmResponse::LunDoesNotExist
    );
}

#[tokio::test]
async fn reserve6_conflicts_and_is_released_on_nexus_loss() {
    let t = mem_target();
    let (a, b) = (nexus(1), nexus(2));
    assert_eq!(run(&t, &a, &[0x16, 0, 0, 0, 0, 0], &[]).await.status, 0);
    assert_eq!(
        run(&t, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await.status,
        status::RESERVATION_CONFLICT
    );
    assert_eq!(run(&t, &b, &[0x17, 0, 0, 0, 0, 0], &[]).await.status, 0);
    assert_eq!(
        run(&t, &b, &[0x1A, 0, 0x3F, 0, 255, 0], &[]).await.status,
        status::RESERVATION_CONFLICT
    );
    assert_eq!(run(&t, &b, &[0x12, 0, 0, 0, 36, 0], &[]).await.status, 0);
    t.nexus_gone(&a);
    assert_eq!(run(&t, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await.status, 0);
}

fn prout(sa: u8, pr_type: u8, rk: u64, sark: u64) -> (Vec<u8>, Vec<u8>) {
    let mut cdb = vec![0u8; 10];
    cdb[0] = 0x5F;
    cdb[1] = sa;
    cdb[2] = pr_type;
    cdb[8] = 24;
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&rk.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    (cdb, p)
}

#[tokio::test]
async fn persistent_reservation_exclusive_access_blocks_other_nexus() {
    let t = mem_target();
    let (a, b) = (nexus(1), nexus(2));
    let (c, p) = prout(0, 0, 0, 0xA);
    assert_eq!(run(&t, &a, &c, &p).await.status, 0);
    let (c, p) = prout(0, 0, 0, 0xB);
    assert_eq!(run(&t, &b, &c, &p).await.status, 0);
    let (c, p) = prout(1, 3, 0xA, 0);
    assert_eq!(run(&t, &a, &c, &p).await.status, 0);
    assert_eq!(run(&t, &a, &c10(0x28, 0, 1, 1), &[]).await.status, 0);
    assert_eq!(
        run(&t, &b, &c10(0x28, 0, 1, 1), &[]).await.status,
        status::RESERVATION_CONFLICT
    );
    assert_eq!(
        run(&t, &b, &[0x16, 0, 0, 0, 0, 0], &[]).await.status,
        status::RESERVATION_CONFLICT
    );
    // READ KEYS from the other nexus is allowed and lists both keys.
    let r = run(&t, &b, &[0x5E, 0, 0, 0, 0, 0, 0, 0x40, 0, 0], &[]).await;
    assert_eq!(r.status, 0);
    assert_eq!(&r.data_in[4..8], &16u32.to_be_bytes());
    // Preempt by b removes a's registration and takes the reservation; a gets a UA.
    let (c, p) = prout(4, 3, 0xB, 0xA);
    assert_eq!(run(&t, &b, &c, &p).await.status, 0);
    assert_eq!(asc(&run(&t, &a, &[0; 6], &[]).await), (6, 0x2A, 0x05));
    assert_eq!(
        run(&t, &a, &c10(0x28, 0, 1, 1), &[]).await.status,
        status::RESERVATION_CONFLICT
    );
    let (c, p) = prout(3, 0, 0xB, 0);
    assert_eq!(run(&t, &b, &c, &p).await.status, 0);
    assert_eq!(run(&t, &a, &c10(0x28, 0, 1, 1), &[]).await.status, 0);
    // PR IN service actions above 3 are invalid fields, not invalid opcodes.
    assert_eq!(
        asc(&run(&t, &a, &[0x5E, 4, 0, 0, 0, 0, 0, 0x40, 0, 0], &[]).await),
        (5, 0x24, 0)
    );
}

#[tokio::test]
async fn lun_addressing_and_missing_luns() {
    let lu = LogicalUnit::with_backend(
        &cfg(300),
        Backend::Memory(MemoryBackend::new(1 << 20, false).unwrap()),
    )
    .unwrap();
    let t = Target::new("iqn.x", vec![(300, Arc::new(lu))]);
    let n = nexus(1);
    assert!(t.lun_exists(0) && t.lun_exists(300) && !t.lun_exists(5));
    let mut rl = vec![0u8; 12];
    rl[0] = 0xA0;
    rl[9] = 64;
    let r = t.execute(5, &n, &rl, &[], 64).await;
    assert_eq!(&r.data_in[0..4], &16u32.to_be_bytes());
    assert_eq!(&r.data_in[8..10], &[0, 0]);
    assert_eq!(&r.data_in[16..18], &[0x41, 0x2C]);
    let r = t.execute(0, &n, &[0x12, 0, 0, 0, 96, 0], &[], 96).await;
    assert_eq!(r.data_in[0], 0x0C);
    let r = t.execute(0, &n, &c10(0x28, 0, 0, 1), &[], 512).await;
    assert_eq!(asc(&r), (5, 0x20, 0));
    let r = t.execute(5, &n, &[0x12, 0, 0, 0, 96, 0], &[], 96).await;
    assert_eq!(r.data_in[0], 0x7F);
    assert_eq!(asc(&t.execute(5, &n, &[0; 6], &[], 0).await), (5, 0x25, 0));
    rl[9] = 8;
    assert_eq!(asc(&t.execute(0, &n, &rl, &[], 8).await), (5, 0x24, 0));
}

#[tokio::test]
async fn offline_and_read_only_lus() {
    let mut c = cfg(0);
    c.online = false;
    let lu = LogicalUnit::open(&c).unwrap();
    let t = Target::new("iqn.x", vec![(0, Arc::new(lu))]);
    let n = nexus(1);
    assert_eq!(
        t.execute(0, &n, &[0x12, 0, 0, 0, 96, 0], &[], 96)
            .await
            .status,
        0
    );
    assert_eq!(asc(&t.execute(0, &n, &[0; 6], &[], 0).await), (2, 0x3A, 0));
    assert_eq!(
        asc(&t.execute(0, &n, &c10(0x28, 0, 0, 1), &[], 512).await),
        (2, 0x3A, 0)
    );
    let mut c = cfg(0);
    c.read_only = true;
    let lu = LogicalUnit::with_backend(
        &c,
        Backend::Memory(MemoryBackend::new(1 << 20, true).unwrap()),
    )
    .unwrap();
    let t = Target::new("iqn.x", vec![(0, Arc::new(lu))]);
    assert_eq!(
        asc(&t.execute(0, &n, &c10(0x2A, 0, 0, 1), &[0; 512], 0).await),
        (7, 0x27, 0)
    );
    let r = t
        .execute(0, &n, &[0x1A, 0, 0x3F, 0, 255, 0], &[], 255)
        .await;
    assert_eq!(r.data_in[2] & 0x80, 0x80);
}

#[tokio::test]
async fn report_supported_opcodes_and_misc() {
    let t = mem_target();
    let n = nexus(1);
    let mut c = vec![0u8; 12];
    c[0] = 0xA3;
    c[1] = 0x0C;
    c[6..10].copy_from_slice(&4096u32.to_be_bytes());
    let r = run(&t, &n, &c, &[]).await;
    assert_eq!(r.status, 0);
    assert!(r.data_in.len() > 100);
    assert_eq!(run(&t, &n, &[0x1B, 0, 0, 0, 1, 0], &[]).await.status, 0);
    assert_eq!(run(&t, &n, &[0x1E, 0, 0, 0, 1, 0], &[]).await.status, 0);
    assert_eq!(run(&t, &n, &c10(0x34, 0, 0, 1), &[]).await.status, 0);
    assert_eq!(run(&t, &n, &c16(0x91, 0, 0, 0), &[]).await.status, 0);
    let r = run(&t, &n, &c10(0x37, 0, 0, 32), &[]).await;
    assert_eq!((r.status, r.data_in.len()), (0, 4));
    assert_eq!(
        asc(&run(
            &t,
            &n,
            &[0xC0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[]
        )
        .await),
        (5, 0x20, 0)
    );
}

#[tokio::test]
async fn file_backed_lu_punches_and_reports_deallocated() {
    let mut p = std::env::temp_dir();
    p.push(format!("tgt-lu-test-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    let mut c = cfg(0);
    c.path = p.clone();
    c.create_size_bytes = Some(4 << 20);
    let lu = LogicalUnit::open(&c).unwrap();
    let t = Target::new("iqn.x", vec![(0, Arc::new(lu))]);
    let n = nexus(1);
    let r = t
        .execute(0, &n, &c10(0x2A, 0, 0, 2048), &vec![0xEE; 1 << 20], 0)
        .await;
    assert_eq!(r.status, 0);
    assert_eq!(
        t.execute(0, &n, &c10(0x35, 0, 0, 0), &[], 0).await.status,
        0
    );
    assert_eq!(
        t.execute(0, &n, &c10(0x41, 0x08, 256, 256), &[0u8; 512], 0)
            .await
            .status,
        0
    );
    let r = t
        .execute(0, &n, &c10(0x28, 0, 256, 256), &[], 1 << 20)
        .await;
    assert!(r.data_in.iter().all(|&x| x == 0));
    let r = t.execute(0, &n, &c16(0x9E, 0x12, 256, 64), &[], 64).await;
    assert_eq!(r.status, 0);
    assert_eq!(&r.data_in[8..16], &256u64.to_be_bytes());
    let _ = std::fs::remove_file(&p);
}

#[tokio::test]
async fn execute_times_reads_and_writes_and_counts_every_command() {
    let t = mem_target();
    let n = nexus(1);
    assert_eq!(
        run(&t, &n, &c10(0x2A, 0, 0, 2), &[0x5A; 1024]).await.status,
        0
    );
    assert_eq!(run(&t, &n, &c10(0x28, 0, 0, 2), &[]).await.status, 0);
    assert_eq!(run(&t, &n, &c16(0x88, 0, 4, 1), &[]).await.status, 0);
    assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
    let lu = t.logical_unit(0).unwrap();
    let s = lu.counters().stats("t", 0);
    assert_eq!(s.commands_total, 4);
    assert_eq!(s.commands_in_flight, 0);
    assert_eq!(s.read_latency.counts.iter().sum::<u64>(), 2);
    assert_eq!(s.write_latency.counts.iter().sum::<u64>(), 1);
    assert_eq!((s.read_bytes_total, s.write_bytes_total), (1536, 1024));
}

#[tokio::test]
async fn a_dropped_command_leaves_the_in_flight_gauge_uncounted() {
    let t = mem_target();
    let n = nexus(1);
    let lu = Arc::clone(t.logical_unit(0).unwrap());
    // COMPARE AND WRITE of one block waits for the read-modify-write lock held here.
    let held = lu.rmw.lock().await;
    let mut caw = vec![0u8; 16];
    caw[0] = 0x89;
    caw[13] = 1;
    let mut fut = Box::pin(run(&t, &n, &caw, &[0u8; 1024]));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(std::future::Future::poll(fut.as_mut(), &mut cx).is_pending());
    assert_eq!(lu.counters().in_flight(), 1);
    drop(fut);
    drop(held);
    let s = lu.counters().stats("t", 0);
    assert_eq!(s.commands_in_flight, 0);
    assert_eq!(s.commands_total, 0, "an aborted command did not complete");
    assert_eq!(s.write_latency.counts.iter().sum::<u64>(), 0);
}

#[test]
fn backend_error_kinds_map_to_their_sense() {
    use super::medium::backend_sense;
    use crate::backend::ErrorKind;
    use crate::scsi::SenseKey;
    let cases = [
        (ErrorKind::Io, false, SenseKey::MediumError, 0x11, 0x00),
        (ErrorKind::Io, true, SenseKey::MediumError, 0x0C, 0x00),
        (ErrorKind::NoSpace, true, SenseKey::DataProtect, 0x27, 0x07),
        (
            ErrorKind::OutOfRange,
            false,
            SenseKey::IllegalRequest,
            0x21,
            0x00,
        ),
        (ErrorKind::ReadOnly, true, SenseKey::DataProtect, 0x27, 0x00),
        (ErrorKind::NotReady, false, SenseKey::NotReady, 0x04, 0x00),
        (
            ErrorKind::Unsupported,
            false,
            SenseKey::HardwareError,
            0x44,
            0x00,
        ),
    ];
    for (kind, writing, key, asc, ascq) in cases {
        let s = backend_sense(kind, writing);
        assert_eq!((s.key, s.asc, s.ascq), (key, asc, ascq), "{kind:?}");
    }
}

#[tokio::test]
async fn the_lun0_controller_needs_no_medium_and_follows_the_unit_attention_rules() {
    let lu = LogicalUnit::with_backend(
        &cfg(5),
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    let t = Target::new("iqn.2024-01.test:tgt", vec![(5, Arc::new(lu))]);
    let n = nexus(1);
    // TEST UNIT READY is GOOD and REQUEST SENSE is NO SENSE: there is no medium to miss.
    assert_eq!(t.execute(0, &n, &[0; 6], &[], 0).await.status, 0);
    let r = t.execute(0, &n, &[0x03, 0, 0, 0, 18, 0], &[], 18).await;
    assert_eq!(r.status, 0);
    assert_eq!(r.data_in, Sense::no_sense().encode());
    assert_eq!(r.cdb_transfer_bytes, Some(18));
    // A reset is reported on the next command that is not INQUIRY, REPORT LUNS or
    // REQUEST SENSE, once.
    t.task_management(TmFunction::TargetWarmReset, 0, &n);
    let r = t.execute(0, &n, &[0x12, 0, 0, 0, 36, 0], &[], 36).await;
    assert_eq!((r.status, r.data_in[0]), (0, 0x0C));
    assert_eq!(r.cdb_transfer_bytes, Some(36));
    assert_eq!(
        asc(&t.execute(0, &n, &[0; 6], &[], 0).await),
        (6, 0x29, 0x00)
    );
    assert_eq!(t.execute(0, &n, &[0; 6], &[], 0).await.status, 0);
    // REQUEST SENSE returns a pending condition as data; descriptor format is refused and
    // leaves it pending.
    t.task_management(TmFunction::TargetWarmReset, 0, &n);
    let r = t.execute(0, &n, &[0x03, 1, 0, 0, 18, 0], &[], 18).await;
    assert_eq!(asc(&r), (5, 0x24, 0x00));
    let r = t.execute(0, &n, &[0x03, 0, 0, 0, 18, 0], &[], 18).await;
    assert_eq!(r.status, 0);
    assert_eq!((r.data_in[2], r.data_in[12]), (6, 0x29));
    // Medium and mode commands are not offered, whatever their CDB says.
    let r = t.execute(0, &n, &[0x1A, 0, 0x3F, 0, 96, 0], &[], 96).await;
    assert_eq!(asc(&r), (5, 0x20, 0x00));
    assert_eq!(r.cdb_transfer_bytes, Some(96));
}

/// The last LBA and block length of a READ CAPACITY (16) answer.
fn capacity16(r: &ScsiResponse) -> (u64, u32) {
    assert_eq!(r.status, 0, "{r:?}");
    let last = u64::from_be_bytes(r.data_in[0..8].try_into().unwrap());
    let bs = u32::from_be_bytes(r.data_in[8..12].try_into().unwrap());
    (last, bs)
}

#[tokio::test]
async fn a_grown_medium_is_used_at_once_and_each_nexus_hears_of_it_once() {
    let t = mem_target();
    let lu = t.logical_unit(0).unwrap().clone();
    let (a, b, late) = (nexus(1), nexus(2), nexus(3));
    let read_cap = c16(0x9E, 0x10, 0, 32);
    for n in [&a, &b] {
        assert_eq!(
            capacity16(&run(&t, n, &read_cap, &[]).await),
            (BLOCKS - 1, BS)
        );
    }
    // Beyond the end, before the grow.
    assert_eq!(
        asc(&run(&t, &a, &c10(0x28, 0, 2 * 2048 - 1, 1), &[]).await),
        (5, 0x21, 0x00)
    );
    assert_eq!(
        lu.grow_to(2 * BLOCKS * u64::from(BS)).unwrap(),
        2 * BLOCKS,
        "the new capacity in blocks"
    );
    assert_eq!(lu.capacity_blocks(), 2 * BLOCKS);
    // Each nexus that used the LU gets CAPACITY DATA HAS CHANGED once, on its next command.
    for n in [&a, &b] {
        assert_eq!(asc(&run(&t, n, &read_cap, &[]).await), (6, 0x2A, 0x09));
        assert_eq!(
            capacity16(&run(&t, n, &read_cap, &[]).await),
            (2 * BLOCKS - 1, BS)
        );
    }
    // A nexus that never used it has nothing to hear and reads the new capacity.
    assert_eq!(
        capacity16(&run(&t, &late, &read_cap, &[]).await),
        (2 * BLOCKS - 1, BS)
    );
    // The grown blocks take writes and give them back; the old ones kept their data.
    let data = vec![0x5Au8; 512];
    let last = u32::try_from(2 * BLOCKS - 1).unwrap();
    assert_eq!(run(&t, &a, &c10(0x2A, 0, last, 1), &data).await.status, 0);
    assert_eq!(run(&t, &a, &c10(0x28, 0, last, 1), &[]).await.data_in, data);
    // Growing to the same size, or a refresh with nothing new, raises nothing.
    lu.grow_to(2 * BLOCKS * u64::from(BS)).unwrap();
    assert!(!lu.refresh_capacity());
    assert_eq!(run(&t, &a, &[0; 6], &[]).await.status, 0);
    // A shrink is refused with both sizes named, and changes nothing.
    let e = lu.grow_to(BLOCKS * u64::from(BS)).unwrap_err();
    assert!(e.to_string().contains("would lose data"), "{e}");
    assert_eq!(lu.capacity_blocks(), 2 * BLOCKS);
    assert_eq!(
        run(&t, &a, &[0; 6], &[]).await.status,
        0,
        "no UA for a refusal"
    );
    // A size that is not whole blocks is refused before the backend is touched.
    assert!(lu.grow_to(3 * BLOCKS * u64::from(BS) + 1).is_err());
    assert_eq!(lu.capacity_blocks(), 2 * BLOCKS);
}

#[tokio::test]
async fn several_grows_before_the_next_command_are_reported_once() {
    let t = mem_target();
    let lu = t.logical_unit(0).unwrap().clone();
    let n = nexus(1);
    assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
    lu.grow_to(2 * BLOCKS * u64::from(BS)).unwrap();
    lu.grow_to(3 * BLOCKS * u64::from(BS)).unwrap();
    assert_eq!(asc(&run(&t, &n, &[0; 6], &[]).await), (6, 0x2A, 0x09));
    assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
    assert_eq!(lu.capacity_blocks(), 3 * BLOCKS);
}

#[tokio::test]
async fn software_write_protect_refuses_writes_until_cleared() {
    let t = mem_target();
    let n = nexus(1);
    run(&t, &n, &[0; 6], &[]).await;
    let ms = [0x1A, 0x08, 0x0A, 0, 255, 0];
    let mut sel = run(&t, &n, &ms, &[]).await.data_in.to_vec();
    sel[0] = 0;
    sel[4 + 4] |= 0x08;
    let cdb = [0x15, 0x10, 0, 0, u8::try_from(sel.len()).unwrap(), 0];
    assert_eq!(run(&t, &n, &cdb, &sel).await.status, 0);
    assert_eq!(run(&t, &n, &ms, &[]).await.data_in[2] & 0x80, 0x80);
    assert_eq!(
        asc(&run(&t, &n, &c10(0x2A, 0, 0, 1), &[1u8; 512]).await),
        (7, 0x27, 0)
    );
    assert_eq!(run(&t, &n, &c10(0x28, 0, 0, 1), &[]).await.status, 0);
    sel[4 + 4] &= !0x08;
    sel[2] = 0;
    assert_eq!(run(&t, &n, &cdb, &sel).await.status, 0);
    assert_eq!(
        run(&t, &n, &c10(0x2A, 0, 0, 1), &[1u8; 512]).await.status,
        0
    );
}

fn mem_lu() -> Arc<LogicalUnit> {
    Arc::new(
        LogicalUnit::with_backend(
            &cfg(0),
            Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
        )
        .unwrap(),
    )
}

fn atomic16(b1: u8, lba: u64, blocks: u16) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[0] = 0x9C;
    v[1] = b1;
    v[2..10].copy_from_slice(&lba.to_be_bytes());
    v[12..14].copy_from_slice(&blocks.to_be_bytes());
    v
}

#[tokio::test]
async fn write_atomic16_writes_checks_its_limits_and_refuses_protection() {
    let t = mem_target();
    let n = nexus(1);
    let data = vec![0xA6u8; 8 * 512];
    let r = run(&t, &n, &atomic16(0x18, 16, 8), &data).await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.cdb_transfer_bytes, Some(8 * 512));
    assert_eq!(run(&t, &n, &c10(0x28, 0, 16, 8), &[]).await.data_in, data);
    // Zero blocks is fine, past the end is not.
    assert_eq!(run(&t, &n, &atomic16(0, 0, 0), &[]).await.status, 0);
    assert_eq!(
        asc(&run(&t, &n, &atomic16(0, BLOCKS + 1, 0), &[]).await),
        (5, 0x21, 0)
    );
    assert_eq!(
        asc(&run(&t, &n, &atomic16(0, BLOCKS - 1, 2), &[0u8; 1024]).await),
        (5, 0x21, 0)
    );
    // No protection information, no atomic boundaries.
    assert_eq!(
        asc(&run(&t, &n, &atomic16(0x20, 0, 1), &[0u8; 512]).await),
        (5, 0x24, 0)
    );
    let mut b = atomic16(0, 0, 1);
    b[11] = 1;
    assert_eq!(asc(&run(&t, &n, &b, &[0u8; 512]).await), (5, 0x24, 0));
    // Longer than MAXIMUM ATOMIC TRANSFER LENGTH.
    let max = crate::scsi::inquiry::BlockLimits::for_block_size(BS).max_atomic_transfer_blocks;
    let over = u16::try_from(max + 1).unwrap();
    let big = vec![0u8; usize::from(over) * 512];
    let large = LogicalUnit::with_backend(
        &cfg(0),
        Backend::Memory(MemoryBackend::new(4 * BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    let large = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(large))]);
    assert_eq!(
        run(&large, &n, &c10(0x2A, 0, 0, over), &big).await.status,
        0,
        "a plain WRITE of that length is fine"
    );
    assert_eq!(
        asc(&run(&large, &n, &atomic16(0, 0, over), &big).await),
        (5, 0x24, 0)
    );
    // A short Data-Out writes nothing at all.
    assert_eq!(
        asc(&run(&t, &n, &atomic16(0, 100, 4), &[1u8; 1024]).await),
        (5, 0x24, 0)
    );
    assert_eq!(
        run(&t, &n, &c10(0x28, 0, 100, 4), &[]).await.data_in,
        vec![0u8; 2048]
    );
}

#[tokio::test]
async fn write_atomic16_waits_for_commands_already_on_the_medium() {
    let lu = mem_lu();
    let t = Target::new("iqn.2024-01.test:tgt", vec![(0, lu.clone())]);
    let n = nexus(1);
    // A command in the middle of its backend call holds the gate shared.
    let held = lu.gate.read().await;
    let data = vec![0x5Au8; 4 * 512];
    let cdb = atomic16(0, 0, 4);
    let mut atomic = Box::pin(run(&t, &n, &cdb, &data));
    assert!(
        futures_poll_once(atomic.as_mut()).await.is_none(),
        "the atomic write must wait for the command in flight"
    );
    drop(held);
    assert_eq!(atomic.await.status, 0);
    assert_eq!(run(&t, &n, &c10(0x28, 0, 0, 4), &[]).await.data_in, data);
}

/// Polls `f` once: `Some` when it finished.
async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
    let mut f = f;
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test]
async fn physical_block_exponent_is_in_read_capacity16_and_block_limits() {
    let mut c = cfg(0);
    c.physical_block_size = 4096;
    let lu = LogicalUnit::with_backend(
        &c,
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))]);
    let n = nexus(1);
    let r = run(&t, &n, &c16(0x9E, 0x10, 0, 32), &[]).await;
    assert_eq!(
        r.data_in[13] & 0x0F,
        3,
        "8 logical blocks per physical block"
    );
    assert_eq!(r.data_in[14] & 0x3F, 0, "lowest aligned LBA 0");
    assert_eq!(r.data_in[15], 0);
    let r = run(&t, &n, &[0x12, 1, 0xB0, 0, 255, 0], &[]).await;
    assert_eq!(u16::from_be_bytes([r.data_in[6], r.data_in[7]]), 8);
    c.physical_block_size = 768;
    assert!(LogicalUnit::with_backend(
        &c,
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .is_err());
    // The default: one logical block per physical block.
    let t = mem_target();
    let r = run(&t, &n, &c16(0x9E, 0x10, 0, 32), &[]).await;
    assert_eq!(r.data_in[13] & 0x0F, 0);
}

fn sanitize_cdb(b1: u8, param_len: u16) -> Vec<u8> {
    let mut v = vec![0u8; 10];
    v[0] = 0x48;
    v[1] = b1;
    v[7..9].copy_from_slice(&param_len.to_be_bytes());
    v
}

fn overwrite_list(b0: u8, pattern: &[u8]) -> Vec<u8> {
    let mut v = vec![b0, 0];
    v.extend_from_slice(&u16::try_from(pattern.len()).unwrap().to_be_bytes());
    v.extend_from_slice(pattern);
    v
}

/// Sends TEST UNIT READY until it is GOOD (the sanitize ended); fails after 10 s.
async fn wait_ready(t: &Target, n: &Nexus) {
    for _ in 0..1000 {
        if run(t, n, &[0; 6], &[]).await.status == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the sanitize never ended");
}

#[tokio::test]
async fn sanitize_overwrite_writes_the_pattern_everywhere_and_refuses_media_access_meanwhile() {
    let t = mem_target();
    let (a, b) = (nexus(1), nexus(2));
    run(&t, &a, &c10(0x2A, 0, 0, 1), &[b'a'; 512]).await;
    // IMMED: GOOD at once, the operation runs on.
    let list = overwrite_list(0x01, &[0xAA, 0x55]);
    let r = run(&t, &a, &sanitize_cdb(0x81, 6), &list).await;
    assert_eq!(r.status, 0, "{r:?}");
    for n in [&a, &b] {
        assert_eq!(asc(&run(&t, n, &[0; 6], &[]).await), (2, 0x04, 0x1B));
        assert_eq!(
            asc(&run(&t, n, &c10(0x28, 0, 0, 1), &[]).await),
            (2, 0x04, 0x1B)
        );
        assert_eq!(run(&t, n, &[0x12, 0, 0, 0, 36, 0], &[]).await.status, 0);
        // REQUEST SENSE: GOOD, with SANITIZE IN PROGRESS and its progress indication.
        let r = run(&t, n, &[0x03, 0, 0, 0, 18, 0], &[]).await;
        assert_eq!(r.status, 0);
        assert_eq!(
            (r.data_in[2], r.data_in[12], r.data_in[13]),
            (2, 0x04, 0x1B)
        );
        assert_eq!(r.data_in[15], 0x80, "SKSV: progress indication");
    }
    // A second SANITIZE is refused while the first runs.
    assert_eq!(
        asc(&run(&t, &b, &sanitize_cdb(0x02, 0), &[]).await),
        (2, 0x04, 0x1B)
    );
    wait_ready(&t, &a).await;
    let pattern: Vec<u8> = [0xAA, 0x55].repeat(256);
    for lba in [0, 1000, BLOCKS as u32 - 1] {
        assert_eq!(
            run(&t, &a, &c10(0x28, 0, lba, 1), &[]).await.data_in,
            pattern
        );
    }
    // Without IMMED the command ends when the medium is done; INVERT flips odd passes.
    let list = overwrite_list(0x82, &[0x0F]);
    assert_eq!(run(&t, &a, &sanitize_cdb(0x01, 5), &list).await.status, 0);
    assert_eq!(
        run(&t, &a, &c10(0x28, 0, 7, 1), &[]).await.data_in,
        vec![0xF0u8; 512],
        "the second pass wrote the inverted pattern"
    );
}

#[tokio::test]
async fn sanitize_block_erase_deallocates_and_bad_requests_are_refused() {
    let t = mem_target();
    let n = nexus(1);
    run(&t, &n, &c10(0x2A, 0, 5, 1), &[b'a'; 512]).await;
    assert_eq!(run(&t, &n, &sanitize_cdb(0x02, 0), &[]).await.status, 0);
    assert_eq!(
        run(&t, &n, &c10(0x28, 0, 5, 1), &[]).await.data_in,
        vec![0u8; 512]
    );
    // CRYPTO ERASE, unknown actions, a parameter list where none belongs, reserved bits
    // and bytes, OVERWRITE parameter lengths out of 5..=block+4.
    for (cdb, data) in [
        (sanitize_cdb(0x03, 0), vec![]),
        (sanitize_cdb(0x04, 0), vec![]),
        (sanitize_cdb(0x02, 8), vec![0u8; 8]),
        (sanitize_cdb(0x1F, 8), vec![0u8; 8]),
        (sanitize_cdb(0x41, 516), overwrite_list(1, &[0xAA; 512])),
        (sanitize_cdb(0x01, 4), vec![1, 0, 0, 0]),
        (sanitize_cdb(0x01, 517), vec![1u8; 517]),
    ] {
        assert_eq!(
            asc(&run(&t, &n, &cdb, &data).await),
            (5, 0x24, 0),
            "{cdb:?}"
        );
    }
    let mut cdb = sanitize_cdb(0x01, 516);
    cdb[3] = 1;
    assert_eq!(
        asc(&run(&t, &n, &cdb, &overwrite_list(1, &[0xAA; 512])).await),
        (5, 0x24, 0)
    );
    // Another nexus's RESERVE (6) conflicts with it.
    let other = nexus(2);
    assert_eq!(run(&t, &other, &[0x16, 0, 0, 0, 0, 0], &[]).await.status, 0);
    assert_eq!(
        run(&t, &n, &sanitize_cdb(0x02, 0), &[]).await.status,
        status::RESERVATION_CONFLICT
    );
    // REPORT SUPPORTED OPERATION CODES lists the three actions we offer.
    let r = run(&t, &n, &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], &[]).await;
    let listed: Vec<u16> = r.data_in[4..]
        .chunks(8)
        .filter(|d| d[0] == 0x48)
        .map(|d| u16::from_be_bytes([d[2], d[3]]))
        .collect();
    assert_eq!(listed, [1, 2, 0x1F]);
}

#[tokio::test]
async fn a_failed_sanitize_leaves_failure_mode_only_as_ause_allows() {
    let (t, h) = fault_target();
    let n = nexus(1);
    h.add(FaultRule {
        op: FaultOp::Write,
        start: 0,
        end: 1 << 30,
        effect: FaultEffect::Eio,
    });
    let list = overwrite_list(0x01, &[0xAA]);
    assert_eq!(
        asc(&run(&t, &n, &sanitize_cdb(0x01, 5), &list).await),
        (3, 0x0C, 0)
    );
    h.clear();
    assert_eq!(
        asc(&run(&t, &n, &c10(0x28, 0, 0, 1), &[]).await),
        (3, 0x31, 0x03)
    );
    assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
    // AUSE was 0: EXIT FAILURE MODE may not leave; a successful sanitize does.
    assert_eq!(
        asc(&run(&t, &n, &sanitize_cdb(0x1F, 0), &[]).await),
        (5, 0x24, 0)
    );
    assert_eq!(run(&t, &n, &sanitize_cdb(0x02, 0), &[]).await.status, 0);
    assert_eq!(run(&t, &n, &c10(0x28, 0, 0, 1), &[]).await.status, 0);
    // Failed with AUSE=1: EXIT FAILURE MODE leaves.
    h.add(FaultRule {
        op: FaultOp::Write,
        start: 0,
        end: 1 << 30,
        effect: FaultEffect::Eio,
    });
    assert_eq!(
        asc(&run(&t, &n, &sanitize_cdb(0x21, 5), &list).await),
        (3, 0x0C, 0)
    );
    assert_eq!(run(&t, &n, &sanitize_cdb(0x1F, 0), &[]).await.status, 0);
    h.clear();
    assert_eq!(run(&t, &n, &c10(0x28, 0, 0, 1), &[]).await.status, 0);
}

#[tokio::test]
async fn sanitize_is_write_protected_under_swp() {
    let t = mem_target();
    let n = nexus(1);
    run(&t, &n, &[0; 6], &[]).await;
    let mut sel = run(&t, &n, &[0x1A, 0x08, 0x0A, 0, 255, 0], &[])
        .await
        .data_in
        .to_vec();
    sel[0] = 0;
    sel[4 + 4] |= 0x08;
    let cdb = [0x15, 0x10, 0, 0, u8::try_from(sel.len()).unwrap(), 0];
    assert_eq!(run(&t, &n, &cdb, &sel).await.status, 0);
    assert_eq!(
        asc(&run(&t, &n, &sanitize_cdb(0x02, 0), &[]).await),
        (7, 0x27, 0)
    );
}

#[tokio::test]
async fn aborting_a_waiting_sanitize_ends_the_command_not_the_operation() {
    let t = mem_target();
    let n = nexus(1);
    let list = overwrite_list(0x01, &[0x77]);
    let cdb = sanitize_cdb(0x01, 5);
    let mut cmd = Box::pin(run(&t, &n, &cdb, &list));
    assert!(futures_poll_once(cmd.as_mut()).await.is_none());
    assert_eq!(
        t.task_management(TmFunction::AbortTask, 0, &n),
        TmResponse::Complete
    );
    let r = cmd.await;
    assert_eq!(r.status, status::CHECK_CONDITION);
    // The operation goes on, then ends well.
    assert_eq!(asc(&run(&t, &n, &[0; 6], &[]).await), (2, 0x04, 0x1B));
    wait_ready(&t, &n).await;
    assert_eq!(
        run(&t, &n, &c10(0x28, 0, 9, 1), &[]).await.data_in,
        vec![0x77u8; 512]
    );
}

fn removable_target() -> Target {
    let mut c = cfg(0);
    c.removable = true;
    let lu = LogicalUnit::with_backend(
        &c,
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))])
}

fn ssu(power: u8, loej: bool, start: bool) -> [u8; 6] {
    [
        0x1B,
        0,
        0,
        0,
        (power << 4) | (u8::from(loej) << 1) | u8::from(start),
        0,
    ]
}

#[tokio::test]
async fn a_removable_medium_ejects_loads_and_refuses_removal_while_prevented() {
    let t = removable_target();
    let (a, b) = (nexus(1), nexus(2));
    assert_eq!(
        run(&t, &a, &[0x12, 0, 0, 0, 36, 0], &[]).await.data_in[1],
        0x80
    );
    run(&t, &b, &[0; 6], &[]).await;
    // Eject: medium access is NOT READY, MEDIUM NOT PRESENT; INQUIRY still answers.
    assert_eq!(run(&t, &a, &ssu(0, true, false), &[]).await.status, 0);
    assert_eq!(asc(&run(&t, &a, &[0; 6], &[]).await), (2, 0x3A, 0));
    assert_eq!(
        asc(&run(&t, &a, &c10(0x28, 0, 0, 1), &[]).await),
        (2, 0x3A, 0)
    );
    assert_eq!(
        asc(&run(&t, &a, &c10(0x25, 0, 0, 0), &[]).await),
        (2, 0x3A, 0)
    );
    assert_eq!(
        asc(&run(&t, &a, &c10(0x2A, 0, 0, 1), &[0u8; 512]).await),
        (2, 0x3A, 0)
    );
    assert_eq!(run(&t, &a, &[0x12, 0, 0, 0, 36, 0], &[]).await.status, 0);
    // Load: ready again; the other nexus hears the medium may have changed.
    assert_eq!(run(&t, &a, &ssu(0, true, true), &[]).await.status, 0);
    assert_eq!(run(&t, &a, &[0; 6], &[]).await.status, 0);
    assert_eq!(asc(&run(&t, &b, &[0; 6], &[]).await), (6, 0x28, 0));
    assert_eq!(run(&t, &b, &[0; 6], &[]).await.status, 0);
    // Prevention by any nexus refuses eject and load, for every nexus.
    assert_eq!(run(&t, &a, &[0x1E, 0, 0, 0, 1, 0], &[]).await.status, 0);
    assert_eq!(
        asc(&run(&t, &b, &ssu(0, true, false), &[]).await),
        (5, 0x53, 2)
    );
    assert_eq!(
        asc(&run(&t, &a, &ssu(0, true, true), &[]).await),
        (5, 0x53, 2)
    );
    // Without LOEJ, or with a power condition, nothing moves.
    assert_eq!(run(&t, &a, &ssu(0, false, false), &[]).await.status, 0);
    assert_eq!(run(&t, &a, &ssu(3, true, false), &[]).await.status, 0);
    assert_eq!(run(&t, &a, &[0; 6], &[]).await.status, 0);
    // ALLOW from a nexus that does not prevent changes nothing; from the one that does, it
    // lets the medium go.
    assert_eq!(run(&t, &b, &[0x1E, 0, 0, 0, 0, 0], &[]).await.status, 0);
    assert_eq!(
        asc(&run(&t, &a, &ssu(0, true, false), &[]).await),
        (5, 0x53, 2)
    );
    assert_eq!(run(&t, &a, &[0x1E, 0, 0, 0, 0, 0], &[]).await.status, 0);
    assert_eq!(run(&t, &a, &ssu(0, true, false), &[]).await.status, 0);
    assert_eq!(run(&t, &a, &ssu(0, true, true), &[]).await.status, 0);
    // Changer values are refused.
    assert_eq!(
        asc(&run(&t, &a, &[0x1E, 0, 0, 0, 2, 0], &[]).await),
        (5, 0x24, 0)
    );
}

#[tokio::test]
async fn prevention_ends_with_nexus_loss_and_resets() {
    let t = removable_target();
    let (a, b) = (nexus(1), nexus(2));
    assert_eq!(run(&t, &a, &[0x1E, 0, 0, 0, 1, 0], &[]).await.status, 0);
    t.nexus_gone(&a);
    assert_eq!(run(&t, &b, &ssu(0, true, false), &[]).await.status, 0);
    assert_eq!(run(&t, &b, &ssu(0, true, true), &[]).await.status, 0);
    assert_eq!(run(&t, &b, &[0x1E, 0, 0, 0, 1, 0], &[]).await.status, 0);
    assert_eq!(
        t.task_management(TmFunction::LogicalUnitReset, 0, &b),
        TmResponse::Complete
    );
    run(&t, &b, &[0; 6], &[]).await;
    assert_eq!(run(&t, &b, &ssu(0, true, false), &[]).await.status, 0);
}

#[tokio::test]
async fn a_fixed_medium_ignores_eject_and_has_no_rmb() {
    let t = mem_target();
    let n = nexus(1);
    assert_eq!(
        run(&t, &n, &[0x12, 0, 0, 0, 36, 0], &[]).await.data_in[1],
        0
    );
    assert_eq!(run(&t, &n, &ssu(0, true, false), &[]).await.status, 0);
    assert_eq!(run(&t, &n, &[0; 6], &[]).await.status, 0);
}

fn two_lun_target() -> (Target, [u8; 16], [u8; 16]) {
    let mk = |lun: u16, id: u64| {
        let mut c = cfg(lun);
        c.device_id = id;
        Arc::new(
            LogicalUnit::with_backend(
                &c,
                Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
            )
            .unwrap(),
        )
    };
    let (a, b) = (mk(0, 7), mk(1, 8));
    let (na, nb) = (a.identity.naa(), b.identity.naa());
    (
        Target::new("iqn.2024-01.test:tgt", vec![(0, a), (1, b)]),
        na,
        nb,
    )
}

use crate::scsi::xcopy::test_descriptors::{cscd, seg as b2b};

fn xcopy_list(id: u8, cscds: &[Vec<u8>], segs: &[Vec<u8>]) -> Vec<u8> {
    let c = cscds.concat();
    let s = segs.concat();
    let mut v = vec![0u8; 16];
    v[0] = id;
    v[2..4].copy_from_slice(&u16::try_from(c.len()).unwrap().to_be_bytes());
    v[8..12].copy_from_slice(&u32::try_from(s.len()).unwrap().to_be_bytes());
    v.extend_from_slice(&c);
    v.extend_from_slice(&s);
    v
}

fn xcopy_cdb(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[0] = 0x83;
    v[10..14].copy_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    v
}

fn rcr_cdb(sa: u8, list_id: u8) -> Vec<u8> {
    let mut v = vec![0u8; 16];
    v[0] = 0x84;
    v[1] = sa;
    v[2] = list_id;
    v[10..14].copy_from_slice(&1024u32.to_be_bytes());
    v
}

#[tokio::test]
async fn extended_copy_moves_blocks_within_and_across_luns_and_reports_results() {
    let (t, na, nb) = two_lun_target();
    let n = nexus(1);
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(run(&t, &n, &c10(0x2A, 0, 10, 8), &data).await.status, 0);
    // Within LUN 0 (one CSCD), then from LUN 0 to LUN 1, in one command.
    let l = xcopy_list(
        5,
        &[cscd(na), cscd(nb)],
        &[b2b(0, 0, 8, 10, 1000), b2b(0, 1, 8, 10, 20)],
    );
    let r = run(&t, &n, &xcopy_cdb(l.len()), &l).await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(run(&t, &n, &c10(0x28, 0, 1000, 8), &[]).await.data_in, data);
    let r = t
        .execute(1, &n, &c10(0x28, 0, 20, 8), &[][..], 1 << 20)
        .await;
    assert_eq!(r.data_in, data);
    // COPY STATUS of list 5: completed, two segments, 8 KiB.
    let d = run(&t, &n, &rcr_cdb(0, 5), &[]).await.data_in;
    assert_eq!((d[4], u16::from_be_bytes([d[5], d[6]])), (1, 2));
    assert_eq!(&d[8..12], &8192u32.to_be_bytes());
    // Another nexus, or another list, has no results.
    assert_eq!(
        asc(&run(&t, &nexus(2), &rcr_cdb(0, 5), &[]).await),
        (5, 0x24, 0)
    );
    assert_eq!(asc(&run(&t, &n, &rcr_cdb(0, 6), &[]).await), (5, 0x24, 0));
    let op = run(&t, &n, &rcr_cdb(3, 0), &[]).await.data_in;
    assert_eq!(u16::from_be_bytes([op[8], op[9]]), 4);
    assert_eq!(
        t.logical_unit(0).unwrap().counters().copies_total(),
        (1, 8192)
    );
    // An empty list copies nothing.
    assert_eq!(run(&t, &n, &xcopy_cdb(0), &[]).await.status, 0);
}

/// A copy scope that offers `peers` to the initiator named `allowed` only.
#[derive(Debug)]
struct FixedScope {
    allowed: &'static str,
    peers: Vec<Arc<Target>>,
}

impl super::CopyScope for FixedScope {
    fn reachable_targets(&self, own: &str, initiator: &str) -> Vec<Arc<Target>> {
        assert_eq!(own, "iqn.2024-01.test:tgt");
        if initiator == self.allowed {
            self.peers.clone()
        } else {
            Vec::new()
        }
    }
}

#[tokio::test]
async fn extended_copy_reaches_another_target_only_through_the_copy_scope() {
    let mut c = cfg(0);
    c.device_id = 9;
    c.target_name = "iqn.2024-01.test:other".into();
    let other_lu = Arc::new(
        LogicalUnit::with_backend(
            &c,
            Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
        )
        .unwrap(),
    );
    let n_other = other_lu.identity.naa();
    let other = Arc::new(Target::new("iqn.2024-01.test:other", vec![(0, other_lu)]));
    let (plain, na, _) = two_lun_target();
    let n = nexus(1);
    let l = xcopy_list(1, &[cscd(na), cscd(n_other)], &[b2b(0, 1, 8, 10, 30)]);
    // Without a copy scope the other target's unit is not reachable.
    let r = run(&plain, &n, &xcopy_cdb(l.len()), &l).await;
    assert_eq!(asc(&r), (0x0A, 0x0D, 0x02), "{r:?}");
    // With one, the initiator it allows copies into the other target's unit.
    let (t, _, _) = two_lun_target();
    let t = t.with_copy_scope(Arc::new(FixedScope {
        allowed: "iqn.init1",
        peers: vec![Arc::clone(&other)],
    }));
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(run(&t, &n, &c10(0x2A, 0, 10, 8), &data).await.status, 0);
    let r = run(&t, &n, &xcopy_cdb(l.len()), &l).await;
    assert_eq!(r.status, 0, "{r:?}");
    let back = other
        .execute(0, &n, &c10(0x28, 0, 30, 8), &[][..], 1 << 20)
        .await;
    assert_eq!(back.data_in, data);
    assert_eq!(
        t.logical_unit(0).unwrap().counters().copies_total(),
        (1, 4096)
    );
    // Another initiator (no session with the other target) cannot.
    let r = run(&t, &nexus(2), &xcopy_cdb(l.len()), &l).await;
    assert_eq!(asc(&r), (0x0A, 0x0D, 0x02), "{r:?}");
    let s = t.logical_unit(0).unwrap().counters().stats("t", 0);
    assert_eq!((s.copies_total, s.copy_failures_total), (2, 1));
}

#[tokio::test]
async fn extended_copy_aborts_on_unknown_luns_bad_indexes_and_ranges() {
    let (t, na, _) = two_lun_target();
    let n = nexus(1);
    for (id, l) in [
        (
            1u8,
            xcopy_list(1, &[cscd([0x61; 16])], &[b2b(0, 0, 1, 0, 1)]),
        ),
        (2, xcopy_list(2, &[cscd(na)], &[b2b(0, 1, 1, 0, 1)])),
        (
            3,
            xcopy_list(3, &[cscd(na)], &[b2b(0, 0, 8, 0, BLOCKS - 1)]),
        ),
    ] {
        let r = run(&t, &n, &xcopy_cdb(l.len()), &l).await;
        assert_eq!(r.status, status::CHECK_CONDITION, "list {id}");
        assert_eq!(r.sense[2] & 0x0F, 0x0A, "COPY ABORTED for list {id}");
        // Its status and failed segment details are kept.
        let d = run(&t, &n, &rcr_cdb(0, id), &[]).await.data_in;
        assert_eq!(d[4], 2, "completed with error");
        let f = run(&t, &n, &rcr_cdb(4, id), &[]).await.data_in;
        assert_eq!(f[60 + 2] & 0x0F, 0x0A);
    }
    // LID4 is not offered.
    let mut cdb = xcopy_cdb(0);
    cdb[1] = 0x01;
    assert_eq!(asc(&run(&t, &n, &cdb, &[]).await), (5, 0x24, 0));
    // Write protection of the destination stops the copy.
    let mut sel = run(&t, &n, &[0x1A, 0x08, 0x0A, 0, 255, 0], &[])
        .await
        .data_in
        .to_vec();
    sel[0] = 0;
    sel[4 + 4] |= 0x08;
    let ms = [0x15, 0x10, 0, 0, u8::try_from(sel.len()).unwrap(), 0];
    assert_eq!(run(&t, &n, &ms, &sel).await.status, 0);
    let l = xcopy_list(9, &[cscd(na)], &[b2b(0, 0, 1, 0, 1)]);
    let r = run(&t, &n, &xcopy_cdb(l.len()), &l).await;
    assert_eq!(r.sense[2] & 0x0F, 0x0A);
}

#[tokio::test]
async fn extended_copy_fails_a_segment_on_a_unit_being_sanitized() {
    let (t, na, nb) = two_lun_target();
    let n = nexus(1);
    // LUN 1 starts an IMMED overwrite; a copy into it fails at once instead of waiting.
    let list = overwrite_list(0x01, &[0x11]);
    let r = t
        .execute(1, &n, &sanitize_cdb(0x81, 5), &list[..], 1 << 20)
        .await;
    assert_eq!(r.status, 0);
    let l = xcopy_list(1, &[cscd(na), cscd(nb)], &[b2b(0, 1, 1, 0, 0)]);
    let r = run(&t, &n, &xcopy_cdb(l.len()), &l).await;
    assert_eq!(r.sense[2] & 0x0F, 0x0A);
}

/// The groups of an HA pair seen from gateway 1: this gateway in `local`, peer 2 in `peer`.
fn pair(
    local: crate::scsi::alua::AccessState,
    peer: crate::scsi::alua::AccessState,
) -> crate::scsi::alua::PortGroups {
    use crate::scsi::alua::{PortGroup, PortGroups};
    PortGroups::new(
        PortGroup::new(1, 1, local),
        vec![PortGroup::new(2, 2, peer)],
    )
}

#[tokio::test]
async fn an_access_state_change_is_a_unit_attention_then_gates_medium_access() {
    use crate::scsi::alua::AccessState::{
        ActiveNonOptimized, ActiveOptimized, Standby, Transitioning,
    };
    let mut c = cfg(0);
    c.alua = pair(ActiveOptimized, ActiveNonOptimized);
    let lu = LogicalUnit::with_backend(
        &c,
        Backend::Memory(MemoryBackend::new(BLOCKS * u64::from(BS), false).unwrap()),
    )
    .unwrap();
    let t = Target::new("iqn.2024-01.test:tgt", vec![(0, Arc::new(lu))]);
    let (a, b) = (nexus(1), nexus(2));
    for n in [&a, &b] {
        assert_eq!(run(&t, n, &c10(0x28, 0, 0, 1), &[]).await.status, 0);
    }
    let rtpg = [0xA3, 0x0A, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let r = run(&t, &a, &rtpg, &[]).await;
    assert_eq!(r.status, 0);
    assert_eq!(&r.data_in[..4], &24u32.to_be_bytes());
    assert_eq!((r.data_in[4] & 0x0F, r.data_in[16] & 0x0F), (0x0, 0x1));
    // Cut to the allocation length.
    let mut short = rtpg;
    short[9] = 6;
    short[8] = 0;
    assert_eq!(run(&t, &a, &short, &[]).await.data_in.len(), 6);

    let unit = t.logical_unit(0).unwrap();
    assert!(!unit.set_port_groups(&pair(ActiveOptimized, ActiveNonOptimized)));
    assert!(unit.set_port_groups(&pair(Standby, ActiveOptimized)));
    for n in [&a, &b] {
        // Told once, before anything else; then medium access is refused.
        assert_eq!(
            asc(&run(&t, n, &c10(0x28, 0, 0, 1), &[]).await),
            (6, 0x2A, 0x06)
        );
        assert_eq!(
            asc(&run(&t, n, &c10(0x28, 0, 0, 1), &[]).await),
            (2, 0x04, 0x0B)
        );
    }
    assert_eq!(asc(&run(&t, &a, &[0; 6], &[]).await), (2, 0x04, 0x0B));
    // Served in standby: INQUIRY, REPORT TARGET PORT GROUPS, READ CAPACITY (16), and
    // REQUEST SENSE, which says why the unit is not ready.
    assert_eq!(run(&t, &a, &[0x12, 0, 0, 0, 36, 0], &[]).await.status, 0);
    let r = run(&t, &a, &rtpg, &[]).await;
    assert_eq!(r.status, 0);
    assert_eq!(r.data_in[4] & 0x0F, 0x2, "standby");
    assert_eq!(r.data_in[9], 0x02, "altered by implicit behaviour");
    assert_eq!(r.data_in[16] & 0x0F, 0x0, "the peer took over");
    assert_eq!(run(&t, &a, &c16(0x9E, 0x10, 0, 32), &[]).await.status, 0);
    let r = run(&t, &a, &[0x03, 0, 0, 0, 18, 0], &[]).await;
    assert_eq!(r.status, 0);
    assert_eq!(
        (r.data_in[2] & 0x0F, r.data_in[12], r.data_in[13]),
        (2, 0x04, 0x0B)
    );

    // Transitioning, then active again: one attention each time for a, and one for b
    // which missed both.
    assert!(unit.set_port_groups(&pair(Transitioning, ActiveOptimized)));
    assert_eq!(asc(&run(&t, &a, &[0; 6], &[]).await), (6, 0x2A, 0x06));
    assert_eq!(asc(&run(&t, &a, &[0; 6], &[]).await), (2, 0x04, 0x0A));
    assert!(unit.set_port_groups(&pair(ActiveNonOptimized, ActiveOptimized)));
    assert_eq!(asc(&run(&t, &a, &[0; 6], &[]).await), (6, 0x2A, 0x06));
    assert_eq!(run(&t, &a, &c10(0x28, 0, 0, 1), &[]).await.status, 0);
    assert_eq!(asc(&run(&t, &b, &[0; 6], &[]).await), (6, 0x2A, 0x06));
    assert_eq!(run(&t, &b, &[0; 6], &[]).await.status, 0);
}

#[tokio::test]
async fn report_supported_operation_codes_lists_report_target_port_groups() {
    let t = mem_target();
    let n = nexus(1);
    // One command (REPORTING OPTIONS 010b): MAINTENANCE IN, service action 0Ah.
    let r = run(
        &t,
        &n,
        &[0xA3, 0x0C, 0x02, 0xA3, 0, 0x0A, 0, 0, 1, 0, 0, 0],
        &[],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(r.data_in[1] & 0x07, 0b011, "supported as the standard says");
    assert_eq!(&r.data_in[4..6], &[0xA3, 0xFF], "CDB usage data");
}
