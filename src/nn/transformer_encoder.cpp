#include "vitscope/nn/transformer_encoder.hpp"

namespace vitscope::nn {

TransformerEncoder::TransformerEncoder(const TransformerEncoderLayer& encoder_layer,
                                       int64_t num_layers, std::optional<LayerNorm> norm)
    : layers(static_cast<std::size_t>(num_layers), encoder_layer), norm(std::move(norm)) {}

Tensor3 TransformerEncoder::forward(const Tensor3& src, const AttnMask& mask,
                                    const KeyPaddingMask& src_key_padding_mask,
                                    const Tensor3& pos, AttentionRecorder* recorder) const {
  Tensor3 output = src;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const LayerRecorder layer{recorder, {Stack::encoder, i}};
    output = layers[i].forward(output, mask, src_key_padding_mask, pos, layer);
    if (recorder && recorder->wants_output(layer.layer)) recorder->record_output(output);
  }
  if (norm) output = norm->forward(output);
  return output;
}

}  // namespace vitscope::nn
