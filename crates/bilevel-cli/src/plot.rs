//! Drawing [`Figure`]s with plotters: the same code writes a PNG (bitmap backend) and an SVG.
//!
//! Text uses DejaVu Sans embedded in the binary ([`init_fonts`]), so no system font library is
//! needed at build or run time.
//!
//! Bands over several runs ([`band`]): the runs are put on the sorted union of their x values
//! (thinned to at most [`MAX_BAND_POINTS`] evenly spaced points when longer). At each x a run
//! contributes its linear interpolation (in log10 y on log axes), or its last value once it has
//! ended: a run that stopped (converged or hit its budget) stays where it stopped. Runs not yet
//! started at x do not contribute. The line is the pointwise median, the shaded band the
//! pointwise 10–90% quantiles. On log axes, non-positive values are dropped from the plot only.

use anyhow::{Result, anyhow};
use bilevel::experiments::{CurveGroup, Figure, Markers, Panel, PathSeries};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

/// Width and height of one panel, pixels.
pub const PANEL_SIZE: (u32, u32) = (600, 450);
/// Most points a band is computed at.
pub const MAX_BAND_POINTS: usize = 2000;

/// (x, median, 10% quantile, 90% quantile) in plot coordinates.
pub type BandPoint = (f64, f64, f64, f64);
/// A line segment between two points.
pub type Segment = ((f64, f64), (f64, f64));

const FONT: &str = "sans-serif";

/// Registers the embedded DejaVu Sans under the names plotters asks for. Idempotent.
pub fn init_fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for name in ["sans-serif", "serif", "monospace"] {
            // The bytes are a valid TTF shipped in the dejavu crate; failure is impossible in
            // practice and only loses text, so it is reported, not fatal.
            if plotters::style::register_font(name, FontStyle::Normal, dejavu::sans::regular())
                .is_err()
                || plotters::style::register_font(name, FontStyle::Bold, dejavu::sans::bold())
                    .is_err()
            {
                eprintln!("warning: cannot register the embedded font; figures will lack text");
            }
        }
    });
}

trait Pe<T> {
    fn pe(self) -> Result<T>;
}

impl<T, E: std::fmt::Display> Pe<T> for std::result::Result<T, E> {
    fn pe(self) -> Result<T> {
        self.map_err(|e| anyhow!("drawing failed: {e}"))
    }
}

/// A file stem safe to use in a path (figure and trace names come from experiments).
pub fn safe_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() { "unnamed".into() } else { s }
}

/// Panel grid (rows, columns): side by side up to 3 panels, 2×2 for 4, rows of 3 beyond.
pub fn layout(n: usize) -> (usize, usize) {
    match n {
        0 => (1, 1),
        1..=3 => (1, n),
        4 => (2, 2),
        _ => (n.div_ceil(3), 3),
    }
}

