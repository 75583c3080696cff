#pragma once
// nn::TransformerDecoderLayer, as torch.nn.TransformerDecoderLayer (PyTorch 1.13), inference only.

#include <cstdint>

#include "vitscope/nn/activation.hpp"
#include "vitscope/nn/attention_recorder.hpp"
#include "vitscope/nn/layer_norm.hpp"
#include "vitscope/nn/linear.hpp"
#include "vitscope/nn/masks.hpp"
#include "vitscope/nn/multihead_attention.hpp"

namespace vitscope::nn {

class TransformerDecoderLayer {
 public:
  TransformerDecoderLayer() = default;
  TransformerDecoderLayer(int64_t d_model, int64_t nhead, int64_t dim_feedforward = 2048,
                          Activation activation = Activation::relu, double layer_norm_eps = 1e-5,
                          bool batch_first = false, bool norm_first = false);

  // tgt: (T,N,E), memory: (S,N,E) ((N,·,E) when batch_first) -> (T,N,E)
  // pos (like memory) and query_pos (like tgt), DETR's extension: query_pos is added to the
  // queries (and self-attention keys), pos to the cross-attention keys; empty, the layer is
  // exactly PyTorch's. `recorder` gets self_attn's and multihead_attn's weights when it asks.
  Tensor3 forward(const Tensor3& tgt, const Tensor3& memory, const AttnMask& tgt_mask = {},
                  const AttnMask& memory_mask = {},
                  const KeyPaddingMask& tgt_key_padding_mask = {},
                  const KeyPaddingMask& memory_key_padding_mask = {}, const Tensor3& pos = {},
                  const Tensor3& query_pos = {}, const LayerRecorder& recorder = {}) const;

  MultiheadAttention self_attn;       // E -> E, over the target
  MultiheadAttention multihead_attn;  // E -> E, target queries over memory keys
  Linear linear1;                     // E -> dim_feedforward
  Linear linear2;                     // dim_feedforward -> E
  LayerNorm norm1;                    // (E)
  LayerNorm norm2;                    // (E)
  LayerNorm norm3;                    // (E)
  Activation activation = Activation::relu;
  bool norm_first = false;

 private:
  // x: (T,N,E) -> self-attention output (T,N,E)
  Tensor3 sa_block(const Tensor3& x, const AttnMask& attn_mask,
                   const KeyPaddingMask& key_padding_mask, const Tensor3& query_pos,
                   const LayerRecorder& recorder) const;
  // x: (T,N,E), mem: (S,N,E) -> cross-attention output (T,N,E)
  Tensor3 mha_block(const Tensor3& x, const Tensor3& mem, const AttnMask& attn_mask,
                    const KeyPaddingMask& key_padding_mask, const Tensor3& pos,
                    const Tensor3& query_pos, const LayerRecorder& recorder) const;
  // x: (T,N,E) -> (T,N,E)
  Tensor3 ff_block(const Tensor3& x) const;
};

}  // namespace vitscope::nn
