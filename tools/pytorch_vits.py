#!/usr/bin/env python3
"""The CLS-token vision transformers users bring, as PyTorch modules with their published structure and
EXACT state_dict key names, so tools/import_model.py is tested on the checkpoints they save.

    TimmViT        timm's VisionTransformer (timm 0.9.x timm/models/vision_transformer.py) and, with options,
                   DeiT distilled (timm/models/deit.py VisionTransformerDistilled), DINO v1
                   (facebookresearch/dino vision_transformer.py) and DINOv2 (facebookresearch/dinov2
                   dinov2/models/vision_transformer.py DinoVisionTransformer, with registers and LayerScale)
    HFViTModel     Hugging Face transformers' ViTModel (models/vit/modeling_vit.py)
    HFViTForImageClassification
    torchvision    torchvision.models.VisionTransformer itself (see torchvision_outputs), not re-implemented

Every module's `outputs(pixels)` takes pixels (1, 3, H, W) and returns a dict of tensors:
    cls (E): the CLS token after the final norm
    features (E, h, w): the patch tokens after the final norm, as a map
    logits (K): when the model has a head (DeiT distilled: (head(cls) + head_dist(dist)) / 2, eval mode)
    attention (nh, X + S, X + S): the last block's softmax attention weights, prefix tokens first
      (X = cls, dist, registers in that order; S = h * w)

Versions mirrored (read in the published sources: facebookresearch/dino vision_transformer.py at 04c0ad9,
facebookresearch/dinov2 dinov2/models/vision_transformer.py at 027a9ac and its later register-token form,
huggingface/transformers src/transformers/models/vit/modeling_vit.py at 005db82, timm 0.9's _pos_embed and
timm/layers/pos_embed.py resample_abs_pos_embed, torchvision 0.14 as installed):
  * timm 0.9 VisionTransformer._pos_embed: cls, dist (deit.py), reg_token concatenated in that order; with
    no_embed_class the patch rows get pos_embed and the prefix tokens none, otherwise pos_embed covers the
    prefix tokens too. Resizing: timm only resizes with dynamic_img_size, through resample_abs_pos_embed,
    which calls F.interpolate(size=..., mode="bicubic", antialias=True) (skipped when the new grid is the
    stored square one): TimmViT(pos_resize="size-antialias") is a timm model with dynamic_img_size=True.
    antialias=True differs from the spec's "size" rule even when enlarging (PyTorch's antialiased bicubic
    uses the a = -0.5 kernel, the plain one a = -0.75), so pos_resize="size" here is the spec's plain rule
    (Hugging Face's), which timm itself never uses.
  * DINO v1 (facebookresearch/dino, vision_transformer.py interpolate_pos_encoding): no resize when
    npatch == N and the pixel input is square, else F.interpolate(scale_factor=((h + 0.1) / sqrt(N),
    (w + 0.1) / sqrt(N)), mode="bicubic") on the (1, E, sqrt(N), sqrt(N)) patch rows (its variables named
    w, h hold H, W: the first factor scales the rows).
  * DINOv2 (facebookresearch/dinov2, DinoVisionTransformer with interpolate_offset=0.1, the constructor's
    default, and interpolate_antialias=False): the same rule; register_tokens are inserted after the CLS
    token after the positions are added, so they have none. The torch.hub "_reg" models are built with
    interpolate_offset=0.0 and interpolate_antialias=True, i.e. F.interpolate(size=(h, w), bicubic,
    antialias=True): TimmViT(register_naming="dinov2", pos_resize="size-antialias"), the spec's
    "size-antialias". Either way DINOv2 skips the resize when npatch == N and the pixel input is square.
  * Hugging Face transformers (modeling_vit.py, 2025 versions): ViTEmbeddings.interpolate_pos_encoding
    = F.interpolate(size=(h, w), mode="bicubic", align_corners=False), skipped when num_patches ==
    num_positions and height == width. (transformers before ~4.42 used DINO's scale_factor + 0.1 rule.)
    layer_norm_eps 1e-12, GELU "gelu" = exact erf GELU, classifier on sequence_output[:, 0].
"""

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

POS_RESIZE_RULES = ("size", "dino", "size-antialias")


