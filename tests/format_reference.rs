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

// The reference decoder is deliberately written as index loops mirroring the document's
// formulas.
#![allow(clippy::needless_range_loop)]

use std::io::Read;
use std::path::Path;

use medinr::decoder::Decoder;
#[cfg(feature = "train")]
use medinr::encoder::{encode, EncodeOptions, RateTarget, Silent};
use medinr::format::decode_symbols;
#[cfg(feature = "train")]
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
    if major != 1 {
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
            if ![*b"HEAD", *b"NIFT", *b"TENS"].contains(&tag) {
                return Err("unknown critical section".into());
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

fn parse_tens(p: &[u8], head: &Head) -> Result<Vec<Vec<f32>>, String> {
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
        let symbols = decode_symbols(stream, n).map_err(|e| e.to_string())?;
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
        let head = parse_head(require(&sections, b"HEAD")?)?;
        let nifti = parse_nift(require(&sections, b"NIFT")?)?;
        if nifti.shape != head.shape.map(u64::from) || nifti.datatype != head.datatype {
            return Err("NIfTI header inconsistent with HEAD".into());
        }
        let tensors = parse_tens(require(&sections, b"TENS")?, &head)?;
        Ok(Field { head, tensors })
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
                        let v = self.mlp(self.encode(&u));
                        out.push(self.stored(v));
                    }
                }
            }
        }
        out
    }

    fn stored(&self, y: f32) -> f32 {
        let h = &self.head;
        let v = h.value_min + f64::from(y) * (h.value_max - h.value_min);
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
            Some((lo, hi)) => v.round().clamp(lo, hi) as f32,
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
    let options = EncodeOptions {
        target: RateTarget::BitsPerVoxel(bits_per_voxel),
        effort: 0.05,
        ..Default::default()
    };
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
        let a = compare(&ours, &theirs.data);
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
    for v in &mri.data {
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
