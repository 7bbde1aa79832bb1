#!/usr/bin/env python3
"""The reference `cdo-inspect bench` is compared against: the same CDO pair in PyTorch eager
(CPU) and exported to ONNX and run by ONNX Runtime, timed stage by stage the same way.

Same backbones (efficientnet_pytorch / torchvision tensor names, so the same .pth files
load), same taps (Lite0: after blocks 2, 4, 10; ResNets: layer1..3), same input size,
same post-processing (1 - cos per level, bilinear align_corners to the input size, mean,
Gaussian sigma 4 as scipy, mean of the top 1 %), same thread count, same frame. Experts
whose weights file is absent get random weights, as in `cdo-inspect bench` (same cost).

    bench/.venv/bin/python bench/torch_reference.py [--backbone NAME] [--json FILE]
        [--image FILE | --frame WxH] [--tile SIZE [--overlap PX]]
        [--compare RUST_JSON ...] [--reference-json REF_JSON ...]

With --tile it also inspects the whole frame as `cdo-inspect bench --tile` does (the
frame is the region of interest, scale 1): cut into SIZE-pixel tiles sharing --overlap
pixels (the last row and column aligned to the edge), the tiles through the pair --batch
at a time, their maps max-blended into one map of the frame, smoothed once and scored;
ms per frame, tiles/s, the share outside the networks, and the frame's time over the
tiles' time as separate images of the batched pair. --frame WxH generates the same
noisy frame as `cdo-inspect bench --frame`.

With --compare it also prints the side-by-side table with `cdo-inspect bench`'s JSON.
Given several (rounds run alternately by `compare.sh`), and --reference-json with this
script's own JSON from the same rounds instead of timing again, each side keeps every
figure's best round (lowest median, highest frames/s): on a shared machine whose speed
drifts between runs, that compares both sides at their least disturbed.
A developer tool: not used by the product, its tests or CI.
"""

import argparse
import copy
import io
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter

FRAME_STAGES = ["decode", "cut_scale", "model", "discrepancy_upsample", "stitch",
                "smoothing_score"]
STAGES = [
    "decode",
    "preprocess",
    "expert",
    "apprentice",
    "discrepancy_upsample",
    "smoothing_score",
    "decision",
]
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
WEIGHTS = {
    "efficientnet-lite0": "efficientnet-lite0-57934424.pth",
    "resnet18": "resnet18-f37072fd.pth",
    "wide-resnet50-2": "wide_resnet50_2-95faca4d.pth",
}


# ---------------------------------------------------------------- backbones (truncated)


def conv_bn(cin, cout, k, stride, groups, eps, momentum):
    conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(cout, eps=eps, momentum=momentum)


class MBBlock(nn.Module):
    """efficientnet_pytorch's MBConvBlock, Lite variant (no SE, ReLU6, symmetric pad)."""

    def __init__(self, cin, cout, k, stride, expand, eps, momentum):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv, self._bn0 = conv_bn(cin, mid, 1, 1, 1, eps, momentum)
        self._depthwise_conv, self._bn1 = conv_bn(mid, mid, k, stride, mid, eps, momentum)
        self._project_conv, self._bn2 = conv_bn(mid, cout, 1, 1, 1, eps, momentum)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class Lite0(nn.Module):
    STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
              (5, 1, 6, 112, 3)]
    TAPS = (2, 4, 10)

    def __init__(self, momentum):
        super().__init__()
        self._conv_stem, self._bn0 = conv_bn(3, 32, 3, 2, 1, 1e-3, momentum)
        blocks, cin = [], 32
        for k, s, e, cout, n in self.STAGES:
            for r in range(n):
                blocks.append(MBBlock(cin, cout, k, s if r == 0 else 1, e, 1e-3, momentum))
                cin = cout
        self._blocks = nn.ModuleList(blocks[: self.TAPS[-1] + 1])

    def forward(self, x):
        h = F.relu6(self._bn0(self._conv_stem(x)))
        taps = []
        for i, b in enumerate(self._blocks):
            h = b(h)
            if i in self.TAPS:
                taps.append(h)
        return taps


