#pragma once
// What one attention module's forward leaves behind so that any rows of its weights can be formed
// later, without ever holding all (N,nh,L,S) of them: its projected queries and keys and its
// masks. A (nh,L,S) capture grows as the square of the tokens (4 GiB for 4 heads at 16,384
// tokens); these grow linearly. Rows come from the same kernel as the forward's need_weights.

#include <cstddef>
#include <vector>

#include "vitscope/nn/masks.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::nn {

class AttentionScores {
 public:
  AttentionScores() = default;
  // q (N,L,E) and k (N,S_ext,E) per batch item, batch first; key_padding_mask (N,S) and
  // attn_mask (1 or N*nh,L,S) as the forward took them, over the first S of the S_ext keys.
  AttentionScores(Tensor3 q, Tensor3 k, std::size_t heads, KeyPaddingMask key_padding_mask,
                  AttnMask attn_mask);

  std::size_t batch() const { return q_.shape(0); }
  std::size_t heads() const { return heads_; }
  std::size_t queries() const { return q_.shape(1); }  // L
  std::size_t keys() const { return k_.shape(1); }     // S_ext

  // (nh, rows.size(), S_ext): the softmax weights of batch item n's query positions `rows`,
  // as the forward forms them with need_weights.
  Tensor3 weights(std::size_t n, const std::vector<std::size_t>& rows) const;

 private:
  Tensor3 q_;  // (N,L,E)
  Tensor3 k_;  // (N,S_ext,E)
  // k_ packed per batch item as the attention kernel reads it (N * packed_item_floats_), or
  // empty on the portable kernel level, which reads k_ in place.
  std::vector<float> k_packed_;
  std::size_t packed_item_floats_ = 0;
  std::size_t heads_ = 0;
  KeyPaddingMask key_padding_mask_;  // (N,S) or empty
  AttnMask attn_mask_;               // (1 or N*nh,L,S) or empty
};

}  // namespace vitscope::nn
