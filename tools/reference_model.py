#!/usr/bin/env python3
"""PyTorch reference of vitscope's image model: the executable form of docs/image_model.md.

Read it top to bottom next to the spec: each part cites the spec section and step it implements
("Preprocessing 2", "Forward 5", ...). The C++ (include/vitscope/image/) must agree within 1e-4.

Command line (Debian's python3-torch and python3-opencv only import from /usr/bin/python3):
    /usr/bin/python3 tools/reference_model.py MODEL IMAGE... [--size S] --out DIR
runs all IMAGEs as one batch and writes, per image, DIR/<stem>.features.npy (E, h_i, w_i), cropped
to the image's own token grid, plus <stem>.logits.npy (K, h_i, w_i) when the model has a head on
token outputs, or <stem>.queries.npy (Q, E) and <stem>.query_logits.npy (Q, K) for a query model.

From Python:
    from reference_model import ImageTransformer, export_image_model, load_image_model, run_images
    model = ImageTransformer(d_model=64, nhead=4, ...)
    export_image_model(model, "model.safetensors")
    outputs = run_images(load_image_model("model.safetensors"), ["a.png", "b.png"])

Every run uses PyTorch's reference (slow) path: model.eval() switches dropout off, but grad stays
enabled and the parameters require grad, because the no-grad fast path computes differently.

Where the spec leaves room, this file decides (and the C++ must follow):
  * Preprocessing 1: EXIF orientation is NOT applied here: cv2.imread(IMREAD_UNCHANGED) ignores it.
    Reference images must therefore carry no EXIF orientation.
  * Preprocessing 1: alpha is composited after the 16-bit /257 scaling: a = alpha / 255,
    rgb = rgb * a + 255 * (1 - a). A 2-channel (gray, alpha) image is gray replicated, then composited.
  * Preprocessing 2: round() is round-half-away-from-zero (C++ std::round), not Python's
    round-half-to-even; scale = size / max(H0, W0) and W0 * scale are computed in double.
  * Forward 5: the encoder's final norm (transformer.encoder.norm, if present) is applied in mode
    attention too, as nn.TransformerEncoder does in mode input.
"""

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_pytorch import export_transformer  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POSITIONS = ("sine", "learned", "none")
POSITION_MODES = ("input", "attention")
TARGETS = ("tokens", "queries")


# =============================================================================================
# Preprocessing (per image, in this order)

def load_image(path: str) -> np.ndarray:
    """Preprocessing 1: decodes `path` to RGB float32 (H0, W0, 3) in [0, 255]."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # BGR(A) order; no EXIF orientation
    if image is None:
        raise ValueError(f"{path}: cannot decode image")
    if image.dtype == np.uint8:
        pixels = image.astype(np.float32)
    elif image.dtype == np.uint16:
        pixels = image.astype(np.float32) / 257.0  # 65535 -> 255
    else:
        raise ValueError(f"{path}: unsupported sample type {image.dtype} (8 or 16 bit only)")

    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    if channels == 1:  # gray: replicate
        rgb, alpha = np.repeat(pixels, 3, axis=2), None
    elif channels == 2:  # gray + alpha
        rgb, alpha = np.repeat(pixels[:, :, :1], 3, axis=2), pixels[:, :, 1:2]
    elif channels == 3:
        rgb, alpha = pixels[:, :, ::-1], None  # BGR -> RGB
    elif channels == 4:
        rgb, alpha = pixels[:, :, 2::-1], pixels[:, :, 3:4]  # BGRA -> RGB, A
    else:
        raise ValueError(f"{path}: unsupported channel count {channels}")

    if alpha is not None:  # composite on white
        a = alpha / np.float32(255.0)
        rgb = rgb * a + np.float32(255.0) * (np.float32(1.0) - a)
    return np.ascontiguousarray(rgb, dtype=np.float32)


def round_half_away(value: float) -> int:
    """std::round for the non-negative values used here (Python's round() rounds half to even)."""
    return int(math.floor(value + 0.5))


RESIZE_MODES = ("longer", "shorter-crop", "stretch", "patch-crop", "shorter-max")
INTERPOLATIONS = ("area-linear", "linear", "cubic")
DETR_MAX_SIZE = 1333  # DETR's evaluation: shorter side 800, the longer at most 1333
CROP_PCT = 0.875  # timm's default: shorter-crop resizes to floor(size / 0.875) (256 for 224)


def python_round_half(value: float) -> int:
    """torchvision's int(round(x)): Python's round, a half to the even neighbour (2.5 -> 2, 3.5 -> 4)."""
    return int(round(value))


def resize_to(image: np.ndarray, new_w: int, new_h: int, interpolation: str) -> np.ndarray:
    """Preprocessing 2a: one cv2.resize to (new_w, new_h); the same array when the size already matches.

    area-linear: INTER_AREA when no side grows, else INTER_LINEAR; linear / cubic: that flag both ways.
    OpenCV's filters, not PIL's. Cubic overshoots at edges: clipped back to [0, 255].
    """
    h0, w0 = image.shape[:2]
    if (new_w, new_h) == (w0, h0):
        return image
    if interpolation == "area-linear":
        flag = cv2.INTER_AREA if new_w <= w0 and new_h <= h0 else cv2.INTER_LINEAR
    else:
        flag = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}[interpolation]
    out = cv2.resize(image, (new_w, new_h), interpolation=flag)
    return np.clip(out, 0.0, 255.0) if interpolation == "cubic" else out


