//! The MLP kernels (host build): the fused-multiply-add rule, and forward plus gradients of
//! the whole training pipeline (grid kernels + MLP kernels) against candle's autograd
//! through `field::Field`.

use candle_core::{Device, Tensor};

use super::host::{mlp_backward, mlp_forward, HostGrid};
use super::layout::MlpShape;
use super::test_support::{random_coords, random_field};
use crate::model::GridLayout;
use crate::train::Field;

/// docs/FORMAT.md "MLP": `fma(1 + 2^−23, 1 − 2^−23, −1) = −2^−46`, the unfused form 0. The
/// hidden layer passes its (positive) inputs through unchanged.
#[test]
fn mlp_forward_fuses_its_multiply_adds() {
    let eps = f32::EPSILON;
    let shape = MlpShape {
        in_width: 2,
        hidden_width: 2,
        hidden_layers: 1,
    };
    let weights = [1.0, 0.0, 0.0, 1.0, -1.0, 1.0 + eps];
    let fwd = mlp_forward(&weights, shape, &[1.0, 1.0 - eps]);
    assert_eq!(fwd.acts, [1.0, 1.0 - eps]);
    assert_eq!(fwd.y[0], -(2f32.powi(-46)));
}

/// Largest absolute difference relative to the reference's largest magnitude.
fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

#[test]
fn training_pipeline_matches_candle_autograd() {
    for (shape, features, hidden) in [
        ([23, 17, 11, 1], 2, (16, 2)),
        ([13, 9, 7, 5], 4, (32, 1)),
        ([19, 15, 9, 1], 8, (8, 3)),
    ] {
        let rf = random_field(shape, features, hidden, 60);
        let config = &rf.config;
        let layout = GridLayout::new(config);
        let dims = layout.dims;
        let coords = random_coords(97, dims, 61);
        let n = coords.len() / dims;
        let upstream: Vec<f32> = random_coords(n, 1, 62)[..n].to_vec();

        // candle: loss = Σ upstream_n · y_n.
        let device = Device::Cpu;
        let field = Field::from_tensors(config, &rf.tensors, &device).unwrap();
        let x = Tensor::from_vec(coords.clone(), (n, dims), &device).unwrap();
        let y = field.forward(&x).unwrap();
        let c = Tensor::from_vec(upstream.clone(), n, &device).unwrap();
        let grads = (&y * &c).unwrap().sum_all().unwrap().backward().unwrap();
        let want_y = y.to_vec1::<f32>().unwrap();
        let grad_of = |v: &candle_core::Var| -> Vec<f32> {
            grads
                .get(v.as_tensor())
                .expect("gradient reaches every parameter")
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let want_table = grad_of(&field.grid_vars()[0]);
        let want_weights: Vec<f32> = field.mlp_vars().iter().flat_map(grad_of).collect();

        // The kernels: encode, MLP forward, MLP backward, scatter.
        let grid = HostGrid::new(&layout);
        let mlp = MlpShape::new(config);
        let weights = rf.weights();
        let mut encoded = vec![0f32; n * layout.width()];
        grid.forward(&rf.table(), &coords, &mut encoded);
        let fwd = mlp_forward(&weights, mlp, &encoded);
        let g = mlp_backward(&weights, mlp, &encoded, &fwd, &upstream, 16);
        let mut table_grad = vec![0f32; layout.table_len()];
        grid.backward(&coords, &g.dx, &mut table_grad);

        let what = format!("shape {shape:?}, features {features}, mlp {hidden:?}");
        assert!(want_y.iter().any(|v| *v != 0.0), "{what}: trivial output");
        assert!(relative_error(&fwd.y, &want_y) < 1e-5, "{what}: output");
        assert!(
            relative_error(&g.weights, &want_weights) < 1e-4,
            "{what}: weight gradient"
        );
        assert!(
            relative_error(&table_grad, &want_table) < 1e-4,
            "{what}: table gradient"
        );
    }
}

/// The weight gradient's chunked reduction agrees whatever the chunk size (each weight is
/// a sum over all samples), including a chunk larger than the batch.
#[test]
fn weight_gradient_does_not_depend_on_chunking() {
    let rf = random_field([23, 17, 11, 1], 2, (16, 2), 70);
    let layout = GridLayout::new(&rf.config);
    let coords = random_coords(150, 3, 71);
    let n = coords.len() / 3;
    let mut encoded = vec![0f32; n * layout.width()];
    HostGrid::new(&layout).forward(&rf.table(), &coords, &mut encoded);
    let mlp = MlpShape::new(&rf.config);
    let weights = rf.weights();
    let fwd = mlp_forward(&weights, mlp, &encoded);
    let dy = vec![1f32; n];
    let whole = mlp_backward(&weights, mlp, &encoded, &fwd, &dy, n + 5);
    for chunk in [1, 7, 64] {
        let g = mlp_backward(&weights, mlp, &encoded, &fwd, &dy, chunk);
        assert!(
            relative_error(&g.weights, &whole.weights) < 1e-5,
            "chunk {chunk}"
        );
        assert_eq!(g.dx, whole.dx);
    }
}
