//! What the station-file tests of `reader`, `sections` and `load` share: the smallest
//! valid file, and a check that a bad file gives exactly the errors expected.

use std::path::Path;

use super::{parse_with, ConfigError, LoadOptions};

/// The two required keys; cases append to it, so their own lines start at 5.
pub(super) const BASE: &str = "[model]\nbundle = \"bundle\"\n[reject]\nline = \"gpiochip0:20\"\n";
pub(super) const NO_FILES: LoadOptions = LoadOptions { check_files: false };

pub(super) fn errors(text: &str, options: LoadOptions) -> Vec<ConfigError> {
    match parse_with(text, Path::new("station.toml"), options) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.errors,
    }
}

/// The errors a bad file must give, in order: (line, key, part of the message).
pub(super) type Expected = &'static [(Option<usize>, &'static str, &'static str)];

/// Each bad file (name, text) with exactly the errors expected.
pub(super) fn assert_cases(cases: &[(&str, String, Expected)]) {
    for (name, text, expected) in cases {
        let got = errors(text, NO_FILES);
        let shown: Vec<String> = got.iter().map(|e| e.to_string()).collect();
        assert_eq!(got.len(), expected.len(), "{name}: {shown:#?}");
        for (e, (line, key, part)) in got.iter().zip(expected.iter()) {
            assert_eq!(
                (e.line, e.key.as_str()),
                (*line, *key),
                "{name}: {shown:#?}"
            );
            assert!(e.message.contains(part), "{name}: {shown:#?}");
        }
    }
}
