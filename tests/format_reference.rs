//! An independent decoder for `.minr` files, written from `docs/FORMAT.md` alone, checked
//! against medinr's own decoder on real scans.
//!
//! Everything from the container to the stored voxel values is reimplemented here with plain
//! loops: container framing and CRCs, HEAD, NIFT (zlib + the NIfTI fields the format relies
//! on), TENS, dequantization, level sizes, coordinates, the hash-grid encoding, the MLP and the
//! stored-value mapping. Only the symbol streams are decoded with
//! `medinr::format::decode_symbols` (that chapter has its own reference test). medinr's
//! payload parser, field configuration, hash grid, evaluator and decoder are used only to
//! produce the file and the expected output, never by the reference decoder.
//!
//! FORMAT.md specifies the evaluation to the bit (the grid encoding's summation order, the MLP
//! as ordered chains of fused multiply-adds, the stored-value mapping), so the tests require
//! every stored value to be identical — integer and float scans, original and resampled grids.
//! The reference computes its fused multiply-adds with `f32::mul_add` (Rust's `fmaf`, which
//! picks the FMA instruction at run time where the CPU has one and a software fallback
//! elsewhere); `f32_mul_add_is_correctly_rounded` checks it against a software fma built here
//! from f64 arithmetic, so the reference does not depend on the platform getting `fma` right.
//!
//! The residual layer (`RESI`, chapter "Residual layer") is reimplemented in
//! `format_reference/residual.rs`, again from the document alone: the stream header and its
//! validation, the chunk table, the range decoder, the binarisation, the closed-loop
//! prediction with and without the field, the integer, float-lattice and float-bits domains,
//! and stream version 2's region of interest. Committed files (`tests/fixtures/resi_*.minr`,
//! bounded, lossless and region-of-interest, integer and float, 3D and 4D) must decode to the
//! same stored values, bit for bit, as medinr decodes them, and within their bound of the
//! original scan; edited streams must be refused by both decoders alike.

// The reference decoder is deliberately written as index loops mirroring the document's
// formulas.
#![allow(clippy::needless_range_loop)]

use std::io::Read;
use std::path::Path;

#[path = "format_reference/residual.rs"]
mod residual;
#[path = "format_reference/transform.rs"]
mod transform;

use medinr::decoder::Decoder;
#[cfg(feature = "train")]
use medinr::encoder::{encode, EncodeOptions, RateTarget, Silent};
use medinr::format::decode_symbols;
use medinr::study::{encode_context_table, TableShape};
use medinr::volume::read_nifti;

// ---------------------------------------------------------------------------------------------
// Byte reading (chapter "Conventions").

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.b.len() - self.pos {
            return Err(format!("truncated reading {what}"));
        }
        let out = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }

    fn f32(&mut self, what: &str) -> Result<f32, String> {
        Ok(f32::from_bits(self.u32(what)?))
    }

    fn f64(&mut self, what: &str) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64(what)?))
    }

    /// Unsigned LEB128, at most 10 bytes, no overflow, minimal.
    fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8(what)?;
            if i == 9 && b > 1 {
                return Err(format!("{what}: varint overflows"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(format!("{what}: varint not minimal"));
                }
                return Ok(v);
            }
        }
        Err(format!("{what}: varint longer than 10 bytes"))
    }

    fn finish(&self, what: &str) -> Result<(), String> {
        if self.pos == self.b.len() {
            Ok(())
        } else {
            Err(format!(
                "{} trailing bytes in {what}",
                self.b.len() - self.pos
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The container.

const MAGIC: [u8; 8] = [0x89, b'M', b'I', b'N', b'R', 0x0D, 0x0A, 0x1A];

/// Sections in file order: tag and payload (`END ` excluded).
type Sections<'a> = Vec<([u8; 4], &'a [u8])>;

fn parse_container(bytes: &[u8]) -> Result<Sections<'_>, String> {
    if bytes.len() < 8 || bytes[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let mut r = Reader::new(bytes);
    r.pos = 8;
    let major = r.u16("major")?;
    let _minor = r.u16("minor")?;
    if !(1..=5).contains(&major) {
        return Err(format!("format {major}.x"));
    }
    let mut sections: Sections<'_> = Vec::new();
    loop {
        if r.pos == bytes.len() {
            return Err("missing END".into());
        }
        let tag: [u8; 4] = r.take(4, "tag")?.try_into().unwrap();
        let len = r.u32("length")? as usize;
        let valid =
            tag[0].is_ascii_alphabetic() && tag[1..].iter().all(|b| (0x20..=0x7e).contains(b));
        if !valid {
            return Err(format!("bad tag {tag:?}"));
        }
        if len.checked_add(4).is_none_or(|n| n > bytes.len() - r.pos) {
            return Err("section truncated".into());
        }
        let payload = r.take(len, "payload")?;
        let stored = r.u32("crc")?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&tag);
        crc.update(payload);
        if crc.finalize() != stored {
            return Err("CRC mismatch".into());
        }
        if &tag == b"END " {
            if len != 0 {
                return Err("END not empty".into());
            }
            r.finish("file after END")?;
            return Ok(sections);
        }
        if tag[0].is_ascii_uppercase() {
            if ![*b"HEAD", *b"NIFT", *b"TENS", *b"RESI", *b"MEAN"].contains(&tag) {
                return Err("unknown critical section".into());
            }
            if &tag == b"RESI" && major == 1 {
                return Err("RESI in a format 1.x file".into());
            }
            if &tag == b"MEAN" && major < 3 {
                return Err("MEAN in a format 1.x or 2.x file".into());
            }
            if &tag == b"RESI"
                && major < 4
                && payload.len() > 4
                && payload[..4] == *b"MIRS"
                && [3, 4].contains(&payload[4])
            {
                return Err("a transform stream in a format 1.x–3.x file".into());
            }
            if sections.iter().any(|(t, _)| *t == tag) {
                return Err("duplicate critical section".into());
            }
        }
        sections.push((tag, payload));
    }
}

fn require<'a>(sections: &[([u8; 4], &'a [u8])], tag: &[u8; 4]) -> Result<&'a [u8], String> {
    sections
        .iter()
        .find(|(t, _)| t == tag)
        .map(|(_, p)| *p)
        .ok_or_else(|| format!("missing {}", String::from_utf8_lossy(tag)))
}

// ---------------------------------------------------------------------------------------------
// HEAD.

#[derive(Debug)]
struct Head {
    shape: [u32; 4],
    datatype: i16,
    value_min: f64,
    value_max: f64,
    dims: usize,
    features: usize,
    table_size: u32,
    /// `res[l][a]`, `a < dims`.
    res: Vec<Vec<u32>>,
    width: usize,
    hidden: usize,
}

impl Head {
    fn levels(&self) -> usize {
        self.res.len()
    }

    /// `(E_l, hashed)` of level `l`.
    fn level_entries(&self, l: usize) -> (usize, bool) {
        let vertices = self.res[l]
            .iter()
            .fold(1u64, |v, &r| v.saturating_mul(u64::from(r) + 1));
        if vertices <= u64::from(self.table_size) {
            (vertices as usize, false)
        } else {
            (self.table_size as usize, true)
        }
    }

    /// `(outputs, inputs)` of each MLP layer, output layer last.
    fn layers(&self) -> Vec<(usize, usize)> {
        let mut inputs = self.levels() * self.features;
        let mut out = Vec::new();
        for _ in 0..self.hidden {
            out.push((self.width, inputs));
            inputs = self.width;
        }
        out.push((1, inputs));
        out
    }

    /// Symbol count of every tensor in file order.
    fn tensor_lengths(&self) -> Vec<usize> {
        let mut lens: Vec<usize> = (0..self.levels())
            .map(|l| self.level_entries(l).0 * self.features)
            .collect();
        lens.extend(self.layers().iter().map(|&(o, i)| o * i));
        lens
    }
}

fn parse_head(p: &[u8]) -> Result<Head, String> {
    let mut r = Reader::new(p);
    let mut shape = [0u32; 4];
    for n in shape.iter_mut() {
        *n = r.u32("shape")?;
        if *n == 0 {
            return Err("zero dimension".into());
        }
    }
    let datatype = r.u16("datatype")? as i16;
    let value_min = r.f64("value_min")?;
    let value_max = r.f64("value_max")?;
    if !(value_min.is_finite() && value_max.is_finite() && value_min <= value_max) {
        return Err("bad value range".into());
    }
    let _seed = r.u64("seed")?;
    let dims = r.u8("dims")? as usize;
    let features = r.u8("features")? as usize;
    let table_size = r.u32("table size")?;
    let levels = r.u8("levels")? as usize;
    if !(3..=4).contains(&dims) || !(1..=32).contains(&levels) {
        return Err("bad dims or levels".into());
    }
    let mut res = Vec::with_capacity(levels);
    for _ in 0..levels {
        let mut level = Vec::with_capacity(dims);
        for _ in 0..dims {
            level.push(r.u32("resolution")?);
        }
        res.push(level);
    }
    let width = r.u16("hidden width")? as usize;
    let hidden = r.u8("hidden layers")? as usize;
    r.finish("HEAD")?;
    if p.len() != 52 + 4 * dims * levels {
        return Err("HEAD length".into());
    }
    let head = Head {
        shape,
        datatype,
        value_min,
        value_max,
        dims,
        features,
        table_size,
        res,
        width,
        hidden,
    };
    if ![1, 2, 4, 8].contains(&features) {
        return Err("bad features".into());
    }
    if !(1..=1 << 24).contains(&table_size) {
        return Err("bad table size".into());
    }
    if head
        .res
        .iter()
        .flatten()
        .any(|&r| !(1..=65535).contains(&r))
    {
        return Err("bad resolution".into());
    }
    let grid: usize = head.tensor_lengths()[..levels].iter().sum();
    if grid > 1 << 28 {
        return Err("grid too large".into());
    }
    if !(1..=8).contains(&hidden) || !(1..=256).contains(&width) {
        return Err("bad MLP".into());
    }
    if dims == 3 && shape[3] > 1 {
        return Err("3-axis field with frames".into());
    }
    Ok(head)
}

// ---------------------------------------------------------------------------------------------
// NIFT: inflate, then the few NIfTI fields the format checks.

struct Nifti {
    shape: [u64; 4],
    datatype: i16,
}

