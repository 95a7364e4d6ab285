//! Entropy coding of one sequence of integer symbols (a quantized tensor).
//!
//! Each stream is self-describing apart from its symbol count, which the
//! caller knows from the tensor's shape. The encoder fits a categorical model
//! to the sequence, stores it as fixed-point integer probabilities (so the
//! decoder rebuilds it bit-exactly with integer arithmetic) and codes the
//! symbols with constriction's ANS coder (u32 words, u64 state, 24-bit
//! precision). Degenerate sequences get cheaper modes. The byte layout is
//! specified in `docs/FORMAT.md`, chapter "Entropy-coded symbol streams".

use std::collections::BinaryHeap;

use constriction::stream::model::DefaultContiguousCategoricalEntropyModel;
use constriction::stream::stack::DefaultAnsCoder;

use crate::codec::bytes::{varint_len, zigzag_encode, ByteReader, ByteWriter};
use crate::codec::container::FormatError;

/// Stream mode byte: no symbols.
pub const MODE_EMPTY: u8 = 0;
/// Stream mode byte: one symbol repeated `count` times.
pub const MODE_CONSTANT: u8 = 1;
/// Stream mode byte: every symbol as a zigzag varint.
pub const MODE_RAW: u8 = 2;
/// Stream mode byte: stored probability table plus ANS words.
pub const MODE_ANS: u8 = 3;
/// Stream mode byte of a grid table coded with context (`codec::grid`, format 5.0). Only
/// tables may use it: [`decode_symbols`] refuses it as an unknown mode, and table readers
/// go through `codec::grid::decode_table`.
pub const MODE_CONTEXT: u8 = 4;

/// Precision (bits) of the probabilities the ANS coder works with.
pub const ANS_PRECISION: u32 = 24;

/// ANS state the encoder starts from and a valid stream must decode back to.
/// Being at least `2^24`, decoding past the last symbol always changes it, so
/// a wrong symbol count or missing words cannot go unnoticed; it costs about
/// three bytes per stream.
pub const ANS_INITIAL_STATE: u64 = 1 << 24;

/// Name used for symbol streams in error messages.
const CONTEXT: &str = "symbol stream";

type Model = DefaultContiguousCategoricalEntropyModel;

/// Compresses `symbols`; always succeeds. Decode with [`decode_symbols`]
/// and the same count.
pub fn encode_symbols(symbols: &[i32]) -> Vec<u8> {
    let Some((&first, rest)) = symbols.split_first() else {
        return vec![MODE_EMPTY];
    };
    let (mut min, mut max) = (first, first);
    for &s in rest {
        min = min.min(s);
        max = max.max(s);
    }
    if min == max {
        let mut w = ByteWriter::with_capacity(6);
        w.put_u8(MODE_CONSTANT);
        w.put_ivarint(i64::from(min));
        return w.into_vec();
    }
    let raw_len = 1 + symbols
        .iter()
        .map(|&s| varint_len(zigzag_encode(i64::from(s))))
        .sum::<usize>();
    let range = (i64::from(max) - i64::from(min) + 1) as u64;
    if range <= symbols.len() as u64 && range <= 1 << ANS_PRECISION {
        if let Some(ans) = encode_ans(symbols, min, range as usize) {
            if ans.len() < raw_len {
                return ans;
            }
        }
    }
    let mut w = ByteWriter::with_capacity(raw_len);
    w.put_u8(MODE_RAW);
    for &s in symbols {
        w.put_ivarint(i64::from(s));
    }
    w.into_vec()
}

/// Exactly `encode_symbols(symbols).len()`, for rate control.
#[cfg_attr(not(feature = "train"), allow(dead_code))] // used by the encoder only
pub fn encoded_len(symbols: &[i32]) -> usize {
    encode_symbols(symbols).len()
}

