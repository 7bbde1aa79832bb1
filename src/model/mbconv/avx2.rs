//! The fused block's kernels written with AVX2 + FMA intrinsics: two vectors of output
//! columns held in registers through all taps. Chosen at run time (`available`).

use super::{fill_tile, Band, Dense, Tile, LANES};
use std::arch::x86_64::*;

pub fn available() -> bool {
    #[cfg(test)]
    if super::PORTABLE_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[inline(always)]
unsafe fn activate(v: __m256, expand_bias: Option<f32>) -> __m256 {
    match expand_bias {
        Some(b) => _mm256_min_ps(
            _mm256_max_ps(_mm256_add_ps(v, _mm256_set1_ps(b)), _mm256_setzero_ps()),
            _mm256_set1_ps(6.0),
        ),
        None => v,
    }
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn band<const K: usize, const S: usize>(
    b: &Band,
    tile: &mut [f32],
    out: &mut [f32],
    t: &Tile,
) {
    fill_tile(
        b,
        tile,
        t,
        K / 2,
        S,
        |d, s, e| run(d, s, e),
        |ev, od, s, e| pairs(ev, od, s, e),
    );
    conv_rows::<K, S>(tile, out, &b.kernel[..K * K], b.bias, t);
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn conv<const K: usize, const S: usize>(
    tile: &[f32],
    out: &mut [f32],
    w: &[f32],
    bias: f32,
    t: &Tile,
) {
    conv_rows::<K, S>(tile, out, w, bias, t)
}

/// The expand layer for middle channels `c0 .. c0 + cc` straight into their padded
/// tiles (`tiles`: cc tiles, one after the other): ReLU6(W x + bias) at each input
/// position of padded rows `pr0 ..`, zeros elsewhere. Four channels by sixteen columns
/// are summed in registers across all input channels (the input block stays in L1).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn expand_band(
    x: &[f32],
    cin: usize,
    e: &Dense,
    c0: usize,
    cc: usize,
    pr0: usize,
    p: usize,
    s: usize,
    tiles: &mut [f32],
    t: &Tile,
) {
    let hw = t.h * t.w;
    let tile_len = tiles.len() / cc;
    let rows = tile_len / t.padded_row;
    // Every input load below stays inside x, every weight inside the chunk's rows.
    assert!(x.len() >= cin * hw && e.weight.len() >= (c0 + cc) * cin && e.bias.len() >= c0 + cc);
    let weights = &e.weight[c0 * cin..(c0 + cc) * cin];
    let bias = &e.bias[c0..c0 + cc];
    let mut pack = vec![0f32; cin * LANES];
    // The padding of an image row: each phase's positions outside its input run.
    let spans: Vec<(usize, usize)> = (0..s)
        .map(|ph| {
            let (lo, n, _) = t.phase_data(ph, p, s);
            (ph * t.phase_len + lo, ph * t.phase_len + lo + n)
        })
        .collect();
    for r in 0..rows {
        let iy = (pr0 + r).checked_sub(p).filter(|&iy| iy < t.h);
        for c in 0..cc {
            let row = &mut tiles[c * tile_len + r * t.padded_row..][..t.padded_row];
            if iy.is_none() {
                row.fill(0.0);
                continue;
            }
            for (ph, &(a, z)) in spans.iter().enumerate() {
                row[ph * t.phase_len..a].fill(0.0);
                row[z..(ph + 1) * t.phase_len].fill(0.0);
            }
        }
        let Some(iy) = iy else {
            continue;
        };
        let xrow = x.as_ptr().add(iy * t.w);
        let row_at = r * t.padded_row;
        for x0 in (0..t.w).step_by(LANES) {
            // The input block, packed (see `pack_block`); a block past the row's end
            // is packed with zeros.
            let left = (t.w - x0).min(LANES);
            pack_block(xrow.add(x0), hw, cin, left, &mut pack);
            let xb = pack.as_ptr();
            let mut c = 0;
            while c < cc {
                let g = if cc - c >= 4 { 4 } else { 1 };
                let mut sums4 = [[_mm256_setzero_ps(); 2]; 4];
                if g == 4 {
                    sums4 = sums::<4>(xb, LANES, cin, &weights[c * cin..]);
                } else {
                    [sums4[0]] = sums::<1>(xb, LANES, cin, &weights[c * cin..]);
                }
                for (j, a) in sums4.iter().enumerate().take(g) {
                    let tile = &mut tiles[(c + j) * tile_len + row_at..][..t.padded_row];
                    if left == LANES {
                        store(tile, *a, bias[c + j], x0, p, s, t.phase_len);
                    } else {
                        // Only the real columns: the rest of the row is padding.
                        let b = Some(bias[c + j]);
                        let mut tmp = [0f32; LANES];
                        _mm256_storeu_ps(tmp.as_mut_ptr(), activate(a[0], b));
                        _mm256_storeu_ps(tmp.as_mut_ptr().add(8), activate(a[1], b));
                        for (i, &v) in tmp[..left].iter().enumerate() {
                            let col = x0 + i + p;
                            tile[(col % s) * t.phase_len + col / s] = v;
                        }
                    }
                }
                c += g;
            }
        }
    }
}

/// Packs a block of `left` (at most sixteen) columns of `rows` rows, `stride` apart from
/// `src`, into `pack` (sixteen floats per row, zeros past `left`). The rows are whole
/// planes apart (a multiple of 4 KiB at the usual sizes): read in place they would all
/// fall in one L1 set and evict each other before the next channels reuse them.
///
/// # Safety
/// `src + i * stride .. + left` must be readable for every row i.
#[inline(always)]
unsafe fn pack_block(src: *const f32, stride: usize, rows: usize, left: usize, pack: &mut [f32]) {
    assert!(pack.len() >= rows * LANES && left <= LANES);
    for (i, dst) in pack.chunks_exact_mut(LANES).take(rows).enumerate() {
        let row = src.add(i * stride);
        if left == LANES {
            // The next block's line, fetched while this block's sums run: the planes are
            // read as strided streams, which the hardware prefetcher follows poorly
            // (8-10 % on the 128 px blocks, A/B).
            _mm_prefetch::<_MM_HINT_T0>(row.add(LANES) as *const i8);
            _mm256_storeu_ps(dst.as_mut_ptr(), _mm256_loadu_ps(row));
            _mm256_storeu_ps(dst.as_mut_ptr().add(8), _mm256_loadu_ps(row.add(8)));
        } else {
            dst[..left].copy_from_slice(std::slice::from_raw_parts(row, left));
            dst[left..].fill(0.0);
        }
    }
}

/// For `G` channels (weight rows `w`, `cin` apart) the sums over input channels at
/// sixteen columns from `x` (input channels `stride` apart), in two vectors each.
#[inline(always)]
unsafe fn sums<const G: usize>(
    x: *const f32,
    stride: usize,
    cin: usize,
    w: &[f32],
) -> [[__m256; 2]; G] {
    let w = &w[..G * cin];
    let mut acc = [[_mm256_setzero_ps(); 2]; G];
    for ci in 0..cin {
        let xp = x.add(ci * stride);
        let (v0, v1) = (_mm256_loadu_ps(xp), _mm256_loadu_ps(xp.add(8)));
        for (g, a) in acc.iter_mut().enumerate() {
            let wv = _mm256_set1_ps(*w.get_unchecked(g * cin + ci));
            a[0] = _mm256_fmadd_ps(wv, v0, a[0]);
            a[1] = _mm256_fmadd_ps(wv, v1, a[1]);
        }
    }
    acc
}

/// ReLU6(sum + bias) of input columns `x0 .. x0 + 16` into one padded tile row:
/// contiguous at stride 1, even and odd columns to their phases at stride 2.
#[inline(always)]
unsafe fn store(
    row: &mut [f32],
    a: [__m256; 2],
    bias: f32,
    x0: usize,
    p: usize,
    s: usize,
    phase_len: usize,
) {
    let b = Some(bias);
    let (v0, v1) = (activate(a[0], b), activate(a[1], b));
    if s == 1 {
        let dst = &mut row[x0 + p..x0 + p + LANES];
        _mm256_storeu_ps(dst.as_mut_ptr(), v0);
        _mm256_storeu_ps(dst.as_mut_ptr().add(8), v1);
        return;
    }
    let e = _mm256_shuffle_ps::<0b10_00_10_00>(v0, v1);
    let o = _mm256_shuffle_ps::<0b11_01_11_01>(v0, v1);
    let e = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)));
    let o = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o)));
    // Input column x0 + i sits at padded column x0 + i + p; x0 is even.
    let even_at = (p % 2) * phase_len + (x0 + p) / 2;
    let odd_at = ((p + 1) % 2) * phase_len + (x0 + p).div_ceil(2);
    _mm256_storeu_ps(row[even_at..even_at + 8].as_mut_ptr(), e);
    _mm256_storeu_ps(row[odd_at..odd_at + 8].as_mut_ptr(), o);
}

