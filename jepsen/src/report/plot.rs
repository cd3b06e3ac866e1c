//! The report's three plots, drawn with plotters' SVG backend (text goes
//! out as SVG `<text>`, so no font library is needed): latency over time,
//! throughput by outcome, and one lane per node with its role and the
//! writes it accepted. Every plot shades the fault windows and labels them
//! above the plotting area, in as many rows as it takes for labels not to
//! overlap.

use crate::checker::call::Calls;
use crate::checker::dual_primary;
use crate::history::{F, OpType};
use crate::record::{Fault, RoleSample};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
pub use plotters::style::RGBColor;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;
use std::io;

/// Plot width in pixels.
const WIDTH: u32 = 1200;
/// Latency points drawn at most per outcome; more are thinned evenly.
const MAX_POINTS: usize = 15_000;
const FONT: &str = "sans-serif";

pub const OK: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
pub const INFO: RGBColor = RGBColor(0xe6, 0x8a, 0x00);
pub const FAIL: RGBColor = RGBColor(0xd6, 0x27, 0x28);
pub const PRIMARY: RGBColor = RGBColor(0x08, 0x45, 0x94);
pub const REPLICA: RGBColor = RGBColor(0x9e, 0xca, 0xe1);
pub const DOWN: RGBColor = RGBColor(0x96, 0x96, 0x96);
pub const OTHER_ROLE: RGBColor = RGBColor(0xfd, 0xae, 0x6b);
pub const ACCEPT_DEFINITE: RGBColor = RGBColor(0x23, 0x8b, 0x45);
pub const ACCEPT_WINDOW: RGBColor = RGBColor(0xa1, 0xd9, 0x9b);

/// Fault band colours, one per fault kind in order of first appearance.
const BANDS: [RGBColor; 6] = [
    RGBColor(0xe4, 0x1a, 0x1c),
    RGBColor(0x98, 0x4e, 0xa3),
    RGBColor(0xff, 0x7f, 0x00),
    RGBColor(0x4d, 0xaf, 0x4a),
    RGBColor(0xa6, 0x56, 0x28),
    RGBColor(0xf7, 0x81, 0xbf),
];

/// The fault kinds in order of first appearance, with their band colour.
pub fn fault_colours(faults: &[Fault]) -> Vec<(String, RGBColor)> {
    let mut out: Vec<(String, RGBColor)> = Vec::new();
    for f in faults {
        if !out.iter().any(|(k, _)| *k == f.kind) {
            out.push((f.kind.clone(), BANDS[out.len() % BANDS.len()]));
        }
    }
    out
}

/// The colour of a role in the lanes.
pub fn role_colour(role: &str) -> RGBColor {
    match role {
        "primary" => PRIMARY,
        "replica" => REPLICA,
        "down" => DOWN,
        _ => OTHER_ROLE,
    }
}

/// Hex form of a colour for the HTML legends.
pub fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn err<E: std::fmt::Debug>(e: E) -> io::Error {
    io::Error::other(format!("draw plot: {e:?}"))
}

/// The time axis of every plot: from 0 to the end of the run, in seconds.
pub struct Frame<'a> {
    pub end_s: f64,
    pub faults: &'a [Fault],
    colours: Vec<(String, RGBColor)>,
    /// Label rows above the plot, and each fault's row (None: no room).
    rows: usize,
    label_row: Vec<Option<usize>>,
}

const LEFT: u32 = 70;
const RIGHT: u32 = 20;
const ROW: u32 = 17;
const MAX_ROWS: usize = 4;

