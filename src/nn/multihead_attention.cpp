#include "vitscope/nn/multihead_attention.hpp"

#include <cblas.h>

#include <cmath>
#include <limits>
#include <string>

#include "vitscope/error.hpp"

namespace vitscope::nn {

namespace {

std::size_t to_size(int64_t v) { return static_cast<std::size_t>(v); }

// x (a,b,E) -> (b,a,E): between batch_first and PyTorch's sequence-first layout.
Tensor3 swap_first_two(const Tensor3& x) {
  const std::size_t a = x.shape(0), b = x.shape(1), e = x.shape(2);
  Tensor3 y = Tensor3::from_shape({b, a, e});
  for (std::size_t i = 0; i < a; ++i) {
    for (std::size_t j = 0; j < b; ++j) {
      std::copy_n(x.data() + (i * b + j) * e, e, y.data() + (j * a + i) * e);
    }
  }
  return y;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw Error("shape_mismatch", "MultiheadAttention: " + message);
}

// Softmax of one row in place. A row with every score -inf (all keys masked) becomes zeros:
// vitscope's defined result, see masks.hpp.
void softmax_row(float* row, std::size_t n) {
  float max = -std::numeric_limits<float>::infinity();
  for (std::size_t j = 0; j < n; ++j) max = std::max(max, row[j]);
  if (max == -std::numeric_limits<float>::infinity()) {
    std::fill(row, row + n, 0.0f);
    return;
  }
  float sum = 0.0f;
  for (std::size_t j = 0; j < n; ++j) {
    row[j] = std::exp(row[j] - max);
    sum += row[j];
  }
  const float inv = 1.0f / sum;
  for (std::size_t j = 0; j < n; ++j) row[j] *= inv;
}

// scores (L,S_ext) += the (L,S) attn_mask plane and the (S) key padding row, both optional; the
// extra bias_kv / zero-attention keys past S are never masked, as PyTorch pads masks with 0.
void add_masks(float* scores, std::size_t L, std::size_t S_ext, std::size_t S,
               const float* attn_mask_plane, const float* key_padding_row) {
  for (std::size_t l = 0; l < L; ++l) {
    float* row = scores + l * S_ext;
    if (attn_mask_plane) {
      const float* mask_row = attn_mask_plane + l * S;
      for (std::size_t s = 0; s < S; ++s) row[s] += mask_row[s];
    }
    if (key_padding_row) {
      for (std::size_t s = 0; s < S; ++s) row[s] += key_padding_row[s];
    }
  }
}

// (N,nh,L,S) -> (N,1,L,S): sum then divide, as PyTorch's sum(dim=1) / num_heads.
Tensor4 average_heads(const Tensor4& weights) {
  const std::size_t N = weights.shape(0), nh = weights.shape(1);
  const std::size_t plane = weights.shape(2) * weights.shape(3);
  Tensor4 mean = xt::zeros<float>({N, std::size_t{1}, weights.shape(2), weights.shape(3)});
  for (std::size_t n = 0; n < N; ++n) {
    float* out = mean.data() + n * plane;
    for (std::size_t h = 0; h < nh; ++h) {
      const float* w = weights.data() + (n * nh + h) * plane;
      for (std::size_t i = 0; i < plane; ++i) out[i] += w[i];
    }
    for (std::size_t i = 0; i < plane; ++i) out[i] /= static_cast<float>(nh);
  }
  return mean;
}

}  // namespace

MultiheadAttention::MultiheadAttention(int64_t embed_dim, int64_t num_heads, bool bias,
                                       bool add_bias_kv, bool add_zero_attn, int64_t kdim,
                                       int64_t vdim, bool batch_first)
    : embed_dim(embed_dim),
      num_heads(num_heads),
      kdim(kdim > 0 ? kdim : embed_dim),
      vdim(vdim > 0 ? vdim : embed_dim),
      batch_first(batch_first),
      add_zero_attn(add_zero_attn) {
  if (embed_dim <= 0 || num_heads <= 0 || embed_dim % num_heads != 0) {
    throw Error("bad_options", "MultiheadAttention: num_heads " + std::to_string(num_heads) +
                                   " must be positive and divide embed_dim " +
                                   std::to_string(embed_dim));
  }
  head_dim = embed_dim / num_heads;
  const std::size_t e = to_size(embed_dim);
  if (qkv_same_embed_dim()) {
    in_proj_weight = xt::zeros<float>({3 * e, e});
  } else {
    q_proj_weight = xt::zeros<float>({e, e});
    k_proj_weight = xt::zeros<float>({e, to_size(this->kdim)});
    v_proj_weight = xt::zeros<float>({e, to_size(this->vdim)});
  }
  if (bias) in_proj_bias = xt::zeros<float>({3 * e});
  if (add_bias_kv) {
    bias_k = xt::zeros<float>({std::size_t{1}, std::size_t{1}, e});
    bias_v = xt::zeros<float>({std::size_t{1}, std::size_t{1}, e});
  }
  out_proj = Linear(embed_dim, embed_dim, bias);
}

MultiheadAttentionOutput MultiheadAttention::forward(const Tensor3& query, const Tensor3& key,
                                                     const Tensor3& value,
                                                     const KeyPaddingMask& key_padding_mask,
                                                     bool need_weights, const AttnMask& attn_mask,
                                                     bool average_attn_weights) const {
  // 1. Sequence-first views: q_in (L,N,E), k_in (S,N,kdim), v_in (S,N,vdim).
  Tensor3 q_swapped, k_swapped, v_swapped;
  if (batch_first) {
    q_swapped = swap_first_two(query);
    k_swapped = swap_first_two(key);
    v_swapped = swap_first_two(value);
  }
  const Tensor3& q_in = batch_first ? q_swapped : query;
  const Tensor3& k_in = batch_first ? k_swapped : key;
  const Tensor3& v_in = batch_first ? v_swapped : value;
  const std::size_t L = q_in.shape(0), N = q_in.shape(1), E = to_size(embed_dim);
  const std::size_t S = k_in.shape(0), nh = to_size(num_heads), Dh = to_size(head_dim);
  require(q_in.shape(2) == E, "query has " + std::to_string(q_in.shape(2)) +
                                  " features, embed_dim is " + std::to_string(E));
  require(k_in.shape(2) == to_size(kdim) && v_in.shape(2) == to_size(vdim),
          "key/value features do not match kdim/vdim");
  require(k_in.shape(1) == N && v_in.shape(1) == N && v_in.shape(0) == S,
          "query, key and value disagree on batch or key/value lengths");
  const bool has_bias_kv = bias_k.size() > 0;
  const std::size_t S_ext = S + (has_bias_kv ? 1 : 0) + (add_zero_attn ? 1 : 0);
  const bool has_attn_mask = attn_mask.size() > 0;
  const bool has_kpm = key_padding_mask.size() > 0;
  require(!has_attn_mask || ((attn_mask.shape(0) == 1 || attn_mask.shape(0) == N * nh) &&
                             attn_mask.shape(1) == L && attn_mask.shape(2) == S),
          "attn_mask " + shape_to_string({attn_mask.shape().begin(), attn_mask.shape().end()}) +
              " is neither (L,S) nor (N*num_heads,L,S) with L=" + std::to_string(L) +
              " S=" + std::to_string(S));
  require(!has_kpm || (key_padding_mask.shape(0) == N && key_padding_mask.shape(1) == S),
          "key_padding_mask must be (N,S) = (" + std::to_string(N) + ", " + std::to_string(S) +
              ")");

  // 2. Projections: q (L,N,E); k, v (S_ext,N,E) with the bias_kv and zero-attention keys
  //    appended after the S real ones, as PyTorch appends them.
  const float* b = in_proj_bias.size() ? in_proj_bias.data() : nullptr;
  const float* wq = qkv_same_embed_dim() ? in_proj_weight.data() : q_proj_weight.data();
  const float* wk = qkv_same_embed_dim() ? in_proj_weight.data() + E * E : k_proj_weight.data();
  const float* wv = qkv_same_embed_dim() ? in_proj_weight.data() + 2 * E * E : v_proj_weight.data();
  Tensor3 q = Tensor3::from_shape({L, N, E});
  Tensor3 k = xt::zeros<float>({S_ext, N, E});
  Tensor3 v = xt::zeros<float>({S_ext, N, E});
  linear_rows(q_in.data(), L * N, E, wq, E, b, q.data());
  linear_rows(k_in.data(), S * N, to_size(kdim), wk, E, b ? b + E : nullptr, k.data());
  linear_rows(v_in.data(), S * N, to_size(vdim), wv, E, b ? b + 2 * E : nullptr, v.data());
  if (has_bias_kv) {
    for (std::size_t n = 0; n < N; ++n) {
      std::copy_n(bias_k.data(), E, k.data() + (S * N + n) * E);
      std::copy_n(bias_v.data(), E, v.data() + (S * N + n) * E);
    }
  }

  // 3. Per batch and head: weights = softmax(q k^T / sqrt(Dh) + masks), out = weights v.
  //    Heads are strided column blocks of the (·,N,E) buffers, so no reshape is needed.
  const bool want_weights = need_weights || static_cast<bool>(weights_hook);
  Tensor4 weights;
  if (want_weights) weights = Tensor4::from_shape({N, nh, L, S_ext});
  Tensor3 attn = Tensor3::from_shape({L, N, E});
  Tensor2 scores = Tensor2::from_shape({L, S_ext});
  const int ld = static_cast<int>(N * E);
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  for (std::size_t n = 0; n < N; ++n) {
    for (std::size_t h = 0; h < nh; ++h) {
      const std::size_t col = n * E + h * Dh;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(L),
                  static_cast<int>(S_ext), static_cast<int>(Dh), scale, q.data() + col, ld,
                  k.data() + col, ld, 0.0f, scores.data(), static_cast<int>(S_ext));
      const std::size_t mask_plane = attn_mask.shape(0) == 1 ? 0 : n * nh + h;
      add_masks(scores.data(), L, S_ext, S,
                has_attn_mask ? attn_mask.data() + mask_plane * L * S : nullptr,
                has_kpm ? key_padding_mask.data() + n * S : nullptr);
      for (std::size_t l = 0; l < L; ++l) softmax_row(scores.data() + l * S_ext, S_ext);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(L),
                  static_cast<int>(Dh), static_cast<int>(S_ext), 1.0f, scores.data(),
                  static_cast<int>(S_ext), v.data() + col, ld, 0.0f, attn.data() + col, ld);
      if (want_weights) {
        std::copy(scores.begin(), scores.end(), weights.data() + (n * nh + h) * L * S_ext);
      }
    }
  }

  // 4. Output projection, back to the caller's layout.
  MultiheadAttentionOutput result;
  result.attn_output = out_proj.forward(attn);
  if (batch_first) result.attn_output = swap_first_two(result.attn_output);
  if (weights_hook) weights_hook(weights);
  if (need_weights) {
    result.attn_output_weights = average_attn_weights ? average_heads(weights) : std::move(weights);
  }
  return result;
}

}  // namespace vitscope::nn
