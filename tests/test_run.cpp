// `vitscope run` through the real executable: a folder of good, odd and broken images in, the
// per-image folders, summary.json and exit codes out.

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cli_support.hpp"
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

const std::string kDefaultModel = std::string(VITSCOPE_ASSETS_DIR) + "/models/demo.safetensors";
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
  for (const char* timing : {"total_s", "images_per_s", "load_s", "forward_s", "draw_s", "encode_s"}) {
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
    json expected_outputs = {{"features", input + "/features.npy"},
                             {"pca", input + "/pca.png"},
                             {"channels", input + "/channels.png"},
                             {"token_norm", input + "/token_norm.png"},
                             {"classes", input + "/classes.png"},
                             {"thumbnail", input + "/thumb.jpg"},
                             {"page", input + "/index.html"}};
    for (const std::string view : {"points", "heads", "masks", "rollout", "cross"}) {
      expected_outputs["attention_" + view] = input + "/attention_" + view + ".png";
    }
    CHECK(outputs == expected_outputs);
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

// threads > 1 decodes on a thread of its own, ahead of the model.
std::string run_args(const TempDir& dir, const std::string& extra = "", int threads = 1) {
  return "run " + quote(dir.file("photos")) + " --out " + quote(dir.file("out")) + " --size " +
         std::to_string(kSize) + " --threads " + std::to_string(threads) + extra;
}

}  // namespace

