//! Test helpers: where the sample scans live, and synthetic NIfTI files built byte by
//! byte at literal offsets (independently of `layout.rs`, so the two check each other).

use super::{DataType, Header};
use std::path::{Path, PathBuf};

/// `$CARGO_MANIFEST_DIR/data` (in the main crate: /work/main/data).
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn nifti_files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".nii") || n.ends_with(".nii.gz")
        })
        .collect();
    v.sort();
    v
}

/// Every scan in data/, plus ../shared/data when that folder exists.
pub fn sample_files() -> Vec<PathBuf> {
    let mut v = nifti_files_in(&data_dir());
    v.extend(nifti_files_in(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    ));
    v
}

/// A sample from data/ by name.
pub fn sample(name: &str) -> PathBuf {
    data_dir().join(name)
}

/// Little byte writer at literal offsets.
struct W {
    b: Vec<u8>,
    big: bool,
}

impl W {
    fn put(&mut self, off: usize, le: &[u8]) {
        let mut v = le.to_vec();
        if self.big {
            v.reverse();
        }
        self.b[off..off + v.len()].copy_from_slice(&v);
    }
    fn i16(&mut self, off: usize, v: i16) {
        self.put(off, &v.to_le_bytes())
    }
    fn i32(&mut self, off: usize, v: i32) {
        self.put(off, &v.to_le_bytes())
    }
    fn i64(&mut self, off: usize, v: i64) {
        self.put(off, &v.to_le_bytes())
    }
    fn f32(&mut self, off: usize, v: f32) {
        self.put(off, &v.to_le_bytes())
    }
    fn f64(&mut self, off: usize, v: f64) {
        self.put(off, &v.to_le_bytes())
    }
    fn text(&mut self, off: usize, s: &[u8]) {
        self.b[off..off + s.len()].copy_from_slice(s);
    }
}

/// An oblique-ish geometry shared by both versions.
const PIXDIM: [f64; 8] = [-1.0, 1.5, 2.0, 2.5, 0.75, 0.0, 0.0, 0.0];
const QUAT: [f64; 6] = [0.1, -0.2, 0.3, -40.0, 12.5, 7.25];
const SROW: [[f64; 4]; 3] = [
    [1.4, 0.1, 0.0, -40.0],
    [-0.1, 1.9, 0.2, 12.5],
    [0.0, -0.3, 2.4, 7.25],
];
/// One 16-byte comment extension (esize 16, ecode 6, 8 bytes of text).
const EXT_BODY: &[u8; 8] = b"medinr!\0";

/// Header bytes (up to vox_offset) of a synthetic scan with scaling, xforms, a description
/// and one extension.
pub fn synthetic_header_bytes(dt: DataType, shape: [usize; 4], nifti2: bool, big: bool) -> Vec<u8> {
    let dim0 = if shape[3] > 1 { 4 } else { 3 };
    let dims = [dim0, shape[0], shape[1], shape[2], shape[3], 1, 1, 1];
    let (size, vox) = if nifti2 { (540, 560) } else { (348, 368) };
    let mut w = W {
        b: vec![0u8; vox],
        big,
    };
    w.i32(0, size as i32);
    if nifti2 {
        w.text(4, b"n+2\0\r\n\x1a\n");
        w.i16(12, dt.nifti_code());
        w.i16(14, (dt.bytes() * 8) as i16);
        for (i, &d) in dims.iter().enumerate() {
            w.i64(16 + 8 * i, d as i64);
        }
        w.f64(80, 3.0); // intent_p1
        for (i, &p) in PIXDIM.iter().enumerate() {
            w.f64(104 + 8 * i, p);
        }
        w.i64(168, vox as i64);
        w.f64(176, 2.0); // scl_slope
        w.f64(184, -1.0); // scl_inter
        w.f64(192, 100.0); // cal_max
        w.f64(216, 0.5); // toffset
        w.text(240, b"synthetic nifti-2");
        w.i32(344, 1); // qform_code
        w.i32(348, 2); // sform_code
        for (i, &q) in QUAT.iter().enumerate() {
            w.f64(352 + 8 * i, q);
        }
        for (r, row) in SROW.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                w.f64(400 + 32 * r + 8 * c, v);
            }
        }
        w.i32(500, 2 | 8); // mm, s
        w.i32(504, 1001); // intent_code
        w.text(508, b"estimate");
    } else {
        w.text(344, b"n+1\0");
        w.i16(70, dt.nifti_code());
        w.i16(72, (dt.bytes() * 8) as i16);
        for (i, &d) in dims.iter().enumerate() {
            w.i16(40 + 2 * i, d as i16);
        }
        w.f32(56, 3.0);
        for (i, &p) in PIXDIM.iter().enumerate() {
            w.f32(76 + 4 * i, p as f32);
        }
        w.f32(108, vox as f32);
        w.f32(112, 2.0);
        w.f32(116, -1.0);
        w.f32(124, 100.0);
        w.f32(136, 0.5);
        w.text(148, b"synthetic nifti-1");
        w.i16(252, 1);
        w.i16(254, 2);
        for (i, &q) in QUAT.iter().enumerate() {
            w.f32(256 + 4 * i, q as f32);
        }
        for (r, row) in SROW.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                w.f32(280 + 16 * r + 4 * c, v as f32);
            }
        }
        w.b[123] = 2 | 8;
        w.i16(68, 1001);
        w.text(328, b"estimate");
    }
    // Extension flag, then one extension: esize, ecode (in the header's byte order), body.
    w.text(size, &[1, 0, 0, 0]);
    w.i32(size + 4, 16);
    w.i32(size + 8, 6);
    w.text(size + 12, EXT_BODY);
    w.b
}

/// The synthetic header, parsed.
pub fn synthetic_header(dt: DataType, shape: [usize; 4], nifti2: bool, big: bool) -> Header {
    Header::from_bytes(&synthetic_header_bytes(dt, shape, nifti2, big)).unwrap()
}

/// Test values that every type can hold exactly (so they survive a round trip).
pub fn synthetic_values(dt: DataType, n: usize) -> Vec<f32> {
    let (lo, hi) = dt.range();
    (0..n)
        .map(|i| {
            let v = match i % 7 {
                0 => lo,
                1 => hi,
                2 => 0.0,
                3 => (i as f64) - 3.0 * n as f64 / 4.0,
                4 => 1.0,
                5 => (i * 37 % 1000) as f64,
                _ => -(i as f64) * 0.5,
            };
            let v = if dt.is_integer() {
                v.round().clamp(lo.max(-16_777_216.0), hi.min(16_777_216.0))
            } else {
                v.clamp(-3.0e38, 3.0e38)
            };
            v as f32
        })
        .collect()
}
