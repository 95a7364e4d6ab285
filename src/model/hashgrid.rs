//! The multiresolution hash-grid encoding on the CPU: forward (gather + multilinear
//! interpolation) and backward (gradient scatter into the tables), hand-written over f32
//! slices and parallel with rayon.
//!
//! Coordinates are in [0, 1] per axis. At level `l` with `R` cells on an axis, a coordinate `u`
//! lands at `p = u·R`, in cell `c = clamp(floor(p), 0, R−1)` with fraction `w = p − c`. The
//! 2^d vertices of that cell are looked up densely (`Σ c_a·stride_a`) when the level's grid fits
//! its table, else through the spatial hash `(c_0·1 ⊕ c_1·2654435761 ⊕ c_2·805459861 ⊕
//! c_3·3674653429) mod T` of Teschner et al. / instant-ngp. `docs/FORMAT.md` states this
//! bit-exactly; the forward pass sums corners in a fixed order, so it is deterministic.

use rayon::prelude::*;

use super::config::{FieldConfig, MAX_DIMS};

const PRIMES: [u32; MAX_DIMS] = [1, 2_654_435_761, 805_459_861, 3_674_653_429];

/// Samples handled by one rayon task in the forward pass.
const CHUNK: usize = 1024;

/// Calls a kernel monomorphised for the layout's axes (3 or 4) and features (1, 2, 4 or 8);
/// `FieldConfig::validate` guarantees one of those combinations.
macro_rules! dispatch {
    ($layout:ident, $kernel:ident($($arg:expr),*)) => {
        match ($layout.dims, $layout.features) {
            (3, 1) => $layout.$kernel::<3, 1>($($arg),*),
            (3, 2) => $layout.$kernel::<3, 2>($($arg),*),
            (3, 4) => $layout.$kernel::<3, 4>($($arg),*),
            (3, 8) => $layout.$kernel::<3, 8>($($arg),*),
            (4, 1) => $layout.$kernel::<4, 1>($($arg),*),
            (4, 2) => $layout.$kernel::<4, 2>($($arg),*),
            (4, 4) => $layout.$kernel::<4, 4>($($arg),*),
            (4, 8) => $layout.$kernel::<4, 8>($($arg),*),
            (d, f) => unreachable!("config validated: dims {d}, features {f}"),
        }
    };
}

/// Where each level lives in the flat table and how it is indexed.
#[derive(Debug, Clone)]
pub struct GridLayout {
    pub dims: usize,
    pub features: usize,
    pub levels: Vec<LevelLayout>,
    /// Total entries of all levels (the flat table holds `entries · features` floats).
    pub entries: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct LevelLayout {
    /// Cells per axis (as f32 for the position, as u32 for clamping).
    pub res: [u32; MAX_DIMS],
    pub resf: [f32; MAX_DIMS],
    /// Dense strides (vertices per axis step); unused when hashed.
    pub strides: [u32; MAX_DIMS],
    pub hashed: bool,
    pub size: u32,
    /// `ceil(2^64 / size)`: turns `h mod size` into two multiplications (Lemire's fastmod),
    /// exact for every u32 `h`; a division per corner would dominate the encoding.
    pub fastmod: u64,
    /// First entry of this level in the flat table.
    pub offset: usize,
}

impl GridLayout {
    pub fn new(config: &FieldConfig) -> GridLayout {
        let mut offset = 0usize;
        let mut levels = Vec::with_capacity(config.levels());
        for (l, res) in config.resolutions.iter().enumerate() {
            let size = config.level_entries(l);
            let hashed = config.level_vertices(l) > config.table_size as u64;
            let mut strides = [0u32; MAX_DIMS];
            let mut stride = 1u32;
            let mut resf = [0f32; MAX_DIMS];
            for a in 0..config.dims {
                strides[a] = stride;
                stride = stride.wrapping_mul(res[a] + 1);
                resf[a] = res[a] as f32;
            }
            levels.push(LevelLayout {
                res: *res,
                resf,
                strides,
                hashed,
                size,
                fastmod: (u64::MAX / size as u64).wrapping_add(1),
                offset,
            });
            offset += size as usize;
        }
        GridLayout {
            dims: config.dims,
            features: config.features,
            levels,
            entries: offset,
        }
    }

