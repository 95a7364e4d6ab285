//! The `.minr` container: magic, version, then CRC-protected sections ending
//! with `END `. See `docs/FORMAT.md`, chapter "The container".

use thiserror::Error;

use crate::codec::bytes::ByteWriter;

/// The eight bytes every `.minr` file starts with (PNG-style: the high bit
/// catches 7-bit transfers, CR LF and ^Z catch newline mangling).
pub const MAGIC: [u8; 8] = [0x89, b'M', b'I', b'N', b'R', 0x0D, 0x0A, 0x1A];

/// Newest format version this code reads and writes: (major, minor). Each file is written
/// with the oldest version that holds it — 1.0 for the field alone, 2.0 with a residual
/// layer, 3.0 with a temporal mean, 4.0 with a transform stream in the residual layer, 5.0
/// with a context-coded grid table — so older readers keep reading what they can.
pub const VERSION: (u16, u16) = VERSION_5;
/// The version that added context-coded grid tables (symbol-stream mode 4).
pub const VERSION_5: (u16, u16) = (5, 0);
/// The version that added transform streams in the residual layer.
pub const VERSION_4: (u16, u16) = (4, 0);
/// The version that added the temporal mean (`MEAN`).
pub const VERSION_3: (u16, u16) = (3, 0);
/// The version that added the residual layer (`RESI`).
pub const VERSION_2: (u16, u16) = (2, 0);
/// The first format version; still written for files that need nothing newer.
pub const VERSION_1: (u16, u16) = (1, 0);

/// A four-byte section tag.
pub type Tag = [u8; 4];

/// Tag of the mandatory last section.
pub const END_TAG: Tag = *b"END ";

/// Framing bytes around each section payload: tag, length and CRC.
pub const SECTION_OVERHEAD: usize = 12;

/// Critical sections this version of medinr understands. A file with any
/// other critical tag is refused. Extend this list when a new critical
/// section is added (which needs a new major version).
pub const KNOWN_CRITICAL_TAGS: &[Tag] = &[*b"HEAD", *b"NIFT", *b"TENS", *b"RESI", *b"MEAN"];

/// Everything that can be wrong with a `.minr` file or one of its streams.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a .minr file (bad magic)")]
    BadMagic,
    #[error(
        "written with format {major}.{minor}; this medinr reads format {}.x — upgrade medinr",
        VERSION.0
    )]
    NewerVersion { major: u16, minor: u16 },
    #[error("written with format {major}.{minor}, which this medinr cannot read (it reads format {}.x)", VERSION.0)]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("truncated: needed {needed} bytes for '{what}' at offset {offset} in {context}, {left} left")]
    Truncated {
        what: &'static str,
        context: String,
        offset: usize,
        needed: usize,
        left: usize,
    },
    #[error("truncated: section {tag} declares {declared} bytes but {remaining} remain")]
    SectionTruncated {
        tag: String,
        declared: u64,
        remaining: usize,
    },
    #[error("checksum mismatch in section {tag} (stored {stored:#010x}, computed {computed:#010x}): the file is corrupted")]
    ChecksumMismatch {
        tag: String,
        stored: u32,
        computed: u32,
    },
    #[error("invalid section tag {tag:?} at offset {offset}: the file is corrupted")]
    BadTag { tag: String, offset: usize },
    #[error("missing END section: the file is truncated")]
    MissingEnd,
    #[error("END section has length {0}, must be 0: the file is corrupted")]
    NonEmptyEnd(u32),
    #[error("{count} unexpected trailing bytes in {context}")]
    TrailingBytes { count: usize, context: String },
    #[error("unknown critical section {0}: this file needs a newer medinr")]
    UnknownCritical(String),
    #[error("duplicate critical section {0}")]
    DuplicateSection(String),
    #[error("missing required section {0}")]
    MissingSection(String),
    #[error("section {tag} is too large ({len} bytes; at most 4 GiB - 1)")]
    SectionTooLarge { tag: String, len: usize },
    #[error("invalid '{what}' in {context}: {detail}")]
    Invalid {
        what: &'static str,
        context: String,
        detail: String,
    },
}

/// Printable form of a tag (non-ASCII bytes escaped).
pub fn tag_str(tag: &Tag) -> String {
    tag.iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

/// Whether `tag` is well formed: a letter, then three printable ASCII bytes.
pub fn is_valid_tag(tag: &Tag) -> bool {
    tag[0].is_ascii_alphabetic() && tag[1..].iter().all(|b| (0x20..=0x7e).contains(b))
}

/// Critical sections (uppercase first letter) must be understood by a reader.
pub fn is_critical(tag: &Tag) -> bool {
    tag[0].is_ascii_uppercase()
}

/// CRC-32 (ISO-HDLC, as zlib) over tag then payload.
fn section_crc(tag: &Tag, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(tag);
    h.update(payload);
    h.finalize()
}

/// One section: its tag and payload (framing and CRC are implicit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub tag: Tag,
    pub payload: Vec<u8>,
}

