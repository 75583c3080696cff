#pragma once
// nn::TransformerEncoderLayer, as torch.nn.TransformerEncoderLayer (PyTorch 1.13), inference only.

#include <cstdint>

#include "vitscope/nn/activation.hpp"
#include "vitscope/nn/attention_recorder.hpp"
#include "vitscope/nn/layer_norm.hpp"
#include "vitscope/nn/linear.hpp"
#include "vitscope/nn/masks.hpp"
#include "vitscope/nn/multihead_attention.hpp"

namespace vitscope::nn {

class TransformerEncoderLayer {
 public:
  TransformerEncoderLayer() = default;
  TransformerEncoderLayer(int64_t d_model, int64_t nhead, int64_t dim_feedforward = 2048,
                          Activation activation = Activation::relu, double layer_norm_eps = 1e-5,
                          bool batch_first = false, bool norm_first = false);

  // src: (S,N,E), or (N,S,E) when batch_first -> same shape.
  // pos (same shape as src), DETR's extension: added to the self-attention queries and keys (not
  // the values); empty, the layer is exactly PyTorch's. `recorder` gets self_attn's weights
  // when it asks for them.
  Tensor3 forward(const Tensor3& src, const AttnMask& src_mask = {},
                  const KeyPaddingMask& src_key_padding_mask = {}, const Tensor3& pos = {},
                  const LayerRecorder& recorder = {}) const;

  MultiheadAttention self_attn;  // E -> E
  Linear linear1;                // E -> dim_feedforward
  Linear linear2;                // dim_feedforward -> E
  LayerNorm norm1;               // (E)
  LayerNorm norm2;               // (E)
  Activation activation = Activation::relu;
  bool norm_first = false;

 private:
  // x: (S,N,E) -> self-attention output (S,N,E)
  Tensor3 sa_block(const Tensor3& x, const AttnMask& attn_mask,
                   const KeyPaddingMask& key_padding_mask, const Tensor3& pos,
                   const LayerRecorder& recorder) const;
  // x: (S,N,E) -> linear2(activation(linear1(x))) (S,N,E)
  Tensor3 ff_block(const Tensor3& x) const;
};

}  // namespace vitscope::nn
