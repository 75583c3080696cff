#pragma once
// 2-D position embeddings of docs/image_model.md, "Forward" step 3.

#include <array>
#include <string>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::image {

// DETR's PositionEmbeddingSine(num_pos_feats = E/2, temperature = 10000, normalize = True,
// scale = 2π) on token_mask (B,h,w) (true = padding) -> (B,E,h,w). E must be a multiple of 4.
Tensor4 position_embedding_sine(const xt::xtensor<bool, 3>& token_mask, std::size_t E);

// How a learned grid is resized to an image's grid (h_b, w_b), all bicubic, align_corners=False:
// as F.interpolate(size=(h_b, w_b)); as DINO's interpolate_pos_encoding,
// F.interpolate(scale_factor=((h_b + 0.1) / gh, (w_b + 0.1) / gw)); or as timm's
// resample_abs_pos_embed and DINOv2's hub register models, F.interpolate(size=..., antialias=True).
enum class GridResize { size, dino, size_antialias };
// "size", "dino", "size-antialias": the model file's pos_resize values.
const char* grid_resize_name(GridResize resize);

// A learned pos_embed (1,E,gh,gw) placed per image: resized to that image's real grid
// grids[b] = (h_b, w_b) (kept as is when they are equal), written at the top-left of (E,h,w), 0
// elsewhere -> (B,E,h,w).
Tensor4 position_embedding_learned(const Tensor4& pos_embed, std::size_t h, std::size_t w,
                                   const std::vector<std::array<std::size_t, 2>>& grids,
                                   GridResize resize = GridResize::size);

// PyTorch's bicubic kernels, align_corners=False: plain upsample_bicubic2d (a = -0.75, taps
// clamped to the edge) or antialiased _upsample_bicubic2d_aa (a = -0.5, stretched when shrinking,
// cut at the edge and renormalised).
enum class BicubicKind { plain, antialias };

// F.interpolate(mode="bicubic"): planes (E, in_h, in_w) -> (E, out_h, out_w). An output pixel
// centres on input (o + 0.5) * in / out, or (o + 0.5) / scale_factor when PyTorch is given scale
// factors (rows, columns) instead of a size.
Tensor3 interpolate_bicubic(const Tensor3& planes, std::size_t out_h, std::size_t out_w,
                            BicubicKind kind = BicubicKind::plain,
                            const std::array<double, 2>* scale_factor = nullptr);

}  // namespace vitscope::image
