//! The verdict rule, the one place that says when a score rejects a part.

/// The verdict. Fail safe: a score that is not a number (a broken model or input) rejects.
pub fn rejects(score: f32, threshold: f32) -> bool {
    !score.is_finite() || score > threshold
}

#[cfg(test)]
mod tests {
    use super::rejects;

    #[test]
    fn verdict_fails_safe() {
        assert!(!rejects(0.2, 0.3));
        assert!(!rejects(0.3, 0.3));
        assert!(rejects(0.31, 0.3));
        assert!(rejects(f32::NAN, 0.3));
        assert!(rejects(f32::INFINITY, 0.3));
    }
}
