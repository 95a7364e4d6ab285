//! The integer domain the coder works in, and the maps between it and stored f32 values.
//!
//! All three cases reduce to coding integers `v ∈ [lo, hi]` with a quantizer of step
//! `q = 2d + 1` (`d = 0`: lossless):
//!
//! - integer scans: `v` is the stored value itself, `d` the error bound;
//! - float scans with a bound `D > 0`: `v` is the index of the nearest point of the lattice
//!   `v · 2D`, coded losslessly (`d = 0`); a voxel whose lattice point is not within `D` after
//!   rounding to f32 (or that is not finite, or too large) is *escaped*: stored as its 32 raw
//!   bits;
//! - float scans, lossless: `v` is the f32 bit pattern mapped monotonically to a signed
//!   integer, coded losslessly — exact to the bit, NaN payloads and −0 included.

use super::error::ResidualError;

/// Largest |lattice index| of the float-bound domain; beyond it a voxel is escaped.
pub const LATTICE_LIMIT: i64 = 1 << 31;
/// Widest integer range accepted (covers u32 and i32 scans).
pub const MAX_INTEGER_SPAN: i64 = 1 << 33;
/// Integer scans are coded with a bound `D > 0` only when every value of the range is within
/// ±2^24, where f32 (how medinr holds voxels) represents every integer: beyond it a
/// reconstructed integer could round by more than `D`. Lossless coding has no such limit.
pub const MAX_BOUNDED_MAGNITUDE: i64 = 1 << 24;
/// Largest integer error bound `d` a stream may carry. The predictor blend weighs each
/// sub-predictor by `2^WEIGHT_BITS / (S + 1 + NOISE_FLOOR·d)^2` in u64, with `S` at most four
/// capped errors; beyond this `d` the square overflows u64 and every weight can be 0 (a
/// division by zero, found by fuzzing). A wider bound gains nothing: at 2^28 the residual of
/// any scan is already almost all zeros, so the encoder stores `min(D, MAX_BOUND)`, a tighter
/// guarantee than asked, and decoders refuse larger values.
pub const MAX_BOUND: i64 = 1 << 28;
const _: () = {
    use super::engine::{ERROR_CAP, NOISE_FLOOR, WEIGHT_BITS};
    let s_max = 4 * ERROR_CAP + 1 + NOISE_FLOOR * MAX_BOUND as u64;
    assert!(s_max * s_max <= 1 << WEIGHT_BITS);
};

/// Which domain, with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Domain {
    /// Stored integers in `[lo, hi]`, quantizer half-width `d`.
    Integer { lo: i64, hi: i64, d: i64 },
    /// Lattice indices of step `2 · bound`.
    FloatLattice { bound: f64 },
    /// Ordered f32 bit patterns.
    FloatBits,
}

/// Monotone bijection from f32 bit patterns to `[−2^31, 2^31 − 1]`: positive patterns keep
/// their value, negative ones (sign bit set) map to `−(magnitude bits) − 1`.
pub fn ordered_from_bits(b: u32) -> i64 {
    if b & 0x8000_0000 != 0 {
        -((b & 0x7FFF_FFFF) as i64) - 1
    } else {
        b as i64
    }
}

/// Inverse of [`ordered_from_bits`] (for `v` outside the range the result is unspecified).
pub fn bits_from_ordered(v: i64) -> u32 {
    if v < 0 {
        0x8000_0000 | ((-(v + 1)) as u32 & 0x7FFF_FFFF)
    } else {
        v as u32
    }
}

impl Domain {
    /// Smallest domain value.
    pub fn lo(&self) -> i64 {
        match *self {
            Domain::Integer { lo, .. } => lo,
            Domain::FloatLattice { .. } => -LATTICE_LIMIT,
            Domain::FloatBits => -(1 << 31),
        }
    }

    /// Largest domain value.
    pub fn hi(&self) -> i64 {
        match *self {
            Domain::Integer { hi, .. } => hi,
            Domain::FloatLattice { .. } => LATTICE_LIMIT,
            Domain::FloatBits => (1 << 31) - 1,
        }
    }

    /// Quantizer half-width `d` (the step is `2d + 1`).
    pub fn d(&self) -> i64 {
        match *self {
            Domain::Integer { d, .. } => d,
            _ => 0,
        }
    }

    /// True where voxels may be escaped (float bound).
    pub fn escapes(&self) -> bool {
        matches!(self, Domain::FloatLattice { .. })
    }