def resize_longer_side(image: np.ndarray, size: int, interpolation: str = "area-linear") -> np.ndarray:
    """Preprocessing 2a, longer: keep the aspect ratio, longer side = size."""
    h0, w0 = image.shape[:2]
    scale = size / max(h0, w0)
    new_w = max(1, round_half_away(w0 * scale))
    new_h = max(1, round_half_away(h0 * scale))
    return resize_to(image, new_w, new_h, interpolation)


def shorter_side_size(h0: int, w0: int, resize_size: int) -> Tuple[int, int]:
    """(new_h, new_w) of torchvision 0.14's Resize(resize_size): shorter side = resize_size, the longer
    int(resize_size * long / short), truncated (torchvision's _compute_resized_output_size)."""
    short, long = (w0, h0) if w0 <= h0 else (h0, w0)
    new_short, new_long = resize_size, int(resize_size * long / short)
    new_w, new_h = (new_short, new_long) if w0 <= h0 else (new_long, new_short)
    return new_h, new_w


def shorter_max_size(h0: int, w0: int, size: int, max_size: int) -> Tuple[int, int]:
    """(new_h, new_w) of DETR's get_size_with_aspect_ratio (datasets/transforms.py): the shorter side
    becomes size, unless the longer would exceed max_size, then round(max_size * short / long)
    (Python's round); the longer side is int(size * long / short), truncated."""
    short, long = float(min(w0, h0)), float(max(w0, h0))
    if long / short * size > max_size:
        size = max(1, python_round_half(max_size * short / long))  # a sliver keeps a row
    if (w0 <= h0 and w0 == size) or (h0 <= w0 and h0 == size):
        return h0, w0
    if w0 < h0:
        return int(size * h0 / w0), size
    return size, int(size * w0 / h0)


