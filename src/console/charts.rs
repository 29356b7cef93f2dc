//! The statistics page's charts as SVG drawn here, on the server: bars (alarms by kind, by
//! outcome), the answer-time distribution with the targets' lines, and the weekday by hour
//! heat map. No script, no style sheet, no font or image from elsewhere: presentation
//! attributes only, so the page shows them as images (`data:` URLs, which its CSP allows).
//! Every text is given worded (the caller's catalogue) and escaped here.

use std::fmt::Write;

/// Width of every chart, in user units.
const WIDTH: u32 = 640;

const INK: &str = "#1f2933";
const MUTED: &str = "#52606d";
const BAR: &str = "#2f6f9f";
const GRID: &str = "#d9e2ec";
const MET: &str = "#2f855a";
const MISSED: &str = "#c53030";

/// Text for XML: `&`, `<`, `>`, `"` and `'` escaped, control characters dropped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn open(out: &mut String, height: u32, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" \
         width=\"{WIDTH}\" height=\"{height}\" role=\"img\" font-family=\"sans-serif\" \
         font-size=\"12\" fill=\"{INK}\"><title>{}</title>\
         <rect width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>\
         <text x=\"8\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        escape(title),
        escape(title)
    );
}

/// Shortens a label to `max` characters (an ellipsis at the end).
fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Horizontal bars, one a row, in the order given: `rows` are (label, count); `empty` is
/// said when there are none.
pub fn bars(title: &str, rows: &[(String, usize)], empty: &str) -> String {
    let row_h = 22;
    let top = 30;
    let height = top + row_h * u32::try_from(rows.len().max(1)).unwrap_or(1) + 8;
    let mut out = String::new();
    open(&mut out, height, title);
    if rows.is_empty() {
        let _ = write!(
            out,
            "<text x=\"8\" y=\"{}\" fill=\"{MUTED}\">{}</text>",
            top + 15,
            escape(empty)
        );
    }
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let (label_w, bar_w) = (200u32, WIDTH - 200 - 60);
    for (i, (label, n)) in rows.iter().enumerate() {
        let y = top + row_h * u32::try_from(i).unwrap_or(0);
        let w = (bar_w as usize * n / max) as u32;
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{}\" width=\"{w}\" height=\"{}\" fill=\"{BAR}\"/>\
             <text x=\"{}\" y=\"{}\">{n}</text>",
            label_w - 8,
            y + 15,
            escape(&short(label, 30)),
            y + 3,
            row_h - 6,
            label_w + w + 6,
            y + 15,
        );
    }
    out.push_str("</svg>");
    out
}

/// A target's line on the distribution: between bar `after` and the next, with its words
/// and whether it was met.
pub struct Target {
    /// The bar the line follows (0-based).
    pub after: usize,
    /// What it says (`≤ 60 s: 57,1 % (target 97,5 %)`).
    pub label: String,
    /// Met or not (none: nothing to judge yet).
    pub met: Option<bool>,
}

/// Vertical bars of a distribution (`bars`: label, count) with the targets' lines.
pub fn distribution(
    title: &str,
    bars: &[(String, usize)],
    targets: &[Target],
    empty: &str,
) -> String {
    let height = 280;
    let (left, top, bottom) = (40u32, 90u32, 240u32);
    let n = u32::try_from(bars.len().max(1)).unwrap_or(1);
    let slot = (WIDTH - left - 16) / n;
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0);
    let mut out = String::new();
    open(&mut out, height, title);
    let _ = write!(
        out,
        "<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\" stroke=\"{GRID}\"/>",
        WIDTH - 16
    );
    if max == 0 {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"{MUTED}\">{}</text>",
            left + 8,
            bottom - 20,
            escape(empty)
        );
    }
    for (i, (label, count)) in bars.iter().enumerate() {
        let x = left + slot * u32::try_from(i).unwrap_or(0);
        let h = ((bottom - top) as usize * count)
            .checked_div(max)
            .map_or(0, |h| u32::try_from(h).unwrap_or(0));
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{h}\" fill=\"{BAR}\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{count}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{MUTED}\">{}</text>",
            x + 6,
            bottom - h,
            slot - 12,
            x + slot / 2,
            bottom - h - 4,
            x + slot / 2,
            bottom + 16,
            escape(label),
        );
    }
    for (i, t) in targets.iter().enumerate() {
        let x = left + slot * u32::try_from(t.after + 1).unwrap_or(0);
        let colour = match t.met {
            Some(true) => MET,
            Some(false) => MISSED,
            None => MUTED,
        };
        // The line from above the bars to the axis, its words in the legend at the top.
        let y = 38 + 16 * u32::try_from(i).unwrap_or(0);
        let _ = write!(
            out,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{bottom}\" stroke=\"{colour}\" \
             stroke-width=\"2\" stroke-dasharray=\"5 3\"/>\
             <line x1=\"8\" y1=\"{}\" x2=\"28\" y2=\"{}\" stroke=\"{colour}\" \
             stroke-width=\"2\" stroke-dasharray=\"5 3\"/>\
             <text x=\"34\" y=\"{y}\" fill=\"{colour}\">{}</text>",
            top - 14,
            y - 4,
            y - 4,
            escape(&t.label),
        );
    }
    out.push_str("</svg>");
    out
}

