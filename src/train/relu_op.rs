//! ReLU as one candle custom op with a one-pass backward. candle's built-in ReLU backward
//! builds a mask through four temporary tensors; on the CPU, at training batch sizes, that
//! dominated the fit. Forward and backward here each make one parallel pass.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous;

const CHUNK: usize = 1 << 14;

/// `max(x, 0)`.
pub struct Relu;

/// `grad · [out > 0]`, the backward of `Relu` given its output.
struct ReluGrad;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "relu-fused"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "relu input")?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, x)| {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = x.max(0.0);
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)?))
    }
}

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "relu-fused-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = contiguous(s1, l1, "relu output")?;
        let grad = contiguous(s2, l2, "relu gradient")?;
        if out.len() != grad.len() {
            candle_core::bail!("relu gradient has {} values for {}", grad.len(), out.len());
        }
        let mut g = vec![0f32; out.len()];
        g.par_chunks_mut(CHUNK)
            .zip(out.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
            .for_each(|(g, (o, d))| {
                for ((g, &o), &d) in g.iter_mut().zip(o).zip(d) {
                    *g = if o > 0.0 { d } else { 0.0 };
                }
            });
        Ok((CpuStorage::F32(g), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_relu_forward_and_backward() {
        let x = Var::from_vec(
            vec![-1.0f32, 0.5, 2.0, -0.1, 0.2, 3.0],
            (2, 3),
            &Device::Cpu,
        )
        .unwrap();
        let w =
            Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3), &Device::Cpu).unwrap();
        let ours = x.as_tensor().apply_op1(Relu).unwrap();
        let theirs = x.as_tensor().relu().unwrap();
        assert_eq!(
            ours.to_vec2::<f32>().unwrap(),
            theirs.to_vec2::<f32>().unwrap()
        );
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(
            g1.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap(),
            g2.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap()
        );
    }
}
