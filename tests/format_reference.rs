//! An independent decoder for `.minr` files, written from `docs/FORMAT.md` alone, checked
//! against medinr's own decoder on real scans.
//!
//! Everything from the container to the stored voxel values is reimplemented here with plain
//! loops: container framing and CRCs, HEAD, NIFT (zlib + the NIfTI fields the format relies
//! on), TENS, dequantization, level sizes, coordinates, the hash-grid encoding, the MLP and the
//! stored-value mapping. Only the symbol streams are decoded with
//! `medinr::codec::entropy::decode_symbols` (that chapter has its own reference test). medinr's
//! payload parser, field configuration, hash grid, evaluator and decoder are used only to
//! produce the file and the expected output, never by the reference decoder.
//!
//! FORMAT.md says the grid encoding is bit-exact and the MLP agrees to within rounding of its
//! dot products; the tests measure that: at most ±1 stored unit for integer types (and ≥ 99.9 %
//! of voxels identical), a tiny relative difference for float types.

// The reference decoder is deliberately written as index loops mirroring the document's
// formulas.
#![allow(clippy::needless_range_loop)]

use std::io::Read;
use std::path::Path;

use medinr::codec::entropy::decode_symbols;
use medinr::decoder::Decoder;
use medinr::encoder::{encode, EncodeOptions, RateTarget};
use medinr::fit::Silent;
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

/// Cell, fractions, then for each corner in order its (entry, weight).
fn corners(res: &[u32], hashed: bool, size: usize, u: &[f32]) -> Vec<(usize, f32)> {
    let d = res.len();
    let mut c = vec![0u32; d];
    let mut w = vec![0f32; d];
    for a in 0..d {
        let p = u[a] * res[a] as f32;
        c[a] = (p.floor() as u32).min(res[a] - 1);
        w[a] = p - c[a] as f32;
    }
    let mut out = Vec::with_capacity(1 << d);
    for j in 0..1usize << d {
        let mut weight = 1f32;
        let mut stride = 1u64;
        let mut dense = 0u64;
        let mut hash = 0u32;
        for a in 0..d {
            let b = ((j >> a) & 1) as u32;
            let v = c[a] + b;
            weight *= if b == 1 { w[a] } else { 1.0 - w[a] };
            dense += u64::from(v) * stride;
            stride *= u64::from(res[a]) + 1;
            hash ^= v.wrapping_mul(PRIMES[a]);
        }
        let e = if hashed {
            (hash % size as u32) as usize
        } else {
            dense as usize
        };
        out.push((e, weight));
    }
    out
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
            let table = &self.tensors[l];
            let mut acc = vec![0f32; f];
            for (e, weight) in corners(&self.head.res[l], hashed, size, u) {
                for k in 0..f {
                    acc[k] += weight * table[e * f + k];
                }
            }
            z.extend(acc);
        }
        z
    }

    /// The MLP on `z`: sums in index order, in f64 (`wide`) or f32; f32 activations.
    fn mlp(&self, z: Vec<f32>, wide: bool) -> f32 {
        let levels = self.head.levels();
        let mut x = z;
        let layers = self.head.layers();
        for (k, &(outputs, inputs)) in layers.iter().enumerate() {
            let a = &self.tensors[levels + k];
            let mut y = vec![0f32; outputs];
            for j in 0..outputs {
                let s = if wide {
                    let mut s = 0f64;
                    for i in 0..inputs {
                        s += f64::from(a[j * inputs + i]) * f64::from(x[i]);
                    }
                    s as f32
                } else {
                    let mut s = 0f32;
                    for i in 0..inputs {
                        s += a[j * inputs + i] * x[i];
                    }
                    s
                };
                y[j] = if k + 1 < layers.len() { s.max(0.0) } else { s };
            }
            x = y;
        }
        x[0]
    }

    /// Stored values on a grid of `shape`, x fastest.
    fn decode(&self, shape: [usize; 4], wide: bool) -> Vec<f32> {
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
                        let v = self.mlp(self.encode(&u), wide);
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
    identical: f64,
}

