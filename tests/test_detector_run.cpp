// A DETR through the library and `vitscope run`: the detections DETR's notebook keeps, the files a
// detector's folder gets (checked against PyTorch's outputs), and the metadata a detector file
// must have.

#include <filesystem>
#include <fstream>

#include "cli_support.hpp"
#include "vitscope/image/detections.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/image/load.hpp"
#include "vitscope/io/npy.hpp"
#include "vitscope/io/npy_tensors.hpp"
#include "vitscope/io/safetensors.hpp"

using namespace vitscope;
using namespace vitscope::image;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kCase = fs::path(VITSCOPE_DETR_FIXTURES_DIR) / "r50_slim_postnorm";

json read_json(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  return json::parse(in);
}

}  // namespace

TEST_CASE("detect: the best real class's softmax probability over all classes, no-object aside", "[detector]") {
  // Q=3 queries, K=2 classes and no-object.
  const Tensor2 logits = {{2.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 5.0f}, {0.0f, 1.0f, 0.0f}};
  const Tensor2 boxes = {{0.5f, 0.5f, 0.2f, 0.4f}, {0.1f, 0.1f, 0.1f, 0.1f}, {0.25f, 0.75f, 0.5f, 0.5f}};
  const std::vector<Detection> all = detect(logits, boxes, {"cat", "dog"}, cv::Size(200, 100), 0.0);
  REQUIRE(all.size() == 3);
  const double e = std::exp(1.0);
  CHECK(all[0].query == 0);
  CHECK(all[0].name == "cat");
  CHECK(all[0].score == Approx(std::exp(2.0) / (std::exp(2.0) + 2)));
  CHECK(all[0].box.x == Approx(80));  // (0.5 - 0.1) * 200
  CHECK(all[0].box.y == Approx(30));  // (0.5 - 0.2) * 100
  CHECK(all[0].box.width == Approx(40));
  CHECK(all[0].box.height == Approx(40));
  CHECK(all[1].query == 2);
  CHECK(all[1].label == 1);
  CHECK(all[1].score == Approx(e / (e + 2)));
  CHECK(all[2].query == 1);  // mostly no-object: its best real class scores low
  CHECK(all[2].label == 0);
  const std::vector<Detection> kept = detect(logits, boxes, {"cat", "dog"}, cv::Size(200, 100), 0.7);
  REQUIRE(kept.size() == 1);
  CHECK(kept[0].query == 0);
}

TEST_CASE("run: a DETR's folder holds its logits, boxes and detections, as PyTorch computes them", "[detector][run]") {
  test::TempDir dir;
  const std::string images = std::string(VITSCOPE_ASSETS_DIR) + "/images/";
  const std::string args = "run " + test::quote(images + "chelsea.jpg") + " " + test::quote(images + "coffee.jpg") +
                           " --batch 2 --model " + test::quote((kCase / "model.safetensors").string()) +
                           " --out " + test::quote(dir.file("out"));
  const test::Run run = test::run_cli(args + " --score-threshold 0");
  INFO(run.err);
  REQUIRE(run.exit_code == 0);

  const io::NpyArray logits = io::read_npy((kCase / "logits.npy").string());  // (B,Q,K+1)
  const io::NpyArray boxes = io::read_npy((kCase / "boxes.npy").string());    // (B,Q,4)
  const std::size_t Q = logits.shape[1], K1 = logits.shape[2];
  const json summary = read_json(dir.path() / "out" / "summary.json");
  CHECK(summary.at("settings").at("score_threshold") == 0.0);
  for (std::size_t b = 0; b < 2; ++b) {
    const std::string name = b == 0 ? "chelsea.jpg" : "coffee.jpg";
    const fs::path folder = dir.path() / "out" / name;
    const io::NpyArray image_logits = io::read_npy((folder / "logits.npy").string());
    const io::NpyArray image_boxes = io::read_npy((folder / "boxes.npy").string());
    REQUIRE(image_logits.shape == Shape{Q, K1});
    REQUIRE(image_boxes.shape == Shape{Q, 4});
    const auto worst = [](const io::NpyArray& got, const io::NpyArray& all, std::size_t offset) {
      double w = 0;
      for (std::size_t i = 0; i < got.data.size(); ++i) w = std::max(w, double(std::abs(got.data[i] - all.data[offset + i])));
      return w;
    };
    const double logits_error = worst(image_logits, logits, b * Q * K1);
    const double boxes_error = worst(image_boxes, boxes, b * Q * 4);
    std::cout << name << ": logits.npy worst abs error " << logits_error << ", boxes.npy " << boxes_error
              << " (tolerance 1e-4)\n";
    CHECK(logits_error <= 1e-4);
    CHECK(boxes_error <= 1e-4);

    // Threshold 0: every query is a detection, best first, boxes in the image's pixels.
    const json detections = read_json(folder / "detections.json").at("detections");
    REQUIRE(detections.size() == Q);
    for (std::size_t i = 1; i < Q; ++i) CHECK(detections[i - 1].at("score") >= detections[i].at("score"));
    const json first = detections[0];
    const std::size_t q = first.at("query");
    const json size = summary.at("images")[b].at("size");
    const double cx = image_boxes.data[q * 4], w = image_boxes.data[q * 4 + 2];
    CHECK(first.at("box")[0].get<double>() == Approx((cx - w / 2) * size[0].get<double>()).margin(1e-3));
    CHECK(summary.at("images")[b].at("detection_count") == Q);
    for (const char* file : {"detections.png", "attention_cross.png"}) CHECK(fs::exists(folder / file));
  }

  // Threshold 1: nothing is kept, and the cross view falls back to the best queries.
  const test::Run strict = test::run_cli(args + "-strict --score-threshold 1");
  REQUIRE(strict.exit_code == 0);
  const json none = read_json(dir.path() / "out-strict" / "chelsea.jpg" / "detections.json");
  CHECK(none.at("detections").empty());
  CHECK(read_json(dir.path() / "out-strict" / "summary.json").at("images")[0].at("detection_count") == 0);
  CHECK(fs::exists(dir.path() / "out-strict" / "chelsea.jpg" / "attention_cross.png"));
}