fn parse_nift(p: &[u8]) -> Result<Nifti, String> {
    let mut bytes = Vec::new();
    flate2::read::ZlibDecoder::new(p)
        .take((1 << 24) + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("zlib: {e}"))?;
    if bytes.len() > 1 << 24 {
        return Err("NIfTI header too large".into());
    }
    if bytes.len() < 4 {
        return Err("NIfTI header truncated".into());
    }
    let first = <[u8; 4]>::try_from(&bytes[..4]).unwrap();
    let (v2, big) = match (i32::from_le_bytes(first), i32::from_be_bytes(first)) {
        (348, _) => (false, false),
        (_, 348) => (false, true),
        (540, _) => (true, false),
        (_, 540) => (true, true),
        _ => return Err("not a NIfTI header".into()),
    };
    let size = if v2 { 540 } else { 348 };
    if bytes.len() < size {
        return Err("NIfTI header truncated".into());
    }
    let int = |off: usize, n: usize| -> i64 {
        let mut b = bytes[off..off + n].to_vec();
        if !big {
            b.reverse();
        }
        // `b` is big-endian now; sign-extend from n bytes.
        let mut v: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
        for &x in &b {
            v = (v << 8) | i64::from(x);
        }
        v
    };
    let (magic, datatype, dim, dim_size, vox_offset) = if v2 {
        let magic = &bytes[4..8];
        let vox = int(168, 8) as f64;
        (magic, int(12, 2), 16, 8, vox)
    } else {
        let magic = &bytes[344..348];
        let bits = int(108, 4) as u32;
        (magic, int(70, 2), 40, 2, f64::from(f32::from_bits(bits)))
    };
    let want: &[u8] = if v2 { b"n+2\0" } else { b"n+1\0" };
    if magic != want {
        return Err("NIfTI magic".into());
    }
    if ![2, 4, 8, 16, 64, 256, 512, 768].contains(&datatype) {
        return Err("unsupported datatype".into());
    }
    let dim: Vec<i64> = (0..8).map(|k| int(dim + k * dim_size, dim_size)).collect();
    if !(1..=7).contains(&dim[0]) {
        return Err("bad dim[0]".into());
    }
    let mut shape = [1u64; 4];
    for k in 1..=dim[0] as usize {
        if dim[k] < 1 {
            return Err("bad dim".into());
        }
        if k <= 4 {
            shape[k - 1] = dim[k] as u64;
        } else if dim[k] > 1 {
            return Err("more than 4 dimensions".into());
        }
    }
    if !(vox_offset.fract() == 0.0 && vox_offset >= size as f64 && vox_offset <= bytes.len() as f64)
    {
        return Err("bad vox_offset".into());
    }
    Ok(Nifti {
        shape,
        datatype: datatype as i16,
    })
}

// ---------------------------------------------------------------------------------------------
// TENS.

/// The format's major version (bytes 8–9), for the chapters that depend on it.
fn major_version(bytes: &[u8]) -> u16 {
    bytes
        .get(8..10)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
}

/// Chapter "Mode 4: context-coded tables": a grid table of `entries × features` symbols,
/// `dense` its vertices per axis (x first) or `None` for a hashed level.
fn decode_context_table(
    stream: &[u8],
    dense: Option<[usize; 4]>,
    entries: usize,
    features: usize,
) -> Result<Vec<i32>, String> {
    let mut rc = residual::RangeDecoder::new(&stream[1..])?;
    let n = entries * features;
    let mut models: Vec<Vec<residual::Class>> = vec![vec![residual::Class::new(); 26]; features];
    let mut out = vec![0i32; n];
    // |s| saturated at 65535.
    let mag = |s: i32| u64::from(s.unsigned_abs().min(65535));
    let class_of = |a: u64| -> usize {
        if a < 2 {
            a as usize
        } else {
            let b = 63 - a.leading_zeros() as u64;
            (2 * b + ((a >> (b - 1)) & 1)).min(25) as usize
        }
    };
    let mut read = |i: usize, a: u64, out: &mut Vec<i32>| -> Result<(), String> {
        let k = residual::decode_k(&mut rc, &mut models[i % features][class_of(a)]);
        out[i] = i32::try_from(k).map_err(|_| "a symbol outside the i32 range".to_string())?;
        Ok(())
    };
    match dense {
        None => {
            for i in 0..n {
                let a = if i % features > 0 {
                    2 * mag(out[i - 1])
                } else {
                    0
                };
                read(i, a, &mut out)?;
            }
        }
        Some(v) => {
            if v.iter().product::<usize>() != entries {
                return Err("dense level size".into());
            }
            for t in 0..v[3] {
                for z in 0..v[2] {
                    for y in 0..v[1] {
                        for x in 0..v[0] {
                            for f in 0..features {
                                let at = |x: usize, y: usize, z: usize, t: usize| {
                                    (((t * v[2] + z) * v[1] + y) * v[0] + x) * features + f
                                };
                                let mut a = 0;
                                if x > 0 {
                                    a += 2 * mag(out[at(x - 1, y, z, t)]);
                                }
                                if y > 0 {
                                    a += 2 * mag(out[at(x, y - 1, z, t)]);
                                }
                                if z > 0 {
                                    a += mag(out[at(x, y, z - 1, t)]);
                                }
                                if t > 0 {
                                    a += mag(out[at(x, y, z, t - 1)]);
                                }
                                read(at(x, y, z, t), a, &mut out)?;
                            }
                        }
                    }
                }
            }
        }
    }
    rc.finish()?;
    Ok(out)
}

