//! Byte offsets of the NIfTI-1 (348-byte) and NIfTI-2 (540-byte) headers, and typed
//! access to header bytes in either byte order.
//!
//! Writing is "patch if changed": a field is re-encoded only when its value differs from
//! what the original bytes decode to, so an unmodified header reproduces its bytes exactly
//! (including NaN payloads, unused fields and padding).

/// Width and kind of one header field.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    U8,
    I16,
    I32,
    I64,
    F32,
    F64,
}

impl Kind {
    fn width(self) -> usize {
        match self {
            Kind::U8 => 1,
            Kind::I16 => 2,
            Kind::I32 | Kind::F32 => 4,
            Kind::I64 | Kind::F64 => 8,
        }
    }
}

/// Where a field (or the first element of an array field) lives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub off: usize,
    pub kind: Kind,
}

const fn s(off: usize, kind: Kind) -> Slot {
    Slot { off, kind }
}

/// Field positions of one header version.
pub(crate) struct Layout {
    pub size: usize,
    pub magic: usize,
    pub datatype: Slot,
    pub bitpix: Slot,
    /// dim[0..8]
    pub dim: Slot,
    /// intent_p1..p3
    pub intent_p: Slot,
    pub intent_code: Slot,
    pub intent_name: usize,
    /// pixdim[0..8]
    pub pixdim: Slot,
    pub vox_offset: Slot,
    pub scl_slope: Slot,
    pub scl_inter: Slot,
    pub cal_max: Slot,
    pub cal_min: Slot,
    pub slice_duration: Slot,
    pub toffset: Slot,
    pub slice_start: Slot,
    pub slice_end: Slot,
    pub slice_code: Slot,
    pub xyzt_units: Slot,
    pub descrip: usize,
    pub aux_file: usize,
    pub qform_code: Slot,
    pub sform_code: Slot,
    /// quatern_b, c, d, qoffset_x, y, z (consecutive)
    pub quatern: Slot,
    /// srow_x[4], srow_y[4], srow_z[4] (consecutive)
    pub srow: Slot,
    pub dim_info: Slot,
}

/// NIfTI-1: nifti1.h `struct nifti_1_header`.
pub(crate) const NIFTI1: Layout = Layout {
    size: 348,
    magic: 344,
    datatype: s(70, Kind::I16),
    bitpix: s(72, Kind::I16),
    dim: s(40, Kind::I16),
    intent_p: s(56, Kind::F32),
    intent_code: s(68, Kind::I16),
    intent_name: 328,
    pixdim: s(76, Kind::F32),
    vox_offset: s(108, Kind::F32),
    scl_slope: s(112, Kind::F32),
    scl_inter: s(116, Kind::F32),
    cal_max: s(124, Kind::F32),
    cal_min: s(128, Kind::F32),
    slice_duration: s(132, Kind::F32),
    toffset: s(136, Kind::F32),
    slice_start: s(74, Kind::I16),
    slice_end: s(120, Kind::I16),
    slice_code: s(122, Kind::U8),
    xyzt_units: s(123, Kind::U8),
    descrip: 148,
    aux_file: 228,
    qform_code: s(252, Kind::I16),
    sform_code: s(254, Kind::I16),
    quatern: s(256, Kind::F32),
    srow: s(280, Kind::F32),
    dim_info: s(39, Kind::U8),
};

/// NIfTI-2: nifti2.h `struct nifti_2_header`.
pub(crate) const NIFTI2: Layout = Layout {
    size: 540,
    magic: 4,
    datatype: s(12, Kind::I16),
    bitpix: s(14, Kind::I16),
    dim: s(16, Kind::I64),
    intent_p: s(80, Kind::F64),
    intent_code: s(504, Kind::I32),
    intent_name: 508,
    pixdim: s(104, Kind::F64),
    vox_offset: s(168, Kind::I64),
    scl_slope: s(176, Kind::F64),
    scl_inter: s(184, Kind::F64),
    cal_max: s(192, Kind::F64),
    cal_min: s(200, Kind::F64),
    slice_duration: s(208, Kind::F64),
    toffset: s(216, Kind::F64),
    slice_start: s(224, Kind::I64),
    slice_end: s(232, Kind::I64),
    slice_code: s(496, Kind::I32),
    xyzt_units: s(500, Kind::I32),
    descrip: 240,
    aux_file: 320,
    qform_code: s(344, Kind::I32),
    sform_code: s(348, Kind::I32),
    quatern: s(352, Kind::F64),
    srow: s(400, Kind::F64),
    dim_info: s(524, Kind::U8),
};

