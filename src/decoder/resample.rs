//! The field evaluated at positions in world millimetres: an oblique plane, or the voxel
//! centres of another scan's grid (`decompress --like`). The field is continuous, so neither
//! needs the rest of the scan — something a slice-by-slice archive cannot do without decoding
//! everything. A residual layer belongs to the original grid, so these decode the field alone.
//!
//! World → voxel index goes through the inverse of the stored NIfTI affine (sform, else qform,
//! else pixdim). An index within 1e-6 of an integer is snapped to it, so a plane that runs
//! along a voxel axis evaluates at exactly the coordinates of the axis-aligned slice. Points
//! more than half a voxel outside the scan get the scan's smallest stored value.

use super::{DecodeError, Decoder};
use crate::volume::{Header, Volume};

/// Indices closer than this to an integer are taken as that integer.
const SNAP: f64 = 1e-6;

/// A rectangle of `width × height` pixels in world space: pixel `(i, j)` sits at
/// `origin + i·spacing·u + j·spacing·v` (millimetres; `u`, `v` orthonormal).
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    /// World position of pixel (0, 0).
    pub origin: [f64; 3],
    /// Unit vector along a row (increasing i).
    pub u: [f64; 3],
    /// Unit vector along a column (increasing j).
    pub v: [f64; 3],
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Distance between neighbouring pixels, in mm.
    pub spacing: f64,
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}
fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn unit(a: [f64; 3]) -> Option<[f64; 3]> {
    let n = dot(a, a).sqrt();
    (n.is_finite() && n > 1e-12).then(|| scale(a, 1.0 / n))
}

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError::Request(what.into())
}

impl Plane {
    /// The plane through `center` (mm) perpendicular to `normal`, `width × height` pixels
    /// `spacing` mm apart, centred on `center`. Its rows follow the scan's voxel axis least
    /// aligned with the normal (projected into the plane), its columns the next one, so a
    /// plane perpendicular to a voxel axis has the orientation of that axis' slices.
    pub fn through(
        header: &Header,
        center: [f64; 3],
        normal: [f64; 3],
        width: usize,
        height: usize,
        spacing: f64,
    ) -> Result<Plane, DecodeError> {
        let n = unit(normal).ok_or_else(|| bad("the plane's normal is zero or not finite"))?;
        check_size(width, height, spacing)?;
        let a = header.affine();
        let axes: Vec<[f64; 3]> = (0..3)
            .map(|k| unit([a[0][k], a[1][k], a[2][k]]).unwrap_or([0.0; 3]))
            .collect();
        // The two voxel axes least aligned with the normal, in axis order.
        let mut order = [0usize, 1, 2];
        order.sort_by(|&p, &q| dot(axes[p], n).abs().total_cmp(&dot(axes[q], n).abs()));
        let (mut p, mut q) = (order[0], order[1]);
        if p > q {
            std::mem::swap(&mut p, &mut q);
        }
        let u = unit(sub(axes[p], scale(n, dot(axes[p], n))))
            .ok_or_else(|| bad("the scan's affine is degenerate"))?;
        let w = sub(axes[q], scale(n, dot(axes[q], n)));
        let v = unit(sub(w, scale(u, dot(w, u)))).unwrap_or_else(|| cross(n, u));
        let half = |k: usize| (k as f64 - 1.0) / 2.0 * spacing;
        let origin = sub(sub(center, scale(u, half(width))), scale(v, half(height)));
        Ok(Plane {
            origin,
            u,
            v,
            width,
            height,
            spacing,
        })
    }

    /// The plane through three points (mm): pixel (0, 0) at `p0`, rows towards `p1`, columns
    /// towards `p2` (its component perpendicular to the rows), covering both at `spacing`.
    pub fn from_points(p: [[f64; 3]; 3], spacing: f64) -> Result<Plane, DecodeError> {
        let along = sub(p[1], p[0]);
        let u = unit(along).ok_or_else(|| bad("the first two points coincide"))?;
        let side = sub(p[2], p[0]);
        let across = sub(side, scale(u, dot(side, u)));
        let v = unit(across).ok_or_else(|| bad("the three points lie on one line"))?;
        if !(spacing.is_finite() && spacing > 0.0) {
            return Err(bad(format!("pixel spacing {spacing} must be positive")));
        }
        let count = |len: f64| (len / spacing).round() as usize + 1;
        let (width, height) = (
            count(dot(along, along).sqrt()),
            count(dot(across, across).sqrt()),
        );
        check_size(width, height, spacing)?;
        Ok(Plane {
            origin: p[0],
            u,
            v,
            width,
            height,
            spacing,
        })
    }

    /// World position of pixel `(i, j)`.
    pub fn position(&self, i: usize, j: usize) -> [f64; 3] {
        let (a, b) = (i as f64 * self.spacing, j as f64 * self.spacing);
        [
            self.origin[0] + a * self.u[0] + b * self.v[0],
            self.origin[1] + a * self.u[1] + b * self.v[1],
            self.origin[2] + a * self.u[2] + b * self.v[2],
        ]
    }

    /// The plane's own affine (pixel index → world), for writing it as a NIfTI slice.
    pub fn affine(&self) -> [[f64; 4]; 3] {
        let n = cross(self.u, self.v);
        let s = self.spacing;
        let mut a = [[0.0; 4]; 3];
        for r in 0..3 {
            a[r] = [self.u[r] * s, self.v[r] * s, n[r] * s, self.origin[r]];
        }
        a
    }
}

/// Largest plane side, in pixels (a typo must not ask for a gigapixel picture).
const MAX_PLANE_SIDE: usize = 16384;

