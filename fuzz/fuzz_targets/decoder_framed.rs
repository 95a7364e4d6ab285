//! Structure-aware: the input framed as a `.minr` container with valid CRCs (including the
//! residual layer's), into `Decoder::from_bytes` and a bounded decode of what it accepts.
//! Raw (unframed) bytes also go through, so framing bugs stay reachable.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::decode_bounded(&common::frame_container(data));
    common::decode_bounded(data);
});