/// Header bytes with a byte order. All reads are bounds-checked by the caller having
/// verified `bytes.len() >= layout.size`; out-of-range reads return 0 instead of panicking.
pub(crate) struct Fields<'a> {
    pub bytes: &'a [u8],
    pub big: bool,
}

impl Fields<'_> {
    fn raw<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.bytes.get(off..off + N) {
            out.copy_from_slice(src);
            if self.big {
                out.reverse();
            }
        }
        out
    }

    /// Integer field element `i` of `slot`.
    pub fn int(&self, slot: Slot, i: usize) -> i64 {
        let off = slot.off + i * slot.kind.width();
        match slot.kind {
            Kind::U8 => self.raw::<1>(off)[0] as i64,
            Kind::I16 => i16::from_le_bytes(self.raw(off)) as i64,
            Kind::I32 => i32::from_le_bytes(self.raw(off)) as i64,
            Kind::I64 => i64::from_le_bytes(self.raw(off)),
            Kind::F32 | Kind::F64 => self.float(slot, i) as i64,
        }
    }

    /// Float field element `i` of `slot`.
    pub fn float(&self, slot: Slot, i: usize) -> f64 {
        let off = slot.off + i * slot.kind.width();
        match slot.kind {
            Kind::F32 => f32::from_le_bytes(self.raw(off)) as f64,
            Kind::F64 => f64::from_le_bytes(self.raw(off)),
            _ => self.int(slot, i) as f64,
        }
    }

    /// `N` raw bytes at `off`, not byte-swapped (zeros where out of range).
    pub fn array<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.bytes.get(off..off + N) {
            out.copy_from_slice(src);
        }
        out
    }
}

/// Mutable header bytes with a byte order, written "patch if changed".
pub(crate) struct FieldsMut<'a> {
    pub bytes: &'a mut [u8],
    pub big: bool,
}

impl FieldsMut<'_> {
    fn view(&self) -> Fields<'_> {
        Fields {
            bytes: self.bytes,
            big: self.big,
        }
    }

    fn put<const N: usize>(&mut self, off: usize, mut le: [u8; N]) {
        if self.big {
            le.reverse();
        }
        if let Some(dst) = self.bytes.get_mut(off..off + N) {
            dst.copy_from_slice(&le);
        }
    }

    /// Set integer element `i` of `slot` to `v` (saturated to the field's width) if it differs.
    pub fn set_int(&mut self, slot: Slot, i: usize, v: i64) {
        if self.view().int(slot, i) == v {
            return;
        }
        let off = slot.off + i * slot.kind.width();
        match slot.kind {
            Kind::U8 => self.put(off, [v.clamp(0, u8::MAX as i64) as u8]),
            Kind::I16 => self.put(
                off,
                (v.clamp(i16::MIN as i64, i16::MAX as i64) as i16).to_le_bytes(),
            ),
            Kind::I32 => self.put(
                off,
                (v.clamp(i32::MIN as i64, i32::MAX as i64) as i32).to_le_bytes(),
            ),
            Kind::I64 => self.put(off, v.to_le_bytes()),
            Kind::F32 | Kind::F64 => self.set_float(slot, i, v as f64),
        }
    }

    /// Set float element `i` of `slot` to `v` if its bits differ from the stored value.
    pub fn set_float(&mut self, slot: Slot, i: usize, v: f64) {
        if self.view().float(slot, i).to_bits() == v.to_bits() {
            return;
        }
        let off = slot.off + i * slot.kind.width();
        match slot.kind {
            Kind::F32 => self.put(off, (v as f32).to_le_bytes()),
            Kind::F64 => self.put(off, v.to_le_bytes()),
            _ => self.set_int(slot, i, v as i64),
        }
    }

    /// Copy a byte array (text field) to `off`.
    pub fn set_bytes(&mut self, off: usize, v: &[u8]) {
        if let Some(dst) = self.bytes.get_mut(off..off + v.len()) {
            dst.copy_from_slice(v);
        }
    }
}
