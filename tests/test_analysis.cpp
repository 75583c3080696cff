// The shared image pipeline and the outputs registry: plans checked against the model, analyse()
// giving exactly what the model's forward gives, and one registry entry per file a run writes.

#include <set>

#include <opencv2/imgcodecs.hpp>
#include <xtensor/xview.hpp>

#include "support.hpp"
#include "vitscope/gallery/outputs.hpp"
#include "vitscope/image/analysis.hpp"
#include "vitscope/image/attention_views.hpp"
#include "vitscope/image/image_model.hpp"

using namespace vitscope;
using namespace vitscope::image;

namespace {

ImageModelFile demo_model() {
  return load_image_model(std::string(VITSCOPE_ASSETS_DIR) + "/models/demo.safetensors");
}

AnalysisRequest every_view() {
  AnalysisRequest request;
  request.views = all_attention_views();
  return request;
}

}  // namespace

TEST_CASE("a plan captures what its views read and what is kept, in model order", "[analysis]") {
  const ImageModelFile file = demo_model();
  const ImageModel& model = file.model;
  const std::size_t encoder_layers = model.transformer.encoder.layers.size();

  AnalysisRequest request = every_view();
  request.kept_layers = std::vector<std::size_t>{};  // keep none: capture only what views draw
  const AnalysisPlan plan = plan_analysis(model, request);
  REQUIRE(plan.view_module == nn::ModulePath::encoder_self_attn(encoder_layers - 1));
  REQUIRE(plan.cross_module == nn::ModulePath::decoder_multihead_attn(0));
  CHECK_FALSE(plan.cls_module);  // the demo model has no CLS token
  CHECK(plan.draws(AttentionView::rollout));
  CHECK_FALSE(plan.draws(AttentionView::cls));
  CHECK(plan.kept.empty());
  std::vector<nn::ModulePath> expected;
  for (std::size_t i = 0; i < encoder_layers; ++i) expected.push_back(nn::ModulePath::encoder_self_attn(i));
  expected.push_back(nn::ModulePath::decoder_multihead_attn(0));
  CHECK(plan.capture == expected);

  const AnalysisPlan all = plan_analysis(model, {});
  CHECK(all.kept == model.attention_modules());
  CHECK(all.capture == model.attention_modules());
}

TEST_CASE("a plan that does not fit the model names what does not fit", "[analysis]") {
  const ImageModelFile file = demo_model();
  AnalysisRequest request = every_view();
  request.layer = "encoder.layers.99";
  CHECK(test::error_code([&] { plan_analysis(file.model, request); }) == "bad_layer");
  request = every_view();
  request.attention_layer = 99;
  CHECK(test::error_code([&] { plan_analysis(file.model, request); }) == "bad_attention_layer");
  request = every_view();
  request.kept_layers = std::vector<std::size_t>{99};
  CHECK(test::error_code([&] { plan_analysis(file.model, request); }) == "bad_kept_layers");
  request = every_view();
  request.view_stack = nn::Stack::decoder;  // the demo model's decoder reads its tokens: fine
  CHECK_NOTHROW(plan_analysis(file.model, request));
}

TEST_CASE("analyse gives each image the model's own outputs, cropped to its tokens", "[analysis]") {
  const ImageModelFile file = demo_model();
  const ImageModel& model = file.model;
  const std::vector<cv::Mat> images = {cv::Mat(64, 96, CV_32FC3, cv::Scalar(10, 200, 90)),
                                       cv::Mat(100, 40, CV_32FC3, cv::Scalar(250, 30, 60))};
  PreprocessOptions preprocess = model.preprocess_options();
  preprocess.size = 96;
  const AnalysisPlan plan = plan_analysis(model, every_view());
  const BatchAnalysis analysed = analyse(model, images, preprocess, plan);
  const ImageModelOutput out = model.forward(image::preprocess(images, preprocess), "output", plan.capture);
  REQUIRE(analysed.images.size() == 2);
  for (std::size_t b = 0; b < images.size(); ++b) {
    const ImageAnalysis& a = analysed.images[b];
    const auto [h, w] = out.grids[b];
    REQUIRE(a.grid == out.grids[b]);
    const Tensor3 features = xt::view(out.features, b, xt::all(), xt::range(0u, h), xt::range(0u, w));
    CHECK(a.features == features);
    CHECK(a.original == images[b].size());
    const ImageAttention attention = image_attention(out, b);
    REQUIRE(a.attention.modules.size() == plan.capture.size());
    for (const auto& [path, weights] : attention.modules) {
      INFO(path);
      CHECK(a.attention.modules.at(path) == weights);
    }
    CHECK(a.points.size() == 4);  // the default points
    CHECK(a.rollout.patches.shape(0) == h * w);
  }
}

TEST_CASE("the montages are drawn on tiles of at most kMontageTile pixels, the other views on 320",
          "[analysis]") {
  const ImageModelFile file = demo_model();
  const std::vector<cv::Mat> images = {cv::Mat(360, 480, CV_32FC3, cv::Scalar(10, 200, 90))};
  PreprocessOptions preprocess = file.model.preprocess_options();
  preprocess.size = 96;
  const AnalysisPlan plan = plan_analysis(file.model, every_view());
  const BatchAnalysis analysed = analyse(file.model, images, preprocess, plan);
  const ImageAnalysis& a = analysed.images.at(0);
  CHECK(a.canvas.tile_background.size() == cv::Size(320, 240));
  CHECK(a.montage_canvas.tile_background.size() == cv::Size(kMontageTile, 168));

  // The registry's heads picture is the montage drawn on the montage canvas, its points picture
  // the points view on the full canvas.
  test::TempDir dir;
  const auto picture = [&](const std::string& kind) {
    for (const gallery::ImageOutput& o : gallery::image_outputs(file.model, plan, false, PictureFormat::png)) {
      if (o.kind != kind) continue;
      o.prepare({a, "x.png", "model"})(dir.file(o.file));
      return cv::imread(dir.file(o.file));
    }
    FAIL("no " << kind);
    return cv::Mat();
  };
  const cv::Mat heads = heads_view(a.view_rows, a.points, plan.request.fusion, a.montage_canvas);
  const cv::Mat drawn_heads = picture("attention_heads");
  REQUIRE(drawn_heads.size() == heads.size());
  CHECK(cv::norm(drawn_heads, heads, cv::NORM_INF) == 0);
  const cv::Mat points = points_view(a.view_rows, a.points, plan.request.fusion, a.canvas);
  CHECK(picture("attention_points").size() == points.size());
}

TEST_CASE("the registry lists each file once, the page last, and every drawn view", "[analysis]") {
  const ImageModelFile file = demo_model();
  const AnalysisPlan plan = plan_analysis(file.model, every_view());
  const std::vector<gallery::ImageOutput> outputs = gallery::image_outputs(file.model, plan, true);
  std::set<std::string> kinds, files;
  for (const gallery::ImageOutput& o : outputs) {
    INFO(o.kind);
    CHECK(kinds.insert(o.kind).second);
    CHECK(files.insert(o.file).second);
    CHECK(static_cast<bool>(o.prepare));
    CHECK((o.picture >= 0) == !o.title.empty());
  }
  CHECK(outputs.back().kind == "page");
  for (const AttentionView view : all_attention_views()) {
    INFO(to_string(view));
    CHECK(kinds.count("attention_" + to_string(view)) == (plan.draws(view) ? 1u : 0u));
  }
  for (const nn::ModulePath& path : plan.kept) CHECK(kinds.count("attention:" + path.str()) == 1);
  CHECK(gallery::image_outputs(file.model, plan, false).size() == outputs.size() - plan.kept.size());
}
