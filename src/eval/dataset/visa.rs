//! VisA: one split file, [`VISA_CSV`], lists every image of every object with its split,
//! label and mask, as paths relative to the dataset root.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::{io_err, is_plain_name, stem, DatasetError, TestSample, GOOD};

/// Defect name given to VisA anomalies (VisA's 1cls split has no defect types).
pub const VISA_ANOMALY: &str = "anomaly";

/// VisA's split file, relative to the dataset root.
pub const VISA_CSV: &str = "split_csv/1cls.csv";

/// One data line of VisA's split CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VisaRow {
    /// 1-based line in the file, for errors.
    line: usize,
    object: String,
    train: bool,
    normal: bool,
    image: String,
    mask: String,
}

/// The records of a CSV text, each with the 1-based line it starts on, in file order and
/// ending at the first error, as (line, detail); lines of blanks are skipped. Quoting is
/// CSV's (the `csv` crate): a field that starts with a double quote runs to the next lone
/// one and `""` inside it is a quote; a quote anywhere else is an ordinary character. No
/// VisA field holds a line break, so a quoted field running past its line is refused: it
/// is a quote left open far more often than a path with a line break in it.
fn csv_records(text: &str) -> Vec<Result<(usize, csv::StringRecord), (usize, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let bytes = text.as_bytes();
    // csv positions a record where the previous one ended, before the blank lines it
    // skips, so lines are counted here up to the record's first byte. A line ends with
    // \n, \r\n or a lone \r, as csv reads them.
    let (mut counted, mut line) = (0, 1);
    let mut out = Vec::new();
    loop {
        let mut record = csv::StringRecord::new();
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return out,
            Err(e) => {
                out.push(Err((line, e.to_string())));
                return out;
            }
        }
        let mut start = record
            .position()
            .map_or(counted, |p| p.byte() as usize)
            .max(counted);
        while matches!(bytes.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        line += (counted..start)
            .filter(|&i| match bytes[i] {
                b'\n' => true,
                b'\r' => bytes.get(i + 1) != Some(&b'\n'),
                _ => false,
            })
            .count();
        counted = start;
        if record.len() == 1 && record[0].trim().is_empty() {
            continue;
        }
        if record.iter().any(|f| f.contains(['\r', '\n'])) {
            out.push(Err((
                line,
                "a double-quoted field runs past the end of the line (unterminated double quote?)"
                    .into(),
            )));
            return out;
        }
        out.push(Ok((line, record)));
    }
}

/// Parse VisA's split CSV: header `object,split,label,image,mask` (columns found by name,
/// so their order does not matter), then one row per image. Fields are trimmed; blank
/// lines are skipped.
fn parse_visa_csv(path: &Path, text: &str) -> Result<Vec<VisaRow>, DatasetError> {
    let bad = |line: usize, detail: String| DatasetError::MalformedCsv {
        path: path.to_path_buf(),
        line,
        detail,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = csv_records(text)
        .into_iter()
        .map(|r| r.map_err(|(line, detail)| bad(line, detail)));
    let Some(header) = records.next() else {
        return Err(bad(
            1,
            "empty file (expected header object,split,label,image,mask)".into(),
        ));
    };
    let (hline, header) = header?;
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            bad(
                hline,
                format!("header lacks column {name:?} (expected object,split,label,image,mask)"),
            )
        })
    };
    let (c_obj, c_split, c_label, c_image, c_mask) = (
        col("object")?,
        col("split")?,
        col("label")?,
        col("image")?,
        col("mask")?,
    );
    let mut rows = Vec::new();
    for record in records {
        let (line, f) = record?;
        if f.len() != header.len() {
            return Err(bad(
                line,
                format!("expected {} fields, found {}", header.len(), f.len()),
            ));
        }
        let get = |c: usize| f[c].trim().to_string();
        let object = get(c_obj);
        if !is_plain_name(&object) {
            return Err(bad(line, format!("invalid object name {object:?}")));
        }
        let train = match get(c_split).to_ascii_lowercase().as_str() {
            "train" => true,
            "test" => false,
            other => {
                return Err(bad(
                    line,
                    format!("split must be train or test, found {other:?}"),
                ))
            }
        };
        let normal = match get(c_label).to_ascii_lowercase().as_str() {
            "normal" => true,
            "anomaly" => false,
            other => {
                return Err(bad(
                    line,
                    format!("label must be normal or anomaly, found {other:?}"),
                ))
            }
        };
        let image = get(c_image);
        if image.is_empty() {
            return Err(bad(line, "empty image path".into()));
        }
        if train && !normal {
            return Err(bad(
                line,
                "anomaly in the train split (training uses normal images only)".into(),
            ));
        }
        rows.push(VisaRow {
            line,
            object,
            train,
            normal,
            image,
            mask: get(c_mask),
        });
    }
    Ok(rows)
}

