//! Bar charts of the figures, drawn as SVG with plotters (no fonts or system libraries needed).

use std::path::Path;

use plotters::prelude::*;

const COLORS: [RGBColor; 4] =
    [RGBColor(0x4c, 0x72, 0xb0), RGBColor(0xdd, 0x84, 0x52), RGBColor(0x55, 0xa8, 0x68), RGBColor(0x81, 0x72, 0xb3)];

/// One bar per (group, series): `groups` along the x axis, each with one bar of every series.
pub fn grouped_bars(
    path: &Path,
    title: &str,
    y_label: &str,
    groups: &[&str],
    series: &[(&str, Vec<f64>)],
) -> anyhow::Result<()> {
    let max = series.iter().flat_map(|(_, values)| values.iter().copied()).fold(0.0_f64, f64::max).max(1e-9);
    let width = (180 * groups.len() as u32).max(560);
    let root = SVGBackend::new(path, (width, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..groups.len() as f64, 0.0..max * 1.18)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let index = x.floor() as usize;
            // Label each group once, at its centre.
            if (x - index as f64 - 0.5).abs() < 1e-6 {
                groups.get(index).map(|g| g.to_string()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .draw()?;
    let slot = 0.8 / series.len() as f64;
    for (s, (name, values)) in series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        chart
            .draw_series(values.iter().enumerate().map(|(g, v)| {
                let left = g as f64 + 0.1 + slot * s as f64;
                Rectangle::new([(left, 0.0), (left + slot * 0.92, *v)], color.filled())
            }))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        chart.draw_series(values.iter().enumerate().map(|(g, v)| {
            let centre = g as f64 + 0.1 + slot * (s as f64 + 0.46);
            Text::new(short(*v), (centre - slot * 0.3, v + max * 0.07), ("sans-serif", 12))
        }))?;
    }
    if series.len() > 1 {
        chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}

fn short(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
