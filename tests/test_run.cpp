// `vitscope run` through the real executable: a folder of good, odd and broken images in, the
// per-image folders, summary.json and exit codes out.

#include <sys/wait.h>
#include <zlib.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "support.hpp"
#include "vitscope/io/npy.hpp"
#include "vitscope/io/safetensors.hpp"

namespace fs = std::filesystem;

namespace {

using nlohmann::json;
using vitscope::io::read_npy;
using vitscope::test::read_bytes;
using vitscope::test::TempDir;
using vitscope::test::quote;
using vitscope::test::Run;
using vitscope::test::run_cli;

const std::string kDefaultModel = std::string(VITSCOPE_ASSETS_DIR) + "/models/default.safetensors";
constexpr int kSize = 64;  // --size: small images keep the runs fast

json read_json(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  return json::parse(in);
}

std::string big_endian(std::uint32_t v) {
  return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

std::uint32_t png_crc(const std::string& bytes) {
  return static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
}

std::string png_chunk(const std::string& type, const std::string& data) {
  return big_endian(static_cast<std::uint32_t>(data.size())) + type + data +
         big_endian(png_crc(type + data));
}

// A well-formed PNG header for an 8-bit RGB image of width × height, with no pixel data.
std::string png_header(std::uint32_t width, std::uint32_t height) {
  const std::string ihdr =
      big_endian(width) + big_endian(height) + std::string("\x08\x02\x00\x00\x00", 5);
  return std::string("\x89PNG\r\n\x1a\n", 8) + png_chunk("IHDR", ihdr) + png_chunk("IEND", "");
}

cv::Mat pattern(int width, int height, int type, std::uint64_t seed) {
  cv::Mat m(height, width, type);
  cv::RNG(seed).fill(m, cv::RNG::UNIFORM, 0, CV_MAT_DEPTH(type) == CV_16U ? 65535 : 255);
  return m;
}

void write_image(const fs::path& path, const cv::Mat& m) {
  fs::create_directories(path.parent_path());
  REQUIRE(cv::imwrite(path.string(), m));
}

// The token grid docs/image_model.md gives for a w0 × h0 image at --size, patch p.
std::array<std::size_t, 2> expected_grid(int w0, int h0, int size, int p) {
  const double scale = double(size) / std::max(w0, h0);
  const auto side = [&](int n) { return std::max(1L, std::lround(n * scale)); };
  return {std::size_t((side(h0) + p - 1) / p), std::size_t((side(w0) + p - 1) / p)};
}

struct Expected {
  std::string status;
  int width = 0, height = 0;  // of the original image, for "ok"
};

// photos/: six readable images (sizes, gray, RGBA, 16-bit, a nested folder), four broken ones and
// a text file. Keyed by the name summary.json gives them.
std::map<std::string, Expected> make_photos(const fs::path& photos) {
  write_image(photos / "a.png", pattern(40, 30, CV_8UC3, 1));
  write_image(photos / "tall.jpg", pattern(30, 70, CV_8UC3, 2));
  write_image(photos / "gray.png", pattern(33, 21, CV_8UC1, 3));
  write_image(photos / "rgba.png", pattern(25, 25, CV_8UC4, 4));
  write_image(photos / "deep.png", pattern(50, 20, CV_16UC3, 5));
  write_image(photos / "sub" / "nested.bmp", pattern(16, 16, CV_8UC3, 6));

  const TempDir scratch;
  write_image(scratch.file("whole.png"), pattern(40, 40, CV_8UC3, 7));
  const std::string whole = read_bytes(scratch.file("whole.png"));
  fs::create_directories(photos / "broken");
  const auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(photos / name, std::ios::binary) << bytes;
  };
  write("broken/truncated.png", whole.substr(0, whole.size() / 2));
  write("broken/text.png", "this is not a picture\n");
  write("broken/empty.jpg", "");
  write("broken/huge.png", png_header(100000, 100000));
  write("notes.txt", "not an image\n");

  return {{"photos/a.png", {"ok", 40, 30}},           {"photos/tall.jpg", {"ok", 30, 70}},
          {"photos/gray.png", {"ok", 33, 21}},        {"photos/rgba.png", {"ok", 25, 25}},
          {"photos/deep.png", {"ok", 50, 20}},        {"photos/sub/nested.bmp", {"ok", 16, 16}},
          {"photos/broken/truncated.png", {"error"}}, {"photos/broken/text.png", {"error"}},
          {"photos/broken/empty.jpg", {"error"}},     {"photos/broken/huge.png", {"error"}},
          {"photos/notes.txt", {"skipped"}}};
}

std::size_t default_model_width() {
  const auto metadata = vitscope::io::read_safetensors(kDefaultModel).metadata;
  return std::stoul(metadata.at("d_model"));
}

int default_model_patch() {
  return std::stoi(vitscope::io::read_safetensors(kDefaultModel).metadata.at("patch_size"));
}

void check_png(const fs::path& path, cv::Size size) {
  INFO(path);
  const cv::Mat view = cv::imread(path.string(), cv::IMREAD_UNCHANGED);
  REQUIRE_FALSE(view.empty());
  CHECK(view.type() == CV_8UC3);
  CHECK(view.size() == size);
}

// Every entry of the summary against what was made, and every "ok" image's files.
void check_summary(const fs::path& out, const std::map<std::string, Expected>& expected) {
  const json summary = read_json(out / "summary.json");
  CHECK(summary.at("model") == kDefaultModel);
  CHECK(summary.at("settings").at("size") == kSize);
  for (const char* timing : {"total_s", "images_per_s", "load_s", "forward_s"}) {
    CHECK(summary.at("timings").at(timing).is_number());
  }
  const json& images = summary.at("images");
  REQUIRE(images.size() == expected.size());
  std::vector<std::string> order;
  for (const json& entry : images) order.push_back(entry.at("input"));
  CHECK(std::is_sorted(order.begin(), order.end()));

  for (const json& entry : images) {
    const std::string input = entry.at("input");
    INFO(input << ": " << entry.dump());
    REQUIRE(expected.count(input) == 1);
    const Expected& e = expected.at(input);
    REQUIRE(entry.at("status") == e.status);
    if (e.status != "ok") {
      CHECK(entry.at("error").is_string());
      CHECK(entry.at("outputs").empty());
      continue;
    }
    CHECK(entry.at("error").is_null());
    CHECK(entry.at("size") == json::array({e.width, e.height}));
    const auto grid = expected_grid(e.width, e.height, kSize, default_model_patch());
    CHECK(entry.at("grid") == json::array({grid[0], grid[1]}));

    const json& outputs = entry.at("outputs");
    CHECK(outputs == json{{"features", input + "/features.npy"},
                          {"pca", input + "/pca.png"},
                          {"channels", input + "/channels.png"},
                          {"token_norm", input + "/token_norm.png"},
                          {"classes", input + "/classes.png"}});
    const vitscope::io::NpyArray features =
        read_npy((out / outputs.at("features").get<std::string>()).string());
    CHECK(features.shape == vitscope::Shape{default_model_width(), grid[0], grid[1]});
    const cv::Size size(e.width, e.height);
    check_png(out / outputs.at("pca").get<std::string>(), {2 * e.width, e.height});
    check_png(out / outputs.at("token_norm").get<std::string>(), size);
    check_png(out / outputs.at("classes").get<std::string>(), size);
    const cv::Mat channels = cv::imread((out / outputs.at("channels").get<std::string>()).string());
    CHECK_FALSE(channels.empty());
  }
}

std::string run_args(const TempDir& dir, const std::string& extra = "") {
  return "run " + quote(dir.file("photos")) + " --out " + quote(dir.file("out")) + " --size " +
         std::to_string(kSize) + " --threads 1" + extra;
}

}  // namespace

