// DETR parity with PyTorch: every case under tests/fixtures/detr (tools/make_detr_fixtures.py), a
// DETR built from its published structure, imported by tools/import_model.py --family detr, run on
// two photos of different sizes in one batch: logits, boxes, memory and every decoder layer's
// cross-attention per head. VITSCOPE_DETR_FIXTURES names another folder of cases (the full-width
// DETR-R50 that make_detr_fixtures.py --full-resnet50 writes) to run instead.

#include <cstdlib>
#include <filesystem>
#include <set>

#include "support.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/image/load.hpp"

using namespace vitscope;
using namespace vitscope::image;

namespace {

namespace fs = std::filesystem;

fs::path fixtures_dir() {
  const char* other = std::getenv("VITSCOPE_DETR_FIXTURES");
  return other && *other ? fs::path(other) : fs::path(VITSCOPE_DETR_FIXTURES_DIR);
}

template <class Tensor>
void check(const std::string& what, const fs::path& file, const Tensor& actual, double tolerance) {
  const io::NpyArray reference = io::read_npy(file.string());
  REQUIRE(Shape(actual.shape().begin(), actual.shape().end()) == reference.shape);
  test::require_close(what, actual, reference, tolerance);
}

void run_case(const fs::path& folder) {
  std::ifstream in(folder / "case.json");
  REQUIRE(in.good());
  const nlohmann::json spec = nlohmann::json::parse(in);
  const double tolerance = spec.at("tolerance");
  const std::string name = folder.filename().string();

  const ImageModelFile file = load_image_model((folder / "model.safetensors").string());
  REQUIRE(file.model.options.detector);
  std::vector<cv::Mat> images;
  for (const std::string image : spec.at("images")) {
    images.push_back(load_image(std::string(VITSCOPE_ASSETS_DIR) + "/images/" + image));
  }
  const ImageBatch batch = preprocess(images, file.model.preprocess_options());
  REQUIRE(Shape(batch.pixels.shape().begin(), batch.pixels.shape().end()) ==
          spec.at("pixels").get<Shape>());
  REQUIRE(batch.resized[0] != batch.resized[1]);  // two sizes: the smaller one is padded

  std::vector<nn::ModulePath> cross;
  for (std::size_t n = 0; n < spec.at("decoder_layers").get<std::size_t>(); ++n) {
    cross.push_back(nn::ModulePath::decoder_multihead_attn(n));
  }
  const ImageModelOutput out = file.model.forward(batch, "output", cross);
  check(name + " logits", folder / "logits.npy", out.query_logits, tolerance);
  check(name + " boxes", folder / "boxes.npy", out.query_boxes, tolerance);
  check(name + " memory", folder / "memory.npy", out.features, tolerance);
  for (std::size_t n = 0; n < cross.size(); ++n) {
    check(name + " " + cross[n].str(), folder / ("cross." + std::to_string(n) + ".npy"),
          out.attention.at(cross[n]), tolerance);
  }
}

}  // namespace

TEST_CASE("DETR parity with PyTorch: logits, boxes and cross-attention on two photos", "[detr][parity]") {
  std::set<fs::path> cases;
  for (const auto& entry : fs::directory_iterator(fixtures_dir())) {
    if (entry.is_directory()) cases.insert(entry.path());
  }
  REQUIRE(!cases.empty());
  for (const fs::path& folder : cases) {
    SECTION(folder.filename().string()) { run_case(folder); }
  }
}
