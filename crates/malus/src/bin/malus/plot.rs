//! Loss curves from a run's JSON-lines metrics, drawn to PNG. The font is embedded (DejaVu
//! Sans, see `assets/DejaVu-LICENSE.txt`) so plots render the same on machines without
//! system fonts or fontconfig.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail, ensure};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

const FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 800);

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const TRAIN_RAW: RGBColor = RGBColor(160, 196, 226);
const VAL: RGBColor = RGBColor(214, 39, 40);
const LR: RGBColor = RGBColor(44, 160, 44);
const GRID: RGBColor = RGBColor(232, 232, 232);

/// `(step, value)` points of one metric, sorted by step.
pub type Series = Vec<(f64, f64)>;

/// The series of a metrics file that have at least the step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curves {
    pub train_loss: Series,
    pub val_loss: Series,
    pub lr: Series,
    pub tokens_per_s: Series,
    pub loss_scale: Series,
    pub elapsed: Series,
}

impl Curves {
    fn series_mut(&mut self) -> [(&'static str, &mut Series); 6] {
        [
            ("train_loss", &mut self.train_loss),
            ("val_loss", &mut self.val_loss),
            ("lr", &mut self.lr),
            ("tokens_per_s", &mut self.tokens_per_s),
            ("loss_scale", &mut self.loss_scale),
            ("elapsed", &mut self.elapsed),
        ]
    }
}

/// Reads a JSON-lines metrics file: one object per line with a numeric `step`. A key missing
/// from a line (or not a finite number, e.g. a NaN written as `null`) is skipped for that
/// series. When a step appears twice (a run resumed from an earlier checkpoint) the later line
/// wins, so a resumed run plots as one curve.
pub fn read_metrics(path: &Path) -> Result<Curves> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading metrics {}", path.display()))?;
    let mut m = Curves::default();
    let mut records = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| anyhow!("{}: expected a JSON object", at()))?;
        let step = obj
            .get("step")
            .and_then(Value::as_f64)
            .ok_or_else(|| anyhow!("{}: no numeric \"step\"", at()))?;
        for (key, series) in m.series_mut() {
            if let Some(x) = obj.get(key).and_then(Value::as_f64).filter(|x| x.is_finite()) {
                series.push((step, x));
            }
        }
        records += 1;
    }
    ensure!(records > 0, "{}: no metrics (the file is empty)", path.display());
    for (_, s) in m.series_mut() {
        s.sort_by(|a, b| a.0.total_cmp(&b.0)); // stable: equal steps stay in file order
        let mut dedup: Series = Vec::with_capacity(s.len());
        for &p in s.iter() {
            match dedup.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => dedup.push(p),
            }
        }
        *s = dedup;
    }
    Ok(m)
}

/// Plots train and validation loss against step (and the learning rate in a lower panel when
/// the file has it) into a PNG at `out_png`, written atomically.
pub fn plot_metrics(jsonl: &Path, out_png: &Path) -> Result<()> {
    let m = read_metrics(jsonl)?;
    if m.train_loss.is_empty() && m.val_loss.is_empty() {
        bail!("{}: no train_loss or val_loss values to plot", jsonl.display());
    }
    register_font()?;
    let mut pixels = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        draw(&root, &m, &title(jsonl)).map_err(|e| anyhow!("drawing the plot: {e}"))?;
        root.present().map_err(|e| anyhow!("drawing the plot: {e}"))?;
    }
    let png = encode_png(&pixels, SIZE).context("encoding the PNG")?;
    malus::fsutil::write_atomic(out_png, &png)
}

fn register_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    ensure!(ok, "the embedded plot font could not be loaded");
    Ok(())
}

/// "Loss — run/metrics.jsonl": the run folder says which run the picture is of.
fn title(path: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let file = name(path).unwrap_or_default();
    match path.parent().and_then(name) {
        Some(dir) => format!("Loss — {dir}/{file}"),
        None => format!("Loss — {file}"),
    }
}

fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// A range padded by 5% on each side (or ±`unit` when flat), so curves don't touch the frame.
fn padded(values: impl Iterator<Item = f64>, unit: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        return (lo - unit, hi + unit);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// Centred moving average over about 1/25 of the run: shows the trend without the lag an
/// exponential average would add.
fn smooth(s: &Series) -> Series {
    let k = (s.len() / 50).clamp(1, 100);
    let mut prefix = vec![0.0];
    for p in s {
        prefix.push(prefix.last().unwrap() + p.1);
    }
    (0..s.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(k), (i + k + 1).min(s.len()));
            (s[i].0, (prefix[b] - prefix[a]) / (b - a) as f64)
        })
        .collect()
}

