//! Training batches drawn straight from the voxel array: random voxel indices, their
//! coordinates and normalised intensities. Nothing proportional to the scan is materialised:
//! intensities are normalised as they are drawn ([`Targets`]) from the stored values, so long
//! 4D series fit in memory.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::coords::{axis_coordinates, push_voxel_coordinates};
use crate::volume::Voxels;

/// What the field is fitted to: the stored values mapped to about [0, 1] as
/// `(v − offset) / scale` when read, so no normalised copy of the scan is held.
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a> {
    values: &'a Voxels,
    offset: f64,
    scale: f32,
    /// A temporal mean subtracted first (one value per voxel of a frame), for a field that
    /// holds the dynamic part of a series alone (`decoder::mean`).
    mean: Option<&'a [f32]>,
}

impl<'a> Targets<'a> {
    /// `values` mapped by `(v − offset) / scale` (the subtraction in f64, the division in f32).
    pub fn new(values: &'a Voxels, offset: f64, scale: f32) -> Targets<'a> {
        Targets {
            values,
            offset,
            scale,
            mean: None,
        }
    }

    /// `values` mapped by `(v − mean[voxel's place in its frame] − offset) / scale`: the
    /// dynamic part of a series (`mean` holds one value per voxel of a frame).
    pub fn dynamic(values: &'a Voxels, mean: &'a [f32], offset: f64, scale: f32) -> Targets<'a> {
        Targets {
            values,
            offset,
            scale,
            mean: Some(mean),
        }
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The normalised value of voxel `i`.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        let v = self.values.get(i) as f64;
        let v = match self.mean {
            Some(mean) => v - mean[i % mean.len()] as f64,
            None => v,
        };
        ((v - self.offset) as f32) / self.scale
    }
}

/// Uniform sampler over voxel centres, seeded and reproducible.
pub struct Sampler<'a> {
    targets: Targets<'a>,
    shape: [usize; 4],
    dims: usize,
    rng: ChaCha8Rng,
    /// Per-axis coordinate lookup (cheaper than a division per sample).
    axes: [Vec<f32>; 4],
    /// Voxels of a frame (x + nx·(y + ny·z)) drawn more often, and the share of each batch
    /// drawn from them (in any frame), the rest uniformly over the scan.
    foreground: Option<(&'a [u32], f64)>,
}

impl<'a> Sampler<'a> {
    /// `targets` are normalised intensities in x-fastest order over `shape` (`[nx, ny, nz, nt]`);
    /// `dims` is 3 or 4.
    pub fn new(targets: Targets<'a>, shape: [usize; 4], dims: usize, seed: u64) -> Sampler<'a> {
        let axes = shape.map(axis_coordinates);
        Sampler {
            targets,
            shape,
            dims,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x05ee_d5a3_b1e5),
            axes,
            foreground: None,
        }
    }

    /// Draws `share` of each batch from the `voxels` of a frame (indices `x + nx·(y + ny·z)`,
    /// each in a uniformly drawn frame): the fit then spends more of the field on them (a
    /// series' foreground). Without voxels or with share 0 the batches stay uniform, drawn
    /// exactly as by [`Sampler::new`].
    pub fn with_foreground(mut self, voxels: &'a [u32], share: f64) -> Sampler<'a> {
        if !voxels.is_empty() && share > 0.0 {
            self.foreground = Some((voxels, share.min(1.0)));
        }
        self
    }

    /// Fills `coords` (`batch × dims`) and `values` (`batch`) with a fresh uniform batch.
    pub fn fill(&mut self, coords: &mut Vec<f32>, values: &mut Vec<f32>, batch: usize) {
        coords.clear();
        values.clear();
        let total = self.targets.len();
        let frame = self.shape[0] * self.shape[1] * self.shape[2];
        for _ in 0..batch {
            let index = match self.foreground {
                Some((voxels, share)) if self.rng.random::<f64>() < share => {
                    let v = voxels[self.rng.random_range(0..voxels.len())] as usize;
                    v + frame * self.rng.random_range(0..self.shape[3])
                }
                _ => self.rng.random_range(0..total),
            };
            push_voxel_coordinates(index, self.shape, self.dims, &self.axes, coords);
            values.push(self.targets.get(index));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_reproducible_and_consistent() {
        let shape = [4, 3, 2, 2];
        let stored = Voxels::I16((0..48).map(|i| 2 * i - 10).collect());
        let targets = Targets::new(&stored, -10.0, 2.0);
        let mut a = Sampler::new(targets, shape, 4, 3);
        let mut b = Sampler::new(targets, shape, 4, 3);
        let (mut ca, mut va, mut cb, mut vb) = (vec![], vec![], vec![], vec![]);
        a.fill(&mut ca, &mut va, 100);
        b.fill(&mut cb, &mut vb, 100);
        assert_eq!((ca.clone(), va.clone()), (cb, vb));
        for (c, v) in ca.chunks(4).zip(&va) {
            let x = (c[0] * 3.0).round() as usize;
            let y = (c[1] * 2.0).round() as usize;
            let z = c[2].round() as usize;
            let t = c[3].round() as usize;
            assert_eq!(*v as usize, x + 4 * (y + 3 * (z + 2 * t)));
        }
    }

    #[test]
    fn a_foreground_gets_its_share_of_each_batch() {
        let shape = [4, 3, 2, 5];
        let stored = Voxels::I16((0..120).collect());
        let targets = Targets::new(&stored, 0.0, 1.0);
        let foreground = [5u32, 17];
        let mut s = Sampler::new(targets, shape, 4, 9).with_foreground(&foreground, 0.5);
        let (mut c, mut v) = (vec![], vec![]);
        s.fill(&mut c, &mut v, 20_000);
        let inside = v
            .iter()
            .filter(|&&x| [5, 17].contains(&(x as usize % 24)))
            .count();
        // Half drawn from the foreground, plus the uniform half's 2 in 24.
        let expected = 20_000.0 * (0.5 + 0.5 * 2.0 / 24.0);
        assert!(
            (inside as f64 - expected).abs() < 400.0,
            "{inside} vs {expected}"
        );
        // Every frame is drawn from the foreground.
        for t in 0..5 {
            assert!(v.iter().any(|&x| x as usize == 5 + 24 * t));
        }
        // No foreground: the same batches as a plain sampler.
        let mut plain = Sampler::new(targets, shape, 4, 9);
        let mut empty = Sampler::new(targets, shape, 4, 9).with_foreground(&[], 0.5);
        let (mut c1, mut v1, mut c2, mut v2) = (vec![], vec![], vec![], vec![]);
        plain.fill(&mut c1, &mut v1, 100);
        empty.fill(&mut c2, &mut v2, 100);
        assert_eq!((c1, v1), (c2, v2));
    }
}
