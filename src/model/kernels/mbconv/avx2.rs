//! The fused block's kernels written with AVX2 + FMA intrinsics: two vectors of output
//! columns held in registers through all taps. Chosen at run time (`available`).

use super::{fill_tile, Band, Dense, FusedMbConv, Tile, CHUNK, LANES, POOL};
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

/// The input rows a band's expand reads, packed once per band (not once per chunk of
/// middle channels): input row `iy0 + i`, columns `16 b ..`, all channels, at
/// `((i * blocks) + b) * cin * 16` (see `pack_block`). At stride 2 (`S`) a whole block's
/// sixteen columns are packed even ones first, then odd ones: the expand is the same
/// per column, so its sums come out already split into the tile's two stride phases,
/// with no shuffles per middle channel.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn pack_input<const S: usize>(
    x: &[f32],
    cin: usize,
    iy0: usize,
    iy1: usize,
    t: &Tile,
    pack: &mut [f32],
) {
    let blocks = t.w.div_ceil(LANES);
    let hw = t.h * t.w;
    // Every load stays inside x (see `pack_block`), every store inside pack.
    assert!(iy1 <= t.h && x.len() >= cin * hw && pack.len() >= (iy1 - iy0) * blocks * cin * LANES);
    for (i, iy) in (iy0..iy1).enumerate() {
        for (b, x0) in (0..t.w).step_by(LANES).enumerate() {
            let left = (t.w - x0).min(LANES);
            let at = (i * blocks + b) * cin * LANES;
            pack_block::<S>(
                x.as_ptr().add(iy * t.w + x0),
                hw,
                cin,
                left,
                &mut pack[at..],
            );
        }
    }
}

/// Zeros everything of the padded tiles (`tiles`: tiles of `t`'s band from padded row
/// `pr0`, one after the other) that the expand never writes: the rows outside the image
/// and each image row's padding columns. Once per band: the chunks reuse the tiles with
/// the same layout and write only the image's positions.
fn zero_padding(tiles: &mut [f32], tile_len: usize, pr0: usize, p: usize, s: usize, t: &Tile) {
    // The padding of an image row: each phase's positions outside its input run.
    assert!(s <= 2);
    let mut spans = [(0, 0); 2];
    for (ph, span) in spans.iter_mut().enumerate().take(s) {
        let (lo, n, _) = t.phase_data(ph, p, s);
        *span = (ph * t.phase_len + lo, ph * t.phase_len + lo + n);
    }
    for tile in tiles.chunks_exact_mut(tile_len) {
        for (r, row) in tile.chunks_exact_mut(t.padded_row).enumerate() {
            if (pr0 + r).checked_sub(p).filter(|&iy| iy < t.h).is_none() {
                row.fill(0.0);
                continue;
            }
            for (ph, &(a, z)) in spans[..s].iter().enumerate() {
                row[ph * t.phase_len..a].fill(0.0);
                row[z..(ph + 1) * t.phase_len].fill(0.0);
            }
        }
    }
}