    /// Floats in the flat table.
    pub fn table_len(&self) -> usize {
        self.entries * self.features
    }

    /// Width of the encoded output per sample.
    pub fn width(&self) -> usize {
        self.levels.len() * self.features
    }

    /// Encodes `coords` (`n × dims`, row-major) into `out` (`n × width`).
    pub fn forward(&self, table: &[f32], coords: &[f32], out: &mut [f32]) {
        dispatch!(self, forward_impl(table, coords, out))
    }

    /// Accumulates the table gradient for `grad_out` (`n × width`) into `grad_table`.
    pub fn backward(&self, coords: &[f32], grad_out: &[f32], grad_table: &mut [f32]) {
        dispatch!(self, backward_impl(coords, grad_out, grad_table))
    }

    fn forward_impl<const D: usize, const F: usize>(
        &self,
        table: &[f32],
        coords: &[f32],
        out: &mut [f32],
    ) {
        let width = self.width();
        out.par_chunks_mut(CHUNK * width)
            .zip(coords.par_chunks(CHUNK * D))
            .for_each(|(out, coords)| {
                for (o, u) in out.chunks_exact_mut(width).zip(coords.chunks_exact(D)) {
                    for (lv, o) in self.levels.iter().zip(o.chunks_exact_mut(F)) {
                        let level = &table[lv.offset * F..(lv.offset + lv.size as usize) * F];
                        let (c, w) = cell::<D>(lv, u);
                        let edges = edge_features::<D, F>(lv, level, &c, &w);
                        o.copy_from_slice(&blend_x(&edges, w[0]));
                    }
                }
            });
    }

