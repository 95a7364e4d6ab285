//! [`Header`]: every NIfTI-1/NIfTI-2 header field we use, plus the verbatim bytes from the
//! start of the file up to `vox_offset` (header, extension flag, extensions), so a scan can
//! be written back byte for byte.

use super::layout::{Fields, FieldsMut, Kind, Layout, Slot, NIFTI1, NIFTI2};
use super::{DataType, VolumeError};
use std::path::PathBuf;

/// Everything needed to write a scan back exactly as it came in.
///
/// The core fields (version, byte order, datatype, dims, vox_offset and the original bytes)
/// are private because changing them needs consistency checks: use [`Header::with_shape`].
/// The metadata fields are public and may be edited; [`Header::to_bytes`] re-encodes only
/// the fields whose value differs from the original bytes (integers too large for a
/// NIfTI-1 field are saturated).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    nifti2: bool,
    big_endian: bool,
    datatype: DataType,
    dim: [i64; 8],
    /// Verbatim bytes `0..vox_offset`; its length is vox_offset.
    raw: Vec<u8>,
    /// Frequency, phase and slice encoding directions (NIfTI `dim_info`).
    pub dim_info: u8,
    /// intent_p1, intent_p2, intent_p3
    pub intent_p: [f64; 3],
    /// Statistical or other intent of the data (NIfTI `intent_code`).
    pub intent_code: i32,
    /// Name of the intent (NIfTI `intent_name`, NUL-padded).
    pub intent_name: [u8; 16],
    /// pixdim[0] is qfac (±1); pixdim[1..=4] are voxel sizes and the time step.
    pub pixdim: [f64; 8],
    /// Stored value; see [`Header::scl_slope`] for the effective one.
    pub scl_slope: f64,
    /// Intercept of the stored-to-physical mapping (NIfTI `scl_inter`).
    pub scl_inter: f64,
    /// Display range maximum (NIfTI `cal_max`).
    pub cal_max: f64,
    /// Display range minimum (NIfTI `cal_min`).
    pub cal_min: f64,
    /// Time to acquire one slice (NIfTI `slice_duration`).
    pub slice_duration: f64,
    /// Time offset of the first frame (NIfTI `toffset`).
    pub toffset: f64,
    /// First slice of the slice timing pattern (NIfTI `slice_start`).
    pub slice_start: i64,
    /// Last slice of the slice timing pattern (NIfTI `slice_end`).
    pub slice_end: i64,
    /// Slice timing order (NIfTI `slice_code`).
    pub slice_code: i32,
    /// Units of space and time (NIfTI `xyzt_units`).
    pub xyzt_units: i32,
    /// Free-text description (NIfTI `descrip`, NUL-padded).
    pub descrip: [u8; 80],
    /// Auxiliary file name (NIfTI `aux_file`).
    pub aux_file: [u8; 24],
    /// What the quaternion transform means (NIfTI `qform_code`).
    pub qform_code: i32,
    /// What the affine rows mean (NIfTI `sform_code`).
    pub sform_code: i32,
    /// Quaternion b of the qform.
    pub quatern_b: f64,
    /// Quaternion c of the qform.
    pub quatern_c: f64,
    /// Quaternion d of the qform.
    pub quatern_d: f64,
    /// x offset of the qform (mm).
    pub qoffset_x: f64,
    /// y offset of the qform (mm).
    pub qoffset_y: f64,
    /// z offset of the qform (mm).
    pub qoffset_z: f64,
    /// First row of the sform affine.
    pub srow_x: [f64; 4],
    /// Second row of the sform affine.
    pub srow_y: [f64; 4],
    /// Third row of the sform affine.
    pub srow_z: [f64; 4],
}

/// Version and byte order from the first 4 bytes (`sizeof_hdr` = 348 or 540).
pub(crate) fn detect(first4: [u8; 4]) -> Option<(bool, bool)> {
    let le = i32::from_le_bytes(first4);
    let be = i32::from_be_bytes(first4);
    match (le, be) {
        (348, _) => Some((false, false)),
        (_, 348) => Some((false, true)),
        (540, _) => Some((true, false)),
        (_, 540) => Some((true, true)),
        _ => None,
    }
}