fn check_size(width: usize, height: usize, spacing: f64) -> Result<(), DecodeError> {
    if !(spacing.is_finite() && spacing > 0.0) {
        return Err(bad(format!("pixel spacing {spacing} must be positive")));
    }
    if width == 0 || height == 0 || width > MAX_PLANE_SIDE || height > MAX_PLANE_SIDE {
        return Err(bad(format!(
            "a {width}×{height} plane is outside 1..={MAX_PLANE_SIDE} pixels per side"
        )));
    }
    Ok(())
}

/// World → continuous voxel index through the inverse of a 3×4 affine.
struct WorldToIndex {
    inverse: [[f64; 3]; 3],
    offset: [f64; 3],
}

impl WorldToIndex {
    fn new(a: [[f64; 4]; 3]) -> Result<WorldToIndex, DecodeError> {
        let m = |r: usize, c: usize| a[r][c];
        let det = m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1))
            - m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0))
            + m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0));
        if !(det.is_finite() && det.abs() > 1e-12) {
            return Err(bad("the scan's affine cannot be inverted"));
        }
        let mut inverse = [[0.0; 3]; 3];
        for (r, row) in inverse.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                // Cofactor of (c, r) over the determinant.
                let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
                let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
                *v = (m(r1, c1) * m(r2, c2) - m(r1, c2) * m(r2, c1)) / det;
            }
        }
        Ok(WorldToIndex {
            inverse,
            offset: [a[0][3], a[1][3], a[2][3]],
        })
    }

    fn index(&self, world: [f64; 3]) -> [f64; 3] {
        let d = sub(world, self.offset);
        let mut out = [0.0; 3];
        for (r, o) in out.iter_mut().enumerate() {
            let v = dot(self.inverse[r], d);
            let near = v.round();
            *o = if (v - near).abs() < SNAP { near } else { v };
        }
        out
    }
}

/// Field coordinate of a continuous index on an axis of `n` voxels, or `None` when it lies
/// more than half a voxel outside. Integer indices give exactly `axis_coordinate`'s value.
fn coordinate(index: f64, n: usize) -> Option<f32> {
    if !(index >= -0.5 && index <= n as f64 - 0.5) {
        return None;
    }
    if n <= 1 {
        return Some(0.0);
    }
    let i = index.clamp(0.0, (n - 1) as f64);
    Some(if i.fract() == 0.0 {
        crate::model::coords::axis_coordinate(i as usize, n)
    } else {
        (i / (n - 1) as f64) as f32
    })
}

impl Decoder {
    /// Stored values at world positions (`frame` of a series), the field alone; positions
    /// outside the scan get its smallest stored value.
    fn at_world(&self, points: &[[f64; 3]], frame: usize) -> Result<Vec<f32>, DecodeError> {
        let shape = self.shape();
        if frame >= shape[3] {
            return Err(bad(format!(
                "frame {frame} does not exist (the scan has {} frames)",
                shape[3]
            )));
        }
        let to_index = WorldToIndex::new(self.header().affine())?;
        let dims = self.file().head.field.dims;
        let t = crate::model::coords::axis_coordinate(frame, shape[3]);
        let mut coords = Vec::new();
        coords.try_reserve_exact(points.len() * dims).map_err(|_| {
            bad(format!(
                "cannot allocate coordinates for {} points",
                points.len()
            ))
        })?;
        let mut inside = Vec::with_capacity(points.len());
        for &p in points {
            let ijk = to_index.index(p);
            let c: Option<Vec<f32>> = (0..3).map(|a| coordinate(ijk[a], shape[a])).collect();
            match c {
                Some(c) => {
                    coords.extend_from_slice(&c);
                    if dims == 4 {
                        coords.push(t);
                    }
                    inside.push(true);
                }
                None => inside.push(false),
            }
        }
        let values = self.evaluate_stored(&coords)?;
        let outside = self.file().head.value_min as f32;
        let mut it = values.into_iter();
        Ok(inside
            .into_iter()
            .map(|inside| {
                if inside {
                    it.next().unwrap_or(outside)
                } else {
                    outside
                }
            })
            .collect())
    }

    /// An oblique (or any) plane of `frame`, the field alone: `width × height` stored values,
    /// i fastest.
    pub fn plane(&self, plane: &Plane, frame: usize) -> Result<Vec<f32>, DecodeError> {
        let mut points = Vec::with_capacity(plane.width * plane.height);
        for j in 0..plane.height {
            for i in 0..plane.width {
                points.push(plane.position(i, j));
            }
        }
        self.at_world(&points, frame)
    }

    /// The scan resampled onto the grid of `reference` (its shape and affine; every frame of
    /// this scan), the field alone. The result keeps this scan's datatype and scaling and takes
    /// the reference's geometry.
    pub fn resample_like(&self, reference: &Header) -> Result<Volume, DecodeError> {
        let [rx, ry, rz, _] = reference.shape();
        let nt = self.shape()[3];
        let shape = [rx, ry, rz, nt];
        super::check_budget(shape)?;
        let mut header = self
            .header()
            .with_shape(shape)
            .map_err(DecodeError::Regrid)?;
        header.take_geometry_of(reference);
        let a = reference.affine();
        let world = |i: usize, j: usize, k: usize| {
            let (i, j, k) = (i as f64, j as f64, k as f64);
            [0, 1, 2].map(|r| a[r][0] * i + a[r][1] * j + a[r][2] * k + a[r][3])
        };
        let mut data = Vec::with_capacity(rx * ry * rz * nt);
        for t in 0..nt {
            for k in 0..rz {
                let mut points = Vec::with_capacity(rx * ry);
                for j in 0..ry {
                    for i in 0..rx {
                        points.push(world(i, j, k));
                    }
                }
                data.extend(self.at_world(&points, t)?);
            }
        }
        let data = crate::volume::Voxels::from_f32(data, header.datatype());
        Ok(Volume { data, header })
    }
}
