#!/usr/bin/env python3
"""The folder job done the Python way, next to `vitscope run` on the same folder.

What a user's script does with a PyTorch model and the DINO / DETR notebooks' recipes: the
reference model (tools/reference_model.py, the PyTorch form of vitscope's image model) in batches,
attention captured by wrapping each nn.MultiheadAttention to return its per-head weights, and per
image the same outputs as `vitscope run` with every view: features.npy, the PCA, channel and
token-norm pictures and the head's classes; the points, heads, masks (DINO's threshold), rollout
(vit-explain's) and cross-attention views, drawn with matplotlib over the image and saved as PNG.
Then `vitscope run` with every view, interleaved, REPEAT times each; medians and their ratio.

    /usr/bin/python3 bench/python_folder_run.py [--vitscope build/apps/vitscope]
        [--model assets/models/demo.safetensors] [--copies 2] [--batch 8] [--threads 1] [--repeat 3]

Debian's python3-torch, python3-opencv and python3-matplotlib (scripts/setup.sh --bench).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from reference_model import load_image, load_image_model, preprocess, reference_mode  # noqa: E402

POINTS = [(0.3, 0.3), (0.7, 0.3), (0.3, 0.7), (0.7, 0.7)]  # vitscope's default points
DISCARD_RATIO, THRESHOLD = 0.9, 0.6                          # vitscope's defaults


def capture_attention(model):
    """Wraps every nn.MultiheadAttention so that it also keeps its per-head weights (N,nh,L,S)."""
    captured = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.MultiheadAttention):
            def forward(*args, _module=module, _name=name, _forward=module.forward, **kwargs):
                kwargs.update(need_weights=True, average_attn_weights=False)
                out, weights = _forward(*args, **kwargs)
                captured[_name] = weights.detach()
                return out, weights
            module.forward = forward
    return captured


def overlay(ax, image, token_map, title, point=None):
    ax.imshow(image)
    ax.imshow(token_map, cmap="turbo", alpha=0.6, extent=(0, image.shape[1], image.shape[0], 0),
              interpolation="nearest")
    if point is not None:
        ax.scatter([point[0]], [point[1]], s=40, facecolors="none", edgecolors="white")
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def save_grid(path, tiles, columns):
    rows = (len(tiles) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.2 * rows), squeeze=False)
    for ax, draw in zip(axes.flat, tiles):
        draw(ax)
    for ax in list(axes.flat)[len(tiles):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def dino_mask(attn, threshold):
    """DINO's visualize_attention.py: the tokens holding `threshold` of each map's mass."""
    order = np.argsort(attn)
    cumulative = np.cumsum(attn[order]) / attn.sum()
    mask = np.zeros_like(attn)
    mask[order] = cumulative > 1 - threshold
    return mask


def rollout(layers, discard_ratio):
    """vit-explain's attention rollout: heads fused by mean, lowest entries dropped, (A + I) / 2."""
    result = torch.eye(layers[0].size(-1))
    for attention in layers:
        fused = attention.mean(dim=0)
        flat = fused.view(-1)
        _, indices = flat.topk(int(flat.size(-1) * discard_ratio), largest=False)
        flat[indices] = 0
        a = (fused + torch.eye(fused.size(-1))) / 2
        a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result
    return result


def write_image(out, image, features, logits, attention, encoder_names, cross_name):
    """One image's files: image (H,W,3) in [0,1]; features (E,h,w); attention by module (nh,S,S)."""
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "features.npy", features)
    e, h, w = features.shape
    tokens = features.reshape(e, -1).T
    centred = tokens - tokens.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    pca = centred @ vt[:3].T
    pca = (pca - pca.min(axis=0)) / (np.ptp(pca, axis=0) + 1e-8)
    save_grid(out / "pca.png", [lambda ax: ax.imshow(image), lambda ax: ax.imshow(pca.reshape(h, w, 3))], 2)
    strongest = np.argsort(-np.abs(features).mean(axis=(1, 2)))[:16]
    save_grid(out / "channels.png", [lambda ax, c=c: ax.imshow(features[c]) for c in strongest], 4)
    save_grid(out / "token_norm.png", [lambda ax: overlay(ax, image, np.linalg.norm(features, axis=0), "norm")], 1)
    if logits is not None:
        save_grid(out / "classes.png", [lambda ax: overlay(ax, image, logits.argmax(axis=0), "classes")], 1)

    points = [(x * (image.shape[1] - 1), y * (image.shape[0] - 1)) for x, y in POINTS]
    token_of = [int(y * h / image.shape[0]) * w + int(x * w / image.shape[1]) for x, y in points]
    last = attention[encoder_names[-1]].numpy()
    nh = last.shape[0]
    save_grid(out / "attention_points.png",
              [lambda ax, p=p, t=t: overlay(ax, image, last[:, t].mean(0).reshape(h, w), str(p), p)
               for p, t in zip(points, token_of)], 4)
    heads, masks = [], []
    for p, t in zip(points, token_of):
        maps = [last[:, t].mean(0)] + [last[k, t] for k in range(nh)]
        for i, m in enumerate(maps):
            heads.append(lambda ax, m=m, p=p, i=i: overlay(ax, image, m.reshape(h, w), f"head {i - 1}", p))
            masks.append(lambda ax, m=m, p=p, i=i: overlay(ax, image, dino_mask(m, THRESHOLD).reshape(h, w),
                                                           f"head {i - 1}", p))
    save_grid(out / "attention_heads.png", heads, nh + 1)
    save_grid(out / "attention_masks.png", masks, nh + 1)
    rolled = rollout([attention[n].clone() for n in encoder_names], DISCARD_RATIO).numpy()
    tiles = [lambda ax, p=p, t=t: overlay(ax, image, rolled[t].reshape(h, w), str(p), p) for p, t in zip(points, token_of)]
    tiles.append(lambda ax: overlay(ax, image, rolled.mean(0).reshape(h, w), "all tokens"))
    save_grid(out / "attention_rollout.png", tiles, 4)
    if cross_name:
        cross = attention[cross_name].numpy()
        save_grid(out / "attention_cross.png",
                  [lambda ax, p=p, t=t: overlay(ax, image, cross[:, t].mean(0).reshape(h, w), str(p), p)
                   for p, t in zip(points, token_of)], 4)