/// Decodes a stream written by [`encode_symbols`] for `count` symbols.
///
/// Every field is validated; a stream that does not decode to exactly
/// `count` symbols with all bytes consumed and the ANS coder back in its
/// initial state is refused. Allocates `count` symbols: the caller must have
/// checked `count` (it comes from a tensor shape) against sane limits.
pub fn decode_symbols(bytes: &[u8], count: usize) -> Result<Vec<i32>, FormatError> {
    let mut r = ByteReader::new(bytes, CONTEXT);
    let mode = r.get_u8("stream mode")?;
    let out = match mode {
        MODE_EMPTY => {
            if count != 0 {
                return Err(r.invalid(
                    "stream mode",
                    format!("empty stream but {count} symbols expected"),
                ));
            }
            Vec::new()
        }
        MODE_CONSTANT => {
            if count == 0 {
                return Err(r.invalid("stream mode", "constant stream but 0 symbols expected"));
            }
            let s = get_symbol(&mut r, "constant symbol")?;
            vec![s; count]
        }
        MODE_RAW => {
            if count > r.remaining() {
                return Err(r.invalid(
                    "raw symbols",
                    format!(
                        "{count} symbols need at least {count} bytes but {} remain",
                        r.remaining()
                    ),
                ));
            }
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                out.push(get_symbol(&mut r, "raw symbol")?);
            }
            out
        }
        MODE_ANS => return decode_ans(r, count),
        m => return Err(r.invalid("stream mode", format!("unknown mode {m}"))),
    };
    r.finish()?;
    Ok(out)
}

fn get_symbol(r: &mut ByteReader<'_>, what: &'static str) -> Result<i32, FormatError> {
    let v = r.get_ivarint(what)?;
    i32::try_from(v).map_err(|_| r.invalid(what, format!("{v} is outside the i32 range")))
}

// ---------------------------------------------------------------------------
// Encoder side.

/// `ceil(log2(x))` for `x >= 1`.
fn ceil_log2(x: u64) -> u32 {
    64 - (x.max(1) - 1).leading_zeros()
}

/// Bits of the order-`k` Exp-Golomb code of `v`.
fn eg_len(v: u32, k: u32) -> u64 {
    let x = u64::from(v) + (1u64 << k);
    let n = 64 - u64::from(x.leading_zeros());
    2 * n - u64::from(k) - 1
}

/// Smallest-table Exp-Golomb order for values `f - 1`, and its size in bits.
fn best_eg_order(freqs: &[u32], precision: u32) -> (u32, u64) {
    (0..=precision)
        .map(|k| (k, freqs.iter().map(|&f| eg_len(f - 1, k)).sum::<u64>()))
        .min_by_key(|&(k, bits)| (bits, k))
        .unwrap_or((0, 0))
}

/// Turns `counts` (total `n`) into frequencies that sum to `2^precision`,
/// each at least 1, roughly proportional to the counts (largest remainder,
/// then the symbols that had to be raised to 1 are paid for by the most
/// probable ones). Requires `counts.len() <= 2^precision`.
fn normalize(counts: &[u64], n: u64, precision: u32) -> Vec<u32> {
    let total = 1u64 << precision;
    let zeros = counts.iter().filter(|&&c| c == 0).count() as u64;
    let share = total - zeros; // mass for the symbols that occur
    let mut freqs = Vec::with_capacity(counts.len());
    let mut rems = Vec::new();
    let mut sum = zeros;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            freqs.push(1u64);
        } else {
            let p = c * share;
            freqs.push(p / n);
            sum += p / n;
            rems.push((p % n, i));
        }
    }
    // Hand out the units lost to rounding down, largest remainder first.
    let extra = (total - sum) as usize;
    rems.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rems.iter().take(extra) {
        freqs[i] += 1;
    }
    // Occurring symbols rounded to 0 get 1; take that back from the largest.
    let mut deficit = 0u64;
    for f in freqs.iter_mut() {
        if *f == 0 {
            *f = 1;
            deficit += 1;
        }
    }
    if deficit > 0 {
        let mut heap: BinaryHeap<(u64, std::cmp::Reverse<usize>)> = freqs
            .iter()
            .enumerate()
            .filter(|(_, &f)| f > 1)
            .map(|(i, &f)| (f, std::cmp::Reverse(i)))
            .collect();
        while deficit > 0 {
            let Some((f, std::cmp::Reverse(i))) = heap.pop() else {
                break; // unreachable: sum > range implies some f > 1
            };
            freqs[i] = f - 1;
            deficit -= 1;
            if f - 1 > 1 {
                heap.push((f - 1, std::cmp::Reverse(i)));
            }
        }
    }
    freqs.into_iter().map(|f| f as u32).collect()
}

/// MSB-first bit packer for the probability table.
struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    nbits: u32,
}

