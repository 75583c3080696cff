#!/usr/bin/env python3
"""Trains vitscope's demo model: a per-patch shape classifier on procedurally generated scenes (CPU).

Usage (Debian's python3-torch / python3-opencv only import from the system interpreter):
    /usr/bin/python3 tools/train_demo.py --norm-first --stem 16,32,64,96 --workers 2 --threads 1 --lr 2e-3 --steps 1300
                                                          # the shipped recipe, 27 minutes on 2 cores
    /usr/bin/python3 tools/train_demo.py --steps 200 --out /tmp/demo.safetensors --no-assets   # a quick try
    /usr/bin/python3 tools/train_demo.py --evaluate   # the shipped model's held-out figures again, no training

Writes (paths relative to the repository root):
    assets/models/demo.safetensors   the model (tools/reference_model.py's export_image_model)
    assets/models/demo.json          held-out accuracy (overall and per class), attention-mass figures,
                                     training time, seed, command, recipe
    assets/images/shapes_1.png .. shapes_4.png   four example scenes (seed EXAMPLE_SEED; shapes_4 is 160x224 HxW)
    assets/images/SOURCES.md         their provenance (a section between markers, rewritten on every run)
Everything is seeded: training scenes come from np.random.RandomState(seed), the held-out scenes from
RandomState(seed + 1000), the examples from RandomState(EXAMPLE_SEED); torch.manual_seed(seed) sets the
initial weights; torch.set_num_threads(--threads). A rerun on the same machine gives the same model.

Scene generator (what the C++ side re-implements; it must match the distribution, not the bits).
"U{a..b}" is a uniform integer with both ends included, "U[a, b)" a uniform real.
 1. Size (H, W): (224, 224) with probability 1/2, (160, 224) with 1/4, (224, 160) with 1/4.
    Both are multiples of p = 16 and the longer side is image_size = 224, so preprocessing never resizes
    and the patch grid is exact (14x14, 10x14 or 14x10 tokens); in a batch the smaller images are padded.
 2. Background, float RGB in [0, 255], one of four kinds with probability 1/4 each; every colour
    below is three independent U{0..255} values (R, G, B):
    - "gradient": colours c0, c1, angle a ~ U[0, 2pi); u = x*cos(a) + y*sin(a) over pixel centres
      x in 0..W-1, y in 0..H-1; t = (u - min u) / (max u - min u); pixel = c0 + (c1 - c0) * t.
    - "field": a grid of gh x gw random colours, gh ~ U{2..5}, gw ~ U{2..5} (drawn in that order, then
      the colours row by row), enlarged to W x H by cv2.resize(..., INTER_CUBIC) on float32, clipped to [0, 255].
    - "stripes": colours c0, c1, period P ~ U[12, 48) px, angle a ~ U[0, pi), phase f ~ U[0, 2pi);
      u = x*cos(a) + y*sin(a); pixel = c0 + (c1 - c0) * (0.5 + 0.5*sin(2pi*u/P + f)).
    - "noise": colour c0, sigma s ~ U[10, 40); pixel = c0 + N(0, s^2), independently per pixel and channel.
    The background's mean colour m (mean over pixels, per channel, of this float image) is kept.
    The image is then rounded (np.round) and clipped to uint8 [0, 255] before any shape is drawn.
 3. Shapes: n ~ U{2..5}, drawn one after another (later shapes cover earlier ones). For each, in this order:
    - kind ~ U{1..4}: 1 disc, 2 square, 3 triangle, 4 ring (the class id);
    - radius r ~ U{20..60} px;
    - centre cx ~ U{r//2 .. W-1-r//2}, cy ~ U{r//2 .. H-1-r//2} (so at least half of the radius is inside);
    - colour c: three U{0..255}; redrawn (all three) while mean over RGB of |c - m| < 40 (contrast with
      the background's mean colour);
    - kind-specific: square and triangle draw a rotation a ~ U[0, 2pi) and are the regular polygon with
      vertices (cx + r*cos(a + 2pi*k/N), cy + r*sin(a + 2pi*k/N)), k = 0..N-1 (N = 4, 3; r is the
      circumradius), each coordinate rounded to the nearest integer, drawn with cv2.fillPoly; a disc is
      cv2.circle(centre, r, thickness=-1); a ring draws a thickness factor q ~ U[0.3, 0.5) and is
      cv2.circle(centre, r, thickness=max(2, round(q*r))) (OpenCV centres the band on radius r).
    All drawing uses lineType LINE_8 (no anti-aliasing) and shift 0, on the uint8 RGB image with colour c
    and, with the identical call, on the label map (uint8 H x W, initially 0) with the value kind.
 4. Camera noise: sigma g ~ U[0, 8); image = clip(round(image + N(0, g^2)), 0, 255) per pixel and channel.
Random draws happen in exactly the order above (size, background kind, background parameters, n, then per
shape kind, r, cx, cy, colour (+ redraws), kind-specific values, then g and the noise).

Labels:
  * pixel label: the kind (1..4) of the topmost shape covering the pixel, 0 (background) elsewhere, i.e.
    the label map of step 3.
  * patch label (p = 16): the MAJORITY pixel label of the patch's 16x16 = 256 pixels; a tie goes to the
    smallest class id (np.argmax over the class counts 0..4). Images are multiples of 16, so every real
    patch is full; padding tokens carry no label (ignored by the loss and the accuracy).
  * for the attention figure, the same rule on the instance map (0 background, i for the i-th drawn shape)
    gives each patch its majority shape instance.

Model: ImageTransformer(d_model 96, nhead 4, 3 encoder layers, 1 decoder layer, dim_feedforward 384, relu,
pre-norm with --norm-first (the shipped model; post-norm without), dropout 0, patch_size 16, image_size 224,
ImageNet mean/std, position "sine", position_mode "attention", target "tokens", num_classes 5, class_names
background/disc/square/triangle/ring), with --stem 16,32,64,96 a convolutional patch embedding (the shipped
model): four 3x3 stride-2 convolutions of 16, 32, 64 and 96 channels, each with BatchNorm2d (batch statistics
per worker with --workers) and ReLU, then a 1x1 projection to d_model; export folds every BatchNorm into its
convolution (reference_model.PatchEmbed with stem_channels, the file's patch_stem). Without --stem it is the
single 16x16 stride-16 convolution of ViT.
Why the stem: the linear patch embedding never learnt squares or triangles (at most 3% of their patches in
every recipe below, 64 minutes of training included): inside a shape, patches of every kind look the same,
and only the outline tells them apart. A small CNN (8 convolutions with BatchNorm, no attention, 500 steps)
was the first model to learn them at all (square 0.13, triangle 0.14); the stem gives each token such local
features over 31 pixels, from 15 before its patch to its last pixel. A 500-step pilot with the stem had a
training loss of 0.527 at step 250 against 0.606 without it (same seed and schedule).
position_mode "attention" (DETR) rather than "input" (ViT): the sine position is added to the queries and
keys of every attention but never to the values, so the tokens stay pure content and position only steers
where a token looks; telling a disc from a ring or a square from a triangle needs each token to gather the
outline of its own shape from its neighbours, which is exactly attention that is local in position and
similar in content. Mode "input" adds the position once and the layers have to keep it alive in the
residual stream; in a short pilot (300 steps each, same seed) mode attention reached a lower loss.
Pre-norm: with the same seed and schedule, its training loss after 300 steps was 0.610 against 0.640
for post-norm.
Training: cross-entropy over real patches, AdamW (--lr, shipped 2e-3, betas 0.9/0.999, weight decay 0.05),
linear warmup over the first 5% of the steps then cosine decay to 5% of the lr, gradient-norm clip 1.0,
batch 32, --steps (shipped 1300), scenes generated on the fly (never repeated) by a second process in the order one process
would draw them, so the model does not depend on it (tools/test_train_demo.py checks it). Drawing a
batch costs 0.44 s against 1.26 s of forward and backward at one torch thread (1.14 s at two).
With --workers N, N processes each hold a replica and take their N-th of every batch; each worker's loss is
its patch losses summed over the whole batch's patch count, the gradients are summed across workers (gloo
all-reduce) and every replica takes the same step: without a stem, one worker's step, up to rounding
(tools/test_train_demo.py checks it); with one, each worker's BatchNorm normalises over its own part of the
batch, and the exported statistics are worker 0's. Two workers of one thread took 0.975 s a step against 1.5 s for one worker of two threads
(40 steps each, OPENBLAS_CORETYPE unset).
The shipped model: 1604 s of training (1.23 s a step), 27 min 12 s for the whole command (/usr/bin/time, an
AMD EPYC Zen 1 with 2 cores, OPENBLAS_CORETYPE unset); on the 500 held-out scenes 0.930 per patch (background
0.990, disc 0.761, square 0.643, triangle 0.624, ring 0.919), attention mass 0.120 per shape against a share
of 0.077.
Without the stem (all per-patch accuracy on held-out scenes):
  --norm-first --steps 2400 (3811 s, one process, scenes drawn inline)   0.837, attention mass 0.483 per shape
  --steps 1050 --lr 2e-3 --threads 1 (1489 s of training)                0.810, attention mass 0.175 per shape
  --steps 1450 --workers 2 --threads 1 (1506 s, 1.04 s a step)           0.814, attention mass 0.207 per shape
The first was the demo model before the stem. Its last encoder layer gathered each shape more (0.48 of a
shape token's attention on its own shape, against 0.12 now), but it called squares and triangles discs or
rings (0.026 and 0.034 of their patches right).
Pilots without the stem that did not help (seed 1, one torch thread each, scenes drawn inline, per-patch
accuracy on 150 held-out scenes; none of them learnt squares or triangles, at most 3% of their patches):
  500 steps, lr 2e-3                                                  0.805
  + class weights (frequency^-0.5, undone on the head's bias after)   0.806
  + curriculum: radius 40..60 for the first 40% of the steps          0.800
  + position_mode input, 8 heads                                      0.812 (1.4x the time a step)
  + squares and triangles upright (rotation within 15 degrees)       0.806
  900 steps of batch 16, lr 4e-3                                      0.798
Even one shape of radius 40..60 per scene (300 steps, lr 2e-3) ended with every shape called a disc
(square 0.01, triangle and ring 0): the kinds come late even in the easiest scenes.
Training-only auxiliary losses (500 steps, lr 2e-3, heads dropped before export), against 0.805:
  the kind of each 4x4 cell of a patch, from the output tokens                    0.804
  that, plus the patch kind from every encoder layer (deep supervision)           0.819
  deep supervision alone                                                          0.816
  deep supervision, plus each patch's visible polygon corner (none, square's,
  triangle's) from the first encoder layer                                        0.813
Deep supervision gains a point but squares and triangles stay below 3%, and the last layer's attention
mass per shape falls from 0.12 to 0.02-0.03: the model no longer gathers its shape there, so it is not used.

Evaluation (held-out, RandomState(seed + 1000), 500 scenes): per-patch accuracy over all real patches and
per class (the share of patches whose true label is c that are predicted c), computed with the exported
file read back by load_image_model, in batches of 25 (batching is invisible by the spec).
Attention mass, for every attention module whose queries are the image's tokens (each encoder layer's
self-attention, the decoder's self-attention over its targets, which are the tokens, and its cross-attention
to the memory) and for the encoder rollout ((A + I) / 2, rows renormalised, layers multiplied): the weights
exactly as the model's forward feeds each module (attention_maps), averaged over heads (rows sum to 1 over
the real tokens). For every shape instance that owns at least one patch (majority rule above) and every
query token among its patches: mass = the sum of that token's attention over the shape's patches; share =
the shape's patch count / the image's real patch count. Reported per module ("per_shape_by_module"): the
mean over all such shapes of the mean mass over the shape's tokens; and for the last encoder layer the same
with the mean share ("per_shape"), and the means over all (token) points ("per_point").
For the shipped model: share 0.077; encoder layers 0.188, 0.108, 0.120, rollout 0.215; decoder
self-attention 0.476, cross-attention 0.212. Its shape-gathering attention is the decoder's self-attention:
the encoder's last layer looks at much the same few tokens from every query.
"""

