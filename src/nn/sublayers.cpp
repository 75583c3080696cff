#include "vitscope/nn/sublayers.hpp"

#include "kernels.hpp"

namespace vitscope::nn {

Tensor3 attention_block(const MultiheadAttention& attention, const Tensor3& query,
                        const Tensor3& key, const Tensor3& value,
                        const KeyPaddingMask& key_padding_mask, const AttnMask& attn_mask,
                        const LayerRecorder& recorder, AttentionKind kind) {
  const bool record = recorder.wants(kind);
  const bool score = recorder.wants_scores(kind);
  MultiheadAttentionOutput out =
      attention.forward(query, key, value, key_padding_mask, record, attn_mask, false, score);
  if (record) recorder.record(kind, std::move(out.attn_output_weights));
  if (score) recorder.record_scores(kind, std::move(out.attn_scores));
  return std::move(out.attn_output);
}

Tensor3 feed_forward(const Linear& linear1, Activation activation, const Linear& linear2,
                     const Tensor3& x) {
  const std::size_t rows = x.shape(0) * x.shape(1);
  const std::size_t in = static_cast<std::size_t>(linear1.in_features);
  const std::size_t hidden_width = static_cast<std::size_t>(linear1.out_features);
  const std::size_t out_width = static_cast<std::size_t>(linear2.out_features);
  thread_local kernels::Scratch hidden_scratch;
  float* hidden = hidden_scratch.get(rows * hidden_width);
  kernels::gemm_nt(rows, hidden_width, in, x.data(), in, linear1.weight.data(), in,
                   linear1.bias.size() ? linear1.bias.data() : nullptr, hidden, hidden_width,
                   activation == Activation::relu ? kernels::Act::relu : kernels::Act::gelu);
  Tensor3 out = Tensor3::from_shape({x.shape(0), x.shape(1), out_width});
  linear2.forward_rows(hidden, rows, out.data());
  return out;
}

}  // namespace vitscope::nn
