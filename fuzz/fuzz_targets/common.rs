//! Shared by the targets: framing fuzz input as a `.minr` container (docs/FORMAT.md) with
//! valid magic and CRCs, so mutations reach the payload parsers instead of dying at the
//! checksums; and bounded decoding of whatever the decoder accepts.
#![allow(dead_code)]

use medinr::decoder::{Decoder, Region};
use medinr::residual::StreamHeader;

const MAGIC: [u8; 8] = [0x89, b'M', b'I', b'N', b'R', 0x0D, 0x0A, 0x1A];

fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Reads the input as a `.minr` file whose checksums are ignored: bytes 0..8 (magic) are
/// replaced, 8..12 (version) kept, then sections `tag, len, payload, crc` with `len` clipped
/// to what is left; every CRC is recomputed, RESI payloads get their own CRCs fixed
/// ([`frame_residual`]), and `END ` is appended if the input has none. Real files (the seed
/// corpus) come out unchanged.
pub fn frame_container(data: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let version = data.get(8..12).unwrap_or(&[1, 0, 0, 0]);
    out.extend_from_slice(version);
    let mut rest = data.get(12..).unwrap_or(&[]);
    let mut ended = false;
    while rest.len() >= 8 && !ended {
        let tag: [u8; 4] = rest[..4].try_into().unwrap_or([0; 4]);
        let declared = u32::from_le_bytes(rest[4..8].try_into().unwrap_or([0; 4])) as usize;
        let len = declared.min(rest.len() - 8);
        let payload = &rest[8..8 + len];
        let payload = if &tag == b"RESI" {
            frame_residual(payload)
        } else {
            payload.to_vec()
        };
        rest = &rest[(8 + len + 4).min(rest.len())..];
        out.extend_from_slice(&tag);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&crc(&[&tag, &payload]).to_le_bytes());
        ended = &tag == b"END ";
    }
    if !ended {
        out.extend_from_slice(b"END ");
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&crc(&[b"END "]).to_le_bytes());
    }
    out
}

/// A residual stream with its chunk CRCs and index CRC recomputed, chunk lengths clipped so
/// the chunks exactly fill the stream. Input whose header does not parse is returned as is.
pub fn frame_residual(data: &[u8]) -> Vec<u8> {
    let Ok(header) = StreamHeader::read(data) else {
        return data.to_vec();
    };
    let count = header.chunk_count();
    // 56 bytes, or 80 with a region of interest (stream version 2).
    let start = header.bytes();
    let index_end = match count.checked_mul(8).and_then(|n| n.checked_add(start)) {
        Some(e) if e + 4 <= data.len() => e,
        _ => return data.to_vec(),
    };
    let mut out = data[..index_end].to_vec();
    let mut pos = index_end + 4;
    for c in 0..count {
        let o = start + c * 8;
        let declared = u32::from_le_bytes(out[o..o + 4].try_into().unwrap_or([0; 4])) as usize;
        // The last chunk takes everything left, so the table always covers the stream.
        let len = if c + 1 == count {
            data.len() - pos.min(data.len())
        } else {
            declared.min(data.len() - pos.min(data.len()))
        };
        let chunk = &data[pos.min(data.len())..(pos + len).min(data.len())];
        out[o..o + 4].copy_from_slice(&(len as u32).to_le_bytes());
        out[o + 4..o + 8].copy_from_slice(&crc(&[chunk]).to_le_bytes());
        pos += len;
    }
    let index_crc = crc(&[&out]);
    out.extend_from_slice(&index_crc.to_le_bytes());
    out.extend_from_slice(&data[(index_end + 4).min(data.len())..]);
    out
}

/// Decodes what `bytes` holds, bounded: the whole scan when it is small, else one slice of
/// the field (no residual), plus the field on a small other grid.
pub fn decode_bounded(bytes: &[u8]) {
    let Ok(decoder) = Decoder::from_bytes(bytes) else {
        return;
    };
    let shape = decoder.shape();
    let total: u128 = shape.iter().map(|&n| n as u128).product();
    if total <= 1 << 16 {
        let _ = decoder.decode(None);
    } else if (shape[0] as u128) * (shape[1] as u128) <= 1 << 16 && !decoder.has_residual() {
        let region = Region::Slice {
            axis: 2,
            index: shape[2] / 2,
            frame: 0,
        };
        let _ = decoder.region(shape, region);
    }
    let _ = decoder.region([3, 2, 5, shape[3].min(2)], Region::Frame(0));
}