impl BitWriter {
    fn put(&mut self, value: u64, n: u32) {
        // n <= 50 here, and acc holds fewer than 8 pending bits.
        self.acc = (self.acc << n) | value;
        self.nbits += n;
        while self.nbits >= 8 {
            self.nbits -= 8;
            self.bytes.push((self.acc >> self.nbits) as u8);
        }
        self.acc &= (1u64 << self.nbits) - 1;
    }

    fn put_eg(&mut self, v: u32, k: u32) {
        let x = u64::from(v) + (1u64 << k);
        let n = 64 - x.leading_zeros();
        self.put(0, n - k - 1);
        self.put(x, n);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.nbits > 0 {
            let pad = 8 - self.nbits;
            self.put(0, pad);
        }
        self.bytes
    }
}

/// ANS-mode stream, or `None` if constriction refuses (not expected).
fn encode_ans(symbols: &[i32], min: i32, range: usize) -> Option<Vec<u8>> {
    let n = symbols.len() as u64;
    let mut counts = vec![0u64; range];
    for &s in symbols {
        counts[(i64::from(s) - i64::from(min)) as usize] += 1;
    }
    // Pick the stored precision minimising estimated table + data bits. The
    // optimum sits near log2(n): rounding costs about range/2^P bits per
    // symbol, while each extra bit of precision costs about range table bits.
    let p_min = ceil_log2(range as u64).max(1);
    let centre = (ceil_log2(n) + 1).min(ANS_PRECISION);
    let lo = p_min.max(centre.saturating_sub(4));
    let hi = lo.max((centre + 2).min(ANS_PRECISION));
    let mut best: Option<(f64, u32, u32, Vec<u32>)> = None;
    for precision in lo..=hi {
        let freqs = normalize(&counts, n, precision);
        let (k, table_bits) = best_eg_order(&freqs, precision);
        let data_bits: f64 = counts
            .iter()
            .zip(&freqs)
            .filter(|(&c, _)| c > 0)
            .map(|(&c, &f)| c as f64 * (f64::from(precision) - f64::from(f).log2()))
            .sum();
        let cost = data_bits + table_bits as f64;
        if best.as_ref().is_none_or(|b| cost < b.0) {
            best = Some((cost, precision, k, freqs));
        }
    }
    let (_, precision, k, freqs) = best?;

    let shift = ANS_PRECISION - precision;
    let model =
        Model::from_nonzero_fixed_point_probabilities(freqs.iter().map(|&f| f << shift), false)
            .ok()?;
    let mut ans = DefaultAnsCoder::from_raw_parts(Vec::new(), ANS_INITIAL_STATE);
    ans.encode_iid_symbols_reverse(
        symbols
            .iter()
            .map(|&s| (i64::from(s) - i64::from(min)) as usize),
        model.as_view(),
    )
    .ok()?;
    let words = ans.into_compressed().ok()?;

    let mut w = ByteWriter::with_capacity(16 + range + 4 * words.len());
    w.put_u8(MODE_ANS);
    w.put_u8(precision as u8);
    w.put_u8(k as u8);
    w.put_ivarint(i64::from(min));
    w.put_varint(range as u64 - 1);
    let mut bits = BitWriter {
        bytes: Vec::new(),
        acc: 0,
        nbits: 0,
    };
    for &f in &freqs {
        bits.put_eg(f - 1, k);
    }
    w.put_bytes(&bits.finish());
    // Stored in decoding order: constriction pops words off the end.
    for &word in words.iter().rev() {
        w.put_u32(word);
    }
    Some(w.into_vec())
}

// ---------------------------------------------------------------------------
// Decoder side.

/// MSB-first bit reader over the probability table.
struct BitReader<'a> {
    bytes: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    fn get(&mut self) -> Option<u32> {
        let byte = self.bytes.get(self.bit / 8)?;
        let b = (byte >> (7 - self.bit % 8)) & 1;
        self.bit += 1;
        Some(u32::from(b))
    }

    /// Order-`k` Exp-Golomb value; `None` when out of bits or longer than
    /// any valid table entry.
    fn get_eg(&mut self, k: u32) -> Option<u64> {
        let mut zeros = 0u32;
        while self.get()? == 0 {
            zeros += 1;
            if zeros + k > ANS_PRECISION {
                return None;
            }
        }
        let n = zeros + k; // bits after the leading one
        let mut x = 1u64;
        for _ in 0..n {
            x = (x << 1) | u64::from(self.get()?);
        }
        Some(x - (1u64 << k))
    }
}

