//! Bjøntegaard deltas (BD-rate, BD-PSNR) with PCHIP interpolation, as in the study's
//! tables; checked against scipy in the tests.

use super::*;

/// Piecewise cubic Hermite interpolant with Fritsch–Carlson slopes (as scipy's
/// `PchipInterpolator`): monotone where the data are, no overshoot, exact integrals.
#[derive(Debug, Clone)]
pub(super) struct Pchip {
    x: Vec<f64>,
    y: Vec<f64>,
    d: Vec<f64>,
}

impl Pchip {
    /// `x` strictly increasing, at least two points.
    fn new(x: &[f64], y: &[f64]) -> Option<Pchip> {
        let n = x.len();
        if n < 2 || y.len() != n || x.windows(2).any(|w| w[1] <= w[0]) {
            return None;
        }
        let h: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
        let m: Vec<f64> = (0..n - 1).map(|k| (y[k + 1] - y[k]) / h[k]).collect();
        let mut d = vec![0.0; n];
        if n == 2 {
            d = vec![m[0], m[0]];
        } else {
            for k in 1..n - 1 {
                if m[k - 1] * m[k] > 0.0 {
                    let w1 = 2.0 * h[k] + h[k - 1];
                    let w2 = h[k] + 2.0 * h[k - 1];
                    d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k]);
                }
            }
            d[0] = Self::edge(h[0], h[1], m[0], m[1]);
            d[n - 1] = Self::edge(h[n - 2], h[n - 3], m[n - 2], m[n - 3]);
        }
        Some(Pchip {
            x: x.to_vec(),
            y: y.to_vec(),
            d,
        })
    }

    /// One-sided three-point slope at an end, limited to keep the shape.
    fn edge(h0: f64, h1: f64, m0: f64, m1: f64) -> f64 {
        let d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1);
        if sign(d) != sign(m0) {
            0.0
        } else if sign(m0) != sign(m1) && d.abs() > 3.0 * m0.abs() {
            3.0 * m0
        } else {
            d
        }
    }

    fn lo(&self) -> f64 {
        self.x[0]
    }

    fn hi(&self) -> f64 {
        self.x[self.x.len() - 1]
    }

    /// ∫ from `a` to `b` (both within the data range, `a ≤ b`).
    fn integral(&self, a: f64, b: f64) -> f64 {
        // Antiderivatives of the Hermite basis h00, h10, h01, h11 on t ∈ [0, 1].
        let f = |t: f64| {
            let (t2, t3, t4) = (t * t, t * t * t, t * t * t * t);
            [
                t4 / 2.0 - t3 + t,
                t4 / 4.0 - 2.0 * t3 / 3.0 + t2 / 2.0,
                -t4 / 2.0 + t3,
                t4 / 4.0 - t3 / 3.0,
            ]
        };
        let mut total = 0.0;
        for k in 0..self.x.len() - 1 {
            let (x0, x1) = (self.x[k], self.x[k + 1]);
            let (s, e) = (a.max(x0), b.min(x1));
            if e <= s {
                continue;
            }
            let h = x1 - x0;
            let (f0, f1) = (f((s - x0) / h), f((e - x0) / h));
            let c = [self.y[k], h * self.d[k], self.y[k + 1], h * self.d[k + 1]];
            total += h * (0..4).map(|i| c[i] * (f1[i] - f0[i])).sum::<f64>();
        }
        total
    }
}

pub(super) fn sign(v: f64) -> i8 {
    if v > 0.0 {
        1
    } else if v < 0.0 {
        -1
    } else {
        0
    }
}

/// Average of `test − anchor` over the overlap of two curves given as (x, y) points, and the
/// overlap. `None` when a curve has fewer than two distinct x or the curves do not overlap.
pub(super) fn bd_average(anchor: &[(f64, f64)], test: &[(f64, f64)]) -> Option<(f64, [f64; 2])> {
    let fit = |pts: &[(f64, f64)]| {
        let mut p: Vec<(f64, f64)> = pts.to_vec();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        p.dedup_by(|b, a| (b.0 - a.0).abs() <= 1e-12 * a.0.abs().max(1.0));
        let (x, y): (Vec<f64>, Vec<f64>) = p.into_iter().unzip();
        Pchip::new(&x, &y)
    };
    let (a, t) = (fit(anchor)?, fit(test)?);
    let (lo, hi) = (a.lo().max(t.lo()), a.hi().min(t.hi()));
    if hi <= lo {
        return None;
    }
    Some((
        (t.integral(lo, hi) - a.integral(lo, hi)) / (hi - lo),
        [lo, hi],
    ))
}

/// A Bjøntegaard figure and the interval it was averaged over (`None`: no overlap).
type BdFigure = Option<(f64, [f64; 2])>;

