//! The report's charts, drawn with plotters into PNG (rendered in memory,
//! encoded by the `image` crate) and SVG, under `results/<sweep>/charts/`.
//!
//! A chart is described as data first ([`Chart`]: lines with optional error
//! bars, bars with intervals, or a heatmap), then drawn by one function for
//! both backends, so the PNG and the SVG always agree. Text uses DejaVu Sans,
//! embedded in the binary (no system fonts needed).

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
use std::path::{Path, PathBuf};

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One line of a line chart: points (x, y, optional ± half-width).
#[derive(Debug, Clone)]
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64, Option<f64>)>,
    pub dashed: bool,
    /// Draw markers only (a scatter).
    pub markers_only: bool,
}

/// What a chart shows.
#[derive(Debug, Clone)]
pub enum Body {
    Lines(Vec<Line>),
    /// (label, mean, ± half-width).
    Bars(Vec<(String, f64, Option<f64>)>),
    /// Rows × columns of values, with their tick labels.
    Heatmap {
        rows: Vec<String>,
        cols: Vec<String>,
        values: Vec<Vec<f64>>,
    },
}

#[derive(Debug, Clone)]
pub struct Chart {
    /// File stem.
    pub name: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    pub body: Body,
}

const W: u32 = 900;
const H: u32 = 540;

fn palette(i: usize) -> RGBColor {
    const C: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

/// A viridis-like ramp for t ∈ [0, 1].
fn ramp(t: f64) -> RGBColor {
    let stops = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn range(vals: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let v: Vec<f64> = vals
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .collect();
    if v.is_empty() {
        return if log { (0.1, 1.0) } else { (0.0, 1.0) };
    }
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if log {
        let (l, h) = (lo.log10(), hi.log10());
        let pad = ((h - l) * 0.05).max(0.05);
        (10f64.powf(l - pad), 10f64.powf(h + pad))
    } else if hi > lo {
        let pad = (hi - lo) * 0.06;
        (lo - pad, hi + pad)
    } else {
        (lo - 0.5 - lo.abs() * 0.1, hi + 0.5 + hi.abs() * 0.1)
    }
}

/// The whole decades around [lo, hi] (both > 0).
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()),
    )
}

/// Why a chart could not be drawn or written. The cause is in the message,
/// not a `#[source]`: `main` prints errors with `{:#}`, which would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    DrawPng { path: PathBuf, error: PngError },
    #[error("{}: {error}", path.display())]
    DrawSvg { path: PathBuf, error: SvgError },
    #[error("{}: {error}", path.display())]
    EncodePng {
        path: PathBuf,
        error: image::ImageError,
    },
    /// The bitmap is not W × H RGB pixels (a bug, not an input).
    #[error("chart buffer size")]
    Buffer,
}

/// What drawing on the bitmap (PNG) backend can fail with.
pub type PngError = DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>;
/// What drawing on the SVG backend can fail with.
pub type SvgError = DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>;