def center_crop_window(h: int, w: int, size: int) -> Tuple[int, int]:
    """(top, left) of torchvision 0.14's center_crop(size) on an h x w image, in its own coordinates:
    a side shorter than size is first padded by (size - side) // 2 before (the rest after), then
    top = int(round((H - size) / 2.0)) on the padded image; negative where the pad lies."""
    def axis(side: int) -> int:
        pad_before = (size - side) // 2 if size > side else 0
        padded = side + pad_before + (size - side + 1) // 2 if size > side else side
        return python_round_half((padded - size) / 2.0) - pad_before
    return axis(h), axis(w)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Preprocessing 2b, shorter-crop: the size x size centre window; 0 (black) where it leaves the image."""
    h, w = image.shape[:2]
    top, left = center_crop_window(h, w, size)
    out = np.zeros((size, size, image.shape[2]), dtype=image.dtype)
    y0, y1, x0, x1 = max(top, 0), min(top + size, h), max(left, 0), min(left + size, w)
    out[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return out


def resize_and_crop(image: np.ndarray, patch_size: int, size: int, resize_mode: str = "longer",
                    resize_size: Optional[int] = None, interpolation: str = "area-linear",
                    max_size: Optional[int] = None) -> np.ndarray:
    """Preprocessing 2: (H0, W0, 3) -> the image the model sees, by resize_mode (see the spec)."""
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode {resize_mode!r} is not one of {RESIZE_MODES}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r} is not one of {INTERPOLATIONS}")
    if resize_mode == "longer":
        return resize_longer_side(image, size, interpolation)
    if resize_mode == "shorter-crop":  # torchvision / timm eval: Resize(resize_size), CenterCrop(size)
        resize_size = resize_size or math.floor(size / CROP_PCT)
        new_h, new_w = shorter_side_size(*image.shape[:2], resize_size)
        return center_crop(resize_to(image, new_w, new_h, interpolation), size)
    if resize_mode == "stretch":  # Hugging Face ViTImageProcessor: size x size, aspect ignored
        return resize_to(image, size, size, interpolation)
    if resize_mode == "shorter-max":  # DETR's evaluation: RandomResize([size], max_size)
        new_h, new_w = shorter_max_size(*image.shape[:2], size, max_size or DETR_MAX_SIZE)
        return resize_to(image, new_w, new_h, interpolation)
    # patch-crop, DINO's visualize_attention.py: img[:, :h - h % p, :w - w % p]; a side shorter than
    # one patch is kept whole (DINO would keep no pixels) and padded as in longer.
    resized = resize_longer_side(image, size, interpolation)
    h, w = resized.shape[:2]
    keep_h = h if h < patch_size else h - h % patch_size
    keep_w = w if w < patch_size else w - w % patch_size
    return resized[:keep_h, :keep_w]


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Preprocessing 3 and 4 (first half): (x / 255 - mean[c]) / std[c], as (C, H, W) float32."""
    x = image / np.float32(255.0)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def preprocess(images: Sequence[np.ndarray], patch_size: int, size: int,
               mean: Sequence[float], std: Sequence[float], resize_mode: str = "longer",
               resize_size: Optional[int] = None, interpolation: str = "area-linear",
               max_size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Preprocessing 2-5 on decoded RGB images: returns pixels (B, C, H, W) and pixel_mask (B, H, W).

    Step 4 pads each image to a multiple of p and step 5 to the batch's largest H and W; both pads
    are 0 (after normalisation) at the bottom/right, and the pixel mask is true on all of them
    (shorter-crop's black border, as torchvision's, is image, not padding).
    """
    chw = [normalise(resize_and_crop(image, patch_size, size, resize_mode, resize_size, interpolation,
                                     max_size), mean, std)
           for image in images]
    padded_h = [math.ceil(x.shape[1] / patch_size) * patch_size for x in chw]  # step 4
    padded_w = [math.ceil(x.shape[2] / patch_size) * patch_size for x in chw]
    batch_h, batch_w = max(padded_h), max(padded_w)  # step 5
    pixels = torch.zeros(len(chw), chw[0].shape[0], batch_h, batch_w, dtype=torch.float32)
    pixel_mask = torch.ones(len(chw), batch_h, batch_w, dtype=torch.bool)
    for b, x in enumerate(chw):
        _, h, w = x.shape
        pixels[b, :, :h, :w] = torch.from_numpy(x)
        pixel_mask[b, :h, :w] = False
    return pixels, pixel_mask


# =============================================================================================
# Forward

class PatchEmbed(nn.Module):
    """Forward 1: proj = Conv2d(C, E, kernel=p, stride=p) (state_dict key patch_embed.proj.*), or with
    stem_channels (c_1, .., c_n), 2^n = p, a convolutional stem: stem.i = Conv2d(c_i, c_{i+1}, 3, stride 2,
    padding 1) then ReLU, for i = 0..n-1 (c_0 = C), and proj = Conv2d(c_n, E, 1).

    Each stride-2 step reads up to input 2j + 1 for output j, so a token reads pixels from p - 1 before its
    patch to its patch's last pixel: never the padding beyond its own padded patch grid, and an image
    gives the same tokens alone as inside a padded batch.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, stem_channels: Sequence[int] = ()):
        super().__init__()
        self.stem_channels = [int(c) for c in stem_channels]
        if self.stem_channels and 2 ** len(self.stem_channels) != patch_size:
            raise ValueError(f"a stem of {len(self.stem_channels)} stride-2 convolutions makes patches of "
                             f"{2 ** len(self.stem_channels)}, not {patch_size}")
        inputs = [in_chans] + self.stem_channels[:-1]
        self.stem = nn.ModuleList(nn.Conv2d(i, o, kernel_size=3, stride=2, padding=1)
                                  for i, o in zip(inputs, self.stem_channels))
        if self.stem_channels:
            self.proj = nn.Conv2d(self.stem_channels[-1], embed_dim, kernel_size=1)
        else:
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.stem:
            x = F.relu(conv(x))
        return self.proj(x)


