// Module behaviour that PyTorch fixtures cannot pin down: the defined all-masked result, mask
// equivalences, per-head weights, the attention recorder, and layout options giving the same numbers.

#include <limits>

#include "support.hpp"
#include "vitscope/io/model_file.hpp"
#include "vitscope/nn/masks.hpp"
#include "vitscope/nn/transformer.hpp"
#include "vitscope/nn/state_dict.hpp"

using namespace vitscope;
using test::error_code;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

Tensor3 random_tensor(std::size_t a, std::size_t b, std::size_t c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  Tensor3 t = Tensor3::from_shape({a, b, c});
  for (float& x : t) x = normal(rng);
  return t;
}

// A MultiheadAttention with seeded random weights and biases: E = 8, 2 heads.
nn::MultiheadAttention random_attention(bool batch_first = false) {
  nn::MultiheadAttentionOptions options;
  options.embed_dim = 8;
  options.num_heads = 2;
  options.batch_first = batch_first;
  nn::MultiheadAttention mha(options);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (const Parameter& p : named_parameters(mha)) {
    for (std::size_t i = 0; i < p.numel(); ++i) p.data[i] = normal(rng);
  }
  return mha;
}

double max_abs_diff(const Tensor3& a, const Tensor3& b) {
  REQUIRE((a.shape() == b.shape()));
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(double(a.data()[i]) - double(b.data()[i])));
  }
  return worst;
}

}  // namespace

TEST_CASE("generate_square_subsequent_mask is -inf above the diagonal", "[masks]") {
  const Tensor2 mask = nn::generate_square_subsequent_mask(3);
  const Tensor2 expected = {{0, -kInf, -kInf}, {0, 0, -kInf}, {0, 0, 0}};
  REQUIRE((mask == expected));
}

TEST_CASE("a bool mask becomes 0 / -inf", "[masks]") {
  const Tensor2 bool_mask = {{1, 0}, {0, 1}};
  const Tensor2 expected = {{-kInf, 0}, {0, -kInf}};
  REQUIRE((nn::additive_from_bool(bool_mask) == expected));
}

TEST_CASE("masks from file values: rank 2 attn_mask as (1,L,S), bools made additive, wrong rank named",
          "[masks]") {
  const nn::AttnMask attn = nn::to_attn_mask({2, 2}, {1, 0, 0, 1}, true, "--src-mask m.npy");
  REQUIRE((attn == Tensor3{{{-kInf, 0}, {0, -kInf}}}));
  const nn::KeyPaddingMask kpm = nn::to_key_padding_mask({1, 2}, {0.5f, -1}, false, "kpm");
  REQUIRE((kpm == Tensor2{{0.5f, -1}}));
  try {
    nn::to_attn_mask({4}, {0, 0, 0, 0}, true, "--src-mask m.npy");
    FAIL("a rank-1 attn_mask was accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) ==
          "--src-mask m.npy: expected a float32 or bool mask of shape (L,S) or (N*nhead,L,S), "
          "got bool (4)");
  }
  try {
    nn::to_key_padding_mask({1, 1, 2}, {0, 0}, false, "kpm");
    FAIL("a rank-3 key_padding_mask was accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) ==
          "kpm: expected a float32 or bool mask of shape (N,S), got float32 (1, 1, 2)");
  }
}

TEST_CASE("a query whose keys are all masked gets zero weights and the out_proj bias",
          "[masks][attention]") {
  const nn::MultiheadAttention mha = random_attention();
  const Tensor3 x = random_tensor(3, 2, 8, 1);  // (L=3, N=2, E=8)
  // Row 1 of every (batch, head) masks all three keys; rows 0 and 2 mask none.
  Tensor2 mask = xt::zeros<float>({3, 3});
  for (std::size_t s = 0; s < 3; ++s) mask(1, s) = -kInf;
  const auto result = mha.forward(x, x, x, {}, true, nn::attn_mask_2d(mask), false);

  for (std::size_t n = 0; n < 2; ++n) {
    for (std::size_t h = 0; h < 2; ++h) {
      for (std::size_t s = 0; s < 3; ++s) REQUIRE(result.attn_output_weights(n, h, 1, s) == 0.0f);
      float row_sum = 0.0f;
      for (std::size_t s = 0; s < 3; ++s) row_sum += result.attn_output_weights(n, h, 0, s);
      REQUIRE(row_sum == Approx(1.0f));
    }
    for (std::size_t e = 0; e < 8; ++e) {
      REQUIRE(result.attn_output(1, n, e) == Approx(mha.out_proj.bias(e)).margin(1e-6));
    }
  }
}

TEST_CASE("bool and float masks with the same meaning give the same result", "[masks][attention]") {
  const nn::MultiheadAttention mha = random_attention();
  const Tensor3 q = random_tensor(3, 2, 8, 2);
  const Tensor3 kv = random_tensor(4, 2, 8, 3);
  const Tensor2 kpm_bool = {{0, 0, 1, 0}, {1, 0, 0, 0}};
  const Tensor2 kpm_float = {{0, 0, -kInf, 0}, {-kInf, 0, 0, 0}};
  const auto with_bool = mha.forward(q, kv, kv, nn::additive_from_bool(kpm_bool));
  const auto with_float = mha.forward(q, kv, kv, kpm_float);
  REQUIRE(max_abs_diff(with_bool.attn_output, with_float.attn_output) == 0.0);
  // A masked key gets no weight at all.
  REQUIRE(with_bool.attn_output_weights(0, 0, 1, 2) == 0.0f);
  REQUIRE(with_bool.attn_output_weights(1, 0, 0, 0) == 0.0f);
}

