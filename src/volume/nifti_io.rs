//! Reading and writing single-file NIfTI scans (`.nii`, `.nii.gz`).
//!
//! Why by hand rather than with the `nifti` crate: nifti 0.18 parses only NIfTI-1 headers
//! (no NIfTI-2), stores dims as u16, decides gzip by file name, and its writer rebuilds
//! headers (resetting scl_slope/inter and dropping unknown bytes). We need NIfTI-2, both
//! byte orders, gzip detection by magic bytes, and byte-exact round trips, so the header
//! is decoded at the fixed NIfTI-1/NIfTI-2 offsets ([`super::layout`]) and the original
//! bytes up to vox_offset are kept verbatim. The `nifti` crate is still used in the tests
//! as an independent reader to cross-check ours.

use super::header::Header;
use super::{voxels, Volume, VolumeError};
use crate::atomic_file::write_atomic;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::path::Path;

/// Deflate cannot expand data more than about 1032:1; bounds the allocation for a gzip file.
const MAX_GZIP_RATIO: u64 = 1100;

fn io_err(path: &Path, action: &'static str, source: std::io::Error) -> VolumeError {
    VolumeError::Io {
        file: path.to_path_buf(),
        action,
        source,
    }
}

/// True for `.hdr`/`.img` names (with or without `.gz`): the unsupported two-file format.
fn is_pair_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    name.ends_with(".hdr") || name.ends_with(".img")
}

/// Read until `buf` holds `want` bytes or the stream ends.
fn read_up_to(
    src: &mut dyn Read,
    buf: &mut Vec<u8>,
    want: usize,
    on_err: &dyn Fn(std::io::Error) -> VolumeError,
) -> Result<(), VolumeError> {
    let need = want.saturating_sub(buf.len()) as u64;
    src.take(need).read_to_end(buf).map_err(on_err)?;
    Ok(())
}

/// Read a `.nii` or `.nii.gz` scan (gzip detected by its magic bytes): NIfTI-1 or NIfTI-2,
/// either byte order, 3D or 4D, u8 i8 u16 i16 u32 i32 f32 f64. Values are the stored ones,
/// before scl_slope/scl_inter. Bytes after the voxel data are ignored.
pub fn read_nifti(path: &Path) -> Result<Volume, VolumeError> {
    let (header, bytes) = read_nifti_bytes(path)?;
    to_volume(header, bytes, path)
}

/// Like [`read_nifti`], for a scan already in memory (`bytes`: the whole `.nii` or `.nii.gz`
/// file). `name` only names the scan in errors (and refuses `.hdr`/`.img` pair names as
/// [`read_nifti`] does); nothing is read from the file system. It exists so the reader can be
/// exercised without files (the fuzz targets in `fuzz/`), and for callers that hold scans
/// in memory.
pub fn read_nifti_from_memory(bytes: &[u8], name: &Path) -> Result<Volume, VolumeError> {
    if is_pair_name(name) {
        return Err(VolumeError::HeaderPair {
            file: name.to_path_buf(),
        });
    }
    let (header, voxel_bytes) = read_from(bytes, bytes.len() as u64, name)?;
    to_volume(header, voxel_bytes, name)
}

/// Stored voxel bytes to a [`Volume`], refusing integers f32 cannot hold exactly.
fn to_volume(header: Header, bytes: Vec<u8>, path: &Path) -> Result<Volume, VolumeError> {
    if let Some((index, value)) =
        voxels::first_inexact(&bytes, header.datatype(), header.is_big_endian())
    {
        return Err(VolumeError::InexactInteger {
            file: path.to_path_buf(),
            index,
            value,
            datatype: header.datatype().name(),
        });
    }
    let data = voxels::Voxels::decode(&bytes, header.datatype(), header.is_big_endian());
    drop(bytes);
    Ok(Volume { data, header })
}

