//! Where voxels sit in the field's coordinate space.
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
}