/// BD-rate (percent, over a PSNR interval) and BD-PSNR (dB, over a bpv interval) of `test`
/// against `anchor`; points are (bpv, PSNR).
pub(super) fn bjontegaard(anchor: &[(f64, f64)], test: &[(f64, f64)]) -> (BdFigure, BdFigure) {
    let swap =
        |p: &[(f64, f64)]| -> Vec<(f64, f64)> { p.iter().map(|&(r, q)| (q, r.log10())).collect() };
    let log =
        |p: &[(f64, f64)]| -> Vec<(f64, f64)> { p.iter().map(|&(r, q)| (r.log10(), q)).collect() };
    let rate = bd_average(&swap(anchor), &swap(test))
        .map(|(avg, psnr)| ((10f64.powf(avg) - 1.0) * 100.0, psnr));
    let psnr = bd_average(&log(anchor), &log(test))
        .map(|(avg, [a, b])| (avg, [10f64.powf(a), 10f64.powf(b)]));
    (rate, psnr)
}

/// Lossy (bpv, PSNR) points of one codec, by rate.
pub(super) fn curve(rows: &[Row], codec: &str) -> Vec<(f64, f64)> {
    points(
        rows,
        |r| r.codec == codec && r.target_bpv.is_some(),
        |r| r.psnr_db,
    )
}

/// (bpv, y) of the rows `keep` selects where `y` is defined and the rate positive, by rate.
pub(super) fn points(
    rows: &[Row],
    keep: impl Fn(&Row) -> bool,
    y: impl Fn(&Row) -> Option<f64>,
) -> Vec<(f64, f64)> {
    let mut p: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| keep(r))
        .filter_map(|r| Some((r.bpv, y(r)?)))
        .filter(|&(b, _)| b > 0.0)
        .collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    p
}

/// BD figures of medinr against JPEG 2000. `trivial` is the trivial baseline (its name and
/// PSNR: the temporal mean of a 4D scan, the constant of a 3D one): when it is above every
/// lossy point of both codecs, neither curve is worth having and the figures are flagged,
/// never read as a win.
pub(super) fn bd_for(rows: &[Row], trivial: Option<(&str, f64)>) -> Bd {
    let (anchor, test) = (curve(rows, J2K), curve(rows, MEDINR));
    let (rate, psnr) = bjontegaard(&anchor, &test);
    let mut notes = Vec::new();
    for (name, c) in [("JPEG 2000", &anchor), ("medinr", &test)] {
        if c.windows(2).any(|w| w[1].1 <= w[0].1) {
            notes.push(format!(
                "{name}'s PSNR does not increase with rate at every point; BD-rate treats rate \
                 as a function of PSNR and is less reliable"
            ));
        }
        if c.len() < 2 {
            notes.push(format!("{name} has fewer than two lossy points"));
        }
    }
    if rate.is_none() {
        notes.push("BD-rate: the PSNR ranges of the two codecs do not overlap".into());
    }
    if psnr.is_none() {
        notes.push("BD-PSNR: the rate ranges of the two codecs do not overlap".into());
    }
    let best = anchor
        .iter()
        .chain(&test)
        .map(|p| p.1)
        .fold(f64::MIN, f64::max);
    let below = trivial.filter(|&(_, b)| !anchor.is_empty() && !test.is_empty() && best < b);
    if let Some((name, b)) = below {
        notes.push(format!(
            "no win: the {name} baseline ({b:.2} dB) is above every lossy point of both \
             codecs (best {best:.2} dB), so the BD figures compare two failures"
        ));
    }
    let below_trivial_baseline = below.is_some();
    Bd {
        method: BD_METHOD.into(),
        anchor: J2K.into(),
        test: MEDINR.into(),
        bd_rate_percent: rate.map(|r| r.0),
        bd_psnr_db: psnr.map(|p| p.0),
        psnr_overlap_db: rate.map(|r| r.1),
        bpv_overlap: psnr.map(|p| p.1),
        below_trivial_baseline,
        notes,
    }
}

// ---------------------------------------------------------------------------------------------
// CSV and summary

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Reference values from scipy 1.17: `PchipInterpolator(x, y)`, its `.derivative()(x)`,
    /// `.integrate(0.5, 3.2)` and `.integrate(0, 4)`.
    #[test]
    fn pchip_matches_scipy() {
        let x = [0.0, 1.0, 2.5, 3.0, 4.0];
        let cases: [([f64; 5], [f64; 5], f64, f64); 2] = [
            (
                [1.0, 2.0, 2.2, 4.0, 4.1],
                [
                    1.3466666666666667,
                    0.24793388429752083,
                    0.30422535211267626,
                    0.21744966442952945,
                    0.0,
                ],
                6.422364317212028,
                10.350935047177947,
            ),
            (
                // Not monotone: zero slopes at the turning points.
                [1.0, 3.0, 2.0, 2.5, 5.0],
                [
                    3.066666666666667,
                    0.0,
                    0.0,
                    1.3636363636363638,
                    3.4999999999999996,
                ],
                6.769564141414142,
                10.67411616161616,
            ),
        ];
        for (y, d, part, full) in cases {
            let p = Pchip::new(&x, &y).unwrap();
            for (a, b) in p.d.iter().zip(d) {
                assert!(close(*a, b, 1e-12), "{:?} vs {d:?}", p.d);
            }
            assert!(close(p.integral(0.5, 3.2), part, 1e-12));
            assert!(close(p.integral(0.0, 4.0), full, 1e-12));
        }
    }
}
