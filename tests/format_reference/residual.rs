//! The residual layer (FORMAT.md chapter "Residual layer"), reimplemented from the document
//! alone: the stream header and its validation, the chunk table, the range decoder, the
//! binarisation of `k`, the region-of-interest mask, the closed-loop prediction and the value
//! maps of the three domains. Nothing here calls `medinr::residual`.

use super::Reader;

pub const INTEGER: u8 = 0;
pub const LATTICE: u8 = 1;
pub const BITS: u8 = 2;

/// A parsed, validated residual stream (chapter "Stream layout").
#[derive(Debug)]
pub struct Stream<'a> {
    pub version: u8,
    pub domain: u8,
    pub has_field: bool,
    /// Version 2, flag bit 2: one mask for every frame of a chunk.
    pub shared_mask: bool,
    pub shape: [usize; 4],
    pub chunk_z: usize,
    pub chunk_t: usize,
    pub lo: i64,
    pub hi: i64,
    /// The quantizer half-width (inside the mask in version 2); 0 outside the integer domain.
    pub d: i64,
    /// Version 2: the half-width outside the mask.
    pub d_out: i64,
    /// Float lattice: `D` (the lattice step is `2·D`).
    pub lattice: f64,
    /// Version 2, informative.
    pub bounds: (f64, f64),
    /// Version 3 (a transform stream): the wavelet levels along x, y, z.
    pub levels: Option<[u8; 3]>,
    /// Version 3 with outlier lists (flag bit 1): the stream's bound `D`.
    pub outlier_bound: Option<u32>,
    /// Per chunk: its bytes and its stored CRC.
    chunks: Vec<(&'a [u8], u32)>,
}

/// What one chunk decodes to.
pub struct Chunk {
    /// Output values of the chunk's voxels in chunk order.
    pub values: Vec<f32>,
    /// Version 2: the mask of every voxel of the chunk (frames expanded when shared).
    pub mask: Option<Vec<bool>>,
    /// Voxels that were escaped (float lattice).
    pub escaped: usize,
}

