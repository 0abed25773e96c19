//! The commands that move data between the network and the medium (SBC-3 5: READ, WRITE,
//! WRITE AND VERIFY, ORWRITE, VERIFY, COMPARE AND WRITE, WRITE SAME, UNMAP, GET LBA STATUS,
//! SYNCHRONIZE CACHE; SBC-4 5.48 WRITE ATOMIC (16)), the data buffers they use, and the one mapping from a backend error
//! kind to sense data (the SCSI layer knows nothing of backends, so it lives here).

use super::dispatch::truncate;
use super::unit::{LogicalUnit, Role};
use crate::backend::{Backend, BackendError, ErrorKind};
use crate::buf::IoBuf;
use crate::scsi::cdb::WriteKind;
use crate::scsi::provisioning;
use crate::scsi::sense::Sense;
use crate::scsi::{check_lba_range, BlockCount, Lba};

/// Largest buffer a single backend call uses for WRITE SAME / VERIFY chunking.
const CHUNK_BYTES: u64 = 1 << 20;
/// Largest range GET LBA STATUS examines per command.
const LBA_STATUS_SCAN_BYTES: u64 = 1 << 30;

/// What a backend failure looks like to an initiator: the only place a backend error kind
/// becomes sense data. `writing` picks WRITE ERROR over UNRECOVERED READ ERROR for medium
/// failures.
pub(super) fn backend_sense(kind: ErrorKind, writing: bool) -> Sense {
    match kind {
        ErrorKind::Io if writing => Sense::write_error(),
        ErrorKind::Io => Sense::unrecovered_read_error(),
        ErrorKind::NoSpace => Sense::space_allocation_failed(),
        ErrorKind::OutOfRange => Sense::lba_out_of_range(),
        ErrorKind::ReadOnly => Sense::write_protected(),
        ErrorKind::NotReady => Sense::not_ready(),
        // The backend cannot do it, the command itself was fine: report a target failure
        // rather than blaming the CDB.
        ErrorKind::Unsupported => Sense::internal_target_failure(),
    }
}

fn sense_write(e: &BackendError) -> Sense {
    backend_sense(e.kind, true)
}