/// Writes `fig` as `dir/NAME.png` and `dir/NAME.svg`; returns both paths.
pub fn write_figure(fig: &Figure, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    init_fonts();
    let (rows, cols) = layout(fig.panels.len());
    let size = (PANEL_SIZE.0 * cols as u32, PANEL_SIZE.1 * rows as u32);
    let stem = safe_stem(&fig.name);
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_figure(&root, fig)?;
        root.present()
            .map_err(|e| anyhow!("cannot write {}: {e}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw_figure(&root, fig)?;
        root.present()
            .map_err(|e| anyhow!("cannot write {}: {e}", svg.display()))?;
    }
    // plotters-svg 0.3.7 writes embedded images as `data:png;...`, which browsers may reject;
    // the registered MIME type is image/png.
    let text = std::fs::read_to_string(&svg)
        .map_err(|e| anyhow!("cannot read back {}: {e}", svg.display()))?;
    if text.contains("\"data:png;base64,") {
        std::fs::write(
            &svg,
            text.replace("\"data:png;base64,", "\"data:image/png;base64,"),
        )
        .map_err(|e| anyhow!("cannot write {}: {e}", svg.display()))?;
    }
    Ok((png, svg))
}

/// Draws every panel of `fig` on `root`.
pub fn draw_figure<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<()> {
    root.fill(&WHITE).pe()?;
    let (rows, cols) = layout(fig.panels.len());
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in fig.panels.iter().zip(&areas) {
        draw_panel(area, panel)?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<()> {
    match panel {
        Panel::Curves {
            title,
            x_label,
            y_label,
            log_y,
            groups,
            markers,
        } => draw_curves(area, title, x_label, y_label, *log_y, groups, markers),
        Panel::Heatmap {
            title,
            x_label,
            y_label,
            x_range,
            y_range,
            z,
            log_color,
            contours,
            paths,
            markers,
        } => draw_heatmap(
            area,
            &Heat {
                title,
                x_label,
                y_label,
                x_range: *x_range,
                y_range: *y_range,
                z,
                log_color: *log_color,
                contours,
                paths,
                markers,
            },
        ),
        Panel::Bars {
            title,
            y_label,
            bars,
        } => draw_bars(area, title, y_label, bars),
    }
}

// Colour-blind-friendly line colours (Okabe–Ito, then Tol's wine and grey so that studies
// with up to nine solvers need no repeated colour).
const PALETTE: [RGBColor; 9] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(136, 34, 85),
    RGBColor(128, 128, 128),
];

/// Marker shapes, cycled through marker sets.
#[derive(Clone, Copy)]
enum Shape {
    Circle,
    Cross,
    Triangle,
    Square,
    Diamond,
}

const MARKER_STYLES: [(Shape, RGBColor); 5] = [
    (Shape::Circle, RGBColor(228, 26, 28)),
    (Shape::Cross, RGBColor(255, 0, 255)),
    (Shape::Triangle, RGBColor(255, 255, 255)),
    (Shape::Square, RGBColor(255, 127, 0)),
    (Shape::Diamond, RGBColor(0, 255, 255)),
];

/// Draws one marker set as a labelled series; each marker is centred on its point, `$s`
/// pixels in radius, with a dark outline so it shows on light and dark backgrounds. A macro
/// because every shape is a different element type and the legend needs the same shape.
macro_rules! draw_markers {
    ($chart:expr, $pts:expr, $label:expr, $shape:expr, $color:expr, $s:expr) => {{
        let color: RGBColor = $color;
        let s: i32 = $s;
        let ls: i32 = 5;
        let fill = color.filled();
        let edge = BLACK.stroke_width(1);
        let tri = |s: i32| vec![(0, -s - 1), (s + 1, s), (-s - 1, s), (0, -s - 1)];
        let dia = |s: i32| {
            vec![
                (0, -s - 2),
                (s + 2, 0),
                (0, s + 2),
                (-s - 2, 0),
                (0, -s - 2),
            ]
        };
        macro_rules! one {
            (|$at:ident, $r:ident| $e:expr) => {{
                let sa = $chart
                    .draw_series($pts.iter().map(|&$at| {
                        let $r = s;
                        $e
                    }))
                    .pe()?;
                let label: Option<String> = $label;
                if let Some(l) = label {
                    sa.label(l).legend(move |$at| {
                        let $r = ls;
                        $e
                    });
                }
            }};
        }
        match $shape {
            Shape::Circle => one!(|at, r| EmptyElement::at(at)
                + Circle::new((0, 0), r, fill)
                + Circle::new((0, 0), r, edge)),
            Shape::Cross => one!(|at, r| EmptyElement::at(at)
                + PathElement::new(vec![(-r, -r), (r, r)], BLACK.stroke_width(4))
                + PathElement::new(vec![(-r, r), (r, -r)], BLACK.stroke_width(4))
                + PathElement::new(vec![(-r, -r), (r, r)], color.stroke_width(2))
                + PathElement::new(vec![(-r, r), (r, -r)], color.stroke_width(2))),
            Shape::Triangle => one!(|at, r| EmptyElement::at(at)
                + Polygon::new(tri(r), fill)
                + PathElement::new(tri(r), edge)),
            Shape::Square => one!(|at, r| EmptyElement::at(at)
                + Rectangle::new([(-r, -r), (r, r)], fill)
                + Rectangle::new([(-r, -r), (r, r)], edge)),
            Shape::Diamond => one!(|at, r| EmptyElement::at(at)
                + Polygon::new(dia(r), fill)
                + PathElement::new(dia(r), edge)),
        }
    }};
}

/// "10⁻³" for an integer exponent, "" between decades.
fn decade_label(v: f64) -> String {
    if (v - v.round()).abs() > 1e-6 {
        return String::new();
    }
    let k = v.round() as i64;
    let sup: String = k
        .to_string()
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            _ => '⁹',
        })
        .collect();
    format!("10{sup}")
}

/// Tick label on an axis spanning `span`: values within rounding of zero print as 0 (tick
/// positions are computed in floating point and land at ±1e-17 instead of 0).
fn tick_label(v: f64, span: f64) -> String {
    if v.abs() <= 1e-9 * span.abs() {
        "0".into()
    } else {
        num_label(v)
    }
}

/// Short tick labels for linear axes.
fn num_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round())
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Pads a range that is empty or degenerate.
fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    if hi - lo <= 1e-12 * lo.abs().max(1.0) {
        let d = 0.5 * lo.abs().max(1.0);
        return (lo - d, hi + d);
    }
    let d = frac * (hi - lo);
    (lo - d, hi + d)
}

/// The legend corner with the fewest data points under it (points in 0..1 plot-normalized
/// coordinates, y up).
fn legend_position(points: &[(f64, f64)], entries: usize) -> SeriesLabelPosition {
    let h = (0.07 * entries as f64 + 0.04).min(0.9);
    let w = 0.45;
    let boxes = [
        (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0 - h),
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - h),
        (SeriesLabelPosition::LowerRight, 1.0 - w, 0.0),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
        (SeriesLabelPosition::UpperMiddle, 0.5 - w / 2.0, 1.0 - h),
    ];
    let mut best = (usize::MAX, 0);
    for (k, &(_, x0, y0)) in boxes.iter().enumerate() {
        let n = points
            .iter()
            .filter(|&&(x, y)| x >= x0 && x <= x0 + w && y >= y0 && y <= y0 + h)
            .count();
        if n < best.0 {
            best = (n, k);
        }
    }
    match best.1 {
        0 => SeriesLabelPosition::UpperRight,
        1 => SeriesLabelPosition::UpperLeft,
        2 => SeriesLabelPosition::LowerRight,
        3 => SeriesLabelPosition::LowerLeft,
        _ => SeriesLabelPosition::UpperMiddle,
    }
}

