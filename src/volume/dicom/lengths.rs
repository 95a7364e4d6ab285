//! A check of every declared value length in a DICOM file before dicom-rs reads it.
//!
//! dicom-rs allocates and zero-fills a value's declared length before reading the value, so a
//! 40 KB file whose header claims a 3 GB element makes the reader touch 3 GB (found by the
//! `dicom` fuzz target). This walk reads only element headers: the preamble, the file meta
//! group (explicit VR little endian), then the data set in the transfer syntax the meta group
//! names, descending into sequences and items, and refuses any defined length that runs past
//! the end of the data. A deflated data set is inflated first, up to
//! [`MAX_INFLATED_BYTES`]. An undefined-length UN value (or an unknown VR, which dicom-rs
//! reads as UN) is followed in implicit VR up to its sequence delimiter, as PS3.5 6.2.2 says
//! and dicom-rs does. Where the layout cannot be followed for certain (undefined lengths in
//! big-endian data), the walk stops without refusing: it must never refuse a valid file.

use std::io::Read;

/// Largest inflated data set accepted from a deflated transfer syntax (1 GiB).
pub const MAX_INFLATED_BYTES: u64 = 1 << 30;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// How the data set's element headers are written.
#[derive(Clone, Copy, PartialEq)]
enum Syntax {
    ExplicitLittle,
    ImplicitLittle,
    ExplicitBig,
}

