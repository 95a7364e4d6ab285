//! Raw bytes into the container and payload parsers (`MinrFile::parse`) and into
//! `Decoder::describe` (what `medinr info` runs): framing, lengths and CRCs as an attacker
//! would write them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = medinr::format::MinrFile::parse(data);
    let _ = medinr::decoder::Decoder::describe(data);
});
