// Image → features parity with tools/reference_model.py (PyTorch 1.13): every case under
// tests/fixtures/image, from the image files through loading, preprocessing and the model.

#include <filesystem>
#include <set>
#include <xtensor/xview.hpp>

#include "support.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/image/load.hpp"
#include "vitscope/image/sequence.hpp"
#include "vitscope/io/safetensors.hpp"

using namespace vitscope;
using namespace vitscope::image;

namespace {

std::string case_path(const std::string& name, const std::string& file) {
  return std::string(VITSCOPE_IMAGE_FIXTURES_DIR) + "/" + name + "/" + file;
}

nlohmann::json read_image_case(const std::string& name) {
  std::ifstream in(case_path(name, "case.json"));
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

struct CaseRun {
  ImageModelFile file;
  ImageModelOutput output;
};

CaseRun run_images(const std::string& name, const nlohmann::json& spec,
                   const std::vector<std::string>& images) {
  CaseRun run{load_image_model(case_path(name, spec.at("model"))), {}};
  PreprocessOptions options = run.file.model.preprocess_options();
  options.size = spec.at("size");
  std::vector<cv::Mat> loaded;
  for (const std::string& image : images) loaded.push_back(load_image(case_path(name, image)));
  run.output = run.file.model.forward(preprocess(loaded, options));
  return run;
}

// (B,Q,·) -> image b's (Q,·)
Tensor2 batch_entry(const Tensor3& x, std::size_t b) { return xt::view(x, b, xt::all(), xt::all()); }

void run_case(const std::string& name) {
  const nlohmann::json spec = read_image_case(name);
  const std::vector<std::string> images = spec.at("images");
  const double tolerance = spec.at("tolerance");
  const CaseRun run = run_images(name, spec, images);

  for (std::size_t b = 0; b < images.size(); ++b) {
    const std::string& image = images[b];
    const auto grid = spec.at("grid").at(image).get<std::array<std::size_t, 2>>();
    REQUIRE(run.output.grids[b] == grid);
    const nlohmann::json& expected = spec.at("expected").at(image);
    const auto check = [&](const char* kind, const auto& actual) {
      const io::NpyArray reference = io::read_npy(case_path(name, expected.at(kind)));
      REQUIRE(Shape(actual.shape().begin(), actual.shape().end()) == reference.shape);
      test::require_close(name + " " + image + " " + kind, actual, reference, tolerance);
    };
    check("features", crop_feature_map(run.output.features, b, grid[0], grid[1]));
    if (expected.contains("logits")) {
      check("logits", crop_feature_map(run.output.logits, b, grid[0], grid[1]));
    }
    if (expected.contains("queries")) {
      check("queries", batch_entry(run.output.query_outputs, b));
    }
    if (expected.contains("query_logits")) {
      check("query_logits", batch_entry(run.output.query_logits, b));
    }
  }
}

}  // namespace

#define FOR_EACH_IMAGE_FIXTURE(X)          \
  X("a_sine_input_tokens_postnorm")        \
  X("b_learned_attention_queries_prenorm") \
  X("c_none_encoder_only_shrink_gray")     \
  X("d_sine_attention_tokens_batch3")      \
  X("e_learned_input_tokens_enlarge")      \
  X("f_sine_input_queries")                \
  X("g_stem_attention_tokens_batch2")

#define IMAGE_PARITY_CASE(name) \
  TEST_CASE("image parity with the PyTorch reference: " name, "[image][parity]") { run_case(name); }
FOR_EACH_IMAGE_FIXTURE(IMAGE_PARITY_CASE)

TEST_CASE("every image fixture directory has a parity test", "[image][parity]") {
  std::set<std::string> on_disk;
  for (const auto& entry : std::filesystem::directory_iterator(VITSCOPE_IMAGE_FIXTURES_DIR)) {
    if (entry.is_directory()) on_disk.insert(entry.path().filename().string());
  }
#define IMAGE_FIXTURE_NAME(name) name,
  const std::set<std::string> listed = {FOR_EACH_IMAGE_FIXTURE(IMAGE_FIXTURE_NAME)};
  REQUIRE(on_disk == listed);
}

TEST_CASE("an image alone and inside a mixed batch gives the same features", "[image]") {
  for (const std::string name :
       {"d_sine_attention_tokens_batch3", "g_stem_attention_tokens_batch2"}) {
    INFO("case " << name);
    const nlohmann::json spec = read_image_case(name);
    const std::vector<std::string> images = spec.at("images");
    const CaseRun batch = run_images(name, spec, images);
    for (std::size_t b = 0; b < images.size(); ++b) {
      const CaseRun alone = run_images(name, spec, {images[b]});
      const auto [rows, cols] = alone.output.grids[0];
      REQUIRE(batch.output.grids[b] == alone.output.grids[0]);
      const Tensor3 in_batch = crop_feature_map(batch.output.features, b, rows, cols);
      const Tensor3 by_itself = crop_feature_map(alone.output.features, 0, rows, cols);
      const io::NpyArray as_reference{io::NpyDType::Float32,
                                      Shape(by_itself.shape().begin(), by_itself.shape().end()),
                                      std::vector<float>(by_itself.begin(), by_itself.end())};
      test::require_close(images[b] + " in a batch vs alone", in_batch, as_reference, 1e-5);
    }
  }
}

TEST_CASE("a patch_stem that cannot make the model's patches is rejected", "[image]") {
  const io::SafetensorsFile stem_model =
      io::read_safetensors(case_path("g_stem_attention_tokens_batch2", "model.safetensors"));
  REQUIRE(stem_model.metadata.at("patch_stem") == "6,8,12");
  const test::TempDir dir;
  const std::string path = dir.file("bad_stem.safetensors");
  // Each value with the code it must give: malformed or not making 8-pixel patches, or
  // well-formed channels that the file's tensors do not have.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "bad_metadata"},       {"6,8", "bad_metadata"},          {"6,8,12,16", "bad_metadata"},
      {"6,x,12", "bad_metadata"}, {"6,0,12", "bad_metadata"},       {"6,8,99999", "bad_metadata"},
      {"6,,12", "bad_metadata"},  {"6,8,13", "state_dict_mismatch"}};
  for (const auto& [value, code] : bad) {
    INFO("patch_stem = '" << value << "'");
    auto metadata = stem_model.metadata;
    metadata["patch_stem"] = value;
    io::write_safetensors(path, stem_model.tensors, metadata);
    REQUIRE(test::error_code([&] { load_image_model(path); }) == code);
  }
}
