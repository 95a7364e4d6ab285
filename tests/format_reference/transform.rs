//! The transform layer (FORMAT.md chapter "Transform layer"), reimplemented from the document
//! alone: blocks, bands, the coefficient contexts, dequantization, the CDF 9/7 synthesis and
//! the value map. The range decoder and the binarisation are the residual layer's
//! (`super::residual`). Nothing here calls `medinr::residual`.

use super::residual::{decode_k, decode_k_with_sign, Class, Model, RangeDecoder};

/// α of the four lifting steps and ζ, from their bit patterns in the document.
const ALPHA: [u64; 4] = [
    0xbff960ce67635b8d,
    0xbfab2035c937d7fb,
    0x3fec40ceba55cf3c,
    0x3fdc626a90452b46,
];
const ZETA: u64 = 0x3ff264c795071460;

/// One band: level, orientation, origin and extent (x, y, z).
#[derive(Clone, Copy, Debug)]
struct Band {
    level: usize,
    orientation: usize,
    origin: [usize; 3],
    extent: [usize; 3],
}

struct Geometry {
    n: [usize; 3],
    levels: [usize; 3],
}

impl Geometry {
    /// `e_a(l)`.
    fn e(&self, a: usize, l: usize) -> usize {
        let mut n = self.n[a];
        for _ in 0..l.min(self.levels[a]) {
            n = n.div_ceil(2);
        }
        n
    }

    fn splits(&self, a: usize, l: usize) -> bool {
        l < self.levels[a] && self.e(a, l) >= 2
    }

    fn depth(&self) -> usize {
        *self.levels.iter().max().unwrap()
    }

    /// The bands in coding order.
    fn bands(&self) -> Vec<Band> {
        let d = self.depth();
        let mut out = vec![Band {
            level: d,
            orientation: 0,
            origin: [0; 3],
            extent: [self.e(0, d), self.e(1, d), self.e(2, d)],
        }];
        for l in (0..d).rev() {
            'orientation: for o in 1..8 {
                let mut b = Band {
                    level: l,
                    orientation: o,
                    origin: [0; 3],
                    extent: [0; 3],
                };
                for a in 0..3 {
                    if o & (1 << a) != 0 {
                        if !self.splits(a, l) {
                            continue 'orientation;
                        }
                        b.origin[a] = self.e(a, l + 1);
                        b.extent[a] = self.e(a, l) - self.e(a, l + 1);
                    } else {
                        b.extent[a] = self.e(a, l + 1);
                    }
                }
                if b.extent.iter().all(|&x| x > 0) {
                    out.push(b);
                }
            }
        }
        out
    }
}

fn class_of(v: u64) -> usize {
    let c = if v < 2 {
        v as usize
    } else {
        let b = 63 - v.leading_zeros() as usize;
        2 * b + ((v >> (b - 1)) & 1) as usize
    };
    c.min(25)
}

/// `t` of a decoded value for version 4's sign context: 0 zero, 1 positive, 2 negative.
fn t(v: i64) -> usize {
    match v {
        0 => 0,
        v if v > 0 => 1,
        _ => 2,
    }
}