TEST_CASE("per-head weights leave the output unchanged and average to need_weights' mean",
          "[attention]") {
  const nn::MultiheadAttention mha = random_attention();
  const Tensor3 x = random_tensor(5, 2, 8, 4);
  const auto plain = mha.forward(x, x, x, {}, false);
  REQUIRE(plain.attn_output_weights.size() == 0);

  const auto per_head = mha.forward(x, x, x, {}, true, {}, false);
  REQUIRE(max_abs_diff(plain.attn_output, per_head.attn_output) == 0.0);
  const Tensor4& heads = per_head.attn_output_weights;
  REQUIRE((heads.shape() == std::array<std::size_t, 4>{2, 2, 5, 5}));

  const auto averaged = mha.forward(x, x, x, {}, true, {}, true);
  REQUIRE((averaged.attn_output_weights.shape() == std::array<std::size_t, 4>{2, 1, 5, 5}));
  for (std::size_t l = 0; l < 5; ++l) {
    const float mean = (heads(1, 0, l, 3) + heads(1, 1, l, 3)) / 2.0f;
    REQUIRE(averaged.attn_output_weights(1, 0, l, 3) == Approx(mean));
  }
}

TEST_CASE("batch_first gives the transposed result of sequence-first", "[attention]") {
  const nn::MultiheadAttention seq_first = random_attention(false);
  const nn::MultiheadAttention batch_first = random_attention(true);
  const Tensor3 x = random_tensor(4, 3, 8, 5);  // (L,N,E)
  const Tensor3 x_bf = xt::transpose(x, {1, 0, 2});
  const Tensor3 out = seq_first.forward(x, x, x).attn_output;
  const Tensor3 out_bf = batch_first.forward(x_bf, x_bf, x_bf).attn_output;
  REQUIRE(max_abs_diff(Tensor3(xt::transpose(out_bf, {1, 0, 2})), out) < 1e-6);
}

TEST_CASE("mismatched shapes are errors, not crashes", "[attention]") {
  const nn::MultiheadAttention mha = random_attention();
  const Tensor3 x = random_tensor(3, 2, 8, 6);
  const Tensor3 wrong_features = random_tensor(3, 2, 7, 6);
  const Tensor3 wrong_batch = random_tensor(3, 1, 8, 6);
  REQUIRE(error_code([&] { mha.forward(wrong_features, x, x); }) == "shape_mismatch");
  REQUIRE(error_code([&] { mha.forward(x, wrong_batch, wrong_batch); }) == "shape_mismatch");
  REQUIRE(error_code([&] { mha.forward(x, x, x, xt::zeros<float>({2, 4})); }) == "shape_mismatch");
  REQUIRE(error_code([&] {
            mha.forward(x, x, x, {}, true, xt::zeros<float>({5, 3, 3}));
          }) == "shape_mismatch");
}

TEST_CASE("the attention recorder keeps what it asked for and leaves the output unchanged",
          "[attention]") {
  nn::TransformerOptions options;
  options.d_model = 8;
  options.nhead = 2;
  options.num_encoder_layers = 2;
  options.num_decoder_layers = 1;
  options.dim_feedforward = 16;
  nn::Transformer model(options);
  std::mt19937_64 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (const Parameter& p : named_parameters(model)) {
    for (std::size_t i = 0; i < p.numel(); ++i) p.data[i] = normal(rng);
  }
  const Tensor3 src = random_tensor(5, 2, 8, 12), tgt = random_tensor(3, 2, 8, 13);
  const Tensor3 plain = model.forward(src, tgt);

  const nn::ModulePath cross{nn::Stack::decoder, 0, nn::AttentionKind::multihead_attn};
  const nn::ModulePath first{nn::Stack::encoder, 0, nn::AttentionKind::self_attn};
  nn::AttentionRecorder recorder({cross, first}, nn::LayerPath{nn::Stack::encoder, 1});
  const Tensor3 recorded = model.forward(src, tgt, {}, {}, {}, {}, {}, {}, {}, {}, &recorder);
  REQUIRE(max_abs_diff(plain, recorded) == 0.0);
  REQUIRE(recorder.weights().size() == 2);
  REQUIRE(cross.str() == "decoder.layers.0.multihead_attn");
  REQUIRE((recorder.weights().at(cross).shape() == std::array<std::size_t, 4>{2, 2, 3, 5}));
  REQUIRE((recorder.weights().at(first).shape() == std::array<std::size_t, 4>{2, 2, 5, 5}));

  // The first layer's weights are those its module gives when asked directly.
  const nn::MultiheadAttention& attn = model.encoder.layers[0].self_attn;
  const Tensor4 direct = attn.forward(src, src, src, {}, true, {}, false).attn_output_weights;
  REQUIRE(direct == recorder.weights().at(first));
  // The chosen layer's output is what the stack's second layer gives, before the final norm.
  const Tensor3 layer1 = model.encoder.layers[1].forward(model.encoder.layers[0].forward(src));
  REQUIRE(max_abs_diff(layer1, recorder.layer_output()) == 0.0);
}