fn parse_tens(p: &[u8], head: &Head, major: u16) -> Result<Vec<Vec<f32>>, String> {
    let lens = head.tensor_lengths();
    let mut r = Reader::new(p);
    if r.varint("count")? != lens.len() as u64 {
        return Err("tensor count".into());
    }
    let mut out = Vec::with_capacity(lens.len());
    for &n in &lens {
        let step = r.f32("step")?;
        if !(step.is_finite() && step > 0.0) {
            return Err(format!("bad step {step}"));
        }
        let len = usize::try_from(r.varint("stream length")?).map_err(|e| e.to_string())?;
        let stream = r.take(len, "stream")?;
        let l = out.len();
        let symbols = if stream.first() == Some(&4) {
            if major < 5 {
                return Err("mode 4 in a file before format 5.0".into());
            }
            if l >= head.levels() {
                return Err("mode 4 for an MLP weight".into());
            }
            let (entries, hashed) = head.level_entries(l);
            let dense = (!hashed).then(|| {
                let mut v = [1usize; 4];
                for a in 0..head.dims {
                    v[a] = head.res[l][a] as usize + 1;
                }
                v
            });
            decode_context_table(stream, dense, entries, head.features)?
        } else {
            decode_symbols(stream, n).map_err(|e| e.to_string())?
        };
        out.push(symbols.iter().map(|&s| s as f32 * step).collect());
    }
    r.finish("TENS")?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

const PRIMES: [u32; 4] = [1, 2_654_435_761, 805_459_861, 3_674_653_429];

struct Field {
    head: Head,
    tensors: Vec<Vec<f32>>,
    /// Chapter "Temporal mean (MEAN)": offset, scale and the mean image.
    mean: Option<(f64, f64, Vec<f32>)>,
}

/// Parses and decodes a MEAN payload for a scan of `shape` (chapter "Temporal mean").
fn parse_mean(p: &[u8], shape: [usize; 4]) -> Result<(f64, f64, Vec<f32>), String> {
    let mut r = Reader::new(p);
    let offset = r.f64("offset")?;
    let scale = r.f64("scale")?;
    if !(offset.is_finite() && scale.is_finite() && scale > 0.0) {
        return Err("MEAN offset/scale".into());
    }
    if shape[3] < 2 {
        return Err("MEAN in a scan of one frame".into());
    }
    if shape[0] * shape[1] * shape[2] > 1 << 30 {
        return Err("MEAN image over 2^30 voxels".into());
    }
    let stream = residual::Stream::parse(&p[16..])?;
    if stream.shape != [shape[0], shape[1], shape[2], 1] || stream.has_field {
        return Err("MEAN image shape or prediction".into());
    }
    let mut image = Vec::with_capacity(shape[0] * shape[1] * shape[2]);
    for c in 0..stream.chunk_count() {
        // Chunks of a one-frame stream follow each other along z.
        image.extend(stream.decode_chunk(c, None)?.values);
    }
    Ok((offset, scale, image))
}

/// The mean image at field coordinates `u` (trilinear, chapter "Temporal mean").
fn mean_at(image: &[f32], n: [usize; 3], u: &[f32]) -> f64 {
    let mut lo = [0usize; 3];
    let mut w = [0f64; 3];
    for a in 0..3 {
        if n[a] <= 1 {
            continue;
        }
        let mut p = f64::from(u[a]).clamp(0.0, 1.0) * (n[a] - 1) as f64;
        if (p - p.round()).abs() <= (n[a] - 1) as f64 * 2f64.powi(-23) {
            p = p.round();
        }
        lo[a] = (p.floor() as usize).min(n[a] - 2);
        w[a] = p - lo[a] as f64;
    }
    let mut sum = 0.0;
    for c in 0..8usize {
        let mut weight = 1.0;
        let mut at = [0usize; 3];
        for a in 0..3 {
            let upper = (c >> a) & 1 == 1;
            let wa = if upper { w[a] } else { 1.0 - w[a] };
            weight *= wa;
            at[a] = lo[a] + usize::from(upper);
        }
        if weight != 0.0 {
            sum += weight * f64::from(image[at[0] + n[0] * (at[1] + n[1] * at[2])]);
        }
    }
    sum
}

/// `u = i / (n − 1)` in f32, 0 for a single voxel.
fn coordinate(i: usize, n: usize) -> f32 {
    if n <= 1 {
        0.0
    } else {
        i as f32 / (n - 1) as f32
    }
}

/// Step 1: the cell `c` and the fractions `w` of `u` at a level.
fn cell(res: &[u32], u: &[f32]) -> (Vec<u32>, Vec<f32>) {
    let d = res.len();
    let mut c = vec![0u32; d];
    let mut w = vec![0f32; d];
    for a in 0..d {
        let p = u[a] * res[a] as f32;
        c[a] = (p.floor() as u32).min(res[a] - 1);
        w[a] = p - c[a] as f32;
    }
    (c, w)
}

/// Step 2: the table entry `e_j` of every corner `j` in order.
fn corner_entries(res: &[u32], hashed: bool, size: usize, c: &[u32]) -> Vec<usize> {
    let d = res.len();
    let mut out = Vec::with_capacity(1 << d);
    for j in 0..1usize << d {
        let mut stride = 1u64;
        let mut dense = 0u64;
        let mut hash = 0u32;
        for a in 0..d {
            let v = c[a] + ((j >> a) & 1) as u32;
            dense += u64::from(v) * stride;
            stride *= u64::from(res[a]) + 1;
            hash ^= v.wrapping_mul(PRIMES[a]);
        }
        out.push(if hashed {
            (hash % size as u32) as usize
        } else {
            dense as usize
        });
    }
    out
}

/// Step 3: the weight `ρ_m` over the axes other than x, for `m = 0 … 2^(d−1) − 1`.
fn rest_weights(w: &[f32]) -> Vec<f32> {
    let d = w.len();
    (0..1usize << (d - 1))
        .map(|m| {
            let mut rho = 1f32;
            for a in 1..d {
                rho *= if (m >> (a - 1)) & 1 == 1 {
                    w[a]
                } else {
                    1.0 - w[a]
                };
            }
            rho
        })
        .collect()
}

/// Step 3: the `F` features of one level: the x edges `g_0`, `g_1`, blended along x.
fn level_features(table: &[f32], f: usize, entries: &[usize], w: &[f32]) -> Vec<f32> {
    let rho = rest_weights(w);
    let mut g = [vec![0f32; f], vec![0f32; f]];
    for (s, g) in g.iter_mut().enumerate() {
        for k in 0..f {
            for (m, &r) in rho.iter().enumerate() {
                g[k] += r * table[entries[s + 2 * m] * f + k];
            }
        }
    }
    (0..f)
        .map(|k| (1.0 - w[0]) * g[0][k] + w[0] * g[1][k])
        .collect()
}

/// The MLP layers: every output a chain of fused multiply-adds over the inputs in order.
fn mlp_layer(a: &[f32], x: &[f32], outputs: usize, relu: bool) -> Vec<f32> {
    let inputs = x.len();
    (0..outputs)
        .map(|j| {
            let mut acc = 0f32;
            for i in 0..inputs {
                acc = a[j * inputs + i].mul_add(x[i], acc);
            }
            // ReLU as FORMAT.md words it: `acc` if `acc > 0`, else +0 (NaN included).
            match (relu, acc > 0.0) {
                (true, false) => 0.0,
                _ => acc,
            }
        })
        .collect()
}

impl Field {
    fn from_bytes(bytes: &[u8]) -> Result<Field, String> {
        let sections = parse_container(bytes)?;
        let major = major_version(bytes);
        let head = parse_head(require(&sections, b"HEAD")?)?;
        let nifti = parse_nift(require(&sections, b"NIFT")?)?;
        if nifti.shape != head.shape.map(u64::from) || nifti.datatype != head.datatype {
            return Err("NIfTI header inconsistent with HEAD".into());
        }
        let tensors = parse_tens(require(&sections, b"TENS")?, &head, major)?;
        let mean = match sections.iter().find(|(t, _)| t == b"MEAN") {
            Some((_, p)) => Some(parse_mean(p, head.shape.map(|n| n as usize))?),
            None => None,
        };
        Ok(Field {
            head,
            tensors,
            mean,
        })
    }

    /// The encoded vector `z` at `u`.
    fn encode(&self, u: &[f32]) -> Vec<f32> {
        let f = self.head.features;
        let mut z = Vec::with_capacity(self.head.levels() * f);
        for l in 0..self.head.levels() {
            let (size, hashed) = self.head.level_entries(l);
            let (c, w) = cell(&self.head.res[l], u);
            let entries = corner_entries(&self.head.res[l], hashed, size, &c);
            z.extend(level_features(&self.tensors[l], f, &entries, &w));
        }
        z
    }

    /// The MLP on `z`: ReLU after the hidden layers, the output layer linear.
    fn mlp(&self, z: Vec<f32>) -> f32 {
        let levels = self.head.levels();
        let layers = self.head.layers();
        let mut x = z;
        for (k, &(outputs, _)) in layers.iter().enumerate() {
            x = mlp_layer(&self.tensors[levels + k], &x, outputs, k + 1 < layers.len());
        }
        x[0]
    }

    /// Stored values on a grid of `shape`, x fastest.
    fn decode(&self, shape: [usize; 4]) -> Vec<f32> {
        let mut out = Vec::with_capacity(shape.iter().product());
        for t in 0..shape[3] {
            for z in 0..shape[2] {
                for y in 0..shape[1] {
                    for x in 0..shape[0] {
                        let mut u = vec![
                            coordinate(x, shape[0]),
                            coordinate(y, shape[1]),
                            coordinate(z, shape[2]),
                        ];
                        if self.head.dims == 4 {
                            u.push(coordinate(t, shape[3]));
                        }
                        let y = self.mlp(self.encode(&u));
                        out.push(self.stored(y, &u));
                    }
                }
            }
        }
        out
    }

    /// The stored value of field output `y` at field coordinates `u`.
    fn stored(&self, y: f32, u: &[f32]) -> f32 {
        let h = &self.head;
        let v = match &self.mean {
            Some((offset, scale, image)) => {
                let n = [0, 1, 2].map(|a| h.shape[a] as usize);
                mean_at(image, n, u) + (offset + f64::from(y) * scale)
            }
            None => h.value_min + f64::from(y) * (h.value_max - h.value_min),
        };
        let range = match h.datatype {
            2 => Some((0.0, 255.0)),
            256 => Some((-128.0, 127.0)),
            512 => Some((0.0, 65535.0)),
            4 => Some((-32768.0, 32767.0)),
            768 => Some((0.0, 4294967295.0)),
            8 => Some((-2147483648.0, 2147483647.0)),
            _ => None,
        };
        match range {
            // An integer: no negative zero (`+ 0.0` turns −0 into 0).
            Some((lo, hi)) => (v.round().clamp(lo, hi) + 0.0) as f32,
            None => v as f32,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison.

struct Agreement {
    max_abs: f64,
    /// Voxels with the same f32 bit pattern.
    identical: usize,
    /// The first voxel that differs: index, reference value, medinr's value.
    first_difference: Option<(usize, f32, f32)>,
}

fn compare(ours: &[f32], theirs: &[f32]) -> Agreement {
    assert_eq!(ours.len(), theirs.len());
    let mut max_abs = 0f64;
    let mut identical = 0usize;
    let mut first_difference = None;
    for (i, (&a, &b)) in ours.iter().zip(theirs).enumerate() {
        assert!(a.is_finite() && b.is_finite());
        max_abs = max_abs.max((f64::from(a) - f64::from(b)).abs());
        if a.to_bits() == b.to_bits() {
            identical += 1;
        } else if first_difference.is_none() {
            first_difference = Some((i, a, b));
        }
    }
    Agreement {
        max_abs,
        identical,
        first_difference,
    }
}

#[cfg(feature = "train")]
fn encode_file(path: &Path, bits_per_voxel: f64) -> Vec<u8> {
    let volume = read_nifti(path).unwrap();
    // The field alone (these checks are of the field chapter; at high rates the encoder would
    // otherwise add a residual or transform layer, which the RESI tests cover).
    let mut options = EncodeOptions {
        target: RateTarget::BitsPerVoxel(bits_per_voxel),
        effort: 0.05,
        ..Default::default()
    };
    options.settings.rate.lossy_residual = false;
    options.settings.transform.enabled = false;
    // Context-coded tables (format 5.0) wherever they are shorter, so the chapter "Mode 4"
    // is checked on real fields.
    options.settings.rate.context_tables = true;
    let (file, _) = encode(&volume, &options, &mut Silent).unwrap();
    file.to_bytes().unwrap()
}

/// Decodes `bytes` with both decoders on the original grid and on `other`, checks that every
/// stored value is identical, as FORMAT.md promises, and prints the measurements.
fn check_against_medinr(name: &str, bytes: &[u8], other: [usize; 4]) -> Field {
    let field = Field::from_bytes(bytes).unwrap();
    let decoder = Decoder::from_bytes(bytes).unwrap();
    let h = &field.head;
    let levels: Vec<String> = (0..h.levels())
        .map(|l| {
            let (e, hashed) = h.level_entries(l);
            format!("{:?}{}{e}", h.res[l], if hashed { "#" } else { "=" })
        })
        .collect();
    println!(
        "{name}: d={} F={} T={} H={} W={} datatype={} levels {}",
        h.dims,
        h.features,
        h.table_size,
        h.hidden,
        h.width,
        h.datatype,
        levels.join(" ")
    );
    let original = h.shape.map(|n| n as usize);
    for (shape, resampled) in [(original, None), (other, Some(other))] {
        let theirs = decoder.decode(resampled).unwrap();
        assert_eq!(theirs.shape(), shape);
        let ours = field.decode(shape);
        let a = compare(&ours, &theirs.data.to_f32());
        let n = ours.len();
        println!(
            "  {name} {shape:?}: identical voxels {}/{n} ({:.4} %), max |difference| {} stored \
             units",
            a.identical,
            100.0 * a.identical as f64 / n as f64,
            a.max_abs
        );
        assert!(
            a.identical == n && a.max_abs == 0.0,
            "{name} {shape:?}: {} of {n} voxels differ, max |difference| {}, first (index, \
             reference, medinr) {:?}",
            n - a.identical,
            a.max_abs,
            a.first_difference
        );
    }
    field
}

#[cfg(feature = "train")]
#[test]
fn reference_decoder_matches_medinr_on_a_3d_mri() {
    // 33×41×25 big-endian i16 NIfTI-1. At 6 bits per voxel the encoder picks 16 levels, two
    // hidden layers of 32, and a table with both dense and hashed levels.
    let bytes = encode_file(Path::new("data/mri_small_bigendian_i16.nii"), 6.0);
    let field = check_against_medinr("mri_small_bigendian_i16", &bytes, [47, 29, 31, 1]);
    let h = &field.head;
    assert_eq!((h.dims, h.datatype), (3, 4));
    let sections = parse_container(&bytes).unwrap();
    let meta = require(&sections, b"meta").unwrap();
    println!("meta: {}", String::from_utf8_lossy(meta));
    let hashed: Vec<bool> = (0..h.levels()).map(|l| h.level_entries(l).1).collect();
    assert!(
        hashed.contains(&true) && hashed.contains(&false),
        "{hashed:?}"
    );
    // The writer context-codes a table where that is shorter (format 5.0): here some hashed
    // levels. The same file with every table recoded in mode 4 (dense levels too) must decode
    // to the same voxels with both decoders.
    let modes = tens_modes(&bytes);
    println!("symbol-stream modes in file order: {modes:?}");
    assert_eq!(major_version(&bytes), 5);
    assert!(modes.contains(&4));
    assert!(modes[h.levels()..].iter().all(|&m| m != 4));
    let all_context = edit_section(&bytes, b"TENS", |p| {
        let mut streams = tens_streams(p);
        for (l, (_, stream)) in streams.iter_mut().enumerate().take(h.levels()) {
            let (entries, hashed) = h.level_entries(l);
            let shape = TableShape {
                dense: (!hashed).then(|| {
                    let r = &h.res[l];
                    [r[0] as usize + 1, r[1] as usize + 1, r[2] as usize + 1, 1]
                }),
                entries,
                features: h.features,
            };
            let symbols = if stream[0] == 4 {
                decode_context_table(stream, shape.dense, entries, h.features).unwrap()
            } else {
                decode_symbols(stream, entries * h.features).unwrap()
            };
            *stream = encode_context_table(&symbols, &shape);
        }
        *p = write_tens(&streams);
    });
    let modes = tens_modes(&all_context);
    assert!(modes[..h.levels()].iter().all(|&m| m == 4), "{modes:?}");
    check_against_medinr(
        "mri_small_bigendian_i16 (all tables mode 4)",
        &all_context,
        [47, 29, 31, 1],
    );
}

/// The mode byte of every symbol stream in TENS, file order.
fn tens_modes(bytes: &[u8]) -> Vec<u8> {
    let sections = parse_container(bytes).unwrap();
    tens_streams(require(&sections, b"TENS").unwrap())
        .iter()
        .map(|(_, s)| s.first().copied().unwrap_or(0))
        .collect()
}

/// TENS's `(step, stream)` pairs in file order.
fn tens_streams(p: &[u8]) -> Vec<(f32, Vec<u8>)> {
    let mut r = Reader::new(p);
    let count = r.varint("count").unwrap();
    (0..count)
        .map(|_| {
            let step = r.f32("step").unwrap();
            let len = r.varint("length").unwrap() as usize;
            (step, r.take(len, "stream").unwrap().to_vec())
        })
        .collect()
}

/// A TENS payload of `(step, stream)` pairs (chapter TENS, LEB128 varints).
fn write_tens(streams: &[(f32, Vec<u8>)]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    varint(&mut out, streams.len() as u64);
    for (step, stream) in streams {
        out.extend(step.to_le_bytes());
        varint(&mut out, stream.len() as u64);
        out.extend(stream);
    }
    out
}

#[cfg(feature = "train")]
#[test]
fn reference_decoder_matches_medinr_on_a_4d_nifti2() {
    // 32×20×12×2 i16 NIfTI-2 with an extension: a 4-axis field.
    let bytes = encode_file(Path::new("data/nifti2_small_4d.nii.gz"), 2.0);
    let field = check_against_medinr("nifti2_small_4d", &bytes, [23, 27, 9, 3]);
    assert_eq!(field.head.dims, 4);
}

#[cfg(feature = "train")]
#[test]
fn reference_decoder_matches_medinr_on_a_series_with_its_mean_apart() {
    // 17×21×3×20 i16 fMRI: the temporal mean in MEAN (format 3.0), the field on the dynamic
    // part; the other grid resamples the mean too (the trilinear rule).
    let bytes = encode_file(Path::new("data/fmri_small_4d_f64.nii"), 2.0);
    let sections = parse_container(&bytes).unwrap();
    assert!(
        sections.iter().any(|(t, _)| t == b"MEAN"),
        "no MEAN section"
    );
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 3);
    let field = check_against_medinr("fmri_small_4d_f64", &bytes, [13, 25, 5, 7]);
    assert!(field.mean.is_some());
    // A bound of 3 on top: the residual layer predicts from the field plus the mean.
    use medinr::residual::{encode_with, Kind, Mode, Options};
    let volume = read_nifti(Path::new("data/fmri_small_4d_f64.nii")).unwrap();
    let decoder = Decoder::from_bytes(&bytes).unwrap();
    let prediction = decoder.decode(None).unwrap().data.to_f32();
    let mut file = medinr::format::MinrFile::parse(&bytes).unwrap();
    let data = volume.data.to_f32();
    let kind = Kind::Integer {
        min: -32768,
        max: 32767,
    };
    let mode = Mode::Bound { max_error: 3.0 };
    let stream = encode_with(
        &data,
        Some(&prediction),
        volume.shape(),
        mode,
        kind,
        &Options::default(),
    );
    file.residual = Some(stream.unwrap());
    let bytes = file.to_bytes().unwrap();
    let ours = reference_decode(&bytes).unwrap();
    let theirs = Decoder::from_bytes(&bytes).unwrap().decode(None).unwrap();
    let a = compare(&ours.values, &theirs.data.to_f32());
    assert_eq!(a.identical, ours.values.len(), "{:?}", a.first_difference);
    assert!(
        ours.stream.is_some_and(|s| s.2),
        "the residual does not use the field"
    );
}

#[cfg(feature = "train")]
#[test]
fn reference_decoder_matches_medinr_on_a_float_scan() {
    // The MRI again, written as an f32 NIfTI-1 with non-integer values, for the float path.
    let mri = read_nifti(Path::new("data/mri_small_bigendian_i16.nii")).unwrap();
    let [nx, ny, nz, _] = mri.shape();
    let mut file = vec![0u8; 352];
    let put = |f: &mut [u8], off: usize, b: &[u8]| f[off..off + b.len()].copy_from_slice(b);
    put(&mut file, 0, &348i32.to_le_bytes());
    for (k, d) in [3i16, nx as i16, ny as i16, nz as i16, 1, 1, 1, 1]
        .iter()
        .enumerate()
    {
        put(&mut file, 40 + 2 * k, &d.to_le_bytes());
    }
    put(&mut file, 70, &16i16.to_le_bytes()); // datatype f32
    put(&mut file, 72, &32i16.to_le_bytes()); // bitpix
    for k in 0..4 {
        put(&mut file, 76 + 4 * k, &1f32.to_le_bytes()); // pixdim
    }
    put(&mut file, 108, &352f32.to_le_bytes()); // vox_offset
    put(&mut file, 344, b"n+1\0");
    for v in &mri.data.to_f32() {
        file.extend((v * 0.013 + 2.5).to_le_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mri_f32.nii");
    std::fs::write(&path, &file).unwrap();
    let bytes = encode_file(&path, 4.0);
    let field = check_against_medinr("mri_f32", &bytes, [20, 50, 13, 1]);
    assert_eq!(field.head.datatype, 16);
}

/// Rewrites section `tag` of a file (recomputing its CRC) with `edit`.
fn edit_section(bytes: &[u8], tag: &[u8; 4], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = bytes[..12].to_vec();
    let mut pos = 12;
    while pos < bytes.len() {
        let t: [u8; 4] = bytes[pos..pos + 4].try_into().unwrap();
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let mut payload = bytes[pos + 8..pos + 8 + len].to_vec();
        if &t == tag {
            edit(&mut payload);
        }
        out.extend(t);
        out.extend((payload.len() as u32).to_le_bytes());
        out.extend(&payload);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&t);
        crc.update(&payload);
        out.extend(crc.finalize().to_le_bytes());
        pos += 12 + len;
    }
    out
}

#[cfg(feature = "train")]
#[test]
fn both_decoders_accept_and_refuse_the_same_edited_files() {
    let bytes = encode_file(Path::new("data/nifti2_small_4d.nii.gz"), 1.0);
    assert_eq!(edit_section(&bytes, b"none", |_| {}), bytes);
    let dims_at = 42;
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("unchanged", bytes.clone(), true),
        (
            "bytes after the zlib stream",
            edit_section(&bytes, b"NIFT", |p| p.extend(b"junk")),
            true,
        ),
        (
            "damaged Adler-32",
            edit_section(&bytes, b"NIFT", |p| *p.last_mut().unwrap() ^= 1),
            false,
        ),
        (
            "truncated zlib stream",
            edit_section(&bytes, b"NIFT", |p| p.truncate(p.len() - 6)),
            false,
        ),
        (
            "HEAD with a trailing byte",
            edit_section(&bytes, b"HEAD", |p| p.push(0)),
            false,
        ),
        (
            "HEAD nt differs from the NIfTI header",
            edit_section(&bytes, b"HEAD", |p| p[12] = 3),
            false,
        ),
        (
            "HEAD datatype differs from the NIfTI header",
            edit_section(&bytes, b"HEAD", |p| p[16] = 2),
            false,
        ),
        (
            "3 axes for a 2-frame scan",
            edit_section(&bytes, b"HEAD", |p| {
                // A well-formed 3-axis HEAD: drop the t resolution of every level.
                let levels = p[dims_at + 6] as usize;
                let res: Vec<u8> = p[49..49 + 16 * levels]
                    .chunks(16)
                    .flat_map(|level| level[..12].to_vec())
                    .collect();
                let tail = p[49 + 16 * levels..].to_vec();
                p.truncate(49);
                p[dims_at] = 3;
                p.extend(res);
                p.extend(tail);
            }),
            false,
        ),
        (
            "3 features",
            edit_section(&bytes, b"HEAD", |p| p[dims_at + 1] = 3),
            false,
        ),
        (
            "value_min > value_max",
            edit_section(&bytes, b"HEAD", |p| {
                p[18..26].copy_from_slice(&1e9f64.to_le_bytes())
            }),
            false,
        ),
        (
            "first step zero",
            edit_section(&bytes, b"TENS", |p| {
                p[1..5].copy_from_slice(&0f32.to_le_bytes())
            }),
            false,
        ),
        (
            "first step NaN",
            edit_section(&bytes, b"TENS", |p| {
                p[1..5].copy_from_slice(&f32::NAN.to_le_bytes())
            }),
            false,
        ),
        (
            "TENS with a trailing byte",
            edit_section(&bytes, b"TENS", |p| p.push(0)),
            false,
        ),
        (
            "missing NIFT",
            rename_section(&bytes, b"NIFT", b"nift"),
            false,
        ),
        (
            "context-coded tables in a file labelled 4.0",
            {
                assert_eq!(major_version(&bytes), 5, "the file has no mode 4 table");
                let mut b = bytes.clone();
                b[8..10].copy_from_slice(&4u16.to_le_bytes());
                b
            },
            false,
        ),
        (
            "a mode 4 table cut short",
            edit_section(&bytes, b"TENS", |p| {
                let mut streams = tens_streams(p);
                let first = streams.iter_mut().find(|(_, s)| s.first() == Some(&4));
                first.expect("no mode 4 table").1.pop();
                *p = write_tens(&streams);
            }),
            false,
        ),
        (
            "format 6.0",
            {
                let mut b = bytes.clone();
                b[8..10].copy_from_slice(&6u16.to_le_bytes());
                b
            },
            false,
        ),
    ];
    for (what, file, ok) in cases {
        let ours = Field::from_bytes(&file);
        let theirs = Decoder::from_bytes(&file);
        println!(
            "{what}: reference {:?}, medinr {:?}",
            ours.as_ref().err(),
            theirs.as_ref().err().map(|e| e.to_string())
        );
        assert_eq!(ours.is_ok(), ok, "reference decoder, {what}");
        assert_eq!(theirs.is_ok(), ok, "medinr, {what}");
    }
}

/// Renames section `from` to `to` (fixing its CRC), e.g. to turn a critical one ancillary.
fn rename_section(bytes: &[u8], from: &[u8; 4], to: &[u8; 4]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut pos = 12;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if &bytes[pos..pos + 4] == from {
            out[pos..pos + 4].copy_from_slice(to);
            let mut crc = crc32fast::Hasher::new();
            crc.update(to);
            crc.update(&bytes[pos + 8..pos + 8 + len]);
            out[pos + 8 + len..pos + 12 + len].copy_from_slice(&crc.finalize().to_le_bytes());
        }
        pos += 12 + len;
    }
    out
}

#[test]
fn reference_decoder_matches_medinr_on_committed_files() {
    // Files written by the format-version-1 encoder and committed (tests/fixtures): this runs
    // in a decoder-only build too (`--no-default-features`), where nothing can be encoded.
    for (name, other) in [
        ("mri_small_bigendian_i16", [47, 29, 31, 1]),
        ("fmri_small_4d_f64", [13, 25, 5, 7]),
        ("nifti2_small_4d", [23, 27, 9, 3]),
        // Format 3.0: the temporal mean apart (`medinr compress data/fmri_small_4d_f64.nii
        // --bpv 2 --effort 0.1 --settings S`, S = `{"rate":{"lossy_residual":false}}`).
        ("fmri_small_mean", [13, 25, 5, 7]),
    ] {
        let bytes = std::fs::read(format!("tests/fixtures/{name}.minr")).unwrap();
        check_against_medinr(name, &bytes, other);
    }
}

#[test]
fn worked_example_of_format_md() {
    // Chapter "Evaluating the field", worked example: r = (16,16,16), T = 4096, hashed.
    let u = [0.3f32, 0.6, 0.45];
    assert_eq!(u.map(f32::to_bits), [0x3E99_999A, 0x3F19_999A, 0x3EE6_6666]);
    let (c, w) = cell(&[16, 16, 16], &u);
    assert_eq!(c, [4, 9, 7]);
    assert_eq!(
        w.iter().map(|w| w.to_bits()).collect::<Vec<_>>(),
        [0x3F4C_CCD0, 0x3F19_99A0, 0x3E4C_CCC0]
    );
    let entries = corner_entries(&[16, 16, 16], true, 4096, &c);
    assert_eq!(entries, [558, 559, 1533, 1532, 2965, 2964, 3142, 3143]);
    let dense = corner_entries(&[16, 16, 16], false, 4913, &c);
    assert_eq!(dense, [2180, 2181, 2197, 2198, 2469, 2470, 2486, 2487]);
    let rho: Vec<u32> = rest_weights(&w).iter().map(|r| r.to_bits()).collect();
    assert_eq!(rho, [0x3EA3_D703, 0x3EF5_C29D, 0x3DA3_D6F6, 0x3DF5_C28A]);
    assert_eq!((1.0 - w[0]).to_bits(), 0x3E4C_CCC0);
    // F = 1, t[e] = e / 4096: the edges and the feature.
    let table: Vec<f32> = (0..4096).map(|e| e as f32 / 4096.0).collect();
    let z = level_features(&table, 1, &entries, &w);
    assert_eq!(z[0].to_bits(), 0x3EBF_1168);
    // With w_0 = 0 (1) the blend returns the lower (upper) edge exactly.
    let g: Vec<u32> = (0..2)
        .map(|s| {
            let mut wx = w.clone();
            wx[0] = s as f32;
            level_features(&table, 1, &entries, &wx)[0].to_bits()
        })
        .collect();
    assert_eq!(g, [0x3EBF_147B, 0x3EBF_10A3]);
    // Chapter "Evaluating the field", MLP: the fused multiply-add is not a multiply then an add.
    let (one_up, one_down) = (1.0 + f32::EPSILON, 1.0 - f32::EPSILON);
    let y = mlp_layer(&[1.0, one_up], &[-1.0, one_down], 1, false)[0];
    assert_eq!(y, -(2f32.powi(-46)));
    assert_eq!(one_up * one_down - 1.0, 0.0);
    assert_eq!(
        mlp_layer(&[1.0, one_up], &[-1.0, one_down], 1, true)[0],
        0.0
    );
    // Chapter "The container": the CRC of "END ".
    assert_eq!(crc32fast::hash(b"END "), 0x58F1_7D10);
    // Coordinates: ends at 0 and 1, a single voxel at 0.
    assert_eq!(
        (coordinate(0, 33), coordinate(32, 33), coordinate(0, 1)),
        (0.0, 1.0, 0.0)
    );
}

/// `a × b + c` rounded once to f32, from f64 arithmetic alone: the product is exact in f64,
/// the sum is rounded to odd (TwoSum gives the error of the rounded-to-nearest sum), and f64 has
/// more than 24 + 2 bits, so rounding that to f32 is the correctly rounded result.
fn software_fma(a: f32, b: f32, c: f32) -> f32 {
    let p = f64::from(a) * f64::from(b);
    let c = f64::from(c);
    let mut s = p + c;
    let t = s - p;
    let err = (p - (s - t)) + (c - t);
    if err != 0.0 && s.to_bits() & 1 == 0 {
        // Step to the odd neighbour on the side of the exact sum.
        let away = (err > 0.0) == (s > 0.0);
        s = f64::from_bits(if away {
            s.to_bits() + 1
        } else {
            s.to_bits() - 1
        });
    }
    s as f32
}

#[test]
fn f32_mul_add_is_correctly_rounded() {
    let one_up = 1.0 + f32::EPSILON;
    let one_down = 1.0 - f32::EPSILON;
    let tiny = f32::from_bits(1);
    let mut cases = vec![
        (one_up, one_down, -1.0),
        (one_up, one_up, -1.0),
        (one_up, one_up, -one_up),
        (3.0, 1.0 / 3.0, -1.0),
        (0.1, 10.0, -1.0),
        (tiny, 0.5, 0.0),
        (tiny, 1.5, -tiny),
        (f32::MIN_POSITIVE, 0.75, tiny),
        (1e20, 1e-20, 1.0),
        (2.0f32.powi(-30), 2.0f32.powi(-30), 1.0),
        (-0.0, 1.0, 0.0),
        (0.0, -1.0, -0.0),
    ];
    // Random operands of mixed magnitudes, with `c` often near `−a·b` (cancellation).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..200_000 {
        let r = next();
        let a = f32::from_bits(0x3000_0000 + (r as u32 & 0x1fff_ffff))
            * if r >> 63 == 1 { -1.0 } else { 1.0 };
        let b = f32::from_bits(0x3000_0000 + ((r >> 32) as u32 & 0x1fff_ffff));
        let noise = f32::from_bits(0x2000_0000 + (next() as u32 & 0x2fff_ffff));
        let c = if r & 1 == 0 {
            -(a * b) + noise * (a * b).abs()
        } else {
            noise
        };
        cases.push((a, b, c));
    }
    let mut unfused_differs = 0;
    for (a, b, c) in cases {
        let want = software_fma(a, b, c);
        let got = a.mul_add(b, c);
        assert_eq!(got.to_bits(), want.to_bits(), "fma({a:e}, {b:e}, {c:e})");
        unfused_differs += usize::from((a * b + c).to_bits() != want.to_bits());
    }
    // The cases do exercise the single rounding.
    println!("{unfused_differs} cases where a multiply then an add differs");
    assert!(unfused_differs > 10_000, "{unfused_differs}");
}

// ---------------------------------------------------------------------------------------------
// The residual layer (chapter "Residual layer"), decoded by `format_reference/residual.rs`.

/// What the reference decoder makes of a file on its original grid.
struct Decoded {
    values: Vec<f32>,
    /// The region of interest's mask (version 2), x fastest over the whole scan.
    mask: Option<Vec<bool>>,
    /// `(version, domain, has_field, shared mask, chunks, escaped voxels)` of the stream.
    stream: Option<(u8, u8, bool, bool, usize, usize)>,
    /// Version 2: the informative `bound_in`, `bound_out`.
    bounds: Option<(f64, f64)>,
}

/// The stored values of a file on its original grid: the field, plus the residual layer
/// where the file has one.
fn reference_decode(bytes: &[u8]) -> Result<Decoded, String> {
    let field = Field::from_bytes(bytes)?;
    let sections = parse_container(bytes)?;
    let shape = field.head.shape.map(|n| n as usize);
    let Some(resi) = sections.iter().find(|(t, _)| t == b"RESI").map(|(_, p)| *p) else {
        return Ok(Decoded {
            values: field.decode(shape),
            mask: None,
            stream: None,
            bounds: None,
        });
    };
    let stream = residual::Stream::parse(resi)?;
    if stream.shape != shape {
        return Err("RESI shape differs from HEAD".into());
    }
    let prediction = stream.has_field.then(|| field.decode(shape));
    let nz = shape[2];
    let slice = shape[0] * shape[1];
    let at = |t: usize, z: usize| (t * nz + z) * slice;
    let mut values = vec![0f32; shape.iter().product()];
    let mut mask = (stream.version == 2).then(|| vec![false; values.len()]);
    let mut escaped = 0;
    for c in 0..stream.chunk_count() {
        let (z0, z1, t0, t1) = stream.chunk_region(c);
        let slices = || (t0..t1).flat_map(|t| (z0..z1).map(move |z| at(t, z)));
        let p: Option<Vec<f32>> = prediction.as_ref().map(|p| {
            slices()
                .flat_map(|s| p[s..s + slice].iter().copied())
                .collect()
        });
        let chunk = stream.decode_chunk(c, p.as_deref())?;
        escaped += chunk.escaped;
        for (k, s) in slices().enumerate() {
            values[s..s + slice].copy_from_slice(&chunk.values[k * slice..(k + 1) * slice]);
            if let (Some(mask), Some(m)) = (&mut mask, &chunk.mask) {
                mask[s..s + slice].copy_from_slice(&m[k * slice..(k + 1) * slice]);
            }
        }
    }
    let summary = (
        stream.version,
        stream.domain,
        stream.has_field,
        stream.shared_mask,
        stream.chunk_count(),
        escaped,
    );
    Ok(Decoded {
        values,
        mask,
        stream: Some(summary),
        bounds: (stream.version == 2).then_some(stream.bounds),
    })
}

/// A scan of the residual fixtures: one in `data/`, or one turned to f32 as `v·a + b`.
#[derive(Clone, Copy)]
enum Scan {
    Data(&'static str),
    Float(&'static str, f32, f32),
}

/// Shape and stored values of a scan.
fn scan_values(scan: Scan) -> ([usize; 4], Vec<f32>) {
    let (path, map) = match scan {
        Scan::Data(path) => (path, None),
        Scan::Float(path, a, b) => (path, Some((a, b))),
    };
    let volume = read_nifti(Path::new(path)).unwrap();
    let data = match map {
        None => volume.data.to_f32(),
        Some((a, b)) => volume.data.to_f32().iter().map(|&v| v * a + b).collect(),
    };
    (volume.shape(), data)
}

/// A minimal little-endian NIfTI-1 (unit spacing) of `shape` holding `bytes` of `datatype`.
#[cfg(feature = "train")]
fn nifti1(shape: [usize; 4], datatype: i16, bitpix: i16, bytes: &[u8]) -> Vec<u8> {
    let mut file = vec![0u8; 352];
    let put = |f: &mut [u8], off: usize, b: &[u8]| f[off..off + b.len()].copy_from_slice(b);
    put(&mut file, 0, &348i32.to_le_bytes());
    let dim0 = if shape[3] > 1 { 4 } else { 3 };
    let [nx, ny, nz, nt] = shape.map(|n| n as i16);
    for (k, d) in [dim0, nx, ny, nz, nt, 1, 1, 1].iter().enumerate() {
        put(&mut file, 40 + 2 * k, &d.to_le_bytes());
    }
    put(&mut file, 70, &datatype.to_le_bytes());
    put(&mut file, 72, &bitpix.to_le_bytes());
    for k in 0..5 {
        put(&mut file, 76 + 4 * k, &1f32.to_le_bytes()); // pixdim
    }
    put(&mut file, 108, &352f32.to_le_bytes()); // vox_offset
    put(&mut file, 344, b"n+1\0");
    file.extend(bytes);
    file
}

/// A box `[x0, x1) × [y0, y1) × [z0, z1)` over a 3D grid, x fastest.
fn box_mask(shape: [usize; 4], b: [(usize, usize); 3]) -> Vec<bool> {
    let [nx, ny, nz, _] = shape;
    let mut out = Vec::with_capacity(nx * ny * nz);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let inside = |v: usize, (lo, hi): (usize, usize)| (lo..hi).contains(&v);
                out.push(inside(x, b[0]) && inside(y, b[1]) && inside(z, b[2]));
            }
        }
    }
    out
}