#[inline(always)]
unsafe fn run(dst: &mut [f32], src: &[f32], expand_bias: Option<f32>) {
    let n = dst.len().min(src.len());
    let mut i = 0;
    while i + 8 <= n {
        let v = _mm256_loadu_ps(src.as_ptr().add(i));
        _mm256_storeu_ps(dst.as_mut_ptr().add(i), activate(v, expand_bias));
        i += 8;
    }
    super::fill_run(&mut dst[i..n], &src[i..n], expand_bias);
}

#[inline(always)]
unsafe fn pairs(even: &mut [f32], odd: &mut [f32], src: &[f32], expand_bias: Option<f32>) {
    let n = even.len().min(odd.len()).min(src.len() / 2);
    let mut i = 0;
    while i + 8 <= n {
        let a = _mm256_loadu_ps(src.as_ptr().add(2 * i));
        let z = _mm256_loadu_ps(src.as_ptr().add(2 * i + 8));
        // Per 128-bit lane: [a0 a2 z0 z2], then put the lanes' halves in order.
        let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, z);
        let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, z);
        let e = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)));
        let o = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o)));
        _mm256_storeu_ps(even.as_mut_ptr().add(i), activate(e, expand_bias));
        _mm256_storeu_ps(odd.as_mut_ptr().add(i), activate(o, expand_bias));
        i += 8;
    }
    super::deinterleave(&mut even[i..], &mut odd[i..], &src[2 * i..], expand_bias);
}

