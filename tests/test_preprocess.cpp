#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "cli_support.hpp"
#include "vitscope/image/load.hpp"
#include "vitscope/image/preprocess.hpp"
#include "vitscope/io/npy.hpp"
#include "vitscope/io/safetensors.hpp"

using vitscope::image::ImageBatch;
using vitscope::image::preprocess;
using vitscope::image::PreprocessOptions;
using vitscope::image::resize_to_size;
using vitscope::image::Interpolation;
using vitscope::image::ResizeMode;
using vitscope::image::ResizeOptions;
using vitscope::test::error_code;

namespace {

// Distinct values in [0, 255] that make any misplaced or mis-scaled pixel show.
cv::Mat test_image(int width, int height) {
  cv::Mat image(height, width, CV_32FC3);
  cv::RNG rng(width * 1000 + height);
  rng.fill(image, cv::RNG::UNIFORM, 0.0f, 255.0f);
  return image;
}

PreprocessOptions options(int size, int patch_size) {
  PreprocessOptions o;
  o.size = size;
  o.patch_size = patch_size;
  return o;
}

float normalised(float value, const PreprocessOptions& o, int c) {
  return (value / 255 - o.mean[c]) / o.std[c];
}

// Image b of the batch is exactly the normalised image in its top-left corner, zero and masked
// everywhere else.
void check_placed(const ImageBatch& batch, std::size_t b, const cv::Mat& image,
                  const PreprocessOptions& o) {
  const std::size_t height = batch.pixels.shape(2), width = batch.pixels.shape(3);
  int wrong = 0;
  for (std::size_t y = 0; y < height; ++y) {
    for (std::size_t x = 0; x < width; ++x) {
      const bool inside = y < std::size_t(image.rows) && x < std::size_t(image.cols);
      if (batch.pixel_mask(b, y, x) == inside) ++wrong;
      for (int c = 0; c < 3; ++c) {
        const float expected = inside ? normalised(image.at<cv::Vec3f>(y, x)[c], o, c) : 0.0f;
        if (batch.pixels(b, c, y, x) != expected) ++wrong;
      }
    }
  }
  CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("preprocess: the longer side becomes size, rounded", "[image][preprocess]") {
  struct Case {
    int width, height, size, new_width, new_height;
  };
  for (const Case& t : std::vector<Case>{{640, 480, 224, 224, 168},
                                         {480, 640, 224, 168, 224},
                                         {333, 500, 224, 149, 224},
                                         {100, 50, 224, 224, 112},
                                         {50, 100, 224, 112, 224},
                                         {1000, 3, 224, 224, 1},
                                         {2, 1000, 224, 1, 224},
                                         {10, 5, 5, 5, 3},  // 2.5 rounds half away from zero
                                         {3, 2, 7, 7, 5}}) {
    INFO(t.width << "x" << t.height << " to " << t.size);
    const cv::Mat image = test_image(t.width, t.height);
    const cv::Mat resized = resize_to_size(image, t.size);
    REQUIRE(resized.size() == cv::Size(t.new_width, t.new_height));
    const bool shrinking = std::max(t.width, t.height) > t.size;
    const int interpolation = shrinking ? cv::INTER_AREA : cv::INTER_LINEAR;
    const int other_interpolation = shrinking ? cv::INTER_LINEAR : cv::INTER_AREA;
    cv::Mat expected, other;
    cv::resize(image, expected, resized.size(), 0, 0, interpolation);
    cv::resize(image, other, resized.size(), 0, 0, other_interpolation);
    CHECK(cv::norm(resized, expected, cv::NORM_INF) == 0);
    CHECK(cv::norm(resized, other, cv::NORM_INF) > 0);
  }
}

TEST_CASE("preprocess: an image already at size is not resized or copied", "[image][preprocess]") {
  const cv::Mat image = test_image(224, 100);
  CHECK(resize_to_size(image, 224).data == image.data);
  const cv::Mat tall = test_image(7, 224);
  CHECK(resize_to_size(tall, 224).data == tall.data);
}

TEST_CASE("preprocess: normalisation is exact", "[image][preprocess]") {
  cv::Mat image(1, 2, CV_32FC3);
  image.at<cv::Vec3f>(0, 0) = cv::Vec3f(0, 127.5f, 255);
  image.at<cv::Vec3f>(0, 1) = cv::Vec3f(1, 2, 3);
  PreprocessOptions o = options(2, 1);
  o.mean = {0.5f, 0.25f, 0.125f};
  o.std = {0.5f, 2.0f, 0.3f};
  const ImageBatch batch = preprocess({image}, o);
  REQUIRE(batch.pixels.shape() == std::array<std::size_t, 4>{1, 3, 1, 2});
  CHECK(batch.pixels(0, 0, 0, 0) == -1.0f);
  CHECK(batch.pixels(0, 1, 0, 0) == 0.125f);
  CHECK(batch.pixels(0, 2, 0, 0) == (1.0f - 0.125f) / 0.3f);
  CHECK(batch.pixels(0, 0, 0, 1) == (1 / 255.0f - 0.5f) / 0.5f);
  CHECK(batch.pixels(0, 1, 0, 1) == (2 / 255.0f - 0.25f) / 2.0f);
  CHECK(batch.pixels(0, 2, 0, 1) == (3 / 255.0f - 0.125f) / 0.3f);
  CHECK_FALSE(batch.pixel_mask(0, 0, 0));
  CHECK_FALSE(batch.pixel_mask(0, 0, 1));
}

TEST_CASE("preprocess: padding to a multiple of the patch size", "[image][preprocess]") {
  const PreprocessOptions o = options(5, 4);
  const cv::Mat image = test_image(5, 3);
  const ImageBatch batch = preprocess({image}, o);
  REQUIRE(batch.pixels.shape() == std::array<std::size_t, 4>{1, 3, 4, 8});
  REQUIRE(batch.pixel_mask.shape() == std::array<std::size_t, 3>{1, 4, 8});
  REQUIRE(batch.resized == std::vector<cv::Size>{cv::Size(5, 3)});
  check_placed(batch, 0, image, o);

  const cv::Mat exact = test_image(8, 4);
  const ImageBatch unpadded = preprocess({exact}, options(8, 4));
  REQUIRE(unpadded.pixels.shape() == std::array<std::size_t, 4>{1, 3, 4, 8});
  check_placed(unpadded, 0, exact, options(8, 4));
}

TEST_CASE("preprocess: a mixed batch is padded to the largest", "[image][preprocess]") {
  const PreprocessOptions o = options(12, 8);
  const cv::Mat wide = test_image(12, 3);     // 16 x 8 after padding
  const cv::Mat tall = test_image(5, 12);     // 8 x 16
  const cv::Mat large = test_image(40, 30);   // resized to 12 x 9, padded to 16 x 16
  const cv::Mat small = test_image(2, 1);     // enlarged to 12 x 6
  const ImageBatch batch = preprocess({wide, tall, large, small}, o);
  REQUIRE(batch.pixels.shape() == std::array<std::size_t, 4>{4, 3, 16, 16});
  const std::vector<cv::Size> resized = {{12, 3}, {5, 12}, {12, 9}, {12, 6}};
  REQUIRE(batch.resized == resized);
  check_placed(batch, 0, wide, o);
  check_placed(batch, 1, tall, o);
  check_placed(batch, 2, resize_to_size(large, 12), o);
  check_placed(batch, 3, resize_to_size(small, 12), o);
}

TEST_CASE("preprocess: bad input", "[image][preprocess]") {
  const cv::Mat image = test_image(4, 4);
  CHECK(error_code([&] { preprocess({}, {}); }) == "bad_input");
  CHECK(error_code([&] { preprocess({image, cv::Mat(4, 4, CV_8UC3)}, {}); }) == "bad_input");
  CHECK(error_code([&] { preprocess({cv::Mat(4, 4, CV_32FC1)}, {}); }) == "bad_input");
  CHECK(error_code([&] { preprocess({cv::Mat()}, {}); }) == "bad_input");
  CHECK(error_code([&] { preprocess({image}, options(0, 16)); }) == "bad_input");
  CHECK(error_code([&] { preprocess({image}, options(4, 0)); }) == "bad_input");
  CHECK(error_code([&] { resize_to_size(image, -1); }) == "bad_input");
  CHECK(error_code([&] { resize_to_size(cv::Mat(2, 2, CV_32FC4), 4); }) == "bad_input");
  // shorter-crop would make a 2x300 image 256x38400: refused, not allocated.
  PreprocessOptions crop = options(224, 16);
  crop.resize.resize_mode = ResizeMode::shorter_crop;
  CHECK(error_code([&] { preprocess({test_image(2, 300)}, crop); }) == "bad_input");
  CHECK(error_code([&] { preprocess({test_image(2, 100)}, crop); }) == "no error");  // 12800 long
}

// ---------------------------------------------------------------------------------------------
// resize_mode and interpolation, against tools/make_preprocess_fixtures.py (reference_model.py's
// cv2 preprocessing, its shorter-crop checked there against torchvision 0.14).

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kRoot = fs::path(VITSCOPE_ASSETS_DIR).parent_path();
const fs::path kFixtures = kRoot / "tests" / "fixtures" / "preprocess";

json read_json(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  return json::parse(in);
}

PreprocessOptions case_options(const json& c) {
  PreprocessOptions o = options(c.at("size"), c.at("patch_size"));
  o.resize.resize_mode = vitscope::image::parse_resize_mode(c.at("resize_mode"));
  o.resize.resize_size = c.at("resize_size").is_null() ? 0 : c.at("resize_size").get<int>();
  o.resize.max_size = c.at("max_size").is_null() ? 0 : c.at("max_size").get<int>();
  o.resize.interpolation = vitscope::image::parse_interpolation(c.at("interpolation"));
  return o;
}

json sizes(const std::vector<cv::Size>& s) {
  json out = json::array();
  for (const cv::Size& v : s) out.push_back({v.width, v.height});
  return out;
}

json rects(const std::vector<cv::Rect>& r) {
  json out = json::array();
  for (const cv::Rect& v : r) out.push_back({v.x, v.y, v.width, v.height});
  return out;
}

std::map<std::string, std::string> metadata_with(const std::string& key, const std::string& value) {
  return {{key, value}};
}

}  // namespace

TEST_CASE("preprocess: every resize mode and interpolation matches the Python reference",
          "[preprocess]") {
  const json cases = read_json(kFixtures / "cases.json");
  const double tolerance = cases.at("tolerance");
  REQUIRE(cases.at("cases").size() >= 15);
  double worst = 0;
  for (const json& c : cases.at("cases")) {
    const std::string name = c.at("name");
    INFO(name);
    std::vector<cv::Mat> images;
    for (const std::string path : c.at("images")) {
      images.push_back(vitscope::image::load_image((kRoot / path).string()));
    }
    const ImageBatch batch = preprocess(images, case_options(c));
    const vitscope::io::NpyArray pixels = vitscope::io::read_npy((kFixtures / c.at("pixels").get<std::string>()).string());
    const vitscope::io::NpyArray mask = vitscope::io::read_npy((kFixtures / c.at("pixel_mask").get<std::string>()).string());
    REQUIRE(std::vector<std::size_t>(batch.pixels.shape().begin(), batch.pixels.shape().end()) == pixels.shape);
    vitscope::test::require_close(name + " pixels", batch.pixels, pixels, tolerance);
    worst = std::max(worst, vitscope::test::worst_error(batch.pixels.data(), batch.pixels.size(), pixels.data));
    REQUIRE(batch.pixel_mask.size() == mask.data.size());
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < mask.data.size(); ++i) wrong += batch.pixel_mask.data()[i] != (mask.data[i] != 0);
    CHECK(wrong == 0);
    CHECK(sizes(batch.resized) == c.at("resized"));
    CHECK(sizes(batch.before_crop) == c.at("before_crop"));
    CHECK(rects(batch.crops) == c.at("crop"));
  }
  std::cout << "preprocess fixtures: worst abs error over all cases " << worst << " (tolerance "
            << tolerance << ")\n";
}

