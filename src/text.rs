//! Text for people: the did-you-mean hint of every "unknown name" error (station file
//! keys and values, dataset categories).

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

#[cfg(test)]
mod tests {
    use super::did_you_mean;

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
}