fn fmt_step(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let k = format!("{:.2}", v / 1000.0);
        format!("{}k", k.trim_end_matches('0').trim_end_matches('.'))
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Smoothing only helps when there are enough points to be noisy.
const SMOOTH_MIN_POINTS: usize = 30;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error + 'static>>;

/// The series labels of a chart, in its upper-right corner.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
) -> DrawResult<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .margin(12)
        .label_font((FAMILY, 17))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

fn draw(root: &Area, m: &Curves, title: &str) -> DrawResult<()> {
    root.fill(&WHITE)?;
    let root = root.titled(title, (FAMILY, 28))?;
    let all_steps = m.train_loss.iter().chain(&m.val_loss).chain(&m.lr).map(|p| p.0);
    let (x0, x1) = padded(all_steps, 1.0);
    let (loss_area, lr_area) = if m.lr.is_empty() {
        (root.clone(), None)
    } else {
        let h = root.dim_in_pixel().1;
        let (a, b) = root.split_vertically(h * 69 / 100);
        (a, Some(b))
    };
    let label = (FAMILY, 16);
    let axis = (FAMILY, 19);

    let (y0, y1) = padded(m.train_loss.iter().chain(&m.val_loss).map(|p| p.1), 0.5);
    let mut chart = ChartBuilder::on(&loss_area)
        .margin(12)
        .margin_right(28)
        .x_label_area_size(if lr_area.is_some() { 30 } else { 55 })
        .y_label_area_size(90)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(TRANSPARENT)
        .bold_line_style(GRID)
        .label_style(label)
        .axis_desc_style(axis)
        .y_desc("loss")
        .y_label_formatter(&|v| format!("{v:.2}"))
        .x_label_formatter(&|v| fmt_step(*v));
    if lr_area.is_none() {
        mesh.x_desc("step");
    }
    mesh.draw()?;

    let train = &m.train_loss;
    if train.len() >= SMOOTH_MIN_POINTS {
        chart
            .draw_series(LineSeries::new(train.iter().copied(), TRAIN_RAW.stroke_width(1)))?
            .label("train loss")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], TRAIN_RAW.stroke_width(2)));
        let s = smooth(train);
        let last = s.last().map_or(f64::NAN, |p| p.1);
        chart
            .draw_series(LineSeries::new(s, TRAIN.stroke_width(2)))?
            .label(format!("train loss, smoothed (last {last:.3})"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], TRAIN.stroke_width(3)));
    } else if !train.is_empty() {
        let last = train.last().map_or(f64::NAN, |p| p.1);
        chart
            .draw_series(LineSeries::new(train.iter().copied(), TRAIN.stroke_width(2)))?
            .label(format!("train loss (last {last:.3})"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], TRAIN.stroke_width(3)));
    }
    if let Some(&(_, last)) = m.val_loss.last() {
        chart
            .draw_series(LineSeries::new(m.val_loss.iter().copied(), VAL.stroke_width(2)))?
            .label(format!("validation loss (last {last:.3})"))
            .legend(|(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new([(0, 0), (24, 0)], VAL.stroke_width(2))
                    + Circle::new((12, 0), 5, VAL.filled())
            });
        // Markers show where evaluations happened, until so many that they merge into a band.
        let r = match m.val_loss.len() {
            0..=40 => 5,
            41..=120 => 3,
            _ => 0,
        };
        if r > 0 {
            chart.draw_series(m.val_loss.iter().map(|&p| Circle::new(p, r, VAL.filled())))?;
        }
    }
    legend(&mut chart)?;

    if let Some(area) = lr_area {
        let (_, hi) = padded(m.lr.iter().map(|p| p.1), 1e-4);
        let lo = m.lr.iter().map(|p| p.1).fold(0.0_f64, f64::min);
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .margin_right(28)
            .x_label_area_size(55)
            .y_label_area_size(90)
            .build_cartesian_2d(x0..x1, lo..hi)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID)
            .label_style(label)
            .axis_desc_style(axis)
            .y_labels(5)
            .x_desc("step")
            .y_desc("learning rate")
            .y_label_formatter(&|v| match v {
                0.0 => "0".into(),
                _ => format!("{v:.1e}"),
            })
            .x_label_formatter(&|v| fmt_step(*v))
            .draw()?;
        chart
            .draw_series(LineSeries::new(m.lr.iter().copied(), LR.stroke_width(2)))?
            .label("learning rate")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], LR.stroke_width(3)));
        legend(&mut chart)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("malus-plot-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Decodes a PNG into (width, height, RGB bytes).
    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// A run of `n` steps: noisy falling train loss, validation every 50 steps, warmup+cosine lr.
    fn write_run(path: &Path, n: usize) {
        let mut rng = malus::rng::Rng::new(1);
        let mut lines = Vec::new();
        for s in 0..=n {
            let t = s as f64 / n as f64;
            let loss = 2.0 + 3.5 * (-5.0 * t).exp() + rng.uniform(0.15) as f64;
            let lr = 3e-4 * (s as f64 / 50.0).min(1.0) * (0.55 + 0.45 * (t * std::f64::consts::PI).cos());
            lines.push(format!(
                r#"{{"step":{s},"train_loss":{loss},"lr":{lr},"tokens_per_s":12000.5,"elapsed":{t}}}"#
            ));
            if s % 50 == 0 {
                let val = 2.1 + 3.4 * (-5.0 * t).exp();
                lines.push(format!(r#"{{"step":{s},"val_loss":{val}}}"#));
            }
        }
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn plots_a_run_to_a_non_blank_png() {
        let d = dir("run");
        let jsonl = d.join("metrics.jsonl");
        write_run(&jsonl, 400);
        let m = read_metrics(&jsonl).unwrap();
        assert_eq!(m.train_loss.len(), 401);
        assert_eq!(m.val_loss.len(), 9);
        assert_eq!(m.lr.len(), 401);
        assert!(m.loss_scale.is_empty());
        let png = d.join("out/loss.png");
        plot_metrics(&jsonl, &png).unwrap();
        let (w, h, px) = decode(&png);
        assert_eq!((w, h), SIZE);
        let bg = &px[..3];
        let differ = px.chunks_exact(3).filter(|p| p != &bg).count();
        assert!(
            differ > (w * h / 50) as usize,
            "only {differ} non-background pixels"
        );
        // The curves' colours are there.
        let has = |c: RGBColor| px.chunks_exact(3).any(|p| p == [c.0, c.1, c.2]);
        assert!(has(TRAIN) && has(VAL) && has(LR));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn sparse_and_resumed_files() {
        let d = dir("sparse");
        let jsonl = d.join("m.jsonl");
        // No lr, a NaN written as null, a resumed run repeating step 2, blank lines.
        std::fs::write(
            &jsonl,
            "{\"step\":1,\"train_loss\":5.0}\n\n{\"step\":2,\"train_loss\":null}\n\
             {\"step\":3,\"train_loss\":4.0,\"val_loss\":4.2}\n{\"step\":2,\"train_loss\":4.5}\n",
        )
        .unwrap();
        let m = read_metrics(&jsonl).unwrap();
        assert_eq!(m.train_loss, vec![(1.0, 5.0), (2.0, 4.5), (3.0, 4.0)]);
        assert_eq!(m.val_loss, vec![(3.0, 4.2)]);
        let png = d.join("m.png");
        plot_metrics(&jsonl, &png).unwrap();
        assert_eq!(decode(&png).0, SIZE.0);
        // Only a validation point: still a (flat-range) plot.
        std::fs::write(&jsonl, "{\"step\":0,\"val_loss\":3.0}\n").unwrap();
        plot_metrics(&jsonl, &png).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let d = dir("bad");
        let jsonl = d.join("bad.jsonl");
        let png = d.join("bad.png");
        let err = |text: &str| {
            std::fs::write(&jsonl, text).unwrap();
            format!("{:#}", plot_metrics(&jsonl, &png).unwrap_err())
        };
        let e = err("{\"step\":1,\"train_loss\":3}\n{\"step\":2,\"train_loss\":\n");
        assert!(e.contains("bad.jsonl:2") && e.contains("not JSON"), "{e}");
        let e = err("{\"step\":1}\n[1,2]\n");
        assert!(e.contains("bad.jsonl:2: expected a JSON object"), "{e}");
        let e = err("{\"step\":1}\n\n{\"train_loss\":3}\n");
        assert!(e.contains("bad.jsonl:3: no numeric \"step\""), "{e}");
        let e = err("");
        assert!(e.contains("no metrics (the file is empty)"), "{e}");
        let e = err("{\"step\":1,\"lr\":0.1}\n");
        assert!(e.contains("no train_loss or val_loss"), "{e}");
        let e = format!("{:#}", plot_metrics(&d.join("missing.jsonl"), &png).unwrap_err());
        assert!(
            e.contains("reading metrics") && e.contains("missing.jsonl"),
            "{e}"
        );
        assert!(!png.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn step_labels() {
        assert_eq!(fmt_step(250.0), "250");
        assert_eq!(fmt_step(2.5), "2.5");
        assert_eq!(fmt_step(12_500.0), "12.5k");
        assert_eq!(fmt_step(1_250.0), "1.25k");
        assert_eq!(fmt_step(20_000.0), "20k");
    }
}