class Basic(nn.Module):
    def __init__(self, cin, planes, stride, momentum, width_factor=1):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, planes, 3, stride, 1, 1e-5, momentum)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3, 1, 1, 1e-5, momentum)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(*conv_bn(cin, planes, 1, stride, 1, 1e-5, momentum))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride, momentum, width_factor=2):
        super().__init__()
        width, cout = planes * width_factor, planes * 4
        self.conv1, self.bn1 = conv_bn(cin, width, 1, 1, 1, 1e-5, momentum)
        self.conv2, self.bn2 = conv_bn(width, width, 3, stride, 1, 1e-5, momentum)
        self.conv3, self.bn3 = conv_bn(width, cout, 1, 1, 1, 1e-5, momentum)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(*conv_bn(cin, cout, 1, stride, 1, 1e-5, momentum))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision's ResNet up to layer3 (the three taps)."""

    def __init__(self, block, repeats, expansion, momentum):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, 64, 7, 2, 1, 1e-5, momentum)
        cin = 64
        for li, (n, planes) in enumerate(zip(repeats, (64, 128, 256))):
            blocks = []
            for bi in range(n):
                stride = 2 if bi == 0 and li > 0 else 1
                blocks.append(block(cin, planes, stride, momentum))
                cin = planes * expansion
            setattr(self, f"layer{li + 1}", nn.Sequential(*blocks))

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        taps = []
        for layer in (self.layer1, self.layer2, self.layer3):
            h = layer(h)
            taps.append(h)
        return taps


def build(backbone, momentum=0.1):
    if backbone == "efficientnet-lite0":
        return Lite0(momentum)
    if backbone == "resnet18":
        return ResNet(Basic, (2, 2, 2), 1, momentum)
    if backbone == "wide-resnet50-2":
        return ResNet(Bottleneck, (3, 4, 6), 4, momentum)
    raise SystemExit(f"unknown backbone {backbone}")


