//! The payload sections of a `.minr` file (HEAD, NIFT, TENS, and the ancillary `meta`) and
//! the in-memory form of a whole file. Byte layouts: `docs/FORMAT.md`, "Payload sections".

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use rayon::prelude::*;

use crate::codec::bytes::{ByteReader, ByteWriter};
use crate::codec::container::{Container, FormatError};
use crate::codec::entropy::{decode_symbols, encode_symbols};
use crate::codec::grid::{decode_table, encode_table, is_context_coded};
use crate::model::config::{FieldConfig, MAX_DIMS, MAX_LEVELS};
use crate::model::tensor_specs;

pub const HEAD: [u8; 4] = *b"HEAD";
pub const NIFT: [u8; 4] = *b"NIFT";
pub const TENS: [u8; 4] = *b"TENS";
pub const META: [u8; 4] = *b"meta";
/// The residual layer (format 2.0): what the field misses, coded so the decoded scan meets a
/// guaranteed error bound or is lossless. Critical: a reader that ignored it would return
/// the field's prediction where the file promises the original.
pub const RESI: [u8; 4] = *b"RESI";
/// The temporal mean of a series held apart from the field (format 3.0,
/// `decoder::mean`). Critical: without it the field's output is only the dynamic part.
pub const MEAN: [u8; 4] = *b"MEAN";

/// Largest original NIfTI header (with extensions) a file may carry.
const MAX_NIFTI_HEADER: usize = 1 << 24;

/// What a decoder needs besides the network: the grid, the intensity mapping, the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// `[nx, ny, nz, nt]` of the original scan.
    pub shape: [u32; 4],
    /// NIfTI datatype code of the stored voxels.
    pub datatype: i16,
    /// Stored value that the field's 0 and 1 map to.
    pub value_min: f64,
    pub value_max: f64,
    /// Seed of the fit that produced the file.
    pub seed: u64,
    pub field: FieldConfig,
}

/// One quantized tensor: `values = symbols · step`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantTensor {
    pub step: f32,
    pub symbols: Vec<i32>,
}

/// A whole `.minr` file in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct MinrFile {
    pub head: Head,
    /// The original NIfTI header bytes (header and extensions, up to vox_offset).
    pub nifti_header: Vec<u8>,
    pub tensors: Vec<QuantTensor>,
    /// Free-form JSON describing how the file was made (ancillary).
    pub meta: Option<String>,
    /// The residual stream (`crate::residual`), if the file carries one (format 2.0).
    pub residual: Option<Vec<u8>>,
    /// The `MEAN` section's bytes (`crate::decoder::mean`), if the series' temporal mean is
    /// held apart from the field (format 3.0).
    pub mean: Option<Vec<u8>>,
    /// Whether the writer may context-code grid tables (symbol-stream mode 4, format 5.0)
    /// where that is shorter; `false` keeps every table in the usual streams (the encoder's
    /// `rate.context_tables`). Parsed files say `true`.
    pub context_tables: bool,
}

impl Head {
    fn write(&self) -> Vec<u8> {
        let mut w = ByteWriter::new();
        for &n in &self.shape {
            w.put_u32(n);
        }
        w.put_u16(self.datatype as u16);
        w.put_f64(self.value_min);
        w.put_f64(self.value_max);
        w.put_u64(self.seed);
        let f = &self.field;
        w.put_u8(f.dims as u8);
        w.put_u8(f.features as u8);
        w.put_u32(f.table_size);
        w.put_u8(f.levels() as u8);
        for res in &f.resolutions {
            for &r in &res[..f.dims] {
                w.put_u32(r);
            }
        }
        w.put_u16(f.hidden_width as u16);
        w.put_u8(f.hidden_layers as u8);
        w.into_vec()
    }

