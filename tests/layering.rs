//! Keeps the crate's layering (written at the top of `src/lib.rs`): every `crate::` path in
//! `src/` may name only its own top-level module or one of a lower layer, and the kernels
//! (`model::kernels`) use nothing of the rest of `model`. A failure names the file, the
//! line and the rule it breaks.

use std::fs;
use std::path::{Path, PathBuf};

/// The layers, lowest first: a module may use modules of a lower number, and itself.
/// Modules of one number are peers and do not use each other.
const LAYERS: &[(&str, u32)] = &[
    ("platform", 0),
    ("imageio", 0),
    ("text", 0),
    // Shared helpers of the unit tests (`#[cfg(test)]`), below everything they help test.
    ("test_util", 0),
    ("model", 1),
    ("bundle", 2),
    ("infer", 3),
    ("train", 4),
    ("eval", 4),
    ("sample_data", 4),
    ("bench", 5),
    ("config", 5),
    ("station", 6),
    ("commands", 7),
];

/// What `main.rs` may use of the library.
const MAIN_USES: &[&str] = &["commands", "platform"];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, n)| n)
}

/// The paths named after each `prefix` (`crate::` or `cdo_inspect::`) in one line of code,
/// as their segments: `use crate::{a::b, c}` gives `[a, b]` and `[c]`.
fn paths_after(line: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `my_crate::`, not `crate::`
        }
        out.extend(expand(rest, Vec::new()));
    }
    out
}

/// Expands a path's tail: `a::b::c`, or a `{x, y::z}` group (one level is enough for the
/// crate's imports; nested groups take their first segment).
fn expand(tail: &str, head: Vec<String>) -> Vec<Vec<String>> {
    if let Some(group) = tail.strip_prefix('{') {
        let inner = group.split('}').next().unwrap_or("");
        return inner
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .flat_map(|p| expand(p, head.clone()))
            .collect();
    }
    let mut path = head;
    let mut t = tail;
    loop {
        let end = t
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(t.len());
        if end == 0 {
            break;
        }
        path.push(t[..end].to_string());
        t = &t[end..];
        match t.strip_prefix("::") {
            Some(next) if next.starts_with('{') => return expand(next, path),
            Some(next) => t = next,
            None => break,
        }
    }
    if path.is_empty() {
        Vec::new()
    } else {
        vec![path]
    }
}

/// The module a file of `src/` belongs to (`src/station/daemon.rs` → `station`), and
/// whether it is one of the kernels.
fn owner(rel: &Path) -> (String, bool) {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let top = parts[0].trim_end_matches(".rs").to_string();
    let kernel = parts.len() > 2 && parts[0] == "model" && parts[1] == "kernels";
    (top, kernel)
}

/// The rule each `crate::` path of `text` breaks, with its line number.
fn violations(module: &str, in_kernels: bool, text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let Some(own) = layer(module) else {
        return vec![(0, format!("module `{module}` has no layer in tests/layering.rs"))];
    };
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for path in paths_after(code, "crate::") {
            let target = path[0].as_str();
            if target == module {
                if in_kernels && target == "model" && path.get(1).map(String::as_str) != Some("kernels") {
                    found.push((
                        n + 1,
                        format!("crate::{}: the kernels use nothing of model above them", path.join("::")),
                    ));
                }
                continue;
            }
            match layer(target) {
                Some(l) if l < own => {}
                Some(l) => found.push((
                    n + 1,
                    format!(
                        "crate::{}: {module} (layer {own}) may not use {target} (layer {l})",
                        path.join("::")
                    ),
                )),
                None => found.push((n + 1, format!("crate::{}: unknown module", path.join("::")))),
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_import_follows_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut broken = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let text = fs::read_to_string(file).unwrap();
        if rel == Path::new("lib.rs") {
            continue;
        }
        if rel == Path::new("main.rs") {
            for (n, line) in text.lines().enumerate() {
                for path in paths_after(line, "cdo_inspect::") {
                    if !MAIN_USES.contains(&path[0].as_str()) {
                        broken.push(format!("src/main.rs:{}: cdo_inspect::{}: main uses only {MAIN_USES:?}", n + 1, path.join("::")));
                    }
                }
            }
            continue;
        }
        let (module, kernel) = owner(rel);
        for (line, why) in violations(&module, kernel, &text) {
            broken.push(format!("src/{}:{line}: {why}", rel.display()));
        }
    }
    assert!(files.len() > 50, "found only {} files under {}", files.len(), src.display());
    assert!(broken.is_empty(), "imports against the layering:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_catches_upward_sideways_and_kernel_imports() {
    // Upward: config may not use station or commands.
    let v = violations("config", false, "use crate::station::boundary::LineSpec;\n// use crate::commands::x;\nuse crate::bundle::Bundle;");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].0, 1);
    assert!(v[0].1.contains("config (layer 5) may not use station (layer 6)"), "{v:?}");
    // Grouped and inline paths, sideways between peers.
    let v = violations("eval", false, "use crate::{infer::Detector, sample_data::SampleSpec};\nlet x = crate::train::train(a);");
    let lines: Vec<usize> = v.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [1, 2], "{v:?}");
    assert!(v[0].1.starts_with("crate::sample_data::SampleSpec"), "{v:?}");
    // Nothing uses commands, not even station.
    assert_eq!(violations("station", false, "use crate::commands::open_device;").len(), 1);
    // The kernels stay below the rest of model; the rest of model may use them.
    assert_eq!(violations("model", true, "use crate::model::layers::Mode;").len(), 1);
    assert!(violations("model", true, "use crate::model::kernels::simd::add_scaled;").is_empty());
    assert!(violations("model", false, "use crate::model::kernels::mbconv::Dense;").is_empty());
    // A name that merely ends in `crate::` is not a crate path; an unknown module is flagged.
    assert!(violations("station", false, "use my_crate::commands::x;").is_empty());
    assert_eq!(violations("station", false, "use crate::nowhere::x;").len(), 1);
}
