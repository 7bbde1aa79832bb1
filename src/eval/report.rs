//! Benchmark tables: per category in percent with the mean row (like the paper's Tables
//! I/II), the same as JSON and CSV, and the ablation comparison (Table IV).

use std::fmt::Write as _;

use serde::Serialize;

use super::scoring::CategoryResult;

/// The mean of the present values (None if none).
fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2}", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// The mean row over categories.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MeanRow {
    pub pixel_auroc: Option<f64>,
    pub au_pro: Option<f64>,
    pub image_auroc: Option<f64>,
    pub image_f1_max: Option<f64>,
    pub pixel_f1_max: Option<f64>,
}

pub fn mean_row(results: &[CategoryResult]) -> MeanRow {
    MeanRow {
        pixel_auroc: mean(results.iter().map(|r| r.pixel_auroc)),
        au_pro: mean(results.iter().map(|r| r.au_pro)),
        image_auroc: mean(results.iter().map(|r| r.image_auroc)),
        image_f1_max: mean(results.iter().map(|r| r.image_f1_max)),
        pixel_f1_max: mean(results.iter().map(|r| r.pixel_f1_max)),
    }
}

const HEADER: [&str; 6] = [
    "category", "AU-ROC", "AU-PRO", "I-AUROC", "I-F1max", "P-F1max",
];

/// The table a person reads: pixel AU-ROC and AU-PRO first (the paper's metrics), then
/// image AUROC and the F1-max figures; all in percent.
pub fn table(results: &[CategoryResult]) -> String {
    let width = results
        .iter()
        .map(|r| r.category.len())
        .chain([8])
        .max()
        .unwrap_or(8);
    let mut out = String::new();
    let _ = write!(out, "{:<width$}", HEADER[0]);
    for h in &HEADER[1..] {
        let _ = write!(out, " {h:>8}");
    }
    out.push('\n');
    let row = |out: &mut String, name: &str, cells: [Option<f64>; 5]| {
        let _ = write!(out, "{name:<width$}");
        for c in cells {
            let _ = write!(out, " {:>8}", pct(c));
        }
        out.push('\n');
    };
    for r in results {
        row(
            &mut out,
            &r.category,
            [
                r.pixel_auroc,
                r.au_pro,
                r.image_auroc,
                r.image_f1_max,
                r.pixel_f1_max,
            ],
        );
    }
    let m = mean_row(results);
    out.push_str(&"-".repeat(width + 9 * 5));
    out.push('\n');
    row(
        &mut out,
        "mean",
        [
            m.pixel_auroc,
            m.au_pro,
            m.image_auroc,
            m.image_f1_max,
            m.pixel_f1_max,
        ],
    );
    out
}

/// The same figures as CSV (fractions, not percent, for machines), with a mean row.
pub fn csv(results: &[CategoryResult]) -> String {
    let f = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    let mut out = String::from(
        "category,test_images,defective_images,pixel_auroc,au_pro,image_auroc,image_f1_max,pixel_f1_max,train_seconds,score_seconds\n",
    );
    for r in results {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{:.1}",
            r.category,
            r.test_images,
            r.defective_images,
            f(r.pixel_auroc),
            f(r.au_pro),
            f(r.image_auroc),
            f(r.image_f1_max),
            f(r.pixel_f1_max),
            r.train_seconds
                .map(|s| format!("{s:.1}"))
                .unwrap_or_default(),
            r.score_seconds
        );
    }
    let m = mean_row(results);
    let _ = writeln!(
        out,
        "mean,,,{},{},{},{},{},,",
        f(m.pixel_auroc),
        f(m.au_pro),
        f(m.image_auroc),
        f(m.image_f1_max),
        f(m.pixel_f1_max)
    );
    out
}

#[derive(Serialize)]
pub struct JsonReport<'a> {
    pub categories: &'a [CategoryResult],
    pub mean: MeanRow,
    pub peak_rss_bytes: Option<u64>,
}

/// One row of the ablation: which parts were on, and the mean figures.
#[derive(Debug, Clone, Serialize)]
pub struct AblationRow {
    pub case: String,
    pub oom: bool,
    pub mom: bool,
    pub mean: MeanRow,
    pub categories: Vec<CategoryResult>,
}

/// Table IV: OOM and MOM on or off, mean AU-ROC / AU-PRO (and image AUROC).
pub fn ablation_table(rows: &[AblationRow]) -> String {
    let mut out = format!(
        "{:<12} {:>4} {:>4} {:>8} {:>8} {:>8}\n",
        "case", "OOM", "MOM", "AU-ROC", "AU-PRO", "I-AUROC"
    );
    let mark = |b: bool| if b { "x" } else { "" };
    for r in rows {
        let _ = writeln!(
            out,
            "{:<12} {:>4} {:>4} {:>8} {:>8} {:>8}",
            r.case,
            mark(r.oom),
            mark(r.mom),
            pct(r.mean.pixel_auroc),
            pct(r.mean.au_pro),
            pct(r.mean.image_auroc)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, p: f64) -> CategoryResult {
        CategoryResult {
            category: name.into(),
            test_images: 10,
            defective_images: 5,
            image_auroc: Some(p),
            image_f1_max: Some(p),
            image_f1_threshold: Some(0.5),
            pixel_auroc: Some(p),
            au_pro: None,
            pixel_f1_max: Some(p),
            pixel_f1_threshold: Some(0.5),
            train_seconds: None,
            score_seconds: 1.0,
        }
    }

    #[test]
    fn mean_row_and_percent_table() {
        let rows = [result("bottle", 0.9), result("cable", 0.8)];
        let m = mean_row(&rows);
        assert!((m.pixel_auroc.unwrap() - 0.85).abs() < 1e-12);
        assert_eq!(m.au_pro, None);
        let t = table(&rows);
        assert!(
            t.contains("bottle") && t.contains("90.00") && t.contains("85.00"),
            "{t}"
        );
        let last = t.lines().last().unwrap();
        assert!(last.starts_with("mean") && last.contains('-'), "{t}");
        let c = csv(&rows);
        assert_eq!(c.lines().count(), 4);
        assert!(
            c.lines().nth(3).unwrap().starts_with("mean,,,0.850000"),
            "{c}"
        );
    }
}
