//! Pictures: rate–distortion plots (plotters) with a small bitmap font for labels, and the
//! slice comparison picture with error maps.

use super::*;

/// A built-in 5×7 bitmap font (8 rows: the last is for descenders), drawn by this file, so
/// PNG text needs no system font. Rows top to bottom, `#` = ink.
pub(super) const GLYPHS: &[(char, &str)] = &[
    ('0', ".###. #...# #..## #.#.# ##..# #...# .###."),
    ('1', "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('2', ".###. #...# ....# ...#. ..#.. .#... #####"),
    ('3', "####. ....# ....# .###. ....# ....# ####."),
    ('4', "...#. ..##. .#.#. #..#. ##### ...#. ...#."),
    ('5', "##### #.... ####. ....# ....# #...# .###."),
    ('6', "..##. .#... #.... ####. #...# #...# .###."),
    ('7', "##### ....# ...#. ..#.. .#... .#... .#..."),
    ('8', ".###. #...# #...# .###. #...# #...# .###."),
    ('9', ".###. #...# #...# .#### ....# ...#. .##.."),
    ('A', ".###. #...# #...# ##### #...# #...# #...#"),
    ('B', "####. #...# #...# ####. #...# #...# ####."),
    ('C', ".###. #...# #.... #.... #.... #...# .###."),
    ('D', "####. #...# #...# #...# #...# #...# ####."),
    ('E', "##### #.... #.... ####. #.... #.... #####"),
    ('F', "##### #.... #.... ####. #.... #.... #...."),
    ('G', ".###. #...# #.... #.### #...# #...# .####"),
    ('H', "#...# #...# #...# ##### #...# #...# #...#"),
    ('I', ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('J', "..### ...#. ...#. ...#. ...#. #..#. .##.."),
    ('K', "#...# #..#. #.#.. ##... #.#.. #..#. #...#"),
    ('L', "#.... #.... #.... #.... #.... #.... #####"),
    ('M', "#...# ##.## #.#.# #.#.# #...# #...# #...#"),
    ('N', "#...# #...# ##..# #.#.# #..## #...# #...#"),
    ('O', ".###. #...# #...# #...# #...# #...# .###."),
    ('P', "####. #...# #...# ####. #.... #.... #...."),
    ('Q', ".###. #...# #...# #...# #.#.# #..#. .##.#"),
    ('R', "####. #...# #...# ####. #.#.. #..#. #...#"),
    ('S', ".#### #.... #.... .###. ....# ....# ####."),
    ('T', "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    ('U', "#...# #...# #...# #...# #...# #...# .###."),
    ('V', "#...# #...# #...# #...# #...# .#.#. ..#.."),
    ('W', "#...# #...# #...# #.#.# #.#.# #.#.# .#.#."),
    ('X', "#...# #...# .#.#. ..#.. .#.#. #...# #...#"),
    ('Y', "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.."),
    ('Z', "##### ....# ...#. ..#.. .#... #.... #####"),
    ('a', "..... ..... .###. ....# .#### #...# .####"),
    ('b', "#.... #.... #.##. ##..# #...# #...# ####."),
    ('c', "..... ..... .###. #.... #.... #...# .###."),
    ('d', "....# ....# .##.# #..## #...# #...# .####"),
    ('e', "..... ..... .###. #...# ##### #.... .###."),
    ('f', "..##. .#..# .#... ###.. .#... .#... .#..."),
    ('g', "..... ..... .#### #...# #...# .#### ....# .###."),
    ('h', "#.... #.... #.##. ##..# #...# #...# #...#"),
    ('i', "..#.. ..... .##.. ..#.. ..#.. ..#.. .###."),
    ('j', "...#. ..... ..##. ...#. ...#. ...#. #..#. .##.."),
    ('k', "#.... #.... #..#. #.#.. ##... #.#.. #..#."),
    ('l', ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###."),
    ('m', "..... ..... ##.#. #.#.# #.#.# #...# #...#"),
    ('n', "..... ..... #.##. ##..# #...# #...# #...#"),
    ('o', "..... ..... .###. #...# #...# #...# .###."),
    ('p', "..... ..... ####. #...# #...# ####. #.... #...."),
    ('q', "..... ..... .##.# #..## #...# .#### ....# ....#"),
    ('r', "..... ..... #.##. ##..# #.... #.... #...."),
    ('s', "..... ..... .###. #.... .###. ....# ####."),
    ('t', ".#... .#... ###.. .#... .#... .#..# ..##."),
    ('u', "..... ..... #...# #...# #...# #..## .##.#"),
    ('v', "..... ..... #...# #...# #...# .#.#. ..#.."),
    ('w', "..... ..... #...# #...# #.#.# #.#.# .#.#."),
    ('x', "..... ..... #...# .#.#. ..#.. .#.#. #...#"),
    ('y', "..... ..... #...# #...# #...# .#### ....# .###."),
    ('z', "..... ..... ##### ...#. ..#.. .#... #####"),
    (' ', ""),
    ('!', "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#.."),
    ('"', ".#.#. .#.#. .#.#."),
    ('#', ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#."),
    ('%', "##... ##..# ...#. ..#.. .#... #..## ...##"),
    ('&', ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#"),
    ('\'', "..#.. ..#.. .#..."),
    ('(', "...#. ..#.. .#... .#... .#... ..#.. ...#."),
    (')', ".#... ..#.. ...#. ...#. ...#. ..#.. .#..."),
    ('*', "..... ..#.. #.#.# .###. #.#.# ..#.. ....."),
    ('+', "..... ..#.. ..#.. ##### ..#.. ..#.. ....."),
    (',', "..... ..... ..... ..... ..... .##.. ..#.. .#..."),
    ('-', "..... ..... ..... ##### ..... ..... ....."),
    ('.', "..... ..... ..... ..... ..... .##.. .##.."),
    ('/', "..... ....# ...#. ..#.. .#... #.... ....."),
    (':', "..... .##.. .##.. ..... .##.. .##.. ....."),
    (';', "..... .##.. .##.. ..... .##.. ..#.. .#..."),
    ('<', "...#. ..#.. .#... #.... .#... ..#.. ...#."),
    ('=', "..... ..... ##### ..... ##### ..... ....."),
    ('>', ".#... ..#.. ...#. ....# ...#. ..#.. .#..."),
    ('?', ".###. #...# ....# ...#. ..#.. ..... ..#.."),
    ('[', ".###. .#... .#... .#... .#... .#... .###."),
    (']', ".###. ...#. ...#. ...#. ...#. ...#. .###."),
    ('_', "..... ..... ..... ..... ..... ..... #####"),
    ('|', "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.."),
    ('~', "..... ..... .#... #.#.# ...#. ..... ....."),
    ('^', "..#.. .#.#. #...#"),
];

/// Glyph advance in font pixels: 5 wide + 1 space.
pub(super) const CELL_W: i32 = 6;
/// Cap height in font pixels (what text is aligned on).
pub(super) const CAP_H: i32 = 7;

pub(super) fn glyph(c: char) -> [u8; 8] {
    let c = match c {
        '×' => 'x',
        '–' | '—' | '−' => '-',
        c => c,
    };
    let rows = GLYPHS
        .iter()
        .find(|g| g.0 == c)
        .map_or(".###. #...# ....# ...#. ..#.. ..... ..#..", |g| g.1);
    let mut out = [0u8; 8];
    for (i, row) in rows
        .split(' ')
        .filter(|r| !r.is_empty())
        .take(8)
        .enumerate()
    {
        for (j, ch) in row.chars().take(5).enumerate() {
            if ch == '#' {
                out[i] |= 1 << (4 - j);
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Align {
    Start,
    Middle,
    End,
}

/// Text placed on a picture, in pixels. `(x, y)` is the anchor: `h` aligns horizontally, and
/// vertically the cap-height box is centred on `y`. `vertical` rotates it 90° anticlockwise.
#[derive(Debug, Clone)]
pub(super) struct Label {
    x: i32,
    y: i32,
    text: String,
    scale: i32,
    color: RGBColor,
    h: Align,
    vertical: bool,
}

impl Label {
    fn new(x: i32, y: i32, text: impl Into<String>, scale: i32, h: Align) -> Label {
        Label {
            x,
            y,
            text: text.into(),
            scale,
            color: BLACK,
            h,
            vertical: false,
        }
    }

    fn width(&self) -> i32 {
        (self.text.chars().count() as i32 * CELL_W - 1).max(0) * self.scale
    }

    /// Draws into an RGB buffer of `width` pixels per row.
    fn raster(&self, buf: &mut [u8], width: usize) {
        let height = (buf.len() / 3 / width) as i32;
        let s = self.scale;
        let start = match self.h {
            Align::Start => 0,
            Align::Middle => -self.width() / 2,
            Align::End => -self.width(),
        };
        let top = -CAP_H * s / 2;
        let RGBColor(r, g, b) = self.color;
        for (k, c) in self.text.chars().enumerate() {
            let rows = glyph(c);
            for (i, bits) in rows.iter().enumerate() {
                for j in 0..5 {
                    if bits & (1 << (4 - j)) == 0 {
                        continue;
                    }
                    for dy in 0..s {
                        for dx in 0..s {
                            // (u, v): along and across the text direction.
                            let u = start + (k as i32 * CELL_W + j) * s + dx;
                            let v = top + i as i32 * s + dy;
                            let (px, py) = if self.vertical {
                                (self.x + v, self.y - u)
                            } else {
                                (self.x + u, self.y + v)
                            };
                            if px >= 0 && py >= 0 && (px as usize) < width && py < height {
                                let o = (py as usize * width + px as usize) * 3;
                                buf[o..o + 3].copy_from_slice(&[r, g, b]);
                            }
                        }
                    }
                }
            }
        }
    }

    pub(super) fn svg(&self) -> String {
        let anchor = match self.h {
            Align::Start => "start",
            Align::Middle => "middle",
            Align::End => "end",
        };
        let RGBColor(r, g, b) = self.color;
        let rotate = if self.vertical {
            format!(" transform=\"rotate(-90 {} {})\"", self.x, self.y)
        } else {
            String::new()
        };
        let text = self
            .text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        format!(
            "<text x=\"{}\" y=\"{}\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\" \
             font-size=\"{}\" text-anchor=\"{anchor}\" dominant-baseline=\"central\" \
             fill=\"#{r:02x}{g:02x}{b:02x}\"{rotate}>{text}</text>\n",
            self.x,
            self.y,
            10 * self.scale
        )
    }
}

pub(super) fn encode_rgb_png(width: usize, height: usize, rgb: &[u8]) -> Result<Vec<u8>> {
    Ok(medinr::study::encode_png_as(
        width,
        height,
        rgb,
        png::ColorType::Rgb,
    )?)
}

// ---------------------------------------------------------------------------------------------
// Pictures: PSNR vs rate

pub(super) const PLOT_W: u32 = 960;
pub(super) const PLOT_H: u32 = 750;
pub(super) const MEDINR_COLOR: RGBColor = RGBColor(31, 119, 180);
pub(super) const J2K_COLOR: RGBColor = RGBColor(214, 39, 40);
pub(super) const BOUNDED_COLOR: RGBColor = RGBColor(44, 160, 44);
pub(super) const SZ3_COLOR: RGBColor = RGBColor(148, 103, 189);
pub(super) const BASELINE_COLOR: RGBColor = RGBColor(90, 90, 90);
pub(super) const GRID_COLOR: RGBColor = RGBColor(225, 225, 225);

type Curve = (String, RGBColor, Vec<(f64, f64)>);

pub(super) struct RdPlot {
    title: String,
    subtitle: String,
    /// Name, colour, (bpv, PSNR) points.
    curves: Vec<Curve>,
    /// A horizontal reference line (name, value): the temporal-mean baseline of a 4D scan.
    baseline: Option<(String, f64)>,
    y_label: String,
    /// Narrowest y range drawn (2 dB for PSNR, less for a correlation).
    y_min_span: f64,
    notes: Vec<String>,
}

/// Legend rows: each entry's x offset from the plot's left edge, wrapped to `width`.
fn legend_layout(widths: &[i32], width: i32) -> Vec<(usize, i32)> {
    let (mut row, mut x) = (0, 0);
    widths
        .iter()
        .map(|&w| {
            if x > 0 && x + w > width {
                row += 1;
                x = 0;
            }
            let at = (row, x);
            x += w + 40;
            at
        })
        .collect()
}

/// (bpv, y) of a codec's bounded rows (lossless excluded: its PSNR is infinite), by rate.
fn bounded_curve(rows: &[Row], codec: &str, y: impl Fn(&Row) -> Option<f64>) -> Vec<(f64, f64)> {
    points(rows, |r| r.codec == codec && r.mode == "bounded", y)
}

/// Every codec's curve of `y` against rate: lossy rows for medinr and JPEG 2000, bounded rows
/// for medinr's bounded mode and SZ3; codecs without points are left out.
fn curves_of(rows: &[Row], y: impl Fn(&Row) -> Option<f64> + Copy) -> Vec<Curve> {
    let lossy = |codec: &str| points(rows, |r| r.codec == codec && r.target_bpv.is_some(), y);
    [
        ("medinr".to_string(), MEDINR_COLOR, lossy(MEDINR)),
        ("JPEG 2000 (per slice, 9/7)".into(), J2K_COLOR, lossy(J2K)),
        (
            "medinr --max-error".into(),
            BOUNDED_COLOR,
            bounded_curve(rows, MEDINR_BOUNDED, y),
        ),
        (
            "SZ3 (same bounds)".into(),
            SZ3_COLOR,
            bounded_curve(rows, SZ3, y),
        ),
    ]
    .into_iter()
    .filter(|c| !c.2.is_empty())
    .collect()
}

impl RdPlot {
    pub(super) fn from_report(r: &ScanReport) -> RdPlot {
        let mut notes = Vec::new();
        if let Some(l) = r
            .rows
            .iter()
            .find(|x| x.codec == J2K && x.target_bpv.is_none())
        {
            notes.push(format!(
                "JPEG 2000 lossless: {:.3} bpv ({:.2}:1)",
                l.bpv, l.ratio
            ));
        }
        if let Some(l) = r
            .rows
            .iter()
            .find(|x| x.codec == MEDINR_BOUNDED && x.mode == "lossless")
        {
            notes.push(format!(
                "medinr lossless: {:.3} bpv ({:.2}:1)",
                l.bpv, l.ratio
            ));
        }
        notes.push(format!(
            "BD-rate {}, BD-PSNR {} (medinr vs JPEG 2000){}",
            fmt_opt(r.bd.bd_rate_percent, 1, " %"),
            fmt_opt(r.bd.bd_psnr_db, 2, " dB"),
            if r.bd.below_trivial_baseline {
                ": NO WIN, both below the trivial baseline"
            } else {
                ""
            }
        ));
        RdPlot {
            title: format!("{}: PSNR vs rate", r.scan),
            subtitle: format!(
                "{} {}, PSNR on the scan's range {}; medinr effort {}",
                shape_text(r.shape).replace('×', "x"),
                r.datatype,
                r.data_range,
                r.effort
            ),
            curves: curves_of(&r.rows, |x| x.psnr_db),
            baseline: r
                .temporal_mean_psnr_db
                .map(|b| ("temporal mean (trivial baseline)".to_string(), b)),
            y_label: "PSNR (dB)".into(),
            y_min_span: 2.0,
            notes,
        }
    }

    /// 4D scans: median voxel time-course correlation against rate, every codec.
    pub(super) fn timeseries_from_report(r: &ScanReport) -> Option<RdPlot> {
        let curves = curves_of(&r.rows, |x| x.timeseries.as_ref()?.median_ts_correlation);
        if curves.is_empty() {
            return None;
        }
        Some(RdPlot {
            title: format!("{}: time-course correlation vs rate", r.scan),
            subtitle: format!(
                "{} {}, median over the foreground (docs/METRICS.md)",
                shape_text(r.shape).replace('×', "x"),
                r.datatype
            ),
            curves,
            baseline: None,
            y_label: "median time-course correlation".into(),
            y_min_span: 0.1,
            notes: vec![
                "the temporal-mean baseline has no fluctuation: correlation undefined (0)".into(),
            ],
        })
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let x_any = self
            .curves
            .iter()
            .flat_map(|c| c.2.first().map(|p| p.0))
            .next();
        let baseline = self.baseline.iter().filter_map(|b| Some((x_any?, b.1)));
        let pts = self
            .curves
            .iter()
            .flat_map(|c| c.2.iter().copied())
            .chain(baseline);
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            return ((0.01, 10.0), (0.0, 50.0));
        }
        let span = self.y_min_span;
        let (y0, y1) = if y1 - y0 < span {
            (y0 - span / 2.0, y1 + span / 2.0)
        } else {
            (y0, y1)
        };
        let pad = (y1 - y0) * 0.08;
        ((x0 / 1.3, x1 * 1.3), (y0 - pad, y1 + pad))
    }

    /// Draws lines and markers; returns the text to put on top (same for PNG and SVG).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<Vec<Label>> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the plot: {e}");
        let ((x0, x1), (y0, y1)) = self.ranges();
        root.fill(&WHITE).map_err(e)?;
        let legend_texts: Vec<String> = self
            .curves
            .iter()
            .map(|c| c.0.clone())
            .chain(self.baseline.iter().map(|(n, b)| format!("{n} {b:.1} dB")))
            .collect();
        let widths: Vec<i32> = legend_texts
            .iter()
            .map(|t| 50 + Label::new(0, 0, t.clone(), 2, Align::Start).width())
            .collect();
        let legend = legend_layout(&widths, PLOT_W as i32 - 96 - 36);
        let legend_rows = legend.last().map_or(1, |l| l.0 + 1) as i32;
        let mut chart = ChartBuilder::on(root)
            .margin_left(96)
            .margin_right(36)
            .margin_top(112 + 24 * (legend_rows - 1))
            .margin_bottom(134)
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(e)?;
        let mut labels = Vec::new();
        let xt = log_ticks(x0, x1);
        let yt = linear_ticks(y0, y1);
        for &t in &xt {
            chart
                .draw_series(LineSeries::new([(t, y0), (t, y1)], GRID_COLOR))
                .map_err(e)?;
            let (px, py) = chart.backend_coord(&(t, y0));
            labels.push(Label::new(px, py + 16, tick_text(t), 2, Align::Middle));
        }
        for &t in &yt {
            chart
                .draw_series(LineSeries::new([(x0, t), (x1, t)], GRID_COLOR))
                .map_err(e)?;
            let (px, py) = chart.backend_coord(&(x0, t));
            labels.push(Label::new(px - 8, py, tick_text(t), 2, Align::End));
        }
        chart
            .plotting_area()
            .draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.stroke_width(1)))
            .map_err(e)?;
        for (k, (_, color, pts)) in self.curves.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(e)?;
            let style = color.filled();
            if k == 0 {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 5, style)))
                    .map_err(e)?;
            } else {
                chart
                    .draw_series(pts.iter().map(|&p| TriangleMarker::new(p, 7, style)))
                    .map_err(e)?;
            }
        }
        let (left, bottom) = chart.backend_coord(&(x0, y0));
        let (right, top) = chart.backend_coord(&(x1, y1));
        labels.push(Label::new(
            (left + right) / 2,
            bottom + 46,
            "rate (bits per voxel, log scale)",
            2,
            Align::Middle,
        ));
        if let Some((_, b)) = &self.baseline {
            // Dashed: 12 px drawn, 8 px gap, across the whole rate axis.
            let (lx, ly) = chart.backend_coord(&(x0, *b));
            let (rx, _) = chart.backend_coord(&(x1, *b));
            let mut x = lx;
            while x < rx {
                root.draw(&PathElement::new(
                    vec![(x, ly), ((x + 12).min(rx), ly)],
                    BASELINE_COLOR.stroke_width(2),
                ))
                .map_err(e)?;
                x += 20;
            }
        }
        let mut yl = Label::new(
            26,
            (top + bottom) / 2,
            self.y_label.clone(),
            2,
            Align::Middle,
        );
        yl.vertical = true;
        labels.push(yl);
        labels.push(Label::new(
            (left + right) / 2,
            24,
            self.title.clone(),
            3,
            Align::Middle,
        ));
        labels.push(Label::new(
            (left + right) / 2,
            56,
            self.subtitle.clone(),
            2,
            Align::Middle,
        ));
        // Legend in rows above the plot, notes in one row below it: nothing hides data.
        for (k, ((row, dx), text)) in legend.iter().zip(&legend_texts).enumerate() {
            let (x, y) = (left + dx, 88 + 24 * *row as i32);
            match self.curves.get(k) {
                Some((_, color, _)) => {
                    root.draw(&PathElement::new(
                        vec![(x, y), (x + 40, y)],
                        color.stroke_width(2),
                    ))
                    .map_err(e)?;
                    if k == 0 {
                        root.draw(&Circle::new((x + 20, y), 5, color.filled()))
                    } else {
                        root.draw(&TriangleMarker::new((x + 20, y), 7, color.filled()))
                    }
                    .map_err(e)?;
                }
                None => {
                    for seg in [(x, x + 14), (x + 22, x + 36)] {
                        root.draw(&PathElement::new(
                            vec![(seg.0, y), (seg.1, y)],
                            BASELINE_COLOR.stroke_width(2),
                        ))
                        .map_err(e)?;
                    }
                }
            }
            labels.push(Label::new(x + 50, y, text.clone(), 2, Align::Start));
        }
        for (k, n) in self.notes.iter().enumerate() {
            let y = bottom + 78 + 24 * k as i32;
            labels.push(Label::new(
                (left + right) / 2,
                y,
                n.clone(),
                2,
                Align::Middle,
            ));
        }
        Ok(labels)
    }

    pub(super) fn png(&self) -> Result<Vec<u8>> {
        let (w, h) = (PLOT_W as usize, PLOT_H as usize);
        let mut buf = vec![255u8; w * h * 3];
        let labels = {
            let root = BitMapBackend::with_buffer(&mut buf, (PLOT_W, PLOT_H)).into_drawing_area();
            let labels = self.draw(&root)?;
            root.present()
                .map_err(|e| anyhow!("drawing the plot: {e}"))?;
            labels
        };
        for l in &labels {
            l.raster(&mut buf, w);
        }
        encode_rgb_png(w, h, &buf)
    }

    pub(super) fn svg(&self) -> Result<String> {
        let mut svg = String::new();
        let labels = {
            let root = SVGBackend::with_string(&mut svg, (PLOT_W, PLOT_H)).into_drawing_area();
            let labels = self.draw(&root)?;
            root.present()
                .map_err(|e| anyhow!("drawing the plot: {e}"))?;
            labels
        };
        let text: String = labels.iter().map(Label::svg).collect();
        let end = svg
            .rfind("</svg>")
            .ok_or_else(|| anyhow!("SVG without </svg>"))?;
        svg.insert_str(end, &text);
        Ok(svg)
    }
}

/// 1-2-5 ticks within [lo, hi].
pub(super) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut e = lo.log10().floor() as i32;
    while 10f64.powi(e) <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        e += 1;
    }
    out
}