/// The expand layer for middle channels `c0 .. c0 + cc` straight into their padded
/// tiles (`tiles`: cc tiles, one after the other): ReLU6(W x + bias) at each input
/// position of padded rows `pr0 ..` (the padding is `zero_padding`'s; `S` is the stride).
/// The input comes from `pack_input`'s band (input rows from `iy0`); six channels (four
/// or one at the end of a chunk whose width is not a multiple of six) by sixteen columns
/// are summed in registers across all input channels.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn expand_band<const S: usize>(
    xpack: &[f32],
    iy0: usize,
    cin: usize,
    e: &Dense,
    c0: usize,
    cc: usize,
    pr0: usize,
    p: usize,
    tiles: &mut [f32],
    t: &Tile,
) {
    let blocks = t.w.div_ceil(LANES);
    let tile_len = tiles.len() / cc;
    let rows = tile_len / t.padded_row;
    assert!(e.weight.len() >= (c0 + cc) * cin && e.bias.len() >= c0 + cc);
    // Where the vector stores of a whole block of sixteen columns land in a padded row
    // grows with the column, so checking the last whole block covers every one.
    if t.w >= LANES {
        let last = (t.w - LANES) / LANES * LANES;
        let (a, z) = phase_at::<S>(last, p, t.phase_len);
        assert!(
            a.max(z) + 8 <= t.padded_row,
            "fused block: expand store geometry"
        );
    }
    let weights = e.weight[c0 * cin..(c0 + cc) * cin].as_ptr();
    let bias = &e.bias[c0..c0 + cc];
    for r in 0..rows {
        // Rows outside the image stay as `zero_padding` left them.
        let Some(iy) = (pr0 + r).checked_sub(p).filter(|&iy| iy < t.h) else {
            continue;
        };
        let row_at = r * t.padded_row;
        for (b, x0) in (0..t.w).step_by(LANES).enumerate() {
            let left = (t.w - x0).min(LANES);
            let xb = xpack[((iy - iy0) * blocks + b) * cin * LANES..][..cin * LANES].as_ptr();
            let mut c = 0;
            while c < cc {
                let w = std::slice::from_raw_parts(weights.add(c * cin), (cc - c) * cin);
                let (b, rows) = (&bias[c..], tiles.as_mut_ptr().add(c * tile_len + row_at));
                // Sums of G channels, activated into their tile rows.
                macro_rules! channels {
                    ($g:literal) => {{
                        let acc = sums::<$g>(xb, LANES, cin, w);
                        if left == LANES {
                            store_block::<$g, S>(acc, b, rows, tile_len, x0, p, t.phase_len);
                        } else {
                            let tiles = &mut tiles[c * tile_len + row_at..];
                            store_part::<$g>(acc, b, tiles, tile_len, x0, left, p, S, t);
                        }
                        $g
                    }};
                }
                c += match group(cc - c) {
                    6 => channels!(6),
                    4 => channels!(4),
                    _ => channels!(1),
                };
            }
        }
    }
}

/// Output channels summed together in registers, out of `rem` left: six (twelve sums in
/// flight keep both FMA units busy through their latency) unless that would leave one to
/// three, then four, then one.
#[inline(always)]
fn group(rem: usize) -> usize {
    match rem {
        6 | 10.. => 6,
        4.. => 4,
        _ => 1,
    }
}

/// ReLU6(sums + bias) of `G` channels at the sixteen input columns from `x0` into
/// their padded tile rows (`rows`: the first channel's row; channels `tile_len` apart):
/// contiguous at stride 1, the even and the odd columns (already apart, see
/// `pack_input`) to their phases at stride 2.
///
/// # Safety
/// Each channel's stores must fit its row (`expand_band` checks the last block).
#[inline(always)]
unsafe fn store_block<const G: usize, const S: usize>(
    acc: [[__m256; 2]; G],
    bias: &[f32],
    rows: *mut f32,
    tile_len: usize,
    x0: usize,
    p: usize,
    phase_len: usize,
) {
    let (a_at, z_at) = phase_at::<S>(x0, p, phase_len);
    let bias = &bias[..G];
    for j in 0..G {
        let b = Some(bias[j]);
        let (v0, v1) = (activate(acc[j][0], b), activate(acc[j][1], b));
        let row = rows.add(j * tile_len);
        _mm256_storeu_ps(row.add(a_at), v0);
        _mm256_storeu_ps(row.add(z_at), v1);
    }
}

/// Where the first and the second eight sums of the sixteen input columns from `x0` (a
/// multiple of sixteen) go in a padded row: at stride 1 one after the other; at stride 2
/// (the even columns first, see `pack_input`) where the even and the odd columns start
/// in their phases. Input column x sits at padded column x + p.
#[inline(always)]
fn phase_at<const S: usize>(x0: usize, p: usize, phase_len: usize) -> (usize, usize) {
    if S == 1 {
        (x0 + p, x0 + p + 8)
    } else {
        let even = (p % 2) * phase_len + (x0 + p) / 2;
        let odd = ((p + 1) % 2) * phase_len + (x0 + p).div_ceil(2);
        (even, odd)
    }
}