fn decode_ans(mut r: ByteReader<'_>, count: usize) -> Result<Vec<i32>, FormatError> {
    let precision = u32::from(r.get_u8("table precision")?);
    if !(1..=ANS_PRECISION).contains(&precision) {
        return Err(r.invalid("table precision", format!("{precision} is not in 1..=24")));
    }
    let k = u32::from(r.get_u8("table code order")?);
    if k > precision {
        return Err(r.invalid(
            "table code order",
            format!("{k} exceeds precision {precision}"),
        ));
    }
    let min = get_symbol(&mut r, "minimum symbol")?;
    let range_m1 = r.get_varint("symbol range")?;
    let range = range_m1.saturating_add(1);
    if range < 2 || range > 1u64 << precision || range > count as u64 {
        return Err(r.invalid(
            "symbol range",
            format!("{range} symbols with precision {precision} for {count} symbols"),
        ));
    }
    if i64::from(min) + range_m1 as i64 > i64::from(i32::MAX) {
        return Err(r.invalid("symbol range", "maximum symbol exceeds i32"));
    }
    // Each table entry takes at least one bit.
    if range > 8 * r.remaining() as u64 {
        return Err(r.truncated((range as usize).div_ceil(8), "probability table"));
    }
    let range = range as usize;

    let mut bits = BitReader {
        bytes: r.rest(),
        bit: 0,
    };
    let total = 1u64 << precision;
    let shift = ANS_PRECISION - precision;
    let mut freqs = Vec::with_capacity(range);
    let mut sum = 0u64;
    for _ in 0..range {
        let v = bits
            .get_eg(k)
            .ok_or_else(|| r.invalid("probability table", "truncated or malformed entry"))?;
        sum += v + 1;
        if sum > total {
            return Err(r.invalid("probability table", "frequencies exceed the total"));
        }
        freqs.push(((v + 1) << shift) as u32);
    }
    if sum != total {
        return Err(r.invalid(
            "probability table",
            format!("frequencies sum to {sum}, not 2^{precision}"),
        ));
    }
    let table_bytes = bits.bit.div_ceil(8);
    let pad = (table_bytes * 8 - bits.bit) as u32;
    for _ in 0..pad {
        if bits.get() != Some(0) {
            return Err(r.invalid("probability table", "nonzero padding bits"));
        }
    }
    r.get_bytes(table_bytes, "probability table")?;

    let word_bytes = r.rest();
    if !word_bytes.len().is_multiple_of(4) {
        return Err(r.invalid(
            "ANS words",
            format!(
                "{} bytes is not a whole number of 32-bit words",
                word_bytes.len()
            ),
        ));
    }
    let words = word_bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let table = SymbolTable::new(&freqs);
    let mut ans =
        AnsDecoder::new(words).ok_or_else(|| r.invalid("ANS words", "first word is zero"))?;
    let mut out = Vec::with_capacity(count.min(1 << 24));
    for _ in 0..count {
        let i = ans.decode(&table);
        // In range: i < range and min + range - 1 <= i32::MAX were checked.
        out.push((i64::from(min) + i as i64) as i32);
    }
    let (left, state) = (ans.words.len(), ans.state);
    if left != 0 {
        return Err(r.invalid(
            "ANS words",
            format!("{left} words left over after {count} symbols: the stream is corrupted"),
        ));
    }
    if state != ANS_INITIAL_STATE {
        return Err(r.invalid(
            "ANS words",
            format!("coder state not back to its initial value after {count} symbols: the stream is corrupted"),
        ));
    }
    Ok(out)
}

/// Bits of the coder's 24-bit quantile that index [`SymbolTable`]'s buckets: 2^12 buckets
/// (16 KiB) find the symbol of most quantiles in one load, and stay small next to the tensors
/// they decode (the smallest ANS streams have a few hundred symbols).
const BUCKET_BITS: u32 = 12;

/// The symbol lookup of the decoder: `C_i` and `F_i` (`docs/FORMAT.md`, at precision 24)
/// side by side, and for each of the `2^BUCKET_BITS` equal slices of the quantile range the
/// symbol its first quantile falls in. The symbol of quantile `q` lies between the first
/// symbols of its bucket and of the next one; a bucket holding no symbol boundary (the usual
/// case) answers at once, one holding several is searched in its own short range.
struct SymbolTable {
    /// `(C_i, F_i)` for `i = 0 … R−1`, then `(2^24, 0)`.
    cumulative: Vec<(u32, u32)>,
    /// First symbol of each bucket, then `R − 1` (the last symbol, as an end for the last bucket).
    first: Vec<u32>,
}