/// Checks that no element of the Part 10 file `bytes` declares more bytes than remain.
/// `Err` names the element; files without `DICM` at byte 128 pass (the reader refuses them).
pub fn check_declared_lengths(bytes: &[u8]) -> Result<(), String> {
    if bytes.get(128..132) != Some(b"DICM") {
        return Ok(());
    }
    // File meta group, explicit VR little endian, read as dicom-rs reads it: the group length
    // (0002,0000) first, then elements until that many bytes are read, whatever their tags.
    let mut pos = 132;
    let first = header(bytes, pos, Syntax::ExplicitLittle)?;
    if (first.group, first.element, first.len) != (0x0002, 0x0000, 4) {
        return Ok(()); // dicom-rs refuses this itself, before reading any value
    }
    let at = pos + first.size;
    let Some(group_length) = bytes.get(at..at + 4) else {
        return Ok(());
    };
    let group_length = u32::from_le_bytes([
        group_length[0],
        group_length[1],
        group_length[2],
        group_length[3],
    ]) as u64;
    pos = at + 4;
    let mut read = 0u64;
    let mut syntax_uid = String::new();
    while read < group_length {
        let h = header(bytes, pos, Syntax::ExplicitLittle)?;
        let start = pos + h.size;
        let len = h.defined_len(bytes.len().saturating_sub(start))?;
        if (h.group, h.element) == (0x0002, 0x0010) {
            syntax_uid = String::from_utf8_lossy(&bytes[start..start + len])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        read += (h.size + len) as u64;
        pos = start + len;
    }
    let rest = &bytes[pos..];
    match syntax_uid.as_str() {
        DEFLATED => {
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(rest)
                .take(MAX_INFLATED_BYTES + 1)
                .read_to_end(&mut inflated)
                .map_err(|e| format!("the deflated data set does not inflate: {e}"))?;
            if inflated.len() as u64 > MAX_INFLATED_BYTES {
                return Err(format!(
                    "the deflated data set inflates to more than {} MiB",
                    MAX_INFLATED_BYTES >> 20
                ));
            }
            walk(&inflated, Syntax::ExplicitLittle)
        }
        IMPLICIT_LE => walk(rest, Syntax::ImplicitLittle),
        EXPLICIT_BE => walk(rest, Syntax::ExplicitBig),
        _ => walk(rest, Syntax::ExplicitLittle),
    }
}

/// One element (or item/delimiter) header.
struct Header {
    group: u16,
    element: u16,
    vr: [u8; 2],
    len: u32,
    size: usize,
}

impl Header {
    /// The defined length, refused when it runs past `remaining` bytes.
    fn defined_len(&self, remaining: usize) -> Result<usize, String> {
        if self.len as usize > remaining {
            return Err(format!(
                "element ({:04X},{:04X}) declares {} bytes but only {remaining} follow",
                self.group, self.element, self.len
            ));
        }
        Ok(self.len as usize)
    }
}

/// VRs whose explicit header has a 16-bit length (PS3.5 table 7.1-2). Every other VR — and,
/// as dicom-rs reads it, any unknown VR, taken for UN — has two reserved bytes and a 32-bit
/// length.
fn short_vr(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

fn header(b: &[u8], pos: usize, syntax: Syntax) -> Result<Header, String> {
    let truncated = || format!("an element header at byte {pos} is cut off");
    let get = |at: usize, n: usize| b.get(pos + at..pos + at + n).ok_or_else(truncated);
    let u16_at = |at: usize| -> Result<u16, String> {
        let s = get(at, 2)?;
        Ok(match syntax {
            Syntax::ExplicitBig => u16::from_be_bytes([s[0], s[1]]),
            _ => u16::from_le_bytes([s[0], s[1]]),
        })
    };
    let u32_at = |at: usize| -> Result<u32, String> {
        let s = get(at, 4)?;
        Ok(match syntax {
            Syntax::ExplicitBig => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
            _ => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        })
    };
    let (group, element) = (u16_at(0)?, u16_at(2)?);
    if group == 0xFFFE || syntax == Syntax::ImplicitLittle {
        // Items and delimiters have no VR in any syntax.
        return Ok(Header {
            group,
            element,
            vr: [0, 0],
            len: u32_at(4)?,
            size: 8,
        });
    }
    let s = get(4, 2)?;
    let vr = [s[0], s[1]];
    if short_vr(vr) {
        Ok(Header {
            group,
            element,
            vr,
            len: u16_at(6)? as u32,
            size: 8,
        })
    } else {
        Ok(Header {
            group,
            element,
            vr,
            len: u32_at(8)?,
            size: 12,
        })
    }
}

/// Walks a data set's element headers linearly: sequences and items are descended into (their
/// contents follow inline), other values are skipped by their (checked) length.
fn walk(b: &[u8], data_set_syntax: Syntax) -> Result<(), String> {
    let mut pos = 0;
    let mut syntax = data_set_syntax;
    // An undefined-length UN value holds implicit VR little endian up to its sequence
    // delimiter (PS3.5 6.2.2): how many such delimiters are still open.
    let mut implicit_depth = 0usize;
    // Inside encapsulated pixel data, items are fragments of bytes, not data sets.
    let mut in_fragments = false;
    while pos + 8 <= b.len() {
        // Zero bytes to the end are padding after the last element (some writers pad files
        // to a block size); the DICOM reader takes them for elements and fails, so say what
        // they are rather than which element they would cut off.
        if b[pos..pos + 8] == [0; 8] && b[pos..].iter().all(|&x| x == 0) {
            return Err(format!(
                "{} zero bytes of padding follow the last element (from byte {pos} of the data \
                 set), which the DICOM reader does not accept",
                b.len() - pos
            ));
        }
        let h = header(b, pos, syntax)?;
        let start = pos + h.size;
        let remaining = b.len() - start;
        if h.group == 0xFFFE {
            pos = match (h.element, h.len) {
                (0xE000, UNDEFINED) => start,
                (0xE000, _) if in_fragments => start + h.defined_len(remaining)?,
                (0xE000, _) => {
                    h.defined_len(remaining)?;
                    start
                }
                (0xE0DD, _) => {
                    in_fragments = false;
                    if implicit_depth > 0 {
                        implicit_depth -= 1;
                        if implicit_depth == 0 {
                            syntax = data_set_syntax;
                        }
                    }
                    start
                }
                _ => start,
            };
            continue;
        }
        if h.len == UNDEFINED {
            // A sequence, or encapsulated pixel data, continues inline; UN (or a VR dicom-rs
            // does not know, which it reads as UN) holds implicit VR up to its delimiter.
            match (&h.vr, syntax) {
                (_, Syntax::ImplicitLittle) => {
                    if implicit_depth > 0 {
                        implicit_depth += 1;
                    }
                }
                (b"SQ", _) => {}
                (b"OB" | b"OW", _) if (h.group, h.element) == (0x7FE0, 0x0010) => {
                    in_fragments = true
                }
                (_, Syntax::ExplicitLittle) => {
                    syntax = Syntax::ImplicitLittle;
                    implicit_depth = 1;
                }
                _ => return Ok(()),
            }
            pos = start;
            continue;
        }
        let len = h.defined_len(remaining)?;
        let is_sequence = match syntax {
            Syntax::ImplicitLittle => len >= 8 && b[start..start + 4] == [0xFE, 0xFF, 0x00, 0xE0],
            _ => &h.vr == b"SQ",
        };
        pos = if is_sequence { start } else { start + len };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
    }

    #[test]
    fn trailing_zero_padding_is_named() {
        let mut b = sample("data/dicom/CT_small.dcm");
        b.extend_from_slice(&[0; 332]);
        let e = check_declared_lengths(&b).unwrap_err();
        assert!(e.contains("332 zero bytes of padding"), "{e}");
    }

    #[test]
    fn real_files_pass() {
        let mut names = vec![
            "data/dicom/CT_small.dcm".to_string(),
            "data/dicom/emri_small.dcm".into(),
            "data/dicom/eCT_Supplemental.dcm".into(),
            "data/dicom/ct_jpeg2000.dcm".into(),
            "fuzz/seeds/dicom/MR_small.dcm".into(),
            "fuzz/seeds/dicom/deflated.dcm".into(),
        ];
        for e in std::fs::read_dir(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/dicom/mr_series"),
        )
        .unwrap()
        {
            names.push(format!(
                "data/dicom/mr_series/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
        for n in names {
            check_declared_lengths(&sample(&n)).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }

    #[test]
    fn a_length_past_the_end_is_refused() {
        let mut b = sample("data/dicom/CT_small.dcm");
        // Find Rows (0028,0010), explicit VR LE "US", length 2, and claim 0xFFFE bytes:
        // a short VR, so a 16-bit length; then a long one: Pixel Data claims 3 GB.
        let rows = b
            .windows(4)
            .position(|w| w == [0x28, 0x00, 0x10, 0x00])
            .unwrap();
        b[rows + 6..rows + 8].copy_from_slice(&0xFFF0u16.to_le_bytes());
        let e = check_declared_lengths(&b).unwrap_err();
        assert!(e.contains("(0028,0010)"), "{e}");
        let mut b = sample("data/dicom/CT_small.dcm");
        let pixels = b
            .windows(6)
            .position(|w| w == [0xE0, 0x7F, 0x10, 0x00, b'O', b'W'])
            .unwrap();
        b[pixels + 8..pixels + 12].copy_from_slice(&3_000_000_000u32.to_le_bytes());
        let e = check_declared_lengths(&b).unwrap_err();
        assert!(e.contains("(7FE0,0010) declares 3000000000 bytes"), "{e}");
        // Not DICOM at all: left to the reader.
        assert!(check_declared_lengths(b"not dicom").is_ok());
    }
}
