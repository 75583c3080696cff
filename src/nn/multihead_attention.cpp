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


// The sizes of one call. L queries, S keys (S_ext with the bias_kv and zero-attention keys).
struct Dims {
  std::size_t L = 0, N = 0, S = 0, S_ext = 0, E = 0, nh = 0, Dh = 0;
  bool batch_first = false;

  // Row (i, n) of a (len, N, width) or (N, len, width) tensor starts at i*stride_i + n*stride_n.
  kernels::SeqView rows(const float* data, std::size_t len, std::size_t width) const {
    kernels::SeqView v;
    v.data = data;
    v.stride_i = batch_first ? width : N * width;
    v.stride_n = batch_first ? len * width : width;
    return v;
  }
};

Dims check_shapes(const MultiheadAttention& m, const Tensor3& query, const Tensor3& key,
                  const Tensor3& value, const KeyPaddingMask& key_padding_mask,
                  const AttnMask& attn_mask) {
  const std::size_t seq_dim = m.batch_first ? 1 : 0, batch_dim = m.batch_first ? 0 : 1;
  Dims d;
  d.batch_first = m.batch_first;
  d.L = query.shape(seq_dim);
  d.N = query.shape(batch_dim);
  d.S = key.shape(seq_dim);
  d.E = to_size(m.embed_dim);
  d.nh = to_size(m.num_heads);
  d.Dh = to_size(m.head_dim);
  d.S_ext = d.S + (m.bias_k.size() > 0 ? 1 : 0) + (m.add_zero_attn ? 1 : 0);
  const std::size_t L = d.L, N = d.N, S = d.S, E = d.E;
  require(query.shape(2) == E, "query has " + std::to_string(query.shape(2)) +
                                   " features, embed_dim is " + std::to_string(E));
  require(key.shape(2) == to_size(m.kdim) && value.shape(2) == to_size(m.vdim),
          "key/value features do not match kdim/vdim");
  require(key.shape(batch_dim) == N && value.shape(batch_dim) == N && value.shape(seq_dim) == S,
          "query, key and value disagree on batch or key/value lengths");
  require(attn_mask.size() == 0 || ((attn_mask.shape(0) == 1 || attn_mask.shape(0) == N * d.nh) &&
                                    attn_mask.shape(1) == L && attn_mask.shape(2) == S),
          "attn_mask " + shape_to_string({attn_mask.shape().begin(), attn_mask.shape().end()}) +
              " is neither (L,S) nor (N*num_heads,L,S) with L=" + std::to_string(L) +
              " S=" + std::to_string(S));
  require(key_padding_mask.size() == 0 ||
              (key_padding_mask.shape(0) == N && key_padding_mask.shape(1) == S),
          "key_padding_mask must be (N,S) = (" + std::to_string(N) + ", " + std::to_string(S) +
              ")");
  return d;
}

// q (L,N,E), k and v (S_ext,N,E) as row views, in the caller's layout where no extra keys are
// appended; the views point into thread-local scratch (or into k_ext / v_ext).
struct Projections {
  kernels::SeqView q, k, v;
  Tensor3 k_ext, v_ext;  // with extra keys: (S_ext,N,E), sequence-first
};

// The bias_kv and zero-attention keys follow the S real ones, as PyTorch appends them:
// sequence-first buffers make that one more row per batch.
void project_with_extra_keys(const MultiheadAttention& m, const Tensor3& key, const Tensor3& value,
                             const float* wk, const float* wv, const float* b, const Dims& d,
                             Projections& p) {
  const std::size_t E = d.E, N = d.N, S = d.S;
  const Tensor3 k_seq = d.batch_first ? swap_first_two(key) : Tensor3();
  const Tensor3 v_seq = d.batch_first ? swap_first_two(value) : Tensor3();
  const Tensor3& k_in = d.batch_first ? k_seq : key;
  const Tensor3& v_in = d.batch_first ? v_seq : value;
  p.k_ext = xt::zeros<float>({d.S_ext, N, E});
  p.v_ext = xt::zeros<float>({d.S_ext, N, E});
  kernels::gemm_nt(S * N, E, to_size(m.kdim), k_in.data(), to_size(m.kdim), wk, to_size(m.kdim),
                   b ? b + E : nullptr, p.k_ext.data(), E, kernels::Act::none);
  kernels::gemm_nt(S * N, E, to_size(m.vdim), v_in.data(), to_size(m.vdim), wv, to_size(m.vdim),
                   b ? b + 2 * E : nullptr, p.v_ext.data(), E, kernels::Act::none);
  if (m.bias_k.size() > 0) {
    for (std::size_t n = 0; n < N; ++n) {
      std::copy_n(m.bias_k.data(), E, p.k_ext.data() + (S * N + n) * E);
      std::copy_n(m.bias_v.data(), E, p.v_ext.data() + (S * N + n) * E);
    }
  }
  p.k = {p.k_ext.data(), N * E, E};
  p.v = {p.v_ext.data(), N * E, E};
}

