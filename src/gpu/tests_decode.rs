//! The fused decode kernels (host build) against `decode::Evaluator`, bit for bit.

use super::host::HostGrid;
use super::layout::{GpuRegion, MlpShape};
use super::test_support::{bits, random_coords, random_field};
use crate::decoder::{Evaluator, Region};
use crate::model::GridLayout;

/// (scan shape, features, (hidden width, hidden layers)): 3D and 4D, every feature count,
/// the widths the evaluator specialises (8, 16, 32, 64) and one it does not (5).
const CASES: [([usize; 4], usize, (usize, usize)); 6] = [
    ([23, 17, 11, 1], 1, (8, 1)),
    ([23, 17, 11, 1], 2, (32, 2)),
    ([16, 21, 9, 1], 8, (64, 1)),
    ([13, 9, 7, 5], 2, (16, 2)),
    ([13, 9, 7, 4], 4, (5, 3)),
    ([11, 8, 6, 3], 8, (32, 2)),
];

#[test]
fn decode_grid_is_bit_identical_to_the_evaluator() {
    for (case, (shape, features, hidden)) in CASES.into_iter().enumerate() {
        let rf = random_field(shape, features, hidden, 80 + case as u64);
        let layout = GridLayout::new(&rf.config);
        assert!(layout.levels.iter().any(|l| l.hashed));
        let eval = Evaluator::new(&rf.config, &rf.tensors).unwrap();
        let grid = HostGrid::new(&layout);
        let mlp = MlpShape::new(&rf.config);
        let (table, weights) = (rf.table(), rf.weights());
        // The scan's own grid, a resampled one, one frame and a slice on every axis.
        let other = [shape[0] + 4, shape[1] - 2, shape[2] + 1, shape[3]];
        let mut regions = vec![(shape, Region::Full), (other, Region::Full)];
        regions.push((shape, Region::Frame(shape[3] - 1)));
        for axis in 0..3 {
            let (index, frame) = (shape[axis] / 2, shape[3] / 2);
            regions.push((shape, Region::Slice { axis, index, frame }));
        }
        let mut nonzero = 0;
        for (grid_shape, region) in regions {
            let (want, _) = eval.grid(grid_shape, region).unwrap();
            let r = GpuRegion::new(grid_shape, region).unwrap();
            let got = grid.decode_grid(&table, &weights, mlp, r);
            assert_eq!(
                bits(&got),
                bits(&want),
                "case {case}: {grid_shape:?} {region:?}"
            );
            nonzero += want.iter().filter(|v| **v != 0.0).count();
        }
        assert!(nonzero > 0, "case {case}: the field is all zeros");
    }
}

#[test]
fn decode_points_is_bit_identical_to_the_evaluator() {
    for (case, (shape, features, hidden)) in CASES.into_iter().enumerate() {
        let rf = random_field(shape, features, hidden, 90 + case as u64);
        let layout = GridLayout::new(&rf.config);
        let eval = Evaluator::new(&rf.config, &rf.tensors).unwrap();
        let coords = random_coords(500, layout.dims, 91);
        let want = eval.evaluate(&coords).unwrap();
        let got = HostGrid::new(&layout).decode_points(
            &rf.table(),
            &rf.weights(),
            MlpShape::new(&rf.config),
            &coords,
        );
        assert_eq!(bits(&got), bits(&want), "case {case}");
    }
}
