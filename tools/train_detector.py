#!/usr/bin/env python3
"""Trains vitscope's detector demo: a small DETR (tools/detr_model.py) finding every shape of
tools/train_demo.py's scenes with its box and kind, from scratch on CPU, then imports it with
tools/import_model.py --family detr.

Usage (Debian's python3-torch / python3-torchvision / python3-opencv only import from the system interpreter):
    /usr/bin/python3 tools/train_detector.py --block BasicBlock --divisor 2 --no-dilation --pre-norm --dense-loss 1 \
        --lr 1e-3 --steps 6500 --minutes 57      # the shipped recipe, 50 minutes on 2 cores
    /usr/bin/python3 tools/train_detector.py --steps 300 --out /tmp/detector.safetensors   # a quick try
    /usr/bin/python3 tools/train_detector.py --evaluate   # the shipped .pth's held-out figures again, no training

Writes (beside --out, default assets/models/detector.safetensors):
    detector.pth           torch.save({"model": DETR.state_dict()}) (backbone BatchNorm2d with its running statistics,
                           under FrozenBatchNorm2d's names plus num_batches_tracked)
    detector.safetensors   the vitscope file: import_model.import_model(pth, "detr", out, options(class_names_list=
                           ["disc", "square", "triangle", "ring"], nhead=NHEAD, dilation=DILATION, image_size=224,
                           resize_mode="longer")), i.e. `tools/import_model.py detector.pth --family detr --nhead N
                           [--dilation] --class-names FILE --image-size 224 --resize-mode longer --out ...`
    detector.json          held-out mAP@0.5 (and per class), counts at score 0.7, the cross-attention figure,
                           training time, steps, seed, command, recipe, the ground-truth rule, the CPU
Everything is seeded: training scenes come from np.random.RandomState(seed) (train_demo.make_scene, drawn fresh
for every step by a producer process in the order one process would draw them), held-out scenes from
RandomState(seed + 1000); torch.manual_seed(seed) sets the initial weights; torch.set_num_threads(--threads).

Ground truth of a scene (what the C++ side re-implements; it depends ONLY on the scene's labels and instances
maps, both (H, W) uint8 as train_demo.make_scene returns them):
  for every instance id i = 1, 2, ... in increasing order that occurs in `instances` (0 is background):
    pixels P = {(y, x) : instances[y, x] == i} (its visible pixels; later shapes cover earlier ones);
    dropped when |P| < MIN_AREA (= 100) pixels;
    class = labels[y, x] on P (one kind 1..4 on all of P: both maps are drawn by the same calls), as the
      detector's class index kind - 1 (0 disc, 1 square, 2 triangle, 3 ring);
    box: x0 = min x, x1 = max x, y0 = min y, y1 = max y over P (pixel-inclusive), as DETR's normalised
      (cx, cy, w, h) = ((x0 + x1 + 1) / 2 / W, (y0 + y1 + 1) / 2 / H, (x1 - x0 + 1) / W, (y1 - y0 + 1) / H),
      i.e. the continuous box [x0, x1 + 1] x [y0, y1 + 1] in pixels.

Evaluation (held-out, RandomState(seed + 1000), --eval-scenes scenes, 500 shipped), computed on the trained
DETR in PyTorch (model.eval(), batches of 25 padded as training pads them, which the mask makes invisible):
  * predictions: every query of every image is one: p = softmax over all 5 logits; label = argmax of p over
    the 4 real classes (the first on ties), score = p[label]; box in pixels x0 = (cx - w/2) W, x1 = (cx + w/2) W,
    y0 = (cy - h/2) H, y1 = (cy + h/2) H with W, H the image's own (unpadded) size.
  * IoU of two continuous boxes: intersection area / union area (ground truth as [x0, x1 + 1] x [y0, y1 + 1]).
  * per class c: the predictions of label c of all images sorted by score descending (a stable sort of them in
    image order, queries in order within an image); each in turn is matched to the ground-truth box of class c
    in the same image, among those not matched yet, with the highest IoU (the first on ties), if that IoU >= 0.5:
    a true positive (that box is now matched), otherwise a false positive. With n_c ground-truth boxes of c,
    after the k-th prediction recall r_k = TP_k / n_c, precision p_k = TP_k / k; AP_c = sum over k of
    (r_k - r_{k-1}) * max_{j >= k} p_j, r_0 = 0 (all-point interpolation: the precision made non-increasing
    from the right, the area under that curve; no 101-point sampling). mAP@0.5 = the mean of the 4 classes' AP.
  * at score 0.7: mean detections per image (score >= 0.7) against mean ground-truth boxes per image, and
    the precision and recall of those detections (matched as above; the matching of the predictions with
    score >= 0.7 is the same whether or not the lower ones are there, since they come first).
  * cross-attention inside the box: for each detection with score >= 0.7 that is a true positive above, its
    query's row of the LAST decoder layer's cross-attention (capture_cross_attention), averaged over heads
    (over the image's real tokens it sums to 1: the padding is masked); mass = its sum over the real tokens
    whose centre ((j + 0.5) s, (i + 0.5) s) (token (i, j), stride s) lies inside the matched ground-truth box
    (x0 <= X < x1 + 1 and y0 <= Y < y1 + 1); share = the number of those tokens / the image's real tokens.
    Reported: mean mass, mean share and their ratio, over all such detections.

Model: build_detr(num_classes 4, slim_resnet(BLOCK, LAYERS, divisor DIVISOR, dilation DILATION,
norm_layer=nn.BatchNorm2d), ...); shipped: BasicBlock, layers 1,1,1,1, divisor 2 (planes 32, 64, 128, 256;
the stem 64 wide), no dilation (C5 at stride 32: 7 x 7 tokens on 224 x 224, 5 x 7 or 7 x 5 on the others),
hidden_dim 64, 4 heads, 2 encoder and 2 decoder layers, dim_feedforward 128, 10 queries (a scene has at most 5
shapes), dropout 0, pre-norm (--pre-norm), aux_loss; 1.44 M parameters, 5.8 MB as float32. The backbone's
BatchNorm2d trains normally (batch statistics) and its running statistics are what the .pth holds.
--dense-loss (shipped 1): a training-only Conv2d(C5, 5, 1) on the backbone's C5 learns each stride x stride
cell's majority pixel label (background or kind, train_demo.majority), cross-entropy over the real cells; the
head is not part of the model (the .pth has DETR's keys only).
Loss (DETR's SetCriterion): Hungarian matching per image (cost 1 * -p[class] + 5 * L1(boxes) + 2 * -GIoU, an
O(n^3) assignment of this file, tested against brute force in tools/test_train_detector.py), cross-entropy over
all queries with weight eos_coef 0.1 on "no object", L1 5 and GIoU 2 summed over matched boxes / the batch's
number of boxes, the same on every earlier decoder layer's output (aux loss).
Training: AdamW (--lr, weight decay 1e-4), linear warmup over the first 5% of the steps then cosine decay to
5% of the lr (train_demo.lr_factor), gradient-norm clip 0.1, --batch scenes a step.

Why this recipe (pilots: seed 1, 900 steps of batch 16, lr schedule as above, one torch thread each, two at a
time beside a C++ build, held-out mAP@0.5 on 200 scenes; "loss" is the whole training loss, aux layers and
dense loss included, and ce / l1 / giou the last decoder layer's, means over the 50 steps before step 400 / 800):
  Bottleneck 1,1,1,1 /8, dilated (stride 16), post-norm, lr 1e-3   step 450 loss 9.08, ce 1.585 (the constant
      predictor's 1.605), l1 0.334, giou 0.645: flat from step 200, stopped
  the same + --dense-loss 1                                         step 400 loss 9.92, ce 1.591, dense 0.873
      (background against shape only, the kinds not learnt), stopped
  BasicBlock 1,1,1,1 /2, stride 32, --dense-loss 1, lr 1e-3         step 400 loss 8.89, dense 0.402; step 800 loss
      7.52, ce 1.400, l1 0.234, giou 0.487; mAP 0.130 (ring 0.34, disc 0.13, square 0.02, triangle 0.02)
  the same, lr 3e-4                                                 step 400 loss 9.08, dense 0.553 (slower), stopped
  the same, lr 2e-3                                                 step 350 loss 9.97, dense 0.799 (slower), stopped
  the same (lr 1e-3) with 20 queries                                step 800 loss 7.12, ce 1.430, l1 0.209,
      giou 0.469; mAP 0.078
  the same (10 queries) with --pre-norm (shipped)                   step 800 loss 7.27, ce 1.376, l1 0.219,
      giou 0.481; mAP 0.142
The slim Bottleneck's inner widths (8 .. 64) did not learn the kinds at all in 450 steps, with or without the
dense loss; BasicBlock at half width learnt them in the backbone (dense loss 0.42 by step 350) and the set loss
followed. Stride 32 costs about what the dilated slim Bottleneck does (0.4 s a step of 16 at two threads).
As in every DETR, the kinds come last: ring first, then disc, squares and triangles last.
The shipped model (the first command above): 6500 steps in 2986 s of training (0.46 s a step), 49 min 56 s for
the whole command (/usr/bin/time; an AMD EPYC with 2 cores, two torch threads and the scene producer, a C++ build
running part of the time); training loss 3.61 at step 3000, 2.42-2.54 over the last 500 steps (last layer ce
0.40, l1 0.077, giou 0.18). On the 500 held-out scenes (1753 boxes): mAP@0.5 0.851 (disc 0.865, square 0.794,
triangle 0.822, ring 0.921); at score 0.7, 3.87 detections per image against 3.51 boxes, precision 0.760, recall
0.839; the last decoder layer's cross-attention of the 1471 matched detections puts 0.705 of its mass on the
tokens inside the box, whose share of the image's tokens is 0.156 (4.5 times).
"""

