// The shipped demo model on scenes vitscope draws itself (tests/support/scenes.hpp), never seen in
// training: its per-patch accuracy, and how much of a shape token's attention stays on its shape.

#include <iostream>
#include <map>
#include <random>

#include <xtensor/xview.hpp>

#include "scenes.hpp"
#include "support.hpp"
#include "vitscope/image/attention.hpp"
#include "vitscope/image/image_model.hpp"

using namespace vitscope;
using namespace vitscope::image;

namespace {

const std::string kDemoModel = std::string(VITSCOPE_ASSETS_DIR) + "/models/demo.safetensors";
constexpr int kScenes = 96;
constexpr std::size_t kBatch = 8;
constexpr std::uint32_t kSeed = 20261125;
// tools/train_demo.py reports 0.930 on its own held-out scenes, and this test measured 0.938 on
// these: a floor below both, at the demo model's goal.
constexpr double kMinAccuracy = 0.90;
// Measured on these scenes (see the README), against the shape's share of the image, 0.079: 0.122
// in the last encoder layer, 0.215 through the rollout of all three, 0.475 in the decoder's
// self-attention over the tokens and 0.220 in its cross-attention. Floors below each that
// attention spread evenly cannot reach.
constexpr double kMinShapeMass = 0.10;
constexpr double kMinRolloutShapeMass = 0.18;
constexpr double kMinDecoderSelfShapeMass = 0.40;
constexpr double kMinCrossShapeMass = 0.18;

struct Totals {
  std::size_t correct = 0, patches = 0;
  std::vector<double> layer_mass;  // per encoder layer, summed over shapes
  double rollout_mass = 0, decoder_self_mass = 0, cross_mass = 0, share = 0;
  std::size_t shapes = 0;
};

// The attention `tokens` put on themselves, per token: sum over queries and keys / queries.
double own_mass(const Tensor2& attention, const std::vector<std::size_t>& tokens) {
  double mass = 0;
  for (std::size_t query : tokens) {
    for (std::size_t key : tokens) mass += attention(query, key);
  }
  return mass / tokens.size();
}

// One scene's patches: accuracy of the head, and the attention mass a shape's tokens keep on
// their shape (heads averaged) in every encoder layer, the rollout of the encoder, and the
// decoder's self-attention over its targets (the tokens) and cross-attention to the memory.
void score(const ImageModelOutput& out, const ImageAttention& attention, std::size_t b,
           const Scene& scene, Totals& totals) {
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

  std::vector<Tensor3> layers;
  for (const nn::ModulePath& module : attention.encoder_modules()) {
    layers.push_back(attention.modules.at(module));
  }
  std::vector<Tensor2> fused;
  for (const Tensor3& layer : layers) fused.push_back(fuse_heads(layer, HeadFusion::mean));
  totals.layer_mass.resize(fused.size());
  const Tensor2 rollout = attention_rollout(layers, HeadFusion::mean, 0.0f);
  const Tensor2 decoder_self =
      fuse_heads(attention.modules.at(nn::ModulePath::decoder_self_attn(0)), HeadFusion::mean);
  const Tensor2 cross =
      fuse_heads(attention.modules.at(nn::ModulePath::decoder_multihead_attn(0)), HeadFusion::mean);
  const cv::Mat owner = majority_patches(scene.instances, 16, 6);
  std::map<int, std::vector<std::size_t>> shape_tokens;
  for (std::size_t t = 0; t < h * w; ++t) {
    const int instance = owner.at<int>(static_cast<int>(t / w), static_cast<int>(t % w));
    if (instance > 0) shape_tokens[instance].push_back(t);
  }
  for (const auto& [instance, tokens] : shape_tokens) {
    for (std::size_t l = 0; l < fused.size(); ++l)
      totals.layer_mass[l] += own_mass(fused[l], tokens);
    totals.rollout_mass += own_mass(rollout, tokens);
    totals.decoder_self_mass += own_mass(decoder_self, tokens);
    totals.cross_mass += own_mass(cross, tokens);
    totals.share += static_cast<double>(tokens.size()) / (h * w);
    totals.shapes += 1;
  }
}

}  // namespace

TEST_CASE("demo model: per-patch accuracy and attention on its shapes, on new scenes",
          "[demo_model]") {
  ImageModelFile file = load_image_model(kDemoModel);
  ImageModel& model = file.model;
  REQUIRE(model.transformer.decoder.layers.size() == 1);
  std::vector<nn::ModulePath> captured = {nn::ModulePath::decoder_self_attn(0),
                                          nn::ModulePath::decoder_multihead_attn(0)};
  for (std::size_t i = 0; i < model.transformer.encoder.layers.size(); ++i) {
    captured.push_back(nn::ModulePath::encoder_self_attn(i));
  }
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
        model.forward(preprocess(images, model.preprocess_options()), "output", captured);
    for (std::size_t b = 0; b < kBatch; ++b) score(out, image_attention(out, b), b, scenes[b], totals);
  }
  const double accuracy = static_cast<double>(totals.correct) / totals.patches;
  const double mass = totals.layer_mass.back() / totals.shapes,
               share = totals.share / totals.shapes;
  const double rollout_mass = totals.rollout_mass / totals.shapes;
  const double decoder_self_mass = totals.decoder_self_mass / totals.shapes;
  const double cross_mass = totals.cross_mass / totals.shapes;
  std::string per_layer;
  for (double m : totals.layer_mass)
    per_layer += (per_layer.empty() ? "" : ", ") + std::to_string(m / totals.shapes);
  std::cout << "demo model on " << kScenes << " new scenes: per-patch accuracy " << accuracy
            << " (floor " << kMinAccuracy << "); heads averaged, a shape token's attention on its "
            << "own shape: last encoder layer " << mass << " (floor " << kMinShapeMass
            << "), encoder rollout " << rollout_mass << " (floor " << kMinRolloutShapeMass
            << "), decoder self-attention " << decoder_self_mass << " (floor "
            << kMinDecoderSelfShapeMass << "), cross-attention " << cross_mass << " (floor "
            << kMinCrossShapeMass << "), against the shape's share of the image " << share
            << "; per encoder layer " << per_layer << "\n";
  CHECK(accuracy >= kMinAccuracy);
  CHECK(mass >= kMinShapeMass);
  CHECK(rollout_mass >= kMinRolloutShapeMass);
  CHECK(mass > 1.3 * share);
  CHECK(rollout_mass > 2 * share);
  CHECK(decoder_self_mass >= kMinDecoderSelfShapeMass);
  CHECK(decoder_self_mass > 4 * share);
  CHECK(cross_mass >= kMinCrossShapeMass);
  CHECK(cross_mass > 2 * share);
}
