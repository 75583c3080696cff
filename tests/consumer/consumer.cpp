// Uses the installed package as a user would: loads a model file (io), runs its forward (nn) on
// a feature map turned into a sequence (image); then runs an image model through the pipeline
// (image::analyse) as the README shows it and lists its outputs (gallery). Exit 0 only when the
// outputs are what they must be.
// Usage: consumer MODEL.safetensors IMAGE_MODEL.safetensors IMAGE
// (assets/models/tiny.safetensors: d_model 64; assets/models/demo.safetensors; an image)

#include <cmath>
#include <cstddef>
#include <iostream>

#include <xtensor/xtensor.hpp>

#include "vitscope/error.hpp"
#include "vitscope/gallery/outputs.hpp"
#include "vitscope/image/analysis.hpp"
#include "vitscope/image/load.hpp"
#include "vitscope/image/sequence.hpp"
#include "vitscope/io/model_file.hpp"

namespace {

// The README's pipeline example: one image, its features and the attention its views read.
bool run_pipeline(const char* model_path, const char* image_path) {
  namespace image = vitscope::image;
  const image::ImageModelFile file = image::load_image_model(model_path);
  image::AnalysisRequest request;
  request.views = {image::AttentionView::points, image::AttentionView::rollout};
  const image::AnalysisPlan plan = image::plan_analysis(file.model, request);
  const image::BatchAnalysis batch =
      image::analyse(file.model, {image::load_image(image_path)}, file.model.preprocess_options(), plan);
  const image::ImageAnalysis& a = batch.images.at(0);
  const std::size_t E = static_cast<std::size_t>(file.model.options.transformer.d_model);
  if (a.features.shape(0) != E || a.features.shape(1) != a.grid[0] || a.features.shape(2) != a.grid[1] ||
      a.attention.modules.size() != plan.capture.size() || a.rollout.patches.size() == 0) {
    std::cerr << "consumer: the pipeline's features or attention are not what the plan asked\n";
    return false;
  }
  const auto outputs = vitscope::gallery::image_outputs(file.model, plan, false);
  if (outputs.empty() || outputs.back().kind != "page") {
    std::cerr << "consumer: the outputs registry does not end with the page\n";
    return false;
  }
  std::cout << "consumer: analysed " << image_path << ": grid " << a.grid[0] << "x" << a.grid[1]
            << ", " << a.attention.modules.size() << " modules, " << outputs.size() << " outputs\n";
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: consumer MODEL.safetensors IMAGE_MODEL.safetensors IMAGE\n";
    return 2;
  }
  try {
    const vitscope::TransformerFile file = vitscope::load_transformer(argv[1]);
    const std::size_t E = static_cast<std::size_t>(file.model.options.d_model);
    const std::size_t h = 2, w = 3;

    // A (1,E,h,w) feature map of small distinct values, as a patch embedding would give.
    vitscope::Tensor4 features = vitscope::Tensor4::from_shape({1, E, h, w});
    for (std::size_t i = 0; i < features.size(); ++i) {
      features.data()[i] = std::sin(0.1f * static_cast<float>(i));
    }
    const vitscope::Tensor3 src = vitscope::image::to_sequence(features);  // (h*w,1,E)
    const vitscope::Tensor3 out = file.model.forward(src, src);

    if (out.shape(0) != h * w || out.shape(1) != 1 || out.shape(2) != E) {
      std::cerr << "consumer: output shape (" << out.shape(0) << ", " << out.shape(1) << ", "
                << out.shape(2) << "), expected (" << h * w << ", 1, " << E << ")\n";
      return 1;
    }
    for (float v : out) {
      if (!std::isfinite(v)) {
        std::cerr << "consumer: non-finite output value " << v << "\n";
        return 1;
      }
    }
    std::cout << "consumer: forward of " << argv[1] << " gave (" << h * w << ", 1, " << E
              << "), all finite\n";
    return run_pipeline(argv[2], argv[3]) ? 0 : 1;
  } catch (const vitscope::Error& e) {
    std::cerr << "consumer: " << e.what() << "\n";
    return 1;
  }
}
