// The shipped demo model on scenes vitscope draws itself (image/scenes.hpp), never seen in
// training: its per-patch accuracy, and how much of a shape token's attention stays on its shape.

#include <iostream>
#include <map>
#include <random>

#include <xtensor/xview.hpp>

#include "support.hpp"
#include "vitscope/image/attention.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/image/scenes.hpp"

using namespace vitscope;
using namespace vitscope::image;

namespace {

const std::string kDemoModel = std::string(VITSCOPE_ASSETS_DIR) + "/models/demo.safetensors";
constexpr int kScenes = 96;
constexpr std::size_t kBatch = 8;
constexpr std::uint32_t kSeed = 20261125;
// tools/train_demo.py reports 0.837 on its own held-out scenes, and this test measured 0.830 on
// these: a floor below both. (The demo model's goal is 0.90: the README says where it stands.)
constexpr double kMinAccuracy = 0.80;
// Measured 0.483 on these scenes (see the README); a floor below it that attention spread evenly
// (the shape's share of the image, 0.079 here) cannot reach.
constexpr double kMinShapeMass = 0.40;

struct Totals {
  std::size_t correct = 0, patches = 0;
  double mass = 0, share = 0;
  std::size_t shapes = 0;
};

// One scene's patches: accuracy of the head and attention mass of the last encoder layer.
void score(const ImageModelOutput& out, const ImageAttention& attention, std::size_t b,
           const Scene& scene, const std::string& last_layer, Totals& totals) {
  const auto [h, w] = out.grids[b];
  const cv::Mat truth = majority_patches(scene.labels, 16, 5);
  REQUIRE(static_cast<std::size_t>(truth.rows) == h);
  REQUIRE(static_cast<std::size_t>(truth.cols) == w);
  for (std::size_t i = 0; i < h; ++i) {
    for (std::size_t j = 0; j < w; ++j) {
      std::size_t best = 0;
      for (std::size_t k = 1; k < out.logits.shape(1); ++k) {
        if (out.logits(b, k, i, j) > out.logits(b, best, i, j)) best = k;
      }
      totals.correct += best == static_cast<std::size_t>(truth.at<int>(int(i), int(j)));
      totals.patches += 1;
    }
  }

  const cv::Mat owner = majority_patches(scene.instances, 16, 6);
  const Tensor2 fused = fuse_heads(attention.modules.at(last_layer), HeadFusion::mean);
  std::map<int, std::vector<std::size_t>> shape_tokens;
  for (std::size_t t = 0; t < h * w; ++t) {
    const int instance = owner.at<int>(static_cast<int>(t / w), static_cast<int>(t % w));
    if (instance > 0) shape_tokens[instance].push_back(t);
  }
  for (const auto& [instance, tokens] : shape_tokens) {
    double mass = 0;
    for (std::size_t query : tokens) {
      for (std::size_t key : tokens) mass += fused(query, key);
    }
    totals.mass += mass / tokens.size();
    totals.share += static_cast<double>(tokens.size()) / (h * w);
    totals.shapes += 1;
  }
}

}  // namespace

TEST_CASE("demo model: per-patch accuracy and attention on its shapes, on new scenes",
          "[demo_model]") {
  ImageModelFile file = load_image_model(kDemoModel);
  ImageModel& model = file.model;
  const std::string last_layer =
      "encoder.layers." + std::to_string(model.transformer.encoder.layers.size() - 1) + ".self_attn";
  std::mt19937 rng(kSeed);
  Totals totals;
  for (int done = 0; done < kScenes; done += kBatch) {
    std::vector<Scene> scenes;
    std::vector<cv::Mat> images;
    for (std::size_t b = 0; b < kBatch; ++b) {
      scenes.push_back(make_scene(rng));
      images.push_back(scenes.back().rgb);
    }
    const ImageModelOutput out =
        model.forward(preprocess(images, model.preprocess_options()), "output", {last_layer});
    for (std::size_t b = 0; b < kBatch; ++b) {
      score(out, image_attention(out, b), b, scenes[b], last_layer, totals);
    }
  }
  const double accuracy = static_cast<double>(totals.correct) / totals.patches;
  const double mass = totals.mass / totals.shapes, share = totals.share / totals.shapes;
  std::cout << "demo model on " << kScenes << " new scenes: per-patch accuracy " << accuracy
            << " (floor " << kMinAccuracy << "); last encoder layer, heads averaged: a shape token's "
            << "attention on its own shape " << mass << " (floor " << kMinShapeMass
            << ") against the shape's share of the image " << share << "\n";
  CHECK(accuracy >= kMinAccuracy);
  CHECK(mass >= kMinShapeMass);
  CHECK(mass > 3 * share);
}