TEST_CASE("preprocess: shorter-crop resizes to floor(size / 0.875) unless resize_size says",
          "[preprocess]") {
  PreprocessOptions o;
  CHECK(vitscope::image::effective_resize_size(o) == 256);  // 224, torchvision's Resize(256)
  o.size = 384;
  CHECK(vitscope::image::effective_resize_size(o) == 438);  // 438.86, timm floors
  o.size = 64;
  CHECK(vitscope::image::effective_resize_size(o) == 73);
  o.resize.resize_size = 300;
  CHECK(vitscope::image::effective_resize_size(o) == 300);

  // A 451x300 photo at 224: 384x256 (int(256 * 451 / 300) = int(384.85)), centre 224x224
  // at left round(80.5) = 80 (half to even), top 16.
  o = options(224, 16);
  o.resize.resize_mode = ResizeMode::shorter_crop;
  const ImageBatch batch = preprocess({test_image(451, 300)}, o);
  REQUIRE(batch.pixels.shape() == std::array<std::size_t, 4>{1, 3, 224, 224});
  CHECK(batch.before_crop[0] == cv::Size(384, 256));
  CHECK(batch.crops[0] == cv::Rect(80, 16, 224, 224));
}

TEST_CASE("preprocess: shorter-crop pads a small image with black, as torchvision, unmasked",
          "[preprocess]") {
  PreprocessOptions o = options(8, 4);
  o.resize.resize_mode = ResizeMode::shorter_crop;
  o.resize.resize_size = 5;  // a 5x5 image is not resized; the crop is larger: pad 1 before, 2 after
  const cv::Mat image = test_image(5, 5);
  const ImageBatch batch = preprocess({image}, o);
  REQUIRE(batch.pixels.shape() == std::array<std::size_t, 4>{1, 3, 8, 8});
  CHECK(batch.crops[0] == cv::Rect(-1, -1, 8, 8));
  int wrong = 0;
  for (int y = 0; y < 8; ++y) {
    for (int x = 0; x < 8; ++x) {
      if (batch.pixel_mask(0, y, x)) ++wrong;  // torchvision's border is image, not padding
      const bool inside = y >= 1 && y <= 5 && x >= 1 && x <= 5;
      for (int c = 0; c < 3; ++c) {
        const float value = inside ? image.at<cv::Vec3f>(y - 1, x - 1)[c] : 0.0f;
        if (batch.pixels(0, c, y, x) != normalised(value, o, c)) ++wrong;
      }
    }
  }
  CHECK(wrong == 0);
}

