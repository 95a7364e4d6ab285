//! The voxel storage types we support, with their NIfTI codes and value ranges.

use super::VolumeError;
use std::path::PathBuf;

/// How voxels are stored on disk. Complex, RGB and 64-bit integer types are not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 16-bit integer.
    U16,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 32-bit integer.
    I32,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
}

impl DataType {
    /// All supported types, for tests and iteration.
    pub const ALL: [DataType; 8] = [
        DataType::U8,
        DataType::I8,
        DataType::U16,
        DataType::I16,
        DataType::U32,
        DataType::I32,
        DataType::F32,
        DataType::F64,
    ];

    /// The NIfTI `datatype` code (DT_UINT8 = 2, ...).
    pub fn nifti_code(self) -> i16 {
        match self {
            DataType::U8 => 2,
            DataType::I8 => 256,
            DataType::U16 => 512,
            DataType::I16 => 4,
            DataType::U32 => 768,
            DataType::I32 => 8,
            DataType::F32 => 16,
            DataType::F64 => 64,
        }
    }

    /// The type for a NIfTI `datatype` code; other codes give
    /// [`VolumeError::UnsupportedDataType`] naming the code (file left empty).
    pub fn from_nifti_code(code: i16) -> Result<DataType, VolumeError> {
        Ok(match code {
            2 => DataType::U8,
            256 => DataType::I8,
            512 => DataType::U16,
            4 => DataType::I16,
            768 => DataType::U32,
            8 => DataType::I32,
            16 => DataType::F32,
            64 => DataType::F64,
            _ => {
                return Err(VolumeError::UnsupportedDataType {
                    file: PathBuf::new(),
                    code,
                    name: unsupported_name(code),
                })
            }
        })
    }

    /// Bytes per voxel.
    pub fn bytes(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::F64 => 8,
        }
    }

    /// True for the integer types (values get rounded and clamped on write).
    pub fn is_integer(self) -> bool {
        !matches!(self, DataType::F32 | DataType::F64)
    }

    /// Smallest and largest representable value, for clamping.
    pub fn range(self) -> (f64, f64) {
        match self {
            DataType::U8 => (0.0, u8::MAX as f64),
            DataType::I8 => (i8::MIN as f64, i8::MAX as f64),
            DataType::U16 => (0.0, u16::MAX as f64),
            DataType::I16 => (i16::MIN as f64, i16::MAX as f64),
            DataType::U32 => (0.0, u32::MAX as f64),
            DataType::I32 => (i32::MIN as f64, i32::MAX as f64),
            DataType::F32 => (f32::MIN as f64, f32::MAX as f64),
            DataType::F64 => (f64::MIN, f64::MAX),
        }
    }

    /// Short lowercase name: "u8", "i16", "f32", ...
    pub fn name(self) -> &'static str {
        match self {
            DataType::U8 => "u8",
            DataType::I8 => "i8",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
        }
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The NIfTI name of a datatype code we do not support.
fn unsupported_name(code: i16) -> &'static str {
    match code {
        0 => "DT_UNKNOWN",
        1 => "DT_BINARY",
        32 => "DT_COMPLEX64",
        128 => "DT_RGB24",
        255 => "DT_ALL",
        1024 => "DT_INT64",
        1280 => "DT_UINT64",
        1536 => "DT_FLOAT128",
        1792 => "DT_COMPLEX128",
        2048 => "DT_COMPLEX256",
        2304 => "DT_RGBA32",
        _ => "not a NIfTI datatype code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for dt in DataType::ALL {
            assert_eq!(DataType::from_nifti_code(dt.nifti_code()).unwrap(), dt);
            assert_eq!(dt.bytes() * 8, dt.name()[1..].parse::<usize>().unwrap());
        }
    }

    #[test]
    fn unsupported_codes_are_named() {
        let err = DataType::from_nifti_code(32).unwrap_err();
        assert!(matches!(
            err,
            VolumeError::UnsupportedDataType { code: 32, .. }
        ));
        assert!(err.to_string().contains("DT_COMPLEX64"), "{err}");
        assert!(DataType::from_nifti_code(7).is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(DataType::I16.range(), (-32768.0, 32767.0));
        assert!(DataType::U8.is_integer() && !DataType::F64.is_integer());
    }
}
