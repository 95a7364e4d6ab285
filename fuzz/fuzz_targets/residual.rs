//! The residual stream (`residual::Reader`): header and chunk table, then chunk 0 decoded
//! — without a prediction when the header says no field is used, else against a zero
//! prediction when the chunk is small. Half the inputs get valid chunk and index CRCs
//! (`common::frame_residual`), so the range decoder itself is reached.
#![no_main]
use libfuzzer_sys::fuzz_target;
use medinr::residual::Reader;

#[path = "common.rs"]
mod common;

fn run(bytes: &[u8]) {
    let Ok(reader) = Reader::open(bytes) else {
        return;
    };
    let Ok(region) = reader.chunk_region(0) else {
        return;
    };
    let [nx, ny, _, _] = reader.header().shape;
    let voxels = (nx * ny).saturating_mul(region.z.len() * region.t.len());
    if voxels > 1 << 18 {
        return;
    }
    if reader.header().uses_field {
        let _ = reader.decode_chunk(0, Some(&vec![0.0; voxels]));
    } else {
        let _ = reader.decode_chunk(0, None);
    }
}

fuzz_target!(|data: &[u8]| {
    run(data);
    run(&common::frame_residual(data));
});
