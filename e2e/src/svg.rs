//! A hand-written SVG chart of a scenario: a time axis, the writer's commits per 250 ms as
//! bars (gaps show the outage), and the timeline's key events as labelled markers.

use std::fmt::Write;

use crate::report::ScenarioReport;

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const BARS_TOP: f64 = 40.0;
const BARS_HEIGHT: f64 = 120.0;
const BUCKET_MS: u64 = 250;

/// Events worth a marker (the rest stay in the JSON).
const MARKED: &[&str] = &[
    "fault_injected",
    "failing_detected",
    "fenced",
    "promoted",
    "service_switched",
    "job_failed",
    "in_sync",
    "out_of_sync",
    "failback",
    "active_changed",
    "operator_restarted",
    "failover_recorded",
    "rejoin_started",
    "rejoin_finished",
    "sync_started",
    "sync_finished",
    "failover_started",
    "switchover_started",
    "check_recorded",
    "drift_introduced",
    "switchover_requested",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(kind: &str) -> &'static str {
    match kind {
        "fault_injected" | "job_failed" | "out_of_sync" | "operator_restarted" => "#c0392b",
        "in_sync" | "job_succeeded" | "failback" => "#27ae60",
        "service_switched" | "active_changed" => "#2980b9",
        _ => "#7f8c8d",
    }
}

/// The chart.
pub fn render(r: &ScenarioReport) -> String {
    let end = r
        .timeline
        .iter()
        .map(|e| e.t_ms)
        .chain(r.acks.iter().map(|a| a.t_ms))
        .max()
        .unwrap_or(1)
        .max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: u64| LEFT + plot_w * (t as f64) / (end as f64);
    let marked: Vec<_> = r
        .timeline
        .iter()
        .filter(|e| MARKED.contains(&e.kind.as_str()))
        .collect();
    let labels_top = BARS_TOP + BARS_HEIGHT + 40.0;
    let height = labels_top + 16.0 * marked.len() as f64 + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{} — {} — recovery {} ms, lost {} , in sync after {} ms</text>"#,
        esc(&r.scenario),
        if r.passed { "passed" } else { "FAILED" },
        r.recovery_ms.map(|v| v.to_string()).unwrap_or("-".into()),
        r.lost_acknowledged,
        r.in_sync_ms.map(|v| v.to_string()).unwrap_or("-".into()),
    );
    // Commits per bucket.
    let buckets = (end / BUCKET_MS + 1) as usize;
    let mut counts = vec![0u32; buckets];
    for a in &r.acks {
        counts[(a.t_ms / BUCKET_MS) as usize] += 1;
    }
    let peak = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bw = (plot_w / buckets as f64).max(0.5);
    for (i, c) in counts.iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let h = BARS_HEIGHT * (*c as f64) / peak;
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.2}" height="{:.1}" fill="#95a5a6"/>"##,
            x(i as u64 * BUCKET_MS),
            BARS_TOP + BARS_HEIGHT - h,
            bw,
            h
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="5" y="{:.0}">commits</text><text x="5" y="{:.0}">/{BUCKET_MS} ms</text>"#,
        BARS_TOP + 12.0,
        BARS_TOP + 24.0
    );
    // Axis.
    let axis_y = BARS_TOP + BARS_HEIGHT;
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="black"/>"#,
        WIDTH - RIGHT
    );
    let step = [1000u64, 2000, 5000, 10000, 20000, 30000, 60000]
        .into_iter()
        .find(|s| end / s <= 12)
        .unwrap_or(120000);
    let mut t = 0;
    while t <= end {
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" y1="{axis_y}" x2="{0:.1}" y2="{1}" stroke="black"/><text x="{0:.1}" y="{2}" text-anchor="middle">{3}s</text>"#,
            x(t),
            axis_y + 5.0,
            axis_y + 17.0,
            t / 1000
        );
        t += step;
    }
    // Markers and their labels, one line each.
    for (i, e) in marked.iter().enumerate() {
        let ly = labels_top + 16.0 * i as f64;
        let c = color(&e.kind);
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" y1="{BARS_TOP}" x2="{0:.1}" y2="{1:.1}" stroke="{c}" stroke-width="1" stroke-dasharray="3,2" opacity="0.7"/>"#,
            x(e.t_ms),
            ly - 4.0
        );
        let detail: String = e.detail.chars().take(110).collect();
        // Labels right of the middle hang to the left of their marker.
        let (tx, anchor) = if x(e.t_ms) > WIDTH * 0.55 {
            (x(e.t_ms) - 5.0, "end")
        } else {
            (x(e.t_ms) + 5.0, "start")
        };
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/><text x="{:.1}" y="{:.1}" fill="{c}" text-anchor="{anchor}">{:.1}s {} — {}</text>"#,
            x(e.t_ms),
            ly - 4.0,
            tx,
            ly,
            e.t_ms as f64 / 1000.0,
            esc(&e.kind),
            esc(&detail)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Event;
    use crate::writer::Ack;

    #[test]
    fn renders_bars_markers_and_escapes() {
        let mut r = ScenarioReport::setup_failed("primary-crash", "x".into());
        r.acks = (0..100)
            .map(|i| Ack {
                id: i,
                t_ms: i as u64 * 20,
            })
            .collect();
        r.timeline = vec![Event {
            t_ms: 1000,
            kind: "fault_injected".into(),
            detail: "SIGKILL <primary> & co".into(),
        }];
        let svg = render(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("fault_injected"));
        assert!(svg.contains("&lt;primary&gt; &amp; co"));
        assert!(svg.matches("<rect").count() > 5);
    }
}