    fn backward_impl<const D: usize, const F: usize>(
        &self,
        coords: &[f32],
        grad_out: &[f32],
        grad_table: &mut [f32],
    ) {
        let width = self.width();
        // Each level owns a disjoint part of the table: scatter level by level in parallel,
        // samples in order within a level, so the sum is the same on every run.
        let mut parts = Vec::with_capacity(self.levels.len());
        let mut rest = grad_table;
        for lv in &self.levels {
            let (head, tail) = rest.split_at_mut(lv.size as usize * F);
            parts.push(head);
            rest = tail;
        }
        parts
            .into_par_iter()
            .zip(self.levels.par_iter().enumerate())
            .for_each(|(grad, (l, lv))| {
                for (u, g) in coords.chunks_exact(D).zip(grad_out.chunks_exact(width)) {
                    let g = &g[l * F..l * F + F];
                    let corners = Corners::locate::<D>(lv, u);
                    for k in 0..(1usize << D) {
                        let base = corners.index[k] as usize * F;
                        let row = &mut grad[base..base + F];
                        for f in 0..F {
                            row[f] += corners.weight[k] * g[f];
                        }
                    }
                }
            });
    }
}

/// `h mod d` given `m = ceil(2^64 / d)` (Lemire, Kaser & Kurz 2019).
#[inline(always)]
fn fast_mod(h: u32, m: u64, d: u32) -> u32 {
    let low = m.wrapping_mul(h as u64);
    ((low as u128 * d as u128) >> 64) as u32
}

/// The 2^D corners of the cell a coordinate falls in at one level: table indices (within the
/// level) and interpolation weights. Corner `k` takes the upper vertex on axis `a` when bit
/// `a` of `k` is set; its weight is the product, in axis order, of `w_a` (upper) or `1 − w_a`
/// (lower), where the cell is `c_a = min(trunc(u_a·R_a), R_a − 1)` and `w_a = u_a·R_a − c_a`.
struct Corners {
    index: [u32; 16],
    weight: [f32; 16],
}

impl Corners {
    #[inline(always)]
    fn locate<const D: usize>(lv: &LevelLayout, u: &[f32]) -> Corners {
        let (c, w) = cell::<D>(lv, u);
        Corners {
            index: corner_indices::<D>(lv, &c),
            weight: corner_weights::<D>(&w),
        }
    }
}

/// Cell and interpolation fractions of a coordinate at one level.
#[inline(always)]
fn cell<const D: usize>(lv: &LevelLayout, u: &[f32]) -> ([u32; MAX_DIMS], [f32; MAX_DIMS]) {
    let mut c = [0u32; MAX_DIMS];
    let mut w = [0f32; MAX_DIMS];
    for a in 0..D {
        let p = u[a] * lv.resf[a];
        // Coordinates are in [0, 1], so truncation is floor; `as` saturates NaN/negatives to 0.
        c[a] = (p as u32).min(lv.res[a] - 1);
        w[a] = p - c[a] as f32;
    }
    (c, w)
}

/// Table indices (within the level) of a cell's 2^D corners.
#[inline(always)]
fn corner_indices<const D: usize>(lv: &LevelLayout, c: &[u32; MAX_DIMS]) -> [u32; 16] {
    let mut index = [0u32; 16];
    let mut n = 1;
    for a in 0..D {
        let scale = if lv.hashed { PRIMES[a] } else { lv.strides[a] };
        let lo = c[a].wrapping_mul(scale);
        let hi = (c[a] + 1).wrapping_mul(scale);
        for k in 0..n {
            let i = index[k];
            if lv.hashed {
                index[k] = i ^ lo;
                index[k + n] = i ^ hi;
            } else {
                index[k] = i.wrapping_add(lo);
                index[k + n] = i.wrapping_add(hi);
            }
        }
        n *= 2;
    }
    if lv.hashed {
        for i in index.iter_mut().take(n) {
            *i = fast_mod(*i, lv.fastmod, lv.size);
        }
    }
    index
}

/// The features interpolated over every axis but x, on the cell's lower (`[0]`) and upper
/// (`[1]`) x edge: `e_s = Σ_m wr_m · T[corner s + 2m]`, summed over `m` in increasing order from
/// 0 (f32 multiply, then add), where `wr_m` is the running product over axes 1.. in order of
/// `w_a` (bit `a − 1` of `m` set) or `1 − w_a`. Splitting x off lets a grid row reuse the
/// edges for every voxel in the same cell.
#[inline(always)]
fn edge_features<const D: usize, const F: usize>(
    lv: &LevelLayout,
    level: &[f32],
    c: &[u32; MAX_DIMS],
    w: &[f32; MAX_DIMS],
) -> [[f32; F]; 2] {
    let cross = CrossSection::locate::<D>(lv, c, w);
    [
        cross.edge::<D, F>(lv, level, c[0]),
        cross.edge::<D, F>(lv, level, c[0] + 1),
    ]
}

/// What a cell's edges share at one level apart from x: the `2^(D−1)` corners of the cell's
/// cross-section through the axes after x, as partial table indices (the x term left out)
/// and weights `wr_m`. Along a row of a grid (x alone changing) it is the same for every
/// voxel, and each x vertex's edge is computed from it once: `edge(x)` is the upper edge of
/// cell `x − 1` and the lower edge of cell `x`, with the same terms in the same order.
#[derive(Debug, Clone, Copy)]
struct CrossSection {
    /// Corner `m` of the cross-section: `⊕`/`+` over axes `a ≥ 1` of `(c_a + bit) · scale_a`.
    partial: [u32; 8],
    /// Its weight `wr_m`, the running product over axes 1.. in axis order.
    weight: [f32; 8],
}

impl CrossSection {
    #[inline(always)]
    fn locate<const D: usize>(
        lv: &LevelLayout,
        c: &[u32; MAX_DIMS],
        w: &[f32; MAX_DIMS],
    ) -> CrossSection {
        let mut partial = [0u32; 8];
        let mut weight = [1f32; 8];
        let mut n = 1;
        for a in 1..D {
            let scale = if lv.hashed { PRIMES[a] } else { lv.strides[a] };
            let lo = c[a].wrapping_mul(scale);
            let hi = (c[a] + 1).wrapping_mul(scale);
            for m in 0..n {
                let (i, wm) = (partial[m], weight[m]);
                if lv.hashed {
                    partial[m] = i ^ lo;
                    partial[m + n] = i ^ hi;
                } else {
                    partial[m] = i.wrapping_add(lo);
                    partial[m + n] = i.wrapping_add(hi);
                }
                weight[m] = wm * (1.0 - w[a]);
                weight[m + n] = wm * w[a];
            }
            n *= 2;
        }
        CrossSection { partial, weight }
    }

