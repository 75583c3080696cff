// The shipped detector on scenes vitscope draws itself (tests/support/scenes.hpp), never seen in
// training: its mAP@0.5, and how much of a detection's cross-attention falls inside its object's
// box, both as tools/train_detector.py measures them on its own held-out scenes.

#include <iostream>
#include <random>

#include "detection_metrics.hpp"
#include "scenes.hpp"
#include "support.hpp"
#include "vitscope/image/analysis.hpp"
#include "vitscope/image/attention.hpp"

using namespace vitscope;
using namespace vitscope::image;

namespace {

const std::string kDetector = std::string(VITSCOPE_ASSETS_DIR) + "/models/detector.safetensors";
constexpr int kScenes = 200;
constexpr std::size_t kBatch = 8;
constexpr std::uint32_t kSeed = 20261203;
constexpr std::size_t kClasses = 4;
constexpr double kScoreThreshold = 0.7;  // the detections whose attention is measured
// Measured on these scenes: mAP@0.5 0.855, cross-attention inside the box 0.683 against its share
// 0.152 (4.5x); tools/train_detector.py, 500 held-out scenes: 0.851 and 0.705 against 0.156. The
// floors: the goal the detector was trained to (0.8), and 3x an even spread.
constexpr double kMinMap = 0.80;
constexpr double kMinInsideRatio = 3.0;  // attention mass inside the box / the box's share of tokens

struct Inside {
  double mass = 0, share = 0;
  std::size_t detections = 0;
};

// The cross-attention mass of image's true-positive detections inside their objects' boxes.
void add_inside(const ImageAnalysis& a, const ScoredImage& image, const std::vector<int>& matched,
                const nn::ModulePath& cross, std::size_t stride, Inside& inside) {
  const Tensor2 fused = fuse_heads(a.attention.modules.at(cross), HeadFusion::mean);  // (Q,S_i)
  const auto [h, w] = a.grid;
  for (std::size_t p = 0; p < image.predictions.size(); ++p) {
    const Detection& d = image.predictions[p];
    if (d.score < kScoreThreshold || matched[p] < 0) continue;
    const cv::Rect2d& box = image.objects[static_cast<std::size_t>(matched[p])].box;
    double mass = 0;
    std::size_t tokens = 0;
    for (std::size_t i = 0; i < h; ++i) {
      for (std::size_t j = 0; j < w; ++j) {
        const cv::Point2d centre((double(j) + 0.5) * double(stride), (double(i) + 0.5) * double(stride));
        if (!box.contains(centre)) continue;
        mass += fused(d.query, i * w + j);
        ++tokens;
      }
    }
    inside.mass += mass;
    inside.share += double(tokens) / double(h * w);
    ++inside.detections;
  }
}

}  // namespace

TEST_CASE("the shipped detector finds the shapes of scenes it never saw", "[detector]") {
  const ImageModelFile file = load_image_model(kDetector);
  const ImageModel& model = file.model;
  REQUIRE(model.options.detector);
  AnalysisRequest request;
  request.views = {AttentionView::cross};
  request.kept_layers = std::vector<std::size_t>{};  // capture only what the cross view reads
  request.score_threshold = 0;                       // every query is a prediction, as for mAP
  const AnalysisPlan plan = plan_analysis(model, request);
  REQUIRE(plan.cross_module.has_value());

  std::mt19937 rng(kSeed);
  std::vector<ScoredImage> images;
  std::vector<ImageAnalysis> analyses;
  for (int done = 0; done < kScenes; done += static_cast<int>(kBatch)) {
    std::vector<cv::Mat> rgb;
    for (std::size_t b = 0; b < kBatch; ++b) {
      const Scene scene = make_scene(rng);
      rgb.push_back(scene.rgb);
      images.push_back({{}, scene_objects(scene)});
    }
    for (ImageAnalysis& a : analyse(model, rgb, model.preprocess_options(), plan).images) {
      images[analyses.size()].predictions = a.detections;
      analyses.push_back(std::move(a));
    }
  }

  const std::vector<double> ap = average_precision(images, kClasses);
  const double map = (ap[0] + ap[1] + ap[2] + ap[3]) / kClasses;
  const std::vector<std::vector<int>> matched = matched_objects(images, kClasses);
  Inside inside;
  std::size_t confident = 0, objects = 0;
  for (std::size_t i = 0; i < images.size(); ++i) {
    add_inside(analyses[i], images[i], matched[i], *plan.cross_module,
               static_cast<std::size_t>(model.options.patch_size), inside);
    for (const Detection& d : images[i].predictions) confident += d.score >= kScoreThreshold;
    objects += images[i].objects.size();
  }
  const double mass = inside.mass / double(inside.detections), share = inside.share / double(inside.detections);
  std::cout << "detector on " << images.size() << " scenes: mAP@0.5 " << map << " (disc " << ap[0]
            << ", square " << ap[1] << ", triangle " << ap[2] << ", ring " << ap[3] << "); "
            << confident << " detections at " << kScoreThreshold << " for " << objects << " objects; "
            << "cross-attention inside the box " << mass << " against its share " << share << " ("
            << mass / share << "x, " << inside.detections << " detections)\n";
  REQUIRE(inside.detections > 0);
  CHECK(map >= kMinMap);
  CHECK(mass / share >= kMinInsideRatio);
}
