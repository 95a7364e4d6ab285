//! The DICOM reader proper (dicom-object for parsing, dicom-pixeldata for decoding); the
//! rules it follows are documented in the parent module.

use super::{
    MAX_DECODED_BYTES, ORIENTATION_TOLERANCE, POSITION_ROUNDING_MM, SAME_POSITION_MM,
    SPACING_TOLERANCE, TILT_TOLERANCE_DEG,
};
use crate::volume::{voxels, DataType, DicomProblem, Header, Volume, VolumeError};
use dicom_core::value::Value;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// Decoded size bound relative to the file's size for compressed pixel data (deflate's
/// 1032:1 is the largest ratio of the supported codecs).
const MAX_COMPRESSION_RATIO: u64 = 1100;

/// Read a DICOM series (a folder), an enhanced multi-frame file or a single image into a
/// [`Volume`]: stored values and a NIfTI-1 header (NIfTI-2 only for axes beyond 32767)
/// with the DICOM geometry in RAS. See the module documentation for the rules.
pub fn read_dicom(path: &Path) -> Result<Volume, VolumeError> {
    read(path).map_err(|problem| VolumeError::Dicom {
        file: path.to_path_buf(),
        problem: Box::new(problem),
    })
}

/// A DICOM file's image attributes.
struct Image {
    path: PathBuf,
    obj: DefaultDicomObject,
    rows: usize,
    cols: usize,
    frames: usize,
    format: Format,
    series: String,
}

/// How one sample is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Format {
    bits_allocated: u16,
    bits_stored: u16,
    signed: bool,
}

impl Format {
    fn datatype(self) -> DataType {
        match (self.bits_allocated, self.signed) {
            (8, false) => DataType::U8,
            (8, true) => DataType::I8,
            (16, false) => DataType::U16,
            (16, true) => DataType::I16,
            (32, false) => DataType::U32,
            _ => DataType::I32,
        }
    }
}

/// One 2D frame: where it is and how to order it in time.
struct Frame {
    image: usize,
    index: usize,
    position: Option<[f64; 3]>,
    orientation: Option<[f64; 6]>,
    spacing: Option<[f64; 2]>,
    rescale: Option<(f64, f64)>,
    time: [Option<f64>; 4],
}