fn read_visa_csv(path: &Path) -> Result<Vec<VisaRow>, DatasetError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    parse_visa_csv(path, &text)
}

/// The objects (categories) the split CSV at `csv` lists.
pub(super) fn objects(csv: &Path) -> Result<BTreeSet<String>, DatasetError> {
    Ok(read_visa_csv(csv)?.into_iter().map(|r| r.object).collect())
}

/// One VisA object from the split CSV; every listed file must exist.
pub(super) fn read_visa(
    root: &Path,
    category: &str,
) -> Result<(Vec<PathBuf>, Vec<TestSample>), DatasetError> {
    let csv = root.join(VISA_CSV);
    let rows = read_visa_csv(&csv)?;
    let mut train = Vec::new();
    let mut test = Vec::new();
    for r in rows.into_iter().filter(|r| r.object == category) {
        let image = root.join(&r.image);
        if !image.is_file() {
            return Err(DatasetError::MissingFile {
                path: image,
                csv,
                line: r.line,
            });
        }
        if r.train {
            train.push(image);
            continue;
        }
        let mask = if r.normal {
            None
        } else if r.mask.is_empty() {
            return Err(DatasetError::MissingMask {
                image,
                expected: None,
            });
        } else {
            let mask = root.join(&r.mask);
            if !mask.is_file() {
                return Err(DatasetError::MissingMask {
                    image,
                    expected: Some(mask),
                });
            }
            Some(mask)
        };
        test.push(TestSample {
            id: stem(&image),
            image,
            mask,
            defect: if r.normal { GOOD } else { VISA_ANOMALY }.to_string(),
        });
    }
    if train.is_empty() {
        return Err(DatasetError::EmptyTrain {
            category: category.to_string(),
            path: csv,
        });
    }
    if test.is_empty() {
        return Err(DatasetError::EmptyTest {
            category: category.to_string(),
            path: csv,
        });
    }
    train.sort();
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::super::fixtures::*;
    use super::super::{
        detect_layout, list_categories, load_category, load_mask, DatasetError, DatasetLayout,
    };
    use super::*;

    /// A VisA root with two objects; masks use VisA's 0/1 values.
    fn visa(root: &Path, csv: &str) {
        for (obj, n) in [("pcb1", 2), ("candle", 1)] {
            for i in 0..n {
                write_rgb(
                    &root.join(format!("{obj}/Data/Images/Normal/{i:04}.JPG.png")),
                    9,
                    5,
                );
            }
            write_rgb(
                &root.join(format!("{obj}/Data/Images/Normal/0100.png")),
                9,
                5,
            );
            write_rgb(
                &root.join(format!("{obj}/Data/Images/Anomaly/000.png")),
                9,
                5,
            );
            write_mask(
                &root.join(format!("{obj}/Data/Masks/Anomaly/000.png")),
                9,
                5,
                &[(8, 4)],
                1,
            );
        }
        mkdirs(&root.join("split_csv"));
        fs::write(root.join(VISA_CSV), csv).unwrap();
    }

    const VISA_CSV_TEXT: &str = "\u{feff}object,split,label,image,mask\r\n\
        pcb1,train,normal,pcb1/Data/Images/Normal/0001.JPG.png,\r\n\
        pcb1,train,normal,\"pcb1/Data/Images/Normal/0000.JPG.png\",\r\n\
        \r\n\
        pcb1,test,anomaly,pcb1/Data/Images/Anomaly/000.png,pcb1/Data/Masks/Anomaly/000.png\r\n\
        pcb1,test,normal,pcb1/Data/Images/Normal/0100.png,\r\n\
        candle,train,normal,candle/Data/Images/Normal/0000.JPG.png,\n\
        candle,test,normal,candle/Data/Images/Normal/0100.png,\n\
        candle,test,anomaly,candle/Data/Images/Anomaly/000.png,candle/Data/Masks/Anomaly/000.png\n";

    #[test]
    fn visa_is_detected_and_read_from_the_csv() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        visa(root, VISA_CSV_TEXT);
        assert_eq!(list_categories(root).unwrap(), ["candle", "pcb1"]);
        assert_eq!(detect_layout(root, "pcb1").unwrap(), DatasetLayout::Visa);
        let c = load_category(root, "pcb1").unwrap();
        assert_eq!(c.layout, DatasetLayout::Visa);
        assert_eq!(
            c.train,
            [
                root.join("pcb1/Data/Images/Normal/0000.JPG.png"),
                root.join("pcb1/Data/Images/Normal/0001.JPG.png")
            ]
        );
        assert_eq!(ids(&c), pairs(&[("good", "0100"), ("anomaly", "000")]));
        assert_eq!(c.test[0].mask, None);
        assert_eq!(
            c.test[1].mask.as_deref(),
            Some(root.join("pcb1/Data/Masks/Anomaly/000.png").as_path())
        );
        // VisA masks hold 0/1, not 0/255.
        assert_eq!(
            on_pixels(&load_mask(&c.test[1], 9, 5).unwrap(), 9),
            [(8, 4)]
        );
        assert_eq!(load_category(root, "candle").unwrap().test.len(), 2);
    }

    #[test]
    fn csv_fields_quotes_and_columns() {
        let p = Path::new("/d/split_csv/1cls.csv");
        let head = "object,split,label,image,mask\n";
        let fields = |row: &str| {
            let r = parse_visa_csv(p, &format!("{head}{row}\n")).unwrap();
            assert_eq!(r.len(), 1, "{row}");
            [r[0].object.clone(), r[0].image.clone(), r[0].mask.clone()]
        };
        assert_eq!(fields("a,test,normal,b,"), ["a", "b", ""]);
        // Double quotes enclose commas; `""` inside them is a quote.
        assert_eq!(
            fields(r#""say ""hi""",test,anomaly,"x, y.png",m.png"#),
            [r#"say "hi""#, "x, y.png", "m.png"]
        );
        // Fields are trimmed. As CSV has it, a quote opens a quoted field only as the
        // field's first character; anywhere else (after a space too) it is an ordinary
        // character.
        assert_eq!(
            fields(r#" a ,test,normal, "q" ,"r" "#),
            ["a", r#""q""#, "r"]
        );
        assert_eq!(fields(r#"a"b,test,normal,x.png,"#), [r#"a"b"#, "x.png", ""]);
        // A quote left open runs to the end of the file: refused.
        let e = parse_visa_csv(p, &format!("{head}a,test,normal,\"open,b\nc,d\n")).unwrap_err();
        assert!(e.to_string().contains("1cls.csv:2: "), "{e}");
        assert!(e.to_string().contains("unterminated double quote"), "{e}");

        // Lines are counted in the file, blank ones included, whatever the line ends.
        let rows = parse_visa_csv(p, VISA_CSV_TEXT).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            [2, 3, 5, 6, 7, 8, 9]
        );
        let rows =
            parse_visa_csv(p, &format!("\n \n{head}\r\n\n  \r\na,test,normal,b,\n")).unwrap();
        assert_eq!(rows[0].line, 7);
        let e = parse_visa_csv(p, &format!("\n{head}\r\ra,test,normal\n")).unwrap_err();
        assert!(
            matches!(e, DatasetError::MalformedCsv { line: 5, .. }),
            "{e}"
        );

        // Columns are found by name, in any order.
        let rows = parse_visa_csv(
            p,
            "image,mask,label,split,object\nx/1.png,,normal,train,fryum\n",
        )
        .unwrap();
        assert_eq!(
            rows,
            [VisaRow {
                line: 2,
                object: "fryum".into(),
                train: true,
                normal: true,
                image: "x/1.png".into(),
                mask: String::new(),
            }]
        );
    }

    #[test]
    fn malformed_csv_lines_are_reported_with_path_and_line() {
        let p = Path::new("/d/split_csv/1cls.csv");
        let head = "object,split,label,image,mask\n";
        let ok = "a,train,normal,a/0.png,\n";
        for (body, line, what) in [
            (
                format!("{head}{ok}a,test,normal\n"),
                3,
                "expected 5 fields, found 3",
            ),
            (format!("{head}{ok}{ok}a,val,normal,x.png,\n"), 4, "split"),
            (format!("{head}a,test,bad,x.png,\n"), 2, "label"),
            (format!("{head}a,test,normal,,\n"), 2, "empty image"),
            (
                format!("{head}a,train,anomaly,x.png,m.png\n"),
                2,
                "train split",
            ),
            (format!("{head}a,test,normal,\"x.png,\n"), 2, "unterminated"),
            (
                format!("{head}../up,test,normal,x.png,\n"),
                2,
                "object name",
            ),
            ("object,split,label,image\n".to_string(), 1, "\"mask\""),
            (String::new(), 1, "empty file"),
        ] {
            let e = parse_visa_csv(p, &body).unwrap_err();
            assert!(
                matches!(e, DatasetError::MalformedCsv { line: l, .. } if l == line),
                "{e}"
            );
            let s = e.to_string();
            assert!(s.contains(&format!("/d/split_csv/1cls.csv:{line}:")), "{s}");
            assert!(s.contains(what), "{s}");
        }
    }

    #[test]
    fn visa_file_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        visa(root, VISA_CSV_TEXT);
        let csv_path = root.join(VISA_CSV);
        let edit = |from: &str, to: &str| {
            fs::write(&csv_path, VISA_CSV_TEXT.replace(from, to)).unwrap();
        };

        // Anomaly without mask.
        edit(",pcb1/Data/Masks/Anomaly/000.png", ",");
        let (e, s) = err_text(load_category(root, "pcb1"));
        assert!(matches!(e, DatasetError::MissingMask { .. }), "{s}");
        assert!(s.contains("Anomaly/000.png"), "{s}");

        // Mask listed but absent.
        edit("Masks/Anomaly/000.png", "Masks/Anomaly/404.png");
        let (_, s) = err_text(load_category(root, "pcb1"));
        assert!(s.contains("pcb1/Data/Masks/Anomaly/404.png"), "{s}");

        // Listed image absent (line 6: the blank line 4 counts).
        edit("Normal/0100.png", "Normal/0404.png");
        let (e, s) = err_text(load_category(root, "pcb1"));
        assert!(
            matches!(e, DatasetError::MissingFile { line: 6, .. }),
            "{s}"
        );
        assert!(
            s.contains("Normal/0404.png") && s.contains("1cls.csv:6"),
            "{s}"
        );

        // Unknown object, with a suggestion.
        edit("", "");
        let (e, s) = err_text(load_category(root, "pcb"));
        assert!(matches!(e, DatasetError::CategoryNotFound { .. }), "{s}");
        assert!(s.contains("1cls.csv") && s.contains("candle, pcb1"), "{s}");
        assert!(s.contains("did you mean \"pcb1\""), "{s}");

        // No test rows for an object.
        fs::write(
            &csv_path,
            "object,split,label,image,mask\ncandle,train,normal,candle/Data/Images/Normal/0000.JPG.png,\n",
        )
        .unwrap();
        let (e, s) = err_text(load_category(root, "candle"));
        assert!(matches!(e, DatasetError::EmptyTest { .. }), "{s}");
        assert!(s.contains("1cls.csv"), "{s}");
        fs::write(
            &csv_path,
            "object,split,label,image,mask\ncandle,test,normal,candle/Data/Images/Normal/0000.JPG.png,\n",
        )
        .unwrap();
        let (e, s) = err_text(load_category(root, "candle"));
        assert!(matches!(e, DatasetError::EmptyTrain { .. }), "{s}");
        assert!(s.contains("1cls.csv"), "{s}");
    }
}
