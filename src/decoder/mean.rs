//! The temporal mean of a series held apart from the field (section `MEAN`, format 3.0).
//!
//! A series' voxels mostly differ by their mean over time (the anatomy); what researchers take
//! a series for is the fluctuation around it. A file may therefore carry the mean image
//! `M(x, y, z)` itself — coded by the residual coder as a one-frame scan, exactly or within a
//! small bound — and a field fitted to the dynamic part `v − M` alone. A voxel decodes as
//! `M[x, y, z] + offset + y · scale`, then rounded and clamped as without a mean. The encoder
//! writes offset 0, so a field that outputs 0 decodes to the temporal mean itself — the
//! trivial baseline is where the fit starts. Layout and arithmetic: `docs/FORMAT.md`, "MEAN".

use super::stored_value;
use crate::codec::bytes::{ByteReader, ByteWriter};
use crate::model::coords::axis_coordinate;
use crate::residual::{self, ResidualError};
use crate::volume::DataType;

/// Why a `MEAN` section was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeanError {
    /// The section is shorter than its fixed fields, or they are out of range.
    #[error("{0}")]
    Invalid(String),
    /// The mean image's stream does not decode.
    #[error(transparent)]
    Stream(#[from] ResidualError),
}

/// A decoded temporal mean and the dynamic part's intensity mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct TemporalMean {
    /// `[nx, ny, nz]`.
    shape: [usize; 3],
    /// Stored values, x fastest.
    values: Vec<f32>,
    /// The dynamic part's value (stored units) that the field's 0 maps to.
    pub offset: f64,
    /// … and what one unit of field output is worth (positive).
    pub scale: f64,
}

/// The section's bytes: `offset`, `scale` (f64 LE), then the mean image's residual stream
/// (shape `[nx, ny, nz, 1]`, not predicted from the field).
pub fn write_section(offset: f64, scale: f64, stream: &[u8]) -> Vec<u8> {
    let mut w = ByteWriter::new();
    w.put_f64(offset);
    w.put_f64(scale);
    let mut out = w.into_vec();
    out.extend_from_slice(stream);
    out
}

impl TemporalMean {
    /// Parses and decodes a `MEAN` section for a scan of `shape`, checking everything first.
    pub fn parse(section: &[u8], shape: [usize; 4]) -> Result<TemporalMean, MeanError> {
        let mut r = ByteReader::new(section, "section MEAN");
        let bad = |e: crate::codec::container::FormatError| MeanError::Invalid(e.to_string());
        let offset = r.get_f64("offset").map_err(bad)?;
        let scale = r.get_f64("scale").map_err(bad)?;
        if !(offset.is_finite() && scale.is_finite() && scale > 0.0) {
            return Err(MeanError::Invalid(format!(
                "its offset {offset} and scale {scale} must be finite, the scale positive"
            )));
        }
        if shape[3] < 2 {
            return Err(MeanError::Invalid(
                "a temporal mean needs a series of at least 2 frames".into(),
            ));
        }
        let voxels = shape[0] as u128 * shape[1] as u128 * shape[2] as u128;
        if voxels > super::MAX_OUTPUT_VOXELS as u128 {
            return Err(MeanError::Invalid(format!(
                "its image of {voxels} voxels is over the decoder's budget of {} voxels",
                super::MAX_OUTPUT_VOXELS
            )));
        }
        let stream = residual::Reader::open(r.rest())?;
        let spatial = [shape[0], shape[1], shape[2], 1];
        if stream.header().shape != spatial {
            return Err(MeanError::Invalid(format!(
                "its image is {:?}, the scan's frames are {:?}",
                stream.header().shape,
                spatial
            )));
        }
        if stream.header().uses_field {
            return Err(MeanError::Invalid(
                "its image claims a field prediction, which a mean image cannot have".into(),
            ));
        }
        let values = stream.decode_all(None)?;
        Ok(TemporalMean {
            shape: [shape[0], shape[1], shape[2]],
            values,
            offset,
            scale,
        })
    }

    /// A mean made by the encoder from its own decoded image (the same values a decoder gets).
    #[cfg_attr(not(feature = "train"), allow(dead_code))] // used by the encoder only
    pub(crate) fn new(
        shape: [usize; 3],
        values: Vec<f32>,
        offset: f64,
        scale: f64,
    ) -> TemporalMean {
        TemporalMean {
            shape,
            values,
            offset,
            scale,
        }
    }

    /// The mean image, stored values, x fastest.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The mean at voxel `index` of a frame (`x + nx·(y + ny·z)`).
    #[inline]
    pub fn at_index(&self, index: usize) -> f64 {
        self.values[index] as f64
    }

    /// The dynamic part's value (before the mean is added) for field output `y`.
    #[inline]
    pub fn dynamic(&self, y: f32) -> f64 {
        self.offset + y as f64 * self.scale
    }

    /// The stored value for field output `y` where the mean is `mean` (`at_index` on the own
    /// grid, `at` elsewhere): `mean + dynamic(y)`, rounded and clamped as without a mean.
    #[inline]
    pub fn stored(&self, mean: f64, y: f32, datatype: Option<DataType>) -> f32 {
        stored_value(mean + self.dynamic(y), datatype)
    }