/// Decodes the quantized coefficients of one block (`L` bytes); `v4` for stream version 4's
/// contexts.
fn coefficients(bytes: &[u8], g: &Geometry, bands: &[Band], v4: bool) -> Result<Vec<i64>, String> {
    let [nx, ny, nz] = g.n;
    let mut q = vec![0i64; nx * ny * nz];
    let at = |b: &Band, x: usize, y: usize, z: usize| {
        ((b.origin[2] + z) * ny + b.origin[1] + y) * nx + b.origin[0] + x
    };
    let mut sets: Vec<Vec<Class>> = (0..=g.depth()).map(|_| vec![Class::new(); 26]).collect();
    // Version 4: per model set, per parent bucket, the 26 classes; and 27 sign models.
    let mut by_parent: Vec<Vec<Vec<Class>>> = (0..=g.depth())
        .map(|_| (0..3).map(|_| vec![Class::new(); 26]).collect())
        .collect();
    let mut signs: Vec<Vec<Model>> = (0..=g.depth()).map(|_| vec![Model::new(); 27]).collect();
    let mut rc = RangeDecoder::new(bytes)?;
    let depth = g.depth();
    for band in bands {
        let set = if band.orientation == 0 {
            0
        } else {
            1 + band.level
        };
        let parent = if band.orientation != 0 && band.level + 1 < depth {
            bands
                .iter()
                .find(|b| b.level == band.level + 1 && b.orientation == band.orientation)
                .copied()
        } else {
            None
        };
        for z in 0..band.extent[2] {
            for y in 0..band.extent[1] {
                for x in 0..band.extent[0] {
                    let i = at(band, x, y, z);
                    if band.orientation == 0 {
                        let (class, pred) = if x > 0 && y > 0 {
                            let w = q[at(band, x - 1, y, z)];
                            let n = q[at(band, x, y - 1, z)];
                            let nw = q[at(band, x - 1, y - 1, z)];
                            let med = if nw >= w.max(n) {
                                w.min(n)
                            } else if nw <= w.min(n) {
                                w.max(n)
                            } else {
                                w + n - nw
                            };
                            (
                                class_of((w - nw).unsigned_abs() + (n - nw).unsigned_abs()),
                                med,
                            )
                        } else if x > 0 {
                            (25, q[at(band, x - 1, y, z)])
                        } else if y > 0 {
                            (25, q[at(band, x, y - 1, z)])
                        } else if z > 0 {
                            (25, q[at(band, x, y, z - 1)])
                        } else {
                            (25, 0)
                        };
                        let k = decode_k(&mut rc, &mut sets[set][class]);
                        q[i] = pred.saturating_add(k);
                    } else {
                        let mut a = 0u64;
                        let mut sign = 0usize;
                        if x > 0 {
                            a += 2 * q[at(band, x - 1, y, z)].unsigned_abs();
                            sign += t(q[at(band, x - 1, y, z)]);
                        }
                        if y > 0 {
                            a += 2 * q[at(band, x, y - 1, z)].unsigned_abs();
                            sign += 3 * t(q[at(band, x, y - 1, z)]);
                        }
                        if x > 0 && y > 0 {
                            a += q[at(band, x - 1, y - 1, z)].unsigned_abs();
                        }
                        if y > 0 && x + 1 < band.extent[0] {
                            a += q[at(band, x + 1, y - 1, z)].unsigned_abs();
                        }
                        if z > 0 {
                            a += q[at(band, x, y, z - 1)].unsigned_abs();
                            sign += 9 * t(q[at(band, x, y, z - 1)]);
                        }
                        let mut pm = 0u64;
                        if let Some(p) = &parent {
                            let px = (x / 2).min(p.extent[0] - 1);
                            let py = (y / 2).min(p.extent[1] - 1);
                            let pz = if p.extent[2] == band.extent[2] {
                                z
                            } else {
                                (z / 2).min(p.extent[2] - 1)
                            };
                            pm = q[at(p, px, py, pz)].unsigned_abs();
                            a += 2 * pm;
                        }
                        q[i] = if v4 {
                            let bucket = match pm {
                                0 => 0,
                                1 | 2 => 1,
                                _ => 2,
                            };
                            decode_k_with_sign(
                                &mut rc,
                                &mut by_parent[set][bucket][class_of(a)],
                                Some(&mut signs[set][sign]),
                            )
                        } else {
                            decode_k(&mut rc, &mut sets[set][class_of(a)])
                        };
                    }
                }
            }
        }
    }
    rc.finish()?;
    Ok(q)
}

/// Synthesis of one line `x` (the de-interleave, then the lifting steps undone).
fn synthesise(line: &mut [f64]) {
    let n = line.len();
    if n < 2 {
        return;
    }
    let zeta = f64::from_bits(ZETA);
    let lows = n.div_ceil(2);
    let src = line.to_vec();
    for j in 0..n {
        line[j] = if j % 2 == 0 {
            src[j / 2] / zeta
        } else {
            src[lows + j / 2] * zeta
        };
    }
    for step in (0..4).rev() {
        let alpha = f64::from_bits(ALPHA[step]);
        let parity = if step % 2 == 0 { 1 } else { 0 };
        let mirror = |j: isize| -> usize {
            if j < 0 {
                1
            } else if j as usize >= n {
                n - 2
            } else {
                j as usize
            }
        };
        let mut j = parity;
        while j < n {
            let s = line[mirror(j as isize - 1)] + line[mirror(j as isize + 1)];
            line[j] -= alpha * s;
            j += 2;
        }
    }
}

fn inverse(c: &mut [f64], g: &Geometry) {
    let [nx, ny, _] = g.n;
    let index = |p: [usize; 3]| (p[2] * ny + p[1]) * nx + p[0];
    for l in (0..g.depth()).rev() {
        let e = [g.e(0, l), g.e(1, l), g.e(2, l)];
        for axis in [2, 1, 0] {
            if !g.splits(axis, l) {
                continue;
            }
            let (u, v) = match axis {
                0 => (1, 2),
                1 => (0, 2),
                _ => (0, 1),
            };
            for i in 0..e[u] {
                for j in 0..e[v] {
                    let mut p = [0; 3];
                    p[u] = i;
                    p[v] = j;
                    let mut line: Vec<f64> = (0..e[axis])
                        .map(|k| {
                            p[axis] = k;
                            c[index(p)]
                        })
                        .collect();
                    synthesise(&mut line);
                    for (k, value) in line.into_iter().enumerate() {
                        p[axis] = k;
                        c[index(p)] = value;
                    }
                }
            }
        }
    }
}

