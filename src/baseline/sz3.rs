//! Error-bounded SZ3 baseline: the whole 3D/4D array in one stream, as SZ3's own tools code it.
//!
//! SZ3 (3.3.2, through the `sz3` crate) is the prediction-based error-bounded compressor the
//! scientific-data community compares against: interpolation + Lorenzo prediction, linear
//! quantization of the prediction error with step `2·bound`, Huffman + zstd. It guarantees
//! `|decoded − original| ≤ bound` on every value, the same promise as `medinr compress
//! --max-error`, so the two are compared at the same bound.
//!
//! The scan's stored values go in as f32 (x fastest; SZ3's dimensions are listed slowest
//! first, axes of length 1 dropped) with SZ3's default algorithm (interpolation + Lorenzo)
//! and an absolute bound. Integer scans are rounded after decoding: with an integer bound the
//! rounded value stays within it, and the decoded scan holds integers like the original.
//!
//! Building it needs CMake, pkg-config, libzstd and libclang (`scripts/sz3-setup.sh`), which
//! is why it sits behind the `sz3` feature and not in the default build.

use std::time::Instant;

use thiserror::Error;

/// Outcome of coding a whole volume with SZ3.
#[derive(Debug, Clone)]
pub struct Sz3Result {
    /// Size of the SZ3 stream in bytes.
    pub bytes: u64,
    /// Decoded volume in the input's layout and units.
    pub decoded: Vec<f32>,
    /// Wall time to compress.
    pub encode_seconds: f64,
    /// Wall time to decompress.
    pub decode_seconds: f64,
}

/// Why a volume could not be coded.
#[derive(Debug, Error)]
pub enum Sz3Error {
    /// `shape` does not describe the buffer.
    #[error("shape {shape:?} does not match a buffer of {len} values")]
    ShapeMismatch {
        /// The shape given.
        shape: [usize; 4],
        /// The buffer's length.
        len: usize,
    },
    /// The bound is not a positive finite number.
    #[error("SZ3 needs a positive finite error bound, not {bound}")]
    InvalidBound {
        /// The bound given.
        bound: f64,
    },
    /// SZ3 itself refused the data.
    #[error("SZ3: {0}")]
    Library(String),
}

/// Codes `data` (shape `[nx, ny, nz, nt]`, x fastest) with SZ3 at absolute error `bound`,
/// decodes it again, and reports size and timings. `integer` rounds the decoded values.
pub fn code_volume(
    data: &[f32],
    shape: [usize; 4],
    bound: f64,
    integer: bool,
) -> Result<Sz3Result, Sz3Error> {
    if shape.iter().product::<usize>() != data.len() || data.is_empty() {
        return Err(Sz3Error::ShapeMismatch {
            shape,
            len: data.len(),
        });
    }
    if !(bound.is_finite() && bound > 0.0) {
        return Err(Sz3Error::InvalidBound { bound });
    }
    let lib = |e: sz3::SZ3Error| Sz3Error::Library(e.to_string());
    let mut builder = sz3::DimensionedData::build(&data);
    let mut dims: Vec<usize> = shape.iter().rev().copied().filter(|&n| n > 1).collect();
    if dims.is_empty() {
        dims.push(1);
    }
    for n in dims {
        builder = builder.dim(n).map_err(lib)?;
    }
    let input = builder.finish().map_err(lib)?;
    let config = sz3::Config::new(sz3::ErrorBound::Absolute(bound));
    let t = Instant::now();
    let stream = sz3::compress_with_config(&input, &config).map_err(lib)?;
    let encode_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (_, decoded) = sz3::decompress::<f32, _>(&*stream).map_err(lib)?;
    let mut decoded = decoded.into_data();
    let decode_seconds = t.elapsed().as_secs_f64();
    if decoded.len() != data.len() {
        return Err(Sz3Error::Library(format!(
            "decoded {} values, expected {}",
            decoded.len(),
            data.len()
        )));
    }
    if integer {
        decoded.iter_mut().for_each(|v| *v = v.round());
    }
    Ok(Sz3Result {
        bytes: stream.len() as u64,
        decoded,
        encode_seconds,
        decode_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_and_smooth_data_compresses() {
        let shape = [24, 20, 12, 3];
        let data: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|i| {
                let (x, y) = ((i % 24) as f32, ((i / 24) % 20) as f32);
                (100.0 * (x / 7.0).sin() * (y / 5.0).cos()).round()
            })
            .collect();
        for bound in [1.0, 4.0] {
            let r = code_volume(&data, shape, bound, true).unwrap();
            let worst = data
                .iter()
                .zip(&r.decoded)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst as f64 <= bound, "bound {bound}: {worst}");
            assert!(r.bytes < (data.len() * 2) as u64, "{} bytes", r.bytes);
        }
        assert!(code_volume(&data, shape, 0.0, true).is_err());
        assert!(code_volume(&data[1..], shape, 1.0, true).is_err());
    }
}