fn sense_read(e: &BackendError) -> Sense {
    backend_sense(e.kind, false)
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

fn to_usize(v: u64) -> Result<usize, Sense> {
    usize::try_from(v).map_err(|_| Sense::invalid_field_in_cdb(0, None))
}

impl LogicalUnit {
    /// The backend, or NOT READY / MEDIUM NOT PRESENT when offline or ejected.
    pub(super) fn medium(&self) -> Result<&Backend, Sense> {
        if self.ejected.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Sense::medium_not_present());
        }
        self.backend.as_ref().ok_or(Sense::medium_not_present())
    }

    /// Whether the unit can serve a command that needs no data from the medium: a disk
    /// needs its medium (NOT READY / MEDIUM NOT PRESENT when offline); the controller has
    /// none and is always ready.
    pub(super) fn ready(&self) -> Result<(), Sense> {
        match self.role {
            Role::Controller => Ok(()),
            Role::Disk => self.medium().map(|_| ()),
        }
    }

    pub(super) fn writable(&self) -> Result<&Backend, Sense> {
        let b = self.medium()?;
        if self.read_only || self.state().mode.swp {
            return Err(Sense::write_protected());
        }
        Ok(b)
    }

    fn check_transfer_len(&self, n: BlockCount, field_byte: u16) -> Result<(), Sense> {
        if n.0 > u64::from(self.identity.limits.max_transfer_blocks) {
            return Err(Sense::invalid_field_in_cdb(field_byte, None));
        }
        Ok(())
    }

    async fn flush_if(&self, b: &Backend, needed: bool) -> Result<(), Sense> {
        if needed {
            b.flush().await.map_err(|e| sense_write(&e))?;
        }
        Ok(())
    }

    pub(super) async fn read(&self, lba: Lba, blocks: BlockCount) -> Result<IoBuf, Sense> {
        let b = self.medium()?;
        check_lba_range(lba, blocks, self.blocks())?;
        self.check_transfer_len(blocks, 7)?;
        if blocks.0 == 0 {
            return Ok(IoBuf::empty());
        }
        let (off, len) = self.bytes(lba, blocks);
        let buf = self.data_buf(to_usize(len)?).await?;
        let _shared = self.gate.read().await;
        let (buf, r) = b.read(off, buf).await;
        r.map_err(|e| sense_read(&e))?;
        Ok(buf)
    }

    /// A buffer of `len` bytes for the medium's data: from this LU's pool, waiting up to
    /// `POOL_WAIT_MS_MAX` when all are in use; or a vector for LUs built without a pool
    /// (unit tests, tools), for transfers longer than a pool buffer (OPTIMAL TRANSFER LENGTH
    /// tells initiators to stay within one) and after a wait that timed out, both counted in
    /// the pool's heap fallbacks. The bound keeps a command that already holds a buffer (the
    /// Data-Out of an ORWRITE or COMPARE AND WRITE, if the transport gave it one) from
    /// waiting forever on a pool only it could refill.
    pub(super) async fn data_buf(&self, len: usize) -> Result<IoBuf, Sense> {
        let Some(pool) = &self.pool else {
            return Ok(IoBuf::Vec(vec![0u8; len]));
        };
        if len > pool.buf_size_bytes() {
            pool.note_heap();
            return Ok(IoBuf::Vec(vec![0u8; len]));
        }
        let got = match pool.try_get() {
            Some(p) => Some(p),
            // Another wait already timed out and nothing came back: do not wait again.
            None if pool.is_starved() => None,
            None => tokio::time::timeout(
                std::time::Duration::from_millis(crate::limits::POOL_WAIT_MS_MAX),
                pool.get(),
            )
            .await
            .ok(),
        };
        let Some(mut p) = got else {
            pool.mark_starved();
            pool.note_heap();
            return Ok(IoBuf::Vec(vec![0u8; len]));
        };
        p.set_len(len)
            .map_err(|_| Sense::invalid_field_in_cdb(0, None))?;
        Ok(IoBuf::Pool(p))
    }

    /// Largest piece VERIFY and WRITE SAME move per backend call: one data buffer.
    fn chunk_bytes(&self) -> u64 {
        self.pool.as_ref().map_or(CHUNK_BYTES, |p| {
            u64::try_from(p.buf_size_bytes())
                .unwrap_or(CHUNK_BYTES)
                .min(CHUNK_BYTES)
        })
    }

    pub(super) async fn write(
        &self,
        kind: WriteKind,
        lba: Lba,
        blocks: BlockCount,
        fua: bool,
        mut data_out: IoBuf,
    ) -> Result<Vec<u8>, Sense> {
        let b = self.writable()?;
        check_lba_range(lba, blocks, self.blocks())?;
        self.check_transfer_len(blocks, 7)?;
        if kind == WriteKind::Atomic
            && blocks.0 > u64::from(self.identity.limits.max_atomic_transfer_blocks)
        {
            return Err(Sense::invalid_field_in_cdb(12, None));
        }
        let (off, len) = self.bytes(lba, blocks);
        // Only whole blocks that actually arrived are written.
        let bs = u64::from(self.block_size);
        let have = (data_out.len() as u64).min(len) / bs * bs;
        if have == 0 {
            return Ok(Vec::new());
        }
        if kind == WriteKind::Atomic && have != len {
            // All or nothing: an atomic write whose data did not all arrive writes nothing.
            return Err(Sense::invalid_field_in_cdb(12, None));
        }
        data_out.truncate(to_usize(have)?);
        // WRITE ATOMIC excludes every other medium command for its one backend write; the
        // rest only exclude it.
        let (_shared, _exclusive) = if kind == WriteKind::Atomic {
            (None, Some(self.gate.write().await))
        } else {
            (Some(self.gate.read().await), None)
        };
        if kind == WriteKind::Or {
            let _guard = self.rmw.lock().await;
            let old = self.data_buf(data_out.len()).await?;
            let (mut old, r) = b.read(off, old).await;
            r.map_err(|e| sense_read(&e))?;
            for (o, n) in old.iter_mut().zip(data_out.iter()) {
                *o |= *n;
            }
            let (_, r) = b.write(off, old).await;
            r.map_err(|e| sense_write(&e))?;
        } else {
            // The Data-Out buffer itself goes to the backend: no copy on the write path.
            let (_, r) = b.write(off, data_out).await;
            r.map_err(|e| sense_write(&e))?;
        }
        let wce = self.state().mode.wce;
        self.flush_if(b, fua || !wce || kind == WriteKind::Verify)
            .await?;
        Ok(Vec::new())
    }

    pub(super) async fn verify(
        &self,
        lba: Lba,
        blocks: BlockCount,
        bytchk: u8,
        data_out: &[u8],
    ) -> Result<Vec<u8>, Sense> {
        let b = self.medium()?;
        check_lba_range(lba, blocks, self.blocks())?;
        if bytchk != 0 {
            self.check_transfer_len(blocks, 7)?;
        }
        let (off, len) = self.bytes(lba, blocks);
        let bs = u64::from(self.block_size);
        let _shared = self.gate.read().await;
        let mut pos = 0u64;
        while pos < len {
            let n = (len - pos).min(self.chunk_bytes());
            let buf = self.data_buf(to_usize(n)?).await?;
            let (buf, r) = b.read(off + pos, buf).await;
            r.map_err(|e| sense_read(&e))?;
            match bytchk {
                1 => {
                    let start = to_usize(pos)?;
                    if start >= data_out.len() {
                        break;
                    }
                    let end = (start + buf.len()).min(data_out.len());
                    if let Some(i) = first_diff(&buf, &data_out[start..end]) {
                        return Err(Sense::miscompare(
                            u32::try_from(pos + i as u64).unwrap_or(u32::MAX),
                        ));
                    }
                }
                3 => {
                    let block = data_out
                        .get(..to_usize(bs)?)
                        .ok_or(Sense::param_list_length_error())?;
                    for (ci, chunk) in buf.chunks(block.len()).enumerate() {
                        if let Some(i) = first_diff(chunk, block) {
                            let at = pos + (ci * block.len() + i) as u64;
                            return Err(Sense::miscompare(u32::try_from(at).unwrap_or(u32::MAX)));
                        }
                    }
                }
                _ => {}
            }
            pos += n;
        }
        Ok(Vec::new())
    }

    pub(super) async fn compare_and_write(
        &self,
        lba: Lba,
        blocks: BlockCount,
        fua: bool,
        data_out: &[u8],
    ) -> Result<Vec<u8>, Sense> {
        let b = self.writable()?;
        check_lba_range(lba, blocks, self.blocks())?;
        if blocks.0 > u64::from(self.identity.limits.max_compare_and_write_blocks) {
            return Err(Sense::invalid_field_in_cdb(13, None));
        }
        let (off, len) = self.bytes(lba, blocks);
        if data_out.len() as u64 != len * 2 {
            // The data-out must hold exactly the verify and the write instance.
            return Err(Sense::invalid_field_in_cdb(13, None));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let n = to_usize(len)?;
        let _shared = self.gate.read().await;
        let _guard = self.rmw.lock().await;
        let cur = self.data_buf(n).await?;
        let (cur, r) = b.read(off, cur).await;
        r.map_err(|e| sense_read(&e))?;
        if let Some(i) = first_diff(&cur, &data_out[..n]) {
            return Err(Sense::miscompare(u32::try_from(i).unwrap_or(u32::MAX)));
        }
        // The read buffer is spent: it carries the write instance to the backend.
        let mut new = cur;
        new.copy_from_slice(&data_out[n..]);
        let (_, r) = b.write(off, new).await;
        r.map_err(|e| sense_write(&e))?;
        let wce = self.state().mode.wce;
        self.flush_if(b, fua || !wce).await?;
        Ok(Vec::new())
    }

    pub(super) async fn write_same(
        &self,
        lba: Lba,
        blocks: BlockCount,
        unmap: bool,
        ndob: bool,
        sixteen: bool,
        data_out: &[u8],
    ) -> Result<Vec<u8>, Sense> {
        let b = self.writable()?;
        let len_byte = if sixteen { 10 } else { 7 };
        // WSNZ=0: zero blocks means "to the last LBA" (SBC-3 5.45).
        let blocks = if blocks.0 == 0 {
            if lba.0 > self.blocks() {
                return Err(Sense::lba_out_of_range());
            }
            BlockCount(self.blocks().saturating_sub(lba.0))
        } else {
            blocks
        };
        check_lba_range(lba, blocks, self.blocks())?;
        if blocks.0 > self.identity.limits.max_write_same_blocks {
            return Err(Sense::invalid_field_in_cdb(len_byte, None));
        }
        let bs = to_usize(u64::from(self.block_size))?;
        let zero_block;
        let block: &[u8] = if ndob {
            zero_block = vec![0u8; bs];
            &zero_block
        } else {
            if data_out.len() != bs {
                return Err(Sense::invalid_field_in_cdb(len_byte, None));
            }
            data_out
        };
        let (off, len) = self.bytes(lba, blocks);
        if len == 0 {
            return Ok(Vec::new());
        }
        let all_zero = block.iter().all(|&x| x == 0);
        let _shared = self.gate.read().await;
        if unmap && self.identity.thin {
            // UNMAP=1 asks for deallocation whatever the data block holds (SBC-4 §5.48;
            // libiscsi's WriteSame10.UnmapUntilEnd writes 0xFF blocks and expects zeroes
            // back because LBPRZ=1).
            b.punch_hole(off, len).await.map_err(|e| sense_write(&e))?;
        } else if all_zero {
            b.write_zeroes(off, len)
                .await
                .map_err(|e| sense_write(&e))?;
        } else {
            let per_chunk = (self.chunk_bytes() / bs as u64).max(1);
            let mut done = 0u64;
            while done < blocks.0 {
                let n = (blocks.0 - done).min(per_chunk);
                let mut buf = self.data_buf(to_usize(n * bs as u64)?).await?;
                for chunk in buf.chunks_mut(bs) {
                    chunk.copy_from_slice(block);
                }
                let (_, r) = b.write(off + done * bs as u64, buf).await;
                r.map_err(|e| sense_write(&e))?;
                done += n;
            }
        }
        let wce = self.state().mode.wce;
        self.flush_if(b, !wce).await?;
        Ok(Vec::new())
    }

    pub(super) async fn unmap(&self, param_len: u32, data_out: &[u8]) -> Result<Vec<u8>, Sense> {
        let b = self.writable()?;
        let n = usize::try_from(param_len)
            .unwrap_or(usize::MAX)
            .min(data_out.len());
        let limits = self.identity.limits;
        let ranges = provisioning::parse_unmap(
            &data_out[..n],
            self.blocks(),
            limits.max_unmap_descriptors,
            limits.max_unmap_lba_count,
        )?;
        let _shared = self.gate.read().await;
        for (lba, count) in ranges {
            let (off, len) = self.bytes(lba, count);
            b.punch_hole(off, len).await.map_err(|e| sense_write(&e))?;
        }
        Ok(Vec::new())
    }

    pub(super) async fn get_lba_status(&self, lba: Lba, alloc_len: u32) -> Result<Vec<u8>, Sense> {
        let b = self.medium()?;
        if lba.0 >= self.blocks() {
            return Err(Sense::lba_out_of_range());
        }
        let bs = u64::from(self.block_size);
        let scan_blocks = (LBA_STATUS_SCAN_BYTES / bs).max(1);
        let end = self.blocks().min(lba.0.saturating_add(scan_blocks));
        let (off, len) = self.bytes(lba, BlockCount(end.saturating_sub(lba.0)));
        let extents = b
            .allocation_status(off, len)
            .await
            .map_err(|e| sense_read(&e))?;
        let runs: Vec<(u64, u64, bool)> = extents
            .iter()
            .map(|e| (e.offset, e.len, e.mapped))
            .collect();
        let mut status = provisioning::block_runs(&runs, self.block_size, lba.0, end);
        let max_desc = (usize::try_from(alloc_len)
            .unwrap_or(usize::MAX)
            .saturating_sub(8)
            / 16)
            .max(1);
        status.truncate(max_desc);
        Ok(truncate(provisioning::lba_status_data(&status), alloc_len))
    }

    pub(super) async fn sync_cache(&self, lba: Lba, blocks: BlockCount) -> Result<Vec<u8>, Sense> {
        let b = self.medium()?;
        let blocks = if blocks.0 == 0 {
            BlockCount(self.blocks().saturating_sub(lba.0))
        } else {
            blocks
        };
        check_lba_range(lba, blocks, self.blocks())?;
        b.flush().await.map_err(|e| sense_write(&e))?;
        Ok(Vec::new())
    }
}
