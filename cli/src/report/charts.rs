//! The report's two inline SVG charts: progress over time (results per
//! interval as bars, the cumulative share as a line) and the ages of the
//! active keys before and after the run. Only numbers and fixed words go
//! into them, so they need no escaping.

use std::fmt::Write;

use chrono::{DateTime, Utc};

const W: f64 = 760.0;
const H: f64 = 260.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 48.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;
/// Bars at most, so that a long run's chart stays legible.
const MAX_BARS: u64 = 60;

/// The widths a bar may have, in seconds: the narrowest that keeps a run
/// within [`MAX_BARS`] is taken.
const BAR_WIDTHS: [u64; 14] = [
    1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400,
];

/// Where results landed in time: the interval of each bar and its count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The width of one bar, in seconds.
    pub seconds_per_bar: u64,
    /// Results per bar, from the run's start.
    pub per_bar: Vec<usize>,
}

impl Progress {
    /// The progress of results recorded at `times`, from `start` (the
    /// run's start; a result recorded before it counts in the first bar).
    pub fn of(start: DateTime<Utc>, times: impl IntoIterator<Item = DateTime<Utc>>) -> Progress {
        let offsets: Vec<u64> = times
            .into_iter()
            .map(|t| u64::try_from((t - start).num_seconds()).unwrap_or(0))
            .collect();
        let span = offsets.iter().max().copied().unwrap_or(0) + 1;
        let seconds_per_bar = BAR_WIDTHS
            .into_iter()
            .find(|w| span.div_ceil(*w) <= MAX_BARS)
            .unwrap_or_else(|| span.div_ceil(MAX_BARS));
        let mut per_bar = vec![0; span.div_ceil(seconds_per_bar) as usize];
        for s in offsets {
            per_bar[(s / seconds_per_bar) as usize] += 1;
        }
        Progress {
            seconds_per_bar,
            per_bar,
        }
    }

    /// The chart: bars of results per interval on the left axis, the
    /// cumulative share of `expected` as a line on the right.
    pub fn svg(&self, expected: usize) -> String {
        let total: usize = self.per_bar.iter().sum();
        let expected = expected.max(total).max(1);
        let peak = nice_top(self.per_bar.iter().copied().max().unwrap_or(0));
        let n = self.per_bar.len().max(1) as f64;
        let plot_w = W - LEFT - RIGHT;
        let plot_h = H - TOP - BOTTOM;
        let base = H - BOTTOM;
        let bar_w = plot_w / n;
        let mut out = open_svg("Results over time");
        axes(&mut out, peak, true);
        let mut points = format!("{LEFT:.1},{base:.1}");
        let mut running = 0;
        for (i, &count) in self.per_bar.iter().enumerate() {
            let x = LEFT + bar_w * i as f64;
            let h = plot_h * count as f64 / peak as f64;
            let _ = writeln!(
                out,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="#8fb8de"><title>{count} results</title></rect>"##,
                y = base - h,
                w = (bar_w - 1.0).max(1.0),
            );
            running += count;
            let _ = write!(
                points,
                " {:.1},{:.1}",
                x + bar_w,
                base - plot_h * running as f64 / expected as f64
            );
        }
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="#1f4e79" stroke-width="2" points="{points}"/>"##
        );
        let ticks = self.per_bar.len().clamp(1, 6);
        for t in 0..=ticks {
            let bar = self.per_bar.len() * t / ticks;
            let seconds = bar as u64 * self.seconds_per_bar;
            let _ = writeln!(
                out,
                r##"<text x="{x:.1}" y="{y}" text-anchor="middle">{label}</text>"##,
                x = LEFT + bar_w * bar as f64,
                y = base + 16.0,
                label = elapsed(seconds),
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{y}">bars: results per {width} (left) · line: share of the {expected} expected (right)</text></svg>"##,
            y = H - 4.0,
            width = elapsed(self.seconds_per_bar).trim_start_matches('+'),
        );
        out
    }
}

/// The age bands of the key-age chart: `[from, to)` in days, the last open.
pub fn age_bands(rotate: i64, deactivate: i64, delete: i64) -> Vec<(i64, Option<i64>)> {
    let third = (rotate / 3).max(1);
    let mut edges = vec![0, third, 2 * third, rotate, deactivate, delete];
    edges.dedup();
    let mut bands: Vec<(i64, Option<i64>)> = edges.windows(2).map(|w| (w[0], Some(w[1]))).collect();
    bands.push((*edges.last().unwrap_or(&0), None));
    bands
}

/// How many ages fall in each band.
pub fn count_in_bands(
    bands: &[(i64, Option<i64>)],
    ages: impl IntoIterator<Item = i64>,
) -> Vec<usize> {
    let mut counts = vec![0; bands.len()];
    for age in ages {
        if let Some(i) = bands
            .iter()
            .position(|(from, to)| age >= *from && to.is_none_or(|to| age < to))
        {
            counts[i] += 1;
        }
    }
    counts
}