impl<'a> Frame<'a> {
    pub fn new(end_s: f64, faults: &'a [Fault]) -> Frame<'a> {
        let end_s = end_s.max(1.0);
        // Greedy rows for the band labels, in pixels.
        let px = |s: f64| LEFT as f64 + s / end_s * (WIDTH - LEFT - RIGHT) as f64;
        let mut order: Vec<usize> = (0..faults.len()).collect();
        order.sort_by_key(|i| faults[*i].start);
        let mut row_end: Vec<f64> = Vec::new();
        let mut label_row = vec![None; faults.len()];
        for i in order {
            let x = px(faults[i].start as f64 / 1e9);
            let w = label(&faults[i]).chars().count() as f64 * 7.5 + 10.0;
            match row_end.iter().position(|end| *end < x) {
                Some(r) => {
                    row_end[r] = x + w;
                    label_row[i] = Some(r);
                }
                None if row_end.len() < MAX_ROWS => {
                    row_end.push(x + w);
                    label_row[i] = Some(row_end.len() - 1);
                }
                None => {}
            }
        }
        Frame { end_s, faults, colours: fault_colours(faults), rows: row_end.len().max(1), label_row }
    }

    fn top_margin(&self) -> u32 {
        self.rows as u32 * ROW + 8
    }

    fn colour(&self, kind: &str) -> RGBColor {
        self.colours.iter().find(|(k, _)| k == kind).map_or(BANDS[0], |(_, c)| *c)
    }

    fn span_s(&self, f: &Fault) -> (f64, f64) {
        let end = f.end.map_or(self.end_s, |e| e as f64 / 1e9);
        (f.start as f64 / 1e9, end)
    }

    /// Shade the fault windows over a chart and label them above it.
    fn bands<Y: Ranged<ValueType = f64>>(
        &self,
        root: &DrawingArea<SVGBackend, Shift>,
        chart: &mut ChartContext<SVGBackend, Cartesian2d<RangedCoordf64, Y>>,
        y: (f64, f64),
    ) -> io::Result<()> {
        for f in self.faults {
            let (s, e) = self.span_s(f);
            let c = self.colour(&f.kind);
            chart
                .draw_series(std::iter::once(Rectangle::new([(s, y.0), (e, y.1)], c.mix(0.13).filled())))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(s, y.0), (s, y.1)], c.mix(0.6).stroke_width(1))))
                .map_err(err)?;
        }
        for (f, row) in self.faults.iter().zip(&self.label_row) {
            let Some(row) = row else { continue };
            let (s, _) = self.span_s(f);
            let (x, _) = chart.backend_coord(&(s, y.1));
            let ypx = 4 + *row as i32 * ROW as i32;
            let colour = self.colour(&f.kind);
            let style = TextStyle::from((FONT, 15).into_font()).color(&colour);
            root.draw(&Text::new(label(f), (x + 2, ypx), style)).map_err(err)?;
        }
        Ok(())
    }
}

fn label(f: &Fault) -> String {
    if f.targets.is_empty() { f.kind.clone() } else { format!("{} {}", f.kind, f.targets.join(",")) }
}

fn axis_text() -> TextStyle<'static> {
    TextStyle::from((FONT, 16).into_font()).color(&BLACK)
}

fn fmt_s(v: &f64) -> String {
    if v.fract().abs() < 1e-9 { format!("{v:.0}") } else { format!("{v:.1}") }
}

