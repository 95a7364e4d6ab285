//! The plain-data structures the kernels take, laid out exactly as their C counterparts in
//! `kernels/common.cuh`, `kernels/mlp.cuh` and `kernels/decode.cuh`.

use crate::decoder::Region;
use crate::model::config::MAX_DIMS;
use crate::model::{FieldConfig, GridLayout};

/// One grid level (`struct GridLevel`): 72 bytes, 8-aligned, no padding.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuLevel {
    pub res: [u32; MAX_DIMS],
    pub resf: [f32; MAX_DIMS],
    pub strides: [u32; MAX_DIMS],
    pub fastmod: u64,
    pub size: u32,
    pub hashed: u32,
    pub offset: u64,
}

/// The levels of a layout, in order.
pub fn gpu_levels(layout: &GridLayout) -> Vec<GpuLevel> {
    layout
        .levels
        .iter()
        .map(|lv| GpuLevel {
            res: lv.res,
            resf: lv.resf,
            strides: lv.strides,
            fastmod: lv.fastmod,
            size: lv.size,
            hashed: lv.hashed as u32,
            offset: lv.offset as u64,
        })
        .collect()
}

/// The levels as bytes, for a device upload.
pub fn level_bytes(levels: &[GpuLevel]) -> Vec<u8> {
    let mut out = Vec::with_capacity(std::mem::size_of_val(levels));
    for lv in levels {
        lv.res.iter().for_each(|v| out.extend(v.to_ne_bytes()));
        lv.resf.iter().for_each(|v| out.extend(v.to_ne_bytes()));
        lv.strides.iter().for_each(|v| out.extend(v.to_ne_bytes()));
        out.extend(lv.fastmod.to_ne_bytes());
        out.extend(lv.size.to_ne_bytes());
        out.extend(lv.hashed.to_ne_bytes());
        out.extend(lv.offset.to_ne_bytes());
    }
    out
}

/// The MLP's widths (`struct MlpShape`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlpShape {
    pub in_width: u32,
    pub hidden_width: u32,
    pub hidden_layers: u32,
}

impl MlpShape {
    pub fn new(config: &FieldConfig) -> MlpShape {
        MlpShape {
            in_width: config.encoded_width() as u32,
            hidden_width: config.hidden_width as u32,
            hidden_layers: config.hidden_layers as u32,
        }
    }

    /// Weights of all layers.
    pub fn weights(&self) -> usize {
        let (i, h, l) = (
            self.in_width as usize,
            self.hidden_width as usize,
            self.hidden_layers as usize,
        );
        h * i + (l - 1) * h * h + h
    }

    /// Hidden activations stored per sample.
    pub fn activations(&self) -> usize {
        self.hidden_width as usize * self.hidden_layers as usize
    }
}

/// A box of the output grid (`struct DecodeRegion`): the whole grid's `shape`, the box's
/// `start` and `count` per axis.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuRegion {
    pub shape: [u32; 4],
    pub start: [u32; 4],
    pub count: [u32; 4],
}

impl GpuRegion {
    /// The box `region` selects of a grid of `shape`, as `decode::Evaluator::grid` reads it;
    /// `None` when an index is out of range or an axis exceeds u32.
    pub fn new(shape: [usize; 4], region: Region) -> Option<GpuRegion> {
        let mut start = [0usize; 4];
        let mut count = shape;
        match region {
            Region::Full => {}
            Region::Frame(t) => {
                (start[3], count[3]) = (t, 1);
            }
            Region::Slice { axis, index, frame } => {
                if axis >= 3 {
                    return None;
                }
                (start[axis], count[axis]) = (index, 1);
                (start[3], count[3]) = (frame, 1);
            }
            Region::Box { start: s, end: e } => {
                if (0..4).any(|a| s[a] >= e[a]) {
                    return None;
                }
                start = s;
                count = [0, 1, 2, 3].map(|a| e[a] - s[a]);
            }
        }
        if (0..4).any(|a| start[a] + count[a] > shape[a]) {
            return None;
        }
        let u = |v: [usize; 4]| -> Option<[u32; 4]> {
            let mut o = [0u32; 4];
            for a in 0..4 {
                o[a] = u32::try_from(v[a]).ok()?;
            }
            Some(o)
        };
        Some(GpuRegion {
            shape: u(shape)?,
            start: u(start)?,
            count: u(count)?,
        })
    }

    /// Voxels in the box.
    pub fn voxels(&self) -> usize {
        self.count.iter().map(|&c| c as usize).product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_match_the_c_layout() {
        assert_eq!(std::mem::size_of::<GpuLevel>(), 72);
        assert_eq!(std::mem::align_of::<GpuLevel>(), 8);
        assert_eq!(std::mem::size_of::<MlpShape>(), 12);
        assert_eq!(std::mem::size_of::<GpuRegion>(), 48);
        let lv = GpuLevel {
            res: [1, 2, 3, 4],
            resf: [1.0, 2.0, 3.0, 4.0],
            strides: [5, 6, 7, 8],
            fastmod: 9,
            size: 10,
            hashed: 1,
            offset: 11,
        };
        let bytes = level_bytes(&[lv, lv]);
        assert_eq!(bytes.len(), 144);
        assert_eq!(bytes[48..56], 9u64.to_ne_bytes());
        assert_eq!(bytes[64..72], 11u64.to_ne_bytes());
    }

    #[test]
    fn regions_follow_the_evaluator() {
        let shape = [5, 4, 3, 2];
        let r = GpuRegion::new(shape, Region::Frame(1)).unwrap();
        assert_eq!((r.start, r.count), ([0, 0, 0, 1], [5, 4, 3, 1]));
        let r = GpuRegion::new(
            shape,
            Region::Slice {
                axis: 1,
                index: 3,
                frame: 0,
            },
        )
        .unwrap();
        assert_eq!(
            (r.start, r.count, r.voxels()),
            ([0, 3, 0, 0], [5, 1, 3, 1], 15)
        );
        assert!(GpuRegion::new(shape, Region::Frame(2)).is_none());
    }
}
