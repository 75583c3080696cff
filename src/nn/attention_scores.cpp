#include "vitscope/nn/attention_scores.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels.hpp"
#include "vitscope/error.hpp"

namespace vitscope::nn {

namespace {

// Batch item n's queries and keys as one attention call sees them: a batch of one.
kernels::AttentionArgs item_args(const Tensor3& k, std::size_t n, std::size_t heads) {
  const std::size_t E = k.shape(2);
  kernels::AttentionArgs args;
  args.batch = 1;
  args.heads = heads;
  args.head_dim = E / heads;
  args.S = k.shape(1);
  args.k = {&k(n, 0, 0), E, 0};
  return args;
}

}  // namespace

AttentionScores::AttentionScores(Tensor3 q, Tensor3 k, std::size_t heads,
                                 KeyPaddingMask key_padding_mask, AttnMask attn_mask)
    : q_(std::move(q)),
      k_(std::move(k)),
      heads_(heads),
      key_padding_mask_(std::move(key_padding_mask)),
      attn_mask_(std::move(attn_mask)) {
  // Rows are formed a block at a time, each block over every key: the keys are packed once here
  // rather than on every call.
  if (batch() == 0 || keys() == 0 || heads_ == 0) return;
  packed_item_floats_ = kernels::packed_keys_floats(item_args(k_, 0, heads_));
  k_packed_.resize(batch() * packed_item_floats_);
  for (std::size_t n = 0; packed_item_floats_ > 0 && n < batch(); ++n) {
    kernels::pack_keys(item_args(k_, n, heads_), k_packed_.data() + n * packed_item_floats_);
  }
}

Tensor3 AttentionScores::weights(std::size_t n, const std::vector<std::size_t>& rows) const {
  const std::size_t L = queries(), S_ext = keys(), E = q_.shape(2), nh = heads_, R = rows.size();
  if (n >= batch()) throw Error("bad_attention_input", "no batch item " + std::to_string(n));
  for (std::size_t row : rows) {
    if (row >= L) throw Error("bad_attention_input", "no query " + std::to_string(row));
  }
  Tensor3 out = Tensor3::from_shape({nh, R, S_ext});
  if (R == 0) return out;
  // The chosen queries side by side, and their rows of the masks: a batch of one with R queries.
  std::vector<float> q(R * E);
  for (std::size_t r = 0; r < R; ++r) std::copy_n(&q_(n, rows[r], 0), E, q.data() + r * E);
  const std::size_t S = key_padding_mask_.size() ? key_padding_mask_.shape(1)
                                                 : (attn_mask_.size() ? attn_mask_.shape(2) : S_ext);
  std::vector<float> mask;
  std::size_t planes = 0;
  if (attn_mask_.size()) {
    planes = attn_mask_.shape(0) == 1 ? 1 : nh;
    const std::size_t first = attn_mask_.shape(0) == 1 ? 0 : n * nh;
    mask.resize(planes * R * S);
    for (std::size_t p = 0; p < planes; ++p) {
      for (std::size_t r = 0; r < R; ++r) {
        std::copy_n(&attn_mask_(first + p, rows[r], 0), S, mask.data() + (p * R + r) * S);
      }
    }
  }
  kernels::AttentionArgs args = item_args(k_, n, nh);
  args.L = R;
  args.q = {q.data(), E, 0};
  if (packed_item_floats_ > 0) args.k_packed = k_packed_.data() + n * packed_item_floats_;
  args.scale = 1.0f / std::sqrt(static_cast<float>(args.head_dim));
  args.attn_mask = mask.empty() ? nullptr : mask.data();
  args.attn_mask_planes = planes;
  args.key_padding = key_padding_mask_.size() ? &key_padding_mask_(n, 0) : nullptr;
  args.S_mask = S;
  args.weights = out.data();
  kernels::attention(args);
  return out;
}

}  // namespace vitscope::nn