def load_expert(backbone, models_dir):
    """The expert in eval mode, from the upstream file when present (random otherwise)."""
    net = build(backbone)
    path = os.path.join(models_dir, WEIGHTS[backbone])
    if os.path.isfile(path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        own = net.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise SystemExit(f"{path}: missing tensors, e.g. {missing[:3]}")
        net.load_state_dict({k: state[k] for k in own})
        source = path
    else:
        source = f"random weights ({path} not found; speed only)"
    return net.eval(), source


# ---------------------------------------------------------------- the CDO pipeline


def decode(data):
    return Image.open(io.BytesIO(data)).convert("RGB")


def preprocess(images, size):
    # PIL's bilinear resize is antialiased, like the Rust side's triangle filter.
    arrs = [
        (np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0 - MEAN) / STD
        for im in images
    ]
    return torch.from_numpy(np.stack(arrs).transpose(0, 3, 1, 2).copy())


def discrepancy(fe, fa, size):
    total = 0
    for e, a in zip(fe, fa):
        cos = (F.normalize(e, dim=1) * F.normalize(a, dim=1)).sum(1, keepdim=True)
        total = total + F.interpolate(1.0 - cos, size=(size, size), mode="bilinear",
                                      align_corners=True)
    return (total / len(fe))[:, 0].numpy()


def smooth_and_score(raw):
    m = gaussian_filter(raw.astype(np.float64), sigma=4).astype(np.float32)
    k = max(1, int(0.01 * m.size))
    return m, float(np.partition(m.ravel(), m.size - k)[m.size - k:].mean())


def cdo_loss(fe, fa, mask, gamma=2.0, eps=1e-8):
    """MOM + OOM, as in the CDO paper (Cao et al., IEEE TII 2023; OOM weights detached)."""
    h0, w0 = fe[0].shape[-2:]
    s = (F.interpolate(mask, size=(h0, w0), mode="nearest") > 0).float()
    n = 1.0 - s
    total = 0
    for e, a in zip(fe, fa):
        if e.shape[-2:] != (h0, w0):
            e = F.interpolate(e, size=(h0, w0), mode="bilinear", align_corners=True)
            a = F.interpolate(a, size=(h0, w0), mode="bilinear", align_corners=True)
        d = ((F.normalize(e, dim=1) - F.normalize(a, dim=1)) ** 2).sum(1, keepdim=True)
        with torch.no_grad():
            mu_n = (d * n).sum() / n.sum().clamp_min(1)
            mu_s = (d * s).sum() / s.sum().clamp_min(1)
            w_n = (d / mu_n.clamp_min(eps)) ** gamma * n
            w_s = (mu_s / d.clamp_min(eps)) ** gamma * s
        total = total + ((w_n * d).sum() - (w_s * d).sum()) / (w_n.sum() + w_s.sum()).clamp_min(eps)
    return total


# ---------------------------------------------------------------- timing


def stats(samples):
    v = sorted(samples)
    n = len(v)
    median = v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
    rank = min(max(int(np.ceil(0.99 * n)), 1), n)
    return {"samples": n, "median_ms": median, "p99_ms": v[rank - 1], "mean_ms": sum(v) / n}


def run_inference(expert_fn, apprentice_fn, frame, size, batch, warmup, iterations):
    samples = [[] for _ in STAGES]
    e2e = []
    for it in range(warmup + iterations):
        ms = [0.0] * len(STAGES)
        start = lap = time.perf_counter()

        def mark(i):
            nonlocal lap
            now = time.perf_counter()
            ms[i] = (now - lap) * 1e3
            lap = now

        images = [decode(frame) for _ in range(batch)]
        mark(0)
        x = preprocess(images, size)
        mark(1)
        fe = expert_fn(x)
        mark(2)
        fa = apprentice_fn(x)
        mark(3)
        raw = discrepancy(fe, fa, size)
        mark(4)
        results = [smooth_and_score(r) for r in raw]
        mark(5)
        sum(score > sys.float_info.max for _, score in results)  # the verdicts
        mark(6)
        total = (time.perf_counter() - start) * 1e3
        if it >= warmup:
            for s, v in zip(samples, ms):
                s.append(v)
            e2e.append(total)
    e = stats(e2e)
    return {
        "batch": batch,
        "stages": [dict(stage=name, **stats(s)) for name, s in zip(STAGES, samples)],
        "end_to_end": e,
        "frames_per_s": batch / (e["median_ms"] / 1e3),
    }


def tile_origins(extent, tile, overlap):
    """As src/infer/geometry.rs: every tile - overlap pixels from 0, the last at the edge."""
    if tile == 0 or overlap >= tile or extent < tile:
        return []
    return list(range(0, extent - tile, tile - overlap)) + [extent - tile]


def run_frame(expert_fn, apprentice_fn, frame, tile, overlap, batch, warmup, iterations):
    """The whole frame in tiles, stage by stage as `cdo-inspect bench`'s frame run."""
    samples = [[] for _ in FRAME_STAGES]
    e2e = []
    for it in range(warmup + iterations):
        ms = [0.0] * len(FRAME_STAGES)
        start = time.perf_counter()
        img = decode(frame)
        ms[0] = (time.perf_counter() - start) * 1e3
        t = time.perf_counter()
        norm = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
        h, w = norm.shape[:2]
        origins = [(x, y) for y in tile_origins(h, tile, overlap)
                   for x in tile_origins(w, tile, overlap)]
        ms[1] += (time.perf_counter() - t) * 1e3
        raw = []
        for i in range(0, len(origins), batch):
            t = time.perf_counter()
            chunk = origins[i:i + batch]
            x = torch.from_numpy(np.stack([norm[y:y + tile, x:x + tile] for x, y in chunk])
                                 .transpose(0, 3, 1, 2).copy())
            ms[1] += (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            fe, fa = expert_fn(x), apprentice_fn(x)
            ms[2] += (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            raw.extend(discrepancy(fe, fa, tile))
            ms[3] += (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        stitched = np.full((h, w), -np.inf, dtype=np.float32)
        for (x, y), m in zip(origins, raw):
            np.maximum(stitched[y:y + tile, x:x + tile], m, out=stitched[y:y + tile, x:x + tile])
        ms[4] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        smooth_and_score(stitched)
        ms[5] = (time.perf_counter() - t) * 1e3
        total = (time.perf_counter() - start) * 1e3
        if it >= warmup:
            for s, v in zip(samples, ms):
                s.append(v)
            e2e.append(total)
    stages = [dict(stage=name, **stats(s)) for name, s in zip(FRAME_STAGES, samples)]
    med = {s["stage"]: s["median_ms"] for s in stages}
    outside = med["cut_scale"] + med["discrepancy_upsample"] + med["stitch"] + med["smoothing_score"]
    e = stats(e2e)
    return {
        "batch": batch,
        "tiles": len(origins),
        "map_width": w,
        "map_height": h,
        "stages": stages,
        "end_to_end": e,
        "ms_per_frame": e["median_ms"],
        "tiles_per_s": len(origins) / (e["median_ms"] / 1e3),
        "outside_networks_share": outside / (outside + med["model"]),
    }


def compare_with_images(frame_run, images):
    """As `FrameRun::compare_with_images`: the tiles as separate images of the batched pair
    (its model, discrepancy and smoothing medians over its batch), and the frame's
    inspection after decoding over that."""
    med = {s["stage"]: s["median_ms"] for s in images["stages"]}
    per_image = (med["expert"] + med["apprentice"] + med["discrepancy_upsample"]
                 + med["smoothing_score"]) / images["batch"]
    ms = per_image * frame_run["tiles"]
    inspect = sum(s["median_ms"] for s in frame_run["stages"] if s["stage"] != "decode")
    frame_run["tiles_as_images_ms"] = ms
    frame_run["tiled_over_images"] = inspect / ms


def generated_frame(width, height):
    """The PNG `cdo-inspect bench --frame WxH` generates: the same pixels (a gradient with
    xorshift noise), encoded by PIL."""
    state, mask = 0x2545F4914F6CDD1D, (1 << 64) - 1
    noise = np.empty(width * height, dtype=np.uint8)
    for i in range(width * height):
        state ^= (state << 13) & mask
        state ^= state >> 7
        state ^= (state << 17) & mask
        noise[i] = state >> 59
    noise = noise.reshape(height, width)
    xs = (np.arange(width, dtype=np.uint64) * 200 // width).astype(np.uint8)
    ys = (np.arange(height, dtype=np.uint64) * 200 // height).astype(np.uint8)
    rgb = np.stack([xs[None, :] + noise, ys[:, None] + noise, 128 + noise], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue(), f"generated {width}x{height} PNG"


def run_training(backbone, expert, image, size, warmup, iterations, batch=8, seed=1):
    torch.manual_seed(seed)
    apprentice = build(backbone).train()
    opt = torch.optim.AdamW(apprentice.parameters(), lr=2e-4, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    x = preprocess([image] * batch, size)
    mask = torch.zeros(batch, 1, size, size)
    for b in range(batch):  # the reference generator: 0..4 noise rectangles per image
        for _ in range(rng.integers(0, 5)):
            hh, hw = rng.integers(size // 40, size // 10, 2)
            cy, cx = rng.integers(hh, size - hh), rng.integers(hw, size - hw)
            x[b, :, cy - hh:cy + hh, cx - hw:cx + hw] = torch.from_numpy(
                ((rng.random((2 * hh, 2 * hw, 3)).astype(np.float32) - MEAN) / STD).transpose(2, 0, 1))
            mask[b, 0, cy - hh:cy + hh, cx - hw:cx + hw] = 1
    steps = []
    for it in range(warmup + iterations):
        start = time.perf_counter()
        with torch.no_grad():
            fe = expert(x)
        loss = cdo_loss(fe, apprentice(x), mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        if it >= warmup:
            steps.append((time.perf_counter() - start) * 1e3)
    return {"batch": batch, "step": stats(steps)}


def onnx_session(net, size, path, threads):
    import onnxruntime as ort

    x = torch.zeros(1, 3, size, size)
    try:
        torch.onnx.export(net, (x,), path, input_names=["x"], output_names=["f0", "f1", "f2"],
                          dynamic_axes={"x": {0: "b"}}, opset_version=17, dynamo=False)
    except Exception:  # exporters without the TorchScript path
        batch = torch.export.Dim("b", min=1, max=1024)
        torch.onnx.export(net, (x,), path, input_names=["x"], output_names=["f0", "f1", "f2"],
                          dynamic_shapes={"x": {0: batch}}, dynamo=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's workers spin after each run by default and would compete with the torch
    # post-processing that follows on a small machine. (Its discrepancy stage is still
    # slow after ORT, cause not found: compare ORT's model rows, see RESULTS.md.)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lambda t: [torch.from_numpy(o) for o in sess.run(None, {"x": t.numpy()})]


def report(impl, args, threads, expert_source, frame_info, b1, bn, train, frame_run=None):
    model = sum(s["median_ms"] for s in b1["stages"] if s["stage"] in ("expert", "apprentice"))
    post = sum(s["median_ms"] for s in b1["stages"]
               if s["stage"] in ("discrepancy_upsample", "smoothing_score"))
    return {
        "implementation": impl,
        "backbone": args.backbone,
        "expert_weights": expert_source,
        "apprentice_weights": "random weights (untrained; same cost)",
        "device": "cpu",
        "threads": threads,
        "input_size": args.size,
        "frame": frame_info,
        "warmup": args.warmup,
        "batch1": b1,
        "batch_n": bn,
        "train_step": train,
        "postprocess_share": post / model,
        "frame_run": frame_run,
        # ru_maxrss is in KiB on Linux; the process holds both runtimes, so it is shared.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def print_table(r):
    b1, bn = r["batch1"], r["batch_n"]
    print(f"{r['implementation']} bench: {r['backbone']}, {r['input_size']}x{r['input_size']}, "
          f"{r['device']}, {r['threads']} threads")
    print(f"expert: {r['expert_weights']}; apprentice: {r['apprentice_weights']}")
    f = r["frame"]
    print(f"frame: {f['source']} ({f['width']}x{f['height']}); warm-up {r['warmup']} iterations excluded")
    print(f"{'ms per batch':<22} {'b1 median':>12} {'b1 p99':>10} {'b%d median' % bn['batch']:>12} "
          f"{'b%d p99' % bn['batch']:>10}")
    rows = [(a["stage"], a, b) for a, b in zip(b1["stages"], bn["stages"])]
    rows.append(("end to end", b1["end_to_end"], bn["end_to_end"]))
    for name, a, b in rows:
        print(f"{name:<22} {a['median_ms']:>12.3f} {a['p99_ms']:>10.3f} {b['median_ms']:>12.3f} "
              f"{b['p99_ms']:>10.3f}")
    print(f"{'frames/s':<22} {b1['frames_per_s']:>12.1f} {'':>10} {bn['frames_per_s']:>12.1f}")
    print(f"post-processing / model time (batch 1): {100 * r['postprocess_share']:.1f} %")
    if r["train_step"]:
        t = r["train_step"]
        print(f"training step (batch {t['batch']}): median {t['step']['median_ms']:.1f} ms, "
              f"p99 {t['step']['p99_ms']:.1f} ms ({t['step']['samples']} steps)")
    f = r.get("frame_run")
    if f:
        print(f"whole frame ({f['map_width']}x{f['map_height']} px, {f['tiles']} tiles, batch "
              f"{f['batch']}): {f['ms_per_frame']:.1f} ms per frame, {f['tiles_per_s']:.1f} "
              f"tiles/s, {100 * f['outside_networks_share']:.1f} % outside the networks")
        for s in f["stages"]:
            print(f"  {s['stage']:<24} {s['median_ms']:>10.3f} ms median {s['p99_ms']:>10.3f} ms p99")
        print(f"  the tiles as {f['tiles']} separate images at batch {bn['batch']}: "
              f"{f['tiles_as_images_ms']:.1f} ms; frame (after decoding) / that: "
              f"{f['tiled_over_images']:.2f}")
    print(f"peak memory (RSS): {r['peak_rss_bytes'] >> 20} MiB")
    print()


def best_of(rounds):
    """One report from several of the same kind: per figure, the best round."""
    best = copy.deepcopy(rounds[0])
    for r in rounds[1:]:
        for run in ("batch1", "batch_n"):
            for mine, other in zip(best[run]["stages"], r[run]["stages"]):
                mine["median_ms"] = min(mine["median_ms"], other["median_ms"])
                mine["p99_ms"] = min(mine["p99_ms"], other["p99_ms"])
            for key in ("median_ms", "p99_ms"):
                best[run]["end_to_end"][key] = min(best[run]["end_to_end"][key],
                                                   r[run]["end_to_end"][key])
            best[run]["frames_per_s"] = max(best[run]["frames_per_s"], r[run]["frames_per_s"])
        if best.get("train_step") and r.get("train_step"):
            step, other = best["train_step"]["step"], r["train_step"]["step"]
            step["median_ms"] = min(step["median_ms"], other["median_ms"])
        best["postprocess_share"] = min(best["postprocess_share"], r["postprocess_share"])
    return best


def compare(ours, refs):
    """Side by side: medians in ms, and each reference's time over ours (> 1: we are faster)."""
    for r in refs:
        for key in ("backbone", "input_size", "threads"):
            if r[key] != ours[key]:
                raise SystemExit(f"--compare: {key} differs: {ours[key]} vs {r[key]}")
        if r["batch_n"]["batch"] != ours["batch_n"]["batch"]:
            raise SystemExit("--compare: the two runs used different --batch")
    names = [r["implementation"] for r in refs]
    print(f"side by side, {ours['backbone']} {ours['input_size']}x{ours['input_size']}, "
          f"{ours['threads']} threads (median ms; ratio = reference / cdo-inspect)")
    head = f"{'':<26} {'cdo-inspect':>12}" + "".join(f" {n:>14} {'ratio':>6}" for n in names)
    print(head)

    def med(r, run, stage):
        if stage == "end to end":
            return r[run]["end_to_end"]["median_ms"]
        if stage == "model":
            # cdo-inspect runs the two networks at the same time and reports the pair's
            # wall time as its own "model" stage; the references run them in turn.
            own = [s["median_ms"] for s in r[run]["stages"] if s["stage"] == "model"]
            return own[0] if own else sum(med(r, run, s) for s in ("expert", "apprentice"))
        if stage == "post-processing":
            return sum(med(r, run, s) for s in ("discrepancy_upsample", "smoothing_score"))
        return next(s["median_ms"] for s in r[run]["stages"] if s["stage"] == stage)

    def line(label, a, bs):
        cells = "".join(f" {b:>14.2f} {b / a if a > 0 else float('nan'):>6.2f}" for b in bs)
        print(f"{label:<26} {a:>12.2f}{cells}")

    for run in ("batch1", "batch_n"):
        b = ours[run]["batch"]
        for stage in STAGES + ["model", "post-processing", "end to end"]:
            line(f"b{b} {stage}", med(ours, run, stage), [med(r, run, stage) for r in refs])
        fps = [r[run]["frames_per_s"] for r in refs]
        a = ours[run]["frames_per_s"]
        print(f"{'b%d frames/s' % b:<26} {a:>12.1f}"
              + "".join(f" {x:>14.1f} {a / x:>6.2f}" for x in fps))
    trains = [r for r in refs if r.get("train_step")]
    if ours.get("train_step") and trains:
        a = ours["train_step"]["step"]["median_ms"]
        for r in trains:
            b = r["train_step"]["step"]["median_ms"]
            print(f"training step (batch 8): cdo-inspect {a:.1f} ms, {r['implementation']} "
                  f"{b:.1f} ms, cdo-inspect / reference = {a / b:.2f}")
    print(f"post-processing share of model time (b1): cdo-inspect "
          f"{100 * ours['postprocess_share']:.1f} %"
          + "".join(f", {r['implementation']} {100 * r['postprocess_share']:.1f} %" for r in refs))


def compare_frames(ours_rounds, refs_rounds):
    """The whole-frame runs round by round, each round's ratios from that round alone
    (reference time / cdo-inspect: above 1, cdo-inspect is faster), then their medians.
    `after dec.` is the inspection after decoding; `frame/tiles` is each side's frame time
    over its tiles' time as separate images of its batched pair."""
    rows = [(o, rs) for o, rs in zip(ours_rounds, refs_rounds)
            if o.get("frame_run") and all(r.get("frame_run") for r in rs)]
    if not rows:
        return
    f = rows[0][0]["frame_run"]
    print(f"\nwhole frame {f['map_width']}x{f['map_height']}, {f['tiles']} tiles of "
          f"{rows[0][0]['input_size']} px, batch {f['batch']}, round by round (ms; ratio = "
          "reference / cdo-inspect)")

    def inspect(fr):
        return sum(s["median_ms"] for s in fr["stages"] if s["stage"] != "decode")

    names = [r["implementation"] for r in rows[0][1]]
    head = f"{'round':<6} {'cdo-inspect':>11} {'after dec.':>10} {'frame/tiles':>11}"
    for n in names:
        head += f" | {n:>14} {'ratio':>6} {'after dec.':>10} {'ratio':>6} {'frame/tiles':>11}"
    print(head)
    table = []
    for i, (o, rs) in enumerate(rows, 1):
        of = o["frame_run"]
        cells = [of["ms_per_frame"], inspect(of), of["tiled_over_images"]]
        for r in rs:
            rf = r["frame_run"]
            cells += [rf["ms_per_frame"], rf["ms_per_frame"] / of["ms_per_frame"], inspect(rf),
                      inspect(rf) / inspect(of), rf["tiled_over_images"]]
        table.append(cells)

    def line(label, c):
        text = f"{label:<6} {c[0]:>11.1f} {c[1]:>10.1f} {c[2]:>11.2f}"
        for k in range(3, len(c), 5):
            text += (f" | {c[k]:>14.1f} {c[k + 1]:>6.2f} {c[k + 2]:>10.1f} {c[k + 3]:>6.2f}"
                     f" {c[k + 4]:>11.2f}")
        print(text)

    for i, c in enumerate(table, 1):
        line(str(i), c)
    if len(table) > 1:
        line("median", [float(np.median(col)) for col in zip(*table)])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="efficientnet-lite0", choices=list(WEIGHTS))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--train-iterations", type=int, default=10)
    frame_arg = p.add_mutually_exclusive_group(required=True)
    frame_arg.add_argument("--image", help="encoded frame decoded by every iteration")
    frame_arg.add_argument("--frame", help="a generated WxH frame (as cdo-inspect bench --frame)")
    p.add_argument("--tile", type=int,
                   help="also inspect the whole frame in tiles of this side (the input size)")
    p.add_argument("--overlap", type=int, default=0, help="pixels shared by neighbouring tiles")
    p.add_argument("--models-dir", default=os.environ.get("CDO_MODELS_DIR", "models"))
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--skip-onnx", action="store_true")
    p.add_argument("--json", help="write both reports here")
    p.add_argument("--compare", nargs="+",
                   help="cdo-inspect bench --json output(s) to compare with (several: rounds)")
    p.add_argument("--reference-json", nargs="+",
                   help="this script's --json output(s) from earlier rounds: compare those "
                        "instead of timing again")
    args = p.parse_args()

    if args.reference_json:
        if not args.compare:
            raise SystemExit("--reference-json needs --compare")
        rounds = [json.load(open(f)) for f in args.reference_json]
        ours = [json.load(open(f)) for f in args.compare]
        print(f"best of {len(ours)} cdo-inspect and {len(rounds)} reference rounds "
              "(each figure: its lowest median)")
        compare(best_of(ours), [best_of(list(r)) for r in zip(*rounds)])
        compare_frames(ours, rounds)
        return
    if args.tile:
        args.size = args.tile

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.frame:
        w, _, h = args.frame.lower().partition("x")
        frame, frame_source = generated_frame(int(w), int(h))
    else:
        frame, frame_source = open(args.image, "rb").read(), args.image
    image = decode(frame)
    frame_info = {"source": frame_source, "width": image.width, "height": image.height}
    expert, source = load_expert(args.backbone, args.models_dir)
    torch.manual_seed(0)
    apprentice = build(args.backbone).eval()
    reports = []

    print(f"PyTorch {torch.__version__} eager ...", file=sys.stderr)
    with torch.inference_mode():
        runs = [run_inference(expert, apprentice, frame, args.size, b, args.warmup, args.iterations)
                for b in (1, args.batch)]
        frame_run = tiled(expert, apprentice, frame, runs[1], args)
    train = None
    if args.train_iterations > 0:
        train = run_training(args.backbone, expert, image, args.size, min(args.warmup, 2),
                             args.train_iterations)
    reports.append(report("pytorch-eager", args, args.threads, source, frame_info, *runs, train,
                          frame_run))
    print_table(reports[-1])

    if not args.skip_onnx:
        import onnxruntime as ort

        print(f"ONNX Runtime {ort.__version__} ...", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            e = onnx_session(expert, args.size, os.path.join(tmp, "expert.onnx"), args.threads)
            a = onnx_session(apprentice, args.size, os.path.join(tmp, "apprentice.onnx"),
                             args.threads)
            runs = [run_inference(e, a, frame, args.size, b, args.warmup, args.iterations)
                    for b in (1, args.batch)]
            frame_run = tiled(e, a, frame, runs[1], args)
        reports.append(report("onnxruntime", args, args.threads, source, frame_info, *runs, None,
                              frame_run))
        print_table(reports[-1])

    if args.json:
        with open(args.json, "w") as f:
            json.dump(reports, f, indent=2)
    if args.compare:
        ours = [json.load(open(f)) for f in args.compare]
        compare(best_of(ours), reports)
        compare_frames(ours[-1:], [reports])


def tiled(expert_fn, apprentice_fn, frame, images, args):
    """With --tile, the whole frame in tiles, compared with `images` (the batched pair's
    run at the tile size); none otherwise."""
    if not args.tile:
        return None
    run = run_frame(expert_fn, apprentice_fn, frame, args.tile, args.overlap, args.batch,
                    args.warmup, args.iterations)
    compare_with_images(run, images)
    return run


if __name__ == "__main__":
    main()