def position_embedding_sine(mask: torch.Tensor, embed_dim: int) -> torch.Tensor:
    """Forward 3, sine: DETR's PositionEmbeddingSine(E/2, 10000, normalize=True, scale=2π) -> (B, E, h, w)."""
    if embed_dim % 4 != 0:
        raise ValueError(f"sine position embedding needs d_model % 4 == 0, got {embed_dim}")
    num_pos_feats, temperature, scale, eps = embed_dim // 2, 10000, 2 * math.pi, 1e-6
    not_mask = ~mask
    y_embed = not_mask.cumsum(1, dtype=torch.float32)
    x_embed = not_mask.cumsum(2, dtype=torch.float32)
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


def real_grid(token_mask_b: torch.Tensor) -> Tuple[int, int]:
    """(h_i, w_i): the rows and columns of one image's token mask (h, w) that hold a real token."""
    real = ~token_mask_b
    return int(real.any(dim=1).sum()), int(real.any(dim=0).sum())


def to_sequence(x: torch.Tensor) -> torch.Tensor:
    """Forward 4: (B, E, h, w) -> (h*w, B, E)."""
    b, e, h, w = x.shape
    return x.reshape(b, e, h * w).permute(2, 0, 1)


def to_feature_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Forward 7: the exact inverse of to_sequence, (h*w, B, E) -> (B, E, h, w)."""
    s, b, e = x.shape
    return x.permute(1, 2, 0).reshape(b, e, h, w)


def with_pos(x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
    return x if pos is None else x + pos


def feed_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The stock feed-forward block: linear2(dropout(activation(linear1(x)))) (dropout is off in eval)."""
    return layer.linear2(layer.dropout(layer.activation(layer.linear1(x))))


def detr_encoder_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor, pos: torch.Tensor,
                       key_padding_mask: torch.Tensor) -> torch.Tensor:
    """Forward 5, mode attention: pos is added to the self-attention queries and keys, not values."""
    if layer.norm_first:
        y = layer.norm1(x)
        q = k = with_pos(y, pos)
        x = x + layer.dropout1(layer.self_attn(q, k, y, key_padding_mask=key_padding_mask, need_weights=False)[0])
        x = x + layer.dropout2(feed_forward(layer, layer.norm2(x)))
    else:
        q = k = with_pos(x, pos)
        x = layer.norm1(x + layer.dropout1(
            layer.self_attn(q, k, x, key_padding_mask=key_padding_mask, need_weights=False)[0]))
        x = layer.norm2(x + layer.dropout2(feed_forward(layer, x)))
    return x