/// A committed residual fixture: how it was written and what it must decode to.
struct ResidualFixture {
    name: &'static str,
    scan: Scan,
    /// `--max-error`, or `None` for `--lossless`.
    max_error: Option<f64>,
    /// `--roi-mask` (a 3D box) and `--roi-max-error`.
    roi: Option<([(usize, usize); 3], f64)>,
    /// The stream's version and domain code.
    expect: (u8, u8),
    /// Another grid, where the file decodes to the field alone.
    other: [usize; 4],
    /// `None`: written by `medinr compress`, whose encoder keeps the smaller of a residual
    /// predicted from the field and one from decoded neighbours alone (on these small scans
    /// always the latter). `Some((chunk_z, chunk_t))`: written through the library with the
    /// residual predicted from a 2-bpv field, in chunks of that size, so the field
    /// prediction and short last chunks are exercised too.
    with_field: Option<(usize, usize)>,
}

const MRI: &str = "data/mri_small_bigendian_i16.nii";
const FMRI: &str = "data/fmri_small_4d_f64.nii";

const RESIDUAL_FIXTURES: [ResidualFixture; 9] = [
    ResidualFixture {
        name: "resi_mri_i16_d2",
        scan: Scan::Data(MRI),
        max_error: Some(2.0),
        roi: None,
        expect: (1, residual::INTEGER),
        other: [20, 50, 13, 1],
        with_field: None,
    },
    ResidualFixture {
        name: "resi_mri_i16_roi",
        scan: Scan::Data(MRI),
        max_error: Some(8.0),
        roi: Some(([(10, 22), (12, 28), (8, 16)], 1.0)),
        expect: (2, residual::INTEGER),
        other: [20, 50, 13, 1],
        with_field: None,
    },
    ResidualFixture {
        name: "resi_fmri_i16_d2",
        scan: Scan::Data(FMRI),
        max_error: Some(2.0),
        roi: None,
        expect: (1, residual::INTEGER),
        other: [13, 25, 5, 7],
        with_field: None,
    },
    ResidualFixture {
        name: "resi_mri_f32_d0.05",
        scan: Scan::Float(MRI, 0.013, 2.5),
        max_error: Some(0.05),
        roi: None,
        expect: (1, residual::LATTICE),
        other: [20, 50, 13, 1],
        with_field: None,
    },
    ResidualFixture {
        name: "resi_fmri_f32_roi",
        scan: Scan::Float(FMRI, 0.075_406_97, 3100.7617),
        max_error: Some(4.0),
        roi: Some(([(4, 12), (5, 15), (0, 2)], 0.5)),
        expect: (2, residual::LATTICE),
        other: [13, 25, 5, 7],
        with_field: None,
    },
    ResidualFixture {
        name: "resi_mri_i16_lossless_field",
        scan: Scan::Data(MRI),
        max_error: None,
        roi: None,
        expect: (1, residual::INTEGER),
        other: [20, 50, 13, 1],
        with_field: Some((8, 16)),
    },
    ResidualFixture {
        name: "resi_mri_f32_d0.05_field",
        scan: Scan::Float(MRI, 0.013, 2.5),
        max_error: Some(0.05),
        roi: None,
        expect: (1, residual::LATTICE),
        other: [20, 50, 13, 1],
        with_field: Some((8, 16)),
    },
    ResidualFixture {
        name: "resi_fmri_f32_lossless_field",
        scan: Scan::Float(FMRI, 0.075_406_97, 3100.7617),
        max_error: None,
        roi: None,
        expect: (1, residual::BITS),
        other: [13, 25, 5, 7],
        with_field: Some((2, 8)),
    },
    ResidualFixture {
        name: "resi_fmri_f32_roi_field",
        scan: Scan::Float(FMRI, 0.075_406_97, 3100.7617),
        max_error: Some(4.0),
        roi: Some(([(4, 12), (5, 15), (0, 2)], 0.5)),
        expect: (2, residual::LATTICE),
        other: [13, 25, 5, 7],
        with_field: Some((2, 8)),
    },
];