/// The key-age chart: for each band, the active keys before the run (grey)
/// and after it (blue).
pub fn ages_svg(bands: &[(i64, Option<i64>)], before: &[usize], after: &[usize]) -> String {
    let peak = nice_top(before.iter().chain(after).copied().max().unwrap_or(0));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let base = H - BOTTOM;
    let slot = plot_w / bands.len().max(1) as f64;
    let bar_w = slot * 0.35;
    let mut out = open_svg("Ages of the active keys, before and after the run");
    axes(&mut out, peak, false);
    for (i, band) in bands.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.12;
        for (j, (counts, colour, when)) in
            [(before, "#b0b0b0", "before"), (after, "#2f6fad", "after")]
                .iter()
                .enumerate()
        {
            let count = counts.get(i).copied().unwrap_or(0);
            let h = plot_h * count as f64 / peak as f64;
            let _ = writeln!(
                out,
                r##"<rect x="{bx:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{colour}"><title>{count} keys {when}</title></rect><text x="{tx:.1}" y="{ly:.1}" text-anchor="middle" font-size="10">{count}</text>"##,
                bx = x + bar_w * j as f64,
                y = base - h,
                tx = x + bar_w * j as f64 + bar_w / 2.0,
                ly = base - h - 3.0,
            );
        }
        let label = match band.1 {
            Some(to) => format!("{}–{} days", band.0, to - 1),
            None => format!("{}+ days", band.0),
        };
        let _ = writeln!(
            out,
            r##"<text x="{x:.1}" y="{y}" text-anchor="middle">{label}</text>"##,
            x = LEFT + slot * (i as f64 + 0.5),
            y = base + 16.0,
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{y0}" width="10" height="10" fill="#b0b0b0"/><text x="{t1}" y="{y}">before</text><rect x="{r2}" y="{y0}" width="10" height="10" fill="#2f6fad"/><text x="{t2}" y="{y}">after</text></svg>"##,
        y0 = H - 13.0,
        y = H - 4.0,
        t1 = LEFT + 14.0,
        r2 = LEFT + 70.0,
        t2 = LEFT + 84.0,
    );
    out
}

fn open_svg(title: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" font-family="sans-serif" font-size="11"><title>{title}</title>
"##
    )
}

/// The axes and five gridlines, labelled from 0 to `peak` on the left
/// and, with `percent`, from 0 % to 100 % on the right.
fn axes(out: &mut String, peak: usize, percent: bool) {
    let base = H - BOTTOM;
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{base}" x2="{r}" y2="{base}" stroke="#333"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#333"/>"##,
        r = W - RIGHT,
    );
    for i in 0..=4 {
        let y = base - (H - TOP - BOTTOM) * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{lx}" y="{ty:.1}" text-anchor="end">{count}</text>"##,
            r = W - RIGHT,
            lx = LEFT - 6.0,
            ty = y + 4.0,
            count = peak / 4 * i as usize,
        );
        if percent {
            let _ = write!(
                out,
                r##"<text x="{rx}" y="{ty:.1}">{pct}%</text>"##,
                rx = W - RIGHT + 6.0,
                ty = y + 4.0,
                pct = i * 25,
            );
        }
        out.push('\n');
    }
}

/// The top of an axis that shows `peak`: a multiple of 4, so that its
/// five gridlines fall on whole numbers.
fn nice_top(peak: usize) -> usize {
    peak.max(1).div_ceil(4) * 4
}

/// `+45 s`, `+12 min`, `+3 h`, `+2 d 4 h`.
fn elapsed(seconds: u64) -> String {
    match seconds {
        s if s < 180 => format!("+{s} s"),
        s if s < 180 * 60 => format!("+{} min", s / 60),
        s if s < 48 * 3600 => format!("+{} h", s / 3600),
        s => format!("+{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::minutes(minutes)
    }

    #[test]
    fn progress_counts_results_per_minute_and_widens_bars_for_long_runs() {
        let short = Progress::of(at(0), [at(0), at(0), at(2), at(-5)]);
        assert_eq!(short.seconds_per_bar, 5, "121 seconds in at most 60 bars");
        assert_eq!(short.per_bar.len(), 25);
        assert_eq!(
            short.per_bar[0], 3,
            "an early result counts in the first bar"
        );
        assert_eq!(short.per_bar[24], 1);
        let long = Progress::of(at(0), (0..600).map(at));
        assert_eq!(long.seconds_per_bar, 600, "600 minutes in at most 60 bars");
        assert_eq!(long.per_bar.len(), 60);
        assert!(long.per_bar.iter().all(|n| *n == 10));
        assert_eq!(long.per_bar.iter().sum::<usize>(), 600);
        let svg = short.svg(8);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect").count(), 25);
        assert!(svg.contains("results per 5 s (left)"), "{svg}");
        assert!(svg.contains("share of the 8 expected"), "{svg}");
        assert_eq!(nice_top(3), 4);
        assert_eq!(nice_top(0), 4);
        assert_eq!(nice_top(9), 12);
    }

    #[test]
    fn age_bands_follow_the_policy_and_count_every_age_once() {
        let bands = age_bands(90, 100, 110);
        assert_eq!(
            bands,
            [
                (0, Some(30)),
                (30, Some(60)),
                (60, Some(90)),
                (90, Some(100)),
                (100, Some(110)),
                (110, None)
            ]
        );
        let counts = count_in_bands(&bands, [0, 29, 30, 95, 100, 109, 110, 4000]);
        assert_eq!(counts, [2, 1, 0, 1, 2, 2]);
        let svg = ages_svg(&bands, &counts, &[1, 0, 0, 0, 0, 0]);
        assert!(
            svg.contains("110+ days") && svg.contains("90–99 days"),
            "{svg}"
        );
        assert_eq!(
            svg.matches("<rect").count(),
            2 * 6 + 2,
            "two bars a band and the legend"
        );
    }
}
