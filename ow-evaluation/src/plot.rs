//! PNG charts: lines (ramps, ECDFs, memory over containers, cold starts over concurrency) and
//! grouped bars (throughput). Drawn with `plotters`' bitmap backend and an embedded font, so
//! no system font or font library is needed.

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// A chart that draws itself into a PNG file.
pub trait Chart {
    /// Draws the chart into a PNG at `path`.
    fn draw(&self, path: &Path) -> anyhow::Result<()>;
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Its points, in order of x.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A named line.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

/// Which axes are logarithmic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    /// Both linear.
    #[default]
    Linear,
    /// x logarithmic (latency ECDFs).
    LogX,
    /// y logarithmic.
    LogY,
    /// Both logarithmic (cold starts: concurrency 1 to 64, sub-millisecond to compile times).
    LogBoth,
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct Lines {
    /// The caption.
    pub title: String,
    /// What x is.
    pub x_label: String,
    /// What y is.
    pub y_label: String,
    /// Axis scales.
    pub scale: Scale,
    /// The lines.
    pub series: Vec<Series>,
}

const SIZE: (u32, u32) = (1100, 650);

fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The embedded Noto Sans always parses; a failure would only cost the labels.
        let _ =
            plotters::style::register_font("sans-serif", FontStyle::Normal, ttf_noto_sans::REGULAR);
    });
}

fn err(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw the chart: {error}")
}

/// The plotting area's height in pixels, about: the image less its margins, caption and x labels.
const PLOT_HEIGHT: f64 = 520.0;

/// The legend's height in pixels for `series` entries, its border and its offset included.
fn legend_height(series: usize) -> f64 {
    19.0 * series as f64 + 30.0
}

/// Raises the top of a y axis running from `lo` to `hi` so that the data stays below the
/// legend, which the chart draws in its upper left corner: the band the legend of `series`
/// entries takes (at most half the height) is left empty above the highest point.
fn with_legend_room(lo: f64, hi: f64, log: bool, series: usize) -> f64 {
    let room = (legend_height(series) / PLOT_HEIGHT).min(0.5);
    if log {
        lo * (hi / lo).powf(1.0 / (1.0 - room))
    } else {
        lo + (hi - lo) / (1.0 - room)
    }
}

/// Bounds of the points, padded; positive for log axes.
fn bounds(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (if log { 0.1 } else { 0.0 }, 1.0);
    }
    if log {
        (lo / 1.5, hi * 1.5)
    } else {
        let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.05).max(1e-9);
        (if lo >= 0.0 { 0.0 } else { lo - pad }, hi + pad)
    }
}

impl Chart for Lines {
    fn draw(&self, path: &Path) -> anyhow::Result<()> {
        register_font();
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let points = || self.series.iter().flat_map(|s| s.points.iter().copied());
        let log_x = matches!(self.scale, Scale::LogX | Scale::LogBoth);
        let log_y = matches!(self.scale, Scale::LogY | Scale::LogBoth);
        let (x0, x1) = bounds(points().map(|p| p.0), log_x);
        let (y0, y1) = bounds(points().map(|p| p.1), log_y);
        let y1 = with_legend_room(y0, y1, log_y, self.series.len());
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&self.title, ("sans-serif", 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80);
        macro_rules! draw_on {
            ($x:expr, $y:expr) => {{
                let mut chart = builder.build_cartesian_2d($x, $y).map_err(err)?;
                chart
                    .configure_mesh()
                    .x_desc(&self.x_label)
                    .y_desc(&self.y_label)
                    .label_style(("sans-serif", 16))
                    .draw()
                    .map_err(err)?;
                for (i, series) in self.series.iter().enumerate() {
                    let color = Palette99::pick(i).to_rgba();
                    chart
                        .draw_series(LineSeries::new(
                            series.points.iter().copied(),
                            color.stroke_width(2),
                        ))
                        .map_err(err)?
                        .label(&series.name)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                        });
                    if series.points.len() <= 40 {
                        chart
                            .draw_series(
                                series
                                    .points
                                    .iter()
                                    .map(|&p| Circle::new(p, 3, color.filled())),
                            )
                            .map_err(err)?;
                    }
                }
                legend(&mut chart)?;
            }};
        }
        match self.scale {
            Scale::Linear => draw_on!(x0..x1, y0..y1),
            Scale::LogX => draw_on!((x0..x1).log_scale(), y0..y1),
            Scale::LogY => draw_on!(x0..x1, (y0..y1).log_scale()),
            Scale::LogBoth => draw_on!((x0..x1).log_scale(), (y0..y1).log_scale()),
        }
        root.present().map_err(err)?;
        Ok(())
    }
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> anyhow::Result<()>
where
    CT::From: Clone,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow!("cannot draw the legend: {e}"))
}

