#include "vitscope/nn/transformer.hpp"

#include <cmath>
#include <string>

#include "vitscope/error.hpp"

namespace vitscope::nn {

namespace {

constexpr int64_t kMaxWidth = 1 << 16;   // d_model, dim_feedforward
constexpr int64_t kMaxLayers = 1000;

void check(bool ok, const std::string& message) {
  if (!ok) throw Error("bad_options", message);
}

TransformerEncoder make_encoder(const TransformerOptions& o) {
  TransformerEncoderLayer layer(o.d_model, o.nhead, o.dim_feedforward, o.activation,
                                o.layer_norm_eps, o.batch_first, o.norm_first);
  std::optional<LayerNorm> norm;
  if (o.encoder_norm) norm = LayerNorm(o.d_model, o.layer_norm_eps);
  return TransformerEncoder(layer, o.num_encoder_layers, std::move(norm));
}

TransformerDecoder make_decoder(const TransformerOptions& o) {
  if (o.num_decoder_layers == 0) return TransformerDecoder();
  TransformerDecoderLayer layer(o.d_model, o.nhead, o.dim_feedforward, o.activation,
                                o.layer_norm_eps, o.batch_first, o.norm_first);
  std::optional<LayerNorm> norm;
  if (o.decoder_norm) norm = LayerNorm(o.d_model, o.layer_norm_eps);
  return TransformerDecoder(layer, o.num_decoder_layers, std::move(norm));
}

std::string dims(const Tensor3& x) {
  return shape_to_string({x.shape().begin(), x.shape().end()});
}

}  // namespace

void validate(const TransformerOptions& o) {
  check(o.d_model > 0 && o.d_model <= kMaxWidth,
        "d_model " + std::to_string(o.d_model) + " is not in 1.." + std::to_string(kMaxWidth));
  check(o.nhead > 0 && o.d_model % o.nhead == 0,
        "nhead " + std::to_string(o.nhead) + " does not divide d_model " + std::to_string(o.d_model));
  check(o.dim_feedforward > 0 && o.dim_feedforward <= kMaxWidth,
        "dim_feedforward " + std::to_string(o.dim_feedforward) + " is not in 1.." +
            std::to_string(kMaxWidth));
  check(o.num_encoder_layers > 0 && o.num_encoder_layers <= kMaxLayers,
        "num_encoder_layers " + std::to_string(o.num_encoder_layers) + " is not in 1.." +
            std::to_string(kMaxLayers));
  check(o.num_decoder_layers >= 0 && o.num_decoder_layers <= kMaxLayers,
        "num_decoder_layers " + std::to_string(o.num_decoder_layers) + " is not in 0.." +
            std::to_string(kMaxLayers));
  check(std::isfinite(o.layer_norm_eps) && o.layer_norm_eps > 0,
        "layer_norm_eps must be a positive number");
}

Transformer::Transformer(const TransformerOptions& options)
    : options((validate(options), options)),
      encoder(make_encoder(options)),
      decoder(make_decoder(options)) {}

Transformer::Transformer(const TransformerOptions& options, TransformerEncoder custom_encoder,
                         TransformerDecoder custom_decoder)
    : options((validate(options), options)),
      encoder(std::move(custom_encoder)),
      decoder(std::move(custom_decoder)) {}

Tensor3 Transformer::forward(const Tensor3& src, const Tensor3& tgt, const AttnMask& src_mask,
                             const AttnMask& tgt_mask, const AttnMask& memory_mask,
                             const KeyPaddingMask& src_key_padding_mask,
                             const KeyPaddingMask& tgt_key_padding_mask,
                             const KeyPaddingMask& memory_key_padding_mask, const Tensor3& pos,
                             const Tensor3& query_pos, AttentionRecorder* recorder) const {
  const std::size_t batch_dim = options.batch_first ? 0 : 1;
  if (encoder_only()) {
    throw Error("encoder_only", "this model has no decoder: run its encoder without a target");
  }
  if (src.shape(batch_dim) != tgt.shape(batch_dim)) {
    throw Error("shape_mismatch", "the batch number of src " + dims(src) + " and tgt " +
                                      dims(tgt) + " must be equal");
  }
  if (src.shape(2) != static_cast<std::size_t>(options.d_model) ||
      tgt.shape(2) != static_cast<std::size_t>(options.d_model)) {
    throw Error("shape_mismatch", "the feature number of src " + dims(src) + " and tgt " +
                                      dims(tgt) + " must be d_model " +
                                      std::to_string(options.d_model));
  }
  if (pos.size() > 0 && pos.shape() != src.shape()) {
    throw Error("shape_mismatch", "pos " + dims(pos) + " must have the shape of src " + dims(src));
  }
  if (query_pos.size() > 0 && query_pos.shape() != tgt.shape()) {
    throw Error("shape_mismatch",
                "query_pos " + dims(query_pos) + " must have the shape of tgt " + dims(tgt));
  }
  const Tensor3 memory = encoder.forward(src, src_mask, src_key_padding_mask, pos, recorder);
  return decoder.forward(tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask,
                         memory_key_padding_mask, pos, query_pos, recorder);
}

std::vector<ModulePath> Transformer::attention_modules() const {
  std::vector<ModulePath> modules;
  for (std::size_t i = 0; i < encoder.layers.size(); ++i) {
    modules.push_back({Stack::encoder, i, AttentionKind::self_attn});
  }
  for (std::size_t i = 0; i < decoder.layers.size(); ++i) {
    modules.push_back({Stack::decoder, i, AttentionKind::self_attn});
    modules.push_back({Stack::decoder, i, AttentionKind::multihead_attn});
  }
  return modules;
}

}  // namespace vitscope::nn
