#pragma once
// The stem: Conv2d(C, E, kernel_size = stride = p), as timm's PatchEmbed.proj.

#include "vitscope/tensor.hpp"

namespace vitscope::image {

// pixels (B,C,H,W), weight (E,C,p,p), bias (E) -> tokens (B,E,H/p,W/p). H and W are multiples of p.
Tensor4 patch_embed(const Tensor4& pixels, const Tensor4& weight, const Tensor1& bias);

}  // namespace vitscope::image