def detr_decoder_layer(layer: nn.TransformerDecoderLayer, t: torch.Tensor, memory: torch.Tensor,
                       pos: torch.Tensor, query_pos: torch.Tensor, tgt_key_padding_mask: Optional[torch.Tensor],
                       memory_key_padding_mask: torch.Tensor) -> torch.Tensor:
    """Forward 6, mode attention (DETR forward_post / forward_pre).

    Self-attention: q = k = t + query_pos, value t. Cross-attention: query t + query_pos,
    key memory + pos, value memory (t being norm1(t) / norm2(t) in pre-norm).
    """
    def self_attention(y):
        q = k = with_pos(y, query_pos)
        return layer.dropout1(layer.self_attn(q, k, y, key_padding_mask=tgt_key_padding_mask,
                                              need_weights=False)[0])

    def cross_attention(y):
        return layer.dropout2(layer.multihead_attn(with_pos(y, query_pos), with_pos(memory, pos), memory,
                                                   key_padding_mask=memory_key_padding_mask,
                                                   need_weights=False)[0])

    if layer.norm_first:
        t = t + self_attention(layer.norm1(t))
        t = t + cross_attention(layer.norm2(t))
        t = t + layer.dropout3(feed_forward(layer, layer.norm3(t)))
    else:
        t = layer.norm1(t + self_attention(t))
        t = layer.norm2(t + cross_attention(t))
        t = layer.norm3(t + layer.dropout3(feed_forward(layer, t)))
    return t