/// Pointwise median and 10–90% band of `runs` (see the module doc). Returns (x, median, q10,
/// q90) in plot coordinates (log10 y when `log_y`). One run gives its own points with a band of
/// zero width.
pub fn band(runs: &[Vec<(f64, f64)>], log_y: bool) -> Vec<BandPoint> {
    let clean: Vec<Vec<(f64, f64)>> = runs
        .iter()
        .map(|r| {
            let mut v: Vec<(f64, f64)> = r
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
                .map(|&(x, y)| (x, if log_y { y.log10() } else { y }))
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        })
        .filter(|r| !r.is_empty())
        .collect();
    match clean.len() {
        0 => return Vec::new(),
        1 => {
            return thin(&clean[0], MAX_BAND_POINTS)
                .into_iter()
                .map(|(x, y)| (x, y, y, y))
                .collect();
        }
        _ => {}
    }
    let mut xs: Vec<f64> = clean.iter().flatten().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    if xs.len() > MAX_BAND_POINTS {
        let (a, b) = (xs[0], xs[xs.len() - 1]);
        let n = MAX_BAND_POINTS;
        xs = (0..n)
            .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
            .collect();
    }
    let at = |r: &[(f64, f64)], x: f64| -> Option<f64> {
        if x < r[0].0 {
            return None;
        }
        let last = r[r.len() - 1];
        if x >= last.0 {
            return Some(last.1);
        }
        // First point with abscissa > x; r[k-1].0 <= x < r[k].0.
        let k = r.partition_point(|p| p.0 <= x);
        let (p, q) = (r[k - 1], r[k]);
        let t = (x - p.0) / (q.0 - p.0);
        Some(p.1 + t * (q.1 - p.1))
    };
    let mut vals = Vec::with_capacity(clean.len());
    xs.iter()
        .filter_map(|&x| {
            vals.clear();
            vals.extend(clean.iter().filter_map(|r| at(r, x)));
            bilevel::experiments::quantiles(&vals).map(|(m, lo, hi)| (x, m, lo, hi))
        })
        .collect()
}

/// At most about `max` points of a line sorted by x, with its shape kept: the points are cut
/// into `max / 2` buckets of consecutive points and each bucket keeps its lowest and highest y
/// (in x order), so spikes and the first and last points survive. A run recorded at every one
/// of millions of iterations draws in milliseconds and writes an SVG of a few hundred kB.
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    let buckets = (max / 2).max(1);
    if points.len() <= max.max(2) {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(2 * buckets + 2);
    let n = points.len();
    for b in 0..buckets {
        let chunk = &points[b * n / buckets..(b + 1) * n / buckets];
        if chunk.is_empty() {
            continue;
        }
        let lo = (0..chunk.len()).min_by(|&i, &j| chunk[i].1.total_cmp(&chunk[j].1));
        let hi = (0..chunk.len()).max_by(|&i, &j| chunk[i].1.total_cmp(&chunk[j].1));
        if let (Some(lo), Some(hi)) = (lo, hi) {
            let (a, b) = (lo.min(hi), lo.max(hi));
            out.push(chunk[a]);
            if b != a {
                out.push(chunk[b]);
            }
        }
    }
    if out.first() != points.first() {
        out.insert(0, points[0]);
    }
    if out.last() != points.last() {
        out.push(points[n - 1]);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn draw_curves<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    log_y: bool,
    groups: &[CurveGroup],
    markers: &[Markers],
) -> Result<()> {
    let tf = |y: f64| if log_y { y.log10() } else { y };
    let bands: Vec<(String, usize, Vec<BandPoint>)> = groups
        .iter()
        .map(|g| {
            let n = g.runs.iter().filter(|r| !r.is_empty()).count();
            (g.label.clone(), n, band(&g.runs, log_y))
        })
        .collect();
    let marks: Vec<Vec<(f64, f64)>> = markers
        .iter()
        .map(|m| {
            m.points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
                .map(|&(x, y)| (x, tf(y)))
                .collect()
        })
        .collect();
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for (_, _, b) in &bands {
        for &(x, m, lo, hi) in b {
            xs.push(x);
            ys.extend([m, lo, hi]);
        }
    }
    for m in &marks {
        for &(x, y) in m {
            xs.push(x);
            ys.push(y);
        }
    }
    if xs.is_empty() {
        let msg = if log_y {
            "no positive finite values to plot on a log scale"
        } else {
            "no finite values to plot"
        };
        return no_data(area, title, msg);
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = padded(min(&xs), max(&xs), 0.02);
    let (y0, y1) = if log_y {
        let (a, b) = (min(&ys).floor(), max(&ys).ceil());
        if b - a < 1.0 { (a, a + 1.0) } else { (a, b) }
    } else {
        padded(min(&ys), max(&ys), 0.05)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(75)
        .build_cartesian_2d(x0..x1, y0..y1)
        .pe()?;
    let decades = (y1 - y0).round() as usize;
    let xf = |v: &f64| tick_label(*v, x1 - x0);
    let yf = |v: &f64| {
        if log_y {
            decade_label(*v)
        } else {
            tick_label(*v, y1 - y0)
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_label)
        .y_desc(if log_y {
            format!("{y_label} (log scale)")
        } else {
            y_label.to_string()
        })
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(WHITE)
        .x_labels(7)
        .x_label_formatter(&xf)
        .y_label_formatter(&yf);
    if log_y {
        mesh.y_labels(decades.clamp(1, 10) + 1);
    }
    mesh.draw().pe()?;

    // Bands first so every line is drawn over every band.
    for (i, (_, n, b)) in bands.iter().enumerate() {
        if *n > 1 && b.len() > 1 {
            let c = PALETTE[i % PALETTE.len()];
            let mut poly: Vec<(f64, f64)> = b.iter().map(|p| (p.0, p.3)).collect();
            poly.extend(b.iter().rev().map(|p| (p.0, p.2)));
            chart
                .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18).filled())))
                .pe()?;
        }
    }
    let mut legend_pts = Vec::new();
    let norm = |x: f64, y: f64| ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0));
    let mut entries = 0;
    for (i, (label, n, b)) in bands.iter().enumerate() {
        if b.is_empty() {
            continue;
        }
        let c = PALETTE[i % PALETTE.len()];
        let style = c.stroke_width(2);
        let line: Vec<(f64, f64)> = b.iter().map(|p| (p.0, p.1)).collect();
        legend_pts.extend(b.iter().map(|p| norm(p.0, p.1)));
        let text = if *n > 1 {
            format!("{label} (median of {n}, 10–90% band)")
        } else {
            label.clone()
        };
        chart
            .draw_series(LineSeries::new(line, style))
            .pe()?
            .label(text)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
        entries += 1;
    }
    for (k, (m, pts)) in markers.iter().zip(&marks).enumerate() {
        let (shape, color) = MARKER_STYLES[k % MARKER_STYLES.len()];
        legend_pts.extend(pts.iter().map(|&(x, y)| norm(x, y)));
        draw_markers!(chart, pts, Some(m.label.clone()), shape, color, 5);
        entries += 1;
    }
    if entries > 0 {
        chart
            .configure_series_labels()
            .position(legend_position(&legend_pts, entries))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(120, 120, 120))
            .label_font((FONT, 14))
            .draw()
            .pe()?;
    }
    Ok(())
}

