// The shipped CLS demo model (assets/models/cls_demo.safetensors: torchvision's VisionTransformer
// trained by tools/train_cls_demo.py and imported by tools/import_model.py) on the committed scenes
// tests/fixtures/cls_scenes/ (held out: drawn from another seed than its training and evaluation scenes):
// the class it predicts, and how much of the CLS token's last-layer attention lands on the shape.

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>

#include <xtensor/xview.hpp>

#include "support.hpp"
#include "vitscope/image/attention.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/image/load.hpp"
#include "vitscope/image/preprocess.hpp"

using namespace vitscope;
using namespace vitscope::image;

namespace {

const std::string kClsDemoModel = std::string(VITSCOPE_ASSETS_DIR) + "/models/cls_demo.safetensors";
const std::string kScenes = std::string(VITSCOPE_FIXTURES_DIR) + "/../cls_scenes";
// Measured: tools/train_cls_demo.py on 500 held-out scenes in PyTorch, accuracy 0.642 and CLS
// attention mass on the shape 0.539 against a share of 0.143; this test on the 12 committed
// scenes, 0.5 (6 of 12) and 0.564 against 0.158 (PyTorch the same). Floors below both: 5 of 12
// right fails (chance is 1 in 3), and attention spread evenly would give the share.
constexpr double kMinAccuracy = 0.45;
constexpr double kMinClsShapeMass = 0.45;
// Per scene, vitscope against the torchvision model (cls_scenes.json's "pytorch", written by
// tools/train_cls_demo.py --evaluate --scenes tests/fixtures/cls_scenes): the same class, the same mass.
constexpr double kMassTolerance = 1e-4;

}  // namespace

TEST_CASE("CLS demo model: the shape's class, and the CLS attention on the shape, on committed scenes",
          "[cls_demo_model]") {
  ImageModelFile file = load_image_model(kClsDemoModel);
  ImageModel& model = file.model;
  REQUIRE(model.options.class_names == std::vector<std::string>{"disc", "square", "triangle"});
  const nn::ModulePath last =
      nn::ModulePath::encoder_self_attn(model.transformer.encoder.layers.size() - 1);

  nlohmann::json truth;
  std::ifstream(kScenes + "/cls_scenes.json") >> truth;
  const auto& scenes = truth.at("scenes");
  REQUIRE(scenes.size() >= 8);
  std::vector<cv::Mat> images;
  for (const auto& scene : scenes) images.push_back(load_image(kScenes + "/" + scene.at("file").get<std::string>()));

  const ImageModelOutput out = model.forward(preprocess(images, model.preprocess_options()), "output", {last});
  REQUIRE(out.num_prefix_tokens == 1);
  REQUIRE(out.class_logits.shape(0) == images.size());

  std::size_t correct = 0;
  double mass_sum = 0, share_sum = 0, min_mass = 1, worst_mass_error = 0;
  for (std::size_t b = 0; b < images.size(); ++b) {
    const auto& scene = scenes[b];
    std::size_t best = 0;
    for (std::size_t k = 1; k < out.class_logits.shape(1); ++k) {
      if (out.class_logits(b, k) > out.class_logits(b, best)) best = k;
    }
    const std::string predicted = model.options.class_names[best];
    correct += predicted == scene.at("class").get<std::string>();

    // The CLS row of the last layer over the patches, heads averaged, renormalised over the patches.
    const ImageAttention attention = image_attention(out, b);
    const Tensor2 cls = cls_attention(attention.with_prefix.at(last), 1);  // (nh, S)
    const std::size_t S = cls.shape(1);
    REQUIRE(S == attention.grid[0] * attention.grid[1]);
    std::vector<double> mean(S, 0.0);
    double total = 0;
    for (std::size_t h = 0; h < cls.shape(0); ++h) {
      for (std::size_t t = 0; t < S; ++t) {
        mean[t] += cls(h, t) / cls.shape(0);
        total += cls(h, t) / cls.shape(0);
      }
    }
    const auto on = scene.at("shape_patches").get<std::vector<std::size_t>>();
    REQUIRE(!on.empty());
    double mass = 0;
    for (std::size_t t : on) {
      REQUIRE(t < S);
      mass += mean[t] / total;
    }
    const double share = static_cast<double>(on.size()) / S;
    std::cout << "  " << scene.at("file").get<std::string>() << ": " << scene.at("class").get<std::string>()
              << ", predicted " << predicted << "; CLS attention on the shape " << mass << " (share "
              << share << ")\n";
    mass_sum += mass;
    share_sum += share;
    min_mass = std::min(min_mass, mass);
    const auto& pytorch = scene.at("pytorch");
    CHECK(predicted == pytorch.at("predicted").get<std::string>());
    const double mass_error = std::abs(mass - pytorch.at("cls_attention_mass").get<double>());
    worst_mass_error = std::max(worst_mass_error, mass_error);
  }
  const double n = static_cast<double>(images.size());
  const double accuracy = correct / n, mass = mass_sum / n, share = share_sum / n;
  std::cout << "CLS demo model on " << images.size() << " committed scenes: accuracy " << accuracy
            << " (floor " << kMinAccuracy << "); last layer, heads averaged, the CLS token's attention "
            << "over the patches on the shape " << mass << " (floor " << kMinClsShapeMass
            << "; lowest scene " << min_mass << ") against the shape's share of the image " << share
            << "; worst difference from PyTorch's mass " << worst_mass_error << " (tolerance " << kMassTolerance
            << ")\n";
  CHECK(accuracy >= kMinAccuracy);
  CHECK(mass >= kMinClsShapeMass);
  CHECK(mass > 2 * share);
  CHECK(worst_mass_error <= kMassTolerance);
}