    /// The features interpolated over the cross-section at x vertex `x`:
    /// `Σ_m wr_m · T[(x, m)]` in increasing `m` from 0 — what `corner_indices` and the
    /// weights give for the corners with x vertex `x`, bit for bit.
    #[inline(always)]
    fn edge<const D: usize, const F: usize>(
        &self,
        lv: &LevelLayout,
        level: &[f32],
        x: u32,
    ) -> [f32; F] {
        let corners = 1 << (D - 1);
        let mut edge = [0f32; F];
        let scale = if lv.hashed { PRIMES[0] } else { lv.strides[0] };
        let xi = x.wrapping_mul(scale);
        for m in 0..corners {
            let index = if lv.hashed {
                fast_mod(xi ^ self.partial[m], lv.fastmod, lv.size)
            } else {
                xi.wrapping_add(self.partial[m])
            };
            let base = index as usize * F;
            let row = &level[base..base + F];
            for f in 0..F {
                edge[f] += self.weight[m] * row[f];
            }
        }
        edge
    }
}

/// `(1 − w_x) · e_0 + w_x · e_1`, per feature.
#[inline(always)]
fn blend_x<const F: usize>(edges: &[[f32; F]; 2], wx: f32) -> [f32; F] {
    let mut out = [0f32; F];
    for f in 0..F {
        out[f] = (1.0 - wx) * edges[0][f] + wx * edges[1][f];
    }
    out
}

/// Interpolation weights of the 2^D corners: running products over axes in axis order.
#[inline(always)]
fn corner_weights<const D: usize>(w: &[f32; MAX_DIMS]) -> [f32; 16] {
    let mut weight = [1f32; 16];
    let mut n = 1;
    for &wa in w.iter().take(D) {
        for k in 0..n {
            let wk = weight[k];
            weight[k] = wk * (1.0 - wa);
            weight[k + n] = wk * wa;
        }
        n *= 2;
    }
    weight
}

impl GridLayout {
    /// Encodes samples one after another on this thread, exploiting grid rows: while
    /// consecutive samples share every coordinate but x, each level keeps the row's
    /// cross-section (corner weights, the index terms of the other axes) and its current cell's
    /// edges; a sample in the same cell reuses the edges, one in the next cell reuses the
    /// shared edge and looks up only the new one. Most levels are coarser than the voxels, and
    /// the finest ones move one cell at a time. The result is bit-identical to `forward`
    /// (same weights, same summation order); only the lookups and index arithmetic are saved.
    ///
    /// `tables` holds one slice per level (`size · features` floats each), so a decoder can
    /// keep each level where it was decoded instead of assembling one flat copy.
    pub fn forward_coherent(&self, tables: &[&[f32]], coords: &[f32], out: &mut [f32]) {
        assert_eq!(tables.len(), self.levels.len(), "one table per level");
        dispatch!(self, coherent_impl(tables, coords, out))
    }

    /// The flat table cut into one slice per level, as [`GridLayout::forward_coherent`]
    /// takes it.
    pub fn level_tables<'a>(&self, table: &'a [f32]) -> Vec<&'a [f32]> {
        let f = self.features;
        self.levels
            .iter()
            .map(|lv| &table[lv.offset * f..(lv.offset + lv.size as usize) * f])
            .collect()
    }

    fn coherent_impl<const D: usize, const F: usize>(
        &self,
        tables: &[&[f32]],
        coords: &[f32],
        out: &mut [f32],
    ) {
        let width = self.width();
        let mut rows = vec![RowCache::<F>::default(); self.levels.len()];
        let mut last_rest = [f32::NAN; MAX_DIMS];
        for (o, u) in out.chunks_exact_mut(width).zip(coords.chunks_exact(D)) {
            let mut rest = [0f32; MAX_DIMS];
            rest[1..D].copy_from_slice(&u[1..D]);
            // NaN never equals itself, so the first sample always starts a row.
            if rest != last_rest {
                for (row, lv) in rows.iter_mut().zip(&self.levels) {
                    let (c, w) = cell::<D>(lv, u);
                    *row = RowCache {
                        cross: CrossSection::locate::<D>(lv, &c, &w),
                        cx: None,
                        edges: [[0.0; F]; 2],
                    };
                }
                last_rest = rest;
            }
            for ((row, lv), (o, table)) in rows
                .iter_mut()
                .zip(&self.levels)
                .zip(o.chunks_exact_mut(F).zip(tables))
            {
                // Along a row only x changes: its cell and fraction alone are new.
                let px = u[0] * lv.resf[0];
                let cx = (px as u32).min(lv.res[0] - 1);
                let wx = px - cx as f32;
                match row.cx {
                    Some(cached) if cached == cx => {}
                    // The next cell: its lower edge is the previous cell's upper edge.
                    Some(cached) if cached + 1 == cx => {
                        row.edges[0] = row.edges[1];
                        row.edges[1] = row.cross.edge::<D, F>(lv, table, cx + 1);
                    }
                    _ => {
                        row.edges = [
                            row.cross.edge::<D, F>(lv, table, cx),
                            row.cross.edge::<D, F>(lv, table, cx + 1),
                        ]
                    }
                }
                row.cx = Some(cx);
                o.copy_from_slice(&blend_x(&row.edges, wx));
            }
        }
    }
}