TEST_CASE("preprocess: stretch, patch-crop and the interpolation flags", "[preprocess]") {
  const cv::Mat image = test_image(90, 30);
  PreprocessOptions o = options(40, 16);
  o.resize.resize_mode = ResizeMode::stretch;
  ImageBatch batch = preprocess({image}, o);
  CHECK(batch.resized[0] == cv::Size(40, 40));
  cv::Mat expected;
  cv::resize(image, expected, {40, 40}, 0, 0, cv::INTER_LINEAR);  // the height grows: linear
  check_placed(batch, 0, expected, o);

  o.resize.resize_mode = ResizeMode::patch_crop;  // 40x13 -> 32x13: the short side is kept whole
  batch = preprocess({image}, o);
  CHECK(batch.resized[0] == cv::Size(32, 13));
  CHECK(batch.before_crop[0] == cv::Size(40, 13));
  check_placed(batch, 0, resize_to_size(image, 40)(cv::Rect(0, 0, 32, 13)), o);

  o.resize.resize_mode = ResizeMode::longer;
  o.resize.interpolation = Interpolation::linear;
  cv::resize(image, expected, {40, 13}, 0, 0, cv::INTER_LINEAR);
  check_placed(preprocess({image}, o), 0, expected, o);
  o.resize.interpolation = Interpolation::cubic;
  cv::resize(image, expected, {40, 13}, 0, 0, cv::INTER_CUBIC);
  cv::Mat samples = expected.reshape(1);
  cv::min(samples, 255.0, samples);
  cv::max(samples, 0.0, samples);
  check_placed(preprocess({image}, o), 0, expected, o);
  cv::Mat unclamped;
  cv::resize(image, unclamped, {40, 13}, 0, 0, cv::INTER_CUBIC);
  double lo = 0, hi = 0;
  cv::minMaxLoc(unclamped.reshape(1), &lo, &hi);
  CHECK((lo < 0 || hi > 255));  // random pixels make cubic overshoot: the clamp is exercised
}

