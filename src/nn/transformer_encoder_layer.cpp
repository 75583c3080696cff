#include "vitscope/nn/transformer_encoder_layer.hpp"

#include "vitscope/nn/sublayers.hpp"

namespace vitscope::nn {

TransformerEncoderLayer::TransformerEncoderLayer(int64_t d_model, int64_t nhead,
                                                 int64_t dim_feedforward, Activation activation,
                                                 double layer_norm_eps, bool batch_first,
                                                 bool norm_first)
    : self_attn(layer_attention_options(d_model, nhead, batch_first)),
      linear1(d_model, dim_feedforward),
      linear2(dim_feedforward, d_model),
      norm1(d_model, layer_norm_eps),
      norm2(d_model, layer_norm_eps),
      activation(activation),
      norm_first(norm_first) {}

Tensor3 TransformerEncoderLayer::forward(const Tensor3& src, const AttnMask& src_mask,
                                         const KeyPaddingMask& src_key_padding_mask,
                                         const Tensor3& pos, const LayerRecorder& recorder) const {
  Tensor3 x = src;
  if (norm_first) {
    // x = x + sa(norm1(x)); x = x + ff(norm2(x))
    add_in_place(x, sa_block(norm1.forward(x), src_mask, src_key_padding_mask, pos, recorder));
    add_in_place(x, ff_block(norm2.forward(x)));
  } else {
    // x = norm1(x + sa(x)); x = norm2(x + ff(x))
    add_in_place(x, sa_block(x, src_mask, src_key_padding_mask, pos, recorder));
    x = norm1.forward(x);
    add_in_place(x, ff_block(x));
    x = norm2.forward(x);
  }
  return x;
}

Tensor3 TransformerEncoderLayer::sa_block(const Tensor3& x, const AttnMask& attn_mask,
                                          const KeyPaddingMask& key_padding_mask,
                                          const Tensor3& pos,
                                          const LayerRecorder& recorder) const {
  Tensor3 storage;
  const Tensor3& qk = with_pos_embed(x, pos, storage);
  return attention_block(self_attn, qk, qk, x, key_padding_mask, attn_mask, recorder,
                         AttentionKind::self_attn);
}

Tensor3 TransformerEncoderLayer::ff_block(const Tensor3& x) const {
  return feed_forward(linear1, activation, linear2, x);
}

}  // namespace vitscope::nn
