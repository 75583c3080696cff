"""DETR as facebookresearch/detr publishes it (models/detr.py, backbone.py, transformer.py,
position_encoding.py), inference and training forward, without its NestedTensor and its utils.

The classes and their members carry DETR's names, so `DETR.state_dict()` has the keys a DETR
checkpoint has: backbone.0.body.* (torchvision's ResNet under IntermediateLayerGetter, every
BatchNorm a FrozenBatchNorm2d), input_proj, transformer.encoder.layers.N.*, transformer.decoder.*,
query_embed.weight, class_embed, bbox_embed.layers.N. tools/import_model.py --family detr reads them.

forward(pixels (B,3,H,W), pixel_mask (B,H,W) bool, true on padding) returns
    pred_logits (B,Q,K+1) (the last class "no object"), pred_boxes (B,Q,4) (cx,cy,w,h in [0,1] of the
    unpadded image), and with return_intermediate_dec the aux_outputs of the earlier decoder layers.
capture_cross_attention(model) records every decoder layer's cross-attention per head.
"""

import copy
import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine parameters are fixed buffers (DETR's backbone.py)."""

    def __init__(self, n: int):
        super().__init__()
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + 1e-5).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)


class Backbone(nn.Module):
    """A torchvision ResNet up to layer4; its C5 and the padding mask resized to it."""

    def __init__(self, resnet: nn.Module, num_channels: int):
        super().__init__()
        self.body = IntermediateLayerGetter(resnet, return_layers={"layer4": "0"})
        self.num_channels = num_channels

    def forward(self, pixels: Tensor, mask: Tensor):
        x = self.body(pixels)["0"]
        return x, F.interpolate(mask[None].float(), size=x.shape[-2:]).to(torch.bool)[0]


def torchvision_resnet(name: str, dilation: bool) -> Backbone:
    """DETR's Backbone(name, dilation): torchvision.models.<name> with FrozenBatchNorm2d, random weights."""
    resnet = getattr(torchvision.models, name)(replace_stride_with_dilation=[False, False, dilation],
                                               weights=None, norm_layer=FrozenBatchNorm2d)
    return Backbone(resnet, 512 if name in ("resnet18", "resnet34") else 2048)


class SlimResNet(ResNet):
    """torchvision's ResNet with every stage's planes divided by `divisor`; the stem stays 64 wide."""

    def __init__(self, block, layers, divisor: int, **kwargs):
        self.divisor = divisor
        super().__init__(block, layers, **kwargs)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        return super()._make_layer(block, planes // self.divisor, blocks, stride, dilate)


def slim_resnet(block: str, layers: List[int], divisor: int, dilation: bool,
                norm_layer=FrozenBatchNorm2d) -> Backbone:
    """A SlimResNet backbone ("BasicBlock" or "Bottleneck"); C5 has 512 / divisor * expansion channels."""
    block_class = {"BasicBlock": BasicBlock, "Bottleneck": Bottleneck}[block]
    resnet = SlimResNet(block_class, layers, divisor, replace_stride_with_dilation=[False, False, dilation],
                        norm_layer=norm_layer)
    return Backbone(resnet, 512 // divisor * block_class.expansion)


class PositionEmbeddingSine(nn.Module):
    def __init__(self, num_pos_feats: int = 64, temperature: int = 10000, normalize: bool = True):
        super().__init__()
        self.num_pos_feats, self.temperature, self.normalize = num_pos_feats, temperature, normalize
        self.scale = 2 * math.pi

    def forward(self, mask: Tensor) -> Tensor:  # (B,h,w) -> (B,2*num_pos_feats,h,w)
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class Joiner(nn.Sequential):
    """backbone.0 the ResNet, backbone.1 the position embedding (no weights)."""

    def __init__(self, backbone: Backbone, position_embedding: PositionEmbeddingSine):
        super().__init__(backbone, position_embedding)
        self.num_channels = backbone.num_channels

    def forward(self, pixels: Tensor, mask: Tensor):
        x, x_mask = self[0](pixels, mask)
        return x, x_mask, self[1](x_mask).to(x.dtype)


def _clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList([copy.deepcopy(module) for _ in range(n)])


def _with_pos(x: Tensor, pos: Optional[Tensor]) -> Tensor:
    return x if pos is None else x + pos


class TransformerEncoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 normalize_before=False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.activation = F.relu if activation == "relu" else F.gelu
        self.normalize_before = normalize_before

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))

    def forward(self, src, src_key_padding_mask=None, pos=None):
        if self.normalize_before:
            y = self.norm1(src)
            q = k = _with_pos(y, pos)
            src = src + self.dropout1(self.self_attn(q, k, y, key_padding_mask=src_key_padding_mask)[0])
            return src + self.dropout2(self._ffn(self.norm2(src)))
        q = k = _with_pos(src, pos)
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, src, key_padding_mask=src_key_padding_mask)[0]))
        return self.norm2(src + self.dropout2(self._ffn(src)))


class TransformerDecoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 normalize_before=False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.activation = F.relu if activation == "relu" else F.gelu
        self.normalize_before = normalize_before

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))

    def forward(self, tgt, memory, memory_key_padding_mask=None, pos=None, query_pos=None):
        if self.normalize_before:
            y = self.norm1(tgt)
            q = k = _with_pos(y, query_pos)
            tgt = tgt + self.dropout1(self.self_attn(q, k, y)[0])
            y = self.norm2(tgt)
            tgt = tgt + self.dropout2(self.multihead_attn(_with_pos(y, query_pos), _with_pos(memory, pos), memory,
                                                          key_padding_mask=memory_key_padding_mask)[0])
            return tgt + self.dropout3(self._ffn(self.norm3(tgt)))
        q = k = _with_pos(tgt, query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, tgt)[0]))
        tgt = self.norm2(tgt + self.dropout2(self.multihead_attn(_with_pos(tgt, query_pos), _with_pos(memory, pos),
                                                                 memory, key_padding_mask=memory_key_padding_mask)[0]))
        return self.norm3(tgt + self.dropout3(self._ffn(tgt)))


class TransformerEncoder(nn.Module):
    def __init__(self, encoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.norm = norm

    def forward(self, src, src_key_padding_mask=None, pos=None):
        for layer in self.layers:
            src = layer(src, src_key_padding_mask=src_key_padding_mask, pos=pos)
        return src if self.norm is None else self.norm(src)


class TransformerDecoder(nn.Module):
    def __init__(self, decoder_layer, num_layers, norm, return_intermediate=False):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.norm = norm
        self.return_intermediate = return_intermediate

    def forward(self, tgt, memory, memory_key_padding_mask=None, pos=None, query_pos=None):
        intermediate = []
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_key_padding_mask=memory_key_padding_mask, pos=pos, query_pos=query_pos)
            if self.return_intermediate:
                intermediate.append(self.norm(tgt))
        if self.return_intermediate:
            return torch.stack(intermediate)  # the last entry is norm(tgt), as DETR's
        return self.norm(tgt).unsqueeze(0)


class Transformer(nn.Module):
    """DETR's transformer: positions in every attention, the encoder normed only when pre-norm."""

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
                 dropout=0.1, activation="relu", normalize_before=False, return_intermediate_dec=False):
        super().__init__()
        encoder_layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.encoder = TransformerEncoder(encoder_layer, num_encoder_layers,
                                          nn.LayerNorm(d_model) if normalize_before else None)
        decoder_layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.decoder = TransformerDecoder(decoder_layer, num_decoder_layers, nn.LayerNorm(d_model),
                                          return_intermediate=return_intermediate_dec)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.d_model, self.nhead = d_model, nhead

    def forward(self, src, mask, query_embed, pos_embed):
        # src (B,E,h,w), mask (B,h,w), query_embed (Q,E), pos_embed (B,E,h,w) -> hs (L,B,Q,E)
        bs = src.shape[0]
        src = src.flatten(2).permute(2, 0, 1)
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)
        query_embed = query_embed.unsqueeze(1).repeat(1, bs, 1)
        mask = mask.flatten(1)
        tgt = torch.zeros_like(query_embed)
        memory = self.encoder(src, src_key_padding_mask=mask, pos=pos_embed)
        hs = self.decoder(tgt, memory, memory_key_padding_mask=mask, pos=pos_embed, query_pos=query_embed)
        return hs.transpose(1, 2)


class MLP(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


class DETR(nn.Module):
    def __init__(self, backbone: Joiner, transformer: Transformer, num_classes: int, num_queries: int,
                 aux_loss: bool = False):
        super().__init__()
        self.num_queries = num_queries
        self.transformer = transformer
        hidden_dim = transformer.d_model
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = nn.Conv2d(backbone.num_channels, hidden_dim, kernel_size=1)
        self.backbone = backbone
        self.aux_loss = aux_loss

    def forward(self, pixels: Tensor, pixel_mask: Tensor) -> Dict[str, object]:
        src, mask, pos = self.backbone(pixels, pixel_mask)
        hs = self.transformer(self.input_proj(src), mask, self.query_embed.weight, pos)
        outputs_class = self.class_embed(hs)
        outputs_coord = self.bbox_embed(hs).sigmoid()
        out = {"pred_logits": outputs_class[-1], "pred_boxes": outputs_coord[-1]}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": a, "pred_boxes": b}
                                  for a, b in zip(outputs_class[:-1], outputs_coord[:-1])]
        return out


def build_detr(num_classes: int, backbone: Backbone, hidden_dim: int = 256, nheads: int = 8,
               enc_layers: int = 6, dec_layers: int = 6, dim_feedforward: int = 2048, num_queries: int = 100,
               dropout: float = 0.1, pre_norm: bool = False, aux_loss: bool = False) -> DETR:
    """models/detr.py build() for the given backbone: DETR's defaults, the sine position normalised."""
    joiner = Joiner(backbone, PositionEmbeddingSine(hidden_dim // 2, normalize=True))
    transformer = Transformer(hidden_dim, nheads, enc_layers, dec_layers, dim_feedforward, dropout,
                              normalize_before=pre_norm, return_intermediate_dec=aux_loss)
    return DETR(joiner, transformer, num_classes, num_queries, aux_loss=aux_loss)


def capture_cross_attention(model: DETR) -> List[Tensor]:
    """Each forward appends every decoder layer's cross-attention (B,nh,Q,S), per head, in layer order."""
    captured: List[Tensor] = []

    def recording(attention: nn.MultiheadAttention):
        original = attention.forward

        def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                    average_attn_weights=True):
            out, weights = original(query, key, value, key_padding_mask=key_padding_mask, need_weights=True,
                                    attn_mask=attn_mask, average_attn_weights=False)
            captured.append(weights.detach())
            return out, weights.mean(dim=1)
        attention.forward = forward

    for layer in model.transformer.decoder.layers:
        recording(layer.multihead_attn)
    return captured
