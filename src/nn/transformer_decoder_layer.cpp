#include "vitscope/nn/transformer_decoder_layer.hpp"

#include "vitscope/nn/sublayers.hpp"

namespace vitscope::nn {

TransformerDecoderLayer::TransformerDecoderLayer(int64_t d_model, int64_t nhead,
                                                 int64_t dim_feedforward, Activation activation,
                                                 double layer_norm_eps, bool batch_first,
                                                 bool norm_first)
    : self_attn(layer_attention_options(d_model, nhead, batch_first)),
      multihead_attn(layer_attention_options(d_model, nhead, batch_first)),
      linear1(d_model, dim_feedforward),
      linear2(dim_feedforward, d_model),
      norm1(d_model, layer_norm_eps),
      norm2(d_model, layer_norm_eps),
      norm3(d_model, layer_norm_eps),
      activation(activation),
      norm_first(norm_first) {}

Tensor3 TransformerDecoderLayer::forward(const Tensor3& tgt, const Tensor3& memory,
                                         const AttnMask& tgt_mask, const AttnMask& memory_mask,
                                         const KeyPaddingMask& tgt_key_padding_mask,
                                         const KeyPaddingMask& memory_key_padding_mask,
                                         const Tensor3& pos, const Tensor3& query_pos,
                                         const LayerRecorder& recorder) const {
  Tensor3 x = tgt;
  if (norm_first) {
    // x = x + sa(norm1(x)); x = x + mha(norm2(x), memory); x = x + ff(norm3(x))
    add_in_place(x, sa_block(norm1.forward(x), tgt_mask, tgt_key_padding_mask, query_pos, recorder));
    add_in_place(x, mha_block(norm2.forward(x), memory, memory_mask, memory_key_padding_mask, pos,
                              query_pos, recorder));
    add_in_place(x, ff_block(norm3.forward(x)));
  } else {
    // x = norm1(x + sa(x)); x = norm2(x + mha(x, memory)); x = norm3(x + ff(x))
    add_in_place(x, sa_block(x, tgt_mask, tgt_key_padding_mask, query_pos, recorder));
    x = norm1.forward(x);
    add_in_place(x, mha_block(x, memory, memory_mask, memory_key_padding_mask, pos, query_pos,
                              recorder));
    x = norm2.forward(x);
    add_in_place(x, ff_block(x));
    x = norm3.forward(x);
  }
  return x;
}

Tensor3 TransformerDecoderLayer::sa_block(const Tensor3& x, const AttnMask& attn_mask,
                                          const KeyPaddingMask& key_padding_mask,
                                          const Tensor3& query_pos,
                                          const LayerRecorder& recorder) const {
  Tensor3 storage;
  const Tensor3& qk = with_pos_embed(x, query_pos, storage);
  return attention_block(self_attn, qk, qk, x, key_padding_mask, attn_mask, recorder,
                         AttentionKind::self_attn);
}

Tensor3 TransformerDecoderLayer::mha_block(const Tensor3& x, const Tensor3& mem,
                                           const AttnMask& attn_mask,
                                           const KeyPaddingMask& key_padding_mask,
                                           const Tensor3& pos, const Tensor3& query_pos,
                                           const LayerRecorder& recorder) const {
  Tensor3 query_storage, key_storage;
  const Tensor3& query = with_pos_embed(x, query_pos, query_storage);
  const Tensor3& key = with_pos_embed(mem, pos, key_storage);
  return attention_block(multihead_attn, query, key, mem, key_padding_mask, attn_mask, recorder,
                         AttentionKind::multihead_attn);
}

Tensor3 TransformerDecoderLayer::ff_block(const Tensor3& x) const {
  return feed_forward(linear1, activation, linear2, x);
}

}  // namespace vitscope::nn
