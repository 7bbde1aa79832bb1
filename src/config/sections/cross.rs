//! Checks across sections, made once every section has been read: no GPIO line may be
//! used by two keys, whichever sections they are in.

use crate::config::reader::Reader;
use crate::config::LineSpec;

impl Reader<'_> {
    /// One physical line driven or read by two keys is a wiring mistake in the file.
    pub(in crate::config) fn duplicate_lines(&mut self) {
        let mut uses = std::mem::take(&mut self.lines);
        // Report the use further down the file, naming the one above it.
        uses.sort_by_key(|u| (u.line.is_none(), u.line));
        for (i, later) in uses.iter().enumerate() {
            let first = uses[..i].iter().find(|u| same_line(&u.spec, &later.spec));
            if let Some(first) = first {
                let at = first
                    .line
                    .map(|l| format!(" (line {l})"))
                    .unwrap_or_default();
                let message = format!("GPIO line {} is also used by {}{at}", later.spec, first.key);
                self.push(later.key.clone(), later.line, message);
            }
        }
    }
}

/// `/dev/gpiochip0:5` and `gpiochip0:5` are the same line.
fn same_line(a: &LineSpec, b: &LineSpec) -> bool {
    let norm = |s: &LineSpec| match s {
        LineSpec::ChipOffset { chip, offset } => LineSpec::ChipOffset {
            chip: chip.strip_prefix("/dev/").unwrap_or(chip).to_string(),
            offset: *offset,
        },
        other => other.clone(),
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{assert_cases, Expected, BASE};

    /// Each bad file with exactly the errors expected: (line, key, part of the message).
    #[test]
    fn bad_station_files_report_every_error_with_line_and_key() {
        let cases: &[(&str, String, Expected)] = &[
            (
                "the same GPIO line twice (a /dev path and a chip name)",
                format!("{BASE}[trigger]\nmode = \"gpio\"\nline = \"/dev/gpiochip0:20\"\n"),
                &[(
                    Some(7),
                    "trigger.line",
                    "GPIO line /dev/gpiochip0:20 is also used by reject.line (line 4)",
                )],
            ),
        ];
        assert_cases(cases);
    }
}
