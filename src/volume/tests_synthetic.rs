//! Synthetic files: every datatype × byte order × NIfTI version, read, written back,
//! cross-checked against the `nifti` crate; and malformed input that must give errors.

use super::test_support::{synthetic_header_bytes, synthetic_values};
use super::{read_nifti, voxels, write_nifti, DataType, Header, Volume, VolumeError};
use flate2::write::GzEncoder;
use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
use std::io::{Read, Write};
use std::path::Path;

const SHAPE: [usize; 4] = [5, 4, 3, 2];

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn synthetic_file(dt: DataType, nifti2: bool, big: bool) -> (Vec<u8>, Vec<f32>) {
    let n: usize = SHAPE.iter().product();
    let values = synthetic_values(dt, n);
    let mut bytes = synthetic_header_bytes(dt, SHAPE, nifti2, big);
    bytes.extend(voxels::encode(&values, dt, big));
    (bytes, values)
}

/// Stored values read by the nifti crate, as f32.
fn nifti_crate_values(path: &Path, dt: DataType) -> Vec<f32> {
    let obj = ReaderOptions::new().read_file(path).unwrap();
    let vol = obj.into_volume();
    match dt {
        DataType::U8 => to_f32(vol.into_nifti_typed_data::<u8>().unwrap()),
        DataType::I8 => to_f32(vol.into_nifti_typed_data::<i8>().unwrap()),
        DataType::U16 => to_f32(vol.into_nifti_typed_data::<u16>().unwrap()),
        DataType::I16 => to_f32(vol.into_nifti_typed_data::<i16>().unwrap()),
        DataType::U32 => to_f32(vol.into_nifti_typed_data::<u32>().unwrap()),
        DataType::I32 => to_f32(vol.into_nifti_typed_data::<i32>().unwrap()),
        DataType::F32 => vol.into_nifti_typed_data::<f32>().unwrap(),
        DataType::F64 => to_f32(vol.into_nifti_typed_data::<f64>().unwrap()),
    }
}

fn to_f32<T: Copy + Into<f64>>(v: Vec<T>) -> Vec<f32> {
    v.into_iter().map(|x| x.into() as f32).collect()
}

/// The nifti crate's view of a NIfTI-1 file agrees with ours (header fields, raw and scaled values).
pub fn cross_check_with_nifti_crate(path: &Path, vol: &Volume) {
    let h = &vol.header;
    let obj = ReaderOptions::new().read_file(path).unwrap();
    let nh = obj.header();
    let shape = h.shape();
    for (k, &n) in shape.iter().enumerate() {
        let d = if k < nh.dim[0] as usize {
            nh.dim[k + 1] as usize
        } else {
            1
        };
        assert_eq!(d, n, "{path:?} dim");
    }
    assert_eq!(nh.datatype, h.datatype().nifti_code());
    assert_eq!(nh.scl_slope as f64, h.scl_slope);
    assert_eq!(nh.scl_inter as f64, h.scl_inter);
    assert_eq!(nh.sform_code as i32, h.sform_code);
    assert_eq!(nh.qform_code as i32, h.qform_code);
    assert_eq!(nh.srow_y.map(|v| v as f64), h.srow_y);
    assert_eq!(nh.quatern_c as f64, h.quatern_c);
    assert_eq!(nh.pixdim.map(|v| v as f64), h.pixdim);
    assert_eq!(&nh.descrip[..], &h.descrip[..]);
    let theirs = nifti_crate_values(path, h.datatype());
    assert_eq!(theirs.len(), vol.data.len());
    assert!(
        theirs
            .iter()
            .zip(&vol.data.to_f32())
            .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())),
        "{path:?}: stored values differ from the nifti crate's"
    );
    // Scaled values: the crate applies slope/inter when slope != 0.
    if h.datatype() != DataType::F64 && h.voxel_count() < 100_000 {
        let scaled = obj.into_volume().into_ndarray::<f64>().unwrap();
        let scaled: Vec<f64> = scaled.t().iter().copied().collect();
        for (s, &v) in scaled.iter().zip(&vol.data.to_f32()) {
            let ours = v as f64 * h.scl_slope() + h.scl_inter();
            assert!(
                (s - ours).abs() <= 1e-6 * ours.abs().max(1.0),
                "{s} vs {ours}"
            );
        }
    }
}

