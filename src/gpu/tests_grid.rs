//! The grid-encoding kernels (host build) against `field::hashgrid`, bit for bit.

use super::host::HostGrid;
use super::test_support::{bits, random_coords, random_field};
use crate::model::GridLayout;

/// Shapes with 3 and 4 axes, odd sizes so the resolutions differ per axis.
const SHAPES: [[usize; 4]; 2] = [[23, 17, 11, 1], [13, 9, 7, 5]];

#[test]
fn grid_forward_matches_rust_bit_for_bit() {
    for (s, shape) in SHAPES.into_iter().enumerate() {
        for features in [1, 2, 4, 8] {
            let field = random_field(shape, features, (8, 1), 10 + s as u64);
            let layout = GridLayout::new(&field.config);
            assert!(layout.levels.iter().any(|l| l.hashed));
            assert!(layout.levels.iter().any(|l| !l.hashed));
            let coords = random_coords(300, layout.dims, 20);
            let table = field.table();
            let mut want = vec![0f32; coords.len() / layout.dims * layout.width()];
            layout.forward(&table, &coords, &mut want);
            let mut got = vec![0f32; want.len()];
            HostGrid::new(&layout).forward(&table, &coords, &mut got);
            assert_eq!(
                bits(&got),
                bits(&want),
                "shape {shape:?}, features {features}"
            );
        }
    }
}

#[test]
fn grid_backward_matches_rust_bit_for_bit() {
    for (s, shape) in SHAPES.into_iter().enumerate() {
        for features in [1, 2, 4, 8] {
            let field = random_field(shape, features, (8, 1), 30 + s as u64);
            let layout = GridLayout::new(&field.config);
            let coords = random_coords(200, layout.dims, 40);
            let n = coords.len() / layout.dims;
            let upstream = random_coords(n * layout.width(), 1, 50);
            let upstream = &upstream[..n * layout.width()];
            let mut want = vec![0f32; layout.table_len()];
            layout.backward(&coords, upstream, &mut want);
            let mut got = vec![0f32; layout.table_len()];
            HostGrid::new(&layout).backward(&coords, upstream, &mut got);
            assert!(want.iter().filter(|v| **v != 0.0).count() > layout.table_len() / 4);
            assert_eq!(
                bits(&got),
                bits(&want),
                "shape {shape:?}, features {features}"
            );
        }
    }
}

/// The worked example of docs/FORMAT.md "Grid encoding": one hashed level, `F = 1`,
/// `t[e] = e / 4096`. Catches a host compiler that contracts `a·b + c` or reorders sums.
#[test]
fn grid_forward_reproduces_the_format_worked_example() {
    let config = crate::model::FieldConfig {
        dims: 3,
        features: 1,
        table_size: 4096,
        resolutions: vec![[16, 16, 16, 0]],
        hidden_width: 1,
        hidden_layers: 1,
    };
    let layout = GridLayout::new(&config);
    assert!(layout.levels[0].hashed);
    let table: Vec<f32> = (0..4096).map(|e| e as f32 / 4096.0).collect();
    let mut out = [0f32; 1];
    HostGrid::new(&layout).forward(&table, &[0.3, 0.6, 0.45], &mut out);
    assert_eq!(out[0].to_bits(), 0x3EBF_1168);
}
