//! The entropy decoder (`format::decode_symbols`): the first two bytes are the symbol
//! count (< 2^16, as a tensor shape would bound it), the rest the stream.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let count = u16::from_le_bytes([data[0], data[1]]) as usize;
    if let Ok(symbols) = medinr::format::decode_symbols(&data[2..], count) {
        assert_eq!(symbols.len(), count);
    }
});
