//! An SVG chart of progress over time: the share of users finished against
//! simulated seconds, one line per shape.

use std::fmt::Write;

use super::report::Report;

const W: f64 = 720.0;
const H: f64 = 360.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 40.0;
const COLOURS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];

/// The chart of `reports` (each `finished_at` over its `users`).
pub fn svg(title: &str, reports: &[&Report]) -> String {
    let end = reports
        .iter()
        .filter_map(|r| r.finished_at.last())
        .copied()
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
        let _ = writeln!(
            out,
            r##"<text x="{lx}" y="{ly}" fill="{colour}">{name}: {done} of {users} in {s:.0} s</text>"##,
            lx = LEFT + 10.0,
            ly = 40.0 + 16.0 * i as f64,
            name = r.shape,
            done = r.finished_at.len(),
            users = r.users,
            s = r.sweep_seconds,
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
