//! Login and Text key=value data from the initiator: parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = tgt_dataplane::pdu::text::parse(data) {
        for (k, v) in &pairs {
            assert!(!k.contains('\0') && !v.contains('\0'));
        }
    }
});