TEST_CASE("forward --logits --boxes: a DETR on preprocessed pixels gives PyTorch's outputs", "[detector][cli]") {
  const std::string model = (kCase / "model.safetensors").string();
  const ImageModelFile file = load_image_model(model);
  const std::string images = std::string(VITSCOPE_ASSETS_DIR) + "/images/";
  const ImageBatch batch =
      preprocess({load_image(images + "chelsea.jpg"), load_image(images + "coffee.jpg")}, file.model.preprocess_options());
  test::TempDir dir;
  io::write_npy(dir.file("pixels.npy"), batch.pixels);
  const std::vector<float> mask(batch.pixel_mask.begin(), batch.pixel_mask.end());
  const auto& m = batch.pixel_mask.shape();
  io::write_npy(dir.file("mask.npy"), mask.data(), {m[0], m[1], m[2]});
  const std::string forward = "forward --model " + test::quote(model) + " --pixels " + test::quote(dir.file("pixels.npy")) +
                              " --pixel-mask " + test::quote(dir.file("mask.npy")) + " --out " +
                              test::quote(dir.file("memory.npy"));
  const test::Run run = test::run_cli(forward + " --logits " + test::quote(dir.file("logits.npy")) + " --boxes " +
                                      test::quote(dir.file("boxes.npy")));
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  for (const char* name : {"logits.npy", "boxes.npy", "memory.npy"}) {
    const io::NpyArray got = io::read_npy(dir.file(name));
    const io::NpyArray want = io::read_npy((kCase / name).string());
    REQUIRE(got.shape == want.shape);
    double worst = 0;
    for (std::size_t i = 0; i < got.data.size(); ++i) worst = std::max(worst, double(std::abs(got.data[i] - want.data[i])));
    std::cout << "forward " << name << ": worst abs error " << worst << " (tolerance 1e-4)\n";
    CHECK(worst <= 1e-4);
  }
  const test::Run no_boxes = test::run_cli("forward --model " +
                                           test::quote(std::string(VITSCOPE_ASSETS_DIR) + "/models/demo.safetensors") +
                                           " --pixels " + test::quote(dir.file("pixels.npy")) + " --out " +
                                           test::quote(dir.file("o.npy")) + " --boxes " + test::quote(dir.file("b.npy")));
  CHECK(no_boxes.exit_code == 2);
  CHECK(no_boxes.err.find("--boxes applies to detectors") != std::string::npos);
}

TEST_CASE("a detector file with backbone or detector keys that do not fit is rejected", "[detector]") {
  const io::SafetensorsFile detr = io::read_safetensors((kCase / "model.safetensors").string());
  const test::TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  const std::vector<std::tuple<std::string, std::string, std::string>> bad = {
      {"backbone", "vgg", "bad_metadata"},
      {"backbone_block", "Basic", "bad_metadata"},
      {"backbone_layers", "3,4,6", "bad_metadata"},
      {"backbone_layers", "3,4,x,3", "bad_metadata"},
      {"backbone_dilation", "true", "bad_metadata"},  // patch_size 32 is not the stride 16
      {"patch_size", "16", "bad_metadata"},
      {"target", "tokens", "bad_metadata"},
      {"detector", "yolo", "bad_metadata"},
      {"backbone_planes", "8,16,32,32", "state_dict_mismatch"},
      {"num_classes", "4", "bad_metadata"},  // 4 class names are needed, the file has 5
  };
  for (const auto& [key, value, code] : bad) {
    INFO(key << " = '" << value << "'");
    auto metadata = detr.metadata;
    metadata[key] = value;
    io::write_safetensors(path, detr.tensors, metadata);
    REQUIRE(test::error_code([&] { load_image_model(path); }) == code);
  }
}