// The q, k and v projections, in one GEMM where inputs are shared: self-attention (query, key
// and value the same tensor) projects with the whole (3E,E) in_proj_weight; DETR's position
// mode (query and key the same, value not) projects q and k together with its first 2E rows.
Projections in_projection(const MultiheadAttention& m, const Tensor3& query, const Tensor3& key,
                          const Tensor3& value, const Dims& d) {
  const std::size_t E = d.E, Lrows = d.L * d.N, Srows = d.S * d.N;
  const float* b = m.in_proj_bias.size() ? m.in_proj_bias.data() : nullptr;
  const bool packed = m.qkv_same_embed_dim();
  const float* wq = packed ? m.in_proj_weight.data() : m.q_proj_weight.data();
  const float* wk = packed ? m.in_proj_weight.data() + E * E : m.k_proj_weight.data();
  const float* wv = packed ? m.in_proj_weight.data() + 2 * E * E : m.v_proj_weight.data();
  const auto same = [](const Tensor3& x, const Tensor3& y) {
    return x.data() == y.data() && x.shape() == y.shape();
  };
  const bool extra_keys = m.bias_k.size() > 0 || m.add_zero_attn;
  const bool qk_shared = packed && !extra_keys && same(query, key);
  const bool qkv_shared = qk_shared && same(key, value);

  thread_local kernels::Scratch scratch;
  Projections p;
  if (qkv_shared) {
    float* qkv = scratch.get(Lrows * 3 * E);
    kernels::gemm_nt(Lrows, 3 * E, E, query.data(), E, wq, E, b, qkv, 3 * E, kernels::Act::none);
    p.q = d.rows(qkv, d.L, 3 * E);
    p.k = d.rows(qkv + E, d.L, 3 * E);
    p.v = d.rows(qkv + 2 * E, d.L, 3 * E);
  } else if (qk_shared) {
    float* qk = scratch.get(Lrows * 2 * E + Srows * E);
    float* v = qk + Lrows * 2 * E;
    kernels::gemm_nt(Lrows, 2 * E, E, query.data(), E, wq, E, b, qk, 2 * E, kernels::Act::none);
    kernels::gemm_nt(Srows, E, E, value.data(), E, wv, E, b ? b + 2 * E : nullptr, v, E,
                     kernels::Act::none);
    p.q = d.rows(qk, d.L, 2 * E);
    p.k = d.rows(qk + E, d.L, 2 * E);
    p.v = d.rows(v, d.S, E);
  } else {
    float* q = scratch.get(Lrows * E + (extra_keys ? 0 : 2 * Srows * E));
    kernels::gemm_nt(Lrows, E, E, query.data(), E, wq, E, b, q, E, kernels::Act::none);
    p.q = d.rows(q, d.L, E);
    if (extra_keys) {
      project_with_extra_keys(m, key, value, wk, wv, b, d, p);
    } else {
      float* k = q + Lrows * E;
      float* v = k + Srows * E;
      kernels::gemm_nt(Srows, E, to_size(m.kdim), key.data(), to_size(m.kdim), wk,
                       to_size(m.kdim), b ? b + E : nullptr, k, E, kernels::Act::none);
      kernels::gemm_nt(Srows, E, to_size(m.vdim), value.data(), to_size(m.vdim), wv,
                       to_size(m.vdim), b ? b + 2 * E : nullptr, v, E, kernels::Act::none);
      p.k = d.rows(k, d.S, E);
      p.v = d.rows(v, d.S, E);
    }
  }
  return p;
}

