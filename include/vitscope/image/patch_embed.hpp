#pragma once
// The patch embedding: Conv2d(C, E, kernel_size = stride = p), as timm's PatchEmbed.proj, or a
// convolutional stem of stride-2 steps before a 1x1 proj (tools/reference_model.py's PatchEmbed).

#include <vector>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::image {

// pixels (B,C,H,W), weight (E,C,p,p), bias (E) -> tokens (B,E,H/p,W/p). H and W are multiples of p.
Tensor4 patch_embed(const Tensor4& pixels, const Tensor4& weight, const Tensor1& bias);

// One stem step, patch_embed.stem.N: Conv2d(c_in, c_out, kernel 3, stride 2, padding 1), then ReLU.
struct StemConv {
  Tensor4 weight;  // (c_out,c_in,3,3)
  Tensor1 bias;    // (c_out)
};

// pixels (B,C,H,W) through every step in order -> (B,c_n,H/2^n,W/2^n). H and W are multiples of
// 2^n. Output i of a step reads inputs up to 2i + 1, so a final position reads no pixel past its
// own 2^n-square: an image's outputs do not depend on the padding a batch adds around it.
Tensor4 conv_stem(const Tensor4& pixels, const std::vector<StemConv>& stem);

// patch_embed.proj: Conv2d(c, E, kernel_size = stride = k).
struct PatchProjection {
  Tensor4 weight;  // (E,C,p,p), or (E,c_n,1,1) after a stem
  Tensor1 bias;    // (E)
};

// timm's PatchEmbed: the stem's steps, if any, then proj.
struct PatchEmbed {
  std::vector<StemConv> stem;  // patch_embed.stem.N, one per stem channel count
  PatchProjection proj;        // patch_embed.proj

  // pixels (B,C,H,W) -> tokens (B,E,H/p,W/p). H and W are multiples of p.
  Tensor4 forward(const Tensor4& pixels) const;
};

}  // namespace vitscope::image