fn no_data<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    msg: &str,
) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        title.to_string(),
        (20, 15),
        (FONT, 22).into_font(),
    ))
    .pe()?;
    area.draw(&Text::new(
        msg.to_string(),
        (20, h as i32 / 2),
        (FONT, 16).into_font(),
    ))
    .pe()?;
    let _ = w;
    Ok(())
}

// Viridis, sampled at 9 points; linear interpolation between them.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let s = t * (VIRIDIS.len() - 1) as f64;
    let i = (s.floor() as usize).min(VIRIDIS.len() - 2);
    let f = s - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + f * (q as f64 - p as f64)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Contour segments of the grid `z` at `level` by marching squares, in grid units (column j,
/// row i). Saddle cells are split by the cell's mean value.
pub fn contour_segments(z: &[Vec<f64>], level: f64) -> Vec<Segment> {
    let mut out = Vec::new();
    let rows = z.len();
    if rows < 2 {
        return out;
    }
    let cols = z.iter().map(Vec::len).min().unwrap_or(0);
    for i in 0..rows - 1 {
        for j in 0..cols.saturating_sub(1) {
            // Corners counter-clockwise from (i, j): a(j,i), b(j+1,i), c(j+1,i+1), d(j,i+1).
            let (a, b, c, d) = (z[i][j], z[i][j + 1], z[i + 1][j + 1], z[i + 1][j]);
            if !(a.is_finite() && b.is_finite() && c.is_finite() && d.is_finite()) {
                continue;
            }
            let idx = (a > level) as u8
                | ((b > level) as u8) << 1
                | ((c > level) as u8) << 2
                | ((d > level) as u8) << 3;
            if idx == 0 || idx == 15 {
                continue;
            }
            let lerp = |p: f64, q: f64| {
                let t = (level - p) / (q - p);
                if t.is_finite() {
                    t.clamp(0.0, 1.0)
                } else {
                    0.5
                }
            };
            let (x, y) = (j as f64, i as f64);
            let bottom = (x + lerp(a, b), y);
            let right = (x + 1.0, y + lerp(b, c));
            let top = (x + lerp(d, c), y + 1.0);
            let left = (x, y + lerp(a, d));
            let centre_above = (a + b + c + d) / 4.0 > level;
            let segs: &[Segment] = &match idx {
                1 | 14 => vec![(left, bottom)],
                2 | 13 => vec![(bottom, right)],
                3 | 12 => vec![(left, right)],
                4 | 11 => vec![(right, top)],
                6 | 9 => vec![(bottom, top)],
                7 | 8 => vec![(left, top)],
                5 => {
                    if centre_above {
                        vec![(left, top), (bottom, right)]
                    } else {
                        vec![(left, bottom), (right, top)]
                    }
                }
                10 => {
                    if centre_above {
                        vec![(left, bottom), (right, top)]
                    } else {
                        vec![(left, top), (bottom, right)]
                    }
                }
                _ => vec![],
            };
            out.extend_from_slice(segs);
        }
    }
    out
}

struct Heat<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    x_range: (f64, f64),
    y_range: (f64, f64),
    z: &'a [Vec<f64>],
    log_color: bool,
    contours: &'a [f64],
    paths: &'a [PathSeries],
    markers: &'a [Markers],
}

