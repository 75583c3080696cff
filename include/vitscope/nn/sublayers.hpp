#pragma once
// Pieces shared by the encoder and decoder layers: the residual add, the attention and
// feed-forward blocks.

#include <cstdint>

#include "vitscope/nn/activation.hpp"
#include "vitscope/nn/attention_recorder.hpp"
#include "vitscope/nn/linear.hpp"
#include "vitscope/nn/masks.hpp"
#include "vitscope/nn/multihead_attention.hpp"
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

// The attention modules of PyTorch's layers: bias on, no extra keys, kdim = vdim = d_model.
inline MultiheadAttentionOptions layer_attention_options(int64_t d_model, int64_t nhead,
                                                         bool batch_first) {
  MultiheadAttentionOptions options;
  options.embed_dim = d_model;
  options.num_heads = nhead;
  options.batch_first = batch_first;
  return options;
}

// attention(query, key, value) (L,N,E) as layers run it, with need_weights=false as PyTorch's
// layers do, unless `recorder` wants this module's per-head weights (N,nh,L,S): then they are
// formed and recorded, and the output is the same.
Tensor3 attention_block(const MultiheadAttention& attention, const Tensor3& query,
                        const Tensor3& key, const Tensor3& value,
                        const KeyPaddingMask& key_padding_mask, const AttnMask& attn_mask,
                        const LayerRecorder& recorder, AttentionKind kind);

// x (..., E) -> linear2(activation(linear1(x))) (..., E). The activation runs inside linear1's
// GEMM, and the hidden (..., dim_feedforward) rows live in a per-thread buffer reused by every call.
Tensor3 feed_forward(const Linear& linear1, Activation activation, const Linear& linear2,
                     const Tensor3& x);

}  // namespace vitscope::nn
