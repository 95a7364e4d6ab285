//! The temporal mean of a series held apart from the field (`decoder::mean`): computed, coded
//! by the residual coder as a one-frame scan within a small bound, decoded back (the field is
//! fitted against what the decoder will add), and kept only where it pays.

use crate::decoder::mean::{write_section, TemporalMean};
use crate::residual::{self, Kind, Mode};
use crate::settings::SeriesSettings;
use crate::volume::{DataType, Voxels};

/// A temporal mean ready for a file: its section and the decoded image the field is fitted
/// against.
pub(super) struct SeparatedMean {
    /// The `MEAN` section's bytes.
    pub section: Vec<u8>,
    /// The decoded mean and the dynamic part's mapping.
    pub mean: TemporalMean,
    /// The bound the mean image was coded within (stored units; 0 = exact).
    pub max_error: f64,
}

impl SeparatedMean {
    /// The series' foreground, voxels of a frame (`x + nx·(y + ny·z)`): the automatic mask of
    /// `docs/METRICS.md` applied to the mean image; empty when no voxel passes.
    pub fn foreground(&self, shape: [usize; 4]) -> Vec<u32> {
        let [nx, ny, nz, _] = shape;
        crate::metrics::timeseries::auto_mask(self.mean.values(), [nx, ny, nz, 1])
            .map(|mask| {
                (0..mask.len() as u32)
                    .filter(|&i| mask[i as usize])
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Framing of a section in the container (tag, length, CRC).
const SECTION_FRAMING: usize = crate::codec::container::SECTION_OVERHEAD;
/// The section's fixed fields before the stream (offset, scale).
const SECTION_FIELDS: usize = 16;

/// The series' mean held apart, or `None` where the settings, the frame count or (for a
/// size target of `target_bytes`) the mean's share of the file say not to.
pub(super) fn separate(
    data: &Voxels,
    shape: [usize; 4],
    datatype: DataType,
    target_bytes: Option<usize>,
    settings: &SeriesSettings,
) -> Result<Option<SeparatedMean>, residual::ResidualError> {
    if !settings.separate_mean || shape[3] < settings.min_frames.max(2) {
        return Ok(None);
    }
    let frame = shape[0] * shape[1] * shape[2];
    let mut buf = vec![0f32; frame];
    let mut sums = vec![0f64; frame];
    for t in 0..shape[3] {
        data.read(t * frame, &mut buf);
        for (s, &v) in sums.iter_mut().zip(&buf) {
            *s += v as f64;
        }
    }
    let frames = shape[3] as f64;
    let exact: Vec<f64> = sums.iter().map(|s| s / frames).collect();
    let grand = exact.iter().sum::<f64>() / frame as f64;
    let (mut squares, mut total) = (0.0, 0.0);
    for t in 0..shape[3] {
        data.read(t * frame, &mut buf);
        for (m, &v) in exact.iter().zip(&buf) {
            squares += (v as f64 - m).powi(2);
            total += (v as f64 - grand).powi(2);
        }
    }
    // Only series whose voxels differ mostly by their mean (fMRI, perfusion before the
    // bolus): where the mean explains little (a diffusion series), it is bytes taken from
    // the field for nothing.
    if total <= 0.0 || 1.0 - squares / total < settings.mean_min_explained {
        return Ok(None);
    }
    let rms = (squares / (frame as f64 * frames)).sqrt();
    let spatial = [shape[0], shape[1], shape[2], 1];
    let integer = datatype.is_integer();
    let (values, kind) = if integer {
        let (lo, hi) = datatype.range();
        let values: Vec<f32> = exact
            .iter()
            .map(|m| m.round().clamp(lo, hi) as f32)
            .collect();
        let (min, max) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let kind = Kind::Integer {
            min: min as i64,
            max: max as i64,
        };
        (values, kind)
    } else {
        (exact.iter().map(|&m| m as f32).collect(), Kind::Float)
    };
    // The finest bound first; coarser (doubling) while the section is over its share of the
    // target, up to `coarsest_mean_fraction` of the dynamic RMS, past which the field alone.
    let budget = target_bytes.map(|t| settings.mean_max_share * t as f64);
    let mut bound = settings.mean_error_fraction * rms;
    let (stream, max_error) = loop {
        let d = if integer { bound.floor() } else { bound };
        let mode = if d > 0.0 {
            Mode::Bound { max_error: d }
        } else {
            Mode::Lossless
        };
        let stream = residual::encode(&values, None, spatial, mode, kind)?;
        let bytes = stream.len() + SECTION_FIELDS + SECTION_FRAMING;
        if budget.is_none_or(|b| bytes as f64 <= b) {
            break (stream, d.max(0.0));
        }
        bound = if bound > 0.0 { 2.0 * bound } else { rms / 64.0 };
        if !(bound > 0.0 && bound <= settings.coarsest_mean_fraction * rms) {
            return Ok(None);
        }
    };
    let decoded = residual::decode(&stream, None)?;
    let (mut lo, mut hi) = (0f64, 0f64);
    for t in 0..shape[3] {
        data.read(t * frame, &mut buf);
        for (m, &v) in decoded.iter().zip(&buf) {
            let d = v as f64 - *m as f64;
            lo = lo.min(d);
            hi = hi.max(d);
        }
    }
    // Offset 0: a field output of 0 is the mean itself, where the fit starts.
    let scale = lo.abs().max(hi.abs());
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let section = write_section(0.0, scale, &stream);
    Ok(Some(SeparatedMean {
        section,
        mean: TemporalMean::new([shape[0], shape[1], shape[2]], decoded, 0.0, scale),
        max_error,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4×3×2 series of 10 frames: a spatial pattern plus a small oscillation.
    fn series() -> (Voxels, [usize; 4]) {
        let shape = [4, 3, 2, 10];
        let values: Vec<f32> = (0..240)
            .map(|i| {
                let s = i % 24;
                let t = i / 24;
                (100 + 37 * s) as f32 + [3.0, -3.0][t % 2]
            })
            .collect();
        (Voxels::from_f32(values, DataType::I16), shape)
    }

    #[test]
    fn the_mean_and_the_dynamic_range_are_what_the_decoder_gets() {
        let (data, shape) = series();
        let settings = SeriesSettings::default();
        let m = separate(&data, shape, DataType::I16, None, &settings)
            .unwrap()
            .unwrap();
        // RMS 3 × 0.05 < 1: the mean is exact, and the dynamic part is ±3.
        assert_eq!(m.max_error, 0.0);
        let expected: Vec<f32> = (0..24).map(|s| (100 + 37 * s) as f32).collect();
        assert_eq!(m.mean.values(), &expected[..]);
        assert_eq!((m.mean.offset, m.mean.scale), (0.0, 3.0));
        let parsed = TemporalMean::parse(&m.section, shape).unwrap();
        assert_eq!(parsed, m.mean);
        // Every voxel is above a tenth of the bright end: all foreground.
        assert_eq!(m.foreground(shape), (0..24).collect::<Vec<u32>>());
    }

    #[test]
    fn a_mean_over_its_share_is_coded_coarser() {
        // 16×16×4 voxels of an irregular image (0 … 996), ±50 around it in 10 frames.
        let shape = [16, 16, 4, 10];
        let frame = 16 * 16 * 4;
        let values: Vec<f32> = (0..frame * 10)
            .map(|i| ((i % frame) * 7919 % 997) as f32 + [50.0, -50.0][(i / frame) % 2])
            .collect();
        let data = Voxels::from_f32(values, DataType::I16);
        let settings = SeriesSettings::default();
        let fine = separate(&data, shape, DataType::I16, None, &settings)
            .unwrap()
            .unwrap();
        assert_eq!(fine.max_error, 2.0); // ⌊0.05 × 50⌋
                                         // A target whose share is 75 % of that section: a coarser bound, within the share.
        let share = 0.75 * (fine.section.len() + 12) as f64;
        let target = (share / settings.mean_max_share).floor() as usize;
        let coarse = separate(&data, shape, DataType::I16, Some(target), &settings)
            .unwrap()
            .unwrap();
        assert!(
            coarse.max_error > 2.0 && coarse.max_error <= 50.0,
            "{}",
            coarse.max_error
        );
        assert!((coarse.section.len() + 12) as f64 <= share);
        let decoded = TemporalMean::parse(&coarse.section, shape).unwrap();
        for (i, &m) in decoded.values().iter().enumerate() {
            let exact = ((i * 7919 % 997) as f64).round();
            assert!((m as f64 - exact).abs() <= coarse.max_error);
        }
    }

    #[test]
    fn short_series_and_large_shares_keep_the_field_alone() {
        let (data, shape) = series();
        let settings = SeriesSettings::default();
        let few = SeriesSettings {
            min_frames: 11,
            ..settings.clone()
        };
        // The mean explains 0.99986 of the variance (37²·(24² − 1)/12 against ±3): not 0.99999.
        let strict = SeriesSettings {
            mean_min_explained: 0.99999,
            ..settings.clone()
        };
        assert!(separate(&data, shape, DataType::I16, None, &strict)
            .unwrap()
            .is_none());
        assert!(separate(&data, shape, DataType::I16, None, &few)
            .unwrap()
            .is_none());
        assert!(separate(&data, shape, DataType::I16, Some(20), &settings)
            .unwrap()
            .is_none());
        let off = SeriesSettings {
            separate_mean: false,
            ..settings
        };
        assert!(separate(&data, shape, DataType::I16, None, &off)
            .unwrap()
            .is_none());
    }
}
