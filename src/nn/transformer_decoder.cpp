#include "vitscope/nn/transformer_decoder.hpp"

namespace vitscope::nn {

TransformerDecoder::TransformerDecoder(const TransformerDecoderLayer& decoder_layer,
                                       int64_t num_layers, std::optional<LayerNorm> norm)
    : layers(static_cast<std::size_t>(num_layers), decoder_layer), norm(std::move(norm)) {}

Tensor3 TransformerDecoder::forward(const Tensor3& tgt, const Tensor3& memory,
                                    const AttnMask& tgt_mask, const AttnMask& memory_mask,
                                    const KeyPaddingMask& tgt_key_padding_mask,
                                    const KeyPaddingMask& memory_key_padding_mask,
                                    const Tensor3& pos, const Tensor3& query_pos,
                                    AttentionRecorder* recorder) const {
  Tensor3 output = tgt;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const LayerRecorder layer{recorder, {Stack::decoder, i}};
    output = layers[i].forward(output, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
                               memory_key_padding_mask, pos, query_pos, layer);
    if (recorder && recorder->wants_output(layer.layer)) recorder->record_output(output);
  }
  if (norm) output = norm->forward(output);
  return output;
}

}  // namespace vitscope::nn