const PATH_COLOR: RGBColor = RGBColor(255, 60, 60);
const CONTOUR_COLOR: RGBColor = RGBColor(255, 255, 255);

fn draw_heatmap<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, h: &Heat<'_>) -> Result<()> {
    let rows = h.z.len();
    let cols = h.z.iter().map(Vec::len).min().unwrap_or(0);
    if rows < 2 || cols < 2 {
        return no_data(area, h.title, "heat map grid smaller than 2×2");
    }
    let cval = |v: f64| {
        // f64::max would turn NaN into the floor: keep it undefined.
        if h.log_color && !v.is_nan() {
            v.max(1e-300).log10()
        } else {
            v
        }
    };
    let cs: Vec<f64> =
        h.z.iter()
            .flat_map(|r| r.iter().take(cols))
            .map(|&v| cval(v))
            .filter(|v| v.is_finite())
            .collect();
    if cs.is_empty() {
        return no_data(area, h.title, "no finite values in the heat map");
    }
    let mut cmin = cs.iter().copied().fold(f64::INFINITY, f64::min);
    let cmax = cs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if h.log_color {
        // Exact zeros would stretch the scale to 10⁻³⁰⁰; keep the 12 decades below the top.
        cmin = cmin.max(cmax - 12.0).floor();
    }
    let (cmin, cmax) = if cmax - cmin > 0.0 {
        (cmin, cmax)
    } else {
        padded(cmin, cmax, 0.0)
    };

    // Legend entries go in a strip under the map: inside, they would hide part of it.
    let mut legend: Vec<(Sym, String)> = Vec::new();
    if h.contours
        .iter()
        .any(|&l| !contour_segments(h.z, l).is_empty())
    {
        let levels: Vec<String> = h.contours.iter().map(|&l| num_label(l)).collect();
        legend.push((
            Sym::Line(CONTOUR_LEGEND),
            format!("contours at {}", levels.join(", ")),
        ));
    }
    let mut unnamed = false;
    for (k, p) in h.paths.iter().enumerate() {
        if p.label.is_empty() {
            if !unnamed {
                legend.push((Sym::Line(PATH_COLOR), "trajectories".into()));
                unnamed = true;
            }
        } else {
            legend.push((Sym::Line(path_color(k)), p.label.clone()));
        }
    }
    if h.paths
        .iter()
        .any(|p| p.points.iter().any(|q| q.0.is_finite() && q.1.is_finite()))
    {
        legend.push((Sym::Start, "start".into()));
        legend.push((Sym::End, "end".into()));
    }
    for (k, m) in h.markers.iter().enumerate() {
        let (shape, color) = MARKER_STYLES[k % MARKER_STYLES.len()];
        let n = m
            .points
            .iter()
            .filter(|q| q.0.is_finite() && q.1.is_finite())
            .count();
        legend.push((Sym::Marker(shape, color), format!("{} ({n})", m.label)));
    }
    let (w, ht) = area.dim_in_pixel();
    let rows = legend_rows(&legend, w as i32 - LEGEND_X - 10);
    let strip = if legend.is_empty() {
        0
    } else {
        22 * rows.len() as u32 + 6
    };
    let (top, bottom) = area.split_vertically(ht.saturating_sub(strip));
    let (main, bar) = top.split_horizontally(w.saturating_sub(95));
    let (x0, x1) = padded(h.x_range.0, h.x_range.1, 0.0);
    let (y0, y1) = padded(h.y_range.0, h.y_range.1, 0.0);
    let mut chart = ChartBuilder::on(&main)
        .caption(h.title, (FONT, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .pe()?;
    // The colour image, one pixel per screen pixel, bilinear in the grid.
    let (pw, ph) = chart.plotting_area().dim_in_pixel();
    let (pw, ph) = (pw.max(1), ph.max(1));
    let mut buf = Vec::with_capacity((pw * ph * 3) as usize);
    let sample = |gx: f64, gy: f64| {
        let j = (gx.floor() as usize).min(cols - 2);
        let i = (gy.floor() as usize).min(rows_z(h.z) - 2);
        let (fx, fy) = (gx - j as f64, gy - i as f64);
        let v = |i: usize, j: usize| cval(h.z[i][j]);
        let top = v(i, j) * (1.0 - fx) + v(i, j + 1) * fx;
        let bot = v(i + 1, j) * (1.0 - fx) + v(i + 1, j + 1) * fx;
        top * (1.0 - fy) + bot * fy
    };
    for py in 0..ph {
        // Pixel row 0 is the top (y1).
        let gy = (1.0 - (py as f64 + 0.5) / ph as f64) * (rows_z(h.z) - 1) as f64;
        for px in 0..pw {
            let gx = (px as f64 + 0.5) / pw as f64 * (cols - 1) as f64;
            let z = sample(gx, gy);
            // Undefined values (NaN) are left light grey rather than painted as the minimum.
            let c = if z.is_nan() {
                RGBColor(235, 235, 235)
            } else {
                viridis((z - cmin) / (cmax - cmin))
            };
            buf.extend([c.0, c.1, c.2]);
        }
    }
    if let Some(img) = BitMapElement::with_owned_buffer((x0, y1), (pw, ph), buf) {
        chart.draw_series(std::iter::once(img)).pe()?;
    }
    let xf = |v: &f64| tick_label(*v, x1 - x0);
    let yf = |v: &f64| tick_label(*v, y1 - y0);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(h.x_label)
        .y_desc(h.y_label)
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .draw()
        .pe()?;

    let gx = |j: f64| x0 + (x1 - x0) * j / (cols - 1) as f64;
    let gy = |i: f64| y0 + (y1 - y0) * i / (rows_z(h.z) - 1) as f64;
    let zrows: Vec<Vec<f64>> = h.z.iter().map(|r| r[..cols].to_vec()).collect();
    for &level in h.contours {
        let segs = contour_segments(&zrows, level);
        chart
            .draw_series(segs.iter().map(|&(p, q)| {
                PathElement::new(
                    vec![(gx(p.0), gy(p.1)), (gx(q.0), gy(q.1))],
                    CONTOUR_COLOR.mix(0.75).stroke_width(1),
                )
            }))
            .pe()?;
    }
    let finite = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
        pts.iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    };
    let mut ends = Vec::new();
    for (k, p) in h.paths.iter().enumerate() {
        let pts = finite(&p.points);
        if let (Some(&a), Some(&b)) = (pts.first(), pts.last()) {
            ends.push((a, b));
        }
        let color = if p.label.is_empty() {
            PATH_COLOR
        } else {
            path_color(k)
        };
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .pe()?;
    }
    chart
        .draw_series(ends.iter().map(|&(a, _)| {
            EmptyElement::at(a)
                + Circle::new((0, 0), 5, WHITE.filled())
                + Circle::new((0, 0), 5, BLACK.stroke_width(1))
        }))
        .pe()?;
    for (k, m) in h.markers.iter().enumerate() {
        let (shape, color) = MARKER_STYLES[k % MARKER_STYLES.len()];
        let pts = finite(&m.points);
        let size = if pts.len() > 50 { 3 } else { 6 };
        draw_markers!(chart, pts, None, shape, color, size);
    }
    // Ends last and small, so they show inside the markers of the points they reach.
    chart
        .draw_series(ends.iter().map(|&(_, b)| {
            EmptyElement::at(b) + Rectangle::new([(-3, -3), (3, 3)], BLACK.filled())
        }))
        .pe()?;
    draw_colorbar(&bar, cmin, cmax, h)?;
    draw_legend_strip(&bottom, &rows)
}