/// `store_block` for a block with only `left` real columns (the rest of the row is
/// padding), one value at a time.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn store_part<const G: usize>(
    acc: [[__m256; 2]; G],
    bias: &[f32],
    tiles: &mut [f32],
    tile_len: usize,
    x0: usize,
    left: usize,
    p: usize,
    s: usize,
    t: &Tile,
) {
    for (j, a) in acc.iter().enumerate() {
        let tile = &mut tiles[j * tile_len..][..t.padded_row];
        let b = Some(bias[j]);
        let mut tmp = [0f32; LANES];
        _mm256_storeu_ps(tmp.as_mut_ptr(), activate(a[0], b));
        _mm256_storeu_ps(tmp.as_mut_ptr().add(8), activate(a[1], b));
        for (i, &v) in tmp[..left].iter().enumerate() {
            let col = x0 + i + p;
            tile[(col % s) * t.phase_len + col / s] = v;
        }
    }
}

/// Packs a block of `left` (at most sixteen) columns of `rows` rows, `stride` apart from
/// `src`, into `pack` (sixteen floats per row, zeros past `left`; a whole block even
/// columns first at `S` = 2, see `pack_input`). The rows are whole planes apart (a
/// multiple of 4 KiB at the usual sizes): read in place they would all fall in one L1
/// set and evict each other before the next channels reuse them.
///
/// # Safety
/// `src + i * stride .. + left` must be readable for every row i.
#[inline(always)]
unsafe fn pack_block<const S: usize>(
    src: *const f32,
    stride: usize,
    rows: usize,
    left: usize,
    pack: &mut [f32],
) {
    assert!(pack.len() >= rows * LANES && left <= LANES);
    for (i, dst) in pack.chunks_exact_mut(LANES).take(rows).enumerate() {
        let row = src.add(i * stride);
        if left == LANES {
            // The next block's line, fetched while this block's sums run: the planes are
            // read as strided streams, which the hardware prefetcher follows poorly
            // (8-10 % on the 128 px blocks, A/B).
            _mm_prefetch::<_MM_HINT_T0>(row.add(LANES) as *const i8);
            let (a, z) = (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)));
            let (a, z) = if S == 2 { deinterleave8(a, z) } else { (a, z) };
            _mm256_storeu_ps(dst.as_mut_ptr(), a);
            _mm256_storeu_ps(dst.as_mut_ptr().add(8), z);
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

/// Sixteen consecutive values (`a`, then `z`) split into the even-indexed and the
/// odd-indexed eight, each in order.
#[inline(always)]
unsafe fn deinterleave8(a: __m256, z: __m256) -> (__m256, __m256) {
    // Per 128-bit lane: [a0 a2 z0 z2], then put the lanes' halves in order.
    let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, z);
    let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, z);
    let e = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)));
    let o = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o)));
    (e, o)
}

#[inline(always)]
unsafe fn pairs(even: &mut [f32], odd: &mut [f32], src: &[f32], expand_bias: Option<f32>) {
    let n = even.len().min(odd.len()).min(src.len() / 2);
    let mut i = 0;
    while i + 8 <= n {
        let a = _mm256_loadu_ps(src.as_ptr().add(2 * i));
        let z = _mm256_loadu_ps(src.as_ptr().add(2 * i + 8));
        let (e, o) = deinterleave8(a, z);
        _mm256_storeu_ps(even.as_mut_ptr().add(i), activate(e, expand_bias));
        _mm256_storeu_ps(odd.as_mut_ptr().add(i), activate(o, expand_bias));
        i += 8;
    }
    super::deinterleave(&mut even[i..], &mut odd[i..], &src[2 * i..], expand_bias);
}