/// Writes the residual fixtures with the release CLI (`medinr compress --effort 0.1`): run by
/// hand, `cargo test --release --test format_reference -- --ignored write_residual_fixtures`.
#[cfg(feature = "train")]
#[test]
#[ignore = "rewrites tests/fixtures/resi_*.minr"]
fn write_residual_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    for f in &RESIDUAL_FIXTURES {
        let input = match f.scan {
            Scan::Data(path) => Path::new(path).to_path_buf(),
            Scan::Float(..) => {
                let (shape, values) = scan_values(f.scan);
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                let path = dir.path().join(format!("{}.nii", f.name));
                std::fs::write(&path, nifti1(shape, 16, 32, &bytes)).unwrap();
                path
            }
        };
        let output = format!("tests/fixtures/{}.minr", f.name);
        if let Some((chunk_z, chunk_t)) = f.with_field {
            write_with_field(f, &input, &output, chunk_z, chunk_t);
            continue;
        }
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_medinr"));
        cmd.args(["compress", "--force", "--effort", "0.1", "-o", &output]);
        cmd.arg(&input);
        match f.max_error {
            Some(d) => cmd.args(["--max-error", &d.to_string()]),
            None => cmd.arg("--lossless"),
        };
        if let Some((b, inner)) = f.roi {
            let (shape, _) = scan_values(f.scan);
            let bytes: Vec<u8> = box_mask(shape, b).iter().map(|&m| u8::from(m)).collect();
            let mask = dir.path().join(format!("{}_mask.nii", f.name));
            std::fs::write(
                &mask,
                nifti1([shape[0], shape[1], shape[2], 1], 2, 8, &bytes),
            )
            .unwrap();
            cmd.arg("--roi-mask").arg(&mask);
            cmd.args(["--roi-max-error", &inner.to_string()]);
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "{}", f.name);
        let size = std::fs::metadata(&output).unwrap().len();
        println!("{output}: {size} bytes");
    }
}