def resize_patch_positions(patch_pos: torch.Tensor, grid: Tuple[int, int], h: int, w: int, rule: str) -> torch.Tensor:
    """patch_pos (1, gh*gw, E) -> (1, h*w, E) by `rule`, for an image whose token grid is (h, w)."""
    gh, gw = grid
    e = patch_pos.shape[-1]
    x = patch_pos.reshape(1, gh, gw, e).permute(0, 3, 1, 2)  # (1, E, gh, gw)
    if rule == "size":
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
    elif rule == "dino":
        x = F.interpolate(x, scale_factor=((h + 0.1) / gh, (w + 0.1) / gw), mode="bicubic")
        assert x.shape[-2:] == (h, w), f"DINO's rule gave {tuple(x.shape[-2:])} for {(h, w)}"
    elif rule == "size-antialias":
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    else:
        raise ValueError(f"pos_resize must be one of {POS_RESIZE_RULES}, got {rule!r}")
    return x.permute(0, 2, 3, 1).reshape(1, h * w, e)


# =============================================================================================
# timm / DeiT / DINO / DINOv2

class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # erf
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """timm / DINO Attention: qkv Linear(E, 3E), heads split as reshape(B, N, 3, nh, Dh); returns (out, attn)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, nh, N, N)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x), attn


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    """timm Block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x))); ls = Identity without init_values."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, eps: float, init_values: Optional[float],
                 qkv_bias: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x):
        y, attn = self.attn(self.norm1(x))
        x = x + self.ls1(y)
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x, attn


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x)  # (B, E, h, w)