TEST_CASE("run: a folder of good and broken images", "[run]") {
  TempDir dir;
  const std::map<std::string, Expected> expected = make_photos(dir.path() / "photos");
  const fs::path out = dir.path() / "out";
  const std::string batch = GENERATE(as<std::string>{}, " --batch 1", " --batch 4");
  const int threads = GENERATE(1, 2);
  INFO("threads " << threads);

  const Run first = run_cli(run_args(dir, batch, threads));
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

TEST_CASE("run: --view-format writes every picture in that format, the same pictures as PNG", "[run]") {
  TempDir dir;
  fs::create_directories(dir.path() / "photos");
  // A photograph: JPEG's noise on it is what a user sees (on random pixels it is far larger).
  fs::copy_file(std::string(VITSCOPE_ASSETS_DIR) + "/images/chelsea.jpg", dir.path() / "photos" / "cat.jpg");
  const auto run_in = [&](const std::string& out, const std::string& format) {
    const Run run = run_cli("run " + quote(dir.file("photos")) + " --out " + quote(dir.file(out)) +
                            " --size " + std::to_string(kSize) + " --threads 2 --view-format " + format);
    INFO("stderr: " << run.err);
    REQUIRE(run.exit_code == 0);
    return read_json(dir.path() / out / "summary.json");
  };
  const json png = run_in("png", "png");
  const std::string format = GENERATE("jpg", "webp");
  INFO("--view-format " << format);
  const json other = run_in(format, format);
  CHECK(other.at("settings").at("view_format") == format);

  const json& png_outputs = png.at("images").at(0).at("outputs");
  const json& outputs = other.at("images").at(0).at("outputs");
  REQUIRE(outputs.size() == png_outputs.size());
  std::size_t pictures = 0;
  for (const auto& [kind, path] : png_outputs.items()) {
    INFO(kind);
    const std::string png_path = path.get<std::string>();
    const std::string other_path = outputs.at(kind).get<std::string>();
    if (fs::path(png_path).extension() != ".png") {
      CHECK(other_path == png_path);  // arrays, pages and the JPEG thumbnail keep their names
      continue;
    }
    ++pictures;
    CHECK(fs::path(other_path).replace_extension(".png").string() == png_path);
    CHECK(fs::path(other_path).extension() == "." + format);
    const cv::Mat lossless = cv::imread((dir.path() / "png" / png_path).string());
    const cv::Mat lossy = cv::imread((dir.path() / format / other_path).string());
    REQUIRE_FALSE(lossy.empty());
    REQUIRE(lossy.size() == lossless.size());
    // Quality 90: the same picture up to compression noise (measured 0.4 to 7 levels of 255 on
    // the shipped images; the small, sharp-edged tiles of the channels view are the worst).
    const double mean_error = cv::norm(lossy, lossless, cv::NORM_L1) / static_cast<double>(lossless.total() * 3);
    CHECK(mean_error < 10.0);
  }
  CHECK(pictures >= 8);  // four feature views and the attention views

  // The image's page shows the files of its own run.
  const std::string page = read_bytes(dir.path() / format / outputs.at("page").get<std::string>());
  CHECK(page.find("attention_heads." + format) != std::string::npos);
  CHECK(page.find("attention_heads.png") == std::string::npos);

  // Another format is another result: a rerun in png recomputes, and then matches the first.
  CHECK(run_in(format, "png").at("images").at(0).at("outputs") == png_outputs);
}

TEST_CASE("run: usage errors exit 2", "[run]") {
  TempDir dir;
  write_image(dir.path() / "photos" / "one.png", pattern(20, 10, CV_8UC3, 11));
  const std::string out = " --out " + quote(dir.file("out"));
  const std::string photos = quote(dir.file("photos"));

  CHECK(run_cli("run --help").exit_code == 0);
  CHECK(run_cli("run" + out).exit_code == 2);                                    // no inputs
  CHECK(run_cli("run " + photos).exit_code == 2);                                // no --out
  CHECK(run_cli("run " + quote(dir.file("missing.png")) + out).exit_code == 2);  // no such input
  CHECK(run_cli("run " + photos + out + " --batch 0").exit_code == 2);
  CHECK(run_cli("run " + photos + out + " --size x").exit_code == 2);
  CHECK(run_cli("run " + photos + out + " --max-pixels -1").exit_code == 2);
  CHECK(run_cli("run " + photos + out + " --view-format gif").exit_code == 2);
  const Run layer = run_cli("run " + photos + out + " --layer decoder.layers.99");
  CHECK(layer.exit_code == 2);
  CHECK(layer.err.find("encoder.layers.0") != std::string::npos);  // names the layers there are
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

namespace {

using Clock = std::chrono::steady_clock;
// Far longer than any of these runs takes, even on a loaded machine: only a hung run reaches it.
constexpr auto kDeadline = std::chrono::seconds(120);

// Every entry under root, links not followed, relative and '/'-separated; regular files only when
// files_only.
std::set<std::string> tree(const fs::path& root, bool files_only = false) {
  std::set<std::string> names;
  for (const fs::directory_entry& entry : fs::recursive_directory_iterator(root)) {
    if (files_only && !entry.is_regular_file()) continue;
    names.insert(entry.path().lexically_relative(root).generic_string());
  }
  return names;
}

// `vitscope <args>` in the background, its stderr a pipe that the test fills before the start:
// the run blocks on its first progress line, right after its first image's outputs are written,
// until finish() reads. So a signal reaches it mid-folder however loaded the machine is.
class HeldRun {
 public:
  explicit HeldRun(const std::vector<std::string>& args) {
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    read_end_ = fds[0];
    filler_ = fill(fds[1]);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    // The run starts with the default actions and nothing blocked, whatever the test runner has.
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t signals;
    sigemptyset(&signals);
    posix_spawnattr_setsigmask(&attributes, &signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    posix_spawnattr_setsigdefault(&attributes, &signals);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<std::string> words = {VITSCOPE_CLI};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    const int error = posix_spawn(&pid_, VITSCOPE_CLI, &actions, &attributes, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    close(fds[1]);
    if (error != 0) pid_ = -1;
    REQUIRE(error == 0);
  }
  ~HeldRun() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(read_end_);
  }
  HeldRun(const HeldRun&) = delete;
  HeldRun& operator=(const HeldRun&) = delete;

  // Polls until path exists; fails when the run ends first or hangs.
  void wait_for(const fs::path& path) {
    const Clock::time_point deadline = Clock::now() + kDeadline;
    while (!fs::exists(path)) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("the run ended (status " << status << ") before " << path << " appeared");
      }
      REQUIRE(Clock::now() < deadline);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  void signal(int signal) { REQUIRE(kill(pid_, signal) == 0); }

  struct Result {
    int status;       // as waitpid gives it
    std::string err;  // the run's stderr
  };

  // Reads the run's stderr to its end, then reaps it.
  Result finish() {
    const Clock::time_point deadline = Clock::now() + kDeadline;
    std::string err;
    char buffer[4096];
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      REQUIRE(left.count() > 0);
      pollfd readable{read_end_, POLLIN, 0};
      if (poll(&readable, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t n = read(read_end_, buffer, sizeof buffer);
      if (n == 0) break;
      if (n > 0) err.append(buffer, static_cast<std::size_t>(n));
    }
    int status = 0;
    REQUIRE(waitpid(pid_, &status, 0) == pid_);
    pid_ = -1;
    return {status, err.substr(std::min(filler_, err.size()))};
  }

 private:
  // Fills the pipe until a write of one byte would block; returns the bytes that took.
  static std::size_t fill(int fd) {
    fcntl(fd, F_SETPIPE_SZ, 4096);  // less to fill; the default size works as well
    const int flags = fcntl(fd, F_GETFL);
    REQUIRE(fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0);
    const std::string chunk(4096, '.');
    std::size_t filled = 0;
    for (const std::size_t size : {chunk.size(), std::size_t{1}}) {
      ssize_t n;
      while ((n = write(fd, chunk.data(), size)) > 0) filled += static_cast<std::size_t>(n);
      REQUIRE(errno == EAGAIN);
    }
    REQUIRE(fcntl(fd, F_SETFL, flags) == 0);  // the run's writes must block, not fail
    return filled;
  }

  int read_end_ = -1;
  pid_t pid_ = -1;
  std::size_t filler_ = 0;
};

std::string quoted(const std::vector<std::string>& args) {
  std::string line;
  for (const std::string& arg : args) line += (line.empty() ? "" : " ") + quote(arg);
  return line;
}

}  // namespace

TEST_CASE("run: a signal mid-folder stops cleanly and the same command resumes", "[run]") {
  const int signal = GENERATE(SIGTERM, SIGINT);
  const int batch = GENERATE(1, 2);
  INFO("signal " << signal << ", --batch " << batch);
  TempDir dir;
  const fs::path photos = dir.path() / "photos";
  for (int i = 0; i < 5; ++i) {
    write_image(photos / (std::string(1, char('a' + i)) + ".png"), pattern(40, 30, CV_8UC3, 20 + i));
  }
  std::ofstream(photos / "notes.txt") << "not an image\n";
  const auto args = [&](const std::string& out) {
    return std::vector<std::string>{"run", photos.string(), "--out", dir.file(out),
                                    "--size", "64", "--threads", "1",
                                    "--batch", std::to_string(batch)};
  };
  const fs::path out = dir.path() / "out";

  // Held at a.png's progress line: a.png's batch is complete (a batch's files are written
  // together), the next batch not started.
  const std::set<std::string> done =
      batch == 1 ? std::set<std::string>{"photos/a.png"} : std::set<std::string>{"photos/a.png", "photos/b.png"};
  HeldRun held(args("out"));
  held.wait_for(out / "photos/a.png/image.json");
  held.signal(signal);
  const HeldRun::Result interrupted = held.finish();
  INFO("stderr: " << interrupted.err);
  REQUIRE(WIFEXITED(interrupted.status));
  CHECK(WEXITSTATUS(interrupted.status) == 128 + signal);
  CHECK(interrupted.err.find("[1/6] photos/a.png: ok") != std::string::npos);
  const std::string signal_name = signal == SIGINT ? "SIGINT" : "SIGTERM";
  CHECK(interrupted.err.find("vitscope: interrupted by " + signal_name + ": 6 images: " +
                             std::to_string(done.size()) + " ok, 0 error, " +
                             std::to_string(6 - done.size()) + " skipped") != std::string::npos);

  // The summary: that batch done, the rest not reached.
  const json summary = read_json(out / "summary.json");
  REQUIRE(summary.at("images").size() == 6);
  for (const json& entry : summary.at("images")) {
    INFO(entry.dump());
    if (done.count(entry.at("input").get<std::string>()) > 0) {
      CHECK(entry.at("status") == "ok");
      for (const auto& [kind, path] : entry.at("outputs").items()) {
        CHECK(fs::is_regular_file(out / path.get<std::string>()));
      }
    } else {
      CHECK(entry.at("status") == "skipped");
      CHECK(entry.at("error") == "interrupted");
      CHECK(entry.at("outputs").empty());
      CHECK(entry.at("size").is_null());
    }
  }
  // No temp file anywhere, and below the top level only the done images' complete folders.
  for (const std::string& path : tree(out)) {
    INFO(path);
    CHECK(fs::path(path).filename().string().rfind(".vitscope-", 0) == std::string::npos);
    const bool in_done = std::any_of(done.begin(), done.end(), [&](const std::string& image) {
      return path == image || path.rfind(image + "/", 0) == 0;
    });
    if (path.find('/') != std::string::npos) CHECK((path == "photos" || in_done));
  }

  // The same command again finishes the run, as one uninterrupted run into ref/ does.
  const Run rerun = run_cli(quoted(args("out")));
  INFO("rerun stderr: " << rerun.err);
  REQUIRE(rerun.exit_code == 0);
  CHECK(rerun.err.find("[1/6] photos/a.png: ok") != std::string::npos);
  const Run reference = run_cli(quoted(args("ref")));
  REQUIRE(reference.exit_code == 0);
  const fs::path ref = dir.path() / "ref";

  const json images = read_json(out / "summary.json").at("images");
  CHECK(images == read_json(ref / "summary.json").at("images"));
  for (const json& entry : images) {
    if (entry.at("input") != "photos/notes.txt") CHECK(entry.at("status") == "ok");
  }
  const std::set<std::string> files = tree(out, true);
  CHECK(files == tree(ref, true));
  for (const std::string& file : files) {
    if (file == "summary.json") continue;  // its timings differ
    INFO(file);
    // With --batch 2 the rerun batches b.png with c.png, not with a.png: its numbers may differ
    // in the last bits (README: within 1e-5), and so may the views drawn from them.
    const std::string name = fs::path(file).filename().string();
    if (batch == 1 || name == "image.json") {
      CHECK(read_bytes((out / file).string()) == read_bytes((ref / file).string()));
    } else if (name == "features.npy") {
      const vitscope::io::NpyArray expected = read_npy((ref / file).string());
      vitscope::test::require_close(file, read_npy((out / file).string()).data, expected, 1e-5);
    }
  }
}

TEST_CASE("run: inputs that share a name all keep their results, inside --out", "[run]") {
  TempDir dir;
  write_image(dir.path() / "a" / "one.png", pattern(20, 10, CV_8UC3, 30));
  write_image(dir.path() / "b" / "one.png", pattern(10, 20, CV_8UC3, 31));
  write_image(dir.path() / "x" / "photos" / "p.png", pattern(16, 16, CV_8UC3, 32));
  write_image(dir.path() / "y" / "photos" / "p.png", pattern(24, 16, CV_8UC3, 33));
  // A link to a folder outside the input is not followed; a link to a file keeps the link's name.
  write_image(dir.path() / "outside" / "secret.png", pattern(16, 16, CV_8UC3, 34));
  fs::create_directory_symlink(dir.path() / "outside", dir.path() / "x" / "photos" / "escape");
  fs::create_symlink(dir.path() / "outside" / "secret.png", dir.path() / "x" / "photos" / "link.png");

  const Run run = run_cli("run " + quote(dir.file("a/one.png")) + " " + quote(dir.file("b/one.png")) +
                          " " + quote(dir.file("x/photos")) + " " + quote(dir.file("y/../y/photos/")) +
                          " --out " + quote(dir.file("out")) + " --size 32 --threads 1");
  INFO("stderr: " << run.err);
  REQUIRE(run.exit_code == 0);
  std::set<std::string> inputs;
  const json summary = read_json(dir.path() / "out" / "summary.json");
  for (const json& entry : summary.at("images")) {
    inputs.insert(entry.at("input").get<std::string>());
    CHECK(entry.at("status") == "ok");
    for (const auto& [kind, path] : entry.at("outputs").items()) {
      const fs::path file = fs::weakly_canonical(dir.path() / "out" / path.get<std::string>());
      const std::string inside = fs::weakly_canonical(dir.path() / "out").string() + "/";
      CHECK(file.string().rfind(inside, 0) == 0);
      CHECK(fs::is_regular_file(file));
    }
  }
  CHECK(inputs == std::set<std::string>{"one.png", "one.png~2", "photos/link.png", "photos/p.png",
                                        "photos~2/p.png"});
  CHECK(tree(dir.path() / "outside") == std::set<std::string>{"secret.png"});
}

namespace {

// A BMP header claiming width x height 24-bit pixels, with no pixel data.
std::string bmp_header(std::int32_t width, std::int32_t height) {
  std::string bytes = "BM";
  const auto le32 = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes += static_cast<char>((v >> (8 * i)) & 0xFF);
  };
  const auto le16 = [&](std::uint16_t v) {
    bytes += static_cast<char>(v & 0xFF);
    bytes += static_cast<char>(v >> 8);
  };
  le32(54 + 3u * width * height);  // file size
  le32(0);                         // reserved
  le32(54);                        // pixel data offset
  le32(40);                        // BITMAPINFOHEADER
  le32(static_cast<std::uint32_t>(width));
  le32(static_cast<std::uint32_t>(height));
  le16(1);   // planes
  le16(24);  // bits per pixel
  for (int i = 0; i < 6; ++i) le32(0);  // no compression, sizes, resolution, palette
  return bytes;
}

}  // namespace

TEST_CASE("run: OpenCV itself refuses images over --max-pixels, before decoding", "[run]") {
  TempDir dir;
  // vitscope reads PNG and JPEG headers itself; for a BMP only OpenCV's own cap stops the decode.
  fs::create_directories(dir.path() / "photos");
  std::ofstream(dir.file("photos/huge.bmp"), std::ios::binary) << bmp_header(4000, 3000);
  const Run run = run_cli(run_args(dir, " --max-pixels 1000000"));
  INFO("stderr: " << run.err);
  CHECK(run.exit_code == 1);
  const json entry = read_json(dir.path() / "out" / "summary.json").at("images").at(0);
  CHECK(entry.at("status") == "error");
  CHECK(entry.at("error").get<std::string>().find("CV_IO_MAX_IMAGE_PIXELS") != std::string::npos);
}
