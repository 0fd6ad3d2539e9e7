//! `tessera stats --html FILE`: one self-contained page of a [`StatsReport`] — inline SVG
//! charts drawn with plotters, and tables of the exact figures — with no script and nothing
//! fetched at view time. Every byte count in a table cell is also in its `data-bytes`
//! attribute, so a test (or a script) can read the figures back.

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use tessera::stats::{FileFigure, StatsReport};

use crate::output::size;

const BLUE: RGBColor = RGBColor(0x4e, 0x79, 0xa7);
const ORANGE: RGBColor = RGBColor(0xf2, 0x8e, 0x2b);
const GREEN: RGBColor = RGBColor(0x59, 0xa1, 0x4f);

/// One series of a bar chart: its name, colour and a value per category.
struct Series<'a> {
    name: &'a str,
    color: RGBColor,
    values: Vec<u64>,
}

pub fn page(r: &StatsReport) -> Result<String> {
    let s = &r.store;
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Tessera store: dedup and sharing</title><style>\
         body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}\
         table{border-collapse:collapse;margin:1em 0}\
         td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
         td:first-child,th:first-child{text-align:left}\
         svg{display:block;margin:1em 0}</style></head><body>\n",
    );
    html += "<h1>Tessera store: dedup and sharing</h1>\n";
    html += &format!(
        "<p>{} images, {} containers, {} files in their views; block size {}. Logical \
         {} in {} of distinct blocks referenced: dedup ratio <b id=\"dedup\">{:.2}×</b>. \
         Stored {} (compression {}, {:.2}×) in {} of packs; pending reclaim {}.</p>\n",
        s.images,
        s.containers,
        s.files,
        size(r.block_size as u64),
        bytes_span(s.logical_bytes),
        bytes_span(s.referenced_bytes),
        s.dedup_ratio,
        bytes_span(s.stored_block_bytes),
        escape(&s.compression),
        s.compression_ratio,
        bytes_span(s.pack_bytes),
        bytes_span(s.reclaimable_bytes),
    );

    html += "<h2>Blocks by the number of layers sharing them</h2>\n";
    let labels: Vec<String> = r.sharing.iter().map(|b| b.layers.to_string()).collect();
    let series = [Series {
        name: "bytes of blocks",
        color: BLUE,
        values: r.sharing.iter().map(|b| b.bytes).collect(),
    }];
    html += &bar_chart("sharing", &labels, &series, "layers sharing a block")?;
    let rows: Vec<Vec<String>> = r
        .sharing
        .iter()
        .map(|b| {
            vec![
                b.layers.to_string(),
                b.blocks.to_string(),
                bytes_span(b.bytes),
            ]
        })
        .collect();
    html += &table(&["layers", "blocks", "bytes"], &rows);

    html += "<h2>Logical and stored bytes per image and container</h2>\n";
    let owners = &r.owners;
    let labels: Vec<String> = owners.iter().map(|o| o.name.clone()).collect();
    let series = [
        Series {
            name: "logical (file sizes)",
            color: BLUE,
            values: owners.iter().map(|o| o.logical_bytes).collect(),
        },
        Series {
            name: "blocks referenced",
            color: ORANGE,
            values: owners.iter().map(|o| o.referenced_bytes).collect(),
        },
        Series {
            name: "of those, its own (exclusive)",
            color: GREEN,
            values: owners.iter().map(|o| o.exclusive_bytes).collect(),
        },
    ];
    html += &bar_chart("owners", &labels, &series, "")?;
    let rows: Vec<Vec<String>> = owners
        .iter()
        .map(|o| {
            vec![
                format!("{} {}", o.kind, escape(&o.name)),
                o.files.to_string(),
                bytes_span(o.logical_bytes),
                bytes_span(o.referenced_bytes),
                bytes_span(o.stored_bytes),
                bytes_span(o.exclusive_bytes),
                bytes_span(o.shared_bytes),
            ]
        })
        .collect();
    html += &table(
        &[
            "",
            "files",
            "logical",
            "referenced",
            "stored (compressed)",
            "exclusive",
            "shared",
        ],
        &rows,
    );

    html += "<h2>Copy-up: block-level versus whole-file, per container</h2>\n";
    let containers: Vec<_> = owners.iter().filter(|o| o.kind == "container").collect();
    if containers.is_empty() {
        html += "<p>No containers.</p>\n";
    } else {
        let labels: Vec<String> = containers.iter().map(|o| o.name.clone()).collect();
        let series = [
            Series {
                name: "Tessera copy-up",
                color: GREEN,
                values: containers.iter().map(|o| o.copied_up_bytes).collect(),
            },
            Series {
                name: "whole-file copy-up (overlayfs)",
                color: ORANGE,
                values: containers
                    .iter()
                    .map(|o| o.whole_file_copy_up_bytes)
                    .collect(),
            },
        ];
        html += &bar_chart("copy-up", &labels, &series, "")?;
        let rows: Vec<Vec<String>> = containers
            .iter()
            .map(|o| {
                vec![
                    escape(&o.name),
                    o.copied_up_files.to_string(),
                    bytes_span(o.copied_up_bytes),
                    bytes_span(o.whole_file_copy_up_bytes),
                ]
            })
            .collect();
        html += &table(
            &["container", "files copied up", "Tessera", "whole-file"],
            &rows,
        );
    }

    for (title, files) in [
        ("Top files by shared bytes", &r.top_shared_files),
        ("Top files by copied-up bytes", &r.top_copied_up_files),
    ] {
        html += &format!("<h2>{title}</h2>\n");
        html += &files_table(files);
    }
    html += "</body></html>\n";
    Ok(html)
}