class TimmViT(nn.Module):
    """timm 0.9 VisionTransformer (global_pool "token") and its DeiT / DINO / DINOv2 relatives.

    state_dict keys: patch_embed.proj.*, cls_token, dist_token (distilled), reg_token (reg_tokens > 0,
    timm naming) or register_tokens (register_naming="dinov2"), pos_embed (1, P + gh*gw, E) with
    P = 0 (no_embed_class), 1 (DINOv2: the registers have no row) or the prefix count, mask_token
    (mask_token=True, DINOv2), blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2,
    ls2.gamma}, norm, head (num_classes > 0), head_dist (distilled with a head).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_hidden: Optional[int] = None, num_classes: int = 1000,
                 distilled: bool = False, reg_tokens: int = 0, register_naming: str = "timm",
                 no_embed_class: bool = False, init_values: Optional[float] = None, eps: float = 1e-6,
                 pos_resize: str = "size", mask_token: bool = False, qkv_bias: bool = True):
        super().__init__()
        if register_naming not in ("timm", "dinov2"):
            raise ValueError("register_naming is 'timm' (reg_token) or 'dinov2' (register_tokens)")
        if register_naming == "dinov2" and (distilled or no_embed_class):
            raise ValueError("DINOv2 has neither a distillation token nor no_embed_class")
        if pos_resize not in POS_RESIZE_RULES:
            raise ValueError(f"pos_resize must be one of {POS_RESIZE_RULES}")
        self.patch_size, self.num_heads, self.pos_resize = patch_size, num_heads, pos_resize
        self.register_naming, self.no_embed_class, self.distilled = register_naming, no_embed_class, distilled
        self.grid = (img_size // patch_size, img_size // patch_size)
        num_patches = self.grid[0] * self.grid[1]

        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        self.reg_token = self.register_tokens = None
        if reg_tokens and register_naming == "timm":
            self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim))
        elif reg_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim))
        self.num_prefix_tokens = 1 + int(distilled) + reg_tokens
        if no_embed_class:
            self.pos_prefix = 0
        elif register_naming == "dinov2":
            self.pos_prefix = 1
        else:
            self.pos_prefix = self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.randn(1, self.pos_prefix + num_patches, embed_dim) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim)) if mask_token else None
        hidden = mlp_hidden or 4 * embed_dim
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, hidden, eps, init_values, qkv_bias)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=eps)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if distilled:
            self.head_dist = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.num_classes = num_classes

    def _positions(self, h: int, w: int, pixel_hw: Tuple[int, int]) -> torch.Tensor:
        """pos_embed for an (h, w) token grid: (1, P + h*w, E), prefix rows never resized."""
        prefix, patch = self.pos_embed[:, :self.pos_prefix], self.pos_embed[:, self.pos_prefix:]
        if self.pos_resize == "dino" or self.register_naming == "dinov2":
            # DINO / DINOv2 interpolate_pos_encoding: `if npatch == N and w == h: return self.pos_embed`
            same = h * w == patch.shape[1] and pixel_hw[0] == pixel_hw[1]
        else:  # timm resample_abs_pos_embed / HF: nothing to do at the stored grid
            same = (h, w) == self.grid
        if not same:
            patch = resize_patch_positions(patch, self.grid, h, w, self.pos_resize)
        return torch.cat((prefix, patch), dim=1)

    def prepare_tokens(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, int, int]:
        b, _, H, W = pixels.shape
        x = self.patch_embed(pixels)                          # (B, E, h, w)
        _, e, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)                      # (B, S, E)
        pos = self._positions(h, w, (H, W))
        cls = self.cls_token.expand(b, -1, -1)
        if self.register_naming == "dinov2":                  # DINOv2 prepare_tokens_with_masks
            x = torch.cat((cls, x), dim=1) + pos
            if self.register_tokens is not None:
                x = torch.cat((x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]), dim=1)
            return x, h, w
        to_cat = [cls]                                        # timm _pos_embed (deit.py for dist_token)
        if self.dist_token is not None:
            to_cat.append(self.dist_token.expand(b, -1, -1))
        if self.reg_token is not None:
            to_cat.append(self.reg_token.expand(b, -1, -1))
        if self.no_embed_class:
            x = torch.cat(to_cat + [x + pos], dim=1)
        else:
            x = torch.cat(to_cat + [x], dim=1) + pos
        return x, h, w

    def outputs(self, pixels: torch.Tensor) -> Dict[str, torch.Tensor]:
        assert pixels.shape[0] == 1, "one image at a time"
        x, h, w = self.prepare_tokens(pixels)
        attn = None
        for block in self.blocks:
            x, attn = block(x)
        x = self.norm(x)
        X = self.num_prefix_tokens
        out = {"cls": x[0, 0], "features": x[0, X:].transpose(0, 1).reshape(-1, h, w), "attention": attn[0]}
        if self.num_classes > 0:
            if self.distilled:
                out["logits"] = ((self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2)[0]
            else:
                out["logits"] = self.head(x[:, 0])[0]
        return out


# =============================================================================================
# Hugging Face ViT

class HFSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.num_attention_heads, self.attention_head_size = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def _split(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.num_attention_heads, self.attention_head_size).permute(0, 2, 1, 3)

    def forward(self, x):
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.attention_head_size ** -0.5  # eager_attention_forward
        probs = F.softmax(scores, dim=-1, dtype=torch.float32)
        context = torch.matmul(probs, v).transpose(1, 2).contiguous()
        return context.view(x.shape), probs


class HFDense(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)

    def forward(self, x):
        return self.dense(x)


class HFAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.attention = HFSelfAttention(hidden, heads)
        self.output = HFDense(hidden, hidden)

    def forward(self, x):
        context, probs = self.attention(x)
        return self.output(context), probs


class HFLayer(nn.Module):
    """ViTLayer: h = x + attention(layernorm_before(x)); out = h + output.dense(gelu(intermediate.dense(layernorm_after(h))))."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float):
        super().__init__()
        self.attention = HFAttention(hidden, heads)
        self.intermediate = HFDense(hidden, intermediate)
        self.output = HFDense(intermediate, hidden)
        self.layernorm_before = nn.LayerNorm(hidden, eps=eps)
        self.layernorm_after = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x):
        a, probs = self.attention(self.layernorm_before(x))
        x = a + x
        y = self.output(F.gelu(self.intermediate(self.layernorm_after(x))))
        return y + x, probs


class HFPatchEmbeddings(nn.Module):
    def __init__(self, patch_size: int, hidden: int):
        super().__init__()
        self.projection = nn.Conv2d(3, hidden, kernel_size=patch_size, stride=patch_size)