    fn read(bytes: &[u8]) -> Result<Head, FormatError> {
        let mut r = ByteReader::new(bytes, "section HEAD");
        let mut shape = [0u32; 4];
        for (n, what) in shape.iter_mut().zip(["nx", "ny", "nz", "nt"]) {
            *n = r.get_u32(what)?;
            if *n == 0 {
                return Err(r.invalid(what, "a scan dimension is zero"));
            }
        }
        let datatype = r.get_u16("datatype")? as i16;
        let value_min = r.get_f64("value_min")?;
        let value_max = r.get_f64("value_max")?;
        if !(value_min.is_finite() && value_max.is_finite() && value_min <= value_max) {
            return Err(r.invalid(
                "value range",
                format!("[{value_min}, {value_max}] is not a finite range"),
            ));
        }
        let seed = r.get_u64("seed")?;
        let dims = r.get_u8("dims")? as usize;
        let features = r.get_u8("features")? as usize;
        let table_size = r.get_u32("table_size")?;
        let levels = r.get_u8("levels")? as usize;
        if !(3..=MAX_DIMS).contains(&dims) || levels == 0 || levels > MAX_LEVELS {
            return Err(r.invalid(
                "field config",
                format!("{dims} axes and {levels} levels are not supported"),
            ));
        }
        let mut resolutions = vec![[0u32; MAX_DIMS]; levels];
        for res in resolutions.iter_mut() {
            for r_a in res.iter_mut().take(dims) {
                *r_a = r.get_u32("level resolution")?;
            }
        }
        let hidden_width = r.get_u16("hidden_width")? as usize;
        let hidden_layers = r.get_u8("hidden_layers")? as usize;
        r.finish()?;
        let field = FieldConfig {
            dims,
            features,
            table_size,
            resolutions,
            hidden_width,
            hidden_layers,
        };
        field.validate().map_err(|e| FormatError::Invalid {
            what: "field config",
            context: "section HEAD".into(),
            detail: e.to_string(),
        })?;
        if dims == 3 && shape[3] > 1 {
            return Err(FormatError::Invalid {
                what: "field config",
                context: "section HEAD".into(),
                detail: format!(
                    "a {dims}-axis field cannot describe a scan of {} frames",
                    shape[3]
                ),
            });
        }
        Ok(Head {
            shape,
            datatype,
            value_min,
            value_max,
            seed,
            field,
        })
    }
}