/// A grouped bar chart as an inline `<svg>`: one group per category, one bar per series.
fn bar_chart(id: &str, categories: &[String], series: &[Series], x_desc: &str) -> Result<String> {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let (unit, scale) = unit_for(max);
    // Room above the bars for the legend, when there is one.
    let headroom = if series.len() > 1 { 1.5 } else { 1.1 };
    let n = categories.len().max(1) as f64;
    let width = (160 + 90 * categories.len().max(2)).min(1400) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 360)).into_drawing_area();
        let fail = |e: &dyn std::fmt::Debug| anyhow!("drawing the {id} chart: {e:?}");
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(if x_desc.is_empty() { 36 } else { 56 })
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..n, 0f64..max as f64 / scale * headroom)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc(x_desc)
            .y_desc(unit)
            .draw()
            .map_err(|e| fail(&e))?;
        let width = 0.8 / series.len() as f64;
        for (j, s) in series.iter().enumerate() {
            let color = s.color;
            let bars = s.values.iter().enumerate().map(move |(i, v)| {
                let x = i as f64 + 0.1 + j as f64 * width;
                Rectangle::new([(x, 0.0), (x + width, *v as f64 / scale)], color.filled())
            });
            chart
                .draw_series(bars)
                .map_err(|e| fail(&e))?
                .label(s.name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        let style = ("sans-serif", 13)
            .into_font()
            .into_text_style(&root)
            .pos(Pos::new(HPos::Center, VPos::Top));
        let labels = categories.iter().enumerate().map(|(i, c)| {
            let text: String = c.chars().take(16).collect();
            EmptyElement::at((i as f64 + 0.5, 0.0)) + Text::new(text, (0, 6), style.clone())
        });
        chart.draw_series(labels).map_err(|e| fail(&e))?;
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    // The backend's own <svg> opening tag, given an id for the page's readers.
    Ok(svg.replacen("<svg ", &format!("<svg id=\"chart-{id}\" "), 1) + "\n")
}

/// The unit a chart's axis shows for values up to `max`, and its size in bytes.
fn unit_for(max: u64) -> (&'static str, f64) {
    const UNITS: [(&str, u32); 4] = [("GiB", 30), ("MiB", 20), ("KiB", 10), ("bytes", 0)];
    UNITS
        .into_iter()
        .find(|(_, shift)| max >= 1u64 << shift)
        .map_or(("bytes", 1.0), |(unit, shift)| {
            (unit, (1u64 << shift) as f64)
        })
}

fn files_table(files: &[FileFigure]) -> String {
    if files.is_empty() {
        return "<p>None.</p>\n".into();
    }
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|f| {
            vec![
                escape(&f.path),
                escape(&f.owner),
                bytes_span(f.size),
                bytes_span(f.bytes),
                bytes_span(f.whole_file_bytes),
            ]
        })
        .collect();
    table(&["path", "in", "size", "bytes", "whole-file"], &rows)
}

/// A table whose cells are already HTML.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><tr>");
    for h in header {
        out += &format!("<th>{h}</th>");
    }
    out += "</tr>\n";
    for row in rows {
        out += "<tr>";
        for cell in row {
            out += &format!("<td>{cell}</td>");
        }
        out += "</tr>\n";
    }
    out + "</table>\n"
}

fn bytes_span(bytes: u64) -> String {
    format!(
        "<span data-bytes=\"{bytes}\" title=\"{bytes} bytes\">{}</span>",
        size(bytes)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera::stats::{OwnerFigures, SharingBucket};

    #[test]
    fn the_page_holds_a_chart_per_section_and_every_figure() {
        let r = StatsReport {
            sharing: vec![SharingBucket {
                layers: 2,
                blocks: 3,
                bytes: 196_608,
            }],
            owners: vec![OwnerFigures {
                kind: "container".into(),
                name: "web<1>".into(),
                logical_bytes: 5 << 30,
                copied_up_bytes: 65_536,
                whole_file_copy_up_bytes: 4 << 30,
                ..OwnerFigures::default()
            }],
            ..StatsReport::default()
        };
        let html = page(&r).unwrap();
        for id in ["chart-sharing", "chart-owners", "chart-copy-up"] {
            assert!(html.contains(&format!("<svg id=\"{id}\"")), "{id}");
        }
        for bytes in [196_608u64, 5 << 30, 65_536, 4 << 30] {
            assert!(html.contains(&format!("data-bytes=\"{bytes}\"")), "{bytes}");
        }
        assert!(html.contains("web&lt;1&gt;") && !html.contains("web<1>"));
        // Self-contained: nothing to run, nothing to fetch.
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    }
}