TEST_CASE("run: a folder of good and broken images", "[run]") {
  TempDir dir;
  const std::map<std::string, Expected> expected = make_photos(dir.path() / "photos");
  const fs::path out = dir.path() / "out";
  const std::string batch = GENERATE(as<std::string>{}, " --batch 1", " --batch 4");

  const Run first = run_cli(run_args(dir, batch));
  INFO("stderr: " << first.err);
  CHECK(first.exit_code == 1);  // some images failed
  CHECK(first.err.find("11 images: 6 ok, 4 error, 1 skipped") != std::string::npos);
  CHECK(first.err.find("[11/11]") != std::string::npos);  // not a terminal: one line per image
  check_summary(out, expected);

  SECTION("a rerun keeps complete outputs and redoes incomplete ones") {
    const fs::path features = out / "photos/a.png/features.npy";
    const fs::path pca = out / "photos/tall.jpg/pca.png";
    // A rewrite would make the file new again.
    const fs::file_time_type long_ago = fs::last_write_time(features) - std::chrono::hours(1);
    fs::last_write_time(features, long_ago);
    fs::remove(pca);

    CHECK(run_cli(run_args(dir, batch)).exit_code == 1);
    CHECK(fs::last_write_time(features) == long_ago);
    CHECK(fs::exists(pca));
    check_summary(out, expected);

    CHECK(run_cli(run_args(dir, batch + " --overwrite")).exit_code == 1);
    CHECK(fs::last_write_time(features) != long_ago);
    check_summary(out, expected);
  }
  SECTION("outputs made with another layer are not reused") {
    const fs::path features = out / "photos/a.png/features.npy";
    std::ofstream(features, std::ios::binary) << "stale";
    CHECK(run_cli(run_args(dir, batch + " --layer encoder")).exit_code == 1);
    CHECK(read_npy(features.string()).shape.size() == 3);
  }
}

