//! Voxel-to-world geometry of a [`Header`]: the NIfTI affine, and moving a scan onto a
//! different grid over the same field of view.

use super::header::check_new_shape;
use super::{Header, VolumeError};
use std::path::PathBuf;

impl Header {
    /// Voxel index (i, j, k) → world (x, y, z) as a 3×4 matrix, by the NIfTI rules:
    /// sform if sform_code > 0, else qform if qform_code > 0, else plain pixdim scaling.
    pub fn affine(&self) -> [[f64; 4]; 3] {
        if self.sform_code > 0 {
            [self.srow_x, self.srow_y, self.srow_z]
        } else if self.qform_code > 0 {
            self.qform_affine()
        } else {
            let p = &self.pixdim;
            [
                [p[1], 0.0, 0.0, 0.0],
                [0.0, p[2], 0.0, 0.0],
                [0.0, 0.0, p[3], 0.0],
            ]
        }
    }

    /// The qform matrix, as nifti1_io.c `nifti_quatern_to_mat44` builds it.
    pub fn qform_affine(&self) -> [[f64; 4]; 3] {
        let (mut b, mut c, mut d) = (self.quatern_b, self.quatern_c, self.quatern_d);
        let mut a = 1.0 - (b * b + c * c + d * d);
        if a < 1e-7 {
            // Not a unit quaternion: renormalise (b, c, d) and take a 180° rotation.
            let norm = (b * b + c * c + d * d).sqrt();
            if norm > 0.0 {
                b /= norm;
                c /= norm;
                d /= norm;
            }
            a = 0.0;
        } else {
            a = a.sqrt();
        }
        let pos = |v: f64| if v > 0.0 { v } else { 1.0 };
        let xd = pos(self.pixdim[1]);
        let yd = pos(self.pixdim[2]);
        let mut zd = pos(self.pixdim[3]);
        if self.pixdim[0] < 0.0 {
            zd = -zd;
        }
        [
            [
                (a * a + b * b - c * c - d * d) * xd,
                2.0 * (b * c - a * d) * yd,
                2.0 * (b * d + a * c) * zd,
                self.qoffset_x,
            ],
            [
                2.0 * (b * c + a * d) * xd,
                (a * a + c * c - b * b - d * d) * yd,
                2.0 * (c * d - a * b) * zd,
                self.qoffset_y,
            ],
            [
                2.0 * (b * d - a * c) * xd,
                2.0 * (c * d + a * b) * yd,
                (a * a + d * d - c * c - b * b) * zd,
                self.qoffset_z,
            ],
        ]
    }

    /// Sets the geometry to `affine` (voxel index → world mm, RAS as NIfTI wants): the sform
    /// rows, pixdim[1..=3] (the column lengths) and the qform (quaternion, offsets and qfac in
    /// pixdim[0]) of the same matrix, as nifti1_io.c `nifti_mat44_to_quatern` does. The
    /// columns must be orthogonal for the qform to equal the sform (DICOM geometry checked
    /// for tilt and shear is). The codes are left to the caller.
    pub fn set_affine(&mut self, affine: [[f64; 4]; 3]) {
        self.srow_x = affine[0];
        self.srow_y = affine[1];
        self.srow_z = affine[2];
        self.qoffset_x = affine[0][3];
        self.qoffset_y = affine[1][3];
        self.qoffset_z = affine[2][3];
        // Unit columns (a zero column becomes the axis itself).
        let mut r = [[0.0f64; 3]; 3];
        for col in 0..3 {
            let len = (0..3)
                .map(|row| affine[row][col].powi(2))
                .sum::<f64>()
                .sqrt();
            self.pixdim[col + 1] = if len > 0.0 { len } else { 1.0 };
            for row in 0..3 {
                r[row][col] = if len > 0.0 {
                    affine[row][col] / len
                } else if row == col {
                    1.0
                } else {
                    0.0
                };
            }
        }
        let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
            - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
            + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
        self.pixdim[0] = if det < 0.0 {
            for row in &mut r {
                row[2] = -row[2];
            }
            -1.0
        } else {
            1.0
        };
        let (r11, r12, r13) = (r[0][0], r[0][1], r[0][2]);
        let (r21, r22, r23) = (r[1][0], r[1][1], r[1][2]);
        let (r31, r32, r33) = (r[2][0], r[2][1], r[2][2]);
        let trace = r11 + r22 + r33 + 1.0;
        let (mut a, mut b, mut c, mut d);
        if trace > 0.5 {
            a = 0.5 * trace.sqrt();
            b = 0.25 * (r32 - r23) / a;
            c = 0.25 * (r13 - r31) / a;
            d = 0.25 * (r21 - r12) / a;
        } else {
            let xd = 1.0 + r11 - (r22 + r33);
            let yd = 1.0 + r22 - (r11 + r33);
            let zd = 1.0 + r33 - (r11 + r22);
            if xd > 1.0 {
                b = 0.5 * xd.sqrt();
                c = 0.25 * (r12 + r21) / b;
                d = 0.25 * (r13 + r31) / b;
                a = 0.25 * (r32 - r23) / b;
            } else if yd > 1.0 {
                c = 0.5 * yd.sqrt();
                b = 0.25 * (r12 + r21) / c;
                d = 0.25 * (r23 + r32) / c;
                a = 0.25 * (r13 - r31) / c;
            } else {
                d = 0.5 * zd.sqrt();
                b = 0.25 * (r13 + r31) / d;
                c = 0.25 * (r23 + r32) / d;
                a = 0.25 * (r21 - r12) / d;
            }
            if a < 0.0 {
                b = -b;
                c = -c;
                d = -d;
                a = -a;
            }
        }
        let _ = a;
        self.quatern_b = b;
        self.quatern_c = c;
        self.quatern_d = d;
    }