// softmax(q k^T / sqrt(Dh) + masks) v per batch and head, blocked over queries, into rows
// (L*N,E) of thread-local scratch in the caller's layout. The (N,nh,L,S_ext) weights are
// formed only when `weights` is given.
const float* attend(const Projections& p, const Dims& d, const KeyPaddingMask& key_padding_mask,
                    const AttnMask& attn_mask, float* weights) {
  thread_local kernels::Scratch scratch;
  float* out = scratch.get(d.L * d.N * d.E);
  const kernels::SeqView out_rows = d.rows(out, d.L, d.E);
  kernels::AttentionArgs args;
  args.q = p.q;
  args.k = p.k;
  args.v = p.v;
  args.batch = d.N;
  args.heads = d.nh;
  args.head_dim = d.Dh;
  args.L = d.L;
  args.S = d.S_ext;
  args.out = out;
  args.out_stride_i = out_rows.stride_i;
  args.out_stride_n = out_rows.stride_n;
  args.scale = 1.0f / std::sqrt(static_cast<float>(d.Dh));
  args.attn_mask = attn_mask.size() ? attn_mask.data() : nullptr;
  args.attn_mask_planes = attn_mask.size() ? attn_mask.shape(0) : 0;
  args.key_padding = key_padding_mask.size() ? key_padding_mask.data() : nullptr;
  args.S_mask = d.S;
  args.weights = weights;
  kernels::attention(args);
  return out;
}

// Rows (len, N, E) of a view -> (N, len, E), batch first, owned.
Tensor3 batch_first_copy(const kernels::SeqView& v, std::size_t len, std::size_t N, std::size_t E) {
  Tensor3 out = Tensor3::from_shape({N, len, E});
  for (std::size_t n = 0; n < N; ++n) {
    for (std::size_t i = 0; i < len; ++i) {
      std::copy_n(v.data + i * v.stride_i + n * v.stride_n, E, &out(n, i, 0));
    }
  }
  return out;
}

}  // namespace

MultiheadAttention::MultiheadAttention(const MultiheadAttentionOptions& o)
    : embed_dim(o.embed_dim),
      num_heads(o.num_heads),
      kdim(o.kdim > 0 ? o.kdim : o.embed_dim),
      vdim(o.vdim > 0 ? o.vdim : o.embed_dim),
      batch_first(o.batch_first),
      add_zero_attn(o.add_zero_attn) {
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
    k_proj_weight = xt::zeros<float>({e, to_size(kdim)});
    v_proj_weight = xt::zeros<float>({e, to_size(vdim)});
  }
  if (o.bias) in_proj_bias = xt::zeros<float>({3 * e});
  if (o.add_bias_kv) {
    bias_k = xt::zeros<float>({std::size_t{1}, std::size_t{1}, e});
    bias_v = xt::zeros<float>({std::size_t{1}, std::size_t{1}, e});
  }
  out_proj = Linear(embed_dim, embed_dim, o.bias);
}

MultiheadAttentionOutput MultiheadAttention::forward(const Tensor3& query, const Tensor3& key,
                                                     const Tensor3& value,
                                                     const KeyPaddingMask& key_padding_mask,
                                                     bool need_weights, const AttnMask& attn_mask,
                                                     bool average_attn_weights,
                                                     bool keep_scores) const {
  // Rows stay in the caller's layout (sequence-first or batch_first): the kernels address
  // (position, batch) rows through strides, so nothing is transposed.
  const Dims d = check_shapes(*this, query, key, value, key_padding_mask, attn_mask);

  // 1. q (L,N,E), k and v (S_ext,N,E).
  const Projections projected = in_projection(*this, query, key, value, d);

  // 2. Attention (L,N,E); the per-head weights (N,nh,L,S_ext) only when asked for.
  Tensor4 weights;
  if (need_weights) weights = Tensor4::from_shape({d.N, d.nh, d.L, d.S_ext});
  const float* attn = attend(projected, d, key_padding_mask, attn_mask,
                             need_weights ? weights.data() : nullptr);

  // 3. Output projection (L,N,E), straight into the caller's layout.
  MultiheadAttentionOutput result;
  result.attn_output = Tensor3::from_shape(query.shape());
  out_proj.forward_rows(attn, d.L * d.N, result.attn_output.data());
  if (need_weights) {
    result.attn_output_weights = average_attn_weights ? average_heads(weights) : std::move(weights);
  }
  if (keep_scores) {
    result.attn_scores = std::make_shared<const AttentionScores>(
        batch_first_copy(projected.q, d.L, d.N, d.E), batch_first_copy(projected.k, d.S_ext, d.N, d.E),
        d.nh, key_padding_mask, attn_mask);
  }
  return result;
}

}  // namespace vitscope::nn