impl SymbolTable {
    /// The table of a validated model: `freqs` are the `F_i`, each ≥ 1, summing to `2^24`.
    fn new(freqs: &[u32]) -> SymbolTable {
        let mut cumulative = Vec::with_capacity(freqs.len() + 1);
        let mut c = 0u32;
        for &f in freqs {
            cumulative.push((c, f));
            c += f;
        }
        cumulative.push((c, 0));
        let buckets = 1usize << BUCKET_BITS;
        let width = 1u32 << (ANS_PRECISION - BUCKET_BITS);
        let mut first = Vec::with_capacity(buckets + 1);
        let mut i = 0usize;
        for b in 0..buckets as u32 {
            while cumulative[i + 1].0 <= b * width {
                i += 1;
            }
            first.push(i as u32);
        }
        first.push(freqs.len() as u32 - 1);
        SymbolTable { cumulative, first }
    }

    /// The `i` with `C_i ≤ q < C_{i+1}`, and `(C_i, F_i)`.
    #[inline(always)]
    fn find(&self, q: u32) -> (usize, u32, u32) {
        let b = (q >> (ANS_PRECISION - BUCKET_BITS)) as usize;
        let (lo, hi) = (self.first[b] as usize, self.first[b + 1] as usize);
        // The answer lies in lo ..= hi: C_lo ≤ q, and q is below the next bucket's start.
        let i = lo + self.cumulative[lo + 1..=hi].partition_point(|&(c, _)| c <= q);
        let (c, f) = self.cumulative[i];
        (i, c, f)
    }
}

/// The stack rANS decoder of `docs/FORMAT.md` ("ANS words and decoding"), which is
/// constriction's `AnsCoder<u32, u64>` at precision 24 read from the other end: a 64-bit
/// state, 32-bit words, at most one word read per symbol.
struct AnsDecoder<I> {
    state: u64,
    /// The words not read yet.
    words: I,
}

impl<I: ExactSizeIterator<Item = u32>> AnsDecoder<I> {
    /// The initial state from the first one or two words; `None` when the first is zero.
    fn new(mut words: I) -> Option<AnsDecoder<I>> {
        let state = match words.next() {
            None => 0,
            Some(0) => return None,
            Some(w0) => match words.next() {
                Some(w1) => (u64::from(w0) << 32) | u64::from(w1),
                None => u64::from(w0),
            },
        };
        Some(AnsDecoder { state, words })
    }