/// The axes of a line chart: x range, y range, and whether y is logarithmic.
fn line_axes(c: &Chart, lines: &[Line]) -> (Range<f64>, Range<f64>, bool) {
    let (x0, x1) = range(
        lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)),
        false,
    );
    let ys = || {
        lines.iter().flat_map(|l| {
            l.points.iter().flat_map(|&(_, y, h)| {
                let h = h.unwrap_or(0.0);
                [y - h, y + h]
            })
        })
    };
    // A log axis when the values span more than 10× (all positive); it runs
    // over whole decades, since plotters labels a log axis at powers of ten.
    let points = || lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let finite: Vec<f64> = points().filter(|y| y.is_finite()).collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_y = c.log_y && lo > 0.0 && hi / lo > 10.0;
    let (y0, y1) = if log_y {
        decades(lo, hi)
    } else {
        range(ys(), false)
    };
    (x0..x1, y0..y1, log_y)
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    c: &Chart,
    lines: &[Line],
) -> DrawResult<(), DB> {
    let (x, y, log_y) = line_axes(c, lines);
    let c = &Chart { log_y, ..c.clone() };
    let mut b = ChartBuilder::on(root);
    b.caption(&c.title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(72);
    // Two coordinate types (linear, logarithmic), one drawing.
    if c.log_y {
        draw_line_series(b.build_cartesian_2d(x, y.log_scale())?, c, lines)
    } else {
        draw_line_series(b.build_cartesian_2d(x, y)?, c, lines)
    }
}

/// The mesh, every line (with its markers and error bars) and the legend.
fn draw_line_series<'a, DB, Y>(
    mut chart: ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    c: &Chart,
    lines: &[Line],
) -> DrawResult<(), DB>
where
    DB: DrawingBackend + 'a,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (i, l) in lines.iter().enumerate() {
        let color = palette(i);
        let pts: Vec<(f64, f64)> = l
            .points
            .iter()
            .filter(|p| p.1.is_finite() && (!c.log_y || p.1 > 0.0))
            .map(|p| (p.0, p.1))
            .collect();
        let style = color.stroke_width(2);
        let anno = if l.markers_only {
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 5, color.filled())))?
        } else if l.dashed {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))?
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), style))?
        };
        anno.label(l.label.clone()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
        });
        if !l.markers_only && pts.len() <= 40 {
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart.draw_series(l.points.iter().filter_map(|&(x, y, h)| {
            let h = h.filter(|h| h.is_finite() && *h > 0.0 && y.is_finite())?;
            let lo = if c.log_y {
                (y - h).max(y * 1e-3)
            } else {
                y - h
            };
            Some(ErrorBar::new_vertical(
                x,
                lo,
                y,
                y + h,
                color.stroke_width(1),
                8,
            ))
        }))?;
    }
    if lines.len() > 1 || lines.iter().any(|l| !l.label.is_empty()) {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    c: &Chart,
    bars: &[(String, f64, Option<f64>)],
) -> DrawResult<(), DB> {
    let n = bars.len().max(1);
    let (mut y0, y1) = range(
        bars.iter().flat_map(|(_, m, h)| {
            let h = h.unwrap_or(0.0);
            [m - h, m + h, 0.0]
        }),
        false,
    );
    if bars.iter().all(|b| b.1 >= 0.0) {
        y0 = 0.0;
    }
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(60)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .label_style(("sans-serif", 13))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, m, _))| {
        let x = i as f64;
        Rectangle::new(
            [(x - 0.35, 0.0f64.max(y0)), (x + 0.35, *m)],
            palette(i).mix(0.8).filled(),
        )
    }))?;
    chart.draw_series(bars.iter().enumerate().filter_map(|(i, (_, m, h))| {
        let h = h.filter(|h| h.is_finite() && *h > 0.0)?;
        Some(ErrorBar::new_vertical(
            i as f64,
            m - h,
            *m,
            m + h,
            BLACK.stroke_width(2),
            14,
        ))
    }))?;
    Ok(())
}

fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    c: &Chart,
    rows: &[String],
    cols: &[String],
    values: &[Vec<f64>],
) -> DrawResult<(), DB> {
    let (lo, hi) = range(values.iter().flatten().copied(), false);
    let (nr, nc) = (rows.len().max(1), cols.len().max(1));
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..nc as f64, 0f64..nr as f64)?;
    let tick = |labels: &[String], v: f64| {
        let i = v - 0.5;
        if (i - i.round()).abs() < 1e-6 && i >= 0.0 {
            labels.get(i.round() as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let (cl, rl) = (cols.to_vec(), rows.to_vec());
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(2 * nc + 1)
        .y_labels(2 * nr + 1)
        .x_label_formatter(&|v| tick(&cl, *v))
        .y_label_formatter(&|v| tick(&rl, *v))
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .label_style(("sans-serif", 13))
        .draw()?;
    for (r, row) in values.iter().enumerate() {
        for (k, &v) in row.iter().enumerate() {
            let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
            let color = if v.is_finite() {
                ramp(t)
            } else {
                RGBColor(220, 220, 220)
            };
            let (x, y) = (k as f64, r as f64);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x, y), (x + 1.0, y + 1.0)],
                color.filled(),
            )))?;
            let text = if v.is_finite() {
                format!("{v:.3}")
            } else {
                "–".into()
            };
            let ink = if t > 0.6 { BLACK } else { WHITE };
            chart.draw_series(std::iter::once(Text::new(
                text,
                (x + 0.35, y + 0.45),
                ("sans-serif", 14).into_font().color(&ink),
            )))?;
        }
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &Chart) -> DrawResult<(), DB> {
    root.fill(&WHITE)?;
    match &c.body {
        Body::Lines(l) => draw_lines(&root, c, l)?,
        Body::Bars(b) => draw_bars(&root, c, b)?,
        Body::Heatmap { rows, cols, values } => draw_heatmap(&root, c, rows, cols, values)?,
    }
    root.present()
}

