//! Medical volumes in and out: NIfTI-1/NIfTI-2 scans read and written with exact fidelity,
//! and DICOM series read ([`dicom`]) into the same [`Volume`] with a NIfTI header.
//!
//! A [`Volume`] holds the stored voxel values (before scl_slope/scl_inter) in their own type
//! ([`Voxels`]) and a [`Header`] that keeps the original header bytes, so `read_nifti` →
//! `write_nifti` reproduces the file's header and voxel bytes (exactly for u8 i8 u16 i16 f32;
//! i32, u32 and f64 keep 24 bits of precision, see [`voxels`]).

mod datatype;
pub mod dicom;
mod error;
mod geometry;
mod header;
mod layout;
mod nifti_io;
pub mod voxels;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_synthetic;

pub use datatype::DataType;
pub use dicom::{is_dicom_input, read_dicom};
pub use error::{DicomProblem, VolumeError};
pub use header::Header;
pub use nifti_io::{read_nifti, read_nifti_bytes, read_nifti_from_memory, write_nifti};
pub use voxels::Voxels;

/// One scan: stored voxel values (before scl_slope/scl_inter), x fastest, then y, z, t.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Stored voxel values, x fastest (NIfTI order), in their own type where exact.
    pub data: Voxels,
    /// The NIfTI header: geometry, scaling, description, extensions.
    pub header: Header,
}

impl Volume {
    /// [nx, ny, nz, nt]; nt = 1 for 3D.
    pub fn shape(&self) -> [usize; 4] {
        self.header.shape()
    }

    /// 4 when there is more than one time point, else 3 (1D/2D scans count as 3D).
    pub fn ndim(&self) -> usize {
        if self.shape()[3] > 1 {
            4
        } else {
            3
        }
    }

    /// Number of NaN/infinite voxels and the [x, y, z, t] index of the first one.
    pub fn non_finite_count(&self) -> (usize, Option<[usize; 4]>) {
        let [nx, ny, nz, _] = self.shape();
        let (nx, ny, nz) = (nx.max(1), ny.max(1), nz.max(1));
        let (count, first) = self.data.non_finite();
        let first = first.map(|i| [i % nx, i / nx % ny, i / (nx * ny) % nz, i / (nx * ny * nz)]);
        (count, first)
    }
}
