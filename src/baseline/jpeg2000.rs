//! Per-slice JPEG 2000 baseline, coded the way a DICOM series / PACS stores it.
//!
//! Every axial slice (the x–y plane, for each z and t) becomes its own raw
//! JPEG 2000 codestream (J2K, no JP2 box wrapper: the JP2 boxes add a fixed
//! ~85 bytes per slice that a DICOM encapsulated transfer syntax does not
//! carry either). The compressed size is the sum of the codestream sizes.
//!
//! Samples are stored as unsigned integers: the volume minimum is subtracted
//! and the component precision is `ceil(log2(max - min + 1))` bits (8 for a
//! u8 MRI, 12 for a -1024..3071 HU CT), as a PACS would. Float-typed scans
//! are first quantised uniformly to 16 bits over `[min, max]`, so their
//! "lossless" mode is lossless only with respect to that 16-bit grid.
//!
//! Encoding calls OpenJPEG's C API directly through `openjpeg-sys`, because the
//! `jpeg2k` crate's encoder exposes neither rate control, the wavelet choice,
//! nor in-memory output. Decoding uses `jpeg2k` (the same OpenJPEG library).
//!
//! Coding parameters are OpenJPEG's defaults (those of `opj_compress`): one
//! tile, 64×64 code blocks, LRCP, no SOP/EPH, 6 resolution levels (fewer for
//! slices under 32 pixels a side), one quality layer; irreversible 9/7 for
//! [`J2kMode::Lossy`] with `tcp_rates[0] = precision / bpv`, reversible 5/3
//! for [`J2kMode::Lossless`]. A 6-byte empty COM marker replaces OpenJPEG's
//! default "Created by OpenJPEG version …" comment (~40 bytes a slice; on
//! Colin27 at 0.1 bpv that is worth ~0.4 dB).
//!
//! OpenJPEG's rate control is an upper bound per slice: the achieved rate is
//! typically 0–6 % under the target, and far under it when a slice needs
//! fewer bytes than the budget (e.g. nearly empty slices).

use std::ffi::{c_char, c_void, CStr, CString};
use std::time::Instant;

use openjpeg_sys as opj;
use rayon::prelude::*;
use thiserror::Error;

/// How each slice is coded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum J2kMode {
    /// Irreversible 9/7 wavelet, every slice aimed at `bpv` bits per voxel
    /// (one quality layer). At or above the sample precision the rate limit
    /// is dropped and every coding pass is kept.
    Lossy { bpv: f64 },
    /// Reversible 5/3 wavelet, exact for integer-typed data.
    Lossless,
}

/// Outcome of coding a whole volume slice by slice.
#[derive(Debug, Clone)]
pub struct J2kResult {
    /// Total size of all codestreams in bytes.
    pub bytes: u64,
    /// Decoded volume in the input's layout and units.
    pub decoded: Vec<f32>,
    /// Wall time to encode all slices (parallel over slices).
    pub encode_seconds: f64,
    /// Wall time to decode all slices (parallel over slices).
    pub decode_seconds: f64,
    /// Precision of the stored samples (bits per sample).
    pub bits_per_sample: u32,
}

impl J2kResult {
    /// Achieved rate: `bytes · 8 / voxels`.
    pub fn bits_per_voxel(&self) -> f64 {
        crate::metrics::bits_per_voxel(self.bytes, self.decoded.len() as u64)
    }
}