    /// The mean at field coordinates `u` (each in [0, 1]): trilinear between the voxel
    /// centres around `u · (n − 1)` per axis, in f64 (`docs/FORMAT.md`, "MEAN"). On a voxel
    /// centre of the scan's own grid it is that voxel's mean.
    pub fn at(&self, u: [f32; 3]) -> f64 {
        let mut lo = [0usize; 3];
        let mut w = [0f64; 3];
        for a in 0..3 {
            let n = self.shape[a];
            if n <= 1 {
                continue;
            }
            let p = (u[a] as f64).clamp(0.0, 1.0) * (n - 1) as f64;
            // Within f32 resolution of a voxel centre is that centre: u = i/(n−1) was
            // rounded to f32, and the own grid's voxels must get their own mean exactly.
            let nearest = p.round();
            let p = if (p - nearest).abs() <= (n - 1) as f64 * f32::EPSILON as f64 {
                nearest
            } else {
                p
            };
            let i = (p.floor() as usize).min(n - 2);
            lo[a] = i;
            w[a] = p - i as f64;
        }
        let [nx, ny, _] = self.shape;
        let mut sum = 0.0;
        for corner in 0..8 {
            let mut weight = 1.0;
            let mut idx = [0usize; 3];
            for a in 0..3 {
                let high = corner >> a & 1 == 1;
                let wa = if high { w[a] } else { 1.0 - w[a] };
                if wa == 0.0 {
                    weight = 0.0;
                    break;
                }
                weight *= wa;
                idx[a] = lo[a] + high as usize;
            }
            if weight != 0.0 {
                sum += weight * self.values[idx[0] + nx * (idx[1] + ny * idx[2])] as f64;
            }
        }
        sum
    }

    /// The mean at every voxel of a frame of a grid of `shape` (own or another), restricted to
    /// `ranges` on x, y and z, x fastest: the own grid looks voxels up, another interpolates.
    pub fn on_grid(&self, shape: [usize; 4], ranges: &[std::ops::Range<usize>; 4]) -> Vec<f64> {
        let own = shape[..3] == self.shape[..];
        let mut out = Vec::with_capacity(ranges[0].len() * ranges[1].len() * ranges[2].len());
        let [nx, ny, _] = self.shape;
        for z in ranges[2].clone() {
            for y in ranges[1].clone() {
                for x in ranges[0].clone() {
                    out.push(if own {
                        self.at_index(x + nx * (y + ny * z))
                    } else {
                        self.at([
                            axis_coordinate(x, shape[0]),
                            axis_coordinate(y, shape[1]),
                            axis_coordinate(z, shape[2]),
                        ])
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::residual::{Kind, Mode};

    fn section(values: &[f32], shape: [usize; 3]) -> Vec<u8> {
        let stream = residual::encode(
            values,
            None,
            [shape[0], shape[1], shape[2], 1],
            Mode::Lossless,
            Kind::Integer {
                min: -100,
                max: 100,
            },
        )
        .unwrap();
        write_section(-3.0, 8.0, &stream)
    }

    #[test]
    fn a_section_round_trips_and_maps_the_field() {
        let values: Vec<f32> = (0..24).map(|i| (i * 7 % 13) as f32 - 6.0).collect();
        let m = TemporalMean::parse(&section(&values, [2, 3, 4]), [2, 3, 4, 10]).unwrap();
        assert_eq!(m.values(), &values[..]);
        assert_eq!(m.dynamic(0.0), -3.0);
        assert_eq!(m.dynamic(0.5), 1.0);
        assert_eq!(m.at_index(5), values[5] as f64);
    }

    #[test]
    fn interpolation_hits_voxels_and_lies_between_them() {
        let values: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let m = TemporalMean::new([2, 3, 4], values.clone(), 0.0, 1.0);
        // Voxel centres are exact, also where i/(n−1) is not exact in f32.
        let long = TemporalMean::new(
            [1000, 1, 1],
            (0..1000).map(|i| (i * i) as f32).collect(),
            0.0,
            1.0,
        );
        for i in 0..1000 {
            assert_eq!(
                long.at([axis_coordinate(i, 1000), 0.0, 0.0]),
                (i * i) as f64
            );
        }
        for z in 0..4 {
            for y in 0..3 {
                for x in 0..2 {
                    let u = [
                        axis_coordinate(x, 2),
                        axis_coordinate(y, 3),
                        axis_coordinate(z, 4),
                    ];
                    assert_eq!(m.at(u), values[x + 2 * (y + 3 * z)] as f64);
                }
            }
        }
        // A linear image interpolates linearly: halfway along x between 0 and 1.
        assert!((m.at([0.5, 0.0, 0.0]) - 0.5).abs() < 1e-12);
        // Halfway between y = 0 and y = 1 (u = 0.25 of 2 intervals): 0 + 2·0.5.
        assert!((m.at([0.0, 0.25, 0.0]) - 1.0).abs() < 1e-12);
        let own = m.on_grid([2, 3, 4, 5], &[0..2, 1..3, 3..4, 0..1]);
        assert_eq!(own, vec![20.0, 21.0, 22.0, 23.0]);
        let finer = m.on_grid([3, 3, 4, 1], &[0..3, 0..1, 0..1, 0..1]);
        assert_eq!(finer, vec![0.0, 0.5, 1.0]);
    }

    #[test]
    fn damaged_sections_are_errors() {
        let values: Vec<f32> = vec![1.0; 24];
        let good = section(&values, [2, 3, 4]);
        assert!(TemporalMean::parse(&good[..10], [2, 3, 4, 10]).is_err());
        assert!(TemporalMean::parse(&good, [2, 3, 5, 10]).is_err());
        assert!(TemporalMean::parse(&good, [2, 3, 4, 1]).is_err());
        let huge = TemporalMean::parse(&good, [1 << 11, 1 << 10, 1 << 10, 2]).unwrap_err();
        assert!(huge.to_string().contains("budget"), "{huge}");
        let mut reversed = good.clone();
        reversed[..16].copy_from_slice(&write_section(5.0, 0.0, &[])[..16]);
        assert!(TemporalMean::parse(&reversed, [2, 3, 4, 10]).is_err());
        for cut in [17, good.len() - 1] {
            assert!(TemporalMean::parse(&good[..cut], [2, 3, 4, 10]).is_err());
        }
    }
}