impl MinrFile {
    /// Serialises the file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        use crate::codec::container::{VERSION_1, VERSION_2, VERSION_3, VERSION_4, VERSION_5};
        let mut c = Container::new();
        let (tens, context_coded) =
            write_tensors(&self.tensors, &self.head.field, self.context_tables);
        // The oldest version that holds what the file has, so older readers keep reading it.
        let transform = self
            .residual
            .as_deref()
            .is_some_and(crate::residual::is_transform_stream);
        c.version = match (&self.mean, &self.residual) {
            _ if context_coded => VERSION_5,
            _ if transform => VERSION_4,
            (Some(_), _) => VERSION_3,
            (None, Some(_)) => VERSION_2,
            (None, None) => VERSION_1,
        };
        c.push(HEAD, self.head.write())?;
        c.push(NIFT, zlib(&self.nifti_header))?;
        c.push(TENS, tens)?;
        if let Some(mean) = &self.mean {
            c.push(MEAN, mean.clone())?;
        }
        if let Some(residual) = &self.residual {
            c.push(RESI, residual.clone())?;
        }
        if let Some(meta) = &self.meta {
            c.push(META, meta.as_bytes().to_vec())?;
        }
        Ok(c.to_bytes())
    }

    /// Takes the tensors out of the file and dequantizes each in place (`symbol · step`, file
    /// order, the same values as [`MinrFile::dequantized`]): the decoder's way, so the
    /// parameters exist once in memory, not as symbols and values side by side.
    pub fn take_dequantized(&mut self) -> Vec<Vec<f32>> {
        dequantize_owned(std::mem::take(&mut self.tensors))
    }

    /// The parameters as the decoder uses them (`symbol · step`, file order).
    pub fn dequantized(&self) -> Vec<Vec<f32>> {
        self.tensors
            .iter()
            .map(|t| crate::codec::quantize::dequantize(&t.symbols, t.step))
            .collect()
    }

    /// Parses and checks a file: container framing and checksums, then every payload.
    pub fn parse(bytes: &[u8]) -> Result<MinrFile, FormatError> {
        Ok(MinrFile::parse_sections(bytes, true)?.0)
    }

    /// Parses a file without decoding its tensor streams (`tensors` is left empty): framing,
    /// every checksum, HEAD, NIFT and meta are checked, but TENS is only checksummed. For
    /// describing a file (`medinr info`) without the memory its parameters would take — up
    /// to 1 GiB for a file at the format's limits.
    pub fn parse_without_tensors(bytes: &[u8]) -> Result<MinrFile, FormatError> {
        Ok(MinrFile::parse_sections(bytes, false)?.0)
    }

    /// [`MinrFile::parse_without_tensors`], returning beside the file the payload of its
    /// section TENS (checksummed), to decode with [`MinrFile::decode_tensor_payload`] when
    /// and if the tensors are needed.
    pub fn parse_deferring_tensors(bytes: &[u8]) -> Result<(MinrFile, Vec<u8>), FormatError> {
        MinrFile::parse_sections(bytes, false)
    }

    /// The tensors of a file parsed without them ([`MinrFile::parse_without_tensors`]) from
    /// its TENS payload, checked against its field configuration and dequantized as
    /// [`MinrFile::take_dequantized`] does.
    pub fn decode_tensor_payload(&self, tens: &[u8]) -> Result<Vec<Vec<f32>>, FormatError> {
        Ok(dequantize_owned(read_tensors(tens, &self.head.field)?))
    }

    /// The file and, when its tensors are not decoded, the TENS payload (moved out of the
    /// parsed container, not copied).
    fn parse_sections(
        bytes: &[u8],
        with_tensors: bool,
    ) -> Result<(MinrFile, Vec<u8>), FormatError> {
        let mut c = Container::parse(bytes)?;
        let head = Head::read(c.require(HEAD)?)?;
        let nifti_header = unzlib(c.require(NIFT)?)?;
        let tens = c.require(TENS)?;
        if c.version.0 < 5 && tables_context_coded(tens, &head.field)? {
            return Err(too_old(
                &c,
                "section TENS",
                "a context-coded table (stream mode 4)",
                5,
            ));
        }
        let tensors = if with_tensors {
            read_tensors(tens, &head.field)?
        } else {
            Vec::new()
        };
        let meta = c
            .section(META)
            .map(|m| String::from_utf8_lossy(m).into_owned());
        let residual = section_of_version(&c, (RESI, "section RESI"), 2, "a residual layer")?;
        let mean = section_of_version(&c, (MEAN, "section MEAN"), 3, "a temporal mean")?;
        if let Some(r) = residual.as_deref() {
            if crate::residual::is_transform_stream(r) && c.version.0 < 4 {
                return Err(too_old(&c, "section RESI", "a transform stream", 4));
            }
        }
        let file = MinrFile {
            head,
            nifti_header,
            tensors,
            meta,
            residual,
            mean,
            context_tables: true,
        };
        let tens = match c.sections.iter_mut().find(|s| s.tag == TENS) {
            Some(section) if !with_tensors => std::mem::take(&mut section.payload),
            _ => Vec::new(),
        };
        Ok((file, tens))
    }
}

/// The refusal of a part (`what`, in `section`) that needs format `major`.0 in an older file.
fn too_old(c: &Container, section: &'static str, what: &str, major: u16) -> FormatError {
    FormatError::Invalid {
        what: section,
        context: "file".into(),
        detail: format!(
            "{what} needs format {major}.0, the file says {}.{}",
            c.version.0, c.version.1
        ),
    }
}