/// The x axis of a regular grid, prepared once for all its rows ([`GridLayout::forward_row`]):
/// per level, the x vertices the row's samples interpolate between, and for each sample its
/// cell among them and its fraction. Every row of a grid shares its x coordinates, so this
/// is the per-sample, per-level arithmetic of x done once per grid instead of once per row.
#[derive(Debug, Clone)]
pub struct RowPlan {
    samples: usize,
    levels: Vec<LevelRow>,
}

#[derive(Debug, Clone)]
struct LevelRow {
    /// The distinct x vertices the samples use (each cell's lower and upper one), ascending.
    vertices: Vec<u32>,
    /// Per sample: the position in `vertices` of its cell's lower vertex; the upper one
    /// (one more) follows it, since nothing lies between two consecutive integers.
    lower: Vec<u32>,
    /// Per sample: `w_x`, its fraction along x in the cell.
    wx: Vec<f32>,
}

impl RowPlan {
    /// Samples in a row.
    pub fn len(&self) -> usize {
        self.samples
    }

    /// Whether the rows are empty.
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }
}

impl GridLayout {
    /// The plan for rows whose samples have the x coordinates `xs` (any order).
    pub fn row_plan(&self, xs: &[f32]) -> RowPlan {
        let levels = self
            .levels
            .iter()
            .map(|lv| {
                // The same cell and fraction as `cell` computes for x.
                let (cells, wx): (Vec<u32>, Vec<f32>) = xs
                    .iter()
                    .map(|&x| {
                        let px = x * lv.resf[0];
                        let cx = (px as u32).min(lv.res[0] - 1);
                        (cx, px - cx as f32)
                    })
                    .unzip();
                let mut vertices: Vec<u32> = cells.iter().flat_map(|&c| [c, c + 1]).collect();
                vertices.sort_unstable();
                vertices.dedup();
                let lower = cells
                    .iter()
                    .map(|c| vertices.partition_point(|v| v < c) as u32)
                    .collect();
                LevelRow {
                    vertices,
                    lower,
                    wx,
                }
            })
            .collect();
        RowPlan {
            samples: xs.len(),
            levels,
        }
    }

    /// Encodes one row of a grid into `out` (`plan.len() × width`): the samples at the plan's
    /// x coordinates, all with the coordinates `rest` (`dims − 1` of them) on the other axes.
    /// Each level interpolates its cross-section once per x vertex the row uses, then blends
    /// neighbouring vertices per sample. Bit-identical to [`GridLayout::forward`] on the same
    /// coordinates: the same edges (`edge_features`) and the same blend.
    pub fn forward_row(&self, tables: &[&[f32]], plan: &RowPlan, rest: &[f32], out: &mut [f32]) {
        assert_eq!(tables.len(), self.levels.len(), "one table per level");
        assert_eq!(rest.len() + 1, self.dims, "coordinates of every axis but x");
        assert_eq!(
            out.len(),
            plan.len() * self.width(),
            "one encoding per sample"
        );
        dispatch!(self, row_impl(tables, plan, rest, out))
    }

