//! The hash-grid encoding as a candle custom op, so it takes part in autograd: forward gathers
//! features, backward scatters the upstream gradient into the tables. The CPU kernels live in
//! `model::hashgrid`; a CUDA build adds device kernels behind the same op.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::contiguous;
use crate::model::GridLayout;

/// `encode(coords [n, dims], table [entries, features]) -> [n, levels·features]`.
pub struct HashGridEncode {
    pub layout: Arc<GridLayout>,
}

/// `scatter(coords [n, dims], grad_out [n, levels·features]) -> grad_table [entries, features]`.
struct HashGridScatter {
    layout: Arc<GridLayout>,
}

fn check_rows(len: usize, width: usize, what: &str) -> candle_core::Result<usize> {
    if width == 0 || !len.is_multiple_of(width) {
        candle_core::bail!("hash-grid {what}: {len} values are not rows of {width}");
    }
    Ok(len / width)
}

impl CustomOp2 for HashGridEncode {
    fn name(&self) -> &'static str {
        "hash-grid-encode"
    }

    fn cpu_fwd(
        &self,
        coords: &CpuStorage,
        coords_layout: &Layout,
        table: &CpuStorage,
        table_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let coords = contiguous(coords, coords_layout, "hash-grid coordinates")?;
        let table = contiguous(table, table_layout, "hash-grid table")?;
        if table.len() != self.layout.table_len() {
            candle_core::bail!(
                "hash-grid table has {} values, layout needs {}",
                table.len(),
                self.layout.table_len()
            );
        }
        let n = check_rows(coords.len(), self.layout.dims, "coordinates")?;
        let width = self.layout.width();
        let mut out = vec![0f32; n * width];
        self.layout.forward(table, coords, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((n, width))))
    }

    /// The same encoding on the GPU (`kernels/grid.cu`, proven against the CPU kernel in
    /// `gpu::tests_grid`).
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        coords: &candle_core::CudaStorage,
        coords_layout: &Layout,
        table: &candle_core::CudaStorage,
        table_layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::gpu::cuda::grid::cuda_fwd(&self.layout, coords, coords_layout, table, table_layout)
    }

    fn bwd(
        &self,
        coords: &Tensor,
        _table: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let scatter = HashGridScatter {
            layout: self.layout.clone(),
        };
        let grad_table = coords.apply_op2_no_bwd(&grad_res.contiguous()?, &scatter)?;
        Ok((None, Some(grad_table)))
    }
}

impl CustomOp2 for HashGridScatter {
    fn name(&self) -> &'static str {
        "hash-grid-scatter"
    }

    fn cpu_fwd(
        &self,
        coords: &CpuStorage,
        coords_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let coords = contiguous(coords, coords_layout, "hash-grid coordinates")?;
        let grad = contiguous(grad, grad_layout, "hash-grid gradient")?;
        let n = check_rows(coords.len(), self.layout.dims, "coordinates")?;
        if grad.len() != n * self.layout.width() {
            candle_core::bail!(
                "hash-grid gradient has {} values for {n} samples",
                grad.len()
            );
        }
        let mut grad_table = vec![0f32; self.layout.table_len()];
        self.layout.backward(coords, grad, &mut grad_table);
        Ok((
            CpuStorage::F32(grad_table),
            Shape::from((self.layout.entries, self.layout.features)),
        ))
    }

    /// The gradient scatter on the GPU (atomic adds: not bit-reproducible run to run, which
    /// training does not need).
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        coords: &candle_core::CudaStorage,
        coords_layout: &Layout,
        grad: &candle_core::CudaStorage,
        grad_layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::gpu::cuda::grid::cuda_bwd(&self.layout, coords, coords_layout, grad, grad_layout)
    }
}
