//! 8-connected regions of map or mask pixels (the MVTec AD evaluation's connectivity),
//! found by flood fill: the station's minimum defect area and the AU-PRO metric's defect
//! regions both use this one fill.

/// Grows the 8-connected region of `seed` (already taken by the caller) over the
/// `width`×`height` row-major pixels that `take` accepts; `take(i)` marks pixel `i` as
/// part of the region and says whether it joined (false when it is not a member or is
/// already taken). Returns the region's size in pixels. `stack` is scratch space, reused
/// across calls.
pub fn grow_region(
    seed: usize,
    width: usize,
    height: usize,
    stack: &mut Vec<usize>,
    mut take: impl FnMut(usize) -> bool,
) -> u64 {
    stack.clear();
    stack.push(seed);
    let mut size = 0u64;
    while let Some(p) = stack.pop() {
        size += 1;
        let (x, y) = (p % width, p / width);
        for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
            for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                let q = ny * width + nx;
                if take(q) {
                    stack.push(q);
                }
            }
        }
    }
    size
}

/// Pixel count of the largest 8-connected region of `map` values above `threshold`.
/// Non-finite values count as defective: a broken map must not shrink a defect.
pub fn largest_region(map: &[f32], width: usize, height: usize, threshold: f32) -> usize {
    let hot = |v: f32| !v.is_finite() || v > threshold;
    let mut seen = vec![false; map.len()];
    let mut stack = Vec::new();
    let mut largest = 0;
    for seed in 0..map.len() {
        if seen[seed] || !hot(map[seed]) {
            continue;
        }
        seen[seed] = true;
        let size = grow_region(seed, width, height, &mut stack, |q| {
            let joins = !seen[q] && hot(map[q]);
            seen[q] |= joins;
            joins
        });
        largest = largest.max(size as usize);
    }
    largest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_eight_connected() {
        #[rustfmt::skip]
        let map = [
            1.0, 0.0, 0.0, 0.0,
            0.0, 1.0, 0.0, 1.0,
            0.0, 0.0, 0.0, 1.0,
            0.0, 0.0, 0.0, 0.0f32,
        ];
        // The diagonal pair is one region of 2, the right column one of 2.
        assert_eq!(largest_region(&map, 4, 4, 0.5), 2);
        assert_eq!(largest_region(&map, 4, 4, 2.0), 0);
        let mut with_nan = map;
        with_nan[2] = f32::NAN; // joins the diagonal pair and the right column
        assert_eq!(largest_region(&with_nan, 4, 4, 0.5), 5);
    }
}