TEST_CASE("preprocess: names and model-file metadata", "[preprocess]") {
  for (const std::string& name : vitscope::image::resize_mode_names()) {
    CHECK(vitscope::image::resize_mode_name(vitscope::image::parse_resize_mode(name)) == name);
  }
  for (const std::string& name : vitscope::image::interpolation_names()) {
    CHECK(vitscope::image::interpolation_name(vitscope::image::parse_interpolation(name)) == name);
  }
  CHECK(error_code([] { vitscope::image::parse_resize_mode("shorter"); }) == "bad_input");
  CHECK(error_code([] { vitscope::image::parse_interpolation("nearest"); }) == "bad_input");

  using vitscope::image::resize_options_from_metadata;
  const ResizeOptions defaults = resize_options_from_metadata({}, "m.safetensors");
  CHECK(defaults.resize_mode == ResizeMode::longer);
  CHECK(defaults.resize_size == 0);
  CHECK(defaults.interpolation == Interpolation::area_linear);
  const ResizeOptions set = resize_options_from_metadata(
      {{"resize_mode", "shorter-crop"}, {"resize_size", "248"}, {"interpolation", "cubic"}}, "m");
  CHECK(set.resize_mode == ResizeMode::shorter_crop);
  CHECK(set.resize_size == 248);
  CHECK(set.interpolation == Interpolation::cubic);

  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"resize_mode", "crop"}, {"resize_mode", ""}, {"resize_size", "0"},
           {"resize_size", "256px"}, {"resize_size", "99999"}, {"interpolation", "bilinear"}}) {
    INFO(key << " = '" << value << "'");
    try {
      resize_options_from_metadata(metadata_with(key, value), "m.safetensors");
      FAIL("no error");
    } catch (const vitscope::Error& e) {
      CHECK(e.code() == "bad_metadata");
      const std::string message = e.what();
      CHECK(message.find("m.safetensors: metadata " + key) == 0);
      CHECK(message.find('\n') == std::string::npos);
    }
  }
}