import argparse
import datetime
import json
import math
import multiprocessing
import os
import queue as queue_module
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

# torch's own threads already split each operation; OpenBLAS's threads inside them oversubscribe
# the cores (one batch's forward and backward pass: 1.32 s of CPU with OpenBLAS's default threads,
# 1.03 s with one).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_model import (ImageTransformer, PatchEmbed, export_image_model, load_image_model,  # noqa: E402
                             preprocess)

ROOT = Path(__file__).resolve().parent.parent
CLASS_NAMES = ["background", "disc", "square", "triangle", "ring"]
K = len(CLASS_NAMES)
PATCH = 16
IMAGE_SIZE = 224
SIZES = ((224, 224), (224, 224), (160, 224), (224, 160))  # (H, W), drawn by U{0..3}
MIN_CONTRAST = 40.0
EXAMPLE_SEED = 7
EXAMPLE_SIZES = ((224, 224), (224, 224), (224, 224), (160, 224))
SOURCES_BEGIN = "<!-- train_demo.py examples: begin -->"
SOURCES_END = "<!-- train_demo.py examples: end -->"


# =============================================================================================
# Scenes

def random_colour(rng: np.random.RandomState) -> np.ndarray:
    return rng.randint(0, 256, size=3).astype(np.float64)


def background(rng: np.random.RandomState, h: int, w: int) -> np.ndarray:
    """Step 2: (h, w, 3) float64 RGB, one of gradient / field / stripes / noise."""
    kind = rng.randint(0, 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == 0:  # gradient
        c0, c1 = random_colour(rng), random_colour(rng)
        a = rng.uniform(0.0, 2 * math.pi)
        u = xx * math.cos(a) + yy * math.sin(a)
        t = (u - u.min()) / (u.max() - u.min())
        return c0 + (c1 - c0) * t[:, :, None]
    if kind == 1:  # smooth random colour field
        gh, gw = rng.randint(2, 6), rng.randint(2, 6)
        grid = np.stack([random_colour(rng) for _ in range(gh * gw)]).reshape(gh, gw, 3).astype(np.float32)
        field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        return np.clip(field.astype(np.float64), 0.0, 255.0)
    if kind == 2:  # sinusoidal stripes
        c0, c1 = random_colour(rng), random_colour(rng)
        period, a, phase = rng.uniform(12.0, 48.0), rng.uniform(0.0, math.pi), rng.uniform(0.0, 2 * math.pi)
        u = xx * math.cos(a) + yy * math.sin(a)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * u / period + phase)
        return c0 + (c1 - c0) * t[:, :, None]
    c0 = random_colour(rng)  # noise
    sigma = rng.uniform(10.0, 40.0)
    return c0 + rng.normal(0.0, sigma, size=(h, w, 3))