/// The payload of the section `tag` (with its name for messages), refused in a file whose
/// major version is below `major` (the version that introduced `what`).
fn section_of_version(
    c: &Container,
    (tag, name): ([u8; 4], &'static str),
    major: u16,
    what: &str,
) -> Result<Option<Vec<u8>>, FormatError> {
    let Some(payload) = c.section(tag) else {
        return Ok(None);
    };
    if c.version.0 < major {
        return Err(too_old(c, name, what, major));
    }
    Ok(Some(payload.to_vec()))
}

/// Bytes every section but TENS (and RESI) takes in the finished file (for rate control).
#[cfg_attr(not(feature = "train"), allow(dead_code))] // used by the encoder only
pub fn overhead(
    head: &Head,
    nifti_header: &[u8],
    meta: Option<&str>,
    mean: Option<&[u8]>,
) -> usize {
    let probe = MinrFile {
        head: head.clone(),
        nifti_header: nifti_header.to_vec(),
        tensors: Vec::new(),
        meta: meta.map(str::to_string),
        residual: None,
        mean: mean.map(<[u8]>::to_vec),
        context_tables: false,
    };
    // An empty TENS payload is one byte (count 0); the real one is sized separately.
    probe.to_bytes().map(|b| b.len() - 1).unwrap_or(0)
}

/// The TENS payload of `tensors` (file order) for a field of `config`, and whether a table
/// was context-coded (mode 4, format 5.0). With `context`, tables take the shorter of mode
/// 4 and the usual stream; the MLP's matrices always the usual one. The streams are coded
/// in parallel.
fn write_tensors(tensors: &[QuantTensor], config: &FieldConfig, context: bool) -> (Vec<u8>, bool) {
    let specs = tensor_specs(config);
    let streams: Vec<Vec<u8>> = tensors
        .par_iter()
        .enumerate()
        .map(|(i, t)| match specs.get(i).and_then(|s| s.table) {
            Some(table) if context && table.symbols() == t.symbols.len() => {
                encode_table(&t.symbols, &table)
            }
            _ => encode_symbols(&t.symbols),
        })
        .collect();
    let mut w = ByteWriter::new();
    w.put_varint(tensors.len() as u64);
    for (t, stream) in tensors.iter().zip(&streams) {
        w.put_f32(t.step);
        w.put_len_bytes(stream);
    }
    let context = streams.iter().any(|s| is_context_coded(s));
    (w.into_vec(), context)
}

/// Whether a TENS payload holds a context-coded table: its framing walked, each grid
/// table's first byte read (the streams are not decoded). A payload whose framing is broken
/// says no here; reading it fails later with the reason.
fn tables_context_coded(bytes: &[u8], field: &FieldConfig) -> Result<bool, FormatError> {
    let specs = tensor_specs(field);
    let mut r = ByteReader::new(bytes, "section TENS");
    let Ok(count) = r.get_count("tensor count", 5) else {
        return Ok(false);
    };
    for spec in specs.iter().take(count) {
        let (Ok(_), Ok(stream)) = (r.get_f32("step"), r.get_len_bytes("tensor stream")) else {
            return Ok(false);
        };
        if spec.table.is_some() && is_context_coded(stream) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Dequantizes tensors in place (`symbol · step`, file order).
fn dequantize_owned(tensors: Vec<QuantTensor>) -> Vec<Vec<f32>> {
    tensors
        .into_iter()
        .map(|t| {
            let step = t.step;
            // Same size and alignment: the standard library reuses the symbols' buffer.
            t.symbols.into_iter().map(|s| s as f32 * step).collect()
        })
        .collect()
}

/// Reads TENS. The framing (steps, stream lengths) is read in order; the symbol streams,
/// independent of each other, are then decoded in parallel. The first error in file order
/// is reported, as a sequential reader would: a stream error before a framing error wins.
fn read_tensors(bytes: &[u8], field: &FieldConfig) -> Result<Vec<QuantTensor>, FormatError> {
    let specs = tensor_specs(field);
    let mut r = ByteReader::new(bytes, "section TENS");
    // Each tensor takes at least its step (4 bytes) and a length byte.
    let count = r.get_count("tensor count", 5)?;
    if count != specs.len() {
        return Err(r.invalid(
            "tensor count",
            format!(
                "{count} tensors stored, the field configuration has {}",
                specs.len()
            ),
        ));
    }
    let mut frames = Vec::with_capacity(specs.len());
    let mut framing = Ok(());
    for spec in &specs {
        let frame = r.get_f32("step").and_then(|step| {
            if !(step.is_finite() && step > 0.0) {
                return Err(r.invalid("step", format!("{} has step {step}", spec.name())));
            }
            Ok((step, r.get_len_bytes("tensor stream")?, spec))
        });
        match frame {
            Ok(frame) => frames.push(frame),
            Err(e) => {
                framing = Err(e);
                break;
            }
        }
    }
    let decoded: Vec<Result<QuantTensor, FormatError>> = frames
        .into_par_iter()
        .map(|(step, blob, spec)| {
            // Mode 4 is allowed here: the file's version was checked against it at parse.
            let symbols = match &spec.table {
                Some(table) => decode_table(blob, table, true)?,
                None => decode_symbols(blob, spec.len)?,
            };
            Ok(QuantTensor { step, symbols })
        })
        .collect();
    let out = decoded.into_iter().collect::<Result<Vec<_>, _>>()?;
    framing?;
    r.finish()?;
    Ok(out)
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = e.write_all(bytes);
    e.finish().unwrap_or_default()
}

fn unzlib(bytes: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::new();
    ZlibDecoder::new(bytes)
        .take(MAX_NIFTI_HEADER as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| FormatError::Invalid {
            what: "NIfTI header",
            context: "section NIFT".into(),
            detail: format!("zlib stream is damaged: {e}"),
        })?;
    if out.len() > MAX_NIFTI_HEADER {
        return Err(FormatError::Invalid {
            what: "NIfTI header",
            context: "section NIFT".into(),
            detail: "larger than 16 MiB".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Preset;

    fn sample() -> MinrFile {
        let field = FieldConfig::for_shape([20, 30, 10, 1], 2000, &Preset::default());
        let tensors = tensor_specs(&field)
            .iter()
            .map(|s| QuantTensor {
                step: 0.01,
                symbols: (0..s.len).map(|i| ((i * 13) % 7) as i32 - 3).collect(),
            })
            .collect();
        MinrFile {
            head: Head {
                shape: [20, 30, 10, 1],
                datatype: 4,
                value_min: -1024.0,
                value_max: 3071.0,
                seed: 42,
                field,
            },
            nifti_header: vec![7u8; 348],
            tensors,
            meta: Some("{\"x\":1}".into()),
            residual: None,
            mean: None,
            context_tables: true,
        }
    }

    #[test]
    fn file_round_trips() {
        let f = sample();
        let bytes = f.to_bytes().unwrap();
        assert_eq!(MinrFile::parse(&bytes).unwrap(), f);
    }

    #[test]
    fn each_file_is_written_with_the_oldest_version_that_holds_it() {
        let version = |f: &MinrFile| {
            let b = f.to_bytes().unwrap();
            (u16::from_le_bytes([b[8], b[9]]), b)
        };
        let mut f = sample();
        assert_eq!(version(&f).0, 1);
        f.residual = Some(vec![1, 2, 3]);
        assert_eq!(version(&f).0, 2);
        f.mean = Some(vec![4, 5, 6]);
        let (major, bytes) = version(&f);
        assert_eq!(major, 3);
        assert_eq!(MinrFile::parse(&bytes).unwrap(), f);
        // A MEAN section in a file that says 2.0 (its CRCs intact) is refused.
        let mut older = bytes.clone();
        older[8] = 2;
        let e = MinrFile::parse(&older).unwrap_err().to_string();
        assert!(e.contains("MEAN") && e.contains("3.0"), "{e}");
        // A transform stream in the residual layer needs 4.0, and a file saying 3.0 with one
        // is refused.
        f.residual = Some(b"MIRS\x03rest".to_vec());
        let (major, bytes) = version(&f);
        assert_eq!(major, 4);
        assert_eq!(MinrFile::parse(&bytes).unwrap(), f);
        let mut older = bytes.clone();
        older[8] = 3;
        let e = MinrFile::parse(&older).unwrap_err().to_string();
        assert!(e.contains("transform") && e.contains("4.0"), "{e}");
    }

    #[test]
    fn overhead_plus_tensors_is_the_file_size() {
        let f = sample();
        let bytes = f.to_bytes().unwrap();
        let tens = write_tensors(&f.tensors, &f.head.field, true).0.len();
        assert_eq!(
            overhead(&f.head, &f.nifti_header, f.meta.as_deref(), None) + tens,
            bytes.len()
        );
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let bytes = sample().to_bytes().unwrap();
        for cut in 0..bytes.len() {
            assert!(MinrFile::parse(&bytes[..cut]).is_err());
        }
        for i in (0..bytes.len()).step_by(3) {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(MinrFile::parse(&b).is_err(), "flip at {i} went unnoticed");
        }
    }
}