fn rows_z(z: &[Vec<f64>]) -> usize {
    z.len()
}

fn path_color(k: usize) -> RGBColor {
    PALETTE[(k + 1) % PALETTE.len()]
}

/// Left edge of legend strips (lines up with the plot's y axis).
const LEGEND_X: i32 = 70;

const CONTOUR_LEGEND: RGBColor = RGBColor(150, 150, 150);

/// A legend symbol drawn in a strip outside the plot.
#[derive(Clone, Copy)]
enum Sym {
    Line(RGBColor),
    Marker(Shape, RGBColor),
    Start,
    End,
}

/// Approximate width of `text` at 14 px, pixels (DejaVu Sans averages about 0.55 em).
fn text_width(text: &str) -> i32 {
    (text.chars().count() as f64 * 7.2) as i32
}

/// Lays legend entries out in rows no wider than `width` pixels.
fn legend_rows(entries: &[(Sym, String)], width: i32) -> Vec<Vec<(Sym, String)>> {
    let mut rows: Vec<Vec<(Sym, String)>> = Vec::new();
    let mut used = i32::MAX;
    for e in entries {
        let w = 34 + text_width(&e.1) + 16;
        if used.saturating_add(w) > width {
            rows.push(Vec::new());
            used = 0;
        }
        if let Some(r) = rows.last_mut() {
            r.push(e.clone());
        }
        used += w;
    }
    rows
}

fn draw_legend_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[Vec<(Sym, String)>],
) -> Result<()> {
    for (i, row) in rows.iter().enumerate() {
        let y = 11 + 22 * i as i32;
        let mut x = LEGEND_X;
        for (sym, text) in row {
            let c = (x + 11, y);
            match *sym {
                Sym::Line(col) => area
                    .draw(&PathElement::new(
                        vec![(x, y), (x + 24, y)],
                        col.stroke_width(2),
                    ))
                    .pe()?,
                Sym::Start => area
                    .draw(
                        &(EmptyElement::at(c)
                            + Circle::new((0, 0), 5, WHITE.filled())
                            + Circle::new((0, 0), 5, BLACK.stroke_width(1))),
                    )
                    .pe()?,
                Sym::End => area
                    .draw(
                        &(EmptyElement::at(c) + Rectangle::new([(-3, -3), (3, 3)], BLACK.filled())),
                    )
                    .pe()?,
                Sym::Marker(shape, color) => draw_markers_px(area, &[c], shape, color)?,
            }
            area.draw(&Text::new(
                text.clone(),
                (x + 30, y - 7),
                (FONT, 14).into_font(),
            ))
            .pe()?;
            x += 34 + text_width(text) + 16;
        }
    }
    Ok(())
}