/// Output rows `r0 .. r1` of the whole block, every middle channel, the project included:
/// per chunk of middle channels the expand fills the chunk's padded tiles, then row by
/// row the depthwise output of all the chunk's channels goes into a small packed buffer
/// (sixteen columns per channel, block by block: already the layout the project's
/// register kernel reads) and the project adds W[:, chunk] times it onto the output row.
/// Nothing bigger than the tiles is written between the layers: the depthwise output
/// no longer round-trips through L3, nor is the input packed from cold planes per chunk.
///
/// # Safety
/// The CPU must have AVX2 and FMA. `y` points at the image's cout x oh x ow output and
/// no other thread touches its rows `r0 .. r1` meanwhile.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn block_rows<const K: usize, const S: usize>(
    b: &FusedMbConv,
    x: &[f32],
    y: *mut f32,
    r0: usize,
    r1: usize,
    t: &Tile,
) {
    let p = K / 2;
    let cc_max = CHUNK.min(b.mid);
    let (pr0, pr1) = (r0 * S, (r1 - 1) * S + K);
    let tile_len = (pr1 - pr0) * t.padded_row;
    let blocks = t.ow.div_ceil(LANES);
    let plane = t.oh * t.ow;
    // The furthest float a tap of the band's last row reads (see `Tile`): checked
    // once, so the depthwise loads stay inside each tile.
    let reach = ((r1 - r0 - 1) * S + K - 1) * t.padded_row
        + (S - 1) * t.phase_len
        + blocks * LANES
        + (K - 1) / S;
    assert!(
        reach <= tile_len
            && r1 <= t.oh
            && x.len() >= b.cin * t.h * t.w
            && b.project_chunks.len() == b.cout * b.mid
            && b.depthwise.weight.len() == b.mid * K * K,
        "fused block: band geometry"
    );
    let mut tiles = POOL.take(cc_max * tile_len);
    // Up to four output rows' depthwise output (see `depthwise_rows`).
    let mut dpack = POOL.take(4 * blocks * cc_max * LANES);
    // The input rows the band's padded rows hold.
    let iy0 = pr0.saturating_sub(p).min(t.h);
    let iy1 = pr1.saturating_sub(p).min(t.h);
    let mut xpack = POOL.take(match b.expand {
        Some(_) => (iy1 - iy0) * t.w.div_ceil(LANES) * b.cin * LANES,
        None => 0,
    });
    if b.expand.is_some() {
        pack_input::<S>(x, b.cin, iy0, iy1, t, &mut xpack);
        zero_padding(&mut tiles[..cc_max * tile_len], tile_len, pr0, p, S, t);
    }
    for c0 in (0..b.mid).step_by(cc_max) {
        let cc = cc_max.min(b.mid - c0);
        let tiles = &mut tiles[..cc * tile_len];
        match &b.expand {
            Some(e) => expand_band::<S>(&xpack, iy0, b.cin, e, c0, cc, pr0, p, tiles, t),
            None => {
                for (c, tile) in tiles.chunks_exact_mut(tile_len).enumerate() {
                    let band = Band {
                        src: &x[(c0 + c) * t.h * t.w..(c0 + c + 1) * t.h * t.w],
                        expand_bias: None,
                        first_row: pr0,
                        first_src_row: 0,
                        kernel: &[],
                        bias: 0.0,
                    };
                    fill_tile(
                        &band,
                        tile,
                        t,
                        p,
                        S,
                        |d, s, e| run(d, s, e),
                        |ev, od, s, e| pairs(ev, od, s, e),
                    );
                }
            }
        }
        // The chunk's project weights: cout rows of cc (see `FusedMbConv::project_chunks`).
        let wc = &b.project_chunks[c0 * b.cout..(c0 + cc) * b.cout];
        let packed = blocks * cc * LANES;
        let mut r = r0;
        while r < r1 {
            // Several rows at a time where the band has them (see `depthwise_rows`): four
            // at stride 1 (5 % on the 5x5 blocks, A/B), two at stride 2.
            let n = if S == 1 && r1 - r >= 4 {
                4
            } else {
                (r1 - r).min(2)
            };
            let rows_at = (r - r0) * S * t.padded_row;
            for (c, tile) in tiles.chunks_exact(tile_len).enumerate() {
                let w = &b.depthwise.weight[(c0 + c) * K * K..(c0 + c + 1) * K * K];
                let bias = b.depthwise.bias[c0 + c];
                let dst = dpack.as_mut_ptr().add(c * LANES);
                let rows = tile.as_ptr().add(rows_at);
                match n {
                    4 => depthwise_rows::<K, S, 4>(
                        rows,
                        w,
                        bias,
                        t,
                        [
                            dst,
                            dst.add(packed),
                            dst.add(2 * packed),
                            dst.add(3 * packed),
                        ],
                        cc * LANES,
                    ),
                    2 => depthwise_rows::<K, S, 2>(
                        rows,
                        w,
                        bias,
                        t,
                        [dst, dst.add(packed)],
                        cc * LANES,
                    ),
                    _ => depthwise_rows::<K, S, 1>(rows, w, bias, t, [dst], cc * LANES),
                }
            }
            for (i, r) in (r..r + n).enumerate() {
                // The first chunk's sums start the output: onto the project bias and the
                // residual (the same row of the block's input), not onto y.
                let onto = match c0 {
                    0 => Onto::Init {
                        bias: &b.project.bias,
                        residual: b.residual.then(|| x.as_ptr().add(r * t.ow)),
                    },
                    _ => Onto::Output,
                };
                project_row(
                    &dpack[i * packed..(i + 1) * packed],
                    cc,
                    wc,
                    b.cout,
                    y.add(r * t.ow),
                    plane,
                    t.ow,
                    onto,
                );
            }
            r += n;
        }
    }
    POOL.give(xpack);
    POOL.give(dpack);
    POOL.give(tiles);
}