TEST_CASE("run: exit 0 when every image succeeds, non-images aside", "[run]") {
  TempDir dir;
  write_image(dir.path() / "photos" / "one.png", pattern(20, 10, CV_8UC3, 8));
  std::ofstream(dir.path() / "photos" / "readme.md") << "# photos\n";
  const Run run = run_cli(run_args(dir, " --layer encoder.layers.0"));
  INFO("stderr: " << run.err);
  CHECK(run.exit_code == 0);
  const json summary = read_json(dir.path() / "out" / "summary.json");
  CHECK(summary.at("settings").at("layer") == "encoder.layers.0");
  CHECK(summary.at("images").size() == 2);
}

TEST_CASE("run: files given directly, and the output folder inside an input folder", "[run]") {
  TempDir dir;
  write_image(dir.path() / "photos" / "one.png", pattern(20, 10, CV_8UC3, 9));
  write_image(dir.path() / "photos" / "two.png", pattern(10, 20, CV_8UC3, 10));
  const std::string inside = dir.file("photos/out");
  for (int pass = 0; pass < 2; ++pass) {  // the second must not read the first one's views
    const Run run = run_cli("run " + quote(dir.file("photos")) + " --out " + quote(inside) +
                            " --size 32 --threads 1");
    INFO("stderr: " << run.err);
    REQUIRE(run.exit_code == 0);
    CHECK(read_json(fs::path(inside) / "summary.json").at("images").size() == 2);
  }

  const Run direct =
      run_cli("run " + quote(dir.file("photos/two.png")) + " " + quote(dir.file("photos/one.png")) +
              " --out " + quote(dir.file("direct")) + " --size 32 --threads 1");
  REQUIRE(direct.exit_code == 0);
  const json images = read_json(dir.path() / "direct" / "summary.json").at("images");
  REQUIRE(images.size() == 2);
  CHECK(images[0].at("input") == "one.png");
  CHECK(images[1].at("input") == "two.png");
  CHECK(fs::exists(dir.path() / "direct" / "one.png" / "features.npy"));
}

TEST_CASE("run: usage errors exit 2", "[run]") {
  TempDir dir;
  write_image(dir.path() / "photos" / "one.png", pattern(20, 10, CV_8UC3, 11));
  write_image(dir.path() / "other" / "one.png", pattern(10, 10, CV_8UC3, 12));
  const std::string out = " --out " + quote(dir.file("out"));
  const std::string photos = quote(dir.file("photos"));

  CHECK(run_cli("run --help").exit_code == 0);
  CHECK(run_cli("run" + out).exit_code == 2);                                    // no inputs
  CHECK(run_cli("run " + photos).exit_code == 2);                                // no --out
  CHECK(run_cli("run " + quote(dir.file("missing.png")) + out).exit_code == 2);  // no such input
  CHECK(run_cli("run " + photos + out + " --batch 0").exit_code == 2);
  CHECK(run_cli("run " + photos + out + " --size x").exit_code == 2);
  CHECK(run_cli("run " + photos + out + " --max-pixels -1").exit_code == 2);
  const Run layer = run_cli("run " + photos + out + " --layer decoder.layers.99");
  CHECK(layer.exit_code == 2);
  CHECK(layer.err.find("encoder.layers.0") != std::string::npos);  // names the layers there are
  // Two different files that would share one output folder.
  CHECK(run_cli("run " + quote(dir.file("photos/one.png")) + " " +
                quote(dir.file("other/one.png")) + out)
            .exit_code == 2);
  CHECK_FALSE(fs::exists(dir.path() / "out" / "summary.json"));
}

TEST_CASE("run: features and queries match PyTorch on every image fixture", "[run]") {
  for (const fs::directory_entry& entry : fs::directory_iterator(VITSCOPE_IMAGE_FIXTURES_DIR)) {
    const fs::path case_dir = entry.path();
    const json spec = read_json(case_dir / "case.json");
    INFO("case " << case_dir.filename());
    TempDir dir;
    std::string inputs;
    for (const json& image : spec.at("images"))
      inputs += " " + quote((case_dir / image.get<std::string>()).string());
    // All of a case's images in one batch, as the fixture made them.
    const Run run =
        run_cli("run" + inputs + " --out " + quote(dir.file("out")) + " --model " +
                quote((case_dir / spec.at("model").get<std::string>()).string()) + " --size " +
                std::to_string(spec.at("size").get<int>()) + " --batch 8 --threads 1");
    INFO("stderr: " << run.err);
    REQUIRE(run.exit_code == 0);
    const double tolerance = spec.at("tolerance");
    for (const auto& [image, files] : spec.at("expected").items()) {
      for (const char* kind : {"features", "queries"}) {
        if (!files.contains(kind)) continue;
        const auto actual = read_npy(dir.file("out/" + image + "/" + kind + ".npy"));
        const auto reference = read_npy((case_dir / files.at(kind).get<std::string>()).string());
        INFO(image << " " << kind);
        REQUIRE(actual.shape == reference.shape);
        vitscope::test::require_close(image + " " + kind, actual.data, reference, tolerance);
      }
    }
  }
}