/// Markers at pixel positions of a plain drawing area (legend strips).
fn draw_markers_px<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    pts: &[(i32, i32)],
    shape: Shape,
    color: RGBColor,
) -> Result<()> {
    let (fill, edge, r) = (color.filled(), BLACK.stroke_width(1), 5);
    let tri = vec![(0, -r - 1), (r + 1, r), (-r - 1, r), (0, -r - 1)];
    let dia = vec![
        (0, -r - 2),
        (r + 2, 0),
        (0, r + 2),
        (-r - 2, 0),
        (0, -r - 2),
    ];
    for &at in pts {
        match shape {
            Shape::Circle => area.draw(
                &(EmptyElement::at(at)
                    + Circle::new((0, 0), r, fill)
                    + Circle::new((0, 0), r, edge)),
            ),
            Shape::Cross => area.draw(
                &(EmptyElement::at(at)
                    + PathElement::new(vec![(-r, -r), (r, r)], BLACK.stroke_width(4))
                    + PathElement::new(vec![(-r, r), (r, -r)], BLACK.stroke_width(4))
                    + PathElement::new(vec![(-r, -r), (r, r)], color.stroke_width(2))
                    + PathElement::new(vec![(-r, r), (r, -r)], color.stroke_width(2))),
            ),
            Shape::Triangle => area.draw(
                &(EmptyElement::at(at)
                    + Polygon::new(tri.clone(), fill)
                    + PathElement::new(tri.clone(), edge)),
            ),
            Shape::Square => area.draw(
                &(EmptyElement::at(at)
                    + Rectangle::new([(-r, -r), (r, r)], fill)
                    + Rectangle::new([(-r, -r), (r, r)], edge)),
            ),
            Shape::Diamond => area.draw(
                &(EmptyElement::at(at)
                    + Polygon::new(dia.clone(), fill)
                    + PathElement::new(dia.clone(), edge)),
            ),
        }
        .pe()?;
    }
    Ok(())
}