    /// Decodes one symbol's index into the table.
    #[inline(always)]
    fn decode(&mut self, table: &SymbolTable) -> usize {
        let q = (self.state & ((1 << ANS_PRECISION) - 1)) as u32;
        let (i, c, f) = table.find(q);
        self.state = (self.state >> ANS_PRECISION) * u64::from(f) + u64::from(q - c);
        if self.state < 1 << 32 {
            if let Some(w) = self.words.next() {
                self.state = (self.state << 32) | u64::from(w);
            }
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn laplace(rng: &mut ChaCha8Rng, n: usize, scale: f64) -> Vec<i32> {
        (0..n)
            .map(|_| {
                let u: f64 = rng.random::<f64>() - 0.5;
                let x = -scale * u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln();
                x.round().clamp(-1e6, 1e6) as i32
            })
            .collect()
    }

    fn round_trip(s: &[i32]) -> Vec<u8> {
        let e = encode_symbols(s);
        assert_eq!(encoded_len(s), e.len());
        let d = decode_symbols(&e, s.len()).unwrap();
        assert_eq!(d, s);
        assert_eq!(reference_decode(&e, s.len()).unwrap(), s);
        // The count is part of the contract: a different one must fail,
        // except for a constant stream, which holds no count.
        if e[0] != MODE_CONSTANT {
            assert!(decode_symbols(&e, s.len() + 1).is_err());
            assert!(decode_symbols(&e, s.len() + 5).is_err());
            if !s.is_empty() {
                assert!(decode_symbols(&e, s.len() - 1).is_err());
            }
        }
        e
    }

    #[test]
    fn round_trips() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for &n in &[1usize, 2, 3, 5, 17, 50, 100, 257, 1000, 10_000, 200_000] {
            for &scale in &[0.1, 0.5, 2.0, 8.0, 40.0, 3000.0] {
                let s = laplace(&mut rng, n, scale);
                let e = round_trip(&s);
                if n >= 1000 && scale <= 40.0 {
                    assert_eq!(e[0], MODE_ANS, "n {n} scale {scale}");
                }
            }
        }
    }

    /// The bucketed lookup finds the symbol of every quantile near each boundary, also where
    /// one bucket holds many boundaries (tiny frequencies) or a symbol spans many buckets.
    #[test]
    fn symbol_table_finds_every_boundary() {
        let unit = 1u32 << (ANS_PRECISION - 20);
        // 3000 symbols of frequency 1 (at precision 20), one huge, a few medium.
        let mut freqs = vec![unit; 3000];
        freqs.extend([unit * 700, unit * 3, unit * 5000]);
        let used: u32 = freqs.iter().sum();
        freqs.push((1 << ANS_PRECISION) - used);
        let table = SymbolTable::new(&freqs);
        let mut c = 0u32;
        for (i, &f) in freqs.iter().enumerate() {
            for q in [c, c + f / 2, c + f - 1] {
                assert_eq!(table.find(q), (i, c, f), "quantile {q}");
            }
            c += f;
        }
    }

    #[test]
    fn special_cases() {
        assert_eq!(round_trip(&[]), vec![MODE_EMPTY]);
        assert_eq!(round_trip(&[5]), vec![MODE_CONSTANT, 10]);
        assert_eq!(round_trip(&[-3; 1000]).len(), 2);
        round_trip(&[0, 1]);
        round_trip(&[1, 0]);
        round_trip(&[i32::MIN, i32::MAX]);
        round_trip(&[i32::MAX; 3]);
        round_trip(&[i32::MIN; 3]);
        round_trip(&[i32::MIN, 0, i32::MAX, -1, 1]);
        // Huge range: raw mode.
        let s: Vec<i32> = (0..100).map(|i| i * 1_000_003 - 50_000_000).collect();
        assert_eq!(round_trip(&s)[0], MODE_RAW);
        // Range just at the ANS limits, at both ends of i32.
        let s: Vec<i32> = (0..5000).map(|i| i32::MAX - (i % 300)).collect();
        assert_eq!(round_trip(&s)[0], MODE_ANS);
        let s: Vec<i32> = (0..5000).map(|i| i32::MIN + (i % 300)).collect();
        assert_eq!(round_trip(&s)[0], MODE_ANS);
        // Mostly one symbol, with a sparse wide tail (many zero counts).
        let mut s = vec![0i32; 20_000];
        for i in 0..20 {
            s[i * 997] = (i as i32 - 10) * 10;
        }
        let e = round_trip(&s);
        assert_eq!(e[0], MODE_ANS);
        assert!(e.len() < 120, "{}", e.len());
        // A uniform distribution over the whole ANS range.
        let s: Vec<i32> = (0..(1 << 17)).map(|i| (i * 7919) % (1 << 16)).collect();
        round_trip(&s);
    }

    /// Empirical entropy in bits of `s`.
    fn entropy_bits(s: &[i32]) -> f64 {
        let mut m = std::collections::HashMap::new();
        for &x in s {
            *m.entry(x).or_insert(0usize) += 1;
        }
        let n = s.len() as f64;
        m.values()
            .map(|&c| {
                let p = c as f64 / n;
                -(c as f64) * p.log2()
            })
            .sum()
    }

    #[test]
    fn size_close_to_entropy() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &scale in &[0.7, 3.0, 12.0] {
            let s = laplace(&mut rng, 100_000, scale);
            let e = encode_symbols(&s);
            assert_eq!(e[0], MODE_ANS);
            let (precision, k) = (u32::from(e[1]), u32::from(e[2]));
            let h = entropy_bits(&s);
            let (min, max) = (*s.iter().min().unwrap(), *s.iter().max().unwrap());
            let range = (max - min + 1) as usize;
            // Table bits, reconstructed by reference_table.
            let (_, table_bytes, _, _) = reference_table(&e, s.len()).unwrap();
            let bits = 8.0 * e.len() as f64;
            let overhead = (bits - 8.0 * table_bytes as f64) / h - 1.0;
            eprintln!(
                "scale {scale}: {} B, entropy {:.0} B, table {table_bytes} B (range {range}, P {precision}, k {k}), data overhead {:.3}%, total overhead {:.3}%",
                e.len(),
                h / 8.0,
                100.0 * overhead,
                100.0 * (bits / h - 1.0)
            );
            assert!(overhead < 0.01, "data overhead {overhead}");
            assert!(bits < 1.02 * h + 8.0 * 64.0, "total {bits} vs {h}");
        }
    }

