#pragma once
// nn::TransformerDecoder, as torch.nn.TransformerDecoder: a stack of layers, then an optional norm.

#include <optional>
#include <vector>

#include "vitscope/nn/layer_norm.hpp"
#include "vitscope/nn/transformer_decoder_layer.hpp"

namespace vitscope::nn {

class TransformerDecoder {
 public:
  TransformerDecoder() = default;
  // num_layers copies of decoder_layer's configuration (each with its own weights).
  TransformerDecoder(const TransformerDecoderLayer& decoder_layer, int64_t num_layers,
                     std::optional<LayerNorm> norm = std::nullopt);

  // tgt: (T,N,E), memory: (S,N,E) ((N,·,E) when batch_first) -> (T,N,E).
  // pos, query_pos: see TransformerDecoderLayer. `recorder` (optional) gets the attention and
  // layer output it asks for.
  Tensor3 forward(const Tensor3& tgt, const Tensor3& memory, const AttnMask& tgt_mask = {},
                  const AttnMask& memory_mask = {},
                  const KeyPaddingMask& tgt_key_padding_mask = {},
                  const KeyPaddingMask& memory_key_padding_mask = {}, const Tensor3& pos = {},
                  const Tensor3& query_pos = {}, AttentionRecorder* recorder = nullptr) const;

  std::vector<TransformerDecoderLayer> layers;
  std::optional<LayerNorm> norm;  // (E)
};

}  // namespace vitscope::nn