fn draw_colorbar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    cmin: f64,
    cmax: f64,
    h: &Heat<'_>,
) -> Result<()> {
    // Margins chosen to line the bar up with the heat map's plotting area.
    let mut chart = ChartBuilder::on(area)
        .margin_top(12 + 36)
        .margin_bottom(12)
        .margin_right(8)
        .x_label_area_size(45)
        .right_y_label_area_size(55)
        .build_cartesian_2d(0.0..1.0, cmin..cmax)
        .pe()?;
    let n = 200;
    chart
        .draw_series((0..n).map(|k| {
            let a = cmin + (cmax - cmin) * k as f64 / n as f64;
            let b = cmin + (cmax - cmin) * (k + 1) as f64 / n as f64;
            Rectangle::new(
                [(0.0, a), (1.0, b)],
                viridis((k as f64 + 0.5) / n as f64).filled(),
            )
        }))
        .pe()?;
    for &l in h.contours {
        let c = if h.log_color {
            l.max(1e-300).log10()
        } else {
            l
        };
        if c > cmin && c < cmax {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, c), (1.0, c)],
                    WHITE.stroke_width(1),
                )))
                .pe()?;
        }
    }
    let log = h.log_color;
    let decades = (cmax - cmin).round() as usize;
    let f = move |v: &f64| {
        if log {
            decade_label(*v)
        } else {
            tick_label(*v, cmax - cmin)
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_mesh()
        .disable_x_axis()
        .label_style((FONT, 13))
        .y_label_formatter(&f);
    if log {
        mesh.y_labels(decades.clamp(1, 8) + 1);
    }
    mesh.draw().pe()?;
    Ok(())
}

/// Horizontal bars: category names on the left can be long (solver names with settings).
fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    value_label: &str,
    bars: &[(String, f64)],
) -> Result<()> {
    let vals: Vec<f64> = bars.iter().map(|b| b.1).filter(|v| v.is_finite()).collect();
    if vals.is_empty() {
        return no_data(area, title, "no finite bar values");
    }
    let lo = vals.iter().copied().fold(0.0f64, f64::min);
    let hi = vals.iter().copied().fold(0.0f64, f64::max);
    // Fractions (success rates) always get the full [0, 1] axis, so that a short bar reads as
    // a low rate rather than filling the panel.
    let (lo, hi) = if value_label.starts_with("fraction") && lo >= 0.0 && hi <= 1.0 {
        (0.0, 1.0)
    } else {
        (lo, hi)
    };
    let (x0, x1) = if hi - lo > 0.0 {
        (lo - 0.02 * (hi - lo), hi + 0.15 * (hi - lo))
    } else {
        (-1.0, 1.0)
    };
    let n = bars.len();
    let (w, _) = area.dim_in_pixel();
    let max_chars = ((w as f64 * 0.42) / 7.2) as usize;
    let names: Vec<String> = bars
        .iter()
        .map(|b| {
            if b.0.chars().count() > max_chars {
                let t: String = b.0.chars().take(max_chars.saturating_sub(1)).collect();
                format!("{t}…")
            } else {
                b.0.clone()
            }
        })
        .collect();
    let label_w = names.iter().map(|s| text_width(s)).max().unwrap_or(0) + 16;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(label_w.max(30) as u32)
        .build_cartesian_2d(x0..x1, -0.5..(n as f64 - 0.5))
        .pe()?;
    let xf = |v: &f64| tick_label(*v, x1 - x0);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(value_label)
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .x_labels(6)
        .x_label_formatter(&xf)
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(WHITE)
        .draw()
        .pe()?;
    // First bar on top.
    let y_of = |k: usize| (n - 1 - k) as f64;
    let base = area.get_base_pixel();
    for (k, (_, v)) in bars.iter().enumerate() {
        let y = y_of(k);
        let (px, py) = chart.backend_coord(&(x0, y));
        area.draw(&Text::new(
            names[k].clone(),
            (px - base.0 - 8, py - base.1),
            TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .pe()?;
        if !v.is_finite() {
            continue;
        }
        let c = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, y - 0.35), (*v, y + 0.35)],
                c.filled(),
            )))
            .pe()?;
        let (ex, ey) = chart.backend_coord(&(*v, y));
        area.draw(&Text::new(
            num_label(*v),
            (ex - base.0 + 5, ey - base.1),
            TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .pe()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_ends_spikes_and_order() {
        let mut pts: Vec<(f64, f64)> = (0..1_000_000)
            .map(|i| (i as f64, 1.0 / (1.0 + i as f64)))
            .collect();
        pts[654_321].1 = 50.0;
        let t = thin(&pts, 2000);
        assert!(t.len() <= 2002, "{}", t.len());
        assert_eq!(t.first(), pts.first());
        assert_eq!(t.last(), pts.last());
        assert!(t.iter().any(|p| p.1 == 50.0), "the spike is kept");
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "x order kept");
        let few = &pts[..10];
        assert_eq!(thin(few, 2000), few.to_vec());
        assert_eq!(band(&[pts], false).len(), t.len());
    }

    #[test]
    fn band_of_equal_runs_has_zero_width() {
        let r: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 1.0 + i as f64)).collect();
        let b = band(&[r.clone(), r.clone(), r], false);
        assert_eq!(b.len(), 10);
        for (i, p) in b.iter().enumerate() {
            assert_eq!(
                (p.1, p.2, p.3),
                (1.0 + i as f64, 1.0 + i as f64, 1.0 + i as f64)
            );
        }
    }

    #[test]
    fn band_holds_ended_runs_and_interpolates() {
        // Run a ends at x = 1 with value 0; run b goes on at 10.
        let a = vec![(0.0, 2.0), (1.0, 0.0)];
        let b = vec![(0.0, 10.0), (2.0, 10.0)];
        let c = vec![(0.0, 4.0), (2.0, 0.0)];
        let out = band(&[a, b, c], false);
        let xs: Vec<f64> = out.iter().map(|p| p.0).collect();
        assert_eq!(xs, vec![0.0, 1.0, 2.0]);
        // At x = 2: a held at 0, b = 10, c = 0 → median 0.
        assert_eq!(out[2].1, 0.0);
        // At x = 1: a = 0, b = 10, c interpolated = 2 → median 2.
        assert_eq!(out[1].1, 2.0);
    }

    #[test]
    fn band_log_drops_nonpositive() {
        let a = vec![(0.0, 100.0), (1.0, 0.0), (2.0, -1.0)];
        let out = band(&[a], true);
        assert_eq!(out, vec![(0.0, 2.0, 2.0, 2.0)]);
    }

    #[test]
    fn contours_of_a_cone_form_a_closed_ring() {
        let n = 21;
        let z: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| ((i as f64 - 10.0).powi(2) + (j as f64 - 10.0).powi(2)).sqrt())
                    .collect()
            })
            .collect();
        let segs = contour_segments(&z, 5.0);
        assert!(!segs.is_empty());
        for (p, q) in &segs {
            for (x, y) in [p, q] {
                let r = ((x - 10.0).powi(2) + (y - 10.0).powi(2)).sqrt();
                assert!((r - 5.0).abs() < 0.1, "point at radius {r}");
            }
        }
        // Closed: every endpoint appears twice.
        let mut ends: Vec<(i64, i64)> = segs
            .iter()
            .flat_map(|(p, q)| [*p, *q])
            .map(|(x, y)| ((x * 1e6).round() as i64, (y * 1e6).round() as i64))
            .collect();
        ends.sort();
        for c in ends.chunks(2) {
            assert_eq!(c[0], c[1]);
        }
    }

    #[test]
    fn decade_labels() {
        assert_eq!(decade_label(-3.0), "10⁻³");
        assert_eq!(decade_label(12.0), "10¹²");
        assert_eq!(decade_label(0.5), "");
    }
}