def python_run(model, captured, paths, out, batch):
    """The whole folder, batch by batch; returns images/s."""
    start = time.perf_counter()
    encoder_names = sorted(n for n in captured_names(model) if n.startswith("transformer.encoder"))
    cross = [n for n in captured_names(model) if n.endswith("multihead_attn")]
    for first in range(0, len(paths), batch):
        chunk = paths[first:first + batch]
        images = [load_image(str(p)) for p in chunk]
        pixels, mask = preprocess(images, model.patch_size, model.image_size, model.mean, model.std,
                                  model.resize_mode or "longer", model.resize_size,
                                  model.interpolation or "area-linear")
        captured.clear()
        result = model(pixels, mask)
        for i, (h_i, w_i) in enumerate(result["grid"]):
            hh, ww = result["features"].shape[2:]
            keep = [r * ww + c for r in range(h_i) for c in range(w_i)]
            attention = {n: captured[n][i][:, keep][:, :, keep] for n in encoder_names + cross[-1:]}
            picture = images[i] / 255.0  # load_image gives RGB in [0, 255]
            logits = result["logits"][i, :, :h_i, :w_i].detach().numpy() if "logits" in result else None
            write_image(out / f"{first + i}", picture, result["features"][i, :, :h_i, :w_i].detach().numpy(),
                        logits, attention, encoder_names, cross[-1] if cross else None)
    return len(paths) / (time.perf_counter() - start)


def captured_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.MultiheadAttention)]


def vitscope_run(vitscope, folder, out, model, batch, threads):
    subprocess.run([vitscope, "run", str(folder), "--out", str(out), "--model", model, "--batch", str(batch),
                    "--threads", str(threads)], check=True, stderr=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())["timings"]["images_per_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vitscope", default=str(ROOT / "build/apps/vitscope"))
    parser.add_argument("--model", default=str(ROOT / "assets/models/demo.safetensors"))
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_image_model(args.model)
    reference_mode(model)  # grad on: PyTorch's reference path, so that every module is called
    captured = capture_attention(model)
    work = Path(tempfile.mkdtemp())
    try:
        folder = work / "images"
        for copy in range(args.copies):
            (folder / str(copy)).mkdir(parents=True)
            for p in sorted((ROOT / "assets/images").glob("*")):
                if p.suffix in (".png", ".jpg"):
                    shutil.copy(p, folder / str(copy) / p.name)
        paths = sorted(p for p in folder.rglob("*") if p.is_file())
        ours, theirs = [], []
        for r in range(args.repeat):
            theirs.append(python_run(model, captured, paths, work / f"python{r}", args.batch))
            ours.append(vitscope_run(args.vitscope, folder, work / f"vitscope{r}", args.model, args.batch, args.threads))
            shutil.rmtree(work / f"python{r}")
            shutil.rmtree(work / f"vitscope{r}")
        python_median, vitscope_median = statistics.median(theirs), statistics.median(ours)
        print(f"| images | threads | batch | Python images/s | vitscope images/s | ratio |")
        print(f"| --- | --- | --- | --- | --- | --- |")
        print(f"| {len(paths)} | {args.threads} | {args.batch} | {python_median:.2f} | {vitscope_median:.2f} "
              f"| {vitscope_median / python_median:.1f}x |")
        print(f"runs: Python {', '.join(f'{x:.2f}' for x in theirs)}; vitscope {', '.join(f'{x:.2f}' for x in ours)}")
    finally:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