fn ceil_div(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

impl<'a> Stream<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Stream<'a>, String> {
        if bytes.len() < 4 || bytes[..4] != *b"MIRS" {
            return Err("not a residual stream".into());
        }
        if bytes.len() < 5 {
            return Err("residual stream truncated".into());
        }
        let version = bytes[4];
        let h = match version {
            1 => 56,
            2 => 80,
            3 | 4 => 64,
            v => return Err(format!("residual stream version {v} is not supported")),
        };
        if bytes.len() < h {
            return Err("residual stream header truncated".into());
        }
        let mut r = Reader::new(bytes);
        r.pos = 5;
        let domain = r.u8("domain")?;
        let flags = r.u8("flags")?;
        let reserved = r.u8("reserved")?;
        if domain > 2 {
            return Err(format!("domain code {domain}"));
        }
        let has_field = flags & 1 != 0;
        let roi = flags & 2 != 0;
        let shared_mask = flags & 4 != 0;
        let transform = version >= 3;
        let outliers = transform && flags & 2 != 0;
        if flags & 0xF8 != 0
            || (roi && !outliers) != (version == 2)
            || (shared_mask && version != 2)
            || (transform && flags & !3 != 0)
        {
            return Err(format!("flags {flags:#04x} in version {version}"));
        }
        if reserved != 0 {
            return Err("reserved byte".into());
        }
        let mut shape = [0usize; 4];
        for n in shape.iter_mut() {
            *n = r.u32("shape")? as usize;
        }
        let chunk_z = r.u32("chunk_z")? as usize;
        let chunk_t = r.u32("chunk_t")? as usize;
        let lo = r.u64("lo")? as i64;
        let hi = r.u64("hi")? as i64;
        let bound = r.u64("bound")?;
        let (d_out, bound_in, bound_out) = if version == 2 {
            (r.u64("d_out")?, r.f64("bound_in")?, r.f64("bound_out")?)
        } else {
            (0, 0.0, 0.0)
        };
        let levels = if transform {
            let levels = [r.u8("Lx")?, r.u8("Ly")?, r.u8("Lz")?];
            let reserved = r.u8("reserved")?;
            let step = r.f32("base step")?;
            if levels.iter().any(|&l| l > 12) || reserved != 0 || !(step.is_finite() && step > 0.0)
            {
                return Err("transform extension".into());
            }
            if domain == LATTICE || (bound != 0 && !outliers) {
                return Err("a transform stream has a bound only with outlier lists".into());
            }
            if outliers && (domain != INTEGER || bound > 1 << 30) {
                return Err("outlier lists: integer domain, bound ≤ 2^30".into());
            }
            Some(levels)
        } else {
            None
        };
        let outlier_bound = outliers.then_some(bound as u32);
        let bound = if outliers { 0 } else { bound };
        assert_eq!(r.pos, h);
        if shape.contains(&0) {
            return Err("zero dimension".into());
        }
        let voxels: u128 = shape.iter().map(|&n| n as u128).product();
        if voxels > 1 << 36 {
            return Err("too many voxels".into());
        }
        if !(1..=shape[2]).contains(&chunk_z) || !(1..=shape[3]).contains(&chunk_t) {
            return Err("chunk size".into());
        }
        if (shape[0] as u128) * (shape[1] as u128) * (chunk_z as u128) * (chunk_t as u128) > 1 << 30
        {
            return Err("chunk too large".into());
        }
        let (lo, hi, d, lattice) = match domain {
            INTEGER => {
                if lo > hi || (hi as i128 - lo as i128) > 1 << 33 || bound > 1 << 28 {
                    return Err("integer range or bound".into());
                }
                (lo, hi, bound as i64, 0.0)
            }
            LATTICE => {
                let big_d = f64::from_bits(bound);
                if lo != 0 || hi != 0 || !(big_d.is_finite() && big_d > 0.0) {
                    return Err("float lattice header".into());
                }
                (-(1i64 << 31), 1i64 << 31, 0, big_d)
            }
            _ => {
                if lo != 0 || hi != 0 || bound != 0 {
                    return Err("float bits header".into());
                }
                (-(1i64 << 31), (1i64 << 31) - 1, 0, 0.0)
            }
        };
        if version == 2 {
            if domain == BITS {
                return Err("region of interest in the float bits domain".into());
            }
            if !(d as u64 <= d_out && d_out <= 1 << 28) {
                return Err("d_out".into());
            }
            let ok = if domain == INTEGER {
                bound_in == d as f64 && bound_out == d_out as f64
            } else {
                bound_in.is_finite()
                    && bound_out.is_finite()
                    && 0.0 <= bound_in
                    && bound_in <= bound_out
            };
            if !ok {
                return Err("bound_in / bound_out".into());
            }
        }
        let count = ceil_div(shape[2], chunk_z) * ceil_div(shape[3], chunk_t);
        let data = h + 4 + 8 * count;
        if bytes.len() < data {
            return Err("residual stream shorter than its chunk table".into());
        }
        let mut r = Reader::new(bytes);
        r.pos = h;
        let mut table = Vec::with_capacity(count);
        for _ in 0..count {
            table.push((r.u32("chunk length")? as usize, r.u32("chunk CRC")?));
        }
        if r.u32("index CRC")? != crc32fast::hash(&bytes[..h + 8 * count]) {
            return Err("index CRC mismatch".into());
        }
        let mut chunks = Vec::with_capacity(count);
        let mut pos = data;
        for (len, crc) in table {
            if len > bytes.len() - pos {
                return Err("chunks run past the end of the stream".into());
            }
            chunks.push((&bytes[pos..pos + len], crc));
            pos += len;
        }
        if pos != bytes.len() {
            return Err("bytes after the last chunk".into());
        }
        Ok(Stream {
            version,
            domain,
            has_field,
            shared_mask,
            shape,
            chunk_z,
            chunk_t,
            lo,
            hi,
            d,
            d_out: d_out as i64,
            lattice,
            bounds: (bound_in, bound_out),
            levels,
            outlier_bound,
            chunks,
        })
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Slices and frames of chunk `c`: `(z0, z1, t0, t1)`, ends exclusive.
    pub fn chunk_region(&self, c: usize) -> (usize, usize, usize, usize) {
        let cz = ceil_div(self.shape[2], self.chunk_z);
        let (zi, ti) = (c % cz, c / cz);
        let z0 = zi * self.chunk_z;
        let t0 = ti * self.chunk_t;
        (
            z0,
            self.shape[2].min(z0 + self.chunk_z),
            t0,
            self.shape[3].min(t0 + self.chunk_t),
        )
    }

    /// The field's stored value `p` in the domain (`P`).
    fn predict(&self, p: f32) -> Result<i64, String> {
        match self.domain {
            INTEGER => {
                if !(p.is_finite() && p.fract() == 0.0) {
                    return Err(format!("field value {p} is not an integer"));
                }
                Ok((p as i64).clamp(self.lo, self.hi))
            }
            LATTICE => {
                let c = (f64::from(p) / (2.0 * self.lattice)).round_ties_even();
                Ok(if c.is_nan() {
                    0
                } else {
                    c.clamp(-(2f64.powi(31)), 2f64.powi(31)) as i64
                })
            }
            _ => Ok(ordered(p.to_bits())),
        }
    }

    /// The output value of a reconstructed `R`.
    fn output(&self, r: i64) -> f32 {
        match self.domain {
            INTEGER => r as f32,
            LATTICE => (r as f64 * (2.0 * self.lattice)) as f32,
            _ => f32::from_bits(unordered(r)),
        }
    }

    /// Decodes chunk `c`; `prediction` is the field's stored values of its voxels (x fastest,
    /// then y, z, t), required exactly when the stream has a field.
    pub fn decode_chunk(&self, c: usize, prediction: Option<&[f32]>) -> Result<Chunk, String> {
        let (bytes, crc) = self.chunks[c];
        if crc32fast::hash(bytes) != crc {
            return Err(format!("chunk {c}: CRC mismatch"));
        }
        let (z0, z1, t0, t1) = self.chunk_region(c);
        let (nx, ny, cz, ct) = (self.shape[0], self.shape[1], z1 - z0, t1 - t0);
        let n = nx * ny * cz * ct;
        if let Some(levels) = self.levels {
            if self.has_field != prediction.is_some() {
                return Err("a field prediction exactly when the stream has one".into());
            }
            let integer = (self.domain == INTEGER).then_some((self.lo, self.hi));
            let values = super::transform::decode_chunk(
                bytes,
                [nx, ny, cz],
                ct,
                levels,
                self.version == 4,
                integer,
                self.outlier_bound,
                prediction,
            )
            .map_err(|e| format!("chunk {c}: {e}"))?;
            return Ok(Chunk {
                values,
                mask: None,
                escaped: 0,
            });
        }
        let p: Option<Vec<i64>> = match (self.has_field, prediction) {
            (true, Some(p)) => {
                assert_eq!(p.len(), n);
                Some(
                    p.iter()
                        .map(|&v| self.predict(v))
                        .collect::<Result<_, _>>()?,
                )
            }
            (false, None) => None,
            _ => panic!("prediction passed iff the stream has a field"),
        };
        let mut rc = RangeDecoder::new(bytes)?;

        // The region of interest's mask (chapter "Region of interest").
        let mask = if self.version == 2 {
            let mut models = [Model::new(); 16];
            let frames = if self.shared_mask { 1 } else { ct };
            let mut bits = vec![false; nx * ny * cz * frames];
            let at = |x: usize, y: usize, z: usize, t: usize| ((t * cz + z) * ny + y) * nx + x;
            for t in 0..frames {
                for z in 0..cz {
                    for y in 0..ny {
                        for x in 0..nx {
                            let w = x > 0 && bits[at(x - 1, y, z, t)];
                            let nn = y > 0 && bits[at(x, y - 1, z, t)];
                            let zz = z > 0 && bits[at(x, y, z - 1, t)];
                            let tt = t > 0 && bits[at(x, y, z, t - 1)];
                            let ctx = usize::from(w)
                                + 2 * usize::from(nn)
                                + 4 * usize::from(zz)
                                + 8 * usize::from(tt);
                            bits[at(x, y, z, t)] = rc.bit(&mut models[ctx]) == 1;
                        }
                    }
                }
            }
            let per_frame = nx * ny * cz;
            Some(if self.shared_mask {
                (0..n).map(|i| bits[i % per_frame]).collect::<Vec<_>>()
            } else {
                bits
            })
        } else {
            None
        };

        let m =
            5 + 3 * usize::from(cz > 1) + 3 * usize::from(ct > 1) + 4 * usize::from(p.is_some());
        let mut classes = vec![Class::new(); 26];
        let mut rec = vec![0i64; n];
        let mut values = vec![0f32; n];
        let slice = nx * ny;
        // Local errors of the current slice: e_j per voxel, then ε.
        let mut e = vec![0i64; slice * m];
        let mut eps = vec![0i64; slice];
        let mut escaped = 0;
        let mut preds = Vec::with_capacity(m);
        for t in 0..ct {
            for z in 0..cz {
                let base = (t * cz + z) * slice;
                for y in 0..ny {
                    for x in 0..nx {
                        let i = base + y * nx + x;
                        let pos = neighbours(x, y, nx);
                        // Step 1: the current slice's neighbours.
                        let fallback = if t > 0 {
                            rec[i - cz * slice]
                        } else if z > 0 {
                            rec[i - slice]
                        } else if let Some(p) = &p {
                            p[i]
                        } else {
                            0
                        };
                        let [w, nn, nw, ne] = pos.map(|q| q.map_or(fallback, |q| rec[base + q]));
                        let med = med(w, nn, nw);
                        // Step 2: sub-predictors.
                        preds.clear();
                        preds.extend([w, nn, med, w + ne - nn, ne]);
                        for (present, first, back) in
                            [(cz > 1, z == 0, slice), (ct > 1, t == 0, cz * slice)]
                        {
                            if !present {
                                continue;
                            }
                            if first {
                                preds.extend([med; 3]);
                            } else {
                                let ab = base - back;
                                let a = rec[ab + y * nx + x];
                                let [a_w, a_n, _, _] = pos.map(|q| q.map_or(a, |q| rec[ab + q]));
                                preds.extend([a, a + w - a_w, a + nn - a_n]);
                            }
                        }
                        if let Some(p) = &p {
                            let pi = p[i];
                            let [p_w, p_n, p_nw, _] = pos.map(|q| q.map_or(pi, |q| p[base + q]));
                            let (r_w, r_n, r_nw) = (w - p_w, nn - p_n, nw - p_nw);
                            preds.extend([pi, pi + r_w, pi + r_n, pi + med3(r_w, r_n, r_nw)]);
                        }
                        assert_eq!(preds.len(), m);
                        // Step 3: local errors over the four neighbour positions.
                        let mut s = vec![0i64; m];
                        let mut big_e = 0i64;
                        for q in pos.iter().flatten() {
                            for j in 0..m {
                                s[j] += e[q * m + j];
                            }
                            big_e += eps[*q];
                        }
                        // The voxel's half-width.
                        let d = match &mask {
                            Some(mask) if !mask[i] => self.d_out,
                            _ => self.d,
                        };
                        let q = 2 * d + 1;
                        // Step 4: blend.
                        let mut wsum = 0i128;
                        let mut num = 0i128;
                        for j in 0..m {
                            let g = (s[j] + 1 + 2 * d).min(1 << 30) as i128;
                            let wj = (1i128 << 60) / (g * g);
                            wsum += wj;
                            num += wj * preds[j] as i128;
                        }
                        let blend = (num + wsum / 2).div_euclid(wsum);
                        let pred = blend.clamp(self.lo as i128, self.hi as i128) as i64;
                        // Step 5: activity class.
                        let a = 4 * (s.iter().min().unwrap() + big_e) / q;
                        let class = if a < 2 {
                            a as usize
                        } else {
                            let b = 63 - a.leading_zeros() as i64;
                            (2 * b + ((a >> (b - 1)) & 1)).min(25) as usize
                        };
                        let models = &mut classes[class];
                        // Step 6: escape.
                        let r = if self.domain == LATTICE && rc.bit(&mut models.escape) == 1 {
                            let mut bits = 0u32;
                            for _ in 0..32 {
                                bits = (bits << 1) | rc.equiprobable();
                            }
                            values[i] = f32::from_bits(bits);
                            escaped += 1;
                            pred
                        } else {
                            // Step 7: the symbol.
                            let k = decode_k(&mut rc, models);
                            if k.abs() > (self.hi - self.lo + d) / q {
                                return Err(format!("chunk {c}: symbol {k} out of range"));
                            }
                            let r = (pred + k * q).clamp(self.lo, self.hi);
                            values[i] = self.output(r);
                            r
                        };
                        rec[i] = r;
                        let here = y * nx + x;
                        for j in 0..m {
                            e[here * m + j] = (preds[j] - r).abs().min(1 << 24);
                        }
                        eps[here] = (pred - r).abs().min(1 << 24);
                    }
                }
            }
        }
        rc.finish().map_err(|e| format!("chunk {c}: {e}"))?;
        Ok(Chunk {
            values,
            mask,
            escaped,
        })
    }
}

/// `o(b)`: f32 bit patterns ordered as signed integers.
pub fn ordered(b: u32) -> i64 {
    if b >> 31 == 0 {
        i64::from(b)
    } else {
        -i64::from(b & 0x7FFF_FFFF) - 1
    }
}

/// `o⁻¹(v)`.
pub fn unordered(v: i64) -> u32 {
    if v >= 0 {
        v as u32
    } else {
        0x8000_0000 | (-(v + 1)) as u32
    }
}

/// Positions in the slice (`y·nx + x`) of W, N, NW, NE after the border substitutions of step
/// 1; `None` is the fallback value (only at `x = y = 0`).
fn neighbours(x: usize, y: usize, nx: usize) -> [Option<usize>; 4] {
    let at = |x: usize, y: usize| Some(y * nx + x);
    if x == 0 && y == 0 {
        [None; 4]
    } else if y == 0 {
        let w = at(x - 1, 0);
        [w, w, w, w]
    } else if x == 0 {
        let n = at(0, y - 1);
        let ne = if nx > 1 { at(1, y - 1) } else { n };
        [n, n, n, ne]
    } else if x == nx - 1 {
        [at(x - 1, y), at(x, y - 1), at(x - 1, y - 1), at(x, y - 1)]
    } else {
        [
            at(x - 1, y),
            at(x, y - 1),
            at(x - 1, y - 1),
            at(x + 1, y - 1),
        ]
    }
}

/// MED with its arguments in the order W, N, NW.
fn med(w: i64, n: i64, nw: i64) -> i64 {
    if nw >= w.max(n) {
        w.min(n)
    } else if nw <= w.min(n) {
        w.max(n)
    } else {
        w + n - nw
    }
}

fn med3(r_w: i64, r_n: i64, r_nw: i64) -> i64 {
    med(r_w, r_n, r_nw)
}

// ---------------------------------------------------------------------------------------------
// The range decoder and the bit models.

#[derive(Clone, Copy)]
pub(crate) struct Model {
    fast: u32,
    slow: u32,
}

impl Model {
    pub(crate) fn new() -> Model {
        Model {
            fast: 32768,
            slow: 32768,
        }
    }

    fn p(&self) -> u32 {
        ((self.fast + self.slow + 1) >> 1).clamp(32, 65504)
    }

    fn update(&mut self, bit: u32) {
        if bit == 0 {
            self.fast += (65536 - self.fast) >> 5;
            self.slow += (65536 - self.slow) >> 8;
        } else {
            self.fast -= self.fast >> 5;
            self.slow -= self.slow >> 8;
        }
    }
}

#[derive(Clone)]
pub(crate) struct Class {
    zero: Model,
    sign: Model,
    escape: Model,
    exponent: [Model; 20],
    mantissa: [[Model; 3]; 20],
}

impl Class {
    pub(crate) fn new() -> Class {
        Class {
            zero: Model::new(),
            sign: Model::new(),
            escape: Model::new(),
            exponent: [Model::new(); 20],
            mantissa: [[Model::new(); 3]; 20],
        }
    }
}

/// Chapter "Binarisation of `k`".
pub(crate) fn decode_k(rc: &mut RangeDecoder, m: &mut Class) -> i64 {
    decode_k_with_sign(rc, m, None)
}

/// `decode_k` with the sign bit read with `sign` instead of the class's sign model (the
/// transform layer's version 4).
pub(crate) fn decode_k_with_sign(
    rc: &mut RangeDecoder,
    m: &mut Class,
    sign: Option<&mut Model>,
) -> i64 {
    if rc.bit(&mut m.zero) == 0 {
        return 0;
    }
    let negative = match sign {
        Some(s) => rc.bit(s) == 1,
        None => rc.bit(&mut m.sign) == 1,
    };
    let u = |j: usize| j.min(19);
    let mut n = 0usize;
    while n < 40 && rc.bit(&mut m.exponent[u(n)]) == 1 {
        n += 1;
    }
    let mut v = 1i64;
    if n >= 1 {
        let b1 = rc.bit(&mut m.mantissa[u(n)][0]);
        v = 2 * v + i64::from(b1);
        if n >= 2 {
            let b2 = rc.bit(&mut m.mantissa[u(n)][1 + b1 as usize]);
            v = 2 * v + i64::from(b2);
            for _ in 2..n {
                v = 2 * v + i64::from(rc.equiprobable());
            }
        }
    }
    if negative {
        -v
    } else {
        v
    }
}

pub(crate) struct RangeDecoder<'a> {
    b: &'a [u8],
    pos: usize,
    code: u32,
    range: u32,
    overrun: bool,
}

