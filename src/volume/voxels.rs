//! Voxel values in memory ([`Voxels`]: each scan in its own stored type) and conversion
//! between stored voxel bytes (any supported type, either byte order) and values.
//!
//! Lossless for u8, i8, u16, i16 and f32 (f32 bit patterns, NaN payloads included, are kept).
//! i32, u32 and f64 go through f32 and keep only 24 bits of mantissa: f64 values that are not
//! exactly representable as f32 change on a round trip, and integers beyond ±2^24 would, so
//! the reader refuses them ([`first_inexact`]).
//!
//! A 16-bit scan is held in 2 bytes per voxel, not as f32: a 1 G-voxel series is 2 GiB, not
//! 4, which is what lets the encoder stay within twice the raw scan.

use rayon::prelude::*;

use super::DataType;

/// Voxel values, x fastest, in the scan's stored type where that is exact and compact
/// (u8, i8, u16, i16), else as f32 (f32, and i32, u32, f64 within f32's precision). Values
/// are read as f32 ([`Voxels::get`], [`Voxels::read`]); a variant need not match the header's
/// datatype: writing converts to it ([`Voxels::encode_into`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Voxels {
    /// Unsigned 8-bit values.
    U8(Vec<u8>),
    /// Signed 8-bit values.
    I8(Vec<i8>),
    /// Unsigned 16-bit values.
    U16(Vec<u16>),
    /// Signed 16-bit values.
    I16(Vec<i16>),
    /// Any other values, as f32.
    F32(Vec<f32>),
}

/// Applies `$body` to the inner vector of every variant (`$v`), converting each value to f32
/// with `as f32`, which is exact for every variant.
macro_rules! each_variant {
    ($self:expr, $v:ident => $body:expr) => {
        match $self {
            Voxels::U8($v) => $body,
            Voxels::I8($v) => $body,
            Voxels::U16($v) => $body,
            Voxels::I16($v) => $body,
            Voxels::F32($v) => $body,
        }
    };
}

impl Default for Voxels {
    fn default() -> Self {
        Voxels::F32(Vec::new())
    }
}

impl From<Vec<f32>> for Voxels {
    fn from(values: Vec<f32>) -> Self {
        Voxels::F32(values)
    }
}

// `x as f32` is the identity on the F32 variant, which the shared bodies also serve.
#[allow(clippy::unnecessary_cast)]
impl Voxels {
    /// Number of voxels.
    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per value in memory.
    pub fn value_bytes(&self) -> usize {
        match self {
            Voxels::U8(_) | Voxels::I8(_) => 1,
            Voxels::U16(_) | Voxels::I16(_) => 2,
            Voxels::F32(_) => 4,
        }
    }