fn compare(ours: &[f32], theirs: &[f32]) -> Agreement {
    assert_eq!(ours.len(), theirs.len());
    let mut max_abs = 0f64;
    let mut same = 0usize;
    for (&a, &b) in ours.iter().zip(theirs) {
        assert!(a.is_finite() && b.is_finite());
        max_abs = max_abs.max((f64::from(a) - f64::from(b)).abs());
        same += usize::from(a == b);
    }
    Agreement {
        max_abs,
        identical: same as f64 / ours.len() as f64,
    }
}

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

/// Decodes `bytes` with both decoders on the original grid and on `other`, checks the bounds
/// FORMAT.md promises, and prints the measurements.
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
    let integer = h.datatype != 16 && h.datatype != 64;
    let scale = (h.value_max - h.value_min).max(f64::MIN_POSITIVE);
    for (shape, resampled) in [(original, None), (other, Some(other))] {
        let theirs = decoder.decode(resampled).unwrap();
        assert_eq!(theirs.shape(), shape);
        for wide in [true, false] {
            let ours = field.decode(shape, wide);
            let a = compare(&ours, &theirs.data);
            println!(
                "  {name} {shape:?} (MLP sums in {}): max |difference| {} stored units \
                 ({:.3e} of the value range), identical voxels {:.4} %",
                if wide { "f64" } else { "f32" },
                a.max_abs,
                a.max_abs / scale,
                100.0 * a.identical
            );
            if integer {
                assert!(a.max_abs <= 1.0, "{name} {shape:?}: {}", a.max_abs);
                assert!(a.identical >= 0.999, "{name} {shape:?}: {}", a.identical);
            } else {
                assert!(a.max_abs <= 1e-5 * scale, "{name} {shape:?}: {}", a.max_abs);
            }
        }
    }
    field
}

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

#[test]
fn reference_decoder_matches_medinr_on_a_4d_nifti2() {
    // 32×20×12×2 i16 NIfTI-2 with an extension: a 4-axis field.
    let bytes = encode_file(Path::new("data/nifti2_small_4d.nii.gz"), 2.0);
    let field = check_against_medinr("nifti2_small_4d", &bytes, [23, 27, 9, 3]);
    assert_eq!(field.head.dims, 4);
}

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
fn worked_example_of_format_md() {
    // Chapter "Evaluating the field", worked example: r = (16,16,16), T = 4096, hashed.
    let u = [0.3f32, 0.6, 0.45];
    assert_eq!(u.map(f32::to_bits), [0x3E99_999A, 0x3F19_999A, 0x3EE6_6666]);
    let got = corners(&[16, 16, 16], true, 4096, &u);
    let expected = [
        (558, 0x3D83_1260),
        (559, 0x3E83_126B),
        (1533, 0x3DC4_9BA5),
        (1532, 0x3EC4_9BB4),
        (2965, 0x3C83_1256),
        (2964, 0x3D83_1261),
        (3142, 0x3CC4_9B95),
        (3143, 0x3DC4_9BA5),
    ];
    for ((e, w), (ee, wb)) in got.iter().zip(expected) {
        assert_eq!((*e, w.to_bits()), (ee, wb));
    }
    let dense: Vec<usize> = corners(&[16, 16, 16], false, 4913, &u)
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(dense, [2180, 2181, 2197, 2198, 2469, 2470, 2486, 2487]);
    // Chapter "The container": the CRC of "END ".
    assert_eq!(crc32fast::hash(b"END "), 0x58F1_7D10);
    // Coordinates: ends at 0 and 1, a single voxel at 0.
    assert_eq!(
        (coordinate(0, 33), coordinate(32, 33), coordinate(0, 1)),
        (0.0, 1.0, 0.0)
    );
}
