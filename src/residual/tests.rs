//! Round trips (exactness, the error bound), chunk-wise decoding and corrupt streams.

use super::*;
use std::path::PathBuf;

/// A deterministic pseudo-random sequence (xorshift), so tests need no seed handling.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn noise(&mut self, amplitude: i64) -> i64 {
        (self.next() % (2 * amplitude as u64 + 1)) as i64 - amplitude
    }
}

/// A smooth blob plus noise, clamped to `[min, max]`, and a "field" that misses the noise
/// and is biased in places.
fn synthetic(shape: [usize; 4], min: i64, max: i64, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng(seed | 1);
    let [nx, ny, nz, nt] = shape;
    let mut orig = Vec::new();
    let mut field = Vec::new();
    let span = (max - min) as f64;
    for t in 0..nt {
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let (fx, fy, fz) = (
                        x as f64 / nx as f64,
                        y as f64 / ny as f64,
                        z as f64 / nz as f64,
                    );
                    let smooth = (fx * 6.0).sin() * (fy * 4.0).cos() + fz + 0.05 * t as f64;
                    let base = min as f64 + span * (0.5 + 0.3 * smooth).clamp(0.0, 1.0);
                    let v = (base as i64 + rng.noise((span / 40.0) as i64 + 1)).clamp(min, max);
                    let p = (base as i64 + if x > nx / 2 { 3 } else { 0 }).clamp(min, max);
                    orig.push(v as f32);
                    field.push(p as f32);
                }
            }
        }
    }
    (orig, field)
}

fn max_error(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .fold(0.0, f64::max)
}

/// Encodes and decodes; checks the bound (and exactness for D = 0); returns the byte count.
fn check_integer(
    orig: &[f32],
    field: Option<&[f32]>,
    shape: [usize; 4],
    kind: Kind,
    d: f64,
    options: &Options,
) -> usize {
    let mode = if d == 0.0 {
        Mode::Lossless
    } else {
        Mode::Bound { max_error: d }
    };
    let bytes = encode_with(orig, field, shape, mode, kind, options).unwrap();
    let back = decode(&bytes, field).unwrap();
    assert_eq!(back.len(), orig.len());
    let err = max_error(orig, &back);
    assert!(err <= d.floor(), "max error {err} > {d}");
    if d == 0.0 {
        assert_eq!(orig, back.as_slice());
    }
    bytes.len()
}

#[test]
fn integer_round_trips_are_within_the_bound() {
    let kinds = [
        Kind::Integer { min: 0, max: 255 },
        Kind::Integer {
            min: -1024,
            max: 3071,
        },
    ];
    let shapes = [
        [17, 13, 9, 1],
        [8, 6, 5, 7],
        [1, 1, 1, 1],
        [5, 1, 3, 2],
        [1, 9, 1, 4],
    ];
    for (s, &shape) in shapes.iter().enumerate() {
        for &kind in &kinds {
            let Kind::Integer { min, max } = kind else {
                unreachable!()
            };
            let (orig, field) = synthetic(shape, min, max, 7 + s as u64);
            for d in [0.0, 1.0, 4.0, 16.0, 4.7] {
                for options in [
                    Options::default(),
                    Options {
                        chunk_z: 2,
                        chunk_t: 3,
                    },
                ] {
                    check_integer(&orig, Some(&field), shape, kind, d, &options);
                    check_integer(&orig, None, shape, kind, d, &options);
                }
            }
        }
    }
}

#[test]
fn extreme_values_and_predictions_round_trip() {
    // Values at the ends of the range, predictions at the opposite end.
    let shape = [6, 5, 4, 1];
    let n = 120;
    let kind = Kind::Integer {
        min: -32768,
        max: 32767,
    };
    let orig: Vec<f32> = (0..n)
        .map(|i| if i % 3 == 0 { -32768.0 } else { 32767.0 })
        .collect();
    let field: Vec<f32> = orig.iter().map(|&v| -v - 1.0).collect();
    for d in [0.0, 1.0, 16.0, 100000.0] {
        check_integer(&orig, Some(&field), shape, kind, d, &Options::default());
    }
    // The widest range: lossless only (f32 is inexact beyond 2^24); within ±2^24 any bound.
    let kind = Kind::Integer {
        min: i32::MIN as i64,
        max: u32::MAX as i64,
    };
    let orig: Vec<f32> = (0..n)
        .map(|i| ((i as i64 * 987_654_321) % (1 << 31)) as f32)
        .collect();
    check_integer(&orig, None, shape, kind, 0.0, &Options::default());
    let bounded = encode(&orig, None, shape, Mode::Bound { max_error: 1e3 }, kind);
    assert!(matches!(
        bounded,
        Err(ResidualError::RangeTooWideForBound { .. })
    ));
    let kind = Kind::Integer {
        min: -(1 << 24),
        max: 1 << 24,
    };
    let orig: Vec<f32> = orig
        .iter()
        .map(|&v| (v as i64 % (1 << 24)) as f32)
        .collect();
    for d in [0.0, 1e3, 1e12] {
        check_integer(&orig, None, shape, kind, d, &Options::default());
    }
}

#[test]
fn a_good_field_makes_the_stream_smaller() {
    let shape = [32, 32, 16, 1];
    let kind = Kind::Integer { min: 0, max: 4095 };
    let (orig, _) = synthetic(shape, 0, 4095, 3);
    // A field that knows the exact values except for small errors.
    let mut rng = Rng(99);
    let good: Vec<f32> = orig
        .iter()
        .map(|&v| (v as i64 + rng.noise(2)).clamp(0, 4095) as f32)
        .collect();
    let with = check_integer(&orig, Some(&good), shape, kind, 0.0, &Options::default());
    let without = check_integer(&orig, None, shape, kind, 0.0, &Options::default());
    assert!(
        with * 2 < without,
        "with field {with} bytes, without {without}"
    );
}