/// A parsed or to-be-written `.minr` file: version and sections in file
/// order, without the closing `END ` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub version: (u16, u16),
    pub sections: Vec<Section>,
}

impl Default for Container {
    fn default() -> Self {
        Self::new()
    }
}

impl Container {
    /// An empty container of the current [`VERSION`].
    pub fn new() -> Self {
        Self {
            version: VERSION,
            sections: Vec::new(),
        }
    }

    /// Appends a section. Refuses malformed tags, `END ` (written by
    /// [`to_bytes`](Self::to_bytes)), duplicate critical tags and payloads
    /// over `u32::MAX` bytes.
    pub fn push(&mut self, tag: Tag, payload: Vec<u8>) -> Result<(), FormatError> {
        if !is_valid_tag(&tag) || tag == END_TAG {
            return Err(FormatError::BadTag {
                tag: tag_str(&tag),
                offset: 0,
            });
        }
        if is_critical(&tag) && self.section(tag).is_some() {
            return Err(FormatError::DuplicateSection(tag_str(&tag)));
        }
        if u32::try_from(payload.len()).is_err() {
            return Err(FormatError::SectionTooLarge {
                tag: tag_str(&tag),
                len: payload.len(),
            });
        }
        self.sections.push(Section { tag, payload });
        Ok(())
    }

    /// Serialises the file: magic, version, sections, `END `.
    pub fn to_bytes(&self) -> Vec<u8> {
        let total: usize = 12
            + SECTION_OVERHEAD
            + self
                .sections
                .iter()
                .map(|s| s.payload.len() + SECTION_OVERHEAD)
                .sum::<usize>();
        let mut w = ByteWriter::with_capacity(total);
        w.put_bytes(&MAGIC);
        w.put_u16(self.version.0);
        w.put_u16(self.version.1);
        let end = Section {
            tag: END_TAG,
            payload: Vec::new(),
        };
        for s in self.sections.iter().chain(std::iter::once(&end)) {
            w.put_bytes(&s.tag);
            // `push` guarantees the length fits; saturate rather than panic
            // for sections inserted directly into `sections`.
            w.put_u32(u32::try_from(s.payload.len()).unwrap_or(u32::MAX));
            w.put_bytes(&s.payload);
            w.put_u32(section_crc(&s.tag, &s.payload));
        }
        w.into_vec()
    }

    /// Parses and validates a file, refusing unknown critical sections (see
    /// [`KNOWN_CRITICAL_TAGS`]).
    pub fn parse(bytes: &[u8]) -> Result<Container, FormatError> {
        Self::parse_with(bytes, KNOWN_CRITICAL_TAGS)
    }

