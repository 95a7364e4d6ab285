//! Structure-aware: the input framed as a `.minr` container with valid magic and CRCs
//! (`common::frame_container`), into `MinrFile::parse` and `Decoder::describe`.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let file = common::frame_container(data);
    let _ = medinr::format::MinrFile::parse(&file);
    let _ = medinr::decoder::Decoder::describe(&file);
});