#[test]
fn float_lossless_keeps_every_bit() {
    let mut rng = Rng(5);
    let shape = [7, 6, 5, 2];
    let mut orig: Vec<f32> = (0..420)
        .map(|i| (i as f32 * 0.37).sin() * 1000.0 + rng.noise(3) as f32 * 0.01)
        .collect();
    orig[3] = f32::NAN;
    orig[4] = f32::from_bits(0x7FC0_1234);
    orig[5] = -0.0;
    orig[6] = f32::INFINITY;
    orig[7] = f32::NEG_INFINITY;
    orig[8] = 1e-42;
    let field: Vec<f32> = orig.iter().map(|&v| v + 0.5).collect();
    for f in [Some(field.as_slice()), None] {
        for mode in [Mode::Lossless, Mode::Bound { max_error: 0.0 }] {
            let bytes = encode(&orig, f, shape, mode, Kind::Float).unwrap();
            let back = decode(&bytes, f).unwrap();
            let a: Vec<u32> = orig.iter().map(|v| v.to_bits()).collect();
            let b: Vec<u32> = back.iter().map(|v| v.to_bits()).collect();
            assert_eq!(a, b);
        }
    }
}

/// A copy of a one-chunk stream (`header` bytes of stream header) with one random bit of its
/// chunk data flipped and the chunk and index checksums recomputed, so only the decoder's own
/// checks stand between the corruption and the output.
fn flip_chunk_bit_with_valid_crcs(bytes: &[u8], header: usize, rng: &mut Rng) -> Vec<u8> {
    let crc_at = header + 4;
    let data_start = header + stream::TABLE_ENTRY_BYTES + stream::INDEX_CRC_BYTES;
    let mut b = bytes.to_vec();
    let at = data_start + (rng.next() as usize % (b.len() - data_start));
    b[at] ^= 1 << (rng.next() % 8);
    let crc = crc32fast::hash(&b[data_start..]);
    b[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    let index_crc = crc32fast::hash(&b[..crc_at + 4]);
    b[crc_at + 4..data_start].copy_from_slice(&index_crc.to_le_bytes());
    b
}

/// A small float scan (9×8×6) with NaN, a huge value and −∞ among smooth noisy values, and a
/// field prediction 10 % off.
fn float_scan_with_escapes(seed: u64) -> ([usize; 4], Vec<f32>, Vec<f32>) {
    let mut rng = Rng(seed);
    let shape = [9, 8, 6, 1];
    let mut orig: Vec<f32> = (0..432)
        .map(|i| (i as f32 * 0.1).cos() * 50.0 + rng.noise(100) as f32 * 1e-3)
        .collect();
    orig[10] = f32::NAN;
    orig[11] = 3e38;
    orig[12] = -f32::INFINITY;
    let field: Vec<f32> = orig.iter().map(|&v| v * 0.9).collect();
    (shape, orig, field)
}

#[test]
fn float_bound_holds_with_escapes() {
    let (shape, orig, field) = float_scan_with_escapes(11);
    for d in [1e-6, 0.01, 1.0, 16.0] {
        for f in [Some(field.as_slice()), None] {
            let bytes = encode(&orig, f, shape, Mode::Bound { max_error: d }, Kind::Float).unwrap();
            let back = decode(&bytes, f).unwrap();
            for (i, (&x, &y)) in orig.iter().zip(&back).enumerate() {
                if x.is_finite() {
                    assert!(
                        (x as f64 - y as f64).abs() <= d,
                        "voxel {i}: {x} vs {y}, D {d}"
                    );
                } else {
                    assert_eq!(x.to_bits(), y.to_bits());
                }
            }
        }
    }
}

#[test]
fn a_chunk_decodes_alone_to_its_part_of_the_scan() {
    let shape = [12, 10, 11, 5];
    let kind = Kind::Integer { min: 0, max: 1000 };
    let (orig, field) = synthetic(shape, 0, 1000, 21);
    let options = Options {
        chunk_z: 4,
        chunk_t: 2,
    };
    let bytes = encode_with(
        &orig,
        Some(&field),
        shape,
        Mode::Bound { max_error: 2.0 },
        kind,
        &options,
    )
    .unwrap();
    let full = decode(&bytes, Some(&field)).unwrap();
    let reader = Reader::open(&bytes).unwrap();
    assert_eq!(reader.chunk_count(), 3 * 3);
    let c = reader.chunk_of(9, 4).unwrap();
    let region = reader.chunk_region(c).unwrap();
    assert_eq!(region, ChunkRegion { z: 8..11, t: 4..5 });
    let pick = |v: &[f32]| region_values(v, shape, &region);
    let part = reader.decode_chunk(c, Some(&pick(&field))).unwrap();
    assert_eq!(part, pick(&full));
    // Without the prediction, or with the wrong amount, the chunk is refused.
    assert_eq!(
        reader.decode_chunk(c, None),
        Err(ResidualError::PredictionPresence)
    );
    assert!(reader.decode_chunk(c, Some(&field[..5])).is_err());
    assert!(reader.chunk_of(11, 0).is_err());
}

#[test]
fn corrupt_streams_give_errors_not_panics() {
    let shape = [10, 9, 8, 3];
    let kind = Kind::Integer { min: 0, max: 255 };
    let (orig, field) = synthetic(shape, 0, 255, 33);
    let options = Options {
        chunk_z: 3,
        chunk_t: 2,
    };
    let bytes = encode_with(
        &orig,
        Some(&field),
        shape,
        Mode::Bound { max_error: 1.0 },
        kind,
        &options,
    )
    .unwrap();
    assert!(decode(&bytes, Some(&field)).is_ok());
    for len in (0..bytes.len()).step_by(7) {
        assert!(
            decode(&bytes[..len], Some(&field)).is_err(),
            "truncated to {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode(&longer, Some(&field)).is_err());
    for bit in (0..bytes.len() * 8).step_by(13) {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(decode(&b, Some(&field)).is_err(), "bit {bit} flipped");
    }
}

#[test]
fn corrupt_chunk_data_with_a_valid_checksum_never_panics() {
    // The checksum catches accidents; this checks the decoder itself against crafted data.
    let shape = [10, 9, 8, 1];
    let kind = Kind::Integer { min: 0, max: 255 };
    let (orig, field) = synthetic(shape, 0, 255, 35);
    let bytes = encode(&orig, Some(&field), shape, Mode::Lossless, kind).unwrap();
    let mut rng = Rng(77);
    let mut refused = 0;
    for _ in 0..200 {
        let b = flip_chunk_bit_with_valid_crcs(&bytes, stream::HEADER_BYTES, &mut rng);
        if let Ok(v) = decode(&b, Some(&field)) {
            assert!(v.iter().all(|&x| (0.0..=255.0).contains(&x)));
        } else {
            refused += 1;
        }
    }
    assert!(
        refused > 100,
        "only {refused} of 200 corrupt chunks refused"
    );
}

/// The worked example of docs/FORMAT.md, chapter "Residual layer": those exact bytes.
#[test]
fn the_documented_example_stream_is_reproduced() {
    let orig = [10.0f32, 12.0, 11.0, 13.0, 40.0, 12.0];
    let bytes = encode(
        &orig,
        None,
        [3, 2, 1, 1],
        Mode::Lossless,
        Kind::Integer { min: 0, max: 255 },
    )
    .unwrap();
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let expected = "4d 49 52 53 01 00 00 00 03 00 00 00 02 00 00 00 01 00 00 00 01 00 00 00 \
                    01 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 00 \
                    00 00 00 00 00 00 00 00 0a 00 00 00 3c c0 21 90 9e cc 51 42 \
                    00 b9 52 d2 61 16 e3 70 00 00";
    assert_eq!(
        hex.join(" "),
        expected.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert_eq!(decode(&bytes, None).unwrap(), orig);
}

#[test]
fn invalid_arguments_are_refused() {
    let shape = [2, 2, 1, 1];
    let k = Kind::Integer { min: 0, max: 10 };
    let ok = [1.0f32, 2.0, 3.0, 4.0];
    let l = Mode::Lossless;
    assert!(matches!(
        encode(&[1.5, 2.0, 3.0, 4.0], None, shape, l, k),
        Err(ResidualError::ValueOutOfRange { index: 0, .. })
    ));
    assert!(matches!(
        encode(&[1.0, 2.0, 3.0, 11.0], None, shape, l, k),
        Err(ResidualError::ValueOutOfRange { index: 3, .. })
    ));
    assert!(matches!(
        encode(&ok, Some(&[0.0, 0.0, f32::NAN, 0.0]), shape, l, k),
        Err(ResidualError::ValueOutOfRange { index: 2, .. })
    ));
    assert!(matches!(
        encode(&ok, Some(&[0.0, 0.5, 0.0, 0.0]), shape, l, k),
        Err(ResidualError::ValueOutOfRange { index: 1, .. })
    ));
    // Predictions outside the range are clamped, not refused.
    let far = [-5.0f32, 1e6, 3.0, 11.0];
    let bytes = encode(&ok, Some(&far), shape, l, k).unwrap();
    assert_eq!(decode(&bytes, Some(&far)).unwrap(), ok);
    assert!(matches!(
        encode(&ok[..3], None, shape, l, k),
        Err(ResidualError::LengthMismatch { .. })
    ));
    assert!(matches!(
        encode(&ok, None, [2, 2, 0, 1], l, k),
        Err(ResidualError::InvalidShape(_))
    ));
    assert!(matches!(
        encode(&ok, None, shape, Mode::Bound { max_error: -1.0 }, k),
        Err(ResidualError::InvalidBound(_))
    ));
    assert!(matches!(
        encode(
            &ok,
            None,
            shape,
            Mode::Bound {
                max_error: f64::NAN
            },
            Kind::Float
        ),
        Err(ResidualError::InvalidBound(_))
    ));
    assert!(matches!(
        encode(&ok, None, shape, l, Kind::Integer { min: 5, max: 1 }),
        Err(ResidualError::InvalidRange { .. })
    ));
    assert_eq!(decode(b"XXXX", None), Err(ResidualError::BadMagic));
}

fn sample_dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    vec![root.join("data")]
}

/// A stand-in for the field: the scan blurred along x and y (3×3 box), rounded and clamped.
fn blurred(v: &[f32], shape: [usize; 4], kind: Kind) -> Vec<f32> {
    let [nx, ny, ..] = shape;
    let Kind::Integer { min, max } = kind else {
        return v.to_vec();
    };
    let mut out = vec![0f32; v.len()];
    for (s, (src, dst)) in v.chunks(nx * ny).zip(out.chunks_mut(nx * ny)).enumerate() {
        let _ = s;
        for y in 0..ny {
            for x in 0..nx {
                let mut sum = 0f64;
                let mut n = 0f64;
                for yy in y.saturating_sub(1)..(y + 2).min(ny) {
                    for xx in x.saturating_sub(1)..(x + 2).min(nx) {
                        sum += src[yy * nx + xx] as f64;
                        n += 1.0;
                    }
                }
                dst[y * nx + x] = ((sum / n).round() as i64).clamp(min, max) as f32;
            }
        }
    }
    out
}

#[test]
fn real_scans_round_trip_within_the_bound() {
    let mut seen = 0;
    for dir in sample_dirs() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for path in files {
            let name = path.to_string_lossy().to_string();
            if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) {
                continue;
            }
            let vol = crate::volume::read_nifti(&path).unwrap();
            let shape = vol.shape();
            let kind = Kind::of(vol.header.datatype());
            let field = blurred(&vol.data.to_f32(), shape, kind);
            let raw_bits = vol.data.len() * vol.header.datatype().bytes() * 8;
            for d in [0.0, 1.0, 4.0, 16.0] {
                let size = check_integer(
                    &vol.data.to_f32(),
                    Some(&field),
                    shape,
                    kind,
                    d,
                    &Options::default(),
                );
                if d == 0.0 {
                    assert!(
                        size * 8 < raw_bits,
                        "{name}: lossless {size} bytes is not smaller than raw"
                    );
                }
            }
            check_integer(
                &vol.data.to_f32(),
                None,
                shape,
                kind,
                0.0,
                &Options::default(),
            );
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} sample scans found");
}

/// Found by fuzzing (fuzz/, target `residual`): a stream whose integer bound `d` is so wide
/// that every blend weight `2^60 / (S + 1 + 2d)^2` is 0 divided by zero (and the square can
/// overflow u64). Such headers are now refused; each committed input must give an error.
#[test]
fn fuzz_found_zero_weight_streams_are_refused() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    for name in ["residual_zero_weights_0.bin", "residual_zero_weights_1.bin"] {
        let bytes = std::fs::read(dir.join(name)).expect("committed fixture");
        let result = Reader::open(&bytes).and_then(|r| r.decode_chunk(0, None));
        assert!(
            matches!(
                result,
                Err(ResidualError::Invalid(_) | ResidualError::InvalidBound(_))
            ),
            "{name}: {:?}",
            result.map(|v| v.len())
        );
    }
}

/// The encoder side of the same defect: a bound of 10^9 on an i32 scan whose range is wider
/// than that divided by zero while coding. The bound is stored as `MAX_BOUND` (tighter) and
/// the guarantee holds.
#[test]
fn a_huge_bound_is_capped_or_refused_never_a_crash() {
    // The encoder once divided by zero on `--max-error 1e9` over a wide i32 range (every
    // blend weight underflowed). A bound over a range beyond ±2^24 is now a typed error, and
    // within it a huge bound is capped to the range (below MAX_BOUND) and still honoured.
    let shape = [8, 6, 3, 1];
    let wide = Kind::Integer {
        min: -(1 << 31),
        max: (1 << 31) - 1,
    };
    let (orig, field) = synthetic(shape, -(1 << 23), 1 << 23, 7);
    let huge = Mode::Bound { max_error: 1e9 };
    assert!(matches!(
        encode(&orig, None, shape, huge, wide),
        Err(ResidualError::RangeTooWideForBound { .. })
    ));
    let kind = Kind::Integer {
        min: -(1 << 24),
        max: 1 << 24,
    };
    for prediction in [None, Some(field.as_slice())] {
        let bytes = encode(&orig, prediction, shape, huge, kind).expect("encodes");
        let d = Reader::open(&bytes).expect("opens").header().domain.d();
        assert_eq!(d, (1 << 25).min(domain::MAX_BOUND));
        let decoded = decode(&bytes, prediction).expect("decodes");
        assert!(max_error(&orig, &decoded) <= d as f64);
    }
}

// ---- Region of interest -------------------------------------------------------------------

/// A random mask (about `percent` % inside, in clumps so the mask coder sees structure).
fn random_mask(len: usize, percent: u64, seed: u64) -> Vec<bool> {
    let mut rng = Rng(seed | 1);
    let mut inside = false;
    (0..len)
        .map(|_| {
            // Flip with a small probability: runs of inside and outside voxels.
            let flip = if inside { 100 - percent } else { percent };
            if rng.next() % 1000 < flip.max(1) {
                inside = !inside;
            }
            inside
        })
        .collect()
}

/// Encodes with a region of interest, decodes, and checks both bounds on every voxel
/// (`mask` may be one frame long: then it holds for every frame). Returns the stream.
fn check_roi(
    orig: &[f32],
    field: Option<&[f32]>,
    shape: [usize; 4],
    kind: Kind,
    (d_out, d_in): (f64, f64),
    mask: &[bool],
    options: &Options,
) -> Vec<u8> {
    let roi = Roi {
        mask,
        max_error: d_in,
    };
    let mode = Mode::Bound { max_error: d_out };
    let bytes = encode_roi(orig, field, shape, mode, kind, &roi, options).unwrap();
    let back = decode(&bytes, field).unwrap();
    let frame = shape[0] * shape[1] * shape[2];
    let integer = matches!(kind, Kind::Integer { .. });
    let (bi, bo) = if integer {
        (d_in.floor(), d_out.floor())
    } else {
        (d_in, d_out)
    };
    for (i, (&x, &y)) in orig.iter().zip(&back).enumerate() {
        let inside = mask[if mask.len() == frame { i % frame } else { i }];
        if !x.is_finite() || (inside && bi == 0.0) {
            assert_eq!(x.to_bits(), y.to_bits(), "voxel {i} (inside {inside})");
            continue;
        }
        let err = (x as f64 - y as f64).abs();
        let bound = if inside { bi } else { bo };
        assert!(
            err <= bound,
            "voxel {i}: {x} vs {y}, inside {inside}, bound {bound}"
        );
    }
    bytes
}

#[test]
fn roi_bounds_hold_inside_and_outside_integer() {
    let shape = [13, 11, 9, 1];
    let kind = Kind::Integer { min: 0, max: 4000 };
    let (orig, field) = synthetic(shape, 0, 4000, 41);
    let options = Options {
        chunk_z: 4,
        chunk_t: 1,
    };
    for (seed, percent) in [(1, 5), (2, 30), (3, 0), (4, 100)] {
        let mask = match percent {
            0 => vec![false; orig.len()],
            100 => vec![true; orig.len()],
            _ => random_mask(orig.len(), percent, seed),
        };
        for f in [Some(field.as_slice()), None] {
            for bounds in [(16.0, 1.0), (16.0, 0.0), (7.9, 2.5), (3.0, 3.0)] {
                let bytes = check_roi(&orig, f, shape, kind, bounds, &mask, &options);
                let h = *Reader::open(&bytes).unwrap().header();
                let roi = h.roi.expect("a ROI stream");
                assert_eq!(bytes[4], stream::VERSION_ROI);
                assert_eq!(h.domain.d(), bounds.1.floor() as i64);
                assert_eq!(roi.d_out, bounds.0.floor() as i64);
                assert!(!roi.shared_mask);
            }
        }
    }
}

#[test]
fn roi_bounds_hold_inside_and_outside_float() {
    let (shape, orig, field) = float_scan_with_escapes(17);
    let mask = random_mask(orig.len(), 20, 9);
    for bounds in [
        (1.0, 0.01),
        (16.0, 0.0),
        (0.5, 0.5),
        (2.0, 1e-6),
        (1e-3, 0.0),
    ] {
        for f in [Some(field.as_slice()), None] {
            check_roi(
                &orig,
                f,
                shape,
                Kind::Float,
                bounds,
                &mask,
                &Options::default(),
            );
        }
    }
}

#[test]
fn a_tight_roi_costs_less_than_the_tight_bound_everywhere() {
    let shape = [32, 32, 16, 1];
    let kind = Kind::Integer { min: 0, max: 4000 };
    let (orig, field) = synthetic(shape, 0, 4000, 5);
    let mut mask = vec![false; orig.len()];
    for z in 4..8 {
        for y in 8..16 {
            for x in 8..16 {
                mask[(z * 32 + y) * 32 + x] = true;
            }
        }
    }
    let options = Options::default();
    let tight = encode_with(&orig, Some(&field), shape, Mode::Lossless, kind, &options).unwrap();
    let loose = encode_with(
        &orig,
        Some(&field),
        shape,
        Mode::Bound { max_error: 16.0 },
        kind,
        &options,
    )
    .unwrap();
    let roi = check_roi(
        &orig,
        Some(&field),
        shape,
        kind,
        (16.0, 0.0),
        &mask,
        &options,
    );
    assert!(
        roi.len() < loose.len() + (tight.len() - loose.len()) / 4,
        "roi {} loose {} tight {}",
        roi.len(),
        loose.len(),
        tight.len()
    );
}

#[test]
fn roi_4d_with_a_3d_mask_and_with_a_4d_mask() {
    let shape = [10, 9, 7, 5];
    let kind = Kind::Integer { min: 0, max: 1000 };
    let (orig, field) = synthetic(shape, 0, 1000, 23);
    let options = Options {
        chunk_z: 3,
        chunk_t: 2,
    };
    let frame = 10 * 9 * 7;
    let mask3 = random_mask(frame, 10, 3);
    let mask4 = random_mask(frame * 5, 10, 4);
    let shared = check_roi(
        &orig,
        Some(&field),
        shape,
        kind,
        (8.0, 1.0),
        &mask3,
        &options,
    );
    assert!(
        Reader::open(&shared)
            .unwrap()
            .header()
            .roi
            .unwrap()
            .shared_mask
    );
    // The same 3D mask repeated for every frame decodes the same, coded per frame.
    let repeated: Vec<bool> = (0..5).flat_map(|_| mask3.iter().copied()).collect();
    let per_frame = check_roi(
        &orig,
        Some(&field),
        shape,
        kind,
        (8.0, 1.0),
        &repeated,
        &options,
    );
    assert!(
        !Reader::open(&per_frame)
            .unwrap()
            .header()
            .roi
            .unwrap()
            .shared_mask
    );
    assert_eq!(
        decode(&shared, Some(&field)).unwrap(),
        decode(&per_frame, Some(&field)).unwrap()
    );
    assert!(shared.len() <= per_frame.len());
    check_roi(&orig, None, shape, kind, (8.0, 0.0), &mask4, &options);
    // A mask of neither length is refused.
    let roi = Roi {
        mask: &mask3[1..],
        max_error: 1.0,
    };
    let mode = Mode::Bound { max_error: 8.0 };
    assert!(matches!(
        encode_roi(&orig, None, shape, mode, kind, &roi, &options),
        Err(ResidualError::LengthMismatch { what: "mask", .. })
    ));
}

#[test]
fn a_roi_chunk_decodes_alone_to_its_part_of_the_scan() {
    let shape = [12, 10, 11, 5];
    let kind = Kind::Integer { min: 0, max: 1000 };
    let (orig, field) = synthetic(shape, 0, 1000, 29);
    let options = Options {
        chunk_z: 4,
        chunk_t: 2,
    };
    let mask = random_mask(12 * 10 * 11, 15, 8);
    let bytes = check_roi(
        &orig,
        Some(&field),
        shape,
        kind,
        (6.0, 0.0),
        &mask,
        &options,
    );
    let full = decode(&bytes, Some(&field)).unwrap();
    let reader = Reader::open(&bytes).unwrap();
    for c in 0..reader.chunk_count() {
        let region = reader.chunk_region(c).unwrap();
        let pick = |v: &[f32]| region_values(v, shape, &region);
        assert_eq!(
            reader.decode_chunk(c, Some(&pick(&field))).unwrap(),
            pick(&full)
        );
    }
}

#[test]
fn roi_arguments_and_headers_are_checked() {
    let shape = [6, 5, 4, 1];
    let kind = Kind::Integer { min: 0, max: 255 };
    let (orig, _) = synthetic(shape, 0, 255, 3);
    let mask = random_mask(orig.len(), 20, 5);
    let o = Options::default();
    let roi = |max_error| Roi {
        mask: &mask,
        max_error,
    };
    let bound = Mode::Bound { max_error: 4.0 };
    assert_eq!(
        encode_roi(&orig, None, shape, Mode::Lossless, kind, &roi(0.0), &o),
        Err(ResidualError::RoiNeedsBound)
    );
    assert!(matches!(
        encode_roi(&orig, None, shape, bound, kind, &roi(5.0), &o),
        Err(ResidualError::RoiBoundAboveOuter { .. })
    ));
    assert!(matches!(
        encode_roi(&orig, None, shape, bound, kind, &roi(f64::NAN), &o),
        Err(ResidualError::InvalidBound(_))
    ));
    let zero = Mode::Bound { max_error: 0.0 };
    assert!(encode_roi(&orig, None, shape, zero, Kind::Float, &roi(0.0), &o).is_err());

    // Header checks: fix the CRC after each edit so that the header rule itself refuses.
    let bytes = encode_roi(&orig, None, shape, bound, kind, &roi(1.0), &o).unwrap();
    assert!(decode(&bytes, None).is_ok());
    let table_end = stream::HEADER_BYTES + stream::ROI_EXTENSION_BYTES + stream::TABLE_ENTRY_BYTES;
    let edited = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        f(&mut b);
        let crc = crc32fast::hash(&b[..table_end]);
        b[table_end..table_end + 4].copy_from_slice(&crc.to_le_bytes());
        decode(&b, None)
    };
    // Version 2 without the ROI flag, version 1 with it, an unknown flag, versions 3 and 4
    // (transform streams: the ROI flag is unknown there), an unknown version.
    assert!(edited(&|b| b[6] &= !2).is_err());
    assert!(edited(&|b| b[4] = 1).is_err());
    assert!(edited(&|b| b[6] |= 8).is_err());
    assert!(edited(&|b| b[4] = 3).is_err());
    assert!(edited(&|b| b[4] = 4).is_err());
    assert_eq!(
        edited(&|b| b[4] = 5),
        Err(ResidualError::UnsupportedVersion(5))
    );
    // d_out below the inside d, above MAX_BOUND, and informative bounds that disagree.
    assert!(edited(&|b| b[56..64].copy_from_slice(&0u64.to_le_bytes())).is_err());
    assert!(edited(&|b| b[56..64].copy_from_slice(&u64::MAX.to_le_bytes())).is_err());
    assert!(edited(&|b| b[64..72].copy_from_slice(&7f64.to_bits().to_le_bytes())).is_err());
    // The untouched stream still decodes through the same edit path.
    assert!(edited(&|_| {}).is_ok());
    // Truncated inside the extension.
    assert!(decode(&bytes[..70], None).is_err());
}