/// A residual fixture predicted from the field, as `medinr compress` writes it when the field
/// wins: the field fitted, decoded through `Decoder`, and the residual coded against it.
#[cfg(feature = "train")]
fn write_with_field(f: &ResidualFixture, input: &Path, output: &str, cz: usize, ct: usize) {
    use medinr::residual::{encode_roi, encode_with, Kind, Mode, Options, Roi};
    let volume = read_nifti(input).unwrap();
    let mut options = EncodeOptions {
        target: RateTarget::BitsPerVoxel(2.0),
        effort: 0.2,
        ..Default::default()
    };
    // The field alone: its prediction is what the residual is coded against.
    options.settings.rate.lossy_residual = false;
    options.settings.transform.enabled = false;
    let (mut file, _) = encode(&volume, &options, &mut Silent).unwrap();
    let prediction = Decoder::from_file(file.clone(), 0)
        .unwrap()
        .decode(None)
        .unwrap()
        .data
        .to_f32();
    let (shape, data) = (volume.shape(), &volume.data.to_f32());
    let kind = match f.scan {
        Scan::Data(_) => Kind::Integer {
            min: data.iter().fold(f32::MAX, |a, &b| a.min(b)) as i64,
            max: data.iter().fold(f32::MIN, |a, &b| a.max(b)) as i64,
        },
        Scan::Float(..) => Kind::Float,
    };
    let mode = match f.max_error {
        Some(max_error) => Mode::Bound { max_error },
        None => Mode::Lossless,
    };
    let chunks = Options {
        chunk_z: cz,
        chunk_t: ct,
    };
    let stream = match f.roi {
        None => encode_with(data, Some(&prediction), shape, mode, kind, &chunks),
        Some((b, max_error)) => {
            let mask = box_mask(shape, b);
            let roi = Roi {
                mask: &mask,
                max_error,
            };
            encode_roi(data, Some(&prediction), shape, mode, kind, &roi, &chunks)
        }
    };
    file.residual = Some(stream.unwrap());
    std::fs::write(output, file.to_bytes().unwrap()).unwrap();
    println!(
        "{output}: {} bytes",
        std::fs::metadata(output).unwrap().len()
    );
}