    fn row_impl<const D: usize, const F: usize>(
        &self,
        tables: &[&[f32]],
        plan: &RowPlan,
        rest: &[f32],
        out: &mut [f32],
    ) {
        let width = self.width();
        let mut u = [0f32; MAX_DIMS];
        u[1..D].copy_from_slice(rest);
        let mut edges: Vec<[f32; F]> = Vec::new();
        for (l, ((lv, row), table)) in self.levels.iter().zip(&plan.levels).zip(tables).enumerate()
        {
            // The cross-section depends on the other axes only (x is left at 0 here).
            let (c, w) = cell::<D>(lv, &u);
            let cross = CrossSection::locate::<D>(lv, &c, &w);
            edges.clear();
            edges.extend(
                row.vertices
                    .iter()
                    .map(|&x| cross.edge::<D, F>(lv, table, x)),
            );
            for ((o, &j), &wx) in out.chunks_exact_mut(width).zip(&row.lower).zip(&row.wx) {
                let j = j as usize;
                let pair = [edges[j], edges[j + 1]];
                o[l * F..(l + 1) * F].copy_from_slice(&blend_x(&pair, wx));
            }
        }
    }
}

/// One level's state along a row of [`GridLayout::forward_coherent`]: the cross-section of
/// the row's coordinates after x, and the edges of the x cell last used.
#[derive(Debug, Clone, Copy)]
struct RowCache<const F: usize> {
    cross: CrossSection,
    /// The x cell `edges` belong to (none yet at the start of a row).
    cx: Option<u32>,
    edges: [[f32; F]; 2],
}

