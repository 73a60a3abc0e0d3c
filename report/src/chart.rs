//! The report's chart: the timeline's request rate and p95 latency (per
//! local day, or per hour under two days) as an SVG with two y axes, titled
//! in the report's language. Written by hand; it is two polylines.

use std::fmt::Write;

use super::model::Report;
use super::time::Zone;
use super::Lang;

const W: f64 = 720.0;
const H: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 60.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

fn polyline(points: &[(usize, f64)], n: usize, max: f64, color: &str) -> String {
    let x = |i: usize| LEFT + (W - LEFT - RIGHT) * i as f64 / (n.max(2) - 1) as f64;
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v / max);
    let coords: Vec<String> = points
        .iter()
        .map(|(i, v)| format!("{:.1},{:.1}", x(*i), y(*v)))
        .collect();
    format!(
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
        coords.join(" ")
    )
}

/// The axis top: the data's maximum rounded up to a step of 1, 1.2, 1.5,
/// 2, 2.5, 3, 4, 5, 6 or 8 of its power of ten, so the line uses most of
/// the height (5.3 tops out at 6, not 10).
fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|m| *m >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * mag)
}

pub fn svg(r: &Report, lang: Lang, zone: &Zone) -> String {
    let daily = &r.timeline;
    let n = daily.len();
    let hourly = r.timeline_resolution == "hour";
    let rps: Vec<(usize, f64)> = daily
        .iter()
        .enumerate()
        .filter(|(_, d)| d.requests > 0.0)
        .map(|(i, d)| (i, d.requests_per_second))
        .collect();
    let p95: Vec<(usize, f64)> = daily
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.p95.map(|e| (i, e.seconds)))
        .collect();
    let title = match (lang, hourly) {
        (Lang::En, false) => {
            "Daily requests/s (blue, left) and p95 latency in seconds (orange, right)"
        }
        (Lang::En, true) => {
            "Hourly requests/s (blue, left) and p95 latency in seconds (orange, right)"
        }
        (Lang::Zh, false) => "每日每秒请求数 (蓝色，左轴) 与 P95 响应时间，秒 (橙色，右轴)",
        (Lang::Zh, true) => "每小时每秒请求数 (蓝色，左轴) 与 P95 响应时间，秒 (橙色，右轴)",
    };
    let rps_max = nice_max(rps.iter().map(|p| p.1).fold(0.0, f64::max));
    let p95_max = nice_max(p95.iter().map(|p| p.1).fold(0.0, f64::max));
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\">{title}</text>\n\
         <line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>\n",
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM
    );
    for k in 0..=4 {
        let frac = k as f64 / 4.0;
        let y = TOP + (H - TOP - BOTTOM) * (1.0 - frac);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\n\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#1f77b4\">{}</text>\n\
             <text x=\"{}\" y=\"{:.1}\" fill=\"#ff7f0e\">{}</text>\n",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            trim(rps_max * frac),
            W - RIGHT + 6.0,
            y + 4.0,
            trim(p95_max * frac),
        );
    }
    for (i, d) in daily.iter().enumerate() {
        if n > 10 && i % (n / 8).max(1) != 0 {
            continue;
        }
        let x = LEFT + (W - LEFT - RIGHT) * i as f64 / (n.max(2) - 1) as f64;
        let when = zone.minute(d.start);
        let label = if hourly { &when[11..] } else { &when[5..10] };
        let _ = writeln!(
            s,
            "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            H - BOTTOM + 16.0,
        );
    }
    s.push_str(&polyline(&rps, n, rps_max, "#1f77b4"));
    s.push_str(&polyline(&p95, n, p95_max, "#ff7f0e"));
    s.push_str("</svg>\n");
    s
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::nice_max;

    #[test]
    fn the_axis_tops_out_near_the_data() {
        assert_eq!(nice_max(5.3), 6.0);
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(0.42), 0.5);
        assert_eq!(nice_max(1.1), 1.2);
        assert_eq!(nice_max(0.0), 1.0);
    }
}