    /// Value `i` as f32 (exact). Panics when `i` is out of range, as slice indexing does.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        each_variant!(self, v => v[i] as f32)
    }

    /// Values `start .. start + out.len()` as f32, into `out`.
    pub fn read(&self, start: usize, out: &mut [f32]) {
        let end = start + out.len();
        each_variant!(self, v => {
            for (o, &x) in out.iter_mut().zip(&v[start..end]) {
                *o = x as f32;
            }
        })
    }

    /// All values as f32 (a copy, 4 bytes per voxel: for small scans, tests and studies).
    pub fn to_f32(&self) -> Vec<f32> {
        each_variant!(self, v => v.iter().map(|&x| x as f32).collect())
    }

    /// f32 values kept in the most compact exact form for a scan stored as `dt`: integer
    /// types of 16 bits or fewer are rounded to nearest and clamped to the type's range
    /// (NaN → 0), as writing does; other types stay f32.
    pub fn from_f32(values: Vec<f32>, dt: DataType) -> Voxels {
        fn narrow<T: Send>(values: &[f32], dt: DataType, f: impl Fn(f64) -> T + Sync) -> Vec<T> {
            values.par_iter().map(|&v| f(to_int(v, dt))).collect()
        }
        match dt {
            DataType::U8 => Voxels::U8(narrow(&values, dt, |x| x as u8)),
            DataType::I8 => Voxels::I8(narrow(&values, dt, |x| x as i8)),
            DataType::U16 => Voxels::U16(narrow(&values, dt, |x| x as u16)),
            DataType::I16 => Voxels::I16(narrow(&values, dt, |x| x as i16)),
            _ => Voxels::F32(values),
        }
    }

    /// Stored bytes (`bytes`, whole voxels of `dt` in the given byte order; a trailing partial
    /// voxel is ignored) in the compact form of [`Voxels::from_f32`].
    pub fn decode(bytes: &[u8], dt: DataType, big_endian: bool) -> Voxels {
        let be = big_endian;
        match dt {
            DataType::U8 => Voxels::U8(bytes.to_vec()),
            DataType::I8 => Voxels::I8(bytes.iter().map(|&b| b as i8).collect()),
            DataType::U16 => Voxels::U16(conv(bytes, be, u16::from_le_bytes)),
            DataType::I16 => Voxels::I16(conv(bytes, be, i16::from_le_bytes)),
            _ => Voxels::F32(decode(bytes, dt, big_endian)),
        }
    }

    /// Appends the values as `dt` in the given byte order (integers rounded to nearest,
    /// clamped, NaN → 0).
    pub fn encode_into(&self, dt: DataType, big_endian: bool, out: &mut Vec<u8>) {
        match self {
            Voxels::F32(v) => encode_into(v, dt, big_endian, out),
            other => {
                // Through f32 a block at a time: exact for these variants, no whole-scan copy.
                let mut block = vec![0f32; 1 << 16];
                let n = other.len();
                out.reserve(n.saturating_mul(dt.bytes()));
                for start in (0..n).step_by(block.len()) {
                    let len = block.len().min(n - start);
                    other.read(start, &mut block[..len]);
                    encode_into(&block[..len], dt, big_endian, out);
                }
            }
        }
    }

    /// Smallest and largest finite value (`None` when there is none).
    pub fn finite_range(&self) -> Option<(f32, f32)> {
        let (lo, hi) = each_variant!(self, v => v
        .par_chunks(1 << 16)
        .map(|c| {
            c.iter().map(|&x| x as f32).filter(|x| x.is_finite()).fold(
                (f32::INFINITY, f32::NEG_INFINITY),
                |(a, b), x| (a.min(x), b.max(x)),
            )
        })
        .reduce(
            || (f32::INFINITY, f32::NEG_INFINITY),
            |a, b| (a.0.min(b.0), a.1.max(b.1)),
        ));
        (lo <= hi).then_some((lo, hi))
    }

    /// Number of NaN/infinite values and the index of the first one.
    pub fn non_finite(&self) -> (usize, Option<usize>) {
        match self {
            Voxels::F32(v) => {
                let count = v.par_iter().filter(|x| !x.is_finite()).count();
                let first = (count > 0)
                    .then(|| v.iter().position(|x| !x.is_finite()))
                    .flatten();
                (count, first)
            }
            _ => (0, None),
        }
    }

    /// The values with every NaN/infinite one replaced by `fill` (integer variants have none
    /// and are returned as they are).
    pub fn filled(&self, fill: f32) -> Voxels {
        match self {
            Voxels::F32(v) => Voxels::F32(
                v.par_iter()
                    .map(|&x| if x.is_finite() { x } else { fill })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Each whole `N`-byte voxel of `bytes` (in the given byte order) through `f`, in parallel.
fn conv<const N: usize, T: Send>(
    bytes: &[u8],
    big: bool,
    f: impl Fn([u8; N]) -> T + Sync,
) -> Vec<T> {
    bytes
        .par_chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            if big {
                a.reverse();
            }
            f(a)
        })
        .collect()
}

/// Decode `bytes` (whole voxels; a trailing partial voxel is ignored) into f32 values.
pub fn decode(bytes: &[u8], dt: DataType, big_endian: bool) -> Vec<f32> {
    let be = big_endian;
    match dt {
        DataType::U8 => bytes.iter().map(|&b| b as f32).collect(),
        DataType::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
        DataType::U16 => conv(bytes, be, |a| u16::from_le_bytes(a) as f32),
        DataType::I16 => conv(bytes, be, |a| i16::from_le_bytes(a) as f32),
        DataType::U32 => conv(bytes, be, |a| u32::from_le_bytes(a) as f32),
        DataType::I32 => conv(bytes, be, |a| i32::from_le_bytes(a) as f32),
        DataType::F32 => conv(bytes, be, f32::from_le_bytes),
        DataType::F64 => conv(bytes, be, |a| f64::from_le_bytes(a) as f32),
    }
}

/// Largest integer magnitude f32 holds exactly together with all smaller ones (2^24).
pub const MAX_EXACT_INTEGER: i64 = 1 << 24;

/// The first voxel (flat index, value) of a u32/i32 buffer beyond ±2^24, which the f32
/// conversion of [`decode`] would change; `None` for other types or when all are exact.
pub fn first_inexact(bytes: &[u8], dt: DataType, big_endian: bool) -> Option<(usize, i64)> {
    let value = |c: &[u8]| {
        let mut a = [0u8; 4];
        a.copy_from_slice(c);
        if big_endian {
            a.reverse();
        }
        match dt {
            DataType::U32 => u32::from_le_bytes(a) as i64,
            _ => i32::from_le_bytes(a) as i64,
        }
    };
    match dt {
        DataType::U32 | DataType::I32 => bytes
            .chunks_exact(4)
            .map(value)
            .enumerate()
            .find(|&(_, v)| v.abs() > MAX_EXACT_INTEGER),
        _ => None,
    }
}

/// Round to nearest (halves away from zero) and clamp to the type's range; NaN → 0.
fn to_int(v: f32, dt: DataType) -> f64 {
    if v.is_nan() {
        return 0.0;
    }
    let (lo, hi) = dt.range();
    (v as f64).round().clamp(lo, hi)
}

/// Encode f32 values as `dt` in the given byte order, appending to `out`.
/// Integer types: rounded to nearest, clamped to range, NaN → 0.
pub fn encode_into(values: &[f32], dt: DataType, big_endian: bool, out: &mut Vec<u8>) {
    out.reserve(values.len().saturating_mul(dt.bytes()));
    fn push<const N: usize>(out: &mut Vec<u8>, mut le: [u8; N], big: bool) {
        if big {
            le.reverse();
        }
        out.extend_from_slice(&le);
    }
    let be = big_endian;
    for &v in values {
        match dt {
            DataType::U8 => out.push(to_int(v, dt) as u8),
            DataType::I8 => out.push(to_int(v, dt) as i8 as u8),
            DataType::U16 => push(out, (to_int(v, dt) as u16).to_le_bytes(), be),
            DataType::I16 => push(out, (to_int(v, dt) as i16).to_le_bytes(), be),
            DataType::U32 => push(out, (to_int(v, dt) as u32).to_le_bytes(), be),
            DataType::I32 => push(out, (to_int(v, dt) as i32).to_le_bytes(), be),
            DataType::F32 => push(out, v.to_le_bytes(), be),
            DataType::F64 => push(out, (v as f64).to_le_bytes(), be),
        }
    }
}

/// Encode f32 values as `dt` in the given byte order.
pub fn encode(values: &[f32], dt: DataType, big_endian: bool) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(values, dt, big_endian, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossless_types_round_trip_bytes() {
        let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for dt in [DataType::U8, DataType::I8, DataType::U16, DataType::I16] {
            for be in [false, true] {
                let v = decode(&bytes, dt, be);
                assert_eq!(encode(&v, dt, be), bytes, "{dt} be={be}");
            }
        }
        let floats: Vec<u8> = [1.5f32, -0.0, f32::NAN, f32::INFINITY, 1e-40]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(
            encode(&decode(&floats, DataType::F32, true), DataType::F32, true),
            floats
        );
    }

    #[test]
    fn voxels_keep_their_type_and_round_trip_bytes() {
        let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for dt in DataType::ALL {
            for be in [false, true] {
                let compact = Voxels::decode(&bytes, dt, be);
                let f32s = decode(&bytes, dt, be);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&compact.to_f32()), bits(&f32s), "{dt} be={be}");
                assert_eq!(compact.len(), f32s.len());
                let expected_bytes = match dt {
                    DataType::U8 | DataType::I8 => 1,
                    DataType::U16 | DataType::I16 => 2,
                    _ => 4,
                };
                assert_eq!(compact.value_bytes(), expected_bytes, "{dt}");
                let mut out = Vec::new();
                compact.encode_into(dt, be, &mut out);
                assert_eq!(out, encode(&f32s, dt, be), "{dt} be={be}");
                let mut part = vec![0f32; 7];
                compact.read(5, &mut part);
                assert_eq!(bits(&part), bits(&f32s[5..12]), "{dt}");
                assert_eq!(compact.get(9).to_bits(), f32s[9].to_bits());
            }
        }
    }

    #[test]
    fn compact_values_round_like_writing_and_report_their_range() {
        let v = vec![f32::NAN, -3.5, 2.5, 1e9, -1e9, 0.49];
        let i16s = Voxels::from_f32(v.clone(), DataType::I16);
        assert_eq!(i16s, Voxels::I16(vec![0, -4, 3, 32767, -32768, 0]));
        assert_eq!(i16s.finite_range(), Some((-32768.0, 32767.0)));
        assert_eq!(i16s.non_finite(), (0, None));
        let floats = Voxels::from_f32(v, DataType::F32);
        assert_eq!(floats.non_finite(), (1, Some(0)));
        assert_eq!(floats.finite_range(), Some((-1e9, 1e9)));
        assert_eq!(floats.filled(7.0).get(0), 7.0);
        assert_eq!(Voxels::F32(vec![f32::NAN]).finite_range(), None);
    }

    #[test]
    fn integers_round_and_clamp() {
        let v = [f32::NAN, -3.5, 2.5, 1e9, -1e9, f32::INFINITY, 0.49];
        assert_eq!(
            encode(&v, DataType::U8, false),
            vec![0, 0, 3, 255, 0, 255, 0]
        );
        let i16s = decode(&encode(&v, DataType::I16, true), DataType::I16, true);
        assert_eq!(i16s, vec![0.0, -4.0, 3.0, 32767.0, -32768.0, 32767.0, 0.0]);
        let u32s = decode(&encode(&v, DataType::U32, false), DataType::U32, false);
        assert_eq!(u32s[3], 1e9);
        assert_eq!(u32s[5], u32::MAX as f32);
    }
}