import argparse
import json
import math
import multiprocessing
import os
import queue as queue_module
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detr_model import build_detr, capture_cross_attention, slim_resnet  # noqa: E402
from reference_model import preprocess  # noqa: E402
from train_demo import lr_factor, majority, make_scene  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLASS_NAMES = ["disc", "square", "triangle", "ring"]  # class index = kind - 1; index 4 is "no object"
NUM_CLASSES = len(CLASS_NAMES)
MIN_AREA = 100  # an instance with fewer visible pixels is not a ground-truth object
IMAGE_SIZE = 224
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
IOU_THRESHOLD = 0.5
SCORE_THRESHOLD = 0.7
COST_CLASS, COST_BBOX, COST_GIOU = 1.0, 5.0, 2.0
LOSS_CE, LOSS_BBOX, LOSS_GIOU, EOS_COEF = 1.0, 5.0, 2.0, 0.1


# =============================================================================================
# Ground truth

def ground_truth(labels: np.ndarray, instances: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The docstring's rule: class indices (n,), normalised cx,cy,w,h (n, 4) and pixel boxes x0,y0,x1+1,y1+1 (n, 4)."""
    h, w = instances.shape
    classes, boxes, pixel_boxes = [], [], []
    for i in np.unique(instances):
        if i == 0:
            continue
        ys, xs = np.nonzero(instances == i)
        if ys.size < MIN_AREA:
            continue
        kinds = np.unique(labels[ys, xs])
        assert kinds.size == 1 and 1 <= kinds[0] <= NUM_CLASSES, kinds
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
        classes.append(int(kinds[0]) - 1)
        boxes.append([(x0 + x1 + 1) / 2 / w, (y0 + y1 + 1) / 2 / h, (x1 - x0 + 1) / w, (y1 - y0 + 1) / h])
        pixel_boxes.append([x0, y0, x1 + 1, y1 + 1])
    return (np.array(classes, dtype=np.int64), np.array(boxes, dtype=np.float32).reshape(-1, 4),
            np.array(pixel_boxes, dtype=np.float64).reshape(-1, 4))


def make_batch(scenes: Sequence[Dict[str, np.ndarray]], stride: int):
    """pixels (B,3,H,W), pixel_mask (B,H,W) (padded bottom/right to the batch's size, a multiple of stride),
    per image (classes, normalised boxes) as numpy arrays, and the training-only dense targets (B, H/s, W/s):
    each stride x stride cell's majority pixel label 0..4 (train_demo.majority), -100 on padding."""
    pixels, pixel_mask = preprocess([s["image"].astype(np.float32) for s in scenes], stride, IMAGE_SIZE, MEAN, STD,
                                    resize_mode="longer")
    targets = [ground_truth(s["labels"], s["instances"])[:2] for s in scenes]
    dense = torch.full((len(scenes), pixels.shape[2] // stride, pixels.shape[3] // stride), -100, dtype=torch.long)
    for b, s in enumerate(scenes):
        t = majority(s["labels"], NUM_CLASSES + 1, stride)
        dense[b, :t.shape[0], :t.shape[1]] = torch.from_numpy(t)
    return pixels, pixel_mask, targets, dense


# =============================================================================================
# Boxes, assignment, loss

def box_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(N,4), (M,4) xyxy -> IoU (N,M) and union (N,M)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union, union


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DETR's util/box_ops.generalized_box_iou on xyxy boxes, (N,M)."""
    iou, union = box_iou(a, b)
    lt = torch.min(a[:, None, :2], b[None, :, :2])
    rb = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[..., 0] * wh[..., 1]
    return iou - (area - union) / area


def linear_assignment(cost: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of a (n, m) cost matrix (the Hungarian algorithm with potentials, O(n^2 m)):
    rows, cols with min(n, m) pairs, rows increasing, as scipy's linear_sum_assignment returns them."""
    cost = np.asarray(cost, dtype=np.float64)
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)  # p[j]: the row (1-based) assigned to column j, 0 none
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used[1:]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[p[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    cols = np.nonzero(p[1:])[0]
    rows = p[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows)
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


@torch.no_grad()
def hungarian_match(logits: torch.Tensor, boxes: torch.Tensor, targets) -> List[Tuple[np.ndarray, np.ndarray]]:
    """DETR's HungarianMatcher: per image (query indices, target indices)."""
    prob = logits.softmax(-1)
    indices = []
    for b, (classes, tboxes) in enumerate(targets):
        if len(classes) == 0:
            indices.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
            continue
        tb = torch.as_tensor(tboxes)
        cost = (COST_BBOX * torch.cdist(boxes[b], tb, p=1) - COST_CLASS * prob[b][:, torch.as_tensor(classes)]
                - COST_GIOU * generalized_box_iou(box_xyxy(boxes[b]), box_xyxy(tb)))
        indices.append(linear_assignment(cost.numpy()))
    return indices


def set_loss(logits: torch.Tensor, boxes: torch.Tensor, targets, num_boxes: float,
             empty_weight: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
    """SetCriterion's labels + boxes losses for one decoder layer's output."""
    indices = hungarian_match(logits, boxes, targets)
    batch_idx = torch.cat([torch.full((len(q),), b, dtype=torch.long) for b, (q, _) in enumerate(indices)])
    query_idx = torch.cat([torch.as_tensor(q, dtype=torch.long) for q, _ in indices])
    target_classes = torch.full(logits.shape[:2], NUM_CLASSES, dtype=torch.long)
    target_classes[batch_idx, query_idx] = torch.cat(
        [torch.as_tensor(t[0][j], dtype=torch.long) for t, (_, j) in zip(targets, indices)])
    loss_ce = F.cross_entropy(logits.transpose(1, 2), target_classes, empty_weight)
    src = boxes[batch_idx, query_idx]
    tgt = torch.cat([torch.as_tensor(t[1][j]).reshape(-1, 4) for t, (_, j) in zip(targets, indices)])
    loss_bbox = F.l1_loss(src, tgt, reduction="sum") / num_boxes
    loss_giou = (1 - torch.diag(generalized_box_iou(box_xyxy(src), box_xyxy(tgt)))).sum() / num_boxes
    total = LOSS_CE * loss_ce + LOSS_BBOX * loss_bbox + LOSS_GIOU * loss_giou
    return total, {"ce": float(loss_ce), "l1": float(loss_bbox), "giou": float(loss_giou)}


def criterion(outputs, targets, empty_weight) -> Tuple[torch.Tensor, Dict[str, float]]:
    num_boxes = max(1.0, float(sum(len(t[0]) for t in targets)))
    total, parts = set_loss(outputs["pred_logits"], outputs["pred_boxes"], targets, num_boxes, empty_weight)
    for aux in outputs.get("aux_outputs", []):
        total = total + set_loss(aux["pred_logits"], aux["pred_boxes"], targets, num_boxes, empty_weight)[0]
    return total, parts


# =============================================================================================
# Model, training

def build_model(args) -> nn.Module:
    backbone = slim_resnet(args.block, args.layers, args.divisor, args.dilation, norm_layer=nn.BatchNorm2d)
    return build_detr(NUM_CLASSES, backbone, hidden_dim=args.hidden_dim, nheads=args.nhead,
                      enc_layers=args.enc_layers, dec_layers=args.dec_layers, dim_feedforward=args.ffn,
                      num_queries=args.queries, dropout=args.dropout, pre_norm=args.pre_norm, aux_loss=True)


def stride_of(args) -> int:
    return 16 if args.dilation else 32


def produce_batches(seed: int, steps: int, batch: int, stride: int, queue) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rng = np.random.RandomState(seed)
    for _ in range(steps):
        pixels, pixel_mask, targets, dense = make_batch([make_scene(rng) for _ in range(batch)], stride)
        queue.put((pixels.numpy(), pixel_mask.numpy(), targets, dense.numpy()))


def training_batches(args):
    context = multiprocessing.get_context("fork")
    queue = context.Queue(maxsize=6)
    producer = context.Process(target=produce_batches,
                               args=(args.seed, args.steps, args.batch, stride_of(args), queue), daemon=True)
    producer.start()
    try:
        for _ in range(args.steps):
            while True:
                try:
                    pixels, pixel_mask, targets, dense = queue.get(timeout=5)
                    break
                except queue_module.Empty:
                    if not producer.is_alive():
                        raise RuntimeError(f"the scene producer exited with code {producer.exitcode}")
            yield torch.from_numpy(pixels), torch.from_numpy(pixel_mask), targets, torch.from_numpy(dense)
    finally:
        producer.terminate()
        producer.join()


def train(model: nn.Module, args) -> Dict[str, object]:
    """Trains model in place. With --dense-loss w, a training-only Conv2d(C5, 5, 1) on the backbone's C5 learns
    each cell's majority pixel label (cross-entropy over real cells, weight w); it is not part of the model."""
    dense_head = nn.Conv2d(model.backbone.num_channels, NUM_CLASSES + 1, 1)
    features = {}
    hook = model.backbone[0].body.register_forward_hook(lambda m, i, o: features.__setitem__("c5", o["0"]))
    decay, no_decay = [], []
    for name, p in list(model.named_parameters()) + list(dense_head.named_parameters()):
        (no_decay if p.dim() <= 1 else decay).append(p)
    optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    warmup = max(1, int(0.05 * args.steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: lr_factor(s, args.steps, warmup))
    empty_weight = torch.ones(NUM_CLASSES + 1)
    empty_weight[-1] = EOS_COEF
    model.train()
    start = time.time()
    log = []
    sums = np.zeros(5)
    count = 0
    steps_done = 0
    parameters = list(model.parameters()) + list(dense_head.parameters())
    for step, (pixels, pixel_mask, targets, dense) in enumerate(training_batches(args)):
        outputs = model(pixels, pixel_mask)
        loss, parts = criterion(outputs, targets, empty_weight)
        dense_ce = torch.zeros(())
        if args.dense_loss > 0:
            dense_ce = F.cross_entropy(dense_head(features["c5"]), dense, ignore_index=-100)
            loss = loss + args.dense_loss * dense_ce
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, args.clip)
        optimiser.step()
        scheduler.step()
        steps_done = step + 1
        sums += [float(loss), parts["ce"], parts["l1"], parts["giou"], float(dense_ce)]
        count += 1
        elapsed = time.time() - start
        if steps_done % args.log_every == 0 or steps_done == args.steps:
            mean = sums / count
            eta = elapsed / steps_done * (args.steps - steps_done)
            print(f"step {steps_done:5d}/{args.steps}  loss {mean[0]:.3f} (last layer ce {mean[1]:.3f} l1 {mean[2]:.3f} "
                  f"giou {mean[3]:.3f}; dense {mean[4]:.3f})  lr {scheduler.get_last_lr()[0]:.2e}  {elapsed:6.0f} s  eta {eta:5.0f} s",
                  flush=True)
            log.append({"step": steps_done, "loss": round(mean[0], 4), "ce": round(mean[1], 4),
                        "l1": round(mean[2], 4), "giou": round(mean[3], 4), "dense": round(mean[4], 4), "seconds": round(elapsed, 1)})
            sums[:] = 0
            count = 0
        if args.minutes and elapsed > args.minutes * 60:
            print(f"stopping: --minutes {args.minutes} spent after {steps_done} steps", flush=True)
            break
    hook.remove()
    model.eval()
    return {"seconds": time.time() - start, "steps_done": steps_done, "log": log}


# =============================================================================================
# Evaluation

def average_precision(tp: np.ndarray, num_gt: int) -> float:
    """All-point interpolated AP of predictions already sorted by score (tp: 1/0 per prediction)."""
    if num_gt == 0:
        return float("nan")
    if tp.size == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / num_gt
    precision = ctp / np.arange(1, tp.size + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    previous = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - previous) * precision))


def pixel_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x0,y0,x1,y1 box with (n,4) boxes."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def match_detections(predictions: List[Dict[str, np.ndarray]], truths: List[Dict[str, np.ndarray]]):
    """The docstring's greedy matching per class. predictions[i]: labels (Q,), scores (Q,), boxes (Q,4) pixels;
    truths[i]: classes (n,), boxes (n,4) pixels. Returns per class (tp array in sorted order, num_gt) and
    matched[i] (Q,) the ground-truth index each prediction matched, -1 none."""
    matched = [np.full(len(p["labels"]), -1, dtype=np.int64) for p in predictions]
    per_class = []
    for c in range(NUM_CLASSES):
        entries = [(img, q) for img, p in enumerate(predictions) for q in np.nonzero(p["labels"] == c)[0]]
        scores = np.array([predictions[img]["scores"][q] for img, q in entries], dtype=np.float64)
        order = np.argsort(-scores, kind="stable")
        taken = [np.zeros(len(t["classes"]), dtype=bool) for t in truths]
        tp = np.zeros(len(entries))
        for rank, e in enumerate(order):
            img, q = entries[e]
            candidates = np.nonzero((truths[img]["classes"] == c) & ~taken[img])[0]
            if candidates.size == 0:
                continue
            ious = pixel_iou(predictions[img]["boxes"][q], truths[img]["boxes"][candidates])
            best = int(np.argmax(ious))
            if ious[best] >= IOU_THRESHOLD:
                tp[rank] = 1
                taken[img][candidates[best]] = True
                matched[img][q] = candidates[best]
        num_gt = int(sum((t["classes"] == c).sum() for t in truths))
        per_class.append((tp, num_gt, scores[order]))
    return per_class, matched


def token_centres_inside(box: np.ndarray, hb: int, wb: int, stride: int) -> np.ndarray:
    """(hb*wb,) bool: tokens whose centre lies in the box [x0, x1) x [y0, y1)."""
    ys = (np.arange(hb) + 0.5) * stride
    xs = (np.arange(wb) + 0.5) * stride
    inside_y = (ys >= box[1]) & (ys < box[3])
    inside_x = (xs >= box[0]) & (xs < box[2])
    return (inside_y[:, None] & inside_x[None, :]).ravel()


@torch.no_grad()
def evaluate(model: nn.Module, seed: int, count: int, stride: int, batch: int = 25) -> Dict[str, object]:
    model.eval()
    captured = capture_cross_attention(model)
    dec_layers = len(model.transformer.decoder.layers)
    rng = np.random.RandomState(seed)
    predictions, truths, attention = [], [], []
    for first in range(0, count, batch):
        scenes = [make_scene(rng) for _ in range(min(batch, count - first))]
        pixels, pixel_mask, _, _ = make_batch(scenes, stride)
        captured.clear()
        out = model(pixels, pixel_mask)
        last = captured[dec_layers - 1].mean(dim=1).numpy()  # (B, Q, S) the last decoder layer, heads averaged
        prob = out["pred_logits"].softmax(-1)[..., :NUM_CLASSES].numpy()
        boxes = box_xyxy(out["pred_boxes"]).numpy().astype(np.float64)
        gw = pixels.shape[3] // stride
        for b, s in enumerate(scenes):
            h, w = s["instances"].shape
            classes, _, pixel_boxes = ground_truth(s["labels"], s["instances"])
            labels = prob[b].argmax(-1)
            predictions.append({"labels": labels, "scores": prob[b][np.arange(len(labels)), labels],
                                "boxes": boxes[b] * np.array([w, h, w, h], dtype=np.float64)})
            truths.append({"classes": classes, "boxes": pixel_boxes})
            hb, wb = h // stride, w // stride
            real = last[b].reshape(last.shape[1], -1, gw)[:, :hb, :wb].reshape(last.shape[1], -1)
            attention.append((real, hb, wb))
    per_class, matched = match_detections(predictions, truths)
    aps = {CLASS_NAMES[c]: average_precision(tp, n) for c, (tp, n, _) in enumerate(per_class)}
    gt_per_class = {CLASS_NAMES[c]: n for c, (_, n, _) in enumerate(per_class)}
    num_gt = sum(len(t["classes"]) for t in truths)
    detections = sum(int((p["scores"] >= SCORE_THRESHOLD).sum()) for p in predictions)
    true_positives = sum(int(((p["scores"] >= SCORE_THRESHOLD) & (m >= 0)).sum())
                         for p, m in zip(predictions, matched))
    exact = sum(int((p["scores"] >= SCORE_THRESHOLD).sum() == len(t["classes"])) for p, t in zip(predictions, truths))
    masses, shares = [], []
    for (p, m, t, (rows, hb, wb)) in zip(predictions, matched, truths, attention):
        for q in np.nonzero((p["scores"] >= SCORE_THRESHOLD) & (m >= 0))[0]:
            inside = token_centres_inside(t["boxes"][m[q]], hb, wb, stride)
            masses.append(float(rows[q][inside].sum()))
            shares.append(float(inside.mean()))
    mass, share = float(np.mean(masses)) if masses else float("nan"), float(np.mean(shares)) if shares else float("nan")
    return {
        "map50": float(np.mean(list(aps.values()))),
        "ap50_per_class": aps,
        "ground_truth_per_class": gt_per_class,
        "at_score_0.7": {
            "detections_per_image": detections / count, "ground_truth_per_image": num_gt / count,
            "precision": true_positives / max(1, detections), "recall": true_positives / max(1, num_gt),
            "images_with_exact_count": exact / count},
        "cross_attention_inside_box": {
            "layer": "last decoder layer's cross-attention, averaged over heads, over the image's real tokens",
            "detections": len(masses), "mass_inside": mass, "box_share": share,
            "ratio": mass / share if shares else float("nan")},
    }


# =============================================================================================

def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return "unknown"


def layers_arg(text: str) -> List[int]:
    try:
        layers = [int(c) for c in text.split(",")]
    except ValueError:
        layers = []
    if len(layers) != 4 or min(layers) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not 4 comma-separated positive integers")
    return layers


RECIPE_KEYS = ("seed", "steps", "batch", "lr", "weight_decay", "clip", "block", "layers", "divisor", "dilation",
               "hidden_dim", "nhead", "enc_layers", "dec_layers", "ffn", "queries", "dropout", "pre_norm", "dense_loss", "threads",
               "minutes")


def evaluation(model: nn.Module, seed: int, scenes: int, stride: int) -> Dict[str, object]:
    start = time.time()
    result = evaluate(model, seed + 1000, scenes, stride)
    result["eval_seconds"] = round(time.time() - start, 1)
    result["held_out"] = {"scenes": scenes, "seed": seed + 1000}
    print(f"held-out ({scenes} scenes, seed {seed + 1000}): mAP@0.5 {result['map50']:.4f}")
    for name, ap in result["ap50_per_class"].items():
        print(f"  {name:9s} AP {ap:.4f}  ({result['ground_truth_per_class'][name]} boxes)")
    at = result["at_score_0.7"]
    print(f"score >= 0.7: {at['detections_per_image']:.3f} detections per image against {at['ground_truth_per_image']:.3f} "
          f"boxes; precision {at['precision']:.3f} recall {at['recall']:.3f}; exact count in {at['images_with_exact_count']:.3f}")
    a = result["cross_attention_inside_box"]
    print(f"cross-attention inside the box (last decoder layer, {a['detections']} detections): mass {a['mass_inside']:.3f} "
          f"against a share of {a['box_share']:.3f} (x{a['ratio']:.2f})", flush=True)
    return result


def import_file(pth: Path, out: Path, args) -> List[str]:
    import import_model
    return import_model.import_model(str(pth), "detr", str(out), import_model.options(
        class_names_list=CLASS_NAMES, nhead=args.nhead, dilation=args.dilation, image_size=IMAGE_SIZE,
        resize_mode="longer"))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--clip", type=float, default=0.1)
    parser.add_argument("--block", choices=("BasicBlock", "Bottleneck"), default="Bottleneck")
    parser.add_argument("--layers", type=layers_arg, default=[1, 1, 1, 1])
    parser.add_argument("--divisor", type=int, default=8)
    parser.add_argument("--no-dilation", dest="dilation", action="store_false",
                        help="C5 at stride 32 (default: layer4 dilated, stride 16)")
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--nhead", type=int, default=4)
    parser.add_argument("--enc-layers", type=int, default=2)
    parser.add_argument("--dec-layers", type=int, default=2)
    parser.add_argument("--ffn", type=int, default=128)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--pre-norm", action="store_true")
    parser.add_argument("--dense-loss", type=float, default=0.0,
                        help="weight of the training-only per-cell label loss on the backbone's C5")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=58.0, help="stop training when this wall time is spent")
    parser.add_argument("--eval-scenes", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "assets" / "models" / "detector.safetensors"))
    parser.add_argument("--no-import", action="store_true", help="write the .pth and .json only")
    parser.add_argument("--evaluate", action="store_true",
                        help="no training: evaluate the .pth beside --out again with its report's recipe and rewrite "
                             "the report's held-out figures")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    pth, json_path = out.with_suffix(".pth"), out.with_suffix(".json")
    if args.evaluate:
        if not pth.is_file() or not json_path.is_file():
            parser.error(f"--evaluate needs the checkpoint {pth} and its report {json_path}")
        report = json.loads(json_path.read_text())
        for key, value in report["recipe"].items():
            setattr(args, key, value)
        model = build_model(args)
        model.load_state_dict(torch.load(pth, map_location="cpu")["model"])
        report.update(evaluation(model, report["seed"], report["held_out"]["scenes"], stride_of(args)))
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote the held-out figures of {json_path}")
        return 0

    torch.manual_seed(args.seed)
    command = "/usr/bin/python3 tools/train_detector.py" + "".join(f" {a}" for a in argv)
    model = build_model(args)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params} parameters; {args.steps} steps of {args.batch} scenes", flush=True)
    trained = train(model, args)
    print(f"training: {trained['seconds']:.0f} s, {trained['steps_done']} steps", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, pth)
    report = {
        "model": os.path.relpath(out, ROOT) if str(out).startswith(str(ROOT)) else str(out),
        "checkpoint": os.path.relpath(pth, ROOT) if str(pth).startswith(str(ROOT)) else str(pth),
        "class_names": CLASS_NAMES,
        "ground_truth_rule": f"every instance id of the instances map with at least MIN_AREA = {MIN_AREA} visible "
                             "pixels; class = its kind in the labels map - 1; box = the pixel-inclusive bounding box "
                             "of its visible pixels as ((x0+x1+1)/2/W, (y0+y1+1)/2/H, (x1-x0+1)/W, (y1-y0+1)/H)",
        "min_area": MIN_AREA,
        **evaluation(model, args.seed, args.eval_scenes, stride_of(args)),
        "training_seconds": round(trained["seconds"], 1),
        "steps": trained["steps_done"],
        "stopped_by_minutes": trained["steps_done"] < args.steps,
        "seed": args.seed,
        "command": command,
        "recipe": {k: getattr(args, k) for k in RECIPE_KEYS},
        "stride": stride_of(args),
        "parameters": params,
        "training_log": trained["log"],
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {pth} ({pth.stat().st_size / 1e6:.2f} MB) and {json_path}", flush=True)
    if not args.no_import:
        for note in import_file(pth, out, args):
            print(note)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
