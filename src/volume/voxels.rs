//! Conversion between stored voxel bytes (any supported type, either byte order) and f32.
//!
//! Lossless for u8, i8, u16, i16 and f32 (f32 bit patterns, NaN payloads included, are kept).
//! i32, u32 and f64 go through f32 and keep only 24 bits of mantissa: f64 values that are not
//! exactly representable as f32 change on a round trip, and integers beyond ±2^24 would, so
//! the reader refuses them ([`first_inexact`]).

use super::DataType;

/// Decode `bytes` (whole voxels; a trailing partial voxel is ignored) into f32 values.
pub fn decode(bytes: &[u8], dt: DataType, big_endian: bool) -> Vec<f32> {
    fn conv<const N: usize>(bytes: &[u8], big: bool, f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        bytes
            .chunks_exact(N)
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
