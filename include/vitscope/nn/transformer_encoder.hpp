#pragma once
// nn::TransformerEncoder, as torch.nn.TransformerEncoder: a stack of layers, then an optional norm.

#include <optional>
#include <vector>

#include "vitscope/nn/layer_norm.hpp"
#include "vitscope/nn/transformer_encoder_layer.hpp"

namespace vitscope::nn {

class TransformerEncoder {
 public:
  TransformerEncoder() = default;
  // num_layers copies of encoder_layer's configuration (each with its own weights).
  TransformerEncoder(const TransformerEncoderLayer& encoder_layer, int64_t num_layers,
                     std::optional<LayerNorm> norm = std::nullopt);

  // src: (S,N,E), or (N,S,E) when batch_first -> same shape. pos: see TransformerEncoderLayer.
  // `recorder` (optional) gets the attention and layer output it asks for.
  Tensor3 forward(const Tensor3& src, const AttnMask& mask = {},
                  const KeyPaddingMask& src_key_padding_mask = {}, const Tensor3& pos = {},
                  AttentionRecorder* recorder = nullptr) const;

  std::vector<TransformerEncoderLayer> layers;
  std::optional<LayerNorm> norm;  // (E)
};

}  // namespace vitscope::nn