// `vitscope run` with a model file naming shorter-crop, and the flags that override it.
namespace {

const std::string kRandomModel = std::string(VITSCOPE_ASSETS_DIR) + "/models/random.safetensors";

// random.safetensors (image_size 224, p 16) with extra metadata.
std::string model_with(const vitscope::test::TempDir& dir,
                       const std::map<std::string, std::string>& extra) {
  vitscope::io::SafetensorsFile file = vitscope::io::read_safetensors(kRandomModel);
  for (const auto& [key, value] : extra) file.metadata[key] = value;
  const std::string path = dir.file("model.safetensors");
  vitscope::io::write_safetensors(path, file.tensors, file.metadata);
  return path;
}

std::string one_line(const std::string& err) { return err.substr(0, err.find('\n')); }

}  // namespace

TEST_CASE("preprocess: vitscope run preprocesses as the model file's resize_mode says",
          "[preprocess][run]") {
  using vitscope::test::quote;
  using vitscope::test::run_cli;
  vitscope::test::TempDir dir;
  const std::string model = model_with(dir, {{"resize_mode", "shorter-crop"}});
  const std::string photo = std::string(VITSCOPE_ASSETS_DIR) + "/images/chelsea.jpg";  // 451x300
  const std::string out = dir.file("out");
  const std::string args = "run " + quote(photo) + " --out " + quote(out) + " --model " + quote(model);

  const auto check = [&](const std::string& mode, int resize_size, std::size_t h, std::size_t w) {
    const json summary = read_json(fs::path(out) / "summary.json");
    const json& settings = summary.at("settings");
    CHECK(settings.at("resize_mode") == mode);
    CHECK(settings.at("resize_size") == (resize_size ? json(resize_size) : json(nullptr)));
    CHECK(settings.at("interpolation") == "area-linear");
    const json& image = summary.at("images").at(0);
    REQUIRE(image.at("status") == "ok");
    CHECK(image.at("grid") == json::array({h, w}));
    const vitscope::io::NpyArray features = vitscope::io::read_npy(
        (fs::path(out) / image.at("outputs").at("features").get<std::string>()).string());
    CHECK(features.shape == vitscope::Shape{64, h, w});
  };

  const vitscope::test::Run crop = run_cli(args);
  INFO(crop.err);
  REQUIRE(crop.exit_code == 0);
  check("shorter-crop", 256, 14, 14);  // 224x224 from the 384x256 resize: 14x14 tokens

  // Another mode is another result: the rerun recomputes instead of reusing the crop's.
  const vitscope::test::Run longer = run_cli(args + " --resize-mode longer");
  REQUIRE(longer.exit_code == 0);
  check("longer", 0, 10, 14);  // 224x149, padded to 224x160
  const vitscope::test::Run bigger = run_cli(args + " --resize-size 320");
  REQUIRE(bigger.exit_code == 0);
  check("shorter-crop", 320, 14, 14);
}

