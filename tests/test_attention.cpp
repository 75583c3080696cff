// Attention inspection: head fusion, rollout and DINO masks against small cases worked by hand,
// the token <-> pixel mapping on non-square padded images, and capture on a real model.

#include <cmath>
#include <vector>

#include <opencv2/imgproc.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "support.hpp"
#include "vitscope/image/attention.hpp"
#include "vitscope/image/attention_views.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/image/load.hpp"

using namespace vitscope;
using namespace vitscope::image;

namespace {

constexpr float kExact = 1e-6f;

// Two heads over two tokens: [[0.8, 0.2], [0.4, 0.6]] and its mirror [[0.2, 0.8], [0.6, 0.4]].
Tensor3 two_heads() {
  Tensor3 w = {{{0.8f, 0.2f}, {0.4f, 0.6f}}, {{0.2f, 0.8f}, {0.6f, 0.4f}}};
  return w;
}

void require_matrix(const Tensor2& actual, const std::vector<std::vector<float>>& expected) {
  REQUIRE(actual.shape(0) == expected.size());
  float worst = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    REQUIRE(actual.shape(1) == expected[i].size());
    for (std::size_t j = 0; j < expected[i].size(); ++j) {
      worst = std::max(worst, std::abs(actual(i, j) - expected[i][j]));
    }
  }
  INFO("worst error " << worst);
  CHECK(worst <= kExact);
}

cv::Vec3b turbo_blended(int value, float grey) {
  cv::Mat g(1, 1, CV_8U, cv::Scalar(value)), colour;
  cv::applyColorMap(g, colour, cv::COLORMAP_TURBO);
  const cv::Vec3b c = colour.at<cv::Vec3b>(0, 0);
  cv::Vec3b out;
  for (int k = 0; k < 3; ++k) out[k] = cv::saturate_cast<uchar>(0.4 * grey + 0.6 * c[k]);
  return out;
}

bool close_colour(const cv::Vec3b& a, const cv::Vec3b& b) {
  return std::abs(a[0] - b[0]) <= 1 && std::abs(a[1] - b[1]) <= 1 && std::abs(a[2] - b[2]) <= 1;
}

}  // namespace

TEST_CASE("heads fuse by mean, max and min", "[attention]") {
  require_matrix(fuse_heads(two_heads(), HeadFusion::mean), {{0.5f, 0.5f}, {0.5f, 0.5f}});
  require_matrix(fuse_heads(two_heads(), HeadFusion::max), {{0.8f, 0.8f}, {0.6f, 0.6f}});
  require_matrix(fuse_heads(two_heads(), HeadFusion::min), {{0.2f, 0.2f}, {0.4f, 0.4f}});
  CHECK(parse_head_fusion("max") == HeadFusion::max);
  CHECK(test::error_code([] { parse_head_fusion("median"); }) == "bad_head_fusion");
}

TEST_CASE("rollout adds the residual, renormalises and multiplies the layers", "[attention]") {
  const Tensor3 one_head = xt::view(two_heads(), xt::range(0, 1), xt::all(), xt::all());
  // (A + I) / 2 = [[0.9, 0.1], [0.2, 0.8]]; its rows already sum to 1.
  require_matrix(attention_rollout({one_head}, HeadFusion::mean, 0.0f), {{0.9f, 0.1f}, {0.2f, 0.8f}});
  // Two layers: [[0.9, 0.1], [0.2, 0.8]]^2 = [[0.83, 0.17], [0.34, 0.66]].
  require_matrix(attention_rollout({one_head, one_head}, HeadFusion::mean, 0.0f),
                 {{0.83f, 0.17f}, {0.34f, 0.66f}});
  // Discarding half the entries drops 0.2 and 0.4: (A' + I) / 2 = diag(0.9, 0.8), renormalised I.
  require_matrix(attention_rollout({one_head}, HeadFusion::mean, 0.5f), {{1.0f, 0.0f}, {0.0f, 1.0f}});
  // Max fusion of the two heads: [[0.8, 0.8], [0.6, 0.6]] -> [[0.9, 0.4], [0.3, 0.8]] / row sums.
  require_matrix(attention_rollout({two_heads()}, HeadFusion::max, 0.0f),
                 {{0.9f / 1.3f, 0.4f / 1.3f}, {0.3f / 1.1f, 0.8f / 1.1f}});
  CHECK(test::error_code([&] { attention_rollout({one_head}, HeadFusion::mean, 1.0f); }) ==
        "bad_attention_input");
}

TEST_CASE("DINO masks keep the largest entries holding the threshold's share", "[attention]") {
  const std::vector<float> map = {0.1f, 0.5f, 0.15f, 0.25f};
  // Ascending cumulative shares: 0.1, 0.25, 0.5, 1.0.
  CHECK(top_mass_mask(map, 0.6f) == std::vector<bool>{false, true, false, true});
  CHECK(top_mass_mask(map, 0.45f) == std::vector<bool>{false, true, false, false});
  CHECK(top_mass_mask(map, 1.0f) == std::vector<bool>{true, true, true, true});
  CHECK(top_mass_mask({0.0f, 0.0f}, 0.6f) == std::vector<bool>{false, false});
}