/// Why a volume could not be coded.
#[derive(Debug, Error)]
pub enum J2kError {
    /// `shape` does not describe the buffer.
    #[error("shape {shape:?} does not match a buffer of {len} values")]
    ShapeMismatch { shape: [usize; 4], len: usize },
    /// A slice side is zero or does not fit OpenJPEG's 32-bit sizes.
    #[error("slice size {nx}x{ny} cannot be coded")]
    BadSliceSize { nx: usize, ny: usize },
    /// NaN or ±inf in the input.
    #[error("{count} non-finite values (first at index {first_index})")]
    NonFinite { count: usize, first_index: usize },
    /// An integer-typed volume holds fractional values (pass stored integers,
    /// not rescaled ones).
    #[error("integer-typed volume has {count} non-integer values (first at index {first_index})")]
    NonInteger { count: usize, first_index: usize },
    /// Integer range needs more than 16 bits per sample.
    #[error("value range {range} needs {bits} bits; at most 16 are supported")]
    PrecisionTooHigh { range: f64, bits: u32 },
    /// Target rate is not a positive finite number.
    #[error("target rate {bpv} bits/voxel must be positive and finite")]
    InvalidRate { bpv: f64 },
    /// OpenJPEG failed to encode a slice.
    #[error("encoding slice {slice} failed: {message}")]
    Encode { slice: usize, message: String },
    /// OpenJPEG failed to decode a slice, or returned an unexpected image.
    #[error("decoding slice {slice} failed: {message}")]
    Decode { slice: usize, message: String },
}

/// Highest sample precision accepted (DICOM stores at most 16 bits).
const MAX_PRECISION: u32 = 16;
/// OpenJPEG's default number of resolution levels.
const DEFAULT_RESOLUTIONS: u32 = 6;

/// Code `data` (shape `[nx, ny, nz, nt]`, x fastest) as one JPEG 2000
/// codestream per axial slice, decode it again, and report size and timings.
///
/// `is_integer_type` says whether the values are the scan's stored integers
/// (u8/i16/u16 …); otherwise they are quantised to 16 bits first.
pub fn code_volume(
    data: &[f32],
    shape: [usize; 4],
    is_integer_type: bool,
    mode: J2kMode,
) -> Result<J2kResult, J2kError> {
    let [nx, ny, nz, nt] = shape;
    let total = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if total != Some(data.len()) {
        return Err(J2kError::ShapeMismatch {
            shape,
            len: data.len(),
        });
    }
    let (w, h) = match (u32::try_from(nx), u32::try_from(ny)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 && nz * nt > 0 => (w, h),
        _ => return Err(J2kError::BadSliceSize { nx, ny }),
    };
    if let J2kMode::Lossy { bpv } = mode {
        if !(bpv.is_finite() && bpv > 0.0) {
            return Err(J2kError::InvalidRate { bpv });
        }
    }
    let q = Quantizer::new(data, is_integer_type)?;
    let settings = SliceSettings::new(w, h, q.precision, mode, Container::Codestream);

    let plane = nx * ny;
    let t0 = Instant::now();
    let streams: Vec<Vec<u8>> = data
        .par_chunks(plane)
        .enumerate()
        .map(|(slice, values)| {
            let samples: Vec<i32> = values.iter().map(|&v| q.to_sample(v)).collect();
            encode_slice(&samples, &settings).map_err(|message| J2kError::Encode { slice, message })
        })
        .collect::<Result<_, _>>()?;
    let encode_seconds = t0.elapsed().as_secs_f64();
    let bytes = streams.iter().map(|s| s.len() as u64).sum();

    let t1 = Instant::now();
    let mut decoded = vec![0.0f32; data.len()];
    decoded
        .par_chunks_mut(plane)
        .zip(streams.par_iter())
        .enumerate()
        .try_for_each(|(slice, (out, cs))| {
            let samples =
                decode_slice(cs, w, h).map_err(|message| J2kError::Decode { slice, message })?;
            for (o, s) in out.iter_mut().zip(samples) {
                *o = q.to_value(s);
            }
            Ok::<_, J2kError>(())
        })?;
    let decode_seconds = t1.elapsed().as_secs_f64();

    Ok(J2kResult {
        bytes,
        decoded,
        encode_seconds,
        decode_seconds,
        bits_per_sample: q.precision,
    })
}

/// Maps volume values to unsigned JPEG 2000 samples and back.
#[derive(Debug, Clone, Copy)]
struct Quantizer {
    /// Value stored as sample 0 (the volume minimum).
    offset: f64,
    /// Value step per sample unit (1 for integer data).
    step: f64,
    /// Bits per sample.
    precision: u32,
}