fn not_nifti(reason: String) -> VolumeError {
    VolumeError::NotNifti {
        file: PathBuf::new(),
        reason,
    }
}

fn bad_dims(reason: String) -> VolumeError {
    VolumeError::BadDims {
        file: PathBuf::new(),
        reason,
    }
}

fn bad_header(reason: String) -> VolumeError {
    VolumeError::BadHeader {
        file: PathBuf::new(),
        reason,
    }
}

/// Header fields parsed from the fixed part, before the extension bytes are attached.
pub(crate) struct Parsed {
    pub header: Header,
    pub vox_offset: usize,
    /// Bytes of voxel data the dims and datatype call for (overflow-checked).
    pub data_bytes: usize,
}

impl Header {
    fn layout(&self) -> &'static Layout {
        if self.nifti2 {
            &NIFTI2
        } else {
            &NIFTI1
        }
    }

    /// Parse the fixed header at the start of `bytes` (which need not hold the extensions).
    /// Errors carry no file name.
    pub(crate) fn parse_fixed(bytes: &[u8]) -> Result<Parsed, VolumeError> {
        let first4: [u8; 4] = match bytes.get(..4) {
            Some(b) => [b[0], b[1], b[2], b[3]],
            None => {
                return Err(VolumeError::Truncated {
                    file: PathBuf::new(),
                    detail: format!("only {} bytes, too short for a NIfTI header", bytes.len()),
                })
            }
        };
        let Some((nifti2, big)) = detect(first4) else {
            return Err(not_nifti(format!(
                "header size field reads {} (little-endian) / {} (big-endian), expected 348 (NIfTI-1) or 540 (NIfTI-2)",
                i32::from_le_bytes(first4),
                i32::from_be_bytes(first4)
            )));
        };
        let l = if nifti2 { &NIFTI2 } else { &NIFTI1 };
        if bytes.len() < l.size {
            return Err(VolumeError::Truncated {
                file: PathBuf::new(),
                detail: format!(
                    "a NIfTI-{} header needs {} bytes, but there are only {}",
                    if nifti2 { 2 } else { 1 },
                    l.size,
                    bytes.len()
                ),
            });
        }
        let f = Fields { bytes, big };
        let magic: [u8; 4] = f.array(l.magic);
        let (single, pair): (&[u8; 4], &[u8; 4]) = if nifti2 {
            (b"n+2\0", b"ni2\0")
        } else {
            (b"n+1\0", b"ni1\0")
        };
        if &magic == pair {
            return Err(VolumeError::HeaderPair {
                file: PathBuf::new(),
            });
        }
        if &magic != single {
            return Err(not_nifti(format!(
                "magic is {:?}, expected {:?} (an Analyze 7.5 file?)",
                String::from_utf8_lossy(&magic),
                String::from_utf8_lossy(single)
            )));
        }
        let code = f.int(l.datatype, 0);
        let code16 = i16::try_from(code).unwrap_or(i16::MAX);
        let datatype = DataType::from_nifti_code(code16)?;

        let mut dim = [0i64; 8];
        for (i, d) in dim.iter_mut().enumerate() {
            *d = f.int(l.dim, i);
        }
        let shape = shape_of(&dim)?;
        let data_bytes = shape
            .iter()
            .try_fold(datatype.bytes(), |acc, &n| acc.checked_mul(n))
            .ok_or_else(|| bad_dims(format!("{shape:?} × {} bytes overflows", datatype.bytes())))?;

        let vox = f.float(l.vox_offset, 0);
        let max_vox = (i64::MAX / 2) as f64;
        if !(vox.is_finite() && vox.fract() == 0.0 && vox >= l.size as f64 && vox <= max_vox) {
            return Err(bad_header(format!(
                "vox_offset {vox} must be a whole number of bytes at or after the {}-byte header",
                l.size
            )));
        }
        let vox_offset = usize::try_from(vox as i64)
            .map_err(|_| bad_header(format!("vox_offset {vox} does not fit in memory")))?;

        let quat = |i| f.float(l.quatern, i);
        let srow = |r: usize| {
            let mut row = [0.0; 4];
            for (c, v) in row.iter_mut().enumerate() {
                *v = f.float(l.srow, r * 4 + c);
            }
            row
        };
        let mut pixdim = [0.0; 8];
        for (i, p) in pixdim.iter_mut().enumerate() {
            *p = f.float(l.pixdim, i);
        }
        let header = Header {
            nifti2,
            big_endian: big,
            datatype,
            dim,
            raw: bytes.get(..l.size).map(<[u8]>::to_vec).unwrap_or_default(),
            dim_info: f.int(l.dim_info, 0) as u8,
            intent_p: [
                f.float(l.intent_p, 0),
                f.float(l.intent_p, 1),
                f.float(l.intent_p, 2),
            ],
            intent_code: f.int(l.intent_code, 0) as i32,
            intent_name: f.array(l.intent_name),
            pixdim,
            scl_slope: f.float(l.scl_slope, 0),
            scl_inter: f.float(l.scl_inter, 0),
            cal_max: f.float(l.cal_max, 0),
            cal_min: f.float(l.cal_min, 0),
            slice_duration: f.float(l.slice_duration, 0),
            toffset: f.float(l.toffset, 0),
            slice_start: f.int(l.slice_start, 0),
            slice_end: f.int(l.slice_end, 0),
            slice_code: f.int(l.slice_code, 0) as i32,
            xyzt_units: f.int(l.xyzt_units, 0) as i32,
            descrip: f.array(l.descrip),
            aux_file: f.array(l.aux_file),
            qform_code: f.int(l.qform_code, 0) as i32,
            sform_code: f.int(l.sform_code, 0) as i32,
            quatern_b: quat(0),
            quatern_c: quat(1),
            quatern_d: quat(2),
            qoffset_x: quat(3),
            qoffset_y: quat(4),
            qoffset_z: quat(5),
            srow_x: srow(0),
            srow_y: srow(1),
            srow_z: srow(2),
        };
        Ok(Parsed {
            header,
            vox_offset,
            data_bytes,
        })
    }

    /// A fresh single-file header (`n+1`, little-endian; NIfTI-2 only when an axis exceeds
    /// NIfTI-1's 32767) for `shape` = [nx, ny, nz, nt] voxels of `datatype`: no extensions
    /// (vox_offset 352 or 544), unit spacing, no scaling, geometry codes 0, units mm and s.
    /// For scans that do not come from a NIfTI file (DICOM input).
    pub fn new(datatype: DataType, shape: [usize; 4]) -> Result<Header, VolumeError> {
        let invalid = |reason: String| VolumeError::InvalidShape {
            file: PathBuf::new(),
            shape,
            reason,
        };
        check_new_shape(shape, datatype)?;
        let nifti2 = shape.iter().any(|&n| n > i16::MAX as usize);
        if shape.iter().any(|&n| n > i64::MAX as usize) {
            return Err(invalid("an axis is too long for NIfTI".into()));
        }
        let l = if nifti2 { &NIFTI2 } else { &NIFTI1 };
        // The fixed header plus the 4-byte extension flag (all zero: no extensions).
        let mut raw = vec![0u8; l.size + 4];
        let mut f = FieldsMut {
            bytes: &mut raw,
            big: false,
        };
        f.set_int(
            Slot {
                off: 0,
                kind: Kind::I32,
            },
            0,
            l.size as i64,
        );
        f.set_bytes(l.magic, if nifti2 { b"n+2\0" } else { b"n+1\0" });
        if nifti2 {
            // NIfTI-2's magic is followed by the DOS/Unix line-ending check bytes.
            f.set_bytes(l.magic + 4, &[0x0d, 0x0a, 0x1a, 0x0a]);
        }
        f.set_int(l.datatype, 0, datatype.nifti_code() as i64);
        f.set_int(l.bitpix, 0, 8 * datatype.bytes() as i64);
        let ndim = if shape[3] > 1 { 4 } else { 3 };
        f.set_int(l.dim, 0, ndim);
        for k in 1..8 {
            let n = if k <= 4 { shape[k - 1] } else { 1 };
            f.set_int(l.dim, k, n as i64);
        }
        for k in 0..8 {
            f.set_float(l.pixdim, k, 1.0);
        }
        f.set_float(l.vox_offset, 0, (l.size + 4) as f64);
        // NIFTI_UNITS_MM | NIFTI_UNITS_SEC
        f.set_int(l.xyzt_units, 0, 2 | 8);
        Header::from_bytes(&raw)
    }

    /// Attach the bytes between the fixed header and vox_offset (extension flag and extensions).
    pub(crate) fn set_extension_bytes(&mut self, ext: &[u8]) {
        let size = self.layout().size;
        self.raw.truncate(size);
        self.raw.extend_from_slice(ext);
    }

    /// Parse the bytes that start a file: the header and any extensions, up to vox_offset.
    /// Extra bytes after vox_offset are ignored. Errors carry no file name.
    pub fn from_bytes(bytes: &[u8]) -> Result<Header, VolumeError> {
        let Parsed {
            mut header,
            vox_offset,
            ..
        } = Header::parse_fixed(bytes)?;
        let size = header.layout().size;
        let ext = bytes
            .get(size..vox_offset)
            .ok_or_else(|| VolumeError::Truncated {
                file: PathBuf::new(),
                detail: format!(
                    "vox_offset is {vox_offset}, but only {} header bytes were given",
                    bytes.len()
                ),
            })?;
        header.set_extension_bytes(ext);
        Ok(header)
    }

    /// The bytes that start the file: header and extensions up to vox_offset, in the
    /// header's own version and byte order. Unchanged fields keep their original bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let l = self.layout();
        let mut out = self.raw.clone();
        let mut f = FieldsMut {
            bytes: &mut out,
            big: self.big_endian,
        };
        let old_code = Fields {
            bytes: &self.raw,
            big: self.big_endian,
        }
        .int(l.datatype, 0);
        if old_code != self.datatype.nifti_code() as i64 {
            f.set_int(l.datatype, 0, self.datatype.nifti_code() as i64);
            f.set_int(l.bitpix, 0, 8 * self.datatype.bytes() as i64);
        }
        for (i, &d) in self.dim.iter().enumerate() {
            f.set_int(l.dim, i, d);
        }
        f.set_int(l.dim_info, 0, self.dim_info as i64);
        for (i, &p) in self.intent_p.iter().enumerate() {
            f.set_float(l.intent_p, i, p);
        }
        f.set_int(l.intent_code, 0, self.intent_code as i64);
        f.set_bytes(l.intent_name, &self.intent_name);
        for (i, &p) in self.pixdim.iter().enumerate() {
            f.set_float(l.pixdim, i, p);
        }
        f.set_float(l.scl_slope, 0, self.scl_slope);
        f.set_float(l.scl_inter, 0, self.scl_inter);
        f.set_float(l.cal_max, 0, self.cal_max);
        f.set_float(l.cal_min, 0, self.cal_min);
        f.set_float(l.slice_duration, 0, self.slice_duration);
        f.set_float(l.toffset, 0, self.toffset);
        f.set_int(l.slice_start, 0, self.slice_start);
        f.set_int(l.slice_end, 0, self.slice_end);
        f.set_int(l.slice_code, 0, self.slice_code as i64);
        f.set_int(l.xyzt_units, 0, self.xyzt_units as i64);
        f.set_bytes(l.descrip, &self.descrip);
        f.set_bytes(l.aux_file, &self.aux_file);
        f.set_int(l.qform_code, 0, self.qform_code as i64);
        f.set_int(l.sform_code, 0, self.sform_code as i64);
        let quat = [
            self.quatern_b,
            self.quatern_c,
            self.quatern_d,
            self.qoffset_x,
            self.qoffset_y,
            self.qoffset_z,
        ];
        for (i, &q) in quat.iter().enumerate() {
            f.set_float(l.quatern, i, q);
        }
        for (r, row) in [self.srow_x, self.srow_y, self.srow_z].iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                f.set_float(l.srow, r * 4 + c, v);
            }
        }
        out
    }

    /// [nx, ny, nz, nt]; axes beyond dim[0] count as 1.
    pub fn shape(&self) -> [usize; 4] {
        shape_of(&self.dim).unwrap_or([0; 4])
    }

    /// The raw dim[0..8] array (dim[0] = number of dimensions).
    pub fn dim(&self) -> [i64; 8] {
        self.dim
    }

    /// Number of voxels (product of [`Header::shape`]).
    pub fn voxel_count(&self) -> usize {
        self.shape().iter().product()
    }

    /// The stored voxel type.
    pub fn datatype(&self) -> DataType {
        self.datatype
    }

    /// Voxel size and time step: pixdim[1..=4].
    pub fn spacing(&self) -> [f64; 4] {
        [
            self.pixdim[1],
            self.pixdim[2],
            self.pixdim[3],
            self.pixdim[4],
        ]
    }

    /// Whether the header is NIfTI-2 (else NIfTI-1).
    pub fn is_nifti2(&self) -> bool {
        self.nifti2
    }

    /// Whether the file was stored big-endian.
    pub fn is_big_endian(&self) -> bool {
        self.big_endian
    }

    /// Byte offset of the voxel data (= length of [`Header::to_bytes`]).
    pub fn vox_offset(&self) -> usize {
        self.raw.len()
    }

    /// The bytes between the fixed header and vox_offset: the 4-byte extension flag and
    /// any extensions (empty when vox_offset equals the header size).
    pub fn extension_bytes(&self) -> &[u8] {
        self.raw.get(self.layout().size..).unwrap_or(&[])
    }

    /// Effective slope: the stored one, or 1 when it is 0 or not finite
    /// (the standard says scl_slope == 0 means "no scaling").
    pub fn scl_slope(&self) -> f64 {
        if self.scl_slope == 0.0 || !self.scl_slope.is_finite() {
            1.0
        } else {
            self.scl_slope
        }
    }

    /// Effective intercept: the stored one, or 0 when scaling is off or it is not finite.
    pub fn scl_inter(&self) -> f64 {
        if self.scl_slope == 0.0 || !self.scl_slope.is_finite() || !self.scl_inter.is_finite() {
            0.0
        } else {
            self.scl_inter
        }
    }

    /// The `descrip` text up to its first NUL (invalid UTF-8 replaced).
    pub fn description(&self) -> String {
        let end = self
            .descrip
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.descrip.len());
        String::from_utf8_lossy(self.descrip.get(..end).unwrap_or(&[])).into_owned()
    }

    /// Set dims (used by `with_shape`, which validates them first).
    pub(crate) fn set_dim(&mut self, dim: [i64; 8]) {
        self.dim = dim;
    }
}