/// Latency of every completed workload call (probes excluded) against its
/// completion time, on a log scale. Returns the SVG and how many points
/// were thinned out.
pub fn latency(calls: &Calls, frame: &Frame) -> io::Result<(String, usize)> {
    let mut points: BTreeMap<u8, Vec<(f64, f64)>> = BTreeMap::new();
    for c in calls.calls.iter().filter(|c| c.f() != F::Probe) {
        let (Some(i), Some(d)) = (c.invoke_time(), c.complete_time()) else { continue };
        let key = match c.outcome() {
            OpType::Ok => 0,
            OpType::Fail => 1,
            _ => 2,
        };
        points.entry(key).or_default().push((d as f64 / 1e9, (d.saturating_sub(i) as f64 / 1e6).max(0.01)));
    }
    let mut thinned = 0;
    for ps in points.values_mut() {
        if ps.len() > MAX_POINTS {
            let step = ps.len().div_ceil(MAX_POINTS);
            thinned += ps.len() - ps.len().div_ceil(step);
            *ps = ps.iter().step_by(step).copied().collect();
        }
    }
    let all = points.values().flatten();
    let lo = all.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = all.map(|p| p.1).fold(0.0, f64::max);
    let (lo, hi) = if lo.is_finite() {
        (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)))
    } else {
        (1.0, 1000.0)
    };
    let mut svg = String::new();
    {
        let height = 340 + frame.top_margin();
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(frame.top_margin())
            .margin_right(RIGHT)
            .set_label_area_size(LabelAreaPosition::Left, LEFT)
            .set_label_area_size(LabelAreaPosition::Bottom, 40)
            .build_cartesian_2d(0f64..frame.end_s, (lo..hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time since start (s), at completion")
            .y_desc("latency (log scale)")
            .y_label_formatter(&|v| fmt_ms(*v))
            .x_label_formatter(&fmt_s)
            .axis_desc_style(axis_text())
            .label_style(axis_text())
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(err)?;
        frame.bands(&root, &mut chart, (lo, hi))?;
        for (key, colour, size) in [(0u8, OK, 2), (1, FAIL, 3), (2, INFO, 3)] {
            let Some(ps) = points.get(&key) else { continue };
            chart.draw_series(ps.iter().map(|p| Circle::new(*p, size, colour.mix(0.75).filled()))).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok((svg, thinned))
}

fn fmt_ms(v: f64) -> String {
    if v >= 1000.0 { format!("{} s", v / 1000.0) } else { format!("{v} ms") }
}

/// Calls completed per second, one line per outcome (probes excluded).
pub fn throughput(calls: &Calls, frame: &Frame) -> io::Result<String> {
    let buckets = frame.end_s.ceil() as usize + 1;
    let mut counts = [vec![0u32; buckets], vec![0u32; buckets], vec![0u32; buckets]];
    for c in calls.calls.iter().filter(|c| c.f() != F::Probe) {
        let Some(d) = c.complete_time() else { continue };
        let i = ((d / 1_000_000_000) as usize).min(buckets - 1);
        let k = match c.outcome() {
            OpType::Ok => 0,
            OpType::Fail => 1,
            _ => 2,
        };
        counts[k][i] += 1;
    }
    let top = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut svg = String::new();
    {
        let height = 260 + frame.top_margin();
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(frame.top_margin())
            .margin_right(RIGHT)
            .set_label_area_size(LabelAreaPosition::Left, LEFT)
            .set_label_area_size(LabelAreaPosition::Bottom, 40)
            .build_cartesian_2d(0f64..frame.end_s, 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc("calls completed / s")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_label_formatter(&fmt_s)
            .axis_desc_style(axis_text())
            .label_style(axis_text())
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(err)?;
        frame.bands(&root, &mut chart, (0.0, top))?;
        for (k, colour) in [(0, OK), (1, FAIL), (2, INFO)] {
            let line = counts[k].iter().enumerate().map(|(i, n)| (i as f64 + 0.5, *n as f64));
            chart.draw_series(LineSeries::new(line, colour.stroke_width(2))).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// One lane per node: its role over time (upper bar) and the writes its
/// probes show it accepted (lower bar), with targeted faults marked in red
/// on the lane.
pub fn lanes(calls: &Calls, roles: &[RoleSample], frame: &Frame) -> io::Result<String> {
    let (runs, _) = dual_primary::runs(calls);
    let mut nodes: Vec<String> = roles.iter().map(|r| r.node.clone()).collect();
    nodes.extend(runs.keys().cloned());
    nodes.extend(frame.faults.iter().flat_map(|f| f.targets.iter().cloned()));
    nodes.sort();
    nodes.dedup();
    let n = nodes.len().max(1) as f64;
    // Lane i (from the top) spans y in [n-1-i, n-i].
    let lane = |node: &str| nodes.iter().position(|x| x == node).map(|i| n - 1.0 - i as f64);
    let mut svg = String::new();
    {
        let height = 50 + 56 * nodes.len().max(1) as u32 + frame.top_margin();
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(frame.top_margin())
            .margin_right(RIGHT)
            .set_label_area_size(LabelAreaPosition::Left, LEFT)
            .set_label_area_size(LabelAreaPosition::Bottom, 40)
            .build_cartesian_2d(0f64..frame.end_s, 0f64..n)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc("time since start (s)")
            .x_label_formatter(&fmt_s)
            .axis_desc_style(axis_text())
            .label_style(axis_text())
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(err)?;
        frame.bands(&root, &mut chart, (0.0, n))?;

        // Role bars: each sample holds until the node's next sample.
        let mut by_node: BTreeMap<&str, Vec<&RoleSample>> = BTreeMap::new();
        for r in roles {
            by_node.entry(&r.node).or_default().push(r);
        }
        let mut bars = Vec::new();
        let mut named = Vec::new();
        for (node, mut samples) in by_node {
            samples.sort_by_key(|s| s.time);
            let Some(y) = lane(node) else { continue };
            // Consecutive samples of one role make one bar.
            let mut i = 0;
            while i < samples.len() {
                let mut j = i + 1;
                while j < samples.len() && samples[j].role == samples[i].role {
                    j += 1;
                }
                let start = samples[i].time as f64 / 1e9;
                let end = samples.get(j).map_or(frame.end_s, |n| n.time as f64 / 1e9);
                let colour = role_colour(&samples[i].role);
                bars.push(Rectangle::new([(start, y + 0.52), (end, y + 0.86)], colour.filled()));
                if colour == OTHER_ROLE {
                    named.push((samples[i].role.clone(), start, end, y + 0.69));
                }
                i = j;
            }
        }
        chart.draw_series(bars).map_err(err)?;
        // Roles other than the usual three are named on their bar, if it
        // is wide enough.
        for (role, start, end, y) in named {
            let (x0, py) = chart.backend_coord(&(start, y));
            let (x1, _) = chart.backend_coord(&(end, y));
            if (x1 - x0) as usize > role.chars().count() * 8 + 6 {
                let style =
                    TextStyle::from((FONT, 14).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
                root.draw(&Text::new(role, (x0 + 4, py), style)).map_err(err)?;
            }
        }

        // Accepted probe writes: the window in light green, the definite
        // interval in dark green.
        let mut accepted = Vec::new();
        for (node, rs) in &runs {
            let Some(y) = lane(node) else { continue };
            for r in rs {
                let (s, e) = r.extent();
                let (s, e) = (s as f64 / 1e9, (e as f64 / 1e9).max(s as f64 / 1e9 + frame.end_s / 1500.0));
                accepted.push(Rectangle::new([(s, y + 0.14), (e, y + 0.44)], ACCEPT_WINDOW.filled()));
                if let Some((a, b)) = r.definite() {
                    accepted.push(Rectangle::new(
                        [(a as f64 / 1e9, y + 0.14), (b as f64 / 1e9, y + 0.44)],
                        ACCEPT_DEFINITE.filled(),
                    ));
                }
            }
        }
        chart.draw_series(accepted).map_err(err)?;

        // Faults aimed at a node: a red bar along the top of its lane.
        let mut marks = Vec::new();
        for f in frame.faults {
            let (s, e) = frame.span_s(f);
            for t in &f.targets {
                if let Some(y) = lane(t) {
                    marks.push(Rectangle::new([(s, y + 0.90), (e, y + 0.96)], frame.colour(&f.kind).filled()));
                }
            }
        }
        chart.draw_series(marks).map_err(err)?;

        for (i, node) in nodes.iter().enumerate() {
            let y = n - 1.0 - i as f64;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, y), (frame.end_s, y)],
                    RGBColor(0xcc, 0xcc, 0xcc),
                )))
                .map_err(err)?;
            let (_, py) = chart.backend_coord(&(0.0, y + 0.5));
            let style = TextStyle::from((FONT, 17).into_font().style(FontStyle::Bold))
                .color(&BLACK)
                .pos(Pos::new(HPos::Right, VPos::Center));
            root.draw(&Text::new(node.clone(), (LEFT as i32 - 10, py), style)).map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}