#[test]
fn streams_without_a_roi_are_unchanged() {
    // Version 1, 56-byte header, no ROI: the documented example is still reproduced (see
    // the_documented_example_stream_is_reproduced); here the header round trip.
    let shape = [6, 5, 4, 1];
    let kind = Kind::Integer { min: 0, max: 255 };
    let (orig, _) = synthetic(shape, 0, 255, 3);
    let bytes = encode(&orig, None, shape, Mode::Bound { max_error: 2.0 }, kind).unwrap();
    assert_eq!(bytes[4], stream::VERSION);
    assert_eq!(bytes[6], 0);
    assert!(Reader::open(&bytes).unwrap().header().roi.is_none());
}

#[test]
fn corrupt_roi_chunk_data_with_a_valid_checksum_never_panics() {
    // As corrupt_chunk_data_with_a_valid_checksum_never_panics, for a version-2 stream: the
    // mask and the two quantizers come from crafted bytes.
    let shape = [10, 9, 8, 2];
    let kind = Kind::Integer { min: 0, max: 255 };
    let (orig, field) = synthetic(shape, 0, 255, 36);
    let mask = random_mask(10 * 9 * 8, 20, 6);
    let roi = Roi {
        mask: &mask,
        max_error: 0.0,
    };
    let mode = Mode::Bound { max_error: 9.0 };
    let options = Options {
        chunk_z: 8,
        chunk_t: 2,
    };
    let bytes = encode_roi(&orig, Some(&field), shape, mode, kind, &roi, &options).unwrap();
    let header = stream::HEADER_BYTES + stream::ROI_EXTENSION_BYTES;
    let mut rng = Rng(78);
    for _ in 0..200 {
        let b = flip_chunk_bit_with_valid_crcs(&bytes, header, &mut rng);
        if let Ok(v) = decode(&b, Some(&field)) {
            assert!(v.iter().all(|&x| (0.0..=255.0).contains(&x)));
        }
    }
}

