#include "vitscope/nn/multihead_attention.hpp"

#include <cmath>
#include <limits>
#include <string>

#include "kernels.hpp"
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
  // 1. Shapes. Rows are kept in the caller's layout (sequence-first or batch_first): the kernels
  //    address (position, batch) rows through strides, so nothing is transposed.
  const std::size_t seq_dim = batch_first ? 1 : 0, batch_dim = batch_first ? 0 : 1;
  const std::size_t L = query.shape(seq_dim), N = query.shape(batch_dim);
  const std::size_t S = key.shape(seq_dim), E = to_size(embed_dim);
  const std::size_t nh = to_size(num_heads), Dh = to_size(head_dim);
  require(query.shape(2) == E, "query has " + std::to_string(query.shape(2)) +
                                   " features, embed_dim is " + std::to_string(E));
  require(key.shape(2) == to_size(kdim) && value.shape(2) == to_size(vdim),
          "key/value features do not match kdim/vdim");
  require(key.shape(batch_dim) == N && value.shape(batch_dim) == N && value.shape(seq_dim) == S,
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

  // Row (i, n) of a (len, N, ·) or (N, len, ·) tensor of `width` features: its offset, in floats,
  // is i * stride_i + n * stride_n.
  const auto view = [&](const float* data, std::size_t len, std::size_t width) {
    kernels::SeqView v;
    v.data = data;
    v.stride_i = batch_first ? width : N * width;
    v.stride_n = batch_first ? len * width : width;
    return v;
  };

  // 2. Projections, in one GEMM where inputs are shared: self-attention (query, key and value
  //    the same tensor) projects with the whole (3E,E) in_proj_weight; DETR's position mode
  //    (query and key the same, value not) projects q and k together with its first 2E rows.
  const float* b = in_proj_bias.size() ? in_proj_bias.data() : nullptr;
  const float* wq = qkv_same_embed_dim() ? in_proj_weight.data() : q_proj_weight.data();
  const float* wk = qkv_same_embed_dim() ? in_proj_weight.data() + E * E : k_proj_weight.data();
  const float* wv = qkv_same_embed_dim() ? in_proj_weight.data() + 2 * E * E : v_proj_weight.data();
  const auto same = [](const Tensor3& x, const Tensor3& y) {
    return x.data() == y.data() && x.shape() == y.shape();
  };
  const bool extra_keys = has_bias_kv || add_zero_attn;
  const bool qk_shared = qkv_same_embed_dim() && !extra_keys && same(query, key);
  const bool qkv_shared = qk_shared && same(key, value);
  const std::size_t Lrows = L * N, Srows = S * N;

  thread_local kernels::Scratch qkv_scratch, attn_scratch;
  kernels::AttentionArgs args;
  Tensor3 k_ext, v_ext;  // with extra keys: (S_ext, N, E), sequence-first
  if (qkv_shared) {
    float* qkv = qkv_scratch.get(Lrows * 3 * E);
    kernels::gemm_nt(Lrows, 3 * E, E, query.data(), E, wq, E, b, qkv, 3 * E, kernels::Act::none);
    args.q = view(qkv, L, 3 * E);
    args.k = view(qkv + E, L, 3 * E);
    args.v = view(qkv + 2 * E, L, 3 * E);
  } else if (qk_shared) {
    float* qk = qkv_scratch.get(Lrows * 2 * E + Srows * E);
    float* v = qk + Lrows * 2 * E;
    kernels::gemm_nt(Lrows, 2 * E, E, query.data(), E, wq, E, b, qk, 2 * E, kernels::Act::none);
    kernels::gemm_nt(Srows, E, E, value.data(), E, wv, E, b ? b + 2 * E : nullptr, v, E,
                     kernels::Act::none);
    args.q = view(qk, L, 2 * E);
    args.k = view(qk + E, L, 2 * E);
    args.v = view(v, S, E);
  } else {
    float* q = qkv_scratch.get(Lrows * E + (extra_keys ? 0 : 2 * Srows * E));
    kernels::gemm_nt(Lrows, E, E, query.data(), E, wq, E, b, q, E, kernels::Act::none);
    args.q = view(q, L, E);
    if (!extra_keys) {
      float* k = q + Lrows * E;
      float* v = k + Srows * E;
      kernels::gemm_nt(Srows, E, to_size(kdim), key.data(), to_size(kdim), wk, to_size(kdim),
                       b ? b + E : nullptr, k, E, kernels::Act::none);
      kernels::gemm_nt(Srows, E, to_size(vdim), value.data(), to_size(vdim), wv, to_size(vdim),
                       b ? b + 2 * E : nullptr, v, E, kernels::Act::none);
      args.k = view(k, S, E);
      args.v = view(v, S, E);
    } else {
      // The bias_kv and zero-attention keys follow the S real ones, as PyTorch appends them:
      // sequence-first buffers make that one more row per batch.
      const Tensor3 k_seq = batch_first ? swap_first_two(key) : Tensor3();
      const Tensor3 v_seq = batch_first ? swap_first_two(value) : Tensor3();
      const Tensor3& k_in = batch_first ? k_seq : key;
      const Tensor3& v_in = batch_first ? v_seq : value;
      k_ext = xt::zeros<float>({S_ext, N, E});
      v_ext = xt::zeros<float>({S_ext, N, E});
      kernels::gemm_nt(Srows, E, to_size(kdim), k_in.data(), to_size(kdim), wk, to_size(kdim),
                       b ? b + E : nullptr, k_ext.data(), E, kernels::Act::none);
      kernels::gemm_nt(Srows, E, to_size(vdim), v_in.data(), to_size(vdim), wv, to_size(vdim),
                       b ? b + 2 * E : nullptr, v_ext.data(), E, kernels::Act::none);
      if (has_bias_kv) {
        for (std::size_t n = 0; n < N; ++n) {
          std::copy_n(bias_k.data(), E, k_ext.data() + (S * N + n) * E);
          std::copy_n(bias_v.data(), E, v_ext.data() + (S * N + n) * E);
        }
      }
      args.k = {k_ext.data(), N * E, E};
      args.v = {v_ext.data(), N * E, E};
    }
  }

  // 3. Attention per batch and head, blocked over queries: (nh x L x S) weights exist only when
  //    someone asked for them.
  const bool want_weights = need_weights || static_cast<bool>(weights_hook);
  Tensor4 weights;
  if (want_weights) weights = Tensor4::from_shape({N, nh, L, S_ext});
  float* attn = attn_scratch.get(Lrows * E);
  const kernels::SeqView out_view = view(attn, L, E);
  args.batch = N;
  args.heads = nh;
  args.head_dim = Dh;
  args.L = L;
  args.S = S_ext;
  args.out = attn;
  args.out_stride_i = out_view.stride_i;
  args.out_stride_n = out_view.stride_n;
  args.scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  args.attn_mask = has_attn_mask ? attn_mask.data() : nullptr;
  args.attn_mask_planes = has_attn_mask ? attn_mask.shape(0) : 0;
  args.key_padding = has_kpm ? key_padding_mask.data() : nullptr;
  args.S_mask = S;
  args.weights = want_weights ? weights.data() : nullptr;
  kernels::attention(args);

  // 4. Output projection, straight into the caller's layout.
  MultiheadAttentionOutput result;
  result.attn_output = Tensor3::from_shape(query.shape());
  out_proj.forward_rows(attn, Lrows, result.attn_output.data());
  if (weights_hook) weights_hook(weights);
  if (need_weights) {
    result.attn_output_weights = average_attn_weights ? average_heads(weights) : std::move(weights);
  }
  return result;
}

}  // namespace vitscope::nn
