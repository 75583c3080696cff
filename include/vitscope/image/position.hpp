#pragma once
// 2-D position embeddings of docs/image_model.md, "Forward" step 3.

#include <array>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "vitscope/tensor.hpp"

namespace vitscope::image {

// DETR's PositionEmbeddingSine(num_pos_feats = E/2, temperature = 10000, normalize = True,
// scale = 2π) on token_mask (B,h,w) (true = padding) -> (B,E,h,w). E must be a multiple of 4.
Tensor4 position_embedding_sine(const xt::xtensor<bool, 3>& token_mask, std::size_t E);

// A learned pos_embed (1,E,gh,gw) placed per image: bicubically interpolated (PyTorch's
// F.interpolate, align_corners=False) to that image's real grid grids[b] = (h_b, w_b), written at
// the top-left of (E,h,w), 0 elsewhere -> (B,E,h,w).
Tensor4 position_embedding_learned(const Tensor4& pos_embed, std::size_t h, std::size_t w,
                                   const std::vector<std::array<std::size_t, 2>>& grids);

// PyTorch's upsample_bicubic2d, align_corners=False: planes (E, in_h, in_w) -> (E, out_h, out_w).
Tensor3 interpolate_bicubic(const Tensor3& planes, std::size_t out_h, std::size_t out_w);

}  // namespace vitscope::image
