//! The kernels on a real GPU against the CPU reference. `#[ignore]`d because CI and most
//! developer machines have no GPU; `scripts/gpu-check.sh` runs them with `--ignored`.

use candle_core::{CudaDevice, CudaStorage, Layout, Shape};

use super::decode::DeviceField;
use crate::decoder::{Evaluator, Region};
use crate::gpu::host::{mlp_backward, mlp_forward};
use crate::gpu::layout::MlpShape;
use crate::gpu::test_support::{bits, random_coords, random_field};
use crate::model::GridLayout;

fn device() -> CudaDevice {
    use candle_core::backend::BackendDevice;
    CudaDevice::new(0).expect("a CUDA device (run on a GPU machine)")
}

fn upload(dev: &CudaDevice, v: &[f32], shape: Shape) -> (CudaStorage, Layout) {
    let slice = dev.clone_htod(v).expect("upload");
    (
        CudaStorage::wrap_cuda_slice(slice, dev.clone()),
        Layout::contiguous(shape),
    )
}

fn download(dev: &CudaDevice, s: &CudaStorage) -> Vec<f32> {
    dev.clone_dtoh(s.as_cuda_slice::<f32>().expect("f32"))
        .expect("download")
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_decode_is_bit_identical_to_the_evaluator() {
    let dev = device();
    for (case, (shape, features, hidden)) in [
        ([23, 17, 11, 1], 1, (8, 1)),
        ([23, 17, 11, 1], 2, (32, 2)),
        ([16, 21, 9, 1], 8, (64, 1)),
        ([13, 9, 7, 4], 4, (5, 3)),
    ]
    .into_iter()
    .enumerate()
    {
        let rf = random_field(shape, features, hidden, 100 + case as u64);
        let eval = Evaluator::new(&rf.config, &rf.tensors).unwrap();
        let gpu = DeviceField::new(&dev, &rf.config, &rf.tensors).unwrap();
        for region in [
            Region::Full,
            Region::Slice {
                axis: 2,
                index: shape[2] / 2,
                frame: 0,
            },
        ] {
            let (want, ws) = eval.grid(shape, region).unwrap();
            let (got, gs) = gpu.grid(shape, region).unwrap();
            assert_eq!(ws, gs);
            assert_eq!(bits(&got), bits(&want), "case {case} {region:?}");
        }
        let coords = random_coords(1000, rf.config.dims, 7);
        let want = eval.evaluate(&coords).unwrap();
        assert_eq!(
            bits(&gpu.evaluate(&coords).unwrap()),
            bits(&want),
            "case {case} points"
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_grid_forward_is_exact_and_backward_matches() {
    let dev = device();
    for (shape, features) in [([23, 17, 11, 1], 2), ([13, 9, 7, 5], 8)] {
        let rf = random_field(shape, features, (8, 1), 110);
        let layout = GridLayout::new(&rf.config);
        let coords = random_coords(5000, layout.dims, 111);
        let n = coords.len() / layout.dims;
        let table = rf.table();
        let mut want = vec![0f32; n * layout.width()];
        layout.forward(&table, &coords, &mut want);
        let (c, cl) = upload(&dev, &coords, Shape::from((n, layout.dims)));
        let (t, tl) = upload(&dev, &table, Shape::from((layout.entries, layout.features)));
        let (out, _) = super::grid::cuda_fwd(&layout, &c, &cl, &t, &tl).unwrap();
        assert_eq!(bits(&download(&dev, &out)), bits(&want));

        let upstream = random_coords(n * layout.width(), 1, 112)[..n * layout.width()].to_vec();
        let mut want = vec![0f32; layout.table_len()];
        layout.backward(&coords, &upstream, &mut want);
        let (g, gl) = upload(&dev, &upstream, Shape::from((n, layout.width())));
        let (grad, _) = super::grid::cuda_bwd(&layout, &c, &cl, &g, &gl).unwrap();
        let got = download(&dev, &grad);
        for (a, b) in got.iter().zip(&want) {
            // Atomic adds sum in another order: equal up to rounding.
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_mlp_matches_the_host_build() {
    let dev = device();
    let rf = random_field([23, 17, 11, 1], 4, (32, 2), 120);
    let shape = MlpShape::new(&rf.config);
    let n = 10_000;
    let x =
        random_coords(n * shape.in_width as usize, 1, 121)[..n * shape.in_width as usize].to_vec();
    let dy = random_coords(n, 1, 122)[..n].to_vec();
    let weights = rf.weights();
    let host_fwd = mlp_forward(&weights, shape, &x);
    let host = mlp_backward(&weights, shape, &x, &host_fwd, &dy, super::mlp::WGRAD_CHUNK);

    let w = dev.clone_htod(&weights).unwrap();
    let xd = dev.clone_htod(&x).unwrap();
    let dyd = dev.clone_htod(&dy).unwrap();
    let fwd = super::mlp::forward(&dev, &w.slice(..), shape, &xd.slice(..)).unwrap();
    // Forward and the per-sample backward are the same FMA chains: bit-identical.
    assert_eq!(bits(&dev.clone_dtoh(&fwd.y).unwrap()), bits(&host_fwd.y));
    let g = super::mlp::backward(
        &dev,
        &w.slice(..),
        shape,
        &xd.slice(..),
        &fwd,
        &dyd.slice(..),
    )
    .unwrap();
    assert_eq!(bits(&dev.clone_dtoh(&g.dx).unwrap()), bits(&host.dx));
    // The chunked weight gradient is deterministic and ordered as on the host.
    assert_eq!(
        bits(&dev.clone_dtoh(&g.weights).unwrap()),
        bits(&host.weights)
    );
}
