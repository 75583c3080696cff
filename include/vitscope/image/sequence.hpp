#pragma once
// The seed article's reshape between CV batches and transformer sequences, and back:
// (B,E,h,w) -> reshape (B,E,h*w) -> permute (h*w,B,E), token index s = i*w + j.

#include <cstddef>

#include <xtensor/xtensor.hpp>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::image {

// x: (B,E,h,w) -> (h*w,B,E)
Tensor3 to_sequence(const Tensor4& x);

// seq: (h*w,B,E) -> (B,E,h,w); the exact inverse of to_sequence.
Tensor4 to_feature_map(const Tensor3& seq, std::size_t h, std::size_t w);

// maps (B,K,h,w) -> image b's (K,rows,cols): its real token grid, padding dropped, so an image's
// result does not depend on the batch it ran in.
Tensor3 crop_feature_map(const Tensor4& maps, std::size_t b, std::size_t rows, std::size_t cols);

// token mask (B,h,w), true = padding -> key_padding_mask (B,h*w) in additive form (0 / -inf).
Tensor2 to_key_padding_mask(const xt::xtensor<bool, 3>& token_mask);

}  // namespace vitscope::image