#[inline(always)]
unsafe fn conv_rows<const K: usize, const S: usize>(
    tile: &[f32],
    out: &mut [f32],
    w: &[f32],
    bias: f32,
    t: &Tile,
) {
    let rows = out.len() / t.ow;
    if rows == 0 {
        return;
    }
    // The furthest float any tap reads (see `Tile`): checked once, so the loads
    // below stay inside the tile.
    let reach = ((rows - 1) * S + K - 1) * t.padded_row
        + (S - 1) * t.phase_len
        + t.ow.div_ceil(LANES) * LANES
        + (K - 1) / S;
    assert!(
        reach <= tile.len() && w.len() == K * K,
        "depthwise tile too small"
    );
    let (zero, six, vb) = (
        _mm256_setzero_ps(),
        _mm256_set1_ps(6.0),
        _mm256_set1_ps(bias),
    );
    for r in 0..rows {
        let base = tile.as_ptr().add(r * S * t.padded_row);
        let orow = &mut out[r * t.ow..(r + 1) * t.ow];
        let mut x0 = 0;
        while x0 < t.ow {
            let (mut a0, mut a1) = (vb, vb);
            for i in 0..K {
                let row = base.add(i * t.padded_row + x0);
                for j in 0..K {
                    let p = row.add((j % S) * t.phase_len + j / S);
                    let wv = _mm256_set1_ps(*w.get_unchecked(i * K + j));
                    a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p), a0);
                    a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p.add(8)), a1);
                }
            }
            a0 = _mm256_min_ps(_mm256_max_ps(a0, zero), six);
            a1 = _mm256_min_ps(_mm256_max_ps(a1, zero), six);
            let left = t.ow - x0;
            if left >= LANES {
                _mm256_storeu_ps(orow.as_mut_ptr().add(x0), a0);
                _mm256_storeu_ps(orow.as_mut_ptr().add(x0 + 8), a1);
            } else {
                let mut tmp = [0f32; LANES];
                _mm256_storeu_ps(tmp.as_mut_ptr(), a0);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(8), a1);
                orow[x0..].copy_from_slice(&tmp[..left]);
            }
            x0 += LANES;
        }
    }
}

/// The project 1x1 convolution: `y` (cout planes of `pixels`, already holding the bias
/// and the residual) += W (cout x mid) times `d` (mid planes of `pixels`). Sixteen pixels
/// at a time: their middle-channel values are packed first (the planes are whole planes
/// apart, as in the expand), then four output channels are summed in registers over all
/// middle channels. For up to `PROJECT_MAX_MID` middle channels, where the packed block
/// stays in L1: there it beats the gemm crate, whose packing and blocking cost more than
/// they save at these sizes (a few dozen outputs, a few hundred middle channels).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn project(d: &[f32], mid: usize, w: &[f32], y: &mut [f32], cout: usize) {
    let pixels = y.len() / cout.max(1);
    // Every load and store below stays inside d, w and y.
    assert!(d.len() >= mid * pixels && w.len() >= cout * mid && y.len() == cout * pixels);
    let mut pack = vec![0f32; mid * LANES];
    for p0 in (0..pixels).step_by(LANES) {
        let left = (pixels - p0).min(LANES);
        pack_block(d.as_ptr().add(p0), pixels, mid, left, &mut pack);
        let mut c = 0;
        while c < cout {
            let g = if cout - c >= 4 { 4 } else { 1 };
            let mut acc = [[_mm256_setzero_ps(); 2]; 4];
            if g == 4 {
                acc = sums::<4>(pack.as_ptr(), LANES, mid, &w[c * mid..]);
            } else {
                [acc[0]] = sums::<1>(pack.as_ptr(), LANES, mid, &w[c * mid..]);
            }
            for (j, a) in acc.iter().enumerate().take(g) {
                let out = &mut y[(c + j) * pixels + p0..(c + j) * pixels + p0 + left];
                if left == LANES {
                    let o = out.as_mut_ptr();
                    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), a[0]));
                    _mm256_storeu_ps(o.add(8), _mm256_add_ps(_mm256_loadu_ps(o.add(8)), a[1]));
                } else {
                    let mut tmp = [0f32; LANES];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), a[0]);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), a[1]);
                    for (o, v) in out.iter_mut().zip(tmp) {
                        *o += v;
                    }
                }
            }
            c += g;
        }
    }
}

/// The most middle channels `project` takes: 256 x 16 floats (16 KiB, half of L1) packed.
pub const PROJECT_MAX_MID: usize = 256;