/// [nx, ny, nz, nt] from dim[], checking dim[0] and each used axis.
pub(crate) fn shape_of(dim: &[i64; 8]) -> Result<[usize; 4], VolumeError> {
    let nd = dim[0];
    if !(1..=7).contains(&nd) {
        return Err(bad_dims(format!(
            "dim[0] = {nd}, must be 1 to 7 (got dim = {dim:?})"
        )));
    }
    let nd = nd as usize;
    let mut shape = [1usize; 4];
    for (k, &d) in dim.iter().enumerate().skip(1).take(nd) {
        if d < 1 {
            return Err(bad_dims(format!(
                "dim[{k}] = {d}, every used axis needs at least 1 voxel (dim = {dim:?})"
            )));
        }
        if k <= 4 {
            shape[k - 1] = usize::try_from(d)
                .map_err(|_| bad_dims(format!("dim[{k}] = {d} does not fit in memory")))?;
        } else if d > 1 {
            return Err(bad_dims(format!(
                "{nd} dimensions (dim = {dim:?}); only 3D and 4D scans are supported"
            )));
        }
    }
    Ok(shape)
}

/// The checks every new shape passes, whatever the header: no empty axis, and a voxel data
/// size that fits in memory's address range.
pub(super) fn check_new_shape(shape: [usize; 4], datatype: DataType) -> Result<(), VolumeError> {
    let invalid = |reason: &str| VolumeError::InvalidShape {
        file: PathBuf::new(),
        shape,
        reason: reason.into(),
    };
    if shape.contains(&0) {
        return Err(invalid("every axis needs at least 1 voxel"));
    }
    shape
        .iter()
        .try_fold(datatype.bytes(), |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| invalid("voxel data size overflows"))?;
    Ok(())
}