/// `R` consecutive output rows (one, two or four) of one channel's depthwise
/// convolution (bias, taps, ReLU6) from the tile rows at `rows` (the first output row's
/// first tap row), sixteen columns per register block; row q's block `i` is stored at
/// `dst[q] + i * block_stride` (all sixteen lanes: past the row's end they are padding).
/// Neighbouring rows share most of their input rows: each loaded vector feeds every
/// row's sums that use it, and with two rows or more four chains of sums or more hide
/// the multiply-add latency that two leave exposed. Each sum still takes its taps in
/// the same order, so the values are the same whatever R is.
#[inline(always)]
unsafe fn depthwise_rows<const K: usize, const S: usize, const R: usize>(
    rows: *const f32,
    w: &[f32],
    bias: f32,
    t: &Tile,
    dst: [*mut f32; R],
    block_stride: usize,
) {
    let w = &w[..K * K];
    let (zero, six, vb) = (
        _mm256_setzero_ps(),
        _mm256_set1_ps(6.0),
        _mm256_set1_ps(bias),
    );
    for (blk, x0) in (0..t.ow).step_by(LANES).enumerate() {
        let mut acc = [[vb; 2]; R];
        // Input tap row `ir` is row `ir - q S` of output row q's kernel.
        for ir in 0..(R - 1) * S + K {
            let row = rows.add(ir * t.padded_row + x0);
            for j in 0..K {
                let p = row.add((j % S) * t.phase_len + j / S);
                let (v0, v1) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
                for (q, a) in acc.iter_mut().enumerate() {
                    if ir >= q * S && ir - q * S < K {
                        let wv = _mm256_set1_ps(w[(ir - q * S) * K + j]);
                        a[0] = _mm256_fmadd_ps(wv, v0, a[0]);
                        a[1] = _mm256_fmadd_ps(wv, v1, a[1]);
                    }
                }
            }
        }
        for (a, d) in acc.iter().zip(dst) {
            let o = d.add(blk * block_stride);
            _mm256_storeu_ps(o, _mm256_min_ps(_mm256_max_ps(a[0], zero), six));
            _mm256_storeu_ps(o.add(8), _mm256_min_ps(_mm256_max_ps(a[1], zero), six));
        }
    }
}

/// What the project's sums of a chunk are added onto.
#[derive(Clone, Copy)]
enum Onto<'a> {
    /// The output rows, which earlier chunks wrote.
    Output,
    /// For the first chunk: the project bias plus, with a residual, the input row at
    /// `residual` (its first plane's; planes as far apart as the output's). The output
    /// rows hold nothing yet, and are never read.
    Init {
        bias: &'a [f32],
        residual: Option<*const f32>,
    },
}

