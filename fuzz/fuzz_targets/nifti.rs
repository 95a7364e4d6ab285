//! The NIfTI reader (`volume::read_nifti_from_memory`): `.nii` and `.nii.gz` bytes,
//! NIfTI-1/2, either byte order, gzip detected by magic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = medinr::volume::read_nifti_from_memory(data, std::path::Path::new("fuzz.nii"));
});
