//! 8-connected regions of map or mask pixels (the MVTec AD evaluation's connectivity),
//! found by flood fill: the station's minimum defect area and the AU-PRO metric's defect
//! regions both use this one fill.

use crate::imageio::{heatmap_overlay, paint_pixels, REGION_COLOUR};

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

/// The outline of every 8-connected region of `map` values above `threshold`: each
/// region pixel (non-finite counts, as in [`largest_region`]) with a 4-neighbour that is
/// not in a region, or on the map's edge, as row-major indices in increasing order. Drawn
/// on an overlay it traces each region's border without hiding its inside.
pub fn region_outlines(map: &[f32], width: usize, height: usize, threshold: f32) -> Vec<usize> {
    assert_eq!(map.len(), width * height, "map size");
    let hot = |i: usize| !map[i].is_finite() || map[i] > threshold;
    (0..map.len())
        .filter(|&i| {
            if !hot(i) {
                return false;
            }
            let (x, y) = (i % width, i / width);
            x == 0
                || y == 0
                || x + 1 == width
                || y + 1 == height
                || !hot(i - 1)
                || !hot(i + 1)
                || !hot(i - width)
                || !hot(i + width)
        })
        .collect()
}

/// The heatmap overlay of `map` (one value per pixel of `image`) with every region above
/// `pixel_threshold` outlined: what `infer --out` writes and the station's web view
/// shows. Colours run from `lo` (cold) to `hi` (hot), see [`heatmap_overlay`].
pub fn outlined_overlay(
    image: &image::RgbImage,
    map: &[f32],
    lo: f32,
    hi: f32,
    pixel_threshold: f32,
) -> Result<image::RgbImage, crate::imageio::ImageError> {
    let (w, h) = image.dimensions();
    let mut overlay = heatmap_overlay(image, map, w, h, lo, hi)?;
    paint_pixels(&mut overlay, &region_outlines(map, w as usize, h as usize, pixel_threshold), REGION_COLOUR);
    Ok(overlay)
}

/// The bounding box `(x0, y0, x1, y1)` (inclusive) and pixel count of every 8-connected
/// region of `map` values above `threshold`, in the order of their first pixel (row-major).
pub fn region_boxes(map: &[f32], width: usize, height: usize, threshold: f32) -> Vec<([usize; 4], u64)> {
    assert_eq!(map.len(), width * height, "map size");
    let hot = |v: f32| !v.is_finite() || v > threshold;
    let mut seen = vec![false; map.len()];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    for seed in 0..map.len() {
        if seen[seed] || !hot(map[seed]) {
            continue;
        }
        seen[seed] = true;
        let mut b = [seed % width, seed / width, seed % width, seed / width];
        let size = grow_region(seed, width, height, &mut stack, |q| {
            let joins = !seen[q] && hot(map[q]);
            seen[q] |= joins;
            if joins {
                let (x, y) = (q % width, q / width);
                b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
            }
            joins
        });
        out.push((b, size));
    }
    out
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

    #[test]
    fn outlines_trace_each_region_and_boxes_bound_them() {
        // A 3x3 block at (1..4, 1..4) and a lone pixel at (6, 5), in an 8x7 map.
        let (w, h) = (8, 7);
        let mut map = vec![0.0f32; w * h];
        for y in 1..4 {
            for x in 1..4 {
                map[y * w + x] = 1.0;
            }
        }
        map[5 * w + 6] = 1.0;
        let o = region_outlines(&map, w, h, 0.5);
        // The block's 8 border pixels (not its centre) and the lone pixel.
        let mut want: Vec<usize> = (1..4)
            .flat_map(|y| (1..4).map(move |x| (x, y)))
            .filter(|&(x, y)| (x, y) != (2, 2))
            .map(|(x, y)| y * w + x)
            .collect();
        want.push(5 * w + 6);
        assert_eq!(o, want);
        assert!(region_outlines(&map, w, h, 1.0).is_empty());
        // A region on the map's edge is outlined along the edge.
        let full = vec![1.0f32; 9];
        assert_eq!(region_outlines(&full, 3, 3, 0.5), vec![0, 1, 2, 3, 5, 6, 7, 8]);
        assert_eq!(
            region_boxes(&map, w, h, 0.5),
            vec![([1, 1, 3, 3], 9), ([6, 5, 6, 5], 1)]
        );
        // 8-connected: a diagonal pair is one region.
        let mut diag = vec![0.0f32; 16];
        diag[0] = 1.0;
        diag[5] = f32::NAN;
        assert_eq!(region_boxes(&diag, 4, 4, 0.5), vec![([0, 0, 1, 1], 2)]);
    }
}