impl Quantizer {
    fn new(data: &[f32], is_integer: bool) -> Result<Self, J2kError> {
        let bad = data.par_iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            let first_index = data.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(J2kError::NonFinite {
                count: bad,
                first_index,
            });
        }
        let (lo, hi) = data
            .par_iter()
            .fold(
                || (f64::INFINITY, f64::NEG_INFINITY),
                |(lo, hi), &v| (lo.min(v as f64), hi.max(v as f64)),
            )
            .reduce(
                || (f64::INFINITY, f64::NEG_INFINITY),
                |a, b| (a.0.min(b.0), a.1.max(b.1)),
            );
        let range = hi - lo;
        if is_integer {
            let frac = data.par_iter().filter(|v| v.fract() != 0.0).count();
            if frac > 0 {
                let first_index = data.iter().position(|v| v.fract() != 0.0).unwrap_or(0);
                return Err(J2kError::NonInteger {
                    count: frac,
                    first_index,
                });
            }
            // Bits needed for 0..=range: ceil(log2(range + 1)), at least 1.
            let bits = (64 - (range as u64).leading_zeros()).max(1);
            if bits > MAX_PRECISION {
                return Err(J2kError::PrecisionTooHigh { range, bits });
            }
            Ok(Self {
                offset: lo,
                step: 1.0,
                precision: bits,
            })
        } else {
            let levels = ((1u32 << MAX_PRECISION) - 1) as f64;
            let step = if range > 0.0 { range / levels } else { 1.0 };
            Ok(Self {
                offset: lo,
                step,
                precision: MAX_PRECISION,
            })
        }
    }

    fn max_sample(self) -> i32 {
        ((1u32 << self.precision) - 1) as i32
    }

    fn to_sample(self, v: f32) -> i32 {
        let s = ((v as f64 - self.offset) / self.step).round();
        s.clamp(0.0, self.max_sample() as f64) as i32
    }

    fn to_value(self, s: i32) -> f32 {
        let s = s.clamp(0, self.max_sample());
        (self.offset + s as f64 * self.step) as f32
    }
}

/// File format written by the encoder. Only the bare codestream is used for
/// the baseline; JP2 exists to measure the container overhead.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Container {
    Codestream,
    #[cfg_attr(not(test), allow(dead_code))]
    Jp2,
}

/// Encoder settings shared by every slice of a volume.
#[derive(Debug, Clone, Copy)]
struct SliceSettings {
    width: u32,
    height: u32,
    precision: u32,
    /// `tcp_rates[0]`: compression ratio, 0 = keep every pass.
    ratio: f32,
    irreversible: bool,
    resolutions: u32,
    container: Container,
}

impl SliceSettings {
    fn new(width: u32, height: u32, precision: u32, mode: J2kMode, container: Container) -> Self {
        // OpenJPEG needs 2^(resolutions-1) <= the smaller side.
        let fit = 32 - width.min(height).leading_zeros();
        let resolutions = DEFAULT_RESOLUTIONS.min(fit).max(1);
        let (ratio, irreversible) = match mode {
            J2kMode::Lossless => (0.0, false),
            J2kMode::Lossy { bpv } => {
                let r = precision as f64 / bpv;
                (if r > 1.0 { r as f32 } else { 0.0 }, true)
            }
        };
        Self {
            width,
            height,
            precision,
            ratio,
            irreversible,
            resolutions,
            container,
        }
    }
}

/// Growable in-memory sink for an OpenJPEG output stream.
#[derive(Debug, Default)]
struct MemWriter {
    buf: Vec<u8>,
    pos: usize,
}

impl MemWriter {
    /// Move the cursor to `pos`, zero-filling any gap; false if impossible.
    fn set_pos(&mut self, pos: i64) -> bool {
        match usize::try_from(pos) {
            Ok(p) => {
                if self.buf.len() < p {
                    self.buf.resize(p, 0);
                }
                self.pos = p;
                true
            }
            Err(_) => false,
        }
    }
}