TEST_CASE("preprocess: shorter-max sizes as DETR's evaluation, from metadata or flags",
          "[preprocess][run]") {
  using vitscope::test::quote;
  using vitscope::test::run_cli;
  vitscope::test::TempDir dir;
  const std::string model = model_with(dir, {{"resize_mode", "shorter-max"}, {"max_size", "400"}});
  const std::string photo = std::string(VITSCOPE_ASSETS_DIR) + "/images/chelsea.jpg";  // 451x300
  const std::string out = dir.file("out");
  const std::string args = "run " + quote(photo) + " --out " + quote(out) + " --model " + quote(model);
  const auto settings_and_grid = [&] {
    const json summary = read_json(fs::path(out) / "summary.json");
    REQUIRE(summary.at("images").at(0).at("status") == "ok");
    return std::pair{summary.at("settings"), summary.at("images").at(0).at("grid")};
  };
  // --size 240: 240x360 fits under 400 (p = 16: 15x23 tokens, the last column partial).
  REQUIRE(run_cli(args + " --size 240").exit_code == 0);
  auto [settings, grid] = settings_and_grid();
  CHECK(settings.at("resize_mode") == "shorter-max");
  CHECK(settings.at("max_size") == 400);
  CHECK(grid == json::array({15, 23}));
  // --max-size 300 caps the longer side: round(300 * 300 / 451) = 200 short, int(200 * 1.503) = 300.
  REQUIRE(run_cli(args + " --size 240 --max-size 300").exit_code == 0);
  std::tie(settings, grid) = settings_and_grid();
  CHECK(settings.at("max_size") == 300);
  CHECK(grid == json::array({13, 19}));
}

TEST_CASE("preprocess: vitscope run on a shorter-crop cubic model file matches PyTorch",
          "[preprocess][run]") {
  using vitscope::test::quote;
  const json model = read_json(kFixtures / "cases.json").at("model");
  vitscope::test::TempDir dir;
  const std::string image = model.at("image");
  const vitscope::test::Run r = vitscope::test::run_cli(
      "run " + quote((kRoot / image).string()) + " --out " + quote(dir.file("out")) +
      " --model " + quote((kFixtures / model.at("file").get<std::string>()).string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const json summary = read_json(dir.path() / "out" / "summary.json");
  CHECK(summary.at("settings").at("resize_mode") == "shorter-crop");
  CHECK(summary.at("settings").at("resize_size") == 248);
  CHECK(summary.at("settings").at("interpolation") == "cubic");
  const json& entry = summary.at("images").at(0);
  const vitscope::io::NpyArray features = vitscope::io::read_npy(
      (dir.path() / "out" / entry.at("outputs").at("features").get<std::string>()).string());
  const vitscope::io::NpyArray expected =
      vitscope::io::read_npy((kFixtures / model.at("features").get<std::string>()).string());
  REQUIRE(features.shape == expected.shape);
  vitscope::test::require_close("run " + image + " features", features.data, expected,
                                model.at("tolerance").get<double>());
}

TEST_CASE("preprocess: bad resize metadata and flags are one-line errors", "[preprocess][run]") {
  using vitscope::test::quote;
  using vitscope::test::run_cli;
  vitscope::test::TempDir dir;
  const std::string photo = std::string(VITSCOPE_ASSETS_DIR) + "/images/chelsea.jpg";
  const std::string run = "run " + quote(photo) + " --out " + quote(dir.file("out"));

  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"resize_mode", "center-crop"}, {"resize_size", "-3"}, {"interpolation", "lanczos"},
           {"max_size", "0"}}) {
    INFO(key << " = " << value);
    const std::string model = model_with(dir, {{key, value}});
    const vitscope::test::Run r = run_cli(run + " --model " + quote(model));
    CHECK(r.exit_code == 1);
    CHECK(one_line(r.err).find("metadata " + key) != std::string::npos);
    CHECK(r.err.find('\n') == r.err.size() - 1);  // exactly one line
  }
  for (const std::string flags : {" --resize-mode center-crop", " --interpolation lanczos",
                                  " --resize-size 0", " --resize-size 256",  // longer: unused
                                  " --max-size 800"}) {
    INFO(flags);
    const vitscope::test::Run r = run_cli(run + " --model " + quote(kRandomModel) + flags);
    CHECK(r.exit_code == 2);
    CHECK(one_line(r.err).find(flags.substr(1, flags.find(' ', 1) - 1)) != std::string::npos);
    // One line, plus CLI11's "Run with --help" hint as for every usage error.
    const std::string rest = r.err.substr(r.err.find('\n') + 1);
    CHECK((rest.empty() || rest == "Run with --help for more information.\n"));
  }
  CHECK_FALSE(fs::exists(dir.path() / "out" / "summary.json"));
}