class ImageTransformer(nn.Module):
    """patch_embed.proj, pos_embed (learned only), query_embed (queries only), transformer, head (optional).

    forward(pixels (B, C, H, W), pixel_mask (B, H, W) bool) returns a dict:
      features (B, E, h, w), token_mask (B, h, w) bool, grid [(h_i, w_i)] per image,
      logits (B, K, h, w) for token outputs with a head,
      queries (B, Q, E) and query_logits (B, Q, K) (with a head) when the target is queries.
    """

    # The file's optional preprocessing keys (resize_and_crop's arguments); None: the key is absent.
    resize_mode: Optional[str] = None
    resize_size: Optional[int] = None
    interpolation: Optional[str] = None

    def __init__(self, d_model: int, nhead: int, num_encoder_layers: int, num_decoder_layers: int,
                 dim_feedforward: int, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 norm_first: bool = False, dropout: float = 0.1, in_chans: int = 3, patch_size: int = 16,
                 image_size: int = 224, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 position: str = "sine", position_mode: str = "attention", target: Optional[str] = "tokens",
                 num_queries: int = 100, pos_grid: Tuple[int, int] = (14, 14), num_classes: int = 0,
                 class_names: Optional[Sequence[str]] = None, stem_channels: Sequence[int] = ()):
        super().__init__()
        if position not in POSITIONS or position_mode not in POSITION_MODES:
            raise ValueError(f"position must be one of {POSITIONS}, position_mode one of {POSITION_MODES}")
        if num_decoder_layers == 0:
            target = None
        elif target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS} when there are decoder layers")
        if position == "sine" and d_model % 4 != 0:
            raise ValueError(f"sine position embedding needs d_model % 4 == 0, got {d_model}")
        class_names = list(class_names) if class_names is not None else []
        if num_classes > 0 and len(class_names) not in (0, num_classes):
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError("mean and std need one value per input channel")

        self.in_chans, self.patch_size, self.image_size = in_chans, patch_size, image_size
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        self.position, self.position_mode, self.target = position, position_mode, target
        self.num_classes, self.class_names = num_classes, class_names

        self.patch_embed = PatchEmbed(in_chans, d_model, patch_size, stem_channels)
        self.pos_embed = nn.Parameter(torch.zeros(1, d_model, *pos_grid)) if position == "learned" else None
        self.query_embed = nn.Embedding(num_queries, d_model) if target == "queries" else None
        self.transformer = nn.Transformer(d_model=d_model, nhead=nhead, num_encoder_layers=num_encoder_layers,
                                          num_decoder_layers=num_decoder_layers, dim_feedforward=dim_feedforward,
                                          dropout=dropout, activation=activation, layer_norm_eps=layer_norm_eps,
                                          batch_first=False, norm_first=norm_first)
        self.head = nn.Linear(d_model, num_classes) if num_classes > 0 else None

    @property
    def d_model(self) -> int:
        return self.transformer.d_model

    @property
    def num_decoder_layers(self) -> int:
        return len(self.transformer.decoder.layers)

    def position_embedding(self, token_mask: torch.Tensor) -> Optional[torch.Tensor]:
        """Forward 3: pos (B, E, h, w), or None for position none (0)."""
        b, h, w = token_mask.shape
        if self.position == "sine":
            return position_embedding_sine(token_mask, self.d_model)
        if self.position == "learned":
            _, _, gh, gw = self.pos_embed.shape
            pos = torch.zeros(b, self.d_model, h, w, dtype=torch.float32)
            for i in range(b):  # per image, so that batching never changes an image's result
                h_i, w_i = real_grid(token_mask[i])
                if (h_i, w_i) == (gh, gw):
                    pos_i = self.pos_embed
                else:
                    pos_i = F.interpolate(self.pos_embed, size=(h_i, w_i), mode="bicubic", align_corners=False)
                pos[i, :, :h_i, :w_i] = pos_i[0]
            return pos
        return None

    def forward(self, pixels: torch.Tensor, pixel_mask: torch.Tensor) -> Dict[str, object]:
        b = pixels.shape[0]
        p = self.patch_size
        encoder, decoder = self.transformer.encoder, self.transformer.decoder

        tokens = self.patch_embed(pixels)                         # 1. (B, E, h, w)
        _, e, h, w = tokens.shape
        token_mask = pixel_mask[:, ::p, ::p]                       # 2. (B, h, w), true = padding
        assert token_mask.shape == (b, h, w), "pixels must be padded to a multiple of the patch size"
        pos_map = self.position_embedding(token_mask)              # 3. (B, E, h, w) or None
        src = to_sequence(tokens)                                  # 4. (S, B, E)
        pos = to_sequence(pos_map) if pos_map is not None else None
        kpm = token_mask.reshape(b, h * w)

        # 5. Encoder
        if self.position_mode == "input":
            src = with_pos(src, pos)
            memory = encoder(src, src_key_padding_mask=kpm)     # the unmodified nn.TransformerEncoder
        else:
            memory = src
            for layer in encoder.layers:
                memory = detr_encoder_layer(layer, memory, pos, kpm)
            if encoder.norm is not None:
                memory = encoder.norm(memory)

        # 6. Decoder
        if self.num_decoder_layers == 0:
            out = memory
        elif self.position_mode == "input":
            if self.target == "tokens":
                out = decoder(src, memory, tgt_key_padding_mask=kpm, memory_key_padding_mask=kpm)
            else:
                tgt = self.query_embed.weight.unsqueeze(1).repeat(1, b, 1)  # (Q, B, E)
                out = decoder(tgt, memory, memory_key_padding_mask=kpm)
        else:
            if self.target == "tokens":
                t, query_pos, tgt_kpm = to_sequence(tokens), pos, kpm
            else:
                query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, b, 1)
                t, tgt_kpm = torch.zeros_like(query_pos), None
            for layer in decoder.layers:
                t = detr_decoder_layer(layer, t, memory, pos, query_pos, tgt_kpm, kpm)
            out = decoder.norm(t) if decoder.norm is not None else t

        # 7. Outputs and 8. head
        result: Dict[str, object] = {"token_mask": token_mask,
                                     "grid": [real_grid(token_mask[i]) for i in range(b)]}
        if self.target == "queries":
            result["features"] = to_feature_map(memory, h, w)
            result["queries"] = out.transpose(0, 1)               # (B, Q, E)
            if self.head is not None:
                result["query_logits"] = self.head(out).transpose(0, 1)  # (B, Q, K)
        else:
            result["features"] = to_feature_map(out, h, w)
            if self.head is not None:
                result["logits"] = to_feature_map(self.head(out), h, w)  # (B, K, h, w)
        return result