fn f32_at(b: &[u8], o: usize) -> f32 {
    f32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

/// Decodes a chunk of `nt` blocks of `n = (nx, ny, Nz)`; `integer = Some((lo, hi))` for the
/// integer domain; `prediction` the field's stored values of the chunk, when coded with one.
#[allow(clippy::too_many_arguments)]
pub fn decode_chunk(
    bytes: &[u8],
    n: [usize; 3],
    nt: usize,
    levels: [u8; 3],
    v4: bool,
    integer: Option<(i64, i64)>,
    outlier_bound: Option<u32>,
    prediction: Option<&[f32]>,
) -> Result<Vec<f32>, String> {
    let g = Geometry {
        n,
        levels: levels.map(usize::from),
    };
    let bands = g.bands();
    let block = n[0] * n[1] * n[2];
    let mut out = Vec::with_capacity(block * nt);
    let mut pos = 0usize;
    for t in 0..nt {
        let head = 4 + 6 * bands.len() + 4;
        if bytes.len() - pos < head {
            return Err("block header truncated".into());
        }
        let mean = f32_at(bytes, pos);
        if !mean.is_finite() {
            return Err("mean not finite".into());
        }
        let mut table = Vec::new();
        for b in 0..bands.len() {
            let o = pos + 4 + 6 * b;
            let step = f32_at(bytes, o);
            let offset = i16::from_le_bytes([bytes[o + 4], bytes[o + 5]]);
            if !(step.is_finite() && step > 0.0 && (-2048..=2047).contains(&offset)) {
                return Err(format!("band {b}: step {step}, offset {offset}"));
            }
            table.push((step, offset));
        }
        let l_at = pos + 4 + 6 * bands.len();
        let len = u32::from_le_bytes(bytes[l_at..l_at + 4].try_into().unwrap()) as usize;
        pos += head;
        if len > bytes.len() - pos {
            return Err("coded coefficients run past the chunk".into());
        }
        let q = coefficients(&bytes[pos..pos + len], &g, &bands, v4)?;
        pos += len;
        // Dequantize band by band.
        let mut c = vec![0f64; block];
        for (band, &(step, offset)) in bands.iter().zip(&table) {
            for z in 0..band.extent[2] {
                for y in 0..band.extent[1] {
                    for x in 0..band.extent[0] {
                        let i = ((band.origin[2] + z) * n[1] + band.origin[1] + y) * n[0]
                            + band.origin[0]
                            + x;
                        let k = q[i];
                        c[i] = if k == 0 {
                            0.0
                        } else {
                            let m =
                                (k.unsigned_abs() as f64 + offset as f64 / 4096.0) * step as f64;
                            if k < 0 {
                                -m
                            } else {
                                m
                            }
                        };
                    }
                }
            }
        }
        inverse(&mut c, &g);
        let mut values: Vec<f32> = c
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let v = match prediction {
                    Some(p) => (p[t * block + i] as f64 + mean as f64) + r,
                    None => mean as f64 + r,
                };
                match integer {
                    Some((lo, hi)) => v.round().clamp(lo as f64, hi as f64) as f32,
                    None => v as f32,
                }
            })
            .collect();
        if let (Some(limit), Some((lo, hi))) = (outlier_bound, integer) {
            if bytes.len() - pos < 8 {
                return Err("outlier header truncated".into());
            }
            let d = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
            let m = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
            pos += 8;
            if d > limit || m > bytes.len() - pos {
                return Err(format!(
                    "outlier list: bound {d} (stream {limit}), {m} bytes"
                ));
            }
            let mut rc = RangeDecoder::new(&bytes[pos..pos + m])?;
            pos += m;
            let mut classes = vec![Class::new(); 3];
            let count = decode_k(&mut rc, &mut classes[0]);
            if count < 0 || count as usize > block {
                return Err(format!("{count} outliers"));
            }
            let q = 2 * d as i64 + 1;
            let mut previous = -1i64;
            for _ in 0..count {
                let gap = decode_k(&mut rc, &mut classes[1]);
                let k = decode_k(&mut rc, &mut classes[2]);
                let i = previous + 1 + gap;
                if gap < 0 || i as usize >= block || k == 0 || k.abs() > (hi - lo) / q + 1 {
                    return Err(format!("outlier at {i}: gap {gap}, correction {k}"));
                }
                let v = &mut values[i as usize];
                *v = ((*v as i64) + k * q).clamp(lo, hi) as f32;
                previous = i;
            }
            rc.finish()?;
        }
        out.extend(values);
    }
    if pos != bytes.len() {
        return Err("unread bytes after the last block".into());
    }
    Ok(out)
}