    /// The header of the box of `shape` voxels starting at voxel `start` (x, y, z, t) of this
    /// scan: same voxel size and orientation, the origin moved to the box's first voxel and
    /// `toffset` to its first frame, so the box sits where it lies in the original's world.
    pub fn crop(&self, start: [usize; 4], shape: [usize; 4]) -> Result<Header, VolumeError> {
        let mut h = self.with_shape(shape)?;
        // `with_shape` rescales the spacing for a changed grid; a crop keeps the original's.
        h.pixdim = self.pixdim;
        h.srow_x = self.srow_x;
        h.srow_y = self.srow_y;
        h.srow_z = self.srow_z;
        let q = self.qform_affine();
        for axis in 0..3 {
            let d = start[axis] as f64;
            h.qoffset_x += d * q[0][axis];
            h.qoffset_y += d * q[1][axis];
            h.qoffset_z += d * q[2][axis];
            for row in [&mut h.srow_x, &mut h.srow_y, &mut h.srow_z] {
                row[3] += d * row[axis];
            }
        }
        h.toffset += start[3] as f64 * self.pixdim[4];
        Ok(h)
    }

    /// Takes the spatial geometry (voxel size, qform, sform, their codes) of `other`, keeping
    /// everything else: for a scan resampled onto `other`'s grid.
    pub fn take_geometry_of(&mut self, other: &Header) {
        self.pixdim[0] = other.pixdim[0];
        self.pixdim[1..4].copy_from_slice(&other.pixdim[1..4]);
        self.qform_code = other.qform_code;
        self.sform_code = other.sform_code;
        self.quatern_b = other.quatern_b;
        self.quatern_c = other.quatern_c;
        self.quatern_d = other.quatern_d;
        self.qoffset_x = other.qoffset_x;
        self.qoffset_y = other.qoffset_y;
        self.qoffset_z = other.qoffset_z;
        self.srow_x = other.srow_x;
        self.srow_y = other.srow_y;
        self.srow_z = other.srow_z;
    }