def make_scene(rng: np.random.RandomState, size: Tuple[int, int] = None) -> Dict[str, np.ndarray]:
    """One scene: image (H, W, 3) uint8 RGB, labels (H, W) uint8 kind, instances (H, W) uint8 (0 or 1..n)."""
    size_index = rng.randint(0, len(SIZES))  # drawn even when size is given, so the stream stays the same
    h, w = size if size is not None else SIZES[size_index]
    bg = background(rng, h, w)
    mean = bg.reshape(-1, 3).mean(axis=0)
    image = np.ascontiguousarray(np.clip(np.round(bg), 0, 255).astype(np.uint8))
    labels = np.zeros((h, w), dtype=np.uint8)
    instances = np.zeros((h, w), dtype=np.uint8)
    n = rng.randint(2, 6)
    shapes = []
    for i in range(1, n + 1):
        kind = rng.randint(1, 5)
        r = rng.randint(20, 61)
        cx = rng.randint(r // 2, w - r // 2)
        cy = rng.randint(r // 2, h - r // 2)
        colour = random_colour(rng)
        while np.abs(colour - mean).mean() < MIN_CONTRAST:
            colour = random_colour(rng)
        col = tuple(int(v) for v in colour)
        if kind in (2, 3):  # square, triangle: regular polygon with circumradius r
            a = rng.uniform(0.0, 2 * math.pi)
            corners = 4 if kind == 2 else 3
            angles = a + 2 * math.pi * np.arange(corners) / corners
            pts = np.stack([np.round(cx + r * np.cos(angles)), np.round(cy + r * np.sin(angles))], axis=1)
            pts = [pts.astype(np.int32)]
            for target, value in ((image, col), (labels, kind), (instances, i)):
                cv2.fillPoly(target, pts, value, lineType=cv2.LINE_8)
        elif kind == 1:  # disc
            for target, value in ((image, col), (labels, kind), (instances, i)):
                cv2.circle(target, (int(cx), int(cy)), int(r), value, thickness=-1, lineType=cv2.LINE_8)
        else:  # ring
            q = rng.uniform(0.3, 0.5)
            thickness = max(2, int(math.floor(q * r + 0.5)))
            for target, value in ((image, col), (labels, kind), (instances, i)):
                cv2.circle(target, (int(cx), int(cy)), int(r), value, thickness=thickness, lineType=cv2.LINE_8)
        shapes.append({"kind": CLASS_NAMES[kind], "r": int(r), "centre": [int(cx), int(cy)], "colour": list(col)})
    g = rng.uniform(0.0, 8.0)
    noisy = image.astype(np.float64) + rng.normal(0.0, g, size=image.shape)
    image = np.ascontiguousarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    return {"image": image, "labels": labels, "instances": instances, "shapes": shapes}


def majority(label_map: np.ndarray, num_values: int, p: int = PATCH) -> np.ndarray:
    """(H, W) integer map -> (H/p, W/p): the most frequent value of each p x p patch, ties to the smallest."""
    h, w = label_map.shape
    patches = label_map.reshape(h // p, p, w // p, p).transpose(0, 2, 1, 3).reshape(h // p, w // p, p * p)
    counts = (patches[..., None] == np.arange(num_values)).sum(axis=2)
    return counts.argmax(axis=2)


def make_batch(scenes: Sequence[Dict[str, np.ndarray]]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Preprocessed pixels (B, 3, H, W), pixel mask (B, H, W) and patch targets (B, h, w) (-100 on padding)."""
    images = [s["image"].astype(np.float32) for s in scenes]
    pixels, pixel_mask = preprocess(images, PATCH, IMAGE_SIZE, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    _, _, hh, ww = pixels.shape
    targets = torch.full((len(scenes), hh // PATCH, ww // PATCH), -100, dtype=torch.long)
    for b, s in enumerate(scenes):
        t = majority(s["labels"], K)
        targets[b, :t.shape[0], :t.shape[1]] = torch.from_numpy(t)
    return pixels, pixel_mask, targets


# =============================================================================================
# Model, training

class BatchNormStem(nn.Module):
    """A convolutional PatchEmbed as it trains: every stem convolution (no bias) is followed by BatchNorm2d
    before its ReLU. folded() gives the reference PatchEmbed that computes the same in evaluation."""

    def __init__(self, patch_embed: PatchEmbed):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c.in_channels, c.out_channels, kernel_size=3, stride=2, padding=1,
                                             bias=False) for c in patch_embed.stem)
        self.norms = nn.ModuleList(nn.BatchNorm2d(c.out_channels) for c in patch_embed.stem)
        self.proj = patch_embed.proj
        self.stem_channels = patch_embed.stem_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)))
        return self.proj(x)

    def folded(self) -> PatchEmbed:
        """Each BatchNorm's running statistics folded into its convolution's weight and bias."""
        embed = PatchEmbed(self.convs[0].in_channels, self.proj.out_channels, 2 ** len(self.convs), self.stem_channels)
        with torch.no_grad():
            for conv, norm, target in zip(self.convs, self.norms, embed.stem):
                gain = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                target.weight.copy_(conv.weight * gain[:, None, None, None])
                target.bias.copy_(norm.bias - norm.running_mean * gain)
            embed.proj.load_state_dict(self.proj.state_dict())
        return embed


def build_model(args) -> ImageTransformer:
    """The model to train; with --stem its patch embedding is a BatchNormStem (export_model folds it)."""
    model = ImageTransformer(d_model=args.d_model, nhead=args.nhead, num_encoder_layers=args.encoder_layers,
                             num_decoder_layers=args.decoder_layers, dim_feedforward=args.ff, activation="relu",
                             norm_first=args.norm_first, dropout=0.0, patch_size=PATCH, image_size=IMAGE_SIZE,
                             position="sine", position_mode=args.position_mode, target="tokens",
                             num_classes=K, class_names=CLASS_NAMES, stem_channels=args.stem)
    if args.stem:
        model.patch_embed = BatchNormStem(model.patch_embed)
    return model


def export_model(model: ImageTransformer, path: str) -> None:
    """export_image_model, with a BatchNormStem folded into the plain convolutions the file holds."""
    if isinstance(model.patch_embed, BatchNormStem):
        model.patch_embed = model.patch_embed.folded()
    export_image_model(model, path)


def lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))


def produce_batches(seed: int, steps: int, batch: int, queues) -> None:
    """The training stream, in order: batch after batch of scenes from RandomState(seed).

    Each batch is split into len(queues) equal consecutive parts, part r into queues[r].
    """
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rng = np.random.RandomState(seed)
    share = batch // len(queues)
    for _ in range(steps):
        arrays = [t.numpy() for t in make_batch([make_scene(rng) for _ in range(batch)])]
        for rank, queue in enumerate(queues):
            queue.put(tuple(a[rank * share:(rank + 1) * share] for a in arrays))


def start_producer(args, workers: int):
    """One producer process for the whole stream; returns it and one queue per worker.

    Drawing the scenes costs about a third of a step; on a process of its own it overlaps the step.
    """
    context = multiprocessing.get_context("fork")
    queues = [context.Queue(maxsize=4) for _ in range(workers)]
    producer = context.Process(target=produce_batches, args=(args.seed, args.steps, args.batch, queues), daemon=True)
    producer.start()
    return producer, queues


def receive_batches(steps: int, producer, queue):
    """Yields (pixels, pixel_mask, targets) per step from queue."""
    for _ in range(steps):
        while True:
            try:
                arrays = queue.get(timeout=5)
                break
            except queue_module.Empty:
                if not producer.is_alive():  # a crashed producer would otherwise hang training
                    raise RuntimeError(f"the scene producer exited with code {producer.exitcode}")
        yield tuple(torch.from_numpy(a) for a in arrays)


def training_batches(args):
    """The whole stream in one process: yields (pixels, pixel_mask, targets) per step."""
    producer, (queue,) = start_producer(args, 1)
    try:
        yield from receive_batches(args.steps, producer, queue)
    finally:
        producer.terminate()
        producer.join()


def all_sum(values: torch.Tensor, workers: int) -> torch.Tensor:
    if workers > 1:
        torch.distributed.all_reduce(values)
    return values


def train_worker(model: ImageTransformer, args, batches, workers: int) -> None:
    """The training loop of one worker; with several, each holds a replica and sees its part of each batch.

    Every worker's loss is its sum of patch losses over the whole batch's patch count, so the summed
    gradients are the full batch's gradient; every replica then takes the same optimiser step.
    """
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=0.05)
    warmup = max(1, int(0.05 * args.steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: lr_factor(s, args.steps, warmup))
    parameters = list(model.parameters())
    model.train()
    start = time.time()
    stats = torch.zeros(3, dtype=torch.float64)  # loss sum, correct patches, patches since the last log
    for step, (pixels, pixel_mask, targets) in enumerate(batches):
        real = targets != -100
        patches = all_sum(real.sum().to(torch.float32).reshape(1), workers)
        logits = model(pixels, pixel_mask)["logits"]  # (B, K, h, w)
        loss = F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum") / patches
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if workers > 1:
            flat = torch.cat([p.grad.reshape(-1) for p in parameters])
            torch.distributed.all_reduce(flat)
            offset = 0
            for p in parameters:
                p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
        nn.utils.clip_grad_norm_(parameters, 1.0)
        optimiser.step()
        scheduler.step()
        stats += torch.tensor([float(loss), float((logits.argmax(1)[real] == targets[real]).sum()), float(real.sum())],
                              dtype=torch.float64)
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            loss_sum, correct, total = all_sum(stats, workers).tolist()
            stats.zero_()
            if workers == 1 or torch.distributed.get_rank() == 0:
                elapsed = time.time() - start
                eta = elapsed / (step + 1) * (args.steps - step - 1)
                print(f"step {step + 1:5d}/{args.steps}  loss {loss_sum / args.log_every:.4f}  "
                      f"patch acc {correct / max(1.0, total):.4f}  lr {scheduler.get_last_lr()[0]:.2e}  "
                      f"{elapsed:6.0f} s  eta {eta:5.0f} s", flush=True)


def run_worker(rank: int, model: ImageTransformer, args, producer, queue, rendezvous: str) -> None:
    torch.set_num_threads(args.threads)
    torch.distributed.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                                         world_size=args.workers, timeout=datetime.timedelta(seconds=120))
    try:
        train_worker(model, args, receive_batches(args.steps, producer, queue), args.workers)
    finally:
        torch.distributed.destroy_process_group()


def train(model: ImageTransformer, args) -> float:
    """Trains model in place on args.workers processes (this one is worker 0); returns the seconds taken."""
    start = time.time()
    if args.workers == 1:
        train_worker(model, args, training_batches(args), 1)
        return time.time() - start
    producer, queues = start_producer(args, args.workers)
    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as directory:
        rendezvous = os.path.join(directory, "rendezvous")
        helpers = [context.Process(target=run_worker, args=(rank, model, args, producer, queues[rank], rendezvous))
                   for rank in range(1, args.workers)]
        for helper in helpers:  # forked now, so every replica starts from the same weights
            helper.start()
        try:
            run_worker(0, model, args, producer, queues[0], rendezvous)
        except RuntimeError as error:  # gloo's own message only says that a peer closed its connection
            for helper in helpers:
                helper.join(timeout=5)
            dead = [h.exitcode for h in helpers if h.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a training worker exited with code {dead[0]}") from error
            raise
        finally:
            producer.terminate()
            for helper in helpers:
                helper.join(timeout=30)
                if helper.is_alive():
                    helper.terminate()
            producer.join()
    return time.time() - start


# =============================================================================================
# Evaluation

def attention_maps(model: ImageTransformer, pixels: torch.Tensor,
                   pixel_mask: torch.Tensor) -> Tuple[Dict[str, object], Dict[str, torch.Tensor]]:
    """One forward: the model's output, and every attention module's weights averaged over heads,
    {name: (B, L, S)}.

    Each nn.MultiheadAttention is asked for its weights while the model's own forward calls it, so the
    maps are exactly what that forward feeds (positions, masks, norms). Names as in the state_dict
    without "transformer.", e.g. "encoder.layers.2.self_attn", "decoder.layers.0.multihead_attn".
    """
    maps = {}
    modules = [(name.replace("transformer.", "", 1), m) for name, m in model.named_modules()
               if isinstance(m, nn.MultiheadAttention)]

    def capturing(name, forward):
        def capture(*args, **kwargs):
            kwargs.update(need_weights=True, average_attn_weights=True)
            output, weights = forward(*args, **kwargs)
            maps[name] = weights
            return output, weights
        return capture

    for name, module in modules:
        module.forward = capturing(name, module.forward)
    try:
        output = model(pixels, pixel_mask)
    finally:
        for _, module in modules:
            del module.forward  # the class's own forward again
    return output, maps


def encoder_rollout(maps: Dict[str, torch.Tensor], layers: int) -> torch.Tensor:
    """(B, S, S): attention rollout through the encoder, heads averaged, nothing discarded:
    (A + I) / 2 per layer, rows renormalised, layers multiplied (as vitscope's attention_rollout)."""
    rollout = None
    for i in range(layers):
        a = maps[f"encoder.layers.{i}.self_attn"]
        a = (a + torch.eye(a.shape[-1])) / 2
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


def evaluate(model: ImageTransformer, seed: int, count: int, batch: int = 25) -> Dict[str, object]:
    rng = np.random.RandomState(seed)
    model.eval()
    confusion = np.zeros((K, K), dtype=np.int64)  # [true, predicted]
    layers = len(model.transformer.encoder.layers)
    shape_mass: Dict[str, List[float]] = {}
    shape_share, point_mass, point_share = [], [], []
    last = f"encoder.layers.{layers - 1}.self_attn"
    with torch.no_grad():
        for first in range(0, count, batch):
            scenes = [make_scene(rng) for _ in range(min(batch, count - first))]
            pixels, pixel_mask, targets = make_batch(scenes)
            output, maps = attention_maps(model, pixels, pixel_mask)
            predicted = output["logits"].argmax(1)
            maps["encoder rollout"] = encoder_rollout(maps, layers)
            maps = {name: m.numpy() for name, m in maps.items() if m.shape[1] == m.shape[2]}  # token maps
            gw = targets.shape[2]
            for b, s in enumerate(scenes):
                t = majority(s["labels"], K)
                hb, wb = t.shape
                pr = predicted[b, :hb, :wb].numpy()
                np.add.at(confusion, (t.ravel(), pr.ravel()), 1)
                inst = majority(s["instances"], len(s["shapes"]) + 1)
                full = np.full((targets.shape[1], gw), -1)
                full[:hb, :wb] = inst
                flat = full.ravel()
                real = hb * wb
                for i in range(1, len(s["shapes"]) + 1):
                    own = np.nonzero(flat == i)[0]
                    if own.size == 0:
                        continue
                    share = own.size / real
                    for name, m in maps.items():
                        shape_mass.setdefault(name, []).append(float(m[b][np.ix_(own, own)].sum(axis=1).mean()))
                    shape_share.append(share)
                    point_mass.extend(maps[last][b][np.ix_(own, own)].sum(axis=1).tolist())
                    point_share.extend([share] * own.size)
    per_class = {CLASS_NAMES[c]: float(confusion[c, c] / confusion[c].sum()) for c in range(K)}
    return {
        "patch_accuracy": float(np.trace(confusion) / confusion.sum()),
        "per_class_accuracy": per_class,
        "patches_per_class": {CLASS_NAMES[c]: int(confusion[c].sum()) for c in range(K)},
        "confusion_true_by_predicted": confusion.tolist(),
        "attention_mass": {
            "layer": "last encoder layer, self-attention averaged over heads",
            "per_shape": {"mass": float(np.mean(shape_mass[last])), "share": float(np.mean(shape_share)),
                          "shapes": len(shape_share)},
            "per_point": {"mass": float(np.mean(point_mass)), "share": float(np.mean(point_share)),
                          "points": len(point_mass)},
            "per_shape_by_module": {name: float(np.mean(v)) for name, v in shape_mass.items()},
        },
    }


# =============================================================================================
# Assets

def write_examples(images_dir: Path) -> List[str]:
    rng = np.random.RandomState(EXAMPLE_SEED)
    names = []
    for index, size in enumerate(EXAMPLE_SIZES, start=1):
        scene = make_scene(rng, size)
        name = f"shapes_{index}.png"
        cv2.imwrite(str(images_dir / name), cv2.cvtColor(scene["image"], cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        kinds = ", ".join(f"{s['kind']} r={s['r']}" for s in scene["shapes"])
        names.append((name, size, kinds))
    sources = images_dir / "SOURCES.md"
    text = sources.read_text() if sources.exists() else ""
    rows = "\n".join(f"| {name} | {w}x{h} | {kinds} |" for name, (h, w), kinds in names)
    section = f"""{SOURCES_BEGIN}
## Generated shape scenes (shapes_1.png .. shapes_4.png)

Made by us, no third-party content: `tools/train_demo.py` draws them with its scene generator (the one
the demo model is trained on; its docstring describes every random choice) from
`np.random.RandomState({EXAMPLE_SEED})`, four scenes in a row, the first three at 224x224 and the last
at 224 wide x 160 high (the size is forced; the stream is otherwise the training distribution's).
8-bit RGB PNG, `cv2.IMWRITE_PNG_COMPRESSION 9`, no EXIF. Rerunning the script rewrites them bit for bit.
Licence: same as the repository.

| file | W x H | shapes, in drawing order (later on top) |
| --- | --- | --- |
{rows}
{SOURCES_END}
"""
    if SOURCES_BEGIN in text and SOURCES_END in text:
        before = text[:text.index(SOURCES_BEGIN)]
        after = text[text.index(SOURCES_END) + len(SOURCES_END):].lstrip("\n")
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section
    sources.write_text(text)
    return [n for n, _, _ in names]


# =============================================================================================

def stem_channels(text: str) -> List[int]:
    """--stem's value: 4 positive channel counts (4 stride-2 steps make the 16-pixel patches)."""
    try:
        channels = [int(c) for c in text.split(",")]
    except ValueError:
        channels = []
    if len(channels) != int(math.log2(PATCH)) or min(channels) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not {int(math.log2(PATCH))} comma-separated positive integers")
    return channels


def evaluation(path: Path, seed: int, scenes: int) -> Dict[str, object]:
    """The report's held-out part for the model file at path (what ships, read back), printed as well."""
    model = load_image_model(str(path))
    start = time.time()
    result = evaluate(model, seed + 1000, scenes)
    result["eval_seconds"] = round(time.time() - start, 1)
    result["held_out"] = {"scenes": scenes, "seed": seed + 1000}
    print(f"held-out ({scenes} scenes, seed {seed + 1000}): per-patch accuracy {result['patch_accuracy']:.4f}")
    for name, acc in result["per_class_accuracy"].items():
        print(f"  {name:10s} {acc:.4f}  ({result['patches_per_class'][name]} patches)")
    mass = result["attention_mass"]
    print(f"attention a shape's tokens keep on their shape, heads averaged (share of the image "
          f"{mass['per_shape']['share']:.3f}):")
    for name, value in mass["per_shape_by_module"].items():
        print(f"  {name:32s} {value:.3f}")
    return result


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--d-model", type=int, default=96)
    parser.add_argument("--nhead", type=int, default=4)
    parser.add_argument("--encoder-layers", type=int, default=3)
    parser.add_argument("--decoder-layers", type=int, default=1)
    parser.add_argument("--ff", type=int, default=384)
    parser.add_argument("--norm-first", action="store_true", help="pre-norm layers (default post-norm)")
    parser.add_argument("--position-mode", choices=("attention", "input"), default="attention")
    parser.add_argument("--stem", type=stem_channels, default=[],
                        help="a convolutional patch embedding: comma-separated channels of its 4 stride-2 convolutions")
    parser.add_argument("--eval-scenes", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads per worker; the scenes are drawn on a process of their own")
    parser.add_argument("--workers", type=int, default=1,
                        help="data-parallel training processes, each with its share of every batch")
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "assets" / "models" / "demo.safetensors"))
    parser.add_argument("--no-assets", action="store_true", help="do not write assets/images/shapes_*.png")
    parser.add_argument("--evaluate", action="store_true",
                        help="no training: evaluate the model at --out again and rewrite the held-out figures "
                             "of its report (the .json beside it), with its seed and scene count")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.batch % args.workers != 0:
        parser.error(f"--batch {args.batch} must be a multiple of --workers {args.workers}")

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    json_path = out.with_suffix(".json")
    if args.evaluate:
        if not out.is_file() or not json_path.is_file():
            parser.error(f"--evaluate needs the model {out} and its report {json_path}")
        report = json.loads(json_path.read_text())
        report.update(evaluation(out, report["seed"], report["held_out"]["scenes"]))
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote the held-out figures of {json_path}")
        return 0

    torch.manual_seed(args.seed)
    command = "/usr/bin/python3 tools/train_demo.py" + "".join(f" {a}" for a in argv)
    model = build_model(args)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params} parameters; {args.steps} steps of {args.batch} scenes", flush=True)
    train_seconds = train(model, args)
    print(f"training: {train_seconds:.0f} s", flush=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    export_model(model, str(out))
    report = {
        "model": os.path.relpath(out, ROOT) if str(out).startswith(str(ROOT)) else str(out),
        "class_names": CLASS_NAMES,
        **evaluation(out, args.seed, args.eval_scenes),
        "training_seconds": round(train_seconds, 1),
        "seed": args.seed,
        "command": command,
        "recipe": {k: v for k, v in vars(args).items() if k not in ("out", "no_assets", "log_every", "evaluate")},
        "parameters": params,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {json_path}")
    if not args.no_assets:
        names = write_examples(ROOT / "assets" / "images")
        print("wrote assets/images/" + ", ".join(names) + " and their section of assets/images/SOURCES.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
