//! The self-check of a compress run: the file just made is decoded by `Decoder` itself and
//! compared with the scan a piece at a time (slabs of whole axial slices, or the residual
//! layer's chunks), so no decoded copy of the whole scan is held (for a 1 G-voxel series that
//! copy alone would be 4 GiB). A bounded file's guarantee is checked on every voxel in the
//! same pass.

use super::{Bound, EncodeError, Fit, Progress};
use crate::codec::payload::MinrFile;
use crate::decoder::{Decoder, Region};
use crate::metrics::{self, Accumulator, Comparison};
use crate::residual::{self, ChunkRegion};

/// Voxels decoded at once by the self-check (whole axial slices of one frame, at least one
/// slice): 4 Mi voxels keeps the check's buffers near 50 MiB while each slab still spreads
/// over every core.
const CHECK_SLAB_VOXELS: usize = 1 << 22;

impl Fit<'_> {
    /// Quality of `file` against the scan, in the units `(slope, intercept)` maps stored values
    /// to (`(1, 0)`: stored units). `full` adds SSIM and, for a bounded file, checks its bound
    /// on every voxel ([`EncodeError::BoundViolated`]). Says how far it is to `progress`.
    pub(super) fn check(
        &self,
        file: &MinrFile,
        units: (f64, f64),
        full: bool,
        progress: &mut dyn Progress,
    ) -> Result<Comparison, EncodeError> {
        let decoder = Decoder::from_file(file.clone(), 0)?;
        let [nx, ny, nz, _] = self.shape;
        let range = physical_range(self.data.finite_range(), units);
        let mut quality = Accumulator::new(self.shape, range, full);
        let total = self.voxels();
        let mut reference = Vec::new();
        let mut compare = |start: usize, decoded: &mut [f32]| -> Result<(), EncodeError> {
            reference.resize(decoded.len(), 0.0);
            self.data.read(start, &mut reference);
            if full {
                self.check_bound(start, decoded, &reference)?;
            }
            metrics::to_physical(decoded, units.0, units.1);
            metrics::to_physical(&mut reference, units.0, units.1);
            quality.add(&reference, decoded)?;
            progress.checked(quality.voxels(), total);
            Ok(())
        };
        let plane = nx * ny;
        for ChunkRegion { z, t } in pieces(file, self.shape)? {
            let region = Region::Box {
                start: [0, 0, z.start, t.start],
                end: [nx, ny, z.end, t.end],
            };
            let (mut decoded, _) = decoder.region(self.shape, region)?;
            // Frame by frame: each frame's slices of the piece are contiguous in the scan.
            for (frame, ti) in decoded.chunks_mut(plane * z.len()).zip(t) {
                compare(plane * (z.start + nz * ti), frame)?;
            }
        }
        Ok(quality.finish()?)
    }

    /// Checks the file's bound (and a region of interest's tighter one) on decoded voxels
    /// `start ..` against the stored values, in stored units.
    fn check_bound(
        &self,
        start: usize,
        decoded: &[f32],
        reference: &[f32],
    ) -> Result<(), EncodeError> {
        let Some(bound) = self.options.bound.or(self.guarantee.map(Bound::MaxError)) else {
            return Ok(());
        };
        let limit = match bound {
            Bound::Lossless => 0.0,
            Bound::MaxError(d) => d,
        };
        let frame = self.shape[0] * self.shape[1] * self.shape[2];
        let limit_of = |i: usize| match &self.options.roi {
            Some(r) if r.mask[if r.mask.len() == frame { i % frame } else { i }] => r.max_error,
            _ => limit,
        };
        for (i, (a, b)) in decoded.iter().zip(reference).enumerate() {
            let l = limit_of(start + i);
            let error = (*a as f64 - *b as f64).abs();
            if (l == 0.0 && a.to_bits() != b.to_bits()) || error > l {
                return Err(EncodeError::BoundViolated {
                    got: error,
                    bound: l,
                });
            }
        }
        Ok(())
    }
}

/// The pieces the check decodes (slices and frames): a file with a residual layer by its
/// residual chunks (each decoded once, with the field's prediction of it alone), any other by
/// slabs of at most [`CHECK_SLAB_VOXELS`] in one frame.
fn pieces(file: &MinrFile, shape: [usize; 4]) -> Result<Vec<ChunkRegion>, EncodeError> {
    let [nx, ny, nz, nt] = shape;
    if let Some(bytes) = &file.residual {
        let stream = residual::Reader::open(bytes)?;
        return (0..stream.chunk_count())
            .map(|c| Ok(stream.chunk_region(c)?))
            .collect();
    }
    let slab = (CHECK_SLAB_VOXELS / (nx * ny).max(1)).clamp(1, nz.max(1));
    Ok((0..nt)
        .flat_map(|t| {
            (0..nz).step_by(slab).map(move |z| ChunkRegion {
                z: z..(z + slab).min(nz),
                t: t..t + 1,
            })
        })
        .collect())
}

/// The reference's range in physical units, from its stored range (the mapping is monotone,
/// so the ends map to the ends), exactly as [`metrics::data_range`] measures the whole scan.
fn physical_range(stored: Option<(f32, f32)>, (slope, inter): (f64, f64)) -> f64 {
    let ends = stored.map_or(Vec::new(), |(lo, hi)| {
        vec![
            metrics::physical_value(lo, slope, inter),
            metrics::physical_value(hi, slope, inter),
        ]
    });
    metrics::data_range(&ends)
}