#[test]
fn every_type_order_and_version_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    for dt in DataType::ALL {
        for nifti2 in [false, true] {
            for big in [false, true] {
                for gz in [false, true] {
                    let (plain, values) = synthetic_file(dt, nifti2, big);
                    let name = format!("{dt}_{nifti2}_{big}.nii{}", if gz { ".gz" } else { "" });
                    let path = dir.path().join(&name);
                    std::fs::write(&path, if gz { gzip(&plain) } else { plain.clone() }).unwrap();

                    let vol = read_nifti(&path).unwrap();
                    let h = &vol.header;
                    assert_eq!((h.is_nifti2(), h.is_big_endian()), (nifti2, big), "{name}");
                    assert_eq!(h.datatype(), dt);
                    assert_eq!(vol.shape(), SHAPE);
                    assert_eq!(vol.ndim(), 4);
                    assert_eq!(vol.data.to_f32(), values, "{name}");
                    assert_eq!((h.scl_slope(), h.scl_inter()), (2.0, -1.0));
                    assert_eq!(h.spacing(), [1.5, 2.0, 2.5, 0.75]);
                    assert!(h.description().starts_with("synthetic nifti-"));
                    assert_eq!(h.extension_bytes().len(), 20);
                    assert_eq!(h.affine()[1][2], if nifti2 { 0.2 } else { 0.2f32 as f64 });
                    assert_eq!(h.to_bytes(), plain[..h.vox_offset()], "{name}");
                    assert_eq!(Header::from_bytes(&plain).unwrap(), *h);

                    let out = dir.path().join(format!("out_{name}"));
                    write_nifti(&out, &vol, false).unwrap();
                    let written = std::fs::read(&out).unwrap();
                    let written = if gz { gunzip(&written) } else { written };
                    assert_eq!(written, plain, "{name}: written bytes differ");

                    if !nifti2 {
                        cross_check_with_nifti_crate(&path, &vol);
                    }
                }
            }
        }
    }
}

#[test]
fn qform_follows_the_nifti_rules() {
    // 90° about z (d = sin 45°), qfac = -1 flips z; voxel sizes 1.5, 2, 2.5.
    let mut h = Header::from_bytes(&synthetic_header_bytes(
        DataType::U8,
        [2, 2, 2, 1],
        false,
        false,
    ))
    .unwrap();
    h.sform_code = 0;
    h.quatern_b = 0.0;
    h.quatern_c = 0.0;
    h.quatern_d = std::f64::consts::FRAC_1_SQRT_2;
    let a = h.affine();
    let want = [
        [0.0, -2.0, 0.0, h.qoffset_x],
        [1.5, 0.0, 0.0, h.qoffset_y],
        [0.0, 0.0, -2.5, h.qoffset_z],
    ];
    for r in 0..3 {
        for c in 0..4 {
            assert!(
                (a[r][c] - want[r][c]).abs() < 1e-9,
                "({r},{c}) {} vs {}",
                a[r][c],
                want[r][c]
            );
        }
    }
    h.qform_code = 0;
    assert_eq!(
        h.affine(),
        [
            [1.5, 0.0, 0.0, 0.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 0.0, 2.5, 0.0]
        ]
    );
}