#[test]
fn reference_residual_decoder_matches_medinr_on_committed_files() {
    // Bounded, lossless and region-of-interest files, integer and float, 3D and 4D (written by
    // `write_residual_fixtures`): the reference decodes every stored value bit for bit as
    // medinr does, and the bound holds against the original scan. Runs decoder-only too.
    for f in &RESIDUAL_FIXTURES {
        let bytes = std::fs::read(format!("tests/fixtures/{}.minr", f.name)).unwrap();
        let ours = reference_decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        let decoder = Decoder::from_bytes(&bytes).unwrap();
        assert!(decoder.has_residual());
        let theirs = decoder.decode(None).unwrap();
        let (version, domain, has_field, shared, chunks, escaped) = ours.stream.unwrap();
        assert_eq!((version, domain), f.expect, "{}", f.name);
        assert_eq!(has_field, f.with_field.is_some(), "{}", f.name);
        if let (Some((_, inner)), Some(outer)) = (f.roi, f.max_error) {
            assert_eq!(ours.bounds, Some((inner, outer)), "{}", f.name);
        }
        let a = compare(&ours.values, &theirs.data.to_f32());
        let n = ours.values.len();
        assert!(
            a.identical == n,
            "{}: {} of {n} voxels differ, max |difference| {}, first (index, reference, \
             medinr) {:?}",
            f.name,
            n - a.identical,
            a.max_abs,
            a.first_difference
        );
        // A box across chunk boundaries decodes (through the chunks it touches) to the same
        // values as the whole scan there.
        let [nx, ny, nz, nt] = theirs.shape();
        let (start, end) = (
            [1, 2, nz / 4, nt / 4],
            [nx - 1, ny - 1, nz - nz / 4, nt - nt / 4],
        );
        let cropped = decoder.decode_box(start, end).unwrap();
        let mut want = Vec::new();
        for t in start[3]..end[3] {
            for z in start[2]..end[2] {
                for y in start[1]..end[1] {
                    let row = ((t * nz + z) * ny + y) * nx;
                    want.extend_from_slice(&ours.values[row + start[0]..row + end[0]]);
                }
            }
        }
        assert_eq!(
            compare(&want, &cropped.data.to_f32()).identical,
            want.len(),
            "{} box",
            f.name
        );
        // Other grids are the field alone.
        let field = Field::from_bytes(&bytes).unwrap();
        let resampled = compare(
            &field.decode(f.other),
            &decoder.decode(Some(f.other)).unwrap().data.to_f32(),
        );
        assert_eq!(resampled.identical, f.other.iter().product::<usize>());
        // The bound, against the original scan.
        let (shape, original) = scan_values(f.scan);
        assert_eq!(theirs.shape(), shape);
        let integer = matches!(f.scan, Scan::Data(_));
        let limit = |d: f64| if integer { d.floor() } else { d };
        let outer = limit(f.max_error.unwrap_or(0.0));
        let box_in = f.roi.map(|(b, inner)| {
            let m = box_mask(shape, b);
            let per_frame = m.len();
            let full: Vec<bool> = (0..n).map(|i| m[i % per_frame]).collect();
            (full, limit(inner))
        });
        assert_eq!(
            ours.mask.as_ref(),
            box_in.as_ref().map(|(m, _)| m),
            "{}: the stream's mask is the box",
            f.name
        );
        let (mut worst_in, mut worst_out) = (0f64, 0f64);
        for i in 0..n {
            let err = (f64::from(ours.values[i]) - f64::from(original[i])).abs();
            let inside = box_in.as_ref().is_some_and(|(m, _)| m[i]);
            if inside {
                worst_in = worst_in.max(err);
            } else {
                worst_out = worst_out.max(err);
            }
            if f.max_error.is_none() {
                assert_eq!(
                    ours.values[i].to_bits(),
                    original[i].to_bits(),
                    "{}",
                    f.name
                );
            }
        }
        assert!(worst_out <= outer, "{}: {worst_out} > {outer}", f.name);
        if let Some((_, inner)) = box_in {
            assert!(worst_in <= inner, "{}: inside {worst_in} > {inner}", f.name);
        }
        println!(
            "{}: {} bytes, {shape:?}, stream version {version} domain {domain} field \
             {has_field} shared mask {shared}, {chunks} chunks, {escaped} escaped; identical \
             {n}/{n}; max error outside {worst_out} (≤ {outer}), inside {worst_in}",
            f.name,
            bytes.len()
        );
    }
}

#[test]
fn residual_worked_example_of_format_md() {
    // Chapter "Residual layer", worked example: a 3 × 2 u8 scan coded losslessly, no field.
    let hex = "4d495253 01 00 00 00  03000000 02000000 01000000 01000000  01000000 01000000
               0000000000000000 ff00000000000000 0000000000000000  0a000000 3cc02190 9ecc5142
               00b952d26116e3700000";
    let digits: Vec<u8> = hex
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|c| (c as char).to_digit(16).unwrap() as u8)
        .collect();
    let bytes: Vec<u8> = digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect();
    assert_eq!(bytes.len(), 56 + 8 + 4 + 10);
    let stream = residual::Stream::parse(&bytes).unwrap();
    assert_eq!(stream.shape, [3, 2, 1, 1]);
    assert_eq!((stream.lo, stream.hi, stream.d), (0, 255, 0));
    assert!(!stream.has_field);
    let chunk = stream.decode_chunk(0, None).unwrap();
    assert_eq!(chunk.values, [10.0, 12.0, 11.0, 13.0, 40.0, 12.0]);
    // Ordered bits: −0 is just below +0, NaN payloads and infinities come back.
    assert_eq!(residual::ordered(0x8000_0000), -1);
    assert_eq!(residual::ordered(0), 0);
    assert_eq!(residual::ordered(0xFFFF_FFFF), -(1i64 << 31));
    let mut prev = i64::MIN;
    for v in [
        f32::NEG_INFINITY,
        -1.5,
        -f32::MIN_POSITIVE,
        -0.0,
        0.0,
        1e-40,
        2.0,
        f32::INFINITY,
    ] {
        let o = residual::ordered(v.to_bits());
        assert!(o > prev, "{v}");
        prev = o;
    }
    for b in [
        0u32,
        1,
        0x7FC0_0001,
        0x8000_0000,
        0xFFC0_1234,
        0xFFFF_FFFF,
        0x7F80_0000,
    ] {
        assert_eq!(residual::unordered(residual::ordered(b)), b);
    }
}

/// Rewrites the `RESI` header of a file with `edit` and recomputes its index CRC (at the
/// place the unedited header puts it), so that only the rule under test can refuse it.
fn edit_resi_header(bytes: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    edit_section(bytes, b"RESI", |p| {
        let h = if p[4] == 2 { 80 } else { 56 };
        let at = |p: &[u8], o: usize| u32::from_le_bytes(p[o..o + 4].try_into().unwrap()) as usize;
        let c = at(p, 16).div_ceil(at(p, 24)) * at(p, 20).div_ceil(at(p, 28));
        edit(p);
        let crc = crc32fast::hash(&p[..h + 8 * c]);
        p[h + 8 * c..h + 8 * c + 4].copy_from_slice(&crc.to_le_bytes());
    })
}

fn both_decoders(bytes: &[u8]) -> (Result<Vec<f32>, String>, Result<Vec<f32>, String>) {
    let ours = reference_decode(bytes).map(|d| d.values);
    let theirs = Decoder::from_bytes(bytes)
        .and_then(|d| d.decode(None))
        .map(|v| v.data.to_f32())
        .map_err(|e| e.to_string());
    (ours, theirs)
}

#[test]
fn both_decoders_accept_and_refuse_the_same_residual_streams() {
    let v1 = std::fs::read("tests/fixtures/resi_mri_i16_d2.minr").unwrap();
    let v2 = std::fs::read("tests/fixtures/resi_mri_i16_roi.minr").unwrap();
    let put = |p: &mut Vec<u8>, off: usize, b: &[u8]| p[off..off + b.len()].copy_from_slice(b);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("unchanged, version 1", v1.clone(), true),
        ("unchanged, version 2", v2.clone(), true),
        ("index CRC recomputed", edit_resi_header(&v1, |_| {}), true),
        (
            "RESI made ancillary",
            rename_section(&v1, b"RESI", b"resi"),
            true,
        ),
        (
            "RESI in a 1.0 file",
            {
                let mut f = v1.clone();
                f[8] = 1;
                f
            },
            false,
        ),
        (
            "stream version 3",
            edit_resi_header(&v1, |p| p[4] = 3),
            false,
        ),
        (
            "bad stream magic",
            edit_resi_header(&v1, |p| p[0] = b'X'),
            false,
        ),
        ("domain code 3", edit_resi_header(&v1, |p| p[5] = 3), false),
        ("flag bit 3", edit_resi_header(&v1, |p| p[6] |= 8), false),
        (
            "flag bit 1 in version 1",
            edit_resi_header(&v1, |p| p[6] |= 2),
            false,
        ),
        (
            "flag bit 2 in version 1",
            edit_resi_header(&v1, |p| p[6] |= 4),
            false,
        ),
        (
            "flag bit 1 clear in version 2",
            edit_resi_header(&v2, |p| p[6] &= !2),
            false,
        ),
        ("reserved byte", edit_resi_header(&v1, |p| p[7] = 1), false),
        (
            "nx differs from HEAD",
            edit_resi_header(&v1, |p| p[8] += 1),
            false,
        ),
        (
            "chunk_z 0",
            edit_resi_header(&v1, |p| put(p, 24, &0u32.to_le_bytes())),
            false,
        ),
        (
            "chunk_z > nz",
            edit_resi_header(&v1, |p| put(p, 24, &99u32.to_le_bytes())),
            false,
        ),
        (
            "lo > hi",
            edit_resi_header(&v1, |p| put(p, 32, &i64::MAX.to_le_bytes())),
            false,
        ),
        (
            "d = 2^28 + 1",
            edit_resi_header(&v1, |p| put(p, 48, &((1u64 << 28) + 1).to_le_bytes())),
            false,
        ),
        (
            "d > 2^33",
            edit_resi_header(&v1, |p| put(p, 48, &(1u64 << 34).to_le_bytes())),
            false,
        ),
        (
            "d_out < d",
            edit_resi_header(&v2, |p| put(p, 56, &0u64.to_le_bytes())),
            false,
        ),
        (
            "d_out > 2^28",
            edit_resi_header(&v2, |p| put(p, 56, &(1u64 << 29).to_le_bytes())),
            false,
        ),
        (
            "bound_in ≠ d",
            edit_resi_header(&v2, |p| put(p, 64, &1.5f64.to_le_bytes())),
            false,
        ),
        (
            "bound_out ≠ d_out",
            edit_resi_header(&v2, |p| put(p, 72, &9f64.to_le_bytes())),
            false,
        ),
        (
            "damaged index CRC",
            edit_section(&v1, b"RESI", |p| p[56 + 16] ^= 1),
            false,
        ),
        (
            "damaged chunk",
            edit_section(&v1, b"RESI", |p| *p.last_mut().unwrap() ^= 1),
            false,
        ),
        (
            "RESI with a trailing byte",
            edit_section(&v1, b"RESI", |p| p.push(0)),
            false,
        ),
        (
            "RESI truncated",
            edit_section(&v1, b"RESI", |p| p.truncate(p.len() - 1)),
            false,
        ),
        (
            "RESI header only",
            edit_section(&v1, b"RESI", |p| p.truncate(56)),
            false,
        ),
    ];
    for (what, file, ok) in cases {
        let (ours, theirs) = both_decoders(&file);
        println!(
            "{what}: reference {:?}, medinr {:?}",
            ours.as_ref().err(),
            theirs.as_ref().err()
        );
        assert_eq!(ours.is_ok(), ok, "reference decoder, {what}");
        assert_eq!(theirs.is_ok(), ok, "medinr, {what}");
    }
}