unsafe extern "C" fn mem_write(buffer: *mut c_void, n: usize, user: *mut c_void) -> usize {
    if user.is_null() || (buffer.is_null() && n > 0) {
        return usize::MAX;
    }
    // SAFETY: `user` is the `MemWriter` registered in `encode_slice`, alive and
    // not otherwise borrowed while OpenJPEG runs; `buffer` holds `n` bytes.
    let w = unsafe { &mut *(user as *mut MemWriter) };
    let src = unsafe { std::slice::from_raw_parts(buffer as *const u8, n) };
    let end = w.pos + n;
    if w.buf.len() < end {
        w.buf.resize(end, 0);
    }
    w.buf[w.pos..end].copy_from_slice(src);
    w.pos = end;
    n
}

unsafe extern "C" fn mem_skip(n: i64, user: *mut c_void) -> i64 {
    if user.is_null() {
        return -1;
    }
    // SAFETY: as in `mem_write`.
    let w = unsafe { &mut *(user as *mut MemWriter) };
    if w.set_pos(w.pos as i64 + n) {
        n
    } else {
        -1
    }
}

unsafe extern "C" fn mem_seek(pos: i64, user: *mut c_void) -> i32 {
    if user.is_null() {
        return 0;
    }
    // SAFETY: as in `mem_write`.
    let w = unsafe { &mut *(user as *mut MemWriter) };
    i32::from(w.set_pos(pos))
}

/// Appends OpenJPEG error messages to the `String` passed as client data.
unsafe extern "C" fn collect_message(msg: *const c_char, client: *mut c_void) {
    if msg.is_null() || client.is_null() {
        return;
    }
    // SAFETY: `client` is the `String` registered in `encode_slice`, which
    // outlives the codec; `msg` is a NUL-terminated C string from OpenJPEG.
    let out = unsafe { &mut *(client as *mut String) };
    let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    out.push_str(text.trim_end());
    out.push_str("; ");
}

/// Owns an `opj_codec_t`.
struct CodecGuard(*mut opj::opj_codec_t);
impl Drop for CodecGuard {
    fn drop(&mut self) {
        // SAFETY: created by opj_create_compress, destroyed exactly once.
        unsafe { opj::opj_destroy_codec(self.0) }
    }
}

/// Owns an `opj_stream_t`.
struct StreamGuard(*mut opj::opj_stream_t);
impl Drop for StreamGuard {
    fn drop(&mut self) {
        // SAFETY: created by opj_stream_create, destroyed exactly once.
        unsafe { opj::opj_stream_destroy(self.0) }
    }
}

/// Owns an `opj_image_t`.
struct ImageGuard(*mut opj::opj_image_t);
impl Drop for ImageGuard {
    fn drop(&mut self) {
        // SAFETY: created by opj_image_create, destroyed exactly once.
        unsafe { opj::opj_image_destroy(self.0) }
    }
}