    /// Like [`parse`](Self::parse) with an explicit list of known critical
    /// tags. Checks magic, version, every length against the bytes left, every
    /// CRC, that critical tags are known and unique, that `END ` is present
    /// and that nothing follows it. Unknown ancillary sections are kept.
    pub fn parse_with(bytes: &[u8], known_critical: &[Tag]) -> Result<Container, FormatError> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let mut r = crate::codec::bytes::ByteReader::new(&bytes[MAGIC.len()..], "file header");
        let major = r.get_u16("major version")?;
        let minor = r.get_u16("minor version")?;
        if major > VERSION.0 {
            return Err(FormatError::NewerVersion { major, minor });
        }
        if major < VERSION_1.0 {
            return Err(FormatError::UnsupportedVersion { major, minor });
        }
        let mut pos = MAGIC.len() + 4;
        let mut sections: Vec<Section> = Vec::new();
        loop {
            let rest = &bytes[pos..];
            if rest.is_empty() {
                return Err(FormatError::MissingEnd);
            }
            if rest.len() < 8 {
                return Err(FormatError::Truncated {
                    what: "section header",
                    context: "file".into(),
                    offset: pos,
                    needed: 8,
                    left: rest.len(),
                });
            }
            let mut tag = [0u8; 4];
            tag.copy_from_slice(&rest[..4]);
            let mut len_bytes = [0u8; 4];
            len_bytes.copy_from_slice(&rest[4..8]);
            let len = u32::from_le_bytes(len_bytes);
            if !is_valid_tag(&tag) {
                return Err(FormatError::BadTag {
                    tag: tag_str(&tag),
                    offset: pos,
                });
            }
            let after_header = rest.len() - 8;
            if u64::from(len) > after_header as u64 {
                return Err(FormatError::SectionTruncated {
                    tag: tag_str(&tag),
                    declared: u64::from(len),
                    remaining: after_header,
                });
            }
            if len as usize + 4 > after_header {
                return Err(FormatError::Truncated {
                    what: "section CRC",
                    context: format!("section {}", tag_str(&tag)),
                    offset: pos + 8 + len as usize,
                    needed: 4,
                    left: after_header - len as usize,
                });
            }
            let len = len as usize;
            let payload = &rest[8..8 + len];
            let mut crc_bytes = [0u8; 4];
            crc_bytes.copy_from_slice(&rest[8 + len..12 + len]);
            let stored = u32::from_le_bytes(crc_bytes);
            let computed = section_crc(&tag, payload);
            if stored != computed {
                return Err(FormatError::ChecksumMismatch {
                    tag: tag_str(&tag),
                    stored,
                    computed,
                });
            }
            pos += 12 + len;
            if tag == END_TAG {
                if len != 0 {
                    return Err(FormatError::NonEmptyEnd(len as u32));
                }
                if pos != bytes.len() {
                    return Err(FormatError::TrailingBytes {
                        count: bytes.len() - pos,
                        context: "file after END section".into(),
                    });
                }
                break;
            }
            if is_critical(&tag) {
                if !known_critical.contains(&tag) {
                    return Err(FormatError::UnknownCritical(tag_str(&tag)));
                }
                if sections.iter().any(|s| s.tag == tag) {
                    return Err(FormatError::DuplicateSection(tag_str(&tag)));
                }
            }
            sections.push(Section {
                tag,
                payload: payload.to_vec(),
            });
        }
        Ok(Container {
            version: (major, minor),
            sections,
        })
    }

    /// Payload of the first section with `tag`, if any.
    pub fn section(&self, tag: Tag) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|s| s.tag == tag)
            .map(|s| s.payload.as_slice())
    }

    /// Payload of section `tag`, or [`FormatError::MissingSection`].
    pub fn require(&self, tag: Tag) -> Result<&[u8], FormatError> {
        self.section(tag)
            .ok_or_else(|| FormatError::MissingSection(tag_str(&tag)))
    }

    /// (tag, payload bytes) of each section in file order, for `info`. Each
    /// section costs [`SECTION_OVERHEAD`] more bytes in the file, and the
    /// file adds 12 bytes of header plus 12 for `END `.
    pub fn section_sizes(&self) -> Vec<(String, usize)> {
        self.sections
            .iter()
            .map(|s| (tag_str(&s.tag), s.payload.len()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Container {
        let mut c = Container::new();
        c.push(*b"HEAD", vec![1, 2, 3]).unwrap();
        c.push(*b"TENS", (0..=255u8).collect()).unwrap();
        c.push(*b"note", b"hello".to_vec()).unwrap();
        c
    }

    /// Builds a file from raw (tag, payload) pairs and a version, with
    /// correct CRCs and an END section.
    fn raw_file(version: (u16, u16), secs: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut w = ByteWriter::new();
        w.put_bytes(&MAGIC);
        w.put_u16(version.0);
        w.put_u16(version.1);
        for (tag, p) in secs.iter().chain(std::iter::once(&(&END_TAG, &[][..]))) {
            w.put_bytes(*tag);
            w.put_u32(p.len() as u32);
            w.put_bytes(p);
            w.put_u32(section_crc(tag, p));
        }
        w.into_vec()
    }

    #[test]
    fn crc_check_value() {
        // The standard CRC-32 check value, quoted in FORMAT.md.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip() {
        let c = sample();
        let bytes = c.to_bytes();
        assert_eq!(&bytes[..8], &MAGIC);
        assert_eq!(
            bytes.len(),
            12 + 12
                + c.sections
                    .iter()
                    .map(|s| 12 + s.payload.len())
                    .sum::<usize>()
        );
        let d = Container::parse(&bytes).unwrap();
        assert_eq!(c, d);
        assert_eq!(d.section(*b"HEAD"), Some(&[1u8, 2, 3][..]));
        assert_eq!(d.require(*b"note").unwrap(), b"hello");
        assert!(matches!(
            d.require(*b"NIFT"),
            Err(FormatError::MissingSection(_))
        ));
        assert_eq!(
            d.section_sizes(),
            vec![
                ("HEAD".to_string(), 3),
                ("TENS".to_string(), 256),
                ("note".to_string(), 5)
            ]
        );
        // Empty container.
        let e = Container::new();
        assert_eq!(Container::parse(&e.to_bytes()).unwrap(), e);
    }

    #[test]
    fn push_rejects_bad_input() {
        let mut c = sample();
        assert!(c.push(*b"HEAD", vec![]).is_err());
        assert!(c.push(END_TAG, vec![]).is_err());
        assert!(c.push(*b"1abc", vec![]).is_err());
        assert!(c.push([b'a', 0, 0, 0], vec![]).is_err());
        c.push(*b"note", vec![9]).unwrap(); // ancillary may repeat
    }

    #[test]
    fn bad_magic() {
        let mut b = sample().to_bytes();
        assert_eq!(Container::parse(&b[..5]), Err(FormatError::BadMagic));
        b[0] = 0x09; // 7-bit stripped
        let e = Container::parse(&b).unwrap_err();
        assert_eq!(e.to_string(), "not a .minr file (bad magic)");
        assert_eq!(Container::parse(b"hello"), Err(FormatError::BadMagic));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = sample().to_bytes();
        for n in 0..b.len() {
            assert!(Container::parse(&b[..n]).is_err(), "prefix {n}");
        }
        let e = Container::parse(&b[..b.len() - 12]).unwrap_err();
        assert_eq!(e, FormatError::MissingEnd);
        assert_eq!(e.to_string(), "missing END section: the file is truncated");
        let e = Container::parse(&b[..35 + 100]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "truncated: section TENS declares 256 bytes but 100 remain"
        );
    }

    #[test]
    fn every_bit_flip_is_an_error() {
        let b = sample().to_bytes();
        for i in 0..b.len() * 8 {
            if (80..96).contains(&i) {
                // The minor version is not checksummed: any minor of major 1
                // reads the same sections, so a flip there is harmless.
                continue;
            }
            let mut c = b.clone();
            c[i / 8] ^= 1 << (i % 8);
            let major = u16::from_le_bytes([c[8], c[9]]);
            if (64..80).contains(&i) && (VERSION_1.0..=VERSION.0).contains(&major) {
                // Another known major: the payload rules refuse a section the version
                // cannot hold (RESI before 2, MEAN before 3); anything else reads the same.
                continue;
            }
            assert!(Container::parse(&c).is_err(), "bit {i}");
        }
    }

    #[test]
    fn checksum_message() {
        let mut b = sample().to_bytes();
        b[12 + 8] ^= 0xff; // first HEAD payload byte
        let e = Container::parse(&b).unwrap_err();
        assert!(matches!(e, FormatError::ChecksumMismatch { .. }));
        let s = e.to_string();
        assert!(
            s.starts_with("checksum mismatch in section HEAD (stored 0x"),
            "{s}"
        );
        assert!(s.ends_with("): the file is corrupted"), "{s}");
    }

    #[test]
    fn trailing_bytes_refused() {
        let mut b = sample().to_bytes();
        b.push(0);
        assert_eq!(
            Container::parse(&b).unwrap_err().to_string(),
            "1 unexpected trailing bytes in file after END section"
        );
    }

    #[test]
    fn ancillary_skipped_critical_refused() {
        let ok = raw_file((1, 0), &[(b"HEAD", b"x"), (b"zzzz", b"whatever")]);
        let c = Container::parse(&ok).unwrap();
        assert_eq!(c.section(*b"HEAD"), Some(&b"x"[..]));
        let bad = raw_file((1, 0), &[(b"HEAD", b"x"), (b"ZZZZ", b"whatever")]);
        assert_eq!(
            Container::parse(&bad),
            Err(FormatError::UnknownCritical("ZZZZ".into()))
        );
        assert!(Container::parse_with(&bad, &[*b"HEAD", *b"ZZZZ"]).is_ok());
        let dup = raw_file((1, 0), &[(b"HEAD", b"x"), (b"HEAD", b"y")]);
        assert_eq!(
            Container::parse(&dup),
            Err(FormatError::DuplicateSection("HEAD".into()))
        );
        let end_not_empty = raw_file((1, 0), &[(b"END ", b"y")]);
        assert!(Container::parse(&end_not_empty).is_err());
    }

    #[test]
    fn version_rules() {
        let newer_major = raw_file((6, 0), &[(b"HEAD", b"x")]);
        let e = Container::parse(&newer_major).unwrap_err();
        assert_eq!(
            e.to_string(),
            "written with format 6.0; this medinr reads format 5.x — upgrade medinr"
        );
        for major in 1..=5 {
            let known = raw_file((major, 0), &[(b"HEAD", b"x")]);
            assert_eq!(Container::parse(&known).unwrap().version, (major, 0));
        }
        let older = raw_file((0, 9), &[]);
        assert!(matches!(
            Container::parse(&older),
            Err(FormatError::UnsupportedVersion { .. })
        ));
        let newer_minor = raw_file((1, 7), &[(b"HEAD", b"x"), (b"newx", b"extra")]);
        let c = Container::parse(&newer_minor).unwrap();
        assert_eq!(c.version, (1, 7));
        assert_eq!(c.sections.len(), 2);
    }
}
