// png_encode: how long one picture takes to encode with OpenCV's PNG writer (libpng and zlib, as
// vitscope wrote its views before), with vitscope's (io::encode_png_bgr) and with OpenCV's JPEG at
// vitscope's quality 90, and how many bytes each makes. Built only with -DVITSCOPE_BUILD_BENCH=ON;
// see bench/README.md.
//
//   png_encode [--repeat R] PICTURE...
//
// Prints one Markdown row per picture: its size, then the median milliseconds of R encodings
// (default 9) and the bytes of each encoder. Exits 1 if vitscope's PNG does not decode (with
// OpenCV) to the picture's pixels.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "vitscope/io/png.hpp"

namespace {

struct Encoded {
  double median_ms = 0;
  std::size_t bytes = 0;
};

Encoded time_encoder(int repeat, const std::function<std::size_t()>& encode) {
  std::vector<double> ms;
  std::size_t bytes = 0;
  for (int r = 0; r < repeat; ++r) {
    const auto start = std::chrono::steady_clock::now();
    bytes = encode();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return {ms[ms.size() / 2], bytes};
}

std::string vitscope_png(const cv::Mat& bgr) {
  return vitscope::io::encode_png_bgr(bgr.data, static_cast<std::size_t>(bgr.cols),
                                      static_cast<std::size_t>(bgr.rows), bgr.step);
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 9;
  std::vector<std::string> pictures;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--repeat" && i + 1 < argc) {
      repeat = std::max(1, std::atoi(argv[++i]));
    } else {
      pictures.push_back(arg);
    }
  }
  if (pictures.empty()) {
    std::fprintf(stderr, "usage: png_encode [--repeat R] PICTURE...\n");
    return 2;
  }
  std::printf("| picture | size | OpenCV PNG | vitscope PNG | OpenCV JPEG 90 |\n| --- | --- | --- | --- | --- |\n");
  for (const std::string& path : pictures) {
    const cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
    if (bgr.empty()) {
      std::fprintf(stderr, "png_encode: cannot read %s\n", path.c_str());
      return 2;
    }
    const Encoded opencv = time_encoder(repeat, [&] {
      std::vector<uchar> bytes;
      cv::imencode(".png", bgr, bytes);
      return bytes.size();
    });
    const Encoded ours = time_encoder(repeat, [&] { return vitscope_png(bgr).size(); });
    const Encoded jpeg = time_encoder(repeat, [&] {
      std::vector<uchar> bytes;
      cv::imencode(".jpg", bgr, bytes, {cv::IMWRITE_JPEG_QUALITY, 90});
      return bytes.size();
    });
    const std::string png = vitscope_png(bgr);
    const cv::Mat decoded = cv::imdecode(std::vector<uchar>(png.begin(), png.end()), cv::IMREAD_COLOR);
    if (decoded.size() != bgr.size() || cv::norm(decoded, bgr, cv::NORM_INF) != 0) {
      std::fprintf(stderr, "png_encode: vitscope's PNG of %s does not decode to its pixels\n", path.c_str());
      return 1;
    }
    std::printf("| %s | %dx%d | %.1f ms, %zu B | %.1f ms, %zu B | %.1f ms, %zu B |\n", path.c_str(), bgr.cols,
                bgr.rows, opencv.median_ms, opencv.bytes, ours.median_ms, ours.bytes, jpeg.median_ms, jpeg.bytes);
  }
  return 0;
}
