//! What the CLI shows a person: slices as 8-bit pictures, a slice's own NIfTI header, and the
//! description of a `.minr` file.

use serde::Serialize;

use crate::codec::container::Container;
use crate::codec::payload::MinrFile;
use crate::model::FieldConfig;
use crate::volume::{Header, VolumeError};

/// Grey levels of a decoded slice (`shape` has 1 on `axis`), windowed to `[lo, hi]`. The
/// picture's columns run along the first in-plane axis and its rows along the second, with
/// the second axis pointing up (as radiology viewers show RAS-stored scans).
pub fn slice_pixels(
    values: &[f32],
    shape: [usize; 4],
    axis: usize,
    lo: f64,
    hi: f64,
) -> (usize, usize, Vec<u8>) {
    let (a, b) = match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let (w, h) = (shape[a], shape[b]);
    let stride = |ax: usize| -> usize { shape[..ax].iter().product() };
    let (sa, sb) = (stride(a), stride(b));
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let mut pixels = Vec::with_capacity(w * h);
    for row in (0..h).rev() {
        for col in 0..w {
            let v = values[col * sa + row * sb] as f64;
            pixels.push((((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    (w, h, pixels)
}

/// An 8-bit greyscale PNG.
pub fn encode_png(
    width: usize,
    height: usize,
    pixels: &[u8],
) -> Result<Vec<u8>, png::EncodingError> {
    encode_png_as(width, height, pixels, png::ColorType::Grayscale)
}

/// An 8-bit PNG of the given colour type (`pixels` packed accordingly, e.g. RGB triples).
pub fn encode_png_as(
    width: usize,
    height: usize,
    pixels: &[u8],
    color: png::ColorType,
) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(pixels)?;
    }
    Ok(out)
}

/// The header of one slice of a scan: one voxel thick on `axis`, one frame, placed where that
/// slice lies in the original's world coordinates.
pub fn slice_header(
    header: &Header,
    axis: usize,
    index: usize,
    frame: usize,
) -> Result<Header, VolumeError> {
    let mut shape = header.shape();
    shape[axis] = 1;
    shape[3] = 1;
    let mut start = [0; 4];
    start[axis] = index;
    start[3] = frame;
    header.crop(start, shape)
}

/// The header of an oblique plane: this scan's datatype and scaling, a `width × height × 1`
/// grid, and the plane's own affine as the sform (the qform is switched off: a plane in any
/// orientation need not be a rotation of the scan's axes).
pub fn plane_header(header: &Header, plane: &crate::decoder::Plane) -> Result<Header, VolumeError> {
    let mut h = header.with_shape([plane.width, plane.height, 1, 1])?;
    let a = plane.affine();
    h.srow_x = a[0];
    h.srow_y = a[1];
    h.srow_z = a[2];
    h.sform_code = h.sform_code.max(1);
    h.qform_code = 0;
    h.pixdim[1] = plane.spacing;
    h.pixdim[2] = plane.spacing;
    h.pixdim[3] = plane.spacing;
    Ok(h)
}

/// Everything `medinr info` reports.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub file_bytes: usize,
    pub format_version: String,
    pub shape: [usize; 4],
    pub datatype: String,
    pub spacing: [f64; 4],
    pub nifti_version: u8,
    pub byte_order: &'static str,
    pub description: String,
    pub affine: [[f64; 4]; 3],
    pub value_range: [f64; 2],
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub seed: u64,
    pub field: FieldConfig,
    pub grid_parameters: usize,
    pub mlp_parameters: usize,
    pub sections: Vec<(String, usize)>,
    pub bits_per_voxel: f64,
    pub ratio: f64,
    /// The fidelity mode: `lossy` (the field alone), `max-error D` or `lossless`.
    pub mode: String,
    /// The residual layer, when there is one: its size and how it predicts.
    pub residual: Option<serde_json::Value>,
    pub meta: Option<serde_json::Value>,
}

pub fn summary(
    f: &MinrFile,
    h: &Header,
    bytes: &[u8],
) -> Result<Summary, crate::codec::FormatError> {
    let c = Container::parse(bytes)?;
    let voxels: usize = h.shape().iter().product();
    let bits = bytes.len() as f64 * 8.0;
    let meta: Option<serde_json::Value> =
        f.meta.as_deref().and_then(|m| serde_json::from_str(m).ok());
    let bound = meta.as_ref().and_then(|m| m.get("bound")).cloned();
    let mode = match (&f.residual, &bound) {
        (None, _) => "lossy (the field alone)".to_string(),
        (Some(_), Some(serde_json::Value::String(s))) if s == "Lossless" => "lossless".into(),
        (Some(_), Some(b)) => match b.get("MaxError").and_then(|v| v.as_f64()) {
            Some(d) => format!("max-error {d} (stored units, original grid)"),
            None => "bounded (residual layer)".into(),
        },
        (Some(_), None) => "bounded (residual layer)".into(),
    };
    let mut mode = mode;
    let residual = match &f.residual {
        None => None,
        Some(r) => {
            let reader = crate::residual::Reader::open(r).map_err(|e| {
                crate::codec::FormatError::Invalid {
                    what: "section RESI",
                    context: "file".into(),
                    detail: e.to_string(),
                }
            })?;
            let mut v = serde_json::json!({
                "bytes": r.len(),
                "bits_per_voxel": r.len() as f64 * 8.0 / voxels as f64,
                "predicts_from_field": reader.header().uses_field,
                "chunks": reader.chunk_count(),
            });
            if let Some(t) = reader.header().transform {
                mode = match t.outlier_bound {
                    Some(d) => format!(
                        "lossy (wavelet transform layer), max-error {d} (stored units, original grid)"
                    ),
                    None => {
                        "lossy (wavelet transform layer on the original grid, no error bound)".into()
                    }
                };
                v["transform"] = serde_json::json!({
                    "levels": t.levels,
                    "base_step": t.base_step,
                    "max_error": t.outlier_bound,
                });
            }
            if let Some(roi) = reader.header().roi {
                // The stream's own record of both bounds (the guarantee), not `meta`'s.
                mode = format!(
                    "max-error {} inside the region of interest, {} outside (stored units, original grid)",
                    roi.bound_in, roi.bound_out
                );
                v["roi"] = serde_json::json!({
                    "max_error_inside": roi.bound_in,
                    "max_error_outside": roi.bound_out,
                    "mask": if roi.shared_mask { "one for every frame" } else { "per voxel" },
                });
            }
            Some(v)
        }
    };
    Ok(Summary {
        file_bytes: bytes.len(),
        format_version: format!("{}.{}", c.version.0, c.version.1),
        shape: h.shape(),
        datatype: h.datatype().name().to_string(),
        spacing: h.spacing(),
        nifti_version: if h.is_nifti2() { 2 } else { 1 },
        byte_order: if h.is_big_endian() {
            "big-endian"
        } else {
            "little-endian"
        },
        description: h.description(),
        affine: h.affine(),
        value_range: [f.head.value_min, f.head.value_max],
        scl_slope: h.scl_slope(),
        scl_inter: h.scl_inter(),
        seed: f.head.seed,
        field: f.head.field.clone(),
        grid_parameters: f.head.field.grid_parameters(),
        mlp_parameters: f.head.field.mlp_parameters(),
        sections: c.section_sizes(),
        bits_per_voxel: bits / voxels as f64,
        ratio: crate::metrics::compression_ratio(
            voxels as u64,
            h.datatype().bytes() as u64 * 8,
            bytes.len() as u64,
        ),
        mode: match &f.mean {
            // The field holds the dynamic part; the mean image is coded on its own.
            Some(m) => {
                let within = meta
                    .as_ref()
                    .and_then(|m| m.get("temporal_mean_max_error"))
                    .and_then(|v| v.as_f64());
                let within = match within {
                    Some(d) if d > 0.0 => format!(" within {d}"),
                    Some(_) => " exact".into(),
                    None => String::new(),
                };
                format!("{mode}; temporal mean apart ({} bytes{within})", m.len())
            }
            None => mode,
        },
        residual,
        meta,
    })
}

pub fn summary_text(s: &Summary) -> String {
    let f = &s.field;
    let mut out = String::new();
    let dims = ["x", "y", "z", "t"];
    out += &format!(
        "format       medinr {} ({} bytes)\n",
        s.format_version, s.file_bytes
    );
    out += &format!("mode         {}\n", s.mode);
    if let Some(r) = &s.residual {
        out += &format!(
            "residual     {} bytes ({:.4} bpv), {} chunks, {}\n",
            r["bytes"],
            r["bits_per_voxel"].as_f64().unwrap_or(0.0),
            r["chunks"],
            match (
                r.get("transform").is_some(),
                r["predicts_from_field"].as_bool()
            ) {
                (true, Some(true)) => "wavelet-coded difference from the field",
                (true, _) => "wavelet-coded scan (no field prediction)",
                (false, Some(true)) => "predicts from the field and decoded neighbours",
                (false, _) => "predicts from decoded neighbours alone",
            }
        );
    }
    out += &format!(
        "scan         {} {}  spacing {}  NIfTI-{} {}\n",
        s.shape
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("×"),
        s.datatype,
        // A 3D scan has no time step to show (its 4th pixdim is usually 0).
        s.spacing[..if s.shape[3] > 1 { 4 } else { 3 }]
            .iter()
            .map(|v| format!("{v:.4}"))
            .collect::<Vec<_>>()
            .join("×"),
        s.nifti_version,
        s.byte_order
    );
    if !s.description.is_empty() {
        out += &format!("description  {}\n", s.description);
    }
    for (k, row) in s.affine.iter().enumerate() {
        out += &format!(
            "{}  [{:9.4} {:9.4} {:9.4} {:9.4}]\n",
            if k == 0 {
                "affine      "
            } else {
                "            "
            },
            row[0],
            row[1],
            row[2],
            row[3]
        );
    }
    out += &format!(
        "intensity    stored range [{}, {}], scl_slope {} scl_inter {}\n",
        s.value_range[0], s.value_range[1], s.scl_slope, s.scl_inter
    );
    out += &format!(
        "field        {}-D hash grid: {} levels × {} features, table ≤ {} entries; MLP {} × {} hidden (no bias)\n",
        f.dims, f.levels(), f.features, f.table_size, f.hidden_layers, f.hidden_width
    );
    if let (Some(first), Some(last)) = (f.resolutions.first(), f.resolutions.last()) {
        let show = |r: &[u32; 4]| {
            (0..f.dims)
                .map(|a| format!("{}{}", dims[a], r[a]))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out += &format!(
            "resolution   coarsest {}  finest {}\n",
            show(first),
            show(last)
        );
    }
    out += &format!(
        "parameters   {} grid + {} MLP, seed {}\n",
        s.grid_parameters, s.mlp_parameters, s.seed
    );
    out += "sections    ";
    for (tag, n) in &s.sections {
        out += &format!(" {tag}:{n}");
    }
    out += "\n";
    out += &format!(
        "rate         {:.4} bpv, ratio {:.1}:1\n",
        s.bits_per_voxel, s.ratio
    );
    if let Some(m) = &s.meta {
        out += &format!("encoder      {m}\n");
    }
    out
}