impl<const F: usize> Default for RowCache<F> {
    fn default() -> Self {
        RowCache {
            cross: CrossSection {
                partial: [0; 8],
                weight: [0.0; 8],
            },
            cx: None,
            edges: [[0.0; F]; 2],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Preset;

    fn small_config(dims: usize) -> FieldConfig {
        let shape = if dims == 3 {
            [9, 7, 5, 1]
        } else {
            [9, 7, 5, 4]
        };
        let preset = Preset {
            levels: 4,
            features: 2,
            base_resolution: 2,
            hidden_width: 8,
            hidden_layers: 1,
        };
        FieldConfig::for_shape(shape, 300, &preset)
    }

    use crate::model::coords::test_values as lcg;

    #[test]
    fn coherent_encoding_is_bit_identical() {
        for dims in [3, 4] {
            let config = small_config(dims);
            let layout = GridLayout::new(&config);
            let table = lcg(layout.table_len(), 3);
            // Grid rows (coherent: forwards, backwards, with jumps; one cell apart and more)
            // followed by random points (incoherent).
            let mut coords = Vec::new();
            for (row, step) in [(0.3f32, 1i32), (0.31, 1), (0.9, -1), (0.9, 3), (0.05, -7)] {
                for i in 0..50 {
                    let x = (i * step).rem_euclid(50) as f32 / 49.0;
                    coords.extend([x, row, 0.7, 0.5][..dims].iter());
                }
            }
            coords.extend(lcg(40 * dims, 5));
            let n = coords.len() / dims;
            let mut a = vec![0f32; n * layout.width()];
            let mut b = vec![0f32; n * layout.width()];
            layout.forward(&table, &coords, &mut a);
            layout.forward_coherent(&layout.level_tables(&table), &coords, &mut b);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn row_encoding_is_bit_identical() {
        for dims in [3, 4] {
            let config = small_config(dims);
            let layout = GridLayout::new(&config);
            let table = lcg(layout.table_len(), 3);
            let tables = layout.level_tables(&table);
            // A full row, a sparse one (cells skipped), an unordered one, and a single sample.
            let rows: [Vec<f32>; 4] = [
                (0..40).map(|i| i as f32 / 39.0).collect(),
                (0..7).map(|i| (i * i) as f32 / 36.0).collect(),
                lcg(23, 8),
                vec![1.0],
            ];
            for xs in &rows {
                let plan = layout.row_plan(xs);
                for rest in [[0.3f32, 0.7, 0.5], [0.0, 1.0, 0.999], [0.61, 0.02, 0.0]] {
                    let rest = &rest[..dims - 1];
                    let coords: Vec<f32> = xs
                        .iter()
                        .flat_map(|&x| std::iter::once(x).chain(rest.iter().copied()))
                        .collect();
                    let mut a = vec![0f32; xs.len() * layout.width()];
                    let mut b = vec![1f32; xs.len() * layout.width()];
                    layout.forward(&table, &coords, &mut a);
                    layout.forward_row(&tables, &plan, rest, &mut b);
                    assert_eq!(a, b, "dims {dims}, {} samples, rest {rest:?}", xs.len());
                }
            }
        }
    }

    #[test]
    fn fast_mod_is_exact() {
        for d in [1u32, 2, 3, 7, 371, 9454, 65_537, (1 << 24) - 3, 1 << 24] {
            let m = (u64::MAX / d as u64).wrapping_add(1);
            for h in [
                0u32,
                1,
                2,
                d - 1,
                d,
                d + 1,
                12_345_678,
                u32::MAX - 1,
                u32::MAX,
            ] {
                assert_eq!(fast_mod(h, m, d), h % d, "{h} mod {d}");
            }
            let mut x = 0x9e37_79b9u32;
            for _ in 0..10_000 {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                assert_eq!(fast_mod(x, m, d), x % d);
            }
        }
    }

    #[test]
    fn vertex_coordinates_return_the_stored_feature() {
        // On a dense level a coordinate exactly on a vertex reads that vertex alone.
        let config = small_config(3);
        let layout = GridLayout::new(&config);
        assert!(!layout.levels[0].hashed);
        let table: Vec<f32> = (0..layout.table_len()).map(|i| i as f32).collect();
        let lv = layout.levels[0];
        let coords = [1.0 / lv.resf[0], 0.0, 1.0];
        let mut out = vec![0f32; layout.width()];
        layout.forward(&table, &coords, &mut out);
        let index = 1 + lv.res[2] as usize * lv.strides[2] as usize;
        assert_eq!(out[0], (index * 2) as f32);
        assert_eq!(out[1], (index * 2 + 1) as f32);
    }

    #[test]
    fn backward_matches_finite_differences() {
        for dims in [3, 4] {
            let config = small_config(dims);
            let layout = GridLayout::new(&config);
            assert!(
                layout.levels.iter().any(|l| l.hashed),
                "test needs a hashed level"
            );
            let n = 37;
            let coords = lcg(n * dims, 7);
            let table = lcg(layout.table_len(), 9);
            let upstream = lcg(n * layout.width(), 11);
            let loss = |t: &[f32]| -> f64 {
                let mut out = vec![0f32; n * layout.width()];
                layout.forward(t, &coords, &mut out);
                out.iter().zip(&upstream).map(|(a, b)| (a * b) as f64).sum()
            };
            let mut grad = vec![0f32; layout.table_len()];
            layout.backward(&coords, &upstream, &mut grad);
            let mut t = table.clone();
            for i in (0..t.len()).step_by(7) {
                let h = 1e-2;
                t[i] = table[i] + h;
                let up = loss(&t);
                t[i] = table[i] - h;
                let down = loss(&t);
                t[i] = table[i];
                let numeric = (up - down) / (2.0 * h as f64);
                assert!(
                    (numeric - grad[i] as f64).abs() < 1e-3,
                    "dims {dims} entry {i}: {numeric} vs {}",
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn interpolation_is_exact_for_linear_tables() {
        // A dense level whose features are linear in the vertex position interpolates linearly.
        let mut config = small_config(3);
        config.table_size = 1 << 12;
        let layout = GridLayout::new(&config);
        let lv = layout.levels[1];
        assert!(!lv.hashed);
        let mut table = vec![0f32; layout.table_len()];
        for z in 0..=lv.res[2] {
            for y in 0..=lv.res[1] {
                for x in 0..=lv.res[0] {
                    let i = (x * lv.strides[0] + y * lv.strides[1] + z * lv.strides[2]) as usize;
                    table[(lv.offset + i) * 2] =
                        x as f32 / lv.resf[0] + 2.0 * z as f32 / lv.resf[2];
                }
            }
        }
        let coords = [0.3f32, 0.6, 0.45];
        let mut out = vec![0f32; layout.width()];
        layout.forward(&table, &coords, &mut out);
        assert!((out[2] - (0.3 + 2.0 * 0.45)).abs() < 1e-5, "{}", out[2]);
    }
}
