//! Text for people: the did-you-mean hint of every "unknown name" error (station file
//! keys and values, dataset categories), and outside text made safe for a log line or a
//! record ([`for_log`], [`cap`]).

/// The known name closest to a misspelt one, compared case-insensitively: within edit
/// distance 1 for names of up to four characters and 2 for longer ones (short names are
/// within 2 edits of too much), or one a prefix of the other ("pulse" for "pulse_ms").
pub fn did_you_mean<'k>(given: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    let given = given.to_lowercase();
    let limit = if given.chars().count() <= 4 { 1 } else { 2 };
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(&given, &k.to_lowercase()), k))
        .filter(|(d, k)| {
            let k = k.to_lowercase();
            let prefix = given.chars().count() >= 3 && (k.starts_with(&given) || given.starts_with(&k));
            *d <= limit || prefix
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The longest free text (a station name, a frame's origin, an error message) put into a
/// record or a log line, in characters; longer text keeps its start and ends in "…".
pub const MAX_TEXT_CHARS: usize = 256;

/// `s` cut to at most `max` characters, the last of them "…" when anything was cut.
/// Cuts on a character boundary; text within the limit is returned as it is.
pub fn cap(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some(_) if max == 0 => String::new(),
        Some(_) => {
            let end = s.char_indices().nth(max - 1).map_or(s.len(), |(i, _)| i);
            format!("{}…", &s[..end])
        }
    }
}

/// Text that came from outside (file names, frame origins, the station's name, error
/// messages quoting them) made safe for one log line: every control character is escaped
/// as Rust writes it (`\n`, `\r`, `\t`, `\u{1b}`…), and so are the Unicode line and
/// paragraph separators and the bidirectional overrides, and a backslash as `\\` (so an
/// escape in the text cannot pass for one of ours): no text can start a line of its own,
/// forge a log entry, reorder what a reader sees or move a terminal's cursor; and it is
/// capped at [`MAX_TEXT_CHARS`] characters (before escaping), so a megabyte name costs a
/// log line of normal length.
pub fn for_log(s: &str) -> String {
    escape_controls(&cap(s, MAX_TEXT_CHARS))
}

/// [`for_log`]'s escaping alone, without the cap: for a whole log line whose outside
/// pieces were capped already.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::{cap, did_you_mean, escape_controls, for_log, MAX_TEXT_CHARS};

    #[test]
    fn near_names_and_prefixes_only() {
        let keys = ["delay_ms", "pulse_ms", "active_low", "line"];
        assert_eq!(did_you_mean("pulse_mss", keys), Some("pulse_ms"));
        assert_eq!(did_you_mean("delay", keys), Some("delay_ms"));
        assert_eq!(did_you_mean("Active_Low", keys), Some("active_low"));
        assert_eq!(did_you_mean("colour", keys), None);
        assert_eq!(did_you_mean("lime", keys), Some("line"));
        assert_eq!(did_you_mean("foo", keys), None);
        let categories = ["bottle", "cable", "pcb1"];
        assert_eq!(did_you_mean("botle", categories), Some("bottle"));
        assert_eq!(did_you_mean("CABLE", categories), Some("cable"));
        assert_eq!(did_you_mean("pcb5", categories), Some("pcb1"));
        assert_eq!(did_you_mean("zipper", categories), None);
    }

    #[test]
    fn long_text_is_capped_on_a_character_boundary() {
        assert_eq!(cap("abc", 3), "abc");
        assert_eq!(cap("abcd", 3), "ab…");
        assert_eq!(cap("ééééé", 4), "ééé…");
        assert_eq!(cap("", 3), "");
        assert_eq!(cap("ab", 0), "");
        let huge = "x".repeat(1 << 20);
        let c = cap(&huge, MAX_TEXT_CHARS);
        assert_eq!(c.chars().count(), MAX_TEXT_CHARS);
        assert!(c.ends_with('…'));
    }

    #[test]
    fn control_characters_cannot_forge_a_log_line() {
        let raw = "a.png\n[INFO cdo_inspect] forged\r\x1b[2J\t\\x";
        let safe = for_log(raw);
        assert!(!safe.chars().any(|c| c.is_control()), "{safe:?}");
        assert_eq!(safe, r"a.png\n[INFO cdo_inspect] forged\r\u{1b}[2J\t\\x");
        // Plain text is untouched; DEL and C1 controls are escaped too.
        assert_eq!(for_log("0001_good.png é"), "0001_good.png é");
        assert_eq!(for_log("\u{7f}\u{85}"), r"\u{7f}\u{85}");
        assert_eq!(for_log("ok\u{2028}\u{202e}gnp.exe"), r"ok\u{2028}\u{202e}gnp.exe");
        // Long text is capped before escaping: a megabyte of newlines is a short line.
        let flood = for_log(&"\n".repeat(1 << 20));
        assert_eq!(flood, format!("{}…", r"\n".repeat(MAX_TEXT_CHARS - 1)));
        // Escaping alone keeps the length.
        let long = format!("{}\n", "y".repeat(1000));
        assert_eq!(escape_controls(&long), format!("{}\\n", "y".repeat(1000)));
    }
}
