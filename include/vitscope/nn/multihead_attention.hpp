#pragma once
// nn::MultiheadAttention, as torch.nn.MultiheadAttention (PyTorch 1.13) in inference: dropout is
// the identity. Shapes use L = target (query) length, S = source (key) length, N = batch,
// E = embed_dim, nh = num_heads, Dh = E / nh.

#include <cstdint>
#include <memory>

#include "vitscope/nn/attention_scores.hpp"
#include "vitscope/nn/linear.hpp"
#include "vitscope/nn/masks.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::nn {

struct MultiheadAttentionOutput {
  Tensor3 attn_output;          // (L,N,E), or (N,L,E) when batch_first
  Tensor4 attn_output_weights;  // need_weights: per head (N,nh,L,S), or their mean (N,1,L,S); else empty
  std::shared_ptr<const AttentionScores> attn_scores;  // keep_scores: forms any of those rows later
};

// The constructor arguments of torch.nn.MultiheadAttention, under their PyTorch names and defaults.
struct MultiheadAttentionOptions {
  int64_t embed_dim = 0;
  int64_t num_heads = 0;
  bool bias = true;
  bool add_bias_kv = false;
  bool add_zero_attn = false;
  int64_t kdim = 0;  // 0 means embed_dim, as None does in PyTorch
  int64_t vdim = 0;  // 0 means embed_dim
  bool batch_first = false;
};

class MultiheadAttention {
 public:
  MultiheadAttention() = default;
  explicit MultiheadAttention(const MultiheadAttentionOptions& options);

  // query (L,N,E), key (S,N,kdim), value (S,N,vdim); (N,·,·) first when batch_first.
  // key_padding_mask (N,S); attn_mask (1,L,S) or (N*nh,L,S). S in the weights counts the extra
  // key of add_bias_kv and of add_zero_attn, as PyTorch's does. keep_scores (not PyTorch's) keeps
  // what forms any rows of the per-head weights later, at a cost linear in L and S.
  MultiheadAttentionOutput forward(const Tensor3& query, const Tensor3& key, const Tensor3& value,
                                   const KeyPaddingMask& key_padding_mask = {},
                                   bool need_weights = true, const AttnMask& attn_mask = {},
                                   bool average_attn_weights = true, bool keep_scores = false) const;

  // Whether q, k and v share one (3E,E) in_proj_weight (kdim == vdim == embed_dim).
  bool qkv_same_embed_dim() const { return kdim == embed_dim && vdim == embed_dim; }

  int64_t embed_dim = 0;
  int64_t num_heads = 0;
  int64_t head_dim = 0;
  int64_t kdim = 0;
  int64_t vdim = 0;
  bool batch_first = false;
  bool add_zero_attn = false;

  Tensor2 in_proj_weight;  // (3E,E) when qkv_same_embed_dim, else empty
  Tensor2 q_proj_weight;   // (E,E) when not qkv_same_embed_dim, else empty
  Tensor2 k_proj_weight;   // (E,kdim) when not qkv_same_embed_dim, else empty
  Tensor2 v_proj_weight;   // (E,vdim) when not qkv_same_embed_dim, else empty
  Tensor1 in_proj_bias;    // (3E), or empty when bias=false
  Tensor3 bias_k;          // (1,1,E) when add_bias_kv, else empty
  Tensor3 bias_v;          // (1,1,E) when add_bias_kv, else empty
  Linear out_proj;         // E -> E (bias follows `bias`)
};

}  // namespace vitscope::nn