fn not_image(path: &Path, reason: impl Into<String>) -> DicomProblem {
    DicomProblem::NotImage {
        file: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> DicomProblem {
    DicomProblem::BadAttribute {
        file: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<Volume, DicomProblem> {
    let files = if path.is_dir() {
        list_folder(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let mut images = Vec::with_capacity(files.len());
    for f in &files {
        images.push(open_image(f)?);
    }
    check_series(&images)?;
    let first = &images[0];
    for img in &images[1..] {
        if (img.rows, img.cols) != (first.rows, first.cols) {
            return Err(DicomProblem::Mismatch {
                first: first.path.clone(),
                other: img.path.clone(),
                what: "rows × columns",
                detail: format!("{}×{} vs {}×{}", first.rows, first.cols, img.rows, img.cols),
            });
        }
        if img.format != first.format {
            return Err(DicomProblem::Mismatch {
                first: first.path.clone(),
                other: img.path.clone(),
                what: "pixel format",
                detail: format!("{:?} vs {:?}", first.format, img.format),
            });
        }
    }

    let mut frames = Vec::new();
    for (k, img) in images.iter().enumerate() {
        image_frames(k, img, &mut frames)?;
    }
    let layout = arrange(&images, &frames)?;
    let (rows, cols) = (first.rows, first.cols);
    let [nz, nt] = [layout.slots.len(), layout.slots[0].len()];
    let shape = [cols, rows, nz, nt];
    let dt = first.format.datatype();
    let total_bytes = shape
        .iter()
        .try_fold(dt.bytes() as u64, |a, &n| a.checked_mul(n as u64))
        .filter(|&b| b <= MAX_DECODED_BYTES)
        .ok_or_else(|| DicomProblem::TooLarge {
            file: first.path.clone(),
            reason: format!(
                "{cols}×{rows}×{nz}×{nt} {dt} voxels exceed {} GiB",
                MAX_DECODED_BYTES >> 30
            ),
        })?;
    let mut header = Header::new(dt, shape).map_err(|e| DicomProblem::TooLarge {
        file: first.path.clone(),
        reason: e.to_string(),
    })?;
    layout.apply(&mut header);
    describe(&mut header, first);
    let rescale = common_rescale(&frames)?;
    if let Some((slope, inter)) = rescale {
        header.scl_slope = slope;
        header.scl_inter = inter;
    }

    // Voxels: frame (z, t) goes to plane t·nz + z.
    let plane = rows * cols;
    let mut data: Vec<f32> = Vec::new();
    data.try_reserve_exact((total_bytes / dt.bytes() as u64) as usize)
        .map_err(|_| DicomProblem::TooLarge {
            file: first.path.clone(),
            reason: format!("cannot allocate {total_bytes} bytes of voxels"),
        })?;
    data.resize(plane * nz * nt, 0.0);
    let mut plane_of = vec![Vec::new(); images.len()];
    for (z, at) in layout.slots.iter().enumerate() {
        for (t, &f) in at.iter().enumerate() {
            let fr = &frames[f];
            plane_of[fr.image].push((fr.index, t * nz + z));
        }
    }
    for (k, img) in images.iter().enumerate() {
        let values = decode(img)?;
        for &(index, p) in &plane_of[k] {
            data[p * plane..(p + 1) * plane]
                .copy_from_slice(&values[index * plane..(index + 1) * plane]);
        }
    }
    let data = crate::volume::Voxels::from_f32(data, dt);
    Ok(Volume { data, header })
}

/// The files of a series folder, sorted by name: regular files, not hidden, not DICOMDIR.
fn list_folder(dir: &Path) -> Result<Vec<PathBuf>, DicomProblem> {
    let entries = std::fs::read_dir(dir).map_err(|e| DicomProblem::NotDicom {
        file: dir.to_path_buf(),
        reason: format!("cannot list the folder: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            !name.starts_with('.') && !name.eq_ignore_ascii_case("DICOMDIR")
        })
        .filter(|p| !is_medinr_output(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DicomProblem::Empty);
    }
    Ok(files)
}

/// Whether `path` is something medinr writes (a `.minr` file, by its magic bytes, or a NIfTI
/// file, by its name): compressing a series into its own folder, or decoding it there, must
/// not make the folder unreadable the next time. Any other stray file is still refused.
fn is_medinr_output(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        return true;
    }
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .map(|_| head == crate::codec::container::MAGIC)
        .unwrap_or(false)
}

/// Open one file and read its image attributes (everything checked, nothing allocated
/// from a size in the file yet).
fn open_image(path: &Path) -> Result<Image, DicomProblem> {
    if !super::has_dicm_preamble(path) {
        return Err(DicomProblem::NotDicom {
            file: path.to_path_buf(),
            reason: "no DICM marker at byte 128".into(),
        });
    }
    // dicom-rs zero-fills a value's declared length before reading it: check every declared
    // length against the file first, so a small file cannot claim gigabytes.
    let bytes = std::fs::read(path).map_err(|e| DicomProblem::NotDicom {
        file: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    super::lengths::check_declared_lengths(&bytes).map_err(|reason| DicomProblem::NotDicom {
        file: path.to_path_buf(),
        reason,
    })?;
    drop(bytes);
    let obj = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| DicomProblem::NotDicom {
            file: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let pixel = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| not_image(path, "no Pixel Data"))?;
    let uint = |tag: Tag, name: &str| -> Result<u32, DicomProblem> {
        obj.get(tag)
            .ok_or_else(|| not_image(path, format!("no {name}")))?
            .to_int::<u32>()
            .map_err(|e| bad(path, format!("{name}: {e}")))
    };
    let rows = uint(tags::ROWS, "Rows")? as usize;
    let cols = uint(tags::COLUMNS, "Columns")? as usize;
    if rows == 0 || cols == 0 || rows > u16::MAX as usize || cols > u16::MAX as usize {
        return Err(bad(
            path,
            format!("Rows × Columns {rows}×{cols} out of range"),
        ));
    }
    let samples = obj
        .get(tags::SAMPLES_PER_PIXEL)
        .map(|e| e.to_int::<u16>())
        .transpose()
        .map_err(|e| bad(path, format!("Samples per Pixel: {e}")))?
        .unwrap_or(1);
    if samples != 1 {
        return Err(DicomProblem::MultiSample {
            file: path.to_path_buf(),
            samples,
            photometric: text(&obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default(),
        });
    }
    let bits_allocated = uint(tags::BITS_ALLOCATED, "Bits Allocated")?;
    if ![8, 16, 32].contains(&bits_allocated) {
        return Err(bad(
            path,
            format!("Bits Allocated {bits_allocated}; only 8, 16 and 32 are supported"),
        ));
    }
    let bits_stored = match obj.get(tags::BITS_STORED) {
        Some(e) => e
            .to_int::<u32>()
            .map_err(|e| bad(path, format!("Bits Stored: {e}")))?,
        None => bits_allocated,
    };
    if bits_stored == 0 || bits_stored > bits_allocated {
        return Err(bad(
            path,
            format!("Bits Stored {bits_stored} with Bits Allocated {bits_allocated}"),
        ));
    }
    if let Some(high) = obj.get(tags::HIGH_BIT) {
        let high = high
            .to_int::<u32>()
            .map_err(|e| bad(path, format!("High Bit: {e}")))?;
        if high + 1 != bits_stored {
            return Err(bad(
                path,
                format!("High Bit {high} with Bits Stored {bits_stored}; only High Bit = Bits Stored − 1 is supported"),
            ));
        }
    }
    let signed = match obj.get(tags::PIXEL_REPRESENTATION) {
        Some(e) => {
            e.to_int::<u16>()
                .map_err(|e| bad(path, format!("Pixel Representation: {e}")))?
                == 1
        }
        None => false,
    };
    let frames = match obj.get(tags::NUMBER_OF_FRAMES) {
        Some(e) => match e.to_int::<i64>() {
            Ok(n) if n >= 1 => n as usize,
            Ok(n) => return Err(bad(path, format!("Number of Frames {n}"))),
            Err(e) => return Err(bad(path, format!("Number of Frames: {e}"))),
        },
        None => 1,
    };

    // Sizes bounded before anything is allocated from them.
    let bytes = (bits_allocated / 8) as u64;
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let decoded = (rows as u64)
        .checked_mul(cols as u64)
        .and_then(|v| v.checked_mul(frames as u64))
        .and_then(|v| v.checked_mul(bytes))
        .filter(|&b| b <= MAX_DECODED_BYTES)
        .ok_or_else(|| DicomProblem::TooLarge {
            file: path.to_path_buf(),
            reason: format!(
                "{frames} frames of {rows}×{cols} × {bytes} bytes exceed {} GiB",
                MAX_DECODED_BYTES >> 30
            ),
        })?;
    let ts_uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
    let ts = TransferSyntaxRegistry.get(ts_uid);
    match ts {
        Some(ts) if ts.can_decode_all() => {}
        _ => {
            return Err(DicomProblem::UnsupportedTransferSyntax {
                file: path.to_path_buf(),
                uid: ts_uid.to_string(),
                name: ts.map(|t| t.name().to_string()).unwrap_or("unknown".into()),
            })
        }
    }
    match pixel.value() {
        Value::PixelSequence(seq) => {
            let fragments = seq.fragments().len();
            if frames > fragments.max(1) {
                return Err(bad(
                    path,
                    format!("Number of Frames {frames} but only {fragments} compressed fragments"),
                ));
            }
            if decoded > file_len.saturating_mul(MAX_COMPRESSION_RATIO) {
                return Err(DicomProblem::TooLarge {
                    file: path.to_path_buf(),
                    reason: format!(
                        "{decoded} bytes of pixels claimed from a {file_len}-byte file"
                    ),
                });
            }
        }
        Value::Primitive(p) => {
            let have = p.calculate_byte_len() as u64;
            if have < decoded {
                return Err(bad(
                    path,
                    format!("Pixel Data holds {have} bytes, {frames} frames of {rows}×{cols} need {decoded}"),
                ));
            }
        }
        Value::Sequence(_) => return Err(not_image(path, "Pixel Data is a sequence")),
    }
    let series = text(&obj, tags::SERIES_INSTANCE_UID).unwrap_or_default();
    Ok(Image {
        path: path.to_path_buf(),
        rows,
        cols,
        frames,
        format: Format {
            bits_allocated: bits_allocated as u16,
            bits_stored: bits_stored as u16,
            signed,
        },
        series,
        obj,
    })
}

fn check_series(images: &[Image]) -> Result<(), DicomProblem> {
    let first = &images[0];
    if let Some(other) = images.iter().find(|i| i.series != first.series) {
        let mut uids: Vec<&str> = images.iter().map(|i| i.series.as_str()).collect();
        uids.sort_unstable();
        uids.dedup();
        return Err(DicomProblem::MultipleSeries {
            count: uids.len(),
            first: first.path.clone(),
            first_uid: first.series.clone(),
            other: other.path.clone(),
            other_uid: other.series.clone(),
        });
    }
    Ok(())
}

/// A string attribute, trimmed of DICOM padding.
fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

/// A numeric attribute of exactly N finite values; `None` when absent or empty.
fn numbers<const N: usize>(
    obj: &InMemDicomObject,
    tag: Tag,
    name: &str,
    path: &Path,
) -> Result<Option<[f64; N]>, DicomProblem> {
    let Some(e) = obj.get(tag) else {
        return Ok(None);
    };
    let v = e
        .to_multi_float64()
        .map_err(|err| bad(path, format!("{name}: {err}")))?;
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() != N || v.iter().any(|x| !x.is_finite()) {
        return Err(bad(path, format!("{name} is {v:?}, expected {N} numbers")));
    }
    let mut a = [0.0; N];
    a.copy_from_slice(&v);
    Ok(Some(a))
}

fn number(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    obj.get(tag)?
        .to_float64()
        .ok()
        .filter(|v: &f64| v.is_finite())
}

/// The first item of a sequence attribute.
fn item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

/// Rescale slope and intercept of one object (slope defaults to 1, intercept to 0).
fn rescale_of(obj: &InMemDicomObject, path: &Path) -> Result<Option<(f64, f64)>, DicomProblem> {
    let slope = number(obj, tags::RESCALE_SLOPE);
    let inter = number(obj, tags::RESCALE_INTERCEPT);
    if slope.is_none() && inter.is_none() {
        return Ok(None);
    }
    let slope = slope.unwrap_or(1.0);
    if slope == 0.0 {
        return Err(bad(path, "Rescale Slope is 0"));
    }
    Ok(Some((slope, inter.unwrap_or(0.0))))
}

/// The frames of one image: single-frame attributes at the top level; enhanced multi-frame
/// ones from the Per-frame, else Shared Functional Groups, else the top level.
fn image_frames(k: usize, img: &Image, out: &mut Vec<Frame>) -> Result<(), DicomProblem> {
    let obj: &InMemDicomObject = &img.obj;
    let path = img.path.as_path();
    let per_frame = match obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE) {
        Some(e) => {
            let items = e.items().unwrap_or(&[]);
            if items.len() != img.frames {
                return Err(bad(
                    path,
                    format!(
                        "{} Per-frame Functional Groups items for {} frames",
                        items.len(),
                        img.frames
                    ),
                ));
            }
            items
        }
        None => &[],
    };
    let shared = item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let single_time = [
        number(obj, tags::TEMPORAL_POSITION_IDENTIFIER),
        number(obj, tags::TRIGGER_TIME),
        number(obj, tags::ACQUISITION_NUMBER),
        number(obj, tags::INSTANCE_NUMBER),
    ];
    for index in 0..img.frames {
        let pf = per_frame.get(index);
        // The macro's item from the per-frame group, else the shared one.
        let group = |seq: Tag| -> Option<&InMemDicomObject> {
            pf.and_then(|p| item(p, seq))
                .or_else(|| shared.and_then(|s| item(s, seq)))
        };
        let pick = |seq: Tag| group(seq).unwrap_or(obj);
        let position = numbers::<3>(
            pick(tags::PLANE_POSITION_SEQUENCE),
            tags::IMAGE_POSITION_PATIENT,
            "Image Position (Patient)",
            path,
        )?;
        let orientation = numbers::<6>(
            pick(tags::PLANE_ORIENTATION_SEQUENCE),
            tags::IMAGE_ORIENTATION_PATIENT,
            "Image Orientation (Patient)",
            path,
        )?;
        let spacing = numbers::<2>(
            pick(tags::PIXEL_MEASURES_SEQUENCE),
            tags::PIXEL_SPACING,
            "Pixel Spacing",
            path,
        )?;
        if let Some(s) = spacing {
            if s.iter().any(|&v| v <= 0.0) {
                return Err(bad(path, format!("Pixel Spacing {s:?} must be positive")));
            }
        }
        let rescale = rescale_of(pick(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE), path)?;
        let time = match group(tags::FRAME_CONTENT_SEQUENCE) {
            Some(fc) if pf.is_some() => [
                number(fc, tags::TEMPORAL_POSITION_INDEX),
                number(fc, tags::FRAME_ACQUISITION_NUMBER),
                None,
                None,
            ],
            _ => single_time,
        };
        out.push(Frame {
            image: k,
            index,
            position,
            orientation,
            spacing,
            rescale,
            time,
        });
    }
    Ok(())
}

/// Where each frame goes, and the geometry.
struct Layout {
    /// slots[z][t] = index into the frame list.
    slots: Vec<Vec<usize>>,
    /// Voxel → RAS world affine, or `None` when the images carry no geometry.
    affine: Option<[[f64; 4]; 3]>,
    /// Voxel size (x, y, z).
    spacing: [f64; 3],
    /// Time step (s), 1 when unknown.
    dt: f64,
}

impl Layout {
    fn apply(&self, h: &mut Header) {
        match self.affine {
            Some(a) => {
                h.set_affine(a);
                h.sform_code = 1;
                h.qform_code = 1;
            }
            None => {
                h.pixdim[1..4].copy_from_slice(&self.spacing);
                h.sform_code = 0;
                h.qform_code = 0;
            }
        }
        h.pixdim[4] = self.dt;
    }
}

fn cmp_time(a: &[Option<f64>; 4], b: &[Option<f64>; 4]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Some(x), Some(y)) => x.total_cmp(y),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

fn unit(a: [f64; 3], path: &Path) -> Result<[f64; 3], DicomProblem> {
    let n = norm(a);
    if !(n > 0.5 && n < 1.5) {
        return Err(bad(
            path,
            format!("Image Orientation (Patient) cosine {a:?} is not a unit vector"),
        ));
    }
    Ok([a[0] / n, a[1] / n, a[2] / n])
}

/// Order the frames into slices (by position along the normal) and time points, and
/// derive the affine; every consistency check of the geometry is here.
fn arrange(images: &[Image], frames: &[Frame]) -> Result<Layout, DicomProblem> {
    let path_of = |f: &Frame| images[f.image].path.clone();
    let first = &frames[0];
    let with_geometry = frames
        .iter()
        .filter(|f| f.position.is_some() && f.orientation.is_some())
        .count();
    // Pixel spacing must agree everywhere it is given.
    let spacing = first.spacing;
    for f in frames {
        let same = match (spacing, f.spacing) {
            (Some(a), Some(b)) => a
                .iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= ORIENTATION_TOLERANCE * x.abs().max(1.0)),
            (None, None) => true,
            _ => false,
        };
        if !same {
            return Err(DicomProblem::Mismatch {
                first: path_of(first),
                other: path_of(f),
                what: "Pixel Spacing",
                detail: format!("{:?} vs {:?}", spacing, f.spacing),
            });
        }
    }
    let [row_spacing, col_spacing] = spacing.unwrap_or([1.0, 1.0]);

    if with_geometry == 0 {
        // No geometry: one file only, frames in file order.
        if images.len() > 1 {
            return Err(bad(
                &images[0].path,
                "no Image Position/Orientation (Patient): the slices of a folder cannot be ordered",
            ));
        }
        let obj: &InMemDicomObject = &images[0].obj;
        let dz = number(obj, tags::SPACING_BETWEEN_SLICES)
            .or_else(|| number(obj, tags::SLICE_THICKNESS))
            .filter(|&v| v > 0.0)
            .unwrap_or(1.0);
        return Ok(Layout {
            slots: (0..frames.len()).map(|f| vec![f]).collect(),
            affine: None,
            spacing: [col_spacing, row_spacing, dz],
            dt: 1.0,
        });
    }
    if with_geometry != frames.len() {
        let f = frames
            .iter()
            .find(|f| f.position.is_none() || f.orientation.is_none())
            .unwrap_or(first);
        return Err(bad(
            &path_of(f),
            format!(
                "frame {} has no Image Position/Orientation (Patient) while others do",
                f.index
            ),
        ));
    }

    // Orientation: the same everywhere, orthonormal.
    let ori = first.orientation.unwrap_or_default();
    for f in frames {
        let o = f.orientation.unwrap_or_default();
        if o.iter()
            .zip(ori)
            .any(|(a, b)| (a - b).abs() > ORIENTATION_TOLERANCE)
        {
            return Err(DicomProblem::Mismatch {
                first: path_of(first),
                other: path_of(f),
                what: "Image Orientation (Patient)",
                detail: format!("{ori:?} vs {o:?}"),
            });
        }
    }
    let row = unit([ori[0], ori[1], ori[2]], &images[0].path)?;
    let col = unit([ori[3], ori[4], ori[5]], &images[0].path)?;
    if dot(row, col).abs() > 1e-3 {
        return Err(bad(
            &images[0].path,
            format!(
                "Image Orientation (Patient) {ori:?}: row and column cosines are not orthogonal"
            ),
        ));
    }
    let normal = cross(row, col);
    let normal_len = norm(normal);
    let normal = [
        normal[0] / normal_len,
        normal[1] / normal_len,
        normal[2] / normal_len,
    ];

    // Sort by position along the normal; ties (same position) by time, then input order.
    let pos = |f: usize| frames[f].position.unwrap_or_default();
    let along = |f: usize| dot(pos(f), normal);
    let mut order: Vec<usize> = (0..frames.len()).collect();
    order.sort_by(|&a, &b| along(a).total_cmp(&along(b)));
    // Group frames at one position, then order each group in time (stable: input order
    // breaks ties).
    let mut slots: Vec<Vec<usize>> = Vec::new();
    for &f in &order {
        match slots.last_mut() {
            Some(g) if norm(sub(pos(f), pos(g[0]))) <= SAME_POSITION_MM => g.push(f),
            _ => slots.push(vec![f]),
        }
    }
    for g in &mut slots {
        g.sort_by(|&a, &b| cmp_time(&frames[a].time, &frames[b].time).then(a.cmp(&b)));
    }
    let nt = slots[0].len();
    if let Some(g) = slots.iter().find(|g| g.len() != nt) {
        let counts: Vec<usize> = slots.iter().map(Vec::len).collect();
        return Err(DicomProblem::UnevenFrames {
            detail: format!(
                "{} images at the first position but {} at {:?} mm ({}); images per position, in order: {counts:?}",
                nt,
                g.len(),
                pos(g[0]),
                images[frames[g[0]].image].path.display()
            ),
        });
    }
    let nz = slots.len();
    let slice_spacing = if nz > 1 {
        let p0 = pos(slots[0][0]);
        let name = |k: usize| images[frames[slots[k][0]].image].path.display().to_string();
        let mean = (along(slots[nz - 1][0]) - along(slots[0][0])) / (nz - 1) as f64;
        let allowed = SPACING_TOLERANCE * mean + POSITION_ROUNDING_MM;
        // The step that deviates most names the gap (a missing slice inflates the mean, so
        // the first deviating step need not be the gap).
        let step = |k: usize| along(slots[k][0]) - along(slots[k - 1][0]);
        let worst = (1..nz)
            .max_by(|&a, &b| (step(a) - mean).abs().total_cmp(&(step(b) - mean).abs()))
            .unwrap_or(1);
        let d = step(worst);
        if (d - mean).abs() > allowed {
            return Err(DicomProblem::UnevenSpacing {
                detail: format!(
                    "{d:.4} mm from slice {} ({}) to slice {worst} ({}), mean step {mean:.4} mm over {nz} slices",
                    worst - 1,
                    name(worst - 1),
                    name(worst),
                ),
            });
        }
        // The stack must run along the normal: the whole stack within the tilt tolerance,
        // and every slice off the line through the first by no more than that allows.
        let span = sub(pos(slots[nz - 1][0]), p0);
        let overall = norm(cross(span, normal))
            .atan2(dot(span, normal))
            .to_degrees();
        if overall > TILT_TOLERANCE_DEG {
            return Err(DicomProblem::Tilted {
                detail: format!(
                    "the stack runs {overall:.3}° away from the slice normal (gantry tilt?)"
                ),
            });
        }
        let tan = TILT_TOLERANCE_DEG.to_radians().tan();
        for (k, g) in slots.iter().enumerate().skip(1) {
            let d = sub(pos(g[0]), p0);
            let off = norm(cross(d, normal));
            if off > tan * dot(d, normal).abs() + POSITION_ROUNDING_MM {
                return Err(DicomProblem::Tilted {
                    detail: format!(
                        "slice {k} ({}) lies {off:.3} mm off the line through the first slice along the normal (sheared stack)",
                        name(k)
                    ),
                });
            }
        }
        mean
    } else {
        let obj: &InMemDicomObject = &images[0].obj;
        number(obj, tags::SPACING_BETWEEN_SLICES)
            .or_else(|| number(obj, tags::SLICE_THICKNESS))
            .or_else(|| {
                item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
                    .and_then(|s| item(s, tags::PIXEL_MEASURES_SEQUENCE))
                    .and_then(|m| number(m, tags::SLICE_THICKNESS))
            })
            .filter(|&v| v > 0.0)
            .unwrap_or(1.0)
    };

    // LPS → RAS: negate x and y.
    let origin = pos(slots[0][0]);
    let cols = [
        row.map(|v| v * col_spacing),
        col.map(|v| v * row_spacing),
        normal.map(|v| v * slice_spacing),
    ];
    let mut affine = [[0.0; 4]; 3];
    for (r, out) in affine.iter_mut().enumerate() {
        let sign = if r < 2 { -1.0 } else { 1.0 };
        for (c, v) in cols.iter().enumerate() {
            out[c] = sign * v[r];
        }
        out[3] = sign * origin[r];
    }
    let dt = if nt > 1 {
        number(&images[0].obj, tags::REPETITION_TIME)
            .filter(|&v| v > 0.0)
            .map(|ms| ms / 1000.0)
            .unwrap_or(1.0)
    } else {
        1.0
    };
    Ok(Layout {
        slots,
        affine: Some(affine),
        spacing: [col_spacing, row_spacing, slice_spacing],
        dt,
    })
}

/// The one rescale of the series (`None`: no rescale attributes anywhere).
fn common_rescale(frames: &[Frame]) -> Result<Option<(f64, f64)>, DicomProblem> {
    if frames.iter().all(|f| f.rescale.is_none()) {
        return Ok(None);
    }
    let of = |f: &Frame| f.rescale.unwrap_or((1.0, 0.0));
    let first = of(&frames[0]);
    if let Some(f) = frames.iter().find(|f| of(f) != first) {
        let show = |(s, i): (f64, f64)| format!("slope {s}, intercept {i}");
        return Err(DicomProblem::RescaleVaries {
            first: show(first),
            other: show(of(f)),
        });
    }
    Ok(Some(first))
}

/// NIfTI `descrip`: "DICOM <modality> <series description>" (nothing about the patient).
fn describe(h: &mut Header, img: &Image) {
    let modality = text(&img.obj, tags::MODALITY).unwrap_or_default();
    let series = text(&img.obj, tags::SERIES_DESCRIPTION).unwrap_or_default();
    let d = format!("DICOM {modality} {series}");
    let d = d.trim_end().as_bytes();
    let n = d.len().min(h.descrip.len() - 1);
    h.descrip = [0; 80];
    h.descrip[..n].copy_from_slice(&d[..n]);
}

/// All frames of one image as stored values (Bits Stored masked, sign-extended).
fn decode(img: &Image) -> Result<Vec<f32>, DicomProblem> {
    let decoded = img
        .obj
        .decode_pixel_data()
        .map_err(|e| DicomProblem::Undecodable {
            file: img.path.clone(),
            reason: e.to_string(),
        })?;
    let f = img.format;
    let bytes = (f.bits_allocated / 8) as usize;
    let n = img.rows * img.cols * img.frames;
    let data = decoded.data();
    if data.len() < n * bytes {
        return Err(DicomProblem::Undecodable {
            file: img.path.clone(),
            reason: format!(
                "decoded {} bytes, {} frames of {}×{} need {}",
                data.len(),
                img.frames,
                img.rows,
                img.cols,
                n * bytes
            ),
        });
    }
    let bits = f.bits_stored as u32;
    let mask: u64 = (1u64 << bits) - 1;
    let sign = 1u64 << (bits - 1);
    let value = |raw: u64| -> i64 {
        let v = raw & mask;
        if f.signed && v & sign != 0 {
            v as i64 - (1i64 << bits)
        } else {
            v as i64
        }
    };
    let data = &data[..n * bytes];
    let mut out = Vec::with_capacity(n);
    for (index, c) in data.chunks_exact(bytes).enumerate() {
        // Decoded pixel data is in native byte order.
        let raw = match bytes {
            1 => c[0] as u64,
            2 => u16::from_ne_bytes([c[0], c[1]]) as u64,
            _ => u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) as u64,
        };
        let v = value(raw);
        if v.abs() > voxels::MAX_EXACT_INTEGER {
            return Err(DicomProblem::BadAttribute {
                file: img.path.clone(),
                reason: format!(
                    "pixel {index} holds {v}, beyond ±2^24: medinr works in f32, which cannot hold every integer past that"
                ),
            });
        }
        out.push(v as f32);
    }
    Ok(out)
}