impl<'a> RangeDecoder<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Result<Self, String> {
        if b.len() < 5 || b[0] != 0 {
            return Err("chunk shorter than 5 bytes or first byte not 0".into());
        }
        Ok(RangeDecoder {
            b,
            pos: 5,
            code: u32::from_be_bytes(b[1..5].try_into().unwrap()),
            range: 0xFFFF_FFFF,
            overrun: false,
        })
    }

    fn next_byte(&mut self) -> u32 {
        match self.b.get(self.pos) {
            Some(&x) => {
                self.pos += 1;
                u32::from(x)
            }
            None => {
                self.overrun = true;
                0
            }
        }
    }

    fn normalise(&mut self) {
        while self.range < 1 << 24 {
            self.range <<= 8;
            self.code = (self.code << 8) | self.next_byte();
        }
    }

    fn bit(&mut self, m: &mut Model) -> u32 {
        let bound = (self.range >> 16) * m.p();
        let bit = if self.code < bound {
            self.range = bound;
            0
        } else {
            self.code -= bound;
            self.range -= bound;
            1
        };
        m.update(bit);
        self.normalise();
        bit
    }

    fn equiprobable(&mut self) -> u32 {
        self.range >>= 1;
        let bit = if self.code >= self.range {
            self.code -= self.range;
            1
        } else {
            0
        };
        self.normalise();
        bit
    }

    pub(crate) fn finish(&self) -> Result<(), String> {
        if self.overrun {
            Err("read past the end of the chunk".into())
        } else if self.pos != self.b.len() {
            Err(format!("{} unread bytes", self.b.len() - self.pos))
        } else {
            Ok(())
        }
    }
}