/// About six round ticks within [lo, hi].
pub(super) fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 6.0;
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p);
    let mut out = Vec::new();
    let mut v = (lo / step).ceil() * step;
    while v <= hi + 1e-9 {
        out.push(v);
        v += step;
    }
    out
}

pub(super) fn tick_text(v: f64) -> String {
    let s = format!("{:.6}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

// ---------------------------------------------------------------------------------------------
// Pictures: the slice side by side

pub(super) fn heat(level: u8) -> [u8; 3] {
    let t = level as f64 / 255.0;
    let c = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    [c(3.0 * t), c(3.0 * t - 1.0), c(3.0 * t - 2.0)]
}

pub(super) fn percentile(values: &[f32], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize] as f64
}

pub(super) fn slice_picture(
    volume: &Volume,
    report: &mut ScanReport,
    at: SliceAt,
) -> Result<Vec<u8>> {
    let target = report
        .rates
        .iter()
        .copied()
        .filter(|&r| {
            report
                .rows
                .iter()
                .filter(|x| x.target_bpv == Some(r))
                .count()
                == 2
        })
        .min_by(|a, b| {
            (a.ln() - SLICE_RATE.ln())
                .abs()
                .total_cmp(&(b.ln() - SLICE_RATE.ln()).abs())
        })
        .ok_or_else(|| anyhow!("no rate at which both codecs ran"))?;
    let find = |codec: &str| {
        report
            .rows
            .iter()
            .find(|x| x.codec == codec && x.target_bpv == Some(target))
            .expect("both codecs ran at the chosen rate")
    };
    let (m, j) = (find(MEDINR), find(J2K));
    let original = at.take(&volume.data.to_f32());
    for r in [m, j] {
        if r.slice.len() != original.len() {
            bail!(
                "{} slice has {} values, expected {}",
                r.codec,
                r.slice.len(),
                original.len()
            );
        }
    }
    let (lo, hi) = original.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| {
        (a.min(v as f64), b.max(v as f64))
    });
    let err = |s: &[f32]| -> Vec<f32> {
        s.iter()
            .zip(&original)
            .map(|(a, b)| (a - b).abs())
            .collect()
    };
    let (em, ej) = (err(&m.slice), err(&j.slice));
    let mut emax = percentile(&em, 0.995).max(percentile(&ej, 0.995));
    if emax <= 0.0 {
        emax = em.iter().chain(&ej).fold(0.0f32, |a, &b| a.max(b)) as f64;
    }
    if emax <= 0.0 {
        emax = 1.0;
    }
    let pshape = [at.nx, at.ny, 1, 1];
    let grey = |s: &[f32]| -> (usize, usize, Vec<[u8; 3]>) {
        let (w, h, p) = slice_pixels(s, pshape, 2, lo, hi);
        (w, h, p.into_iter().map(|g| [g, g, g]).collect())
    };
    let heatmap = |s: &[f32]| -> (usize, usize, Vec<[u8; 3]>) {
        let (w, h, p) = slice_pixels(s, pshape, 2, 0.0, emax);
        (w, h, p.into_iter().map(heat).collect())
    };
    let line2 = |r: &Row| format!("{:.4} bpv {} dB", r.bpv, fmt_psnr(r.psnr_db));
    let panels = [
        (
            grey(&original),
            "original".to_string(),
            format!("window {lo}..{hi}"),
        ),
        (grey(&m.slice), "medinr".into(), line2(m)),
        (grey(&j.slice), "JPEG 2000".into(), line2(j)),
        (
            heatmap(&em),
            "|error| medinr".into(),
            format!("heat scale 0..{}", tick_text(emax)),
        ),
        (
            heatmap(&ej),
            "|error| JPEG 2000".into(),
            format!("heat scale 0..{}", tick_text(emax)),
        ),
    ];
    let (pw, ph) = (panels[0].0 .0, panels[0].0 .1);
    // Panels at least 240 pixels and as wide as their captions (scale-2 text).
    let caption = |t: &str| Label::new(0, 0, t, 2, Align::Start).width() as usize + 12;
    let widest = panels
        .iter()
        .map(|p| caption(&p.1).max(caption(&p.2)))
        .max()
        .unwrap_or(0);
    let zoom = 240usize
        .div_ceil(pw.max(ph))
        .max(widest.div_ceil(pw))
        .max(1);
    let (zw, zh) = (pw * zoom, ph * zoom);
    let frame = if report.shape[3] > 1 {
        format!(", frame {} of {}", at.t, report.shape[3])
    } else {
        String::new()
    };
    let footer_text = format!(
        "{}: axial slice z={} of {}{frame}, target {} bpv (bpv and PSNR: whole scan)",
        report.scan, at.z, report.shape[2], target
    );
    let (gap, header, footer) = (12usize, 56usize, 34usize);
    let width = (panels.len() * zw + (panels.len() + 1) * gap).max(caption(&footer_text) + gap);
    let height = header + zh + footer + gap;
    let mut buf = vec![255u8; width * height * 3];
    let mut labels = Vec::new();
    for (k, ((w, h, px), l1, l2)) in panels.iter().enumerate() {
        let x0 = gap + k * (zw + gap);
        for y in 0..h * zoom {
            for x in 0..w * zoom {
                let c = px[(y / zoom) * w + x / zoom];
                let o = ((header + y) * width + x0 + x) * 3;
                buf[o..o + 3].copy_from_slice(&c);
            }
        }
        let cx = (x0 + zw / 2) as i32;
        labels.push(Label::new(cx, 16, l1.clone(), 2, Align::Middle));
        labels.push(Label::new(cx, 38, l2.clone(), 2, Align::Middle));
    }
    labels.push(Label::new(
        gap as i32,
        (header + zh + gap + 10) as i32,
        footer_text,
        2,
        Align::Start,
    ));
    for l in &labels {
        l.raster(&mut buf, width);
    }
    report.slice = SliceInfo {
        axis: "z".into(),
        index: at.z,
        frame: at.t,
        target_bpv: target,
        window: [lo, hi],
        error_scale_max: emax,
    };
    encode_rgb_png(width, height, &buf)
}

// ---------------------------------------------------------------------------------------------
// Tests