// ---- transform streams (versions 3 and 4) ----

/// The integer range and the chunking of the transform tests' synthetic scans.
const CT_LIKE: Kind = Kind::Integer {
    min: -1000,
    max: 3000,
};
const FOUR_SLICE_CHUNKS: Options = Options {
    chunk_z: 4,
    chunk_t: 1,
};

/// The values of `v` (a scan of `shape`) in chunk `region`, in chunk order.
fn region_values(v: &[f32], shape: [usize; 4], region: &ChunkRegion) -> Vec<f32> {
    region_ranges(shape, region)
        .flat_map(|r| v[r].iter().copied())
        .collect()
}

fn transform_options(base_step: f64) -> TransformOptions {
    TransformOptions {
        levels: [3, 3, 2],
        base_step,
        rounding: 0.4,
        outliers: OutlierBound::None,
        contexts: Contexts::ActivityParentSigns,
    }
}

fn mse(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn transform_streams_trade_rate_for_error_and_decode_chunk_by_chunk() {
    let shape = [37, 29, 11, 3];
    let (orig, field) = synthetic(shape, -1000, 3000, 7);
    let (kind, o) = (CT_LIKE, FOUR_SLICE_CHUNKS);
    let data: &[f32] = &orig;
    let mut last: Option<(usize, f64)> = None;
    for step in [1.0, 8.0, 64.0] {
        let bytes =
            encode_transform(&data, None, shape, kind, &transform_options(step), &o).unwrap();
        assert!(is_transform_stream(&bytes));
        let reader = Reader::open(&bytes).unwrap();
        assert_eq!(
            reader.header().version(),
            stream::VERSION_TRANSFORM_CONTEXTS
        );
        let all = reader.decode_all(None).unwrap();
        // Integers within the range.
        assert!(all
            .iter()
            .all(|&v| v.fract() == 0.0 && (-1000.0..=3000.0).contains(&v)));
        let e = mse(&all, &orig);
        // The error of a near-orthonormal transform follows the step (uniform noise of step
        // s has variance s²/12; the dead zone adds a little).
        assert!(e < step * step, "step {step}: mse {e}");
        if let Some((b, m)) = last {
            assert!(
                bytes.len() < b && e > m,
                "coarser step, smaller file and larger error"
            );
        }
        last = Some((bytes.len(), e));
        // Every chunk alone decodes to its part of the whole.
        for c in 0..reader.chunk_count() {
            let region = reader.chunk_region(c).unwrap();
            let part = reader.decode_chunk(c, None).unwrap();
            assert_eq!(part, region_values(&all, shape, &region));
        }
    }
    // Against a field prediction: the stream needs it back, and the difference it codes is
    // smaller than the scan, so the same step costs fewer bytes.
    let alone = encode_transform(&data, None, shape, kind, &transform_options(8.0), &o).unwrap();
    let bytes = encode_with_field_transform(&orig, &field, shape, kind, &o);
    assert!(bytes.len() < alone.len());
    assert_eq!(decode(&bytes, None), Err(ResidualError::PredictionPresence));
    let decoded = decode(&bytes, Some(&field)).unwrap();
    assert!(mse(&decoded, &orig) < 64.0);
}

fn encode_with_field_transform(
    orig: &[f32],
    field: &[f32],
    shape: [usize; 4],
    kind: Kind,
    o: &Options,
) -> Vec<u8> {
    let gather = |region: &ChunkRegion| Ok(region_values(field, shape, region));
    let data: &[f32] = orig;
    encode_transform(
        &data,
        Some(&gather),
        shape,
        kind,
        &transform_options(8.0),
        o,
    )
    .unwrap()
}

#[test]
fn transform_streams_of_float_scans_keep_fine_detail_at_fine_steps() {
    let shape = [16, 16, 8, 1];
    let orig: Vec<f32> = (0..16 * 16 * 8)
        .map(|i| ((i as f32) * 0.37).sin() * 0.01 + (i % 16) as f32 * 1e-3)
        .collect();
    let data: &[f32] = &orig;
    let bytes = encode_transform(
        &data,
        None,
        shape,
        Kind::Float,
        &transform_options(1e-6),
        &Options::default(),
    )
    .unwrap();
    let decoded = decode(&bytes, None).unwrap();
    assert!(max_error(&decoded, &orig) < 1e-5);
    // A non-finite value is refused, with its index.
    let mut bad = orig.clone();
    bad[100] = f32::NAN;
    let data: &[f32] = &bad;
    let e = encode_transform(
        &data,
        None,
        shape,
        Kind::Float,
        &transform_options(1e-3),
        &Options::default(),
    );
    assert_eq!(e, Err(ResidualError::NonFinite(100)));
}

#[test]
fn corrupt_or_inconsistent_transform_streams_are_refused() {
    let shape = [20, 18, 6, 1];
    let (orig, _) = synthetic(shape, 0, 255, 3);
    let kind = Kind::Integer { min: 0, max: 255 };
    let o = Options {
        chunk_z: 3,
        chunk_t: 1,
    };
    let data: &[f32] = &orig;
    let bytes = encode_transform(&data, None, shape, kind, &transform_options(4.0), &o).unwrap();
    assert!(decode(&bytes, None).is_ok());
    // A flipped byte in a chunk: its checksum.
    let mut b = bytes.clone();
    let last = b.len() - 3;
    b[last] ^= 0x10;
    assert!(matches!(
        decode(&b, None),
        Err(ResidualError::ChunkChecksum(_))
    ));
    // Header edits (CRC of header and table fixed so the header rule itself refuses).
    let table_end = stream::HEADER_BYTES + stream::TRANSFORM_EXTENSION_BYTES + 2 * 8;
    let edited = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        f(&mut b);
        let crc = crc32fast::hash(&b[..table_end]);
        b[table_end..table_end + 4].copy_from_slice(&crc.to_le_bytes());
        decode(&b, None)
    };
    assert!(edited(&|_| {}).is_ok());
    // The ROI flag, too many levels, a zero base step, a bound, a reserved byte.
    assert!(edited(&|b| b[6] |= 2).is_err());
    assert!(edited(&|b| b[56] = 13).is_err());
    assert!(edited(&|b| b[60..64].copy_from_slice(&0f32.to_bits().to_le_bytes())).is_err());
    assert!(edited(&|b| b[48] = 1).is_err());
    assert!(edited(&|b| b[59] = 1).is_err());
    // Fewer levels than coded: the blocks no longer parse as that decomposition.
    assert!(matches!(
        edited(&|b| b[56] = 1),
        Err(ResidualError::CorruptChunk(_))
    ));
    // A chunk whose CRC matches but whose band table is nonsense (a zero step).
    let reader = Reader::open(&bytes).unwrap();
    let start = reader.table[0].bytes.start;
    let mut b = bytes.clone();
    b[start + 4..start + 8].copy_from_slice(&0f32.to_bits().to_le_bytes());
    let crc = crc32fast::hash(&b[reader.table[0].bytes.clone()]);
    let o = stream::HEADER_BYTES + stream::TRANSFORM_EXTENSION_BYTES + 4;
    b[o..o + 4].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32fast::hash(&b[..table_end]);
    b[table_end..table_end + 4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decode(&b, None), Err(ResidualError::CorruptChunk(0)));
}