/// Encode one slice (`samples` row by row, `0..2^precision`) to bytes.
fn encode_slice(samples: &[i32], s: &SliceSettings) -> Result<Vec<u8>, String> {
    let n = s.width as usize * s.height as usize;
    if samples.len() != n {
        return Err(format!(
            "{} samples for a {}x{} slice",
            samples.len(),
            s.width,
            s.height
        ));
    }
    // Declared before the guards so they are dropped after them.
    let mut errors = String::new();
    let mut writer = MemWriter::default();
    let comment = CString::default();

    // SAFETY: every pointer below is checked for NULL and owned by a guard;
    // `errors`, `writer` and `comment` outlive the codec and the stream.
    unsafe {
        let mut cmpt = opj::opj_image_cmptparm_t {
            dx: 1,
            dy: 1,
            w: s.width,
            h: s.height,
            x0: 0,
            y0: 0,
            prec: s.precision,
            bpp: s.precision,
            sgnd: 0,
        };
        let image = opj::opj_image_create(1, &mut cmpt, opj::COLOR_SPACE::OPJ_CLRSPC_GRAY);
        if image.is_null() {
            return Err("opj_image_create returned NULL".into());
        }
        let image = ImageGuard(image);
        (*image.0).x0 = 0;
        (*image.0).y0 = 0;
        (*image.0).x1 = s.width;
        (*image.0).y1 = s.height;
        let comp = (*image.0).comps;
        if comp.is_null() || (*comp).data.is_null() {
            return Err("image component has no data buffer".into());
        }
        std::slice::from_raw_parts_mut((*comp).data, n).copy_from_slice(samples);

        let format = match s.container {
            Container::Codestream => opj::CODEC_FORMAT::OPJ_CODEC_J2K,
            Container::Jp2 => opj::CODEC_FORMAT::OPJ_CODEC_JP2,
        };
        let codec = opj::opj_create_compress(format);
        if codec.is_null() {
            return Err("opj_create_compress returned NULL".into());
        }
        let codec = CodecGuard(codec);
        opj::opj_set_error_handler(
            codec.0,
            Some(collect_message),
            &mut errors as *mut String as *mut c_void,
        );

        let mut p: opj::opj_cparameters_t = std::mem::zeroed();
        opj::opj_set_default_encoder_parameters(&mut p);
        p.tcp_numlayers = 1;
        p.cp_disto_alloc = 1;
        p.tcp_rates[0] = s.ratio;
        p.irreversible = i32::from(s.irreversible);
        p.numresolution = s.resolutions as i32;
        p.cp_comment = comment.as_ptr() as *mut c_char;
        let ok = opj::opj_setup_encoder(codec.0, &mut p, image.0) == 1;
        if !ok {
            return Err(format!("opj_setup_encoder failed: {errors}"));
        }

        let stream = opj::opj_stream_create(1 << 16, 0);
        if stream.is_null() {
            return Err("opj_stream_create returned NULL".into());
        }
        let stream = StreamGuard(stream);
        opj::opj_stream_set_write_function(stream.0, Some(mem_write));
        opj::opj_stream_set_skip_function(stream.0, Some(mem_skip));
        opj::opj_stream_set_seek_function(stream.0, Some(mem_seek));
        opj::opj_stream_set_user_data(stream.0, &mut writer as *mut MemWriter as *mut c_void, None);

        let ok = opj::opj_start_compress(codec.0, image.0, stream.0) == 1
            && opj::opj_encode(codec.0, stream.0) == 1
            && opj::opj_end_compress(codec.0, stream.0) == 1;
        // End OpenJPEG's use of `writer` and `errors` before reading them.
        drop(stream);
        drop(codec);
        if !ok {
            return Err(format!("compression failed: {errors}"));
        }
    }
    Ok(writer.buf)
}

