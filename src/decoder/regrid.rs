//! Other grids for files whose fidelity is in a transform stream.
//!
//! A transform file's field is only the smallest preview the format needs; the scan itself is
//! the wavelet stream on the original grid. So another grid, an oblique plane or a reference
//! grid is sampled from the decoded scan instead of the field: multilinear interpolation
//! (x, y, z and time) at the same corner-aligned coordinates the field would be evaluated at
//! (`model::coords`), then the stored type's rounding. The decoded scan is made once per
//! decoder and kept.

use super::evaluator::{output_buffer, region_ranges};
use super::{stored_value, DecodeError, Decoder, Region};
use crate::model::coords::axis_coordinate;

/// Lower index and weight of the upper neighbour for coordinate `u ∈ [0, 1]` on an axis of
/// `n` samples (corner-aligned: `u = i / (n − 1)`).
#[inline]
fn taps(u: f32, n: usize) -> (usize, f64) {
    if n <= 1 {
        return (0, 0.0);
    }
    let p = (u as f64).clamp(0.0, 1.0) * (n - 1) as f64;
    let i = (p.floor() as usize).min(n - 2);
    (i, p - i as f64)
}

/// Multilinear value of `values` (`shape`, x fastest) at `u = [x, y, z, t]` coordinates.
pub(super) fn interpolate(values: &[f32], shape: [usize; 4], u: [f32; 4]) -> f64 {
    let t = [0, 1, 2, 3].map(|a| taps(u[a], shape[a]));
    let stride = [
        1,
        shape[0],
        shape[0] * shape[1],
        shape[0] * shape[1] * shape[2],
    ];
    let mut sum = 0.0;
    for corner in 0..16usize {
        let mut w = 1.0;
        let mut index = 0;
        for a in 0..4 {
            let (i, f) = t[a];
            let upper = corner >> a & 1 == 1;
            if upper && shape[a] <= 1 {
                w = 0.0;
                break;
            }
            w *= if upper { f } else { 1.0 - f };
            index += (i + upper as usize) * stride[a];
        }
        if w != 0.0 {
            sum += w * values[index] as f64;
        }
    }
    sum
}

impl Decoder {
    /// Whether the file's fidelity is in a transform stream (so other grids are sampled
    /// from the decoded scan, not from the field).
    pub fn has_transform(&self) -> bool {
        self.file
            .residual
            .as_deref()
            .is_some_and(crate::residual::is_transform_stream)
    }

    /// The decoded scan on its own grid, decoded on first use.
    pub(super) fn decoded_scan(&self) -> Result<&[f32], DecodeError> {
        if let Some(v) = self.decoded.get() {
            return Ok(v);
        }
        let (values, _) = self.region_with_residual(super::Region::Full)?;
        Ok(self.decoded.get_or_init(|| values))
    }

    /// The stored value of the decoded scan at coordinates `u` (x, y, z, t), as a function
    /// (the scan decoded first, on first use).
    fn sampler(&self) -> Result<impl Fn([f32; 4]) -> f32 + '_, DecodeError> {
        let values = self.decoded_scan()?;
        let shape = self.shape();
        let datatype = Some(self.header.datatype());
        Ok(move |u| stored_value(interpolate(values, shape, u), datatype))
    }

    /// Stored values of the decoded scan at field coordinates (`dims` per point, as
    /// `evaluate_stored` takes them; without a time coordinate, frame 0).
    pub(super) fn sample_decoded(
        &self,
        coords: &[f32],
        dims: usize,
    ) -> Result<Vec<f32>, DecodeError> {
        let sample = self.sampler()?;
        let mut out = output_buffer(coords.len() / dims.max(1))?;
        out.extend(
            coords
                .chunks_exact(dims)
                .map(|c| sample([c[0], c[1], c[2], if dims == 4 { c[3] } else { 0.0 }])),
        );
        Ok(out)
    }

    /// A region of another grid of a transform file: the decoded scan sampled at the
    /// coordinates the field would be evaluated at there.
    pub(super) fn transform_on_grid(
        &self,
        shape: [usize; 4],
        region: Region,
    ) -> Result<(Vec<f32>, [usize; 4]), DecodeError> {
        let (ranges, out_shape) = region_ranges(shape, region);
        let mut out = output_buffer(out_shape.iter().product())?;
        let sample = self.sampler()?;
        let u = |i: usize, a: usize| axis_coordinate(i, shape[a]);
        for t in ranges[3].clone() {
            for z in ranges[2].clone() {
                for y in ranges[1].clone() {
                    for x in ranges[0].clone() {
                        out.push(sample([u(x, 0), u(y, 1), u(z, 2), u(t, 3)]));
                    }
                }
            }
        }
        Ok((out, out_shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_hits_samples_and_is_linear_between_them() {
        let shape = [3, 2, 2, 1];
        let values: Vec<f32> = (0..12).map(|i| i as f32).collect();
        // Every sample at its own coordinate.
        for i in 0..12 {
            let p = [i % 3, (i / 3) % 2, i / 6];
            let u = [p[0] as f32 / 2.0, p[1] as f32, p[2] as f32, 0.0];
            assert_eq!(interpolate(&values, shape, u), i as f64);
        }
        // Halfway along x between samples 0 and 1, and the centre of the block.
        assert_eq!(interpolate(&values, shape, [0.25, 0.0, 0.0, 0.0]), 0.5);
        assert_eq!(interpolate(&values, shape, [0.5, 0.5, 0.5, 0.0]), 5.5);
    }
}