    /// The domain value of an original voxel; `Ok(None)` means "escape this voxel".
    pub fn original(&self, index: usize, x: f32) -> Result<Option<i64>, ResidualError> {
        match *self {
            Domain::Integer { lo, hi, .. } => integer_value("original", index, x, lo, hi).map(Some),
            Domain::FloatLattice { bound } => {
                let s = 2.0 * bound;
                let c = (x as f64 / s).round_ties_even();
                if !c.is_finite() || c.abs() > LATTICE_LIMIT as f64 {
                    return Ok(None);
                }
                let c = c as i64;
                let back = lattice_value(c, bound);
                let ok = back.is_finite() && (back as f64 - x as f64).abs() <= bound;
                Ok(ok.then_some(c))
            }
            Domain::FloatBits => Ok(Some(ordered_from_bits(x.to_bits()))),
        }
    }

    /// The domain value of a field prediction (never escaped).
    pub fn prediction(&self, index: usize, p: f32) -> Result<i64, ResidualError> {
        match *self {
            // Any integer is accepted and clamped: a field's stored values may stray outside a
            // range narrower than the datatype's (e.g. the scan's own min … max).
            Domain::Integer { lo, hi, .. } => {
                let any = integer_value("prediction", index, p, i64::MIN, i64::MAX)?;
                Ok(any.clamp(lo, hi))
            }
            Domain::FloatLattice { bound } => {
                let c = (p as f64 / (2.0 * bound)).round_ties_even();
                Ok(if c.is_nan() {
                    0
                } else {
                    c.clamp(-LATTICE_LIMIT as f64, LATTICE_LIMIT as f64) as i64
                })
            }
            Domain::FloatBits => Ok(ordered_from_bits(p.to_bits())),
        }
    }

    /// The stored value of a reconstructed domain value.
    pub fn value(&self, v: i64) -> f32 {
        match *self {
            Domain::Integer { .. } => v as f32,
            Domain::FloatLattice { bound } => lattice_value(v, bound),
            Domain::FloatBits => f32::from_bits(bits_from_ordered(v)),
        }
    }
}

/// The float-lattice index of `x` without the bound check of [`Domain::original`] (`None`,
/// "escape", only where `x` is not finite or beyond the lattice); other domains as
/// [`Domain::original`] gives them for a valid value. Used with a region of interest, where
/// the encoder checks each voxel's reconstruction against the voxel's own bound.
pub fn lattice_index(x: f32, domain: Domain) -> Option<i64> {
    match domain {
        Domain::FloatLattice { bound } => {
            let c = (x as f64 / (2.0 * bound)).round_ties_even();
            (c.is_finite() && c.abs() <= LATTICE_LIMIT as f64).then_some(c as i64)
        }
        _ => domain.original(0, x).ok().flatten(),
    }
}

/// `f32(c · 2·bound)`: the product in f64 (exact for |c| ≤ 2^31 up to one rounding), then
/// rounded to the nearest f32.
fn lattice_value(c: i64, bound: f64) -> f32 {
    (c as f64 * (2.0 * bound)) as f32
}

fn integer_value(
    what: &'static str,
    index: usize,
    x: f32,
    lo: i64,
    hi: i64,
) -> Result<i64, ResidualError> {
    let err = || ResidualError::ValueOutOfRange {
        what,
        index,
        value: x,
        min: lo,
        max: hi,
    };
    if !x.is_finite() || x.fract() != 0.0 || (x as f64) < lo as f64 || (x as f64) > hi as f64 {
        return Err(err());
    }
    Ok(x as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_bits_are_monotone_and_bijective() {
        let xs = [
            f32::NEG_INFINITY,
            -1e30,
            -1.0,
            -1e-40,
            -0.0,
            0.0,
            1e-40,
            1.0,
            1e30,
            f32::INFINITY,
        ];
        let vs: Vec<i64> = xs.iter().map(|x| ordered_from_bits(x.to_bits())).collect();
        assert!(vs.windows(2).all(|w| w[0] < w[1]), "{vs:?}");
        for b in [
            0u32,
            1,
            0x7FFF_FFFF,
            0x8000_0000,
            0x8000_0001,
            u32::MAX,
            0x7FC0_0001,
        ] {
            assert_eq!(bits_from_ordered(ordered_from_bits(b)), b);
        }
        assert_eq!(ordered_from_bits(u32::MAX), -(1 << 31));
    }

    #[test]
    fn lattice_escapes_what_it_cannot_bound() {
        let d = Domain::FloatLattice { bound: 0.5 };
        assert_eq!(d.original(0, 3.2).unwrap(), Some(3));
        assert_eq!(d.original(0, f32::NAN).unwrap(), None);
        assert_eq!(d.original(0, 1e30).unwrap(), None);
        let i = Domain::Integer {
            lo: 0,
            hi: 255,
            d: 1,
        };
        assert!(i.original(0, 1.5).is_err());
        assert!(i.original(0, 256.0).is_err());
        assert_eq!(i.original(0, 255.0).unwrap(), Some(255));
    }
}