def reference_mode(model: nn.Module) -> None:
    """eval() (no dropout) but grad enabled with parameters requiring grad: PyTorch's reference path."""
    model.eval()
    for param in model.parameters():
        param.requires_grad_(True)
    assert torch.is_grad_enabled(), "grad must stay enabled so PyTorch takes its reference (slow) path"


def run_images(model: ImageTransformer, paths: Sequence[str], size: Optional[int] = None) -> List[Dict[str, np.ndarray]]:
    """Decodes, preprocesses and runs `paths` as one batch; returns per image the outputs cropped to
    its own token grid: features (E, h_i, w_i), logits (K, h_i, w_i), queries (Q, E), query_logits (Q, K)."""
    reference_mode(model)
    images = [load_image(path) for path in paths]
    pixels, pixel_mask = preprocess(images, model.patch_size, size or model.image_size, model.mean, model.std,
                                    model.resize_mode or "longer", model.resize_size,
                                    model.interpolation or "area-linear")
    result = model(pixels, pixel_mask)
    per_image = []
    for i, (h_i, w_i) in enumerate(result["grid"]):
        item = {"grid": (h_i, w_i)}
        for key in ("features", "logits"):
            if key in result:
                item[key] = result[key][i, :, :h_i, :w_i]
        for key in ("queries", "query_logits"):
            if key in result:
                item[key] = result[key][i]
        per_image.append({k: (v if k == "grid" else to_numpy(v)) for k, v in item.items()})
    return per_image


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().numpy().astype(np.float32))


# =============================================================================================
# File: one safetensors file

def _floats(values: Sequence[float]) -> str:
    return ",".join(repr(float(v)) for v in values)


def export_image_model(model: ImageTransformer, path: str, class_names: Optional[Sequence[str]] = None) -> None:
    """Writes `model` as the spec's File section says: the Transformer metadata export_pytorch.py writes
    (architecture "ImageTransformer") plus the image keys; tensors patch_embed.*, pos_embed,
    query_embed.weight, transformer.* (no transformer.decoder.* when encoder only), head.*."""
    names = list(class_names) if class_names is not None else list(model.class_names)
    if model.num_classes > 0 and len(names) != model.num_classes:
        raise ValueError(f"{model.num_classes} classes need {model.num_classes} class names, got {len(names)}")

    with tempfile.TemporaryDirectory() as folder:  # reuse export_transformer's checks and metadata
        transformer_file = os.path.join(folder, "transformer.safetensors")
        export_transformer(model.transformer, transformer_file)
        transformer_tensors, metadata = read_safetensors(transformer_file)

    metadata = dict(metadata)
    metadata["architecture"] = "ImageTransformer"
    metadata.update({"in_chans": str(model.in_chans), "patch_size": str(model.patch_size),
                     "image_size": str(model.image_size), "mean": _floats(model.mean), "std": _floats(model.std),
                     "position": model.position, "position_mode": model.position_mode})
    for key in ("resize_mode", "resize_size", "interpolation"):  # preprocessing defaults, when set
        if getattr(model, key) is not None:
            metadata[key] = str(getattr(model, key))
    if model.patch_embed.stem_channels:
        metadata["patch_stem"] = ",".join(str(c) for c in model.patch_embed.stem_channels)
    if model.target is not None:
        metadata["target"] = model.target
        if model.target == "queries":
            metadata["num_queries"] = str(model.query_embed.num_embeddings)
    metadata["num_classes"] = str(model.num_classes)
    if model.num_classes > 0:
        metadata["class_names"] = json.dumps(names, separators=(",", ":"))

    tensors = {f"patch_embed.{name}": t for name, t in model.patch_embed.state_dict().items()}
    if model.pos_embed is not None:
        tensors["pos_embed"] = model.pos_embed
    if model.query_embed is not None:
        tensors["query_embed.weight"] = model.query_embed.weight
    arrays = {name: to_numpy(t) for name, t in tensors.items()}
    arrays.update({f"transformer.{name}": array for name, array in transformer_tensors.items()})
    if model.head is not None:
        arrays["head.weight"] = to_numpy(model.head.weight)
        arrays["head.bias"] = to_numpy(model.head.bias)
    write_safetensors(path, arrays, metadata)