/// The heat map: `rows` (a weekday each, worded) of 24 hourly counts; darker is more.
pub fn heat(title: &str, days: &[String], grid: &[Vec<usize>]) -> String {
    let (left, top, cell_w, cell_h) = (48u32, 44u32, 24u32, 22u32);
    let height = top + cell_h * 7 + 10;
    let max = grid.iter().flatten().copied().max().unwrap_or(0).max(1);
    let mut out = String::new();
    open(&mut out, height, title);
    for h in (0..24u32).step_by(3) {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"{MUTED}\" text-anchor=\"middle\">{h:02}</text>",
            left + cell_w * h + cell_w / 2,
            top - 6
        );
    }
    for (d, (day, hours)) in days.iter().zip(grid).enumerate() {
        let y = top + cell_h * u32::try_from(d).unwrap_or(0);
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 6,
            y + 15,
            escape(&short(day, 5))
        );
        for (h, n) in hours.iter().enumerate() {
            let x = left + cell_w * u32::try_from(h).unwrap_or(0);
            let opacity = if *n == 0 {
                0.0
            } else {
                0.15 + 0.85 * (*n as f64) / (max as f64)
            };
            let _ = write!(
                out,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{GRID}\"/>",
                cell_w - 2,
                cell_h - 2
            );
            if *n > 0 {
                let text = if opacity > 0.55 { "#ffffff" } else { INK };
                let _ = write!(
                    out,
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"{BAR}\" \
                     fill-opacity=\"{opacity:.2}\"/>\
                     <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" \
                     fill=\"{text}\">{n}</text>",
                    cell_w - 2,
                    cell_h - 2,
                    x + cell_w / 2 - 1,
                    y + 14,
                );
            }
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SVG parses as XML (every element closed, every text escaped) with one root.
    fn well_formed(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(at) = rest.find('<') {
            let text = &rest[..at];
            assert!(!text.contains('>'), "{text}");
            for (i, _) in text.match_indices('&') {
                let entity = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"];
                assert!(entity.iter().any(|e| text[i..].starts_with(e)), "{text}");
            }
            let end = rest[at..].find('>').expect("tag closed") + at;
            let tag = &rest[at + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "{svg}");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().unwrap().to_owned();
                stack.push(name);
            }
            rest = &rest[end + 1..];
            if stack.is_empty() {
                assert!(rest.is_empty(), "one root");
            }
        }
        assert!(stack.is_empty(), "{stack:?}");
    }

    #[test]
    fn bars_scale_to_the_largest_and_escape_their_words() {
        let svg = bars(
            "Larm <per> slag",
            &[("Fall & fel".into(), 4), ("Brand".into(), 2)],
            "inga",
        );
        well_formed(&svg);
        assert!(svg.contains("<title>Larm &lt;per&gt; slag</title>"));
        assert!(svg.contains(">Fall &amp; fel</text>"));
        // The largest bar takes the whole width (380), the other half of it.
        assert!(svg.contains("width=\"380\""), "{svg}");
        assert!(svg.contains("width=\"190\""), "{svg}");
        assert!(svg.contains(">4</text>") && svg.contains(">2</text>"));
        let none = bars("Larm", &[], "Inga larm");
        well_formed(&none);
        assert!(none.contains(">Inga larm</text>"));
    }

    #[test]
    fn the_distribution_draws_its_targets() {
        let svg = distribution(
            "Svarstider",
            &[
                ("≤ 60 s".into(), 3),
                ("≤ 180 s".into(), 1),
                ("> 180 s".into(), 0),
            ],
            &[
                Target {
                    after: 0,
                    label: "60 s: 75,0 % (mål 97,5 %)".into(),
                    met: Some(false),
                },
                Target {
                    after: 1,
                    label: "180 s: 100,0 % (mål 99,0 %)".into(),
                    met: Some(true),
                },
            ],
            "inga",
        );
        well_formed(&svg);
        assert!(svg.contains(&format!("stroke=\"{MISSED}\"")));
        assert!(svg.contains(&format!("stroke=\"{MET}\"")));
        assert!(svg.contains(">60 s: 75,0 % (mål 97,5 %)</text>"));
        // The tallest bar is 150 high, the next a third of it.
        assert!(
            svg.contains("height=\"150\"") && svg.contains("height=\"50\""),
            "{svg}"
        );
    }

    #[test]
    fn the_heat_map_has_a_cell_an_hour_and_the_counts() {
        let mut grid = vec![vec![0usize; 24]; 7];
        grid[0][8] = 4;
        grid[6][23] = 1;
        let days: Vec<String> = ["mån", "tis", "ons", "tor", "fre", "lör", "sön"]
            .map(String::from)
            .to_vec();
        let svg = heat("Veckodag och timme", &days, &grid);
        well_formed(&svg);
        assert_eq!(svg.matches("fill=\"#d9e2ec\"").count(), 7 * 24);
        assert!(svg.contains("fill-opacity=\"1.00\""), "the largest is full");
        assert!(svg.contains(">4</text>") && svg.contains(">1</text>"));
        assert!(svg.contains(">sön</text>"));
    }

    #[test]
    fn escape_drops_control_characters() {
        assert_eq!(escape("a\u{7}b<'\""), "ab&lt;&apos;&quot;");
    }
}