/// Draw `c` as `<dir>/<name>.png` and `.svg`; returns the PNG's path.
pub fn render(c: &Chart, dir: &Path) -> Result<PathBuf, ChartError> {
    register_font();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ChartError::Io { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let png = dir.join(format!("{}.png", c.name));
    let svg = dir.join(format!("{}.svg", c.name));
    let mut buf = vec![0u8; (W * H * 3) as usize];
    draw(
        BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area(),
        c,
    )
    .map_err(|error| ChartError::DrawPng {
        path: png.clone(),
        error,
    })?;
    let img = image::RgbImage::from_raw(W, H, buf).ok_or(ChartError::Buffer)?;
    let tmp = dir.join(format!(".{}.png.tmp", c.name));
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|error| ChartError::EncodePng {
            path: png.clone(),
            error,
        })?;
    std::fs::rename(&tmp, &png).map_err(io(&png))?;
    let mut text = String::new();
    draw(
        SVGBackend::with_string(&mut text, (W, H)).into_drawing_area(),
        c,
    )
    .map_err(|error| ChartError::DrawSvg {
        path: svg.clone(),
        error,
    })?;
    let tmp = dir.join(format!(".{}.svg.tmp", c.name));
    std::fs::write(&tmp, text).map_err(io(&svg))?;
    std::fs::rename(&tmp, &svg).map_err(io(&svg))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_y_axis_is_logarithmic_over_whole_decades_when_values_span_more_than_10x() {
        let chart = |log_y: bool| Chart {
            name: "c".into(),
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_y,
            body: Body::Lines(vec![]),
        };
        let line = |ys: &[f64]| Line {
            label: "a".into(),
            points: ys
                .iter()
                .enumerate()
                .map(|(i, &y)| (i as f64, y, None))
                .collect(),
            dashed: false,
            markers_only: false,
        };
        // FD 31 → 1268: 41×, so log, from 10 to 10⁴.
        let (_, y, log) = line_axes(&chart(true), &[line(&[1268.0, 31.0])]);
        assert!(log);
        assert!(
            (y.start - 10.0).abs() < 1e-9 && (y.end - 1e4).abs() < 1e-6,
            "{y:?}"
        );
        // 9×: linear.
        assert!(!line_axes(&chart(true), &[line(&[90.0, 10.0])]).2);
        // A zero cannot be on a log axis; nor a chart that asks for none.
        assert!(!line_axes(&chart(true), &[line(&[0.0, 100.0])]).2);
        assert!(!line_axes(&chart(false), &[line(&[1268.0, 31.0])]).2);
    }

    #[test]
    fn every_kind_of_chart_renders_to_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let line = Line {
            label: "a".into(),
            points: vec![
                (0.0, 1.0, Some(0.1)),
                (1.0, 0.5, None),
                (2.0, 0.25, Some(0.05)),
            ],
            dashed: false,
            markers_only: false,
        };
        let charts = [
            Body::Lines(vec![
                line.clone(),
                Line {
                    dashed: true,
                    label: "b".into(),
                    ..line
                },
            ]),
            Body::Bars(vec![("x".into(), 2.0, Some(0.3)), ("y".into(), 1.0, None)]),
            Body::Heatmap {
                rows: vec!["0.1".into(), "0.2".into()],
                cols: vec!["1".into(), "3".into(), "5".into()],
                values: vec![vec![1.0, 2.0, 3.0], vec![4.0, f64::NAN, 6.0]],
            },
        ];
        for (i, body) in charts.into_iter().enumerate() {
            let c = Chart {
                name: format!("c{i}"),
                title: "A chart".into(),
                x_label: "step".into(),
                y_label: "loss".into(),
                log_y: i == 0,
                body,
            };
            let png = render(&c, dir.path()).unwrap();
            let img = image::open(&png).unwrap().to_rgb8();
            assert_eq!((img.width(), img.height()), (W, H));
            // Not blank: some dark pixels (axes, text).
            assert!(img.pixels().filter(|p| p.0.iter().all(|&v| v < 80)).count() > 100);
            let svg = std::fs::read_to_string(dir.path().join(format!("c{i}.svg"))).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("A chart"),
                "{}",
                &svg[..100]
            );
        }
    }
}
