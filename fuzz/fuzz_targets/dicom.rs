//! The DICOM reader (`volume::read_dicom`) on one file: dicom-rs parsing, our checks of the
//! geometry and pixel description, and pixel decoding. The reader takes a path (a file or a
//! series folder), so each input is written to one scratch file first.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static PATH: std::path::PathBuf = {
            let dir = std::env::temp_dir().join(format!("medinr-fuzz-dicom-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("scratch folder");
            dir.join("input.dcm")
        };
    }
    PATH.with(|path| {
        std::fs::write(path, data).expect("scratch file");
        let _ = medinr::volume::read_dicom(path);
    });
});