class HFEmbeddings(nn.Module):
    def __init__(self, image_size: int, patch_size: int, hidden: int, mask_token: bool):
        super().__init__()
        self.patch_size, self.grid = patch_size, image_size // patch_size
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, hidden)) if mask_token else None
        self.patch_embeddings = HFPatchEmbeddings(patch_size, hidden)
        self.position_embeddings = nn.Parameter(torch.randn(1, self.grid * self.grid + 1, hidden))

    def forward(self, pixels: torch.Tensor, interpolate_pos_encoding: bool):
        b, _, height, width = pixels.shape
        if not interpolate_pos_encoding and (height, width) != (self.grid * self.patch_size,) * 2:
            raise ValueError(f"Input image size ({height}*{width}) doesn't match model")
        x = self.patch_embeddings.projection(pixels)
        h, w = x.shape[-2:]
        x = torch.cat((self.cls_token.expand(b, -1, -1), x.flatten(2).transpose(1, 2)), dim=1)
        pos = self.position_embeddings
        if interpolate_pos_encoding and not (h * w == pos.shape[1] - 1 and height == width):
            patch = resize_patch_positions(pos[:, 1:], (self.grid, self.grid), height // self.patch_size,
                                           width // self.patch_size, "size")
            pos = torch.cat((pos[:, :1], patch), dim=1)
        return x + pos, h, w


class HFEncoder(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, layers: int, eps: float):
        super().__init__()
        self.layer = nn.ModuleList(HFLayer(hidden, heads, intermediate, eps) for _ in range(layers))


class HFPooler(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)


class HFViTModel(nn.Module):
    """ViTModel: embeddings.{cls_token, mask_token?, position_embeddings, patch_embeddings.projection},
    encoder.layer.N.{attention.attention.{query,key,value}, attention.output.dense, intermediate.dense,
    output.dense, layernorm_before, layernorm_after}, layernorm, pooler.dense (add_pooling_layer)."""

    def __init__(self, image_size: int = 224, patch_size: int = 16, hidden_size: int = 768, num_hidden_layers: int = 12,
                 num_attention_heads: int = 12, intermediate_size: int = 3072, layer_norm_eps: float = 1e-12,
                 add_pooling_layer: bool = True, use_mask_token: bool = False):
        super().__init__()
        self.embeddings = HFEmbeddings(image_size, patch_size, hidden_size, use_mask_token)
        self.encoder = HFEncoder(hidden_size, num_attention_heads, intermediate_size, num_hidden_layers, layer_norm_eps)
        self.layernorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.pooler = HFPooler(hidden_size) if add_pooling_layer else None

    def sequence(self, pixels: torch.Tensor, interpolate_pos_encoding: bool = False):
        x, h, w = self.embeddings(pixels, interpolate_pos_encoding)
        probs = None
        for layer in self.encoder.layer:
            x, probs = layer(x)
        return self.layernorm(x), probs, h, w

    def outputs(self, pixels: torch.Tensor, interpolate_pos_encoding: bool = False) -> Dict[str, torch.Tensor]:
        x, probs, h, w = self.sequence(pixels, interpolate_pos_encoding)
        return {"cls": x[0, 0], "features": x[0, 1:].transpose(0, 1).reshape(-1, h, w), "attention": probs[0]}


class HFViTForImageClassification(nn.Module):
    """ViTForImageClassification: vit = ViTModel(add_pooling_layer=False), classifier on the CLS output."""

    def __init__(self, num_labels: int = 1000, **config):
        super().__init__()
        self.vit = HFViTModel(add_pooling_layer=False, **config)
        self.classifier = nn.Linear(self.vit.layernorm.normalized_shape[0], num_labels)

    def outputs(self, pixels: torch.Tensor, interpolate_pos_encoding: bool = False) -> Dict[str, torch.Tensor]:
        out = self.vit.outputs(pixels, interpolate_pos_encoding)
        out["logits"] = self.classifier(out["cls"][None])[0]
        return out


# =============================================================================================
# torchvision

def torchvision_outputs(model: nn.Module, pixels: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Runs torchvision.models.VisionTransformer `model` itself on pixels (1, 3, S, S) and returns its outputs.

    The encoder's output (after encoder.ln) is caught with a forward hook; the last block's attention by
    wrapping its self_attention (nn.MultiheadAttention) call with need_weights=True,
    average_attn_weights=False for this one run.
    """
    assert pixels.shape[0] == 1, "one image at a time"
    caught = {}
    last = model.encoder.layers[-1].self_attention
    original = last.forward

    def with_weights(*args, **kwargs):
        kwargs["need_weights"], kwargs["average_attn_weights"] = True, False
        out, weights = original(*args, **kwargs)
        caught["attention"] = weights
        return out, weights

    hook = model.encoder.register_forward_hook(lambda module, inputs, output: caught.__setitem__("sequence", output))
    last.forward = with_weights
    try:
        logits = model(pixels)
    finally:
        del last.forward  # back to the class's forward
        hook.remove()
    x = caught["sequence"]
    p = model.patch_size
    h, w = pixels.shape[2] // p, pixels.shape[3] // p
    return {"cls": x[0, 0], "features": x[0, 1:].transpose(0, 1).reshape(-1, h, w),
            "attention": caught["attention"][0], "logits": logits[0]}