impl Onto<'_> {
    /// The same for output channels from `c` on, at column `x0`.
    #[inline(always)]
    unsafe fn at(self, c: usize, x0: usize, plane: usize) -> Self {
        match self {
            Onto::Output => Onto::Output,
            Onto::Init { bias, residual } => Onto::Init {
                bias: &bias[c..],
                residual: residual.map(|r| r.add(c * plane + x0)),
            },
        }
    }
}

/// One output row of the project: `y` (its first plane's row; planes `plane` apart) =
/// `onto` + `w` (cout x cc) times the packed depthwise row `d` (blocks of cc x sixteen).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn project_row(
    d: &[f32],
    cc: usize,
    w: &[f32],
    cout: usize,
    y: *mut f32,
    plane: usize,
    ow: usize,
    onto: Onto,
) {
    for (blk, x0) in (0..ow).step_by(LANES).enumerate() {
        let xb = d[blk * cc * LANES..(blk + 1) * cc * LANES].as_ptr();
        let left = (ow - x0).min(LANES);
        let mut c = 0;
        while c < cout {
            let o = y.add(c * plane + x0);
            let w = &w[c * cc..];
            let onto = onto.at(c, x0, plane);
            c += match group(cout - c) {
                6 => add_sums::<6>(sums::<6>(xb, LANES, cc, w), o, plane, left, onto),
                4 => add_sums::<4>(sums::<4>(xb, LANES, cc, w), o, plane, left, onto),
                _ => add_sums::<1>(sums::<1>(xb, LANES, cc, w), o, plane, left, onto),
            };
        }
    }
}

/// Adds `G` channels' sums onto `onto` and writes `left` columns of their output rows
/// (`y`, planes `plane` apart); returns G. The whole-block case is unrolled per kind of
/// `onto`, so the sums stay in registers.
#[inline(always)]
unsafe fn add_sums<const G: usize>(
    acc: [[__m256; 2]; G],
    y: *mut f32,
    plane: usize,
    left: usize,
    onto: Onto,
) -> usize {
    if left == LANES {
        // `base(j, i)`: the eight values channel j's sums at column i go onto.
        macro_rules! each {
            (|$j:ident, $i:ident| $base:expr) => {
                for $j in 0..G {
                    let o = y.add($j * plane);
                    let $i = 0;
                    _mm256_storeu_ps(o, _mm256_add_ps($base, acc[$j][0]));
                    let $i = 8;
                    _mm256_storeu_ps(o.add(8), _mm256_add_ps($base, acc[$j][1]));
                }
            };
        }
        match onto {
            Onto::Output => each!(|j, i| _mm256_loadu_ps(y.add(j * plane + i))),
            Onto::Init {
                bias,
                residual: None,
            } => {
                let bias = &bias[..G];
                each!(|j, _i| _mm256_set1_ps(bias[j]))
            }
            Onto::Init {
                bias,
                residual: Some(r),
            } => {
                let bias = &bias[..G];
                each!(|j, i| _mm256_add_ps(
                    _mm256_loadu_ps(r.add(j * plane + i)),
                    _mm256_set1_ps(bias[j])
                ))
            }
        }
        return G;
    }
    for (j, a) in acc.iter().enumerate() {
        let o = y.add(j * plane);
        let mut tmp = [0f32; LANES];
        _mm256_storeu_ps(tmp.as_mut_ptr(), a[0]);
        _mm256_storeu_ps(tmp.as_mut_ptr().add(8), a[1]);
        for (i, v) in tmp[..left].iter().enumerate() {
            let onto = match onto {
                Onto::Output => *o.add(i),
                Onto::Init { bias, residual } => {
                    residual.map_or(0.0, |r| *r.add(j * plane + i)) + bias[j]
                }
            };
            o.add(i).write(onto + v);
        }
    }
    G
}