/// Decode one codestream with the `jpeg2k` crate; returns the raw samples.
fn decode_slice(bytes: &[u8], width: u32, height: u32) -> Result<Vec<i32>, String> {
    let image = jpeg2k::Image::from_bytes(bytes).map_err(|e| e.to_string())?;
    let comps = image.components();
    let comp = match comps {
        [c] => c,
        _ => return Err(format!("expected 1 component, found {}", comps.len())),
    };
    if comp.width() != width || comp.height() != height {
        return Err(format!(
            "decoded {}x{}, expected {width}x{height}",
            comp.width(),
            comp.height()
        ));
    }
    let data = comp.data();
    if data.len() != width as usize * height as usize {
        return Err(format!("decoded {} samples", data.len()));
    }
    Ok(data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics;

    /// Smooth synthetic slice stack in 0..=255 (integers) with a little
    /// deterministic texture (±3), so that low rates actually bind: a purely
    /// smooth image is coded completely in ~0.15 bpv.
    fn smooth(nx: usize, ny: usize, nz: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(nx * ny * nz);
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let (xf, yf, zf) = (x as f64, y as f64, z as f64);
                    let f = 128.0
                        + 70.0 * (xf * 0.05 + zf * 0.3).sin() * (yf * 0.04).cos()
                        + 30.0 * ((xf + 2.0 * yf) * 0.011).sin()
                        + noise(x + nx * (y + ny * z)) * 6.0;
                    v.push(f.round().clamp(0.0, 255.0) as f32);
                }
            }
        }
        v
    }

    /// Deterministic hash noise in [-0.5, 0.5).
    fn noise(i: usize) -> f64 {
        let mut h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 32;
        (h >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// CT-like i16 image: air (-1024) around a body (~40 HU) with bone.
    fn ct_like(nx: usize, ny: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(nx * ny);
        for y in 0..ny {
            for x in 0..nx {
                let dx = (x as f64 - nx as f64 / 2.0) / (nx as f64 * 0.4);
                let dy = (y as f64 - ny as f64 / 2.0) / (ny as f64 * 0.3);
                let r2 = dx * dx + dy * dy;
                let val = if r2 > 1.0 {
                    -1024.0 + ((x * 31 + y * 17) % 7) as f64
                } else if r2 < 0.05 {
                    1200.0 + 400.0 * (x as f64 * 0.3).sin()
                } else {
                    40.0 + 30.0 * (y as f64 * 0.2).cos() - 600.0 * (r2 > 0.6) as i32 as f64
                };
                v.push(val.round() as f32);
            }
        }
        v
    }

    /// Stored integers of a real scan crop, from the project's sample data.
    fn real_crop() -> Option<(Vec<f32>, [usize; 4])> {
        use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/mri_small_bigendian_i16.nii"
        );
        let obj = ReaderOptions::new().read_file(path).ok()?;
        let arr = obj.into_volume().into_ndarray::<f32>().ok()?;
        let dims = arr.shape().to_vec();
        // x fastest: iterate the transposed view in logical order.
        let flat: Vec<f32> = arr.t().iter().copied().collect();
        let (nx, ny) = (dims[0], dims[1]);
        let z0 = dims[2] / 2;
        let crop = flat[z0 * nx * ny..(z0 + 4) * nx * ny].to_vec();
        Some((crop, [nx, ny, 4, 1]))
    }

    #[test]
    fn lossless_is_exact_on_real_scan() {
        let (data, shape) = real_crop().expect("data/mri_small_bigendian_i16.nii readable");
        assert!(
            data.iter().any(|&v| v < 0.0),
            "crop should include negatives"
        );
        let r = code_volume(&data, shape, true, J2kMode::Lossless).unwrap();
        assert_eq!(r.decoded, data);
        assert!(r.bytes > 0 && r.bits_per_voxel() < 16.0);
    }

    #[test]
    fn lossless_is_exact_on_negative_i16() {
        let (nx, ny) = (97, 80);
        let data = ct_like(nx, ny);
        let r = code_volume(&data, [nx, ny, 1, 1], true, J2kMode::Lossless).unwrap();
        assert_eq!(r.bits_per_sample, 12, "-1024..~1600 needs 12 bits");
        assert_eq!(r.decoded, data);
    }

    #[test]
    fn lossy_one_bpv_is_good_and_on_rate() {
        let shape = [256, 192, 3, 1];
        let data = smooth(256, 192, 3);
        let r = code_volume(&data, shape, true, J2kMode::Lossy { bpv: 1.0 }).unwrap();
        let c = metrics::compare(&data, &r.decoded, shape).unwrap();
        let bpv = r.bits_per_voxel();
        assert!(c.psnr_db > 35.0, "PSNR {}", c.psnr_db);
        assert!((bpv - 1.0).abs() < 0.1, "achieved {bpv} bpv");
        assert_eq!(r.bits_per_sample, 8);
    }

    #[test]
    fn lossy_rate_tracks_target() {
        let shape = [256, 192, 2, 2];
        let data = smooth(256, 192, 4);
        let mut last_psnr = 0.0;
        for target in [0.1, 0.25, 0.5] {
            let r = code_volume(&data, shape, true, J2kMode::Lossy { bpv: target }).unwrap();
            let bpv = r.bits_per_voxel();
            assert!(
                (bpv - target).abs() / target < 0.1,
                "target {target}, got {bpv}"
            );
            let p = metrics::psnr(&data, &r.decoded, metrics::data_range(&data));
            assert!(p > last_psnr);
            last_psnr = p;
        }
    }

    #[test]
    fn float_data_is_quantised_to_16_bits() {
        let data: Vec<f32> = smooth(64, 40, 2).iter().map(|v| v * 0.013 - 1.5).collect();
        let r = code_volume(&data, [64, 40, 2, 1], false, J2kMode::Lossless).unwrap();
        assert_eq!(r.bits_per_sample, 16);
        let step = metrics::data_range(&data) / 65535.0;
        let max_err = data
            .iter()
            .zip(&r.decoded)
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max);
        assert!(max_err <= 0.5 * step + 1e-6, "{max_err} vs step {step}");
    }

    #[test]
    fn tiny_and_constant_slices() {
        let data = vec![7.0f32; 3 * 2 * 2];
        let r = code_volume(&data, [3, 2, 2, 1], true, J2kMode::Lossless).unwrap();
        assert_eq!(r.decoded, data);
        assert_eq!(r.bits_per_sample, 1);
        let r = code_volume(&data, [3, 2, 2, 1], true, J2kMode::Lossy { bpv: 0.5 }).unwrap();
        assert_eq!(r.decoded.len(), data.len());
    }

    #[test]
    fn bad_input_is_rejected() {
        let d = vec![0.0f32; 12];
        assert!(matches!(
            code_volume(&d, [5, 2, 1, 1], true, J2kMode::Lossless),
            Err(J2kError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            code_volume(&d, [12, 1, 1, 1], true, J2kMode::Lossy { bpv: 0.0 }),
            Err(J2kError::InvalidRate { .. })
        ));
        let mut e = d.clone();
        e[3] = 0.5;
        assert!(matches!(
            code_volume(&e, [12, 1, 1, 1], true, J2kMode::Lossless),
            Err(J2kError::NonInteger {
                count: 1,
                first_index: 3
            })
        ));
        e[3] = 70000.0;
        assert!(matches!(
            code_volume(&e, [12, 1, 1, 1], true, J2kMode::Lossless),
            Err(J2kError::PrecisionTooHigh { bits: 17, .. })
        ));
        e[5] = f32::NAN;
        assert!(matches!(
            code_volume(&e, [12, 1, 1, 1], true, J2kMode::Lossless),
            Err(J2kError::NonFinite {
                count: 1,
                first_index: 5
            })
        ));
    }

    /// Measures what the JP2 box wrapper would add per slice (why the
    /// baseline counts bare codestreams). Lossless, because under a rate
    /// target OpenJPEG fits the JP2 file, boxes included, to the same budget.
    #[test]
    fn jp2_container_overhead() {
        let (nx, ny) = (181, 217);
        let slice = smooth(nx, ny, 1);
        let samples: Vec<i32> = slice.iter().map(|&v| v as i32).collect();
        let mode = J2kMode::Lossless;
        let j2k = encode_slice(
            &samples,
            &SliceSettings::new(nx as u32, ny as u32, 8, mode, Container::Codestream),
        )
        .unwrap();
        let jp2 = encode_slice(
            &samples,
            &SliceSettings::new(nx as u32, ny as u32, 8, mode, Container::Jp2),
        )
        .unwrap();
        assert_eq!(&j2k[..4], &[0xff, 0x4f, 0xff, 0x51]);
        let extra = jp2.len() as i64 - j2k.len() as i64;
        eprintln!(
            "J2K {} bytes, JP2 {} bytes: +{extra} per slice",
            j2k.len(),
            jp2.len()
        );
        assert!(extra > 0);
        assert_eq!(
            decode_slice(&jp2, nx as u32, ny as u32).unwrap().len(),
            nx * ny
        );
    }
}