#[test]
fn outlier_lists_bound_every_voxel_of_a_transform_stream() {
    let shape = [40, 33, 9, 2];
    let (orig, _) = synthetic(shape, -1000, 3000, 11);
    let (kind, o) = (CT_LIKE, FOUR_SLICE_CHUNKS);
    let data: &[f32] = &orig;
    let plain = encode_transform(&data, None, shape, kind, &transform_options(60.0), &o).unwrap();
    let plain_error = max_error(&decode(&plain, None).unwrap(), &orig);
    for bound in [0u32, 3, 20] {
        let t = TransformOptions {
            outliers: OutlierBound::Fixed(bound),
            ..transform_options(60.0)
        };
        let bytes = encode_transform(&data, None, shape, kind, &t, &o).unwrap();
        let reader = Reader::open(&bytes).unwrap();
        assert_eq!(
            reader.header().transform.unwrap().outlier_bound,
            Some(bound)
        );
        let decoded = reader.decode_all(None).unwrap();
        let e = max_error(&decoded, &orig);
        assert!(e <= bound as f64, "bound {bound}: max error {e}");
        assert!(
            plain_error > bound as f64,
            "the plain stream is already within {bound}"
        );
        // Every chunk alone too.
        for c in 0..reader.chunk_count() {
            let region = reader.chunk_region(c).unwrap();
            let part = reader.decode_chunk(c, None).unwrap();
            assert_eq!(part, region_values(&decoded, shape, &region));
        }
    }
    // Per block k·RMSE: the header's bound is the largest block's and holds everywhere.
    let t = TransformOptions {
        outliers: OutlierBound::Tail {
            sigmas: 3.0,
            share: 0.01,
        },
        ..transform_options(60.0)
    };
    let bytes = encode_transform(&data, None, shape, kind, &t, &o).unwrap();
    let bound = Reader::open(&bytes)
        .unwrap()
        .header()
        .transform
        .unwrap()
        .outlier_bound
        .unwrap();
    let e = max_error(&decode(&bytes, None).unwrap(), &orig);
    assert!(
        e <= bound as f64 && (bound as f64) < plain_error,
        "{e} {bound} {plain_error}"
    );
    // Float scans have no outlier lists.
    let t = TransformOptions {
        outliers: OutlierBound::Fixed(1),
        ..transform_options(1.0)
    };
    assert!(encode_transform(&data, None, shape, Kind::Float, &t, &o).is_err());
    // A block bound above the header's is refused (header edited, CRCs fixed).
    let t = TransformOptions {
        outliers: OutlierBound::Fixed(5),
        ..transform_options(60.0)
    };
    let mut b = encode_transform(&data, None, shape, kind, &t, &o).unwrap();
    let chunks = Reader::open(&b).unwrap().chunk_count();
    let table_end = stream::HEADER_BYTES + stream::TRANSFORM_EXTENSION_BYTES + 8 * chunks;
    b[48..56].copy_from_slice(&4u64.to_le_bytes());
    let crc = crc32fast::hash(&b[..table_end]);
    b[table_end..table_end + 4].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        decode(&b, None),
        Err(ResidualError::CorruptChunk(_))
    ));
}

