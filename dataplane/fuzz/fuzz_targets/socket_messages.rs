//! Control-socket frames and their JSON body (the socket is a trust boundary): the frame
//! header check and the request decoding never panic, and whatever config decodes is
//! validated without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tgt_proto::socket::{decode_frame_len, Request, FRAME_HEADER_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Some(header) = data.first_chunk::<FRAME_HEADER_BYTES>() {
        let _ = decode_frame_len(header);
    }
    if let Ok(Request::ApplyConfig { config, .. }) = serde_json::from_slice::<Request>(data) {
        let _ = config.validate();
    }
});