    /// The same scan on a grid of `shape` = [nx, ny, nz, nt] over the same field of view,
    /// sampled corner-aligned: new voxel i' sits at old continuous index i'·(n-1)/(n'-1).
    ///
    /// pixdim[1..=4] and the sform columns scale by (n-1)/(n'-1); qform offsets stay (voxel 0
    /// does not move) and the qform follows pixdim. Where n == 1 or n' == 1 the factor is 1:
    /// voxel 0 stays put and the spacing is kept, so the affine never degenerates.
    /// Everything else (datatype, scaling, codes, description, units, extensions) is unchanged.
    pub fn with_shape(&self, shape: [usize; 4]) -> Result<Header, VolumeError> {
        let invalid = |reason: String| VolumeError::InvalidShape {
            file: PathBuf::new(),
            shape,
            reason,
        };
        check_new_shape(shape, self.datatype())?;
        let limit = if self.is_nifti2() {
            i64::MAX as usize
        } else {
            i16::MAX as usize
        };
        if let Some(&n) = shape.iter().find(|&&n| n > limit) {
            return Err(invalid(format!(
                "axis length {n} exceeds the header's limit {limit}"
            )));
        }
        let old = self.shape();
        let mut out = self.clone();
        let mut dim = self.dim();
        let needed = (1..=4).rev().find(|&k| shape[k - 1] > 1).unwrap_or(1) as i64;
        dim[0] = dim[0].max(needed);
        for k in 1..=4 {
            if k as i64 <= dim[0] {
                dim[k] = shape[k - 1] as i64;
            }
        }
        out.set_dim(dim);

        for axis in 0..4 {
            let (n, m) = (old[axis], shape[axis]);
            if n == m {
                continue;
            }
            let f = if n > 1 && m > 1 {
                (n - 1) as f64 / (m - 1) as f64
            } else {
                1.0
            };
            out.pixdim[axis + 1] *= f;
            if axis < 3 {
                for row in [&mut out.srow_x, &mut out.srow_y, &mut out.srow_z] {
                    row[axis] *= f;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::volume::test_support::synthetic_header;
    use crate::volume::DataType;

    fn world(a: &[[f64; 4]; 3], ijk: [f64; 3]) -> [f64; 3] {
        let mut w = [0.0; 3];
        for (r, row) in a.iter().enumerate() {
            w[r] = row[0] * ijk[0] + row[1] * ijk[1] + row[2] * ijk[2] + row[3];
        }
        w
    }

    fn close(a: [f64; 3], b: [f64; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
    }

    #[test]
    fn doubling_keeps_first_and_last_voxel_centres() {
        for (nifti2, sform, qform) in [(false, 1, 0), (false, 0, 1), (true, 2, 1), (false, 0, 0)] {
            let mut h = synthetic_header(DataType::I16, [10, 12, 7, 3], nifti2, false);
            h.sform_code = sform;
            h.qform_code = qform;
            let new_shape = [19, 23, 13, 5];
            let g = h.with_shape(new_shape).unwrap();
            assert_eq!(g.shape(), new_shape);
            let (a, b) = (h.affine(), g.affine());
            assert!(close(world(&a, [0.0; 3]), world(&b, [0.0; 3])));
            assert!(close(
                world(&a, [9.0, 11.0, 6.0]),
                world(&b, [18.0, 22.0, 12.0])
            ));
            assert!((g.spacing()[3] - h.spacing()[3] * 2.0 / 4.0).abs() < 1e-9);
            // Round trip through bytes keeps the new geometry.
            let back = crate::volume::Header::from_bytes(&g.to_bytes()).unwrap();
            assert_eq!(back.shape(), new_shape);
            assert!(close(
                world(&back.affine(), [18.0, 22.0, 12.0]),
                world(&a, [9.0, 11.0, 6.0])
            ));
        }
    }

    #[test]
    fn set_affine_gives_a_matching_qform() {
        // Oblique (as the DICOM MR series), a flipped axis (qfac −1), and a 180° turn
        // (the quaternion's small-trace branches).
        let s = (7.7f64).to_radians();
        let cases = [
            [
                [-0.86, 0.0, 0.0, 110.5],
                [0.0, -0.86 * s.cos(), 7.0 * s.sin(), 78.3],
                [0.0, 0.86 * s.sin(), 7.0 * s.cos(), -72.8],
            ],
            [
                [0.39, 0.0, 0.0, 99.5],
                [0.0, 0.39, 0.0, -301.5],
                [0.0, 0.0, 10.0, -159.0],
            ],
            [
                [-2.0, 0.0, 0.0, 1.0],
                [0.0, -3.0, 0.0, 2.0],
                [0.0, 0.0, 4.0, 3.0],
            ],
            [
                [0.0, 2.0, 0.0, 1.0],
                [2.0, 0.0, 0.0, 2.0],
                [0.0, 0.0, -2.5, 3.0],
            ],
        ];
        for a in cases {
            let mut h = synthetic_header(DataType::I16, [4, 4, 4, 1], false, false);
            h.set_affine(a);
            h.sform_code = 0;
            h.qform_code = 1;
            let q = h.qform_affine();
            for r in 0..3 {
                for c in 0..4 {
                    assert!((q[r][c] - a[r][c]).abs() < 1e-9, "{a:?} vs {q:?}");
                }
            }
            h.sform_code = 1;
            assert_eq!(h.affine(), a);
        }
    }

    #[test]
    fn with_shape_rejects_bad_shapes() {
        let h = synthetic_header(DataType::U8, [4, 4, 4, 1], false, false);
        assert!(h.with_shape([0, 4, 4, 1]).is_err());
        assert!(h.with_shape([40000, 4, 4, 1]).is_err());
        let g = h.with_shape([4, 4, 4, 6]).unwrap();
        assert_eq!(g.dim()[0], 4);
        assert_eq!(h.with_shape([4, 4, 4, 1]).unwrap().to_bytes(), h.to_bytes());
    }
}