TEST_CASE("a point lands on the token drawn under it, on a non-square padded grid",
          "[attention]") {
  // 140x90 shown to the model at 70x45 with 16-pixel patches: a 3x5 grid whose last row (13 px)
  // and column (6 px) are partial patches.
  const cv::Mat image(90, 140, CV_32FC3, cv::Scalar::all(100));
  const TokenLayout layout{cv::Size(70, 45), 16};
  const std::array<std::size_t, 2> grid = {3, 5};
  CHECK(token_at({0, 0}, image.size(), layout, grid) == 0);
  CHECK(token_at({139, 89}, image.size(), layout, grid) == 14);
  CHECK(token_at({127, 63}, image.size(), layout, grid) == 1 * 5 + 3);
  CHECK(token_at({128, 64}, image.size(), layout, grid) == 2 * 5 + 4);
  CHECK(token_at({-5, 1000}, image.size(), layout, grid) == 2 * 5 + 0);

  // One hot token (2, 4) colours exactly the original pixels x >= 128, y >= 64.
  Tensor2 map = xt::zeros<float>({3, 5});
  map(2, 4) = 1.0f;
  const cv::Mat view = attention_overlay(map, {image, layout, grid});
  REQUIRE(view.size() == image.size());
  const cv::Vec3b hot = turbo_blended(255, 100), cold = turbo_blended(0, 100);
  for (int y = 0; y < view.rows; ++y) {
    for (int x = 0; x < view.cols; ++x) {
      const bool inside = x >= 128 && y >= 64;
      if (!close_colour(view.at<cv::Vec3b>(y, x), inside ? hot : cold)) {
        FAIL("pixel (" << x << ", " << y << ") is not " << (inside ? "hot" : "cold"));
      }
    }
  }
  // The same token picked by its pixel gives back the hot map.
  CHECK(token_at({130, 70}, image.size(), layout, grid) == 14);
}

TEST_CASE("a DINO mask tints exactly its tokens' pixels", "[attention]") {
  const cv::Mat image(45, 70, CV_32FC3, cv::Scalar::all(0));
  const TokenLayout layout{cv::Size(70, 45), 16};
  std::vector<bool> mask(15, false);
  mask[0] = true;
  const cv::Mat view = mask_overlay(mask, {image, layout, {3, 5}});
  CHECK(view.at<cv::Vec3b>(8, 8) != cv::Vec3b(0, 0, 0));
  CHECK(view.at<cv::Vec3b>(30, 40) == cv::Vec3b(0, 0, 0));
}

TEST_CASE("a mask drawn from the canvas's tinted background is the one drawn without it",
          "[attention]") {
  cv::Mat image(45, 70, CV_32FC3);
  cv::randu(image, 0, 255);
  const TokenLayout layout{cv::Size(70, 45), 16};
  std::vector<bool> mask(15, false);
  mask[0] = mask[7] = mask[8] = true;
  const AttentionCanvas bare{image, layout, {3, 5}};
  const AttentionCanvas made = attention_canvas(image, layout, {3, 5});
  REQUIRE_FALSE(made.mask_background.empty());
  CHECK(cv::norm(mask_overlay(mask, bare, {{30, 20}}), mask_overlay(mask, made, {{30, 20}}),
                 cv::NORM_INF) == 0);
}

TEST_CASE("captured attention is per head, cropped to real tokens, and changes nothing",
          "[attention]") {
  ImageModelFile file = load_image_model(std::string(VITSCOPE_ASSETS_DIR) + "/models/random.safetensors");
  ImageModel& model = file.model;
  const std::vector<cv::Mat> images = {cv::Mat(64, 96, CV_32FC3, cv::Scalar(10, 200, 90)),
                                       cv::Mat(100, 40, CV_32FC3, cv::Scalar(250, 30, 60))};
  PreprocessOptions options = model.preprocess_options();
  options.size = 96;
  const ImageBatch batch = preprocess(images, options);
  const std::vector<nn::ModulePath> modules = model.attention_modules();
  REQUIRE(!modules.empty());
  const ImageModelOutput plain = model.forward(batch);
  const ImageModelOutput captured = model.forward(batch, "output", modules);
  CHECK(plain.attention.empty());
  REQUIRE(captured.attention.size() == modules.size());
  const float change = xt::amax(xt::abs(captured.features - plain.features))();
  INFO("features change by " << change << " when attention is captured");
  CHECK(change <= 1e-5f);

  const std::size_t nh = static_cast<std::size_t>(model.options.transformer.nhead);
  for (std::size_t b = 0; b < images.size(); ++b) {
    const ImageAttention attention = image_attention(captured, b);
    const std::size_t S = attention.grid[0] * attention.grid[1];
    CHECK(attention.encoder_modules().size() == model.transformer.encoder.layers.size());
    for (const auto& [path, weights] : attention.modules) {
      INFO(path << " image " << b);
      REQUIRE(weights.shape(0) == nh);
      REQUIRE(weights.shape(2) == S);
      // Padding keys get no weight, so each real row sums to 1 over the real keys alone.
      double worst = 0;
      for (std::size_t k = 0; k < nh; ++k) {
        for (std::size_t l = 0; l < weights.shape(1); ++l) {
          double total = 0;
          for (std::size_t s = 0; s < S; ++s) total += weights(k, l, s);
          worst = std::max(worst, std::abs(total - 1.0));
        }
      }
      INFO("worst row-sum error " << worst);
      CHECK(worst < 1e-5);
    }
    const std::vector<nn::ModulePath> encoder = attention.encoder_modules();
    std::vector<Tensor3> layers;
    for (const nn::ModulePath& path : encoder) layers.push_back(attention.modules.at(path));
    const Tensor2 rollout = attention_rollout(layers, HeadFusion::mean, 0.9f);
    const float worst_sum = xt::amax(xt::abs(xt::sum(rollout, {1}) - 1.0f))();
    INFO("worst rollout row-sum error " << worst_sum);
    CHECK(worst_sum <= 1e-4f);
  }
  CHECK(test::error_code([&] { model.forward(batch, "output", {nn::ModulePath::encoder_self_attn(99)}); }) ==
        "bad_attention_module");
}