#[test]
fn writing_converts_and_checks() {
    let dir = tempfile::tempdir().unwrap();
    let h = Header::from_bytes(&synthetic_header_bytes(
        DataType::I8,
        [3, 1, 1, 1],
        false,
        true,
    ))
    .unwrap();
    let p = dir.path().join("x.nii");
    let bad = Volume {
        data: vec![1.0; 4].into(),
        header: h.clone(),
    };
    assert!(matches!(
        write_nifti(&p, &bad, false),
        Err(VolumeError::ShapeMismatch { .. })
    ));
    let vol = Volume {
        data: vec![f32::NAN, 200.0, -2.5].into(),
        header: h,
    };
    write_nifti(&p, &vol, false).unwrap();
    assert_eq!(
        read_nifti(&p).unwrap().data.to_f32(),
        vec![0.0, 127.0, -3.0]
    );
    let err = write_nifti(&p, &vol, false).unwrap_err();
    assert!(
        matches!(&err, VolumeError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
    );
    write_nifti(&p, &vol, true).unwrap();
    assert!(matches!(
        write_nifti(&dir.path().join("x.hdr"), &vol, true),
        Err(VolumeError::HeaderPair { .. })
    ));
}

#[test]
fn non_finite_voxels_are_counted() {
    let h = Header::from_bytes(&synthetic_header_bytes(
        DataType::F32,
        [2, 2, 2, 2],
        true,
        false,
    ))
    .unwrap();
    let mut data = vec![0.0; 16];
    data[13] = f32::NAN;
    data[15] = f32::NEG_INFINITY;
    let vol = Volume {
        data: data.into(),
        header: h,
    };
    assert_eq!(vol.non_finite_count(), (2, Some([1, 0, 1, 1])));
}

// ---- malformed input ----

fn write_tmp(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn err_of(dir: &Path, name: &str, bytes: &[u8]) -> VolumeError {
    let p = write_tmp(dir, name, bytes);
    let e = read_nifti(&p).unwrap_err();
    assert_eq!(e.file(), p, "error must name the file: {e}");
    e
}

#[test]
fn malformed_files_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (good, _) = synthetic_file(DataType::I16, false, false);
    let (good2, _) = synthetic_file(DataType::I16, true, true);

    let e = err_of(d, "trunc.nii", &good[..good.len() - 10]);
    assert!(matches!(e, VolumeError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("header says 120 voxels × 2 bytes = 240 bytes from offset 368, but the file has only 230 bytes after it"), "{e}");
    let e = err_of(d, "trunc.nii.gz", &gzip(&good[..good.len() - 10]));
    assert!(matches!(e, VolumeError::Truncated { .. }), "{e}");
    let e = err_of(d, "trunc2.nii", &good2[..600]);
    assert!(matches!(e, VolumeError::Truncated { .. }), "{e}");
    let e = err_of(d, "short.nii", &good[..200]);
    assert!(matches!(e, VolumeError::Truncated { .. }), "{e}");
    let e = err_of(d, "empty.nii", &[]);
    assert!(matches!(e, VolumeError::Truncated { .. }), "{e}");
    let gz = gzip(&good);
    let e = err_of(d, "cutgz.nii.gz", &gz[..gz.len() / 2]);
    assert!(
        matches!(e, VolumeError::Gzip { .. } | VolumeError::Truncated { .. }),
        "{e}"
    );

    // Header lying about its size: huge dims on a tiny file.
    let mut lie = good.clone();
    lie[42..44].copy_from_slice(&30000i16.to_le_bytes());
    lie[44..46].copy_from_slice(&30000i16.to_le_bytes());
    let e = err_of(d, "lie.nii", &lie);
    assert!(matches!(e, VolumeError::Truncated { .. }), "{e}");
    let e = err_of(d, "lie.nii.gz", &gzip(&lie));
    assert!(matches!(e, VolumeError::Truncated { .. }), "{e}");
    // NIfTI-2 dims whose product overflows.
    let mut huge = good2.clone();
    for k in 1..=4 {
        huge[16 + 8 * k..24 + 8 * k].copy_from_slice(&(1i64 << 40).to_be_bytes());
    }
    assert!(matches!(
        err_of(d, "huge.nii", &huge),
        VolumeError::BadDims { .. }
    ));

    let mut magic = good.clone();
    magic[344..348].copy_from_slice(b"abcd");
    assert!(matches!(
        err_of(d, "magic.nii", &magic),
        VolumeError::NotNifti { .. }
    ));
    assert!(matches!(
        err_of(d, "text.nii", b"hello, this is not a scan at all"),
        VolumeError::NotNifti { .. }
    ));
    let mut pair = good.clone();
    pair[344..348].copy_from_slice(b"ni1\0");
    assert!(matches!(
        err_of(d, "pair.nii", &pair),
        VolumeError::HeaderPair { .. }
    ));
    assert!(matches!(
        err_of(d, "scan.hdr", &good),
        VolumeError::HeaderPair { .. }
    ));
    assert!(matches!(
        err_of(d, "scan.img", &good),
        VolumeError::HeaderPair { .. }
    ));

    let mut complex = good.clone();
    complex[70..72].copy_from_slice(&32i16.to_le_bytes());
    let e = err_of(d, "complex.nii", &complex);
    assert!(
        matches!(e, VolumeError::UnsupportedDataType { code: 32, .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("complex.nii") && e.to_string().contains("DT_COMPLEX64"),
        "{e}"
    );

    let mut seven = good.clone();
    seven[40..42].copy_from_slice(&7i16.to_le_bytes());
    for k in 5..=7 {
        seven[40 + 2 * k..42 + 2 * k].copy_from_slice(&2i16.to_le_bytes());
    }
    assert!(matches!(
        err_of(d, "seven.nii", &seven),
        VolumeError::BadDims { .. }
    ));
    let mut neg = good.clone();
    neg[44..46].copy_from_slice(&(-3i16).to_le_bytes());
    assert!(matches!(
        err_of(d, "neg.nii", &neg),
        VolumeError::BadDims { .. }
    ));
    let mut zero = good.clone();
    zero[40..42].copy_from_slice(&0i16.to_le_bytes());
    assert!(matches!(
        err_of(d, "zero.nii", &zero),
        VolumeError::BadDims { .. }
    ));
    let mut vox = good.clone();
    vox[108..112].copy_from_slice(&100f32.to_le_bytes());
    assert!(matches!(
        err_of(d, "vox.nii", &vox),
        VolumeError::BadHeader { .. }
    ));

    assert!(matches!(
        read_nifti(&d.join("missing.nii")),
        Err(VolumeError::Io { .. })
    ));
    assert!(matches!(
        Header::from_bytes(&good[..360]),
        Err(VolumeError::Truncated { .. })
    ));
}

#[test]
fn corrupted_headers_never_panic() {
    // Deterministic pseudo-random byte flips in the header of both versions.
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for nifti2 in [false, true] {
        let (good, _) = synthetic_file(DataType::F32, nifti2, nifti2);
        let hsize = if nifti2 { 560 } else { 368 };
        for i in 0..400 {
            let mut b = good.clone();
            for _ in 0..1 + next() % 4 {
                let pos = (next() % hsize as u64) as usize;
                b[pos] = next() as u8;
            }
            let _ = Header::from_bytes(&b);
            let p = write_tmp(dir.path(), &format!("f{i}.nii"), &b);
            if let Ok(v) = read_nifti(&p) {
                let _ = v.header.affine();
                let _ = v.header.with_shape([2, 2, 2, 2]);
                let _ = v.header.to_bytes();
            }
        }
    }
}