    #[test]
    fn small_tensor_costs() {
        // Table cost matters for small tensors: report and bound it.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for &n in &[50usize, 200, 1000, 5000] {
            let s = laplace(&mut rng, n, 4.0);
            let e = encode_symbols(&s);
            let h = entropy_bits(&s) / 8.0;
            eprintln!("n {n}: {} B vs entropy {h:.0} B (mode {})", e.len(), e[0]);
            assert!((e.len() as f64) < 1.35 * h + 24.0);
        }
    }

    #[test]
    fn truncation_and_bit_flips_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (n, scale) in [(300usize, 3.0), (40, 1.0), (64, 200.0), (2, 0.3)] {
            let s = laplace(&mut rng, n, scale);
            let e = encode_symbols(&s);
            for len in 0..e.len() {
                assert!(
                    decode_symbols(&e[..len], n).is_err(),
                    "len {len} of {}",
                    e.len()
                );
                assert!(reference_decode(&e[..len], n).is_err());
            }
            let mut undetected = 0;
            for bit in 0..e.len() * 8 {
                let mut c = e.clone();
                c[bit / 8] ^= 1 << (bit % 8);
                let ours = decode_symbols(&c, n);
                // The reference decoder must agree on every input.
                assert_eq!(ours.as_ref().ok(), reference_decode(&c, n).as_ref().ok());
                if let Ok(v) = ours {
                    assert_eq!(v.len(), n);
                    if v != s {
                        undetected += 1;
                    }
                }
            }
            eprintln!(
                "n {n}: {undetected} of {} bit flips decode to wrong symbols (mode {})",
                e.len() * 8,
                e[0]
            );
        }
        // Random garbage, including garbage behind valid-looking headers.
        for i in 0..2000 {
            let len = rng.random_range(0..64);
            let mut g: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if i % 2 == 0 && !g.is_empty() {
                g[0] = MODE_ANS;
            }
            let n = rng.random_range(0..100);
            let ours = decode_symbols(&g, n);
            assert_eq!(ours.as_ref().ok(), reference_decode(&g, n).as_ref().ok());
        }
    }

    // -----------------------------------------------------------------------
    // An independent decoder written from docs/FORMAT.md alone: plain integer
    // arithmetic, no constriction. It must accept exactly what
    // `decode_symbols` accepts and produce the same symbols.

    struct Rd<'a> {
        b: &'a [u8],
        pos: usize,
    }

    impl Rd<'_> {
        fn u8(&mut self) -> Option<u8> {
            let v = *self.b.get(self.pos)?;
            self.pos += 1;
            Some(v)
        }
        fn varint(&mut self) -> Option<u64> {
            let mut v = 0u64;
            for i in 0..10 {
                let b = self.u8()?;
                let low = u64::from(b & 0x7f);
                if i == 9 && low > 1 {
                    return None;
                }
                v |= low << (7 * i);
                if b < 0x80 {
                    if b == 0 && i > 0 {
                        return None;
                    }
                    return Some(v);
                }
            }
            None
        }
        fn symbol(&mut self) -> Option<i32> {
            let u = self.varint()?;
            let v = (u >> 1) as i64 ^ -((u & 1) as i64);
            i32::try_from(v).ok()
        }
    }

    /// Parses an ANS header and table: (min, table bytes, frequencies at
    /// 24-bit precision, offset of the first word).
    #[allow(clippy::type_complexity)]
    fn reference_table(b: &[u8], count: usize) -> Option<(i32, usize, Vec<u64>, usize)> {
        let mut r = Rd { b, pos: 0 };
        if r.u8()? != 3 {
            return None;
        }
        let p = u32::from(r.u8()?);
        let k = u32::from(r.u8()?);
        if !(1..=24).contains(&p) || k > p {
            return None;
        }
        let min = r.symbol()?;
        let range = r.varint()?.checked_add(1)?;
        if range < 2 || range > (1 << p) || range > count as u64 {
            return None;
        }
        if i64::from(min) + range as i64 - 1 > i64::from(i32::MAX) {
            return None;
        }
        let start = r.pos;
        let bit = std::cell::Cell::new(0usize);
        let next = || -> Option<u64> {
            let at = bit.get();
            let byte = *b.get(start + at / 8)?;
            bit.set(at + 1);
            Some(u64::from((byte >> (7 - at % 8)) & 1))
        };
        let mut freqs = Vec::new();
        let mut sum = 0u64;
        for _ in 0..range {
            let mut zeros = 0;
            while next()? == 0 {
                zeros += 1;
                if zeros + k > 24 {
                    return None;
                }
            }
            let mut x = 1u64;
            for _ in 0..zeros + k {
                x = 2 * x + next()?;
            }
            let f = x - (1 << k) + 1;
            sum += f;
            if sum > 1 << p {
                return None;
            }
            freqs.push(f << (24 - p));
        }
        if sum != 1 << p {
            return None;
        }
        while !bit.get().is_multiple_of(8) {
            if next()? != 0 {
                return None;
            }
        }
        let bytes = bit.get() / 8;
        Some((min, bytes, freqs, start + bytes))
    }

    fn reference_decode(b: &[u8], count: usize) -> Result<Vec<i32>, ()> {
        let mut r = Rd { b, pos: 0 };
        match r.u8().ok_or(())? {
            0 if count == 0 && b.len() == 1 => Ok(vec![]),
            1 if count > 0 => {
                let s = r.symbol().ok_or(())?;
                if r.pos != b.len() {
                    return Err(());
                }
                Ok(vec![s; count])
            }
            2 => {
                let mut out = Vec::new();
                for _ in 0..count {
                    out.push(r.symbol().ok_or(())?);
                }
                if r.pos != b.len() {
                    return Err(());
                }
                Ok(out)
            }
            3 => {
                let (min, _, freqs, words_at) = reference_table(b, count).ok_or(())?;
                let wb = &b[words_at..];
                if !wb.len().is_multiple_of(4) {
                    return Err(());
                }
                let w: Vec<u64> = wb
                    .chunks(4)
                    .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect();
                // cdf[i] = sum of freqs before i; cdf[range] = 2^24.
                let mut cdf = vec![0u64];
                for f in &freqs {
                    cdf.push(cdf.last().unwrap() + f);
                }
                // Initial state: up to two words, first one nonzero.
                let mut pos = 0;
                let mut state = 0u64;
                if !w.is_empty() {
                    if w[0] == 0 {
                        return Err(());
                    }
                    state = w[0];
                    pos = 1;
                    if w.len() > 1 {
                        state = (state << 32) | w[1];
                        pos = 2;
                    }
                }
                let mut out = Vec::new();
                for _ in 0..count {
                    let q = state & ((1 << 24) - 1);
                    // Largest i with cdf[i] <= q (linear scan on purpose).
                    let mut i = 0;
                    while cdf[i + 1] <= q {
                        i += 1;
                    }
                    state = (state >> 24) * freqs[i] + (q - cdf[i]);
                    if state < 1 << 32 && pos < w.len() {
                        state = (state << 32) | w[pos];
                        pos += 1;
                    }
                    out.push((i64::from(min) + i as i64) as i32);
                }
                if pos != w.len() || state != 1 << 24 {
                    return Err(());
                }
                Ok(out)
            }
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// `cargo test --release -- --ignored --nocapture speed` prints timings.
    #[test]
    #[ignore]
    fn speed() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let s: Vec<i32> = (0..2_000_000)
            .map(|_| {
                let u: f64 = rng.random::<f64>() - 0.5;
                (-4.0 * u.signum() * (1.0 - 2.0 * u.abs()).max(1e-300).ln()).round() as i32
            })
            .collect();
        let t = std::time::Instant::now();
        let n = encoded_len(&s);
        let enc = t.elapsed();
        let e = encode_symbols(&s);
        let t = std::time::Instant::now();
        let d = decode_symbols(&e, s.len()).unwrap();
        let dec = t.elapsed();
        assert_eq!(d, s);
        eprintln!("2M symbols -> {n} B: encoded_len {enc:?}, decode {dec:?}");
    }
}