#[test]
fn both_decoders_agree_on_damaged_chunks_with_valid_crcs() {
    // One byte of a chunk changed and every CRC made to match: a crafted stream. Both
    // decoders must refuse it alike or decode it to the same values.
    let file = std::fs::read("tests/fixtures/resi_fmri_i16_d2.minr").unwrap();
    let sections = parse_container(&file).unwrap();
    let resi = require(&sections, b"RESI").unwrap();
    let chunk0 = u32::from_le_bytes(resi[56..60].try_into().unwrap()) as usize;
    let data = 56 + 8 * 2 + 4;
    let (mut refused, mut decoded) = (0, 0);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..24 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Early, late and in between; the first byte (must be 0) now and then.
        let at = match round {
            0 => 0,
            1 => chunk0 - 1,
            _ => (x % chunk0 as u64) as usize,
        };
        let flip = 1u8 << ((x >> 40) % 8);
        let edited = edit_resi_header(&file, |p| {
            p[data + at] ^= flip;
            let crc = crc32fast::hash(&p[data..data + chunk0]);
            p[60..64].copy_from_slice(&crc.to_le_bytes());
        });
        let (ours, theirs) = both_decoders(&edited);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => {
                let agree = compare(a, b);
                assert_eq!(
                    agree.identical,
                    a.len(),
                    "byte {at} ^ {flip:#x}: values differ"
                );
                decoded += 1;
            }
            (Err(_), Err(_)) => refused += 1,
            _ => panic!(
                "byte {at} ^ {flip:#x}: reference {ours:?}, medinr {theirs:?}",
                ours = ours.as_ref().err(),
                theirs = theirs.as_ref().err()
            ),
        }
    }
    println!("{refused} refused by both, {decoded} decoded alike");
}

/// A transform stream of `data` made by medinr, decoded chunk by chunk by both decoders
/// (`chunks`: which ones), every value compared bit for bit.
#[allow(clippy::too_many_arguments)]
fn check_transform_stream(
    name: &str,
    data: &[f32],
    prediction: Option<&[f32]>,
    shape: [usize; 4],
    kind: medinr::residual::Kind,
    transform: medinr::residual::TransformOptions,
    options: medinr::residual::Options,
    chunks: std::ops::Range<usize>,
) {
    use medinr::residual::{encode_transform, ChunkRegion, Reader, ResidualError};
    let gather = |region: &ChunkRegion| -> Result<Vec<f32>, ResidualError> {
        let p = prediction.unwrap();
        let slice = shape[0] * shape[1];
        Ok(region
            .t
            .clone()
            .flat_map(|t| region.z.clone().map(move |z| (t * shape[2] + z) * slice))
            .flat_map(|s| p[s..s + slice].iter().copied())
            .collect())
    };
    let predict: Option<medinr::residual::ChunkPrediction> =
        prediction.is_some().then_some(&gather);
    let bytes = encode_transform(&data, predict, shape, kind, &transform, &options).unwrap();
    let stream = residual::Stream::parse(&bytes).unwrap();
    let version = match transform.contexts {
        medinr::residual::Contexts::Activity => 3,
        _ => 4,
    };
    assert_eq!(
        (stream.version, stream.levels),
        (version, Some(transform.levels))
    );
    let theirs = Reader::open(&bytes).unwrap();
    let mut voxels = 0;
    for c in chunks {
        let region = theirs.chunk_region(c).unwrap();
        let p = prediction.map(|_| gather(&region).unwrap());
        let ours = stream.decode_chunk(c, p.as_deref()).unwrap().values;
        let medinr = theirs.decode_chunk(c, p.as_deref()).unwrap();
        let a = compare(&ours, &medinr);
        assert!(
            a.identical == ours.len(),
            "{name} chunk {c}: {} of {} values differ, first {:?}",
            ours.len() - a.identical,
            ours.len(),
            a.first_difference
        );
        voxels += ours.len();
    }
    println!("{name}: {} bytes, {voxels} voxels identical", bytes.len());
}

#[test]
fn reference_transform_decoder_matches_medinr() {
    use medinr::residual::{Contexts, Kind, Options, OutlierBound, TransformOptions};
    let mri = read_nifti(Path::new("data/mri_small_bigendian_i16.nii")).unwrap();
    let (shape, data) = (mri.shape(), mri.data.to_f32());
    let kind = Kind::Integer {
        min: -32768,
        max: 32767,
    };
    let t = |levels: [u8; 3], base_step: f64| TransformOptions {
        levels,
        base_step,
        rounding: 0.4,
        outliers: OutlierBound::None,
        contexts: Contexts::ActivityParentSigns,
    };
    let whole = Options {
        chunk_z: 64,
        chunk_t: 1,
    };
    // 3D, the whole scan one block, at a coarse and a fine step, with version 4's contexts
    // and version 3's.
    for step in [2.0, 40.0] {
        for contexts in [Contexts::ActivityParentSigns, Contexts::Activity] {
            check_transform_stream(
                "mri 3D",
                &data,
                None,
                shape,
                kind,
                TransformOptions {
                    contexts,
                    ..t([5, 5, 5], step)
                },
                whole,
                0..1,
            );
        }
    }
    // Chunks of 8 slices against a prediction (a smoothed copy of the scan), unequal levels.
    let smooth: Vec<f32> = data
        .iter()
        .enumerate()
        .map(|(i, &v)| (v + data[i.saturating_sub(1)]) / 2.0)
        .map(f32::round)
        .collect();
    let eight = Options {
        chunk_z: 8,
        chunk_t: 1,
    };
    check_transform_stream(
        "mri against a prediction",
        &data,
        Some(&smooth),
        shape,
        kind,
        t([4, 2, 1], 6.0),
        eight,
        0..4,
    );
    // A 4D float series, four frames per chunk (blocks frame after frame).
    let fmri = read_nifti(Path::new("data/fmri_small_4d_f64.nii")).unwrap();
    let fdata: Vec<f32> = fmri.data.to_f32().iter().map(|v| v * 0.37).collect();
    check_transform_stream(
        "fmri f32",
        &fdata,
        None,
        fmri.shape(),
        Kind::Float,
        t([2, 2, 1], 3.0),
        Options {
            chunk_z: 3,
            chunk_t: 4,
        },
        0..5,
    );
    // Outlier lists: a fixed bound, and per block 4 RMSE as medinr's lossy files.
    for outliers in [
        OutlierBound::Fixed(3),
        OutlierBound::Tail {
            sigmas: 4.0,
            share: 0.01,
        },
    ] {
        check_transform_stream(
            "mri with outlier lists",
            &data,
            None,
            shape,
            kind,
            TransformOptions {
                outliers,
                ..t([5, 5, 2], 30.0)
            },
            eight,
            0..4,
        );
    }
    // The chest CT's first 16 slices, 2D (no levels along z) as medinr codes thick slices.
    let ct = read_nifti(Path::new("data/ct_chest_lung2.nii.gz")).unwrap();
    check_transform_stream(
        "chest CT 2D",
        &ct.data.to_f32(),
        None,
        ct.shape(),
        Kind::Integer {
            min: -1024,
            max: 1671,
        },
        TransformOptions {
            outliers: OutlierBound::Tail {
                sigmas: 4.0,
                share: 0.01,
            },
            ..t([5, 5, 0], 20.0)
        },
        Options {
            chunk_z: 16,
            chunk_t: 1,
        },
        0..1,
    );
}

#[cfg(feature = "train")]
#[test]
fn reference_decoder_matches_medinr_on_a_transform_file() {
    // At 1 bpv medinr codes the small MRI with the transform layer (format 4.0): both
    // decoders give the same voxels, and a 3.0 file with that stream is refused by both.
    let volume = read_nifti(Path::new("data/mri_small_bigendian_i16.nii")).unwrap();
    let options = EncodeOptions {
        target: RateTarget::BitsPerVoxel(1.0),
        effort: 0.05,
        ..Default::default()
    };
    let (file, report) = encode(&volume, &options, &mut Silent).unwrap();
    assert!(report.transform.is_some(), "no transform layer at 1 bpv");
    let bytes = file.to_bytes().unwrap();
    // The committed file of stream version 3 (tests/decode_stability.rs) decodes alike too.
    let v3 = std::fs::read("tests/fixtures/transform_v3_mri_small.minr").unwrap();
    let (a, b) = both_decoders(&v3);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(compare(&a, &b).identical, a.len());
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 4);
    let (ours, theirs) = both_decoders(&bytes);
    let (ours, theirs) = (ours.unwrap(), theirs.unwrap());
    assert_eq!(compare(&ours, &theirs).identical, ours.len());
    let mut older = bytes.clone();
    older[8] = 3;
    let (ours, theirs) = both_decoders(&older);
    assert!(ours.is_err() && theirs.is_err(), "{ours:?} {theirs:?}");
}