/// Every run of slices of every chunk decodes to its part of the whole scan, whether the
/// transform splits z (the whole block is transformed back) or not (only the slices asked
/// for are), with outlier lists and with a field prediction; slices outside the chunk are
/// refused.
#[test]
fn slices_of_a_transform_chunk_decode_to_their_part_of_the_scan() {
    let shape = [23, 17, 10, 2];
    let (orig, field) = synthetic(shape, -1000, 3000, 5);
    let (kind, o) = (CT_LIKE, FOUR_SLICE_CHUNKS);
    let data: &[f32] = &orig;
    let gather = |region: &ChunkRegion| Ok(region_values(&field, shape, region));
    for (levels, outliers, with_field) in [
        ([3, 3, 0], OutlierBound::Fixed(4), false),
        ([3, 3, 0], OutlierBound::None, true),
        ([3, 3, 2], OutlierBound::Fixed(4), true),
    ] {
        let t = TransformOptions {
            levels,
            outliers,
            ..transform_options(40.0)
        };
        let prediction: Option<ChunkPrediction> = if with_field { Some(&gather) } else { None };
        let bytes = encode_transform(&data, prediction, shape, kind, &t, &o).unwrap();
        let reader = Reader::open(&bytes).unwrap();
        let whole = reader.decode_all(with_field.then_some(&field[..])).unwrap();
        let plane = shape[0] * shape[1];
        for c in 0..reader.chunk_count() {
            let region = reader.chunk_region(c).unwrap();
            let pred = gather(&region).unwrap();
            let pred = with_field.then_some(&pred[..]);
            for a in region.z.clone() {
                for b in a + 1..=region.z.end {
                    let part = reader.decode_chunk_slices(c, pred, a..b).unwrap();
                    let expected: Vec<f32> = region
                        .t
                        .clone()
                        .flat_map(|t| {
                            let s = (t * shape[2] + a) * plane;
                            whole[s..s + (b - a) * plane].iter().copied()
                        })
                        .collect();
                    assert_eq!(part, expected, "{levels:?} chunk {c} slices {a}..{b}");
                }
            }
            let outside = region.z.end..region.z.end + 1;
            assert!(matches!(
                reader.decode_chunk_slices(c, pred, outside),
                Err(ResidualError::SlicesOutsideChunk { .. })
            ));
        }
    }
}

