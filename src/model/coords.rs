//! Where voxels sit in the field's coordinate space, and where a flat voxel index sits in the
//! scan.
//!
//! Voxel `i` of an axis with `n` voxels sits at `u = i / (n − 1)` (0 when `n = 1`): the first and
//! last voxel centres are at 0 and 1 on every axis, so a grid of another size covers the same
//! field of view (corner-aligned resampling) and, at the finest level, voxel centres fall on
//! grid vertices. The division is one correctly rounded f32 operation, as `docs/FORMAT.md` says.

/// The coordinate of voxel `i` on an axis of `n` voxels.
#[inline]
pub fn axis_coordinate(i: usize, n: usize) -> f32 {
    if n <= 1 {
        0.0
    } else {
        i as f32 / (n - 1) as f32
    }
}

/// Coordinates of all positions along an axis.
pub fn axis_coordinates(n: usize) -> Vec<f32> {
    (0..n).map(|i| axis_coordinate(i, n)).collect()
}

/// The `[x, y, z, t]` position of the voxel at flat `index` of a scan of `shape`
/// (x fastest, as NIfTI stores voxels).
#[inline]
#[cfg_attr(not(feature = "train"), allow(dead_code))] // used by the encoder only
pub fn voxel_position(index: usize, shape: [usize; 4]) -> [usize; 4] {
    let [nx, ny, nz, _] = shape;
    [
        index % nx,
        (index / nx) % ny,
        (index / (nx * ny)) % nz,
        index / (nx * ny * nz),
    ]
}

/// Appends the field coordinates of the voxel at flat `index` (`dims` of them: x, y, z and,
/// for a 4-axis field, t), looking each axis up in `axes` (`axis_coordinates` per axis).
#[inline]
#[cfg_attr(not(feature = "train"), allow(dead_code))] // used by the encoder only
pub fn push_voxel_coordinates(
    index: usize,
    shape: [usize; 4],
    dims: usize,
    axes: &[Vec<f32>; 4],
    out: &mut Vec<f32>,
) {
    let p = voxel_position(index, shape);
    for a in 0..dims {
        out.push(axes[a][p[a]]);
    }
}

/// Deterministic pseudo-random values in [0, 1) for tests (a 64-bit LCG's top 24 bits).
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32) / ((1u64 << 24) as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_map_to_zero_and_one() {
        assert_eq!(axis_coordinate(0, 181), 0.0);
        assert_eq!(axis_coordinate(180, 181), 1.0);
        assert_eq!(axis_coordinate(0, 1), 0.0);
        assert_eq!(axis_coordinates(3), vec![0.0, 0.5, 1.0]);
    }

    #[test]
    fn flat_index_maps_to_position_and_back() {
        let shape = [4, 3, 2, 5];
        for i in 0..120 {
            let [x, y, z, t] = voxel_position(i, shape);
            assert_eq!(x + 4 * (y + 3 * (z + 2 * t)), i);
        }
        let axes = shape.map(axis_coordinates);
        let mut c = Vec::new();
        push_voxel_coordinates(1 + 4 * (2 + 3 * (1 + 2 * 4)), shape, 4, &axes, &mut c);
        assert_eq!(c, vec![1.0 / 3.0, 1.0, 1.0, 1.0]);
    }
}
