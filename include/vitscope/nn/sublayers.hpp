#pragma once
// Pieces shared by the encoder and decoder layers: the residual add and the feed-forward block.

#include "vitscope/nn/activation.hpp"
#include "vitscope/nn/linear.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::nn {

// x (..., E) += y (same shape)
inline void add_in_place(Tensor3& x, const Tensor3& y) {
  float* a = x.data();
  const float* b = y.data();
  for (std::size_t i = 0, n = x.size(); i < n; ++i) a[i] += b[i];
}

// DETR's with_pos_embed: x + pos, or x itself when pos is empty (no position given). `storage`
// holds the sum so the common no-position case costs no copy.
inline const Tensor3& with_pos_embed(const Tensor3& x, const Tensor3& pos, Tensor3& storage) {
  if (pos.size() == 0) return x;
  storage = x;
  add_in_place(storage, pos);
  return storage;
}

// x (..., E) -> linear2(activation(linear1(x))) (..., E). The activation runs inside linear1's
// GEMM, and the hidden (..., dim_feedforward) rows live in a per-thread buffer reused by every call.
Tensor3 feed_forward(const Linear& linear1, Activation activation, const Linear& linear2,
                     const Tensor3& x);

}  // namespace vitscope::nn
