//! An SVG chart of progress over time: the share of users finished against
//! simulated seconds, one line per shape, and a dashed tail to the sweep's
//! end where emails went out after the last result.

use std::fmt::Write;

use super::report::Report;

const W: f64 = 720.0;
const H: f64 = 360.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 40.0;
const COLOURS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];

/// The chart of `reports` (each `finished_at` over its `users`), as long as
/// the longest sweep.
pub fn svg(title: &str, reports: &[&Report]) -> String {
    let end = reports
        .iter()
        .map(|r| {
            r.finished_at
                .last()
                .copied()
                .unwrap_or(0.0)
                .max(r.sweep_seconds)
        })
        .fold(1.0_f64, f64::max);
    let x = |t: f64| LEFT + (W - LEFT - 20.0) * t / end;
    let y = |share: f64| (H - BOTTOM) - (H - BOTTOM - 30.0) * share;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="18" font-size="14">{title}</text>
<line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/>
<line x1="{LEFT}" y1="30" x2="{LEFT}" y2="{b}" stroke="black"/>
"##,
        b = H - BOTTOM,
        r = W - 20.0,
        title = escape(title),
    );
    for i in 0..=4 {
        let share = i as f64 / 4.0;
        let _ = writeln!(
            out,
            r##"<text x="{tx}" y="{ty}" text-anchor="end">{p}%</text><line x1="{LEFT}" y1="{ty0}" x2="{r}" y2="{ty0}" stroke="#ddd"/>"##,
            tx = LEFT - 6.0,
            ty = y(share) + 4.0,
            ty0 = y(share),
            r = W - 20.0,
            p = (share * 100.0) as u32,
        );
        let t = end * share;
        let _ = writeln!(
            out,
            r##"<text x="{tx}" y="{ty}" text-anchor="middle">{t:.0} s</text>"##,
            tx = x(t),
            ty = H - BOTTOM + 16.0,
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{cx}" y="{cy}" text-anchor="middle">simulated seconds</text>"##,
        cx = LEFT + (W - LEFT) / 2.0,
        cy = H - 6.0,
    );
    let mut legend = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let n = r.finished_at.len().max(1);
        let step = n.div_ceil(400).max(1);
        let mut points = format!("{:.1},{:.1}", x(0.0), y(0.0));
        for (k, t) in r.finished_at.iter().enumerate() {
            if k % step == 0 || k + 1 == n {
                let share = (k + 1) as f64 / r.users.max(1) as f64;
                let _ = write!(points, " {:.1},{:.1}", x(*t), y(share));
            }
        }
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>"##
        );
        let last = r.finished_at.last().copied().unwrap_or(0.0);
        if r.sweep_seconds > last + 0.5 {
            // The sweep ends with the last email, later than the last
            // result: dash the wait so that the chart ends where the
            // sweep does.
            let share = r.finished_at.len() as f64 / r.users.max(1) as f64;
            let _ = writeln!(
                out,
                r##"<line x1="{x1:.1}" y1="{y0:.1}" x2="{x2:.1}" y2="{y0:.1}" stroke="{colour}" stroke-width="2" stroke-dasharray="6 4"/><text x="{x2:.1}" y="{ty:.1}" text-anchor="end" fill="{colour}">last email at {s:.0} s</text>"##,
                x1 = x(last),
                x2 = x(r.sweep_seconds),
                y0 = y(share),
                ty = y(share) + 16.0 + 14.0 * i as f64,
                s = r.sweep_seconds,
            );
        }
        let unsent = match r.digests_unsent {
            0 => String::new(),
            n => format!(", {n} emails never sent"),
        };
        legend.push((
            colour,
            format!(
                "{name}: {done} of {users} in {s:.0} s{unsent}",
                name = r.shape,
                done = r.finished_at.len(),
                users = r.users,
                s = r.sweep_seconds,
            ),
        ));
    }
    // The legend at the bottom right, which the rising curves leave empty.
    let n = legend.len();
    for (i, (colour, text)) in legend.into_iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="{lx}" y="{ly}" text-anchor="end" fill="{colour}">{text}</text>"##,
            lx = W - 26.0,
            ly = H - BOTTOM - 12.0 - 16.0 * (n - 1 - i) as f64,
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(finished_at: Vec<f64>, sweep_seconds: f64) -> Report {
        Report {
            shape: "keyrotor",
            users: finished_at.len(),
            finished_at,
            sweep_seconds,
            ..Report::default()
        }
    }

    #[test]
    fn the_axis_runs_to_the_last_email_and_the_wait_is_dashed() {
        let r = report(vec![1.0, 2.0, 40.0], 100.0);
        let chart = svg("t", &[&r]);
        assert!(chart.contains(">100 s</text>"), "{chart}");
        assert!(chart.contains("last email at 100 s"), "{chart}");
        assert!(chart.contains("stroke-dasharray"), "{chart}");
    }

    #[test]
    fn the_legend_counts_the_emails_never_sent() {
        let sent = report(vec![1.0, 2.0], 2.0);
        let dropped = Report {
            digests_unsent: 3,
            ..report(vec![1.0, 2.0], 90.0)
        };
        assert!(!svg("t", &[&sent]).contains("never sent"));
        assert!(svg("t", &[&dropped]).contains("in 90 s, 3 emails never sent</text>"));
    }

    #[test]
    fn a_sweep_ending_with_its_last_result_has_no_tail() {
        let r = report(vec![1.0, 2.0, 40.0], 40.0);
        let chart = svg("t", &[&r]);
        assert!(chart.contains(">40 s</text>"), "{chart}");
        assert!(!chart.contains("last email"), "{chart}");
    }
}