/// Stream versions 3 and 4 code the same coefficients with different models: both decode to
/// the same voxels, and on a real scan version 4's sign and parent contexts take fewer bytes
/// (on the BOLD series about 3 % at these steps).
#[test]
fn transform_stream_versions_3_and_4_decode_alike() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/fmri_bold_4d.nii.gz");
    let vol = crate::volume::read_nifti(&path).unwrap();
    let (shape, data) = (vol.shape(), vol.data.to_f32());
    let kind = Kind::Integer {
        min: -32768,
        max: 32767,
    };
    let o = Options {
        chunk_z: 24,
        chunk_t: 1,
    };
    let data: &[f32] = &data;
    for step in [10.0, 40.0] {
        let t4 = TransformOptions {
            levels: [5, 5, 0],
            ..transform_options(step)
        };
        let t3 = TransformOptions {
            contexts: Contexts::Activity,
            ..t4
        };
        let v4 = encode_transform(&data, None, shape, kind, &t4, &o).unwrap();
        let v3 = encode_transform(&data, None, shape, kind, &t3, &o).unwrap();
        assert_eq!(Reader::open(&v3).unwrap().header().version(), 3);
        assert_eq!(Reader::open(&v4).unwrap().header().version(), 4);
        assert_eq!(decode(&v3, None).unwrap(), decode(&v4, None).unwrap());
        assert!(
            (v4.len() as f64) < 0.99 * v3.len() as f64,
            "step {step}: {} vs {}",
            v4.len(),
            v3.len()
        );
    }
}
