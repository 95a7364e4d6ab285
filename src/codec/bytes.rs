//! Little-endian byte primitives shared by every part of the format.
//!
//! [`ByteWriter`] appends fixed-width little-endian integers and floats,
//! unsigned LEB128 varints and zigzag signed varints. [`ByteReader`] mirrors
//! it over untrusted input: every read is bounds-checked and a failure names
//! the field being read, its offset and the section it belongs to.

use crate::codec::container::FormatError;

/// Longest valid varint: ten bytes carry 70 bits, enough for any `u64`.
pub const MAX_VARINT_LEN: usize = 10;

/// Maps a signed integer to an unsigned one so that small magnitudes stay
/// small: 0, -1, 1, -2, 2, … become 0, 1, 2, 3, 4, ….
#[inline]
pub fn zigzag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag_encode`].
#[inline]
pub fn zigzag_decode(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Number of bytes [`ByteWriter::put_varint`] writes for `v`.
#[inline]
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Growable output buffer of little-endian values.
#[derive(Debug, Default, Clone)]
pub struct ByteWriter {
    buf: Vec<u8>,
}

impl ByteWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    /// Consumes the writer, returning its bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn put_u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn put_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// IEEE 754 binary32, little-endian bit pattern.
    pub fn put_f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// IEEE 754 binary64, little-endian bit pattern.
    pub fn put_f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Unsigned LEB128: 7 bits per byte, least significant group first, high
    /// bit set on every byte but the last.
    pub fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// Signed varint: zigzag mapping then [`put_varint`](Self::put_varint).
    pub fn put_ivarint(&mut self, v: i64) {
        self.put_varint(zigzag_encode(v));
    }

    /// Raw bytes, no length.
    pub fn put_bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Varint length followed by the bytes.
    pub fn put_len_bytes(&mut self, b: &[u8]) {
        self.put_varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
}

/// Bounds-checked cursor over untrusted bytes.
///
/// `context` names the enclosing section or stream in error messages.
#[derive(Debug, Clone)]
pub struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
    context: &'a str,
}

impl<'a> ByteReader<'a> {
    /// A reader at the start of `data`; `context` (e.g. a section tag) is
    /// quoted in errors.
    pub fn new(data: &'a [u8], context: &'a str) -> Self {
        Self {
            data,
            pos: 0,
            context,
        }
    }

    /// Offset of the next byte to read, from the start of the reader's data.
    #[cfg(test)]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    /// The error for a value of `needed` bytes that does not fit.
    pub fn truncated(&self, needed: usize, what: &'static str) -> FormatError {
        FormatError::Truncated {
            what,
            context: self.context.to_string(),
            offset: self.pos,
            needed,
            left: self.remaining(),
        }
    }

    /// An [`FormatError::Invalid`] for a field that was read but makes no sense.
    pub fn invalid(&self, what: &'static str, detail: impl Into<String>) -> FormatError {
        FormatError::Invalid {
            what,
            context: self.context.to_string(),
            detail: detail.into(),
        }
    }

    /// Consumes exactly `n` bytes.
    pub fn get_bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(self.truncated(n, what));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn get_array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let b = self.get_bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    pub fn get_u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.get_array::<1>(what)?[0])
    }

    pub fn get_u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.get_array(what)?))
    }

    pub fn get_u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.get_array(what)?))
    }

    pub fn get_u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.get_array(what)?))
    }

    pub fn get_f32(&mut self, what: &'static str) -> Result<f32, FormatError> {
        Ok(f32::from_le_bytes(self.get_array(what)?))
    }

    pub fn get_f64(&mut self, what: &'static str) -> Result<f64, FormatError> {
        Ok(f64::from_le_bytes(self.get_array(what)?))
    }

    /// Unsigned LEB128. Refuses encodings longer than ten bytes, values that
    /// overflow `u64`, and non-canonical (over-long) encodings whose last
    /// byte is zero.
    pub fn get_varint(&mut self, what: &'static str) -> Result<u64, FormatError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let Some(&b) = self.data.get(self.pos) else {
                self.pos = start;
                return Err(FormatError::Truncated {
                    what,
                    context: self.context.to_string(),
                    offset: start,
                    needed: i + 1,
                    left: i,
                });
            };
            self.pos += 1;
            let low = u64::from(b & 0x7f);
            if i == MAX_VARINT_LEN - 1 && low > 1 {
                return Err(self.bad_varint(what, start, "overflows 64 bits"));
            }
            v |= low << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(self.bad_varint(what, start, "is not minimally encoded"));
                }
                return Ok(v);
            }
        }
        Err(self.bad_varint(what, start, "is longer than 10 bytes"))
    }

    fn bad_varint(&self, what: &'static str, offset: usize, why: &str) -> FormatError {
        FormatError::Invalid {
            what,
            context: self.context.to_string(),
            detail: format!("varint at offset {offset} {why}"),
        }
    }

    /// Zigzag signed varint.
    pub fn get_ivarint(&mut self, what: &'static str) -> Result<i64, FormatError> {
        Ok(zigzag_decode(self.get_varint(what)?))
    }

    /// A varint that must fit in `usize`.
    pub fn get_varint_usize(&mut self, what: &'static str) -> Result<usize, FormatError> {
        let v = self.get_varint(what)?;
        usize::try_from(v).map_err(|_| self.invalid(what, format!("{v} does not fit in memory")))
    }

    /// A varint element count, checked against the remaining bytes assuming
    /// each element takes at least `min_bytes_each` bytes, so that callers can
    /// allocate `count` elements without trusting the file.
    pub fn get_count(
        &mut self,
        what: &'static str,
        min_bytes_each: usize,
    ) -> Result<usize, FormatError> {
        let offset = self.pos;
        let n = self.get_varint_usize(what)?;
        let need = n.saturating_mul(min_bytes_each);
        if need > self.remaining() {
            return Err(FormatError::Invalid {
                what,
                context: self.context.to_string(),
                detail: format!(
                    "count {n} at offset {offset} needs at least {need} bytes but {} remain",
                    self.remaining()
                ),
            });
        }
        Ok(n)
    }

    /// Varint length followed by that many bytes.
    pub fn get_len_bytes(&mut self, what: &'static str) -> Result<&'a [u8], FormatError> {
        let n = self.get_varint_usize(what)?;
        self.get_bytes(n, what)
    }

    /// Succeeds only if every byte was consumed.
    pub fn finish(self) -> Result<(), FormatError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(FormatError::TrailingBytes {
                count: self.remaining(),
                context: self.context.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let mut w = ByteWriter::new();
        w.put_u8(7);
        w.put_u16(0xBEEF);
        w.put_u32(0xDEAD_BEEF);
        w.put_u64(u64::MAX - 3);
        w.put_f32(-1.5);
        w.put_f64(std::f64::consts::PI);
        let vals = [
            0u64,
            1,
            127,
            128,
            300,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX,
        ];
        for &v in &vals {
            w.put_varint(v);
        }
        let ivals = [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX];
        for &v in &ivals {
            w.put_ivarint(v);
        }
        w.put_len_bytes(b"abc");
        let bytes = w.into_vec();
        let mut r = ByteReader::new(&bytes, "test");
        assert_eq!(r.get_u8("a").unwrap(), 7);
        assert_eq!(r.get_u16("b").unwrap(), 0xBEEF);
        assert_eq!(r.get_u32("c").unwrap(), 0xDEAD_BEEF);
        assert_eq!(r.get_u64("d").unwrap(), u64::MAX - 3);
        assert_eq!(r.get_f32("e").unwrap(), -1.5);
        assert_eq!(r.get_f64("f").unwrap(), std::f64::consts::PI);
        for &v in &vals {
            let p = r.position();
            assert_eq!(r.get_varint("v").unwrap(), v);
            assert_eq!(r.position() - p, varint_len(v));
        }
        for &v in &ivals {
            assert_eq!(r.get_ivarint("i").unwrap(), v);
        }
        assert_eq!(r.get_len_bytes("s").unwrap(), b"abc");
        r.finish().unwrap();
    }

    #[test]
    fn zigzag_small_magnitudes() {
        assert_eq!(zigzag_encode(0), 0);
        assert_eq!(zigzag_encode(-1), 1);
        assert_eq!(zigzag_encode(1), 2);
        assert_eq!(zigzag_encode(-2), 3);
        assert_eq!(zigzag_encode(i64::MIN), u64::MAX);
    }

    #[test]
    fn truncation_message_names_field() {
        let bytes = [0u8; 2];
        let mut r = ByteReader::new(&bytes, "HEAD");
        let e = r.get_u32("step").unwrap_err();
        assert_eq!(
            e.to_string(),
            "truncated: needed 4 bytes for 'step' at offset 0 in HEAD, 2 left"
        );
        let mut r = ByteReader::new(&bytes, "HEAD");
        r.get_u8("x").unwrap();
        r.clone().finish().unwrap_err();
        assert_eq!(
            r.finish().unwrap_err().to_string(),
            "1 unexpected trailing bytes in HEAD"
        );
    }

    #[test]
    fn bad_varints() {
        // 11 continuation bytes.
        let b = [0x80u8; 11];
        assert!(ByteReader::new(&b, "t").get_varint("v").is_err());
        // Ten bytes, last carries more than bit 63.
        let mut b = [0xffu8; 10];
        b[9] = 0x02;
        assert!(ByteReader::new(&b, "t").get_varint("v").is_err());
        b[9] = 0x01;
        assert_eq!(ByteReader::new(&b, "t").get_varint("v").unwrap(), u64::MAX);
        // Over-long zero.
        assert!(ByteReader::new(&[0x80, 0x00], "t").get_varint("v").is_err());
        // Truncated.
        assert!(matches!(
            ByteReader::new(&[0x80, 0x80], "t").get_varint("v"),
            Err(FormatError::Truncated { .. })
        ));
        // Count too large for the data.
        assert!(ByteReader::new(&[100, 1, 2], "t")
            .get_count("n", 1)
            .is_err());
        assert_eq!(
            ByteReader::new(&[2, 1, 2], "t").get_count("n", 1).unwrap(),
            2
        );
    }
}