/// A grouped bar chart on a logarithmic y axis (rates that span orders of magnitude): one
/// group per category, one bar per series in each.
#[derive(Debug, Clone)]
pub struct Bars {
    /// The caption.
    pub title: String,
    /// What y is.
    pub y_label: String,
    /// The groups along x.
    pub categories: Vec<String>,
    /// Each series' value per category (`None`: no bar).
    pub series: Vec<(String, Vec<Option<f64>>)>,
}

impl Chart for Bars {
    fn draw(&self, path: &Path) -> anyhow::Result<()> {
        register_font();
        let root: DrawingArea<BitMapBackend<'_>, Shift> =
            BitMapBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let n = self.categories.len().max(1);
        let (bottom, top) = bounds(
            self.series
                .iter()
                .flat_map(|(_, values)| values.iter().flatten().copied()),
            true,
        );
        let top = with_legend_room(bottom, top, true, self.series.len());
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), (bottom..top).log_scale())
            .map_err(err)?;
        let categories = &self.categories;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    categories.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        let width = 0.8 / self.series.len().max(1) as f64;
        for (j, (name, values)) in self.series.iter().enumerate() {
            let color = Palette99::pick(j).to_rgba();
            chart
                .draw_series(values.iter().enumerate().filter_map(|(i, value)| {
                    let left = i as f64 - 0.4 + j as f64 * width;
                    value.map(|v| {
                        Rectangle::new([(left, bottom), (left + width, v)], color.filled())
                    })
                }))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.filled())
                });
        }
        legend(&mut chart)?;
        root.present().map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_pad_and_keep_log_axes_positive() {
        assert_eq!(bounds([0.0, 100.0].into_iter(), false), (0.0, 105.0));
        let (lo, hi) = bounds([0.0, 1.0, 100.0].into_iter(), true);
        assert!(lo > 0.0 && lo < 1.0 && hi > 100.0);
        assert_eq!(bounds(std::iter::empty(), false), (0.0, 1.05));
    }

    #[test]
    fn the_data_stays_below_the_legend() {
        let below_legend = |position: f64, series: usize| {
            position <= 1.0 - legend_height(series) / PLOT_HEIGHT + 1e-9
        };
        // Where the highest point sits on the axis, 0 at the bottom and 1 at the top.
        let top = with_legend_room(0.0, 100.0, false, 6);
        assert!(below_legend(100.0 / top, 6));
        let top = with_legend_room(10.0, 100_000.0, true, 6);
        assert!(below_legend(
            (100_000f64 / 10.0).ln() / (top / 10.0).ln(),
            6
        ));
        // However many lines, the data keeps at least half the height.
        let top = with_legend_room(0.0, 100.0, false, 100);
        assert!((100.0 / top - 0.5).abs() < 1e-9);
    }

    #[test]
    fn charts_are_png_files() {
        let dir = tempfile::tempdir().unwrap();
        let lines = dir.path().join("lines.png");
        Lines {
            title: "requests/s by clients".into(),
            x_label: "clients".into(),
            y_label: "requests/s".into(),
            scale: Scale::LogY,
            series: vec![
                Series::new("a", vec![(1.0, 10.0), (2.0, 20.0), (3.0, 25.0)]),
                Series::new("b", vec![(1.0, 5.0), (2.0, 6.0)]),
            ],
        }
        .draw(&lines)
        .unwrap();
        let bars = dir.path().join("bars.png");
        Bars {
            title: "throughput".into(),
            y_label: "requests/s".into(),
            categories: vec!["add".into(), "hash".into()],
            series: vec![
                ("floor".into(), vec![Some(100.0), Some(90.0)]),
                ("native".into(), vec![None, Some(40.0)]),
            ],
        }
        .draw(&bars)
        .unwrap();
        for path in [lines, bars] {
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        }
    }
}