def load_image_model(path: str) -> ImageTransformer:
    """Reads a file written by export_image_model back into an ImageTransformer (strict on keys and shapes)."""
    tensors, meta = read_safetensors(path)
    if meta.get("architecture") != "ImageTransformer":
        raise ValueError(f"{path}: architecture is {meta.get('architecture')!r}, expected 'ImageTransformer'")
    if meta.get("batch_first", "false") != "false":
        raise ValueError(f"{path}: batch_first must be false")
    num_decoder_layers = int(meta["num_decoder_layers"])
    position = meta["position"]
    pos_grid = tuple(tensors["pos_embed"].shape[2:]) if position == "learned" else (14, 14)
    model = ImageTransformer(
        d_model=int(meta["d_model"]), nhead=int(meta["nhead"]), num_encoder_layers=int(meta["num_encoder_layers"]),
        num_decoder_layers=num_decoder_layers, dim_feedforward=int(meta["dim_feedforward"]),
        activation=meta["activation"], layer_norm_eps=float(meta["layer_norm_eps"]),
        norm_first=meta["norm_first"] == "true", in_chans=int(meta["in_chans"]), patch_size=int(meta["patch_size"]),
        image_size=int(meta["image_size"]), mean=[float(v) for v in meta["mean"].split(",")],
        std=[float(v) for v in meta["std"].split(",")], position=position, position_mode=meta["position_mode"],
        target=meta.get("target"), num_queries=int(meta.get("num_queries", "100")), pos_grid=pos_grid,
        num_classes=int(meta["num_classes"]), class_names=json.loads(meta.get("class_names", "[]")),
        stem_channels=[int(c) for c in meta["patch_stem"].split(",")] if "patch_stem" in meta else ())
    model.resize_mode, model.interpolation = meta.get("resize_mode"), meta.get("interpolation")
    model.resize_size = int(meta["resize_size"]) if "resize_size" in meta else None
    if meta["encoder_norm"] == "false":
        model.transformer.encoder.norm = None
    if meta["decoder_norm"] == "false":
        model.transformer.decoder.norm = None

    expected = model.state_dict()
    if num_decoder_layers == 0:  # nn.Transformer still builds decoder.norm; the file has no decoder tensors
        expected = {k: v for k, v in expected.items() if not k.startswith("transformer.decoder.")}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path}: missing tensors {missing}, unexpected tensors {unexpected}")
    for name, array in tensors.items():
        if tuple(array.shape) != tuple(expected[name].shape):
            raise ValueError(f"{path}: {name} has shape {list(array.shape)}, expected {list(expected[name].shape)}")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, strict=False)
    return model


# =============================================================================================
# Command line

def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="Run the PyTorch reference image model on images (one batch).")
    parser.add_argument("model", help="ImageTransformer safetensors file")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--size", type=int, default=None, help="longer side after resizing (default: image_size)")
    parser.add_argument("--out", required=True, help="output folder for <stem>.features.npy etc.")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    model = load_image_model(args.model)
    stems = [Path(p).stem for p in args.images]
    if len(set(stems)) != len(stems):
        parser.error("image file names must have distinct stems (outputs are named after them)")
    os.makedirs(args.out, exist_ok=True)
    for path, stem, item in zip(args.images, stems, run_images(model, args.images, args.size)):
        h_i, w_i = item["grid"]
        written = []
        for key in ("features", "logits", "queries", "query_logits"):
            if key in item:
                np.save(os.path.join(args.out, f"{stem}.{key}.npy"), item[key])
                written.append(f"{stem}.{key}.npy {list(item[key].shape)}")
        print(f"{path}: grid {h_i}x{w_i}: " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