/// Like [`read_nifti`] but returns the voxel bytes exactly as stored (header byte order).
pub fn read_nifti_bytes(path: &Path) -> Result<(Header, Vec<u8>), VolumeError> {
    if is_pair_name(path) {
        return Err(VolumeError::HeaderPair {
            file: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(|e| io_err(path, "cannot open", e))?;
    let file_len = file
        .metadata()
        .map_err(|e| io_err(path, "cannot stat", e))?
        .len();
    read_from(BufReader::new(file), file_len, path)
}

/// The reader behind [`read_nifti_bytes`] and [`read_nifti_from_memory`]: `reader` yields
/// the file's `file_len` bytes (which bound what is allocated); `path` names it in errors.
fn read_from(
    mut reader: impl BufRead,
    file_len: u64,
    path: &Path,
) -> Result<(Header, Vec<u8>), VolumeError> {
    let gzipped = reader
        .fill_buf()
        .map_err(|e| io_err(path, "cannot read", e))?
        .starts_with(&[0x1f, 0x8b]);
    let mut src: Box<dyn Read + '_> = if gzipped {
        Box::new(MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let on_err = |source: std::io::Error| {
        if gzipped {
            VolumeError::Gzip {
                file: path.to_path_buf(),
                source,
            }
        } else {
            io_err(path, "cannot read", source)
        }
    };

    let mut buf = Vec::with_capacity(540);
    read_up_to(&mut *src, &mut buf, 540, &on_err)?;
    let parsed = Header::parse_fixed(&buf).map_err(|e| e.in_file(path))?;
    let (vox_offset, data_bytes) = (parsed.vox_offset, parsed.data_bytes);
    let mut header = parsed.header;
    let dt = header.datatype();
    let truncated = |available: u64| {
        VolumeError::Truncated {
        file: path.to_path_buf(),
        detail: format!(
            "header says {} voxels × {} byte{} = {} bytes from offset {}, but the file has only {} bytes after it{}",
            header.voxel_count(),
            dt.bytes(),
            if dt.bytes() == 1 { "" } else { "s" },
            data_bytes,
            vox_offset,
            available,
            if gzipped { " (decompressed)" } else { "" }
        ),
    }
    };

    let total = vox_offset
        .checked_add(data_bytes)
        .ok_or_else(|| truncated(0))?;
    // Bound what we allocate by what the file can possibly hold.
    let max_len = if gzipped {
        file_len.saturating_mul(MAX_GZIP_RATIO)
    } else {
        file_len
    };
    if total as u64 > max_len {
        if !gzipped {
            if (vox_offset as u64) > file_len {
                return Err(VolumeError::Truncated {
                    file: path.to_path_buf(),
                    detail: format!(
                        "vox_offset is {vox_offset}, but the file has only {file_len} bytes"
                    ),
                });
            }
            return Err(truncated(file_len - vox_offset as u64));
        }
        return Err(VolumeError::Truncated {
            file: path.to_path_buf(),
            detail: format!(
                "header asks for {total} bytes, more than a {file_len}-byte gzip file can decompress to"
            ),
        });
    }
    buf.try_reserve_exact(total.saturating_sub(buf.len()))
        .map_err(|e| io_err(path, "cannot allocate memory for", std::io::Error::other(e)))?;
    read_up_to(&mut *src, &mut buf, total, &on_err)?;
    buf.truncate(total);
    if buf.len() < vox_offset {
        return Err(VolumeError::Truncated {
            file: path.to_path_buf(),
            detail: format!(
                "vox_offset is {vox_offset}, but the file has only {} bytes",
                buf.len()
            ),
        });
    }
    if buf.len() < total {
        return Err(truncated((buf.len() - vox_offset) as u64));
    }
    if gzipped {
        // Read the gzip stream to its end so its CRC and length trailer are checked: a
        // corrupted .nii.gz must fail here, not decode into wrong voxels.
        std::io::copy(&mut src, &mut std::io::sink()).map_err(&on_err)?;
    }
    let ext_start = if header.is_nifti2() { 540 } else { 348 };
    header.set_extension_bytes(buf.get(ext_start..vox_offset).unwrap_or(&[]));
    // In place: the voxel bytes are most of the file, so no second copy of them.
    buf.drain(..vox_offset);
    Ok((header, buf))
}

/// Write `vol` to `path`: gzip when the name ends in `.gz`, plain otherwise; the header in
/// its original version and byte order (extensions kept); f32 values converted to the header
/// datatype (integers rounded to nearest, clamped, NaN → 0). Written atomically; refuses to
/// replace an existing file unless `overwrite`.
pub fn write_nifti(path: &Path, vol: &Volume, overwrite: bool) -> Result<(), VolumeError> {
    if is_pair_name(path) {
        return Err(VolumeError::HeaderPair {
            file: path.to_path_buf(),
        });
    }
    let h = &vol.header;
    let expected = h.voxel_count();
    if vol.data.len() != expected {
        return Err(VolumeError::ShapeMismatch {
            file: path.to_path_buf(),
            got: vol.data.len(),
            expected,
            shape: h.shape(),
        });
    }
    let mut bytes = h.to_bytes();
    let data_bytes = expected.saturating_mul(h.datatype().bytes());
    bytes.try_reserve_exact(data_bytes).map_err(|_| {
        io_err(
            path,
            "cannot allocate memory to encode",
            std::io::Error::other(format!("{data_bytes} bytes of voxels")),
        )
    })?;
    vol.data
        .encode_into(h.datatype(), h.is_big_endian(), &mut bytes);
    let gz = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase().ends_with(".gz"))
        .unwrap_or(false);
    if gz {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&bytes)
            .and_then(|_| enc.finish())
            .map(|z| bytes = z)
            .map_err(|source| VolumeError::Gzip {
                file: path.to_path_buf(),
                source,
            })?;
    }
    write_atomic(path, &bytes, overwrite).map_err(|e| {
        let action = if e.kind() == ErrorKind::AlreadyExists {
            "already exists and overwrite is off"
        } else {
            "cannot write"
        };
        io_err(path, action, e)
    })
}
