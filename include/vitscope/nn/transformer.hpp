#pragma once
// nn::Transformer, as torch.nn.Transformer (PyTorch 1.13), inference only: dropout is the
// identity and is therefore not a parameter. num_decoder_layers = 0 makes an encoder-only model.

#include <cstdint>
#include <vector>

#include "vitscope/nn/activation.hpp"
#include "vitscope/nn/attention_recorder.hpp"
#include "vitscope/nn/masks.hpp"
#include "vitscope/nn/transformer_decoder.hpp"
#include "vitscope/nn/transformer_encoder.hpp"

namespace vitscope::nn {

// The constructor arguments of torch.nn.Transformer, under their PyTorch names and defaults.
struct TransformerOptions {
  int64_t d_model = 512;
  int64_t nhead = 8;
  int64_t num_encoder_layers = 6;
  int64_t num_decoder_layers = 6;
  int64_t dim_feedforward = 2048;
  Activation activation = Activation::relu;
  double layer_norm_eps = 1e-5;
  bool batch_first = false;
  bool norm_first = false;
  // A custom encoder / decoder may have no final norm (DETR's post-norm encoder has none).
  bool encoder_norm = true;
  bool decoder_norm = true;
};

// Throws vitscope::Error("bad_options") when the options cannot make a model (nhead not
// dividing d_model, non-positive sizes, absurd layer counts, eps not positive).
void validate(const TransformerOptions& options);

class Transformer {
 public:
  Transformer() = default;
  explicit Transformer(const TransformerOptions& options);
  // custom_encoder / custom_decoder, as in PyTorch; options must describe them.
  Transformer(const TransformerOptions& options, TransformerEncoder custom_encoder,
              TransformerDecoder custom_decoder);

  // src: (S,N,E), tgt: (T,N,E) ((N,·,E) when batch_first) -> (T,N,E).
  // src_mask (S,S), tgt_mask (T,T), memory_mask (T,S): as (1,·,·) or (N*nhead,·,·);
  // key padding masks (N,S), (N,T), (N,S). pos (like src) and query_pos (like tgt), DETR's
  // extension: pos is added to the keys (and encoder queries) of every attention over the
  // source, query_pos to the decoder's queries (and self-attention keys); empty, the model is
  // exactly PyTorch's. `recorder` (optional) gets the attention and layer output it asks for.
  Tensor3 forward(const Tensor3& src, const Tensor3& tgt, const AttnMask& src_mask = {},
                  const AttnMask& tgt_mask = {}, const AttnMask& memory_mask = {},
                  const KeyPaddingMask& src_key_padding_mask = {},
                  const KeyPaddingMask& tgt_key_padding_mask = {},
                  const KeyPaddingMask& memory_key_padding_mask = {}, const Tensor3& pos = {},
                  const Tensor3& query_pos = {}, AttentionRecorder* recorder = nullptr) const;

  bool encoder_only() const { return decoder.layers.empty(); }

  // Every attention module, in the order the model runs them: each encoder layer's self_attn,
  // then per decoder layer its self_attn and multihead_attn.
  std::vector<ModulePath> attention_modules() const;

  TransformerOptions options;
  TransformerEncoder encoder;
  TransformerDecoder decoder;
};

}  // namespace vitscope::nn
