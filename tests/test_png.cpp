// The PNG writer of the views (io::encode_png_bgr and what it is made of) against independent
// implementations: zlib's crc32, adler32 and inflate, and OpenCV's PNG reader (libpng).

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <zlib.h>

#include "support.hpp"
#include "vitscope/image/image_file.hpp"
#include "vitscope/io/checksum.hpp"
#include "vitscope/io/deflate.hpp"
#include "vitscope/io/png.hpp"

using namespace vitscope;

namespace {

const unsigned char* bytes_of(const std::string& s) { return reinterpret_cast<const unsigned char*>(s.data()); }

std::string random_bytes(std::size_t n, unsigned seed, int alphabet = 256) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, alphabet - 1);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(byte(rng));
  return s;
}

// Runs of every length from 1 to 600 (across the 258 of one match and the 64 of one mask), of
// bytes that change at each run.
std::string runs_of_every_length() {
  std::string s;
  for (int length = 1; length <= 600; ++length) s += std::string(length, static_cast<char>(length % 7 + 1));
  return s;
}

// Symbol counts in the Fibonacci sequence: their Huffman code is 29 bits deep, so only a code cut
// to deflate's 15 bits decodes.
std::string fibonacci_counts() {
  std::vector<int> symbols;
  for (std::size_t a = 1, b = 1, symbol = 0; symbol < 30; ++symbol) {
    symbols.insert(symbols.end(), a, static_cast<int>(symbol) * 8);
    std::swap(a, b);
    b += a;
  }
  std::shuffle(symbols.begin(), symbols.end(), std::mt19937(7));
  return std::string(symbols.begin(), symbols.end());
}

std::string inflate(const std::string& stream, std::size_t size) {
  std::string out(size + 1, '\0');
  uLongf out_size = out.size();
  REQUIRE(uncompress(reinterpret_cast<Bytef*>(out.data()), &out_size, bytes_of(stream), stream.size()) == Z_OK);
  out.resize(out_size);
  return out;
}

cv::Mat decode(const std::string& png) {
  return cv::imdecode(std::vector<uchar>(png.begin(), png.end()), cv::IMREAD_UNCHANGED);
}

std::string encode(const cv::Mat& bgr) {
  return io::encode_png_bgr(bgr.data, static_cast<std::size_t>(bgr.cols), static_cast<std::size_t>(bgr.rows),
                            bgr.step);
}

// A view-like picture: a smooth heat map blended over noise, with flat bands and drawn marks.
cv::Mat view_like(int width, int height) {
  cv::Mat noise(height, width, CV_8UC3);
  cv::randu(noise, 0, 256);
  cv::Mat heat(height, width, CV_8UC1);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) heat.at<uchar>(y, x) = static_cast<uchar>((x * 255) / std::max(1, width - 1));
  }
  cv::Mat colored;
  cv::applyColorMap(heat, colored, cv::COLORMAP_JET);
  cv::Mat view;
  cv::addWeighted(colored, 0.8, noise, 0.2, 0, view);
  cv::rectangle(view, {0, 0}, {width, height / 5}, cv::Scalar(255, 255, 255), cv::FILLED);
  cv::circle(view, {width / 2, height / 2}, std::min(width, height) / 4, cv::Scalar(0, 0, 255), 3);
  return view;
}

}  // namespace

TEST_CASE("crc32 and adler32 give zlib's checksums, whole and in pieces", "[io][png]") {
  CHECK(io::crc32(bytes_of("123456789"), 9) == 0xCBF43926u);
  CHECK(io::adler32(bytes_of("Wikipedia"), 9) == 0x11E60398u);
  for (std::size_t size : {0, 1, 7, 8, 9, 63, 5551, 5552, 5553, 100000, 300001}) {
    const std::string data = random_bytes(size, static_cast<unsigned>(size));
    INFO("size " << size);
    CHECK(io::crc32(bytes_of(data), size) == crc32(0, bytes_of(data), static_cast<uInt>(size)));
    CHECK(io::adler32(bytes_of(data), size) == adler32(1, bytes_of(data), static_cast<uInt>(size)));
    const std::size_t half = size / 3;
    CHECK(io::crc32(bytes_of(data) + half, size - half, io::crc32(bytes_of(data), half)) ==
          io::crc32(bytes_of(data), size));
    CHECK(io::adler32(bytes_of(data) + half, size - half, io::adler32(bytes_of(data), half)) ==
          io::adler32(bytes_of(data), size));
  }
  // All 0xFF keeps both of Adler-32's sums at their largest before each modulus.
  const std::string ones(1 << 20, '\xFF');
  CHECK(io::adler32(bytes_of(ones), ones.size()) == adler32(1, bytes_of(ones), static_cast<uInt>(ones.size())));
}

TEST_CASE("zlib_compress makes streams zlib inflates back to the same bytes", "[io][png]") {
  const std::vector<std::pair<std::string, std::string>> inputs = {
      {"empty", ""},
      {"one byte", "x"},
      {"two bytes", "ab"},
      {"one repeated byte", std::string(100000, '\0')},
      {"random bytes", random_bytes(200000, 1)},
      {"four symbols", random_bytes(200000, 2, 4)},
      {"runs of every length", runs_of_every_length()},
      {"Fibonacci counts", fibonacci_counts()},
  };
  for (const auto& [name, data] : inputs) {
    INFO(name << ", " << data.size() << " bytes");
    const std::string stream = io::zlib_compress(bytes_of(data), data.size());
    CHECK(inflate(stream, data.size()) == data);
    // Huffman codes fitted to the data never cost more than a few header bytes over 8 bits a byte.
    CHECK(stream.size() <= data.size() + data.size() / 50 + 300);
  }
  const std::string zeros(100000, '\0');
  CHECK(io::zlib_compress(bytes_of(zeros), zeros.size()).size() < 400);
}

TEST_CASE("encode_png_bgr writes PNGs that libpng decodes to the same pixels", "[io][png]") {
  for (const auto& [width, height] : std::vector<std::pair<int, int>>{{1, 1}, {1, 9}, {9, 1}, {7, 3}, {65, 64}, {320, 240}}) {
    INFO(width << "x" << height);
    cv::Mat noise(height, width, CV_8UC3);
    cv::randu(noise, 0, 256);
    for (const cv::Mat& image : {noise, view_like(width, height)}) {
      const cv::Mat decoded = decode(encode(image));
      REQUIRE(decoded.type() == CV_8UC3);
      REQUIRE(decoded.size() == image.size());
      CHECK(cv::norm(decoded, image, cv::NORM_INF) == 0);
    }
  }
  // Larger than the rows a thread keeps between pictures, then small again.
  for (const int side : {2100, 16}) {
    const cv::Mat view = view_like(side, side);
    CHECK(cv::norm(decode(encode(view)), view, cv::NORM_INF) == 0);
  }
  // A view cut out of a larger picture: rows further apart than its width.
  const cv::Mat large = view_like(300, 200);
  const cv::Mat part = large(cv::Rect(17, 11, 101, 77));
  REQUIRE(!part.isContinuous());
  CHECK(cv::norm(decode(encode(part)), part, cv::NORM_INF) == 0);
}

TEST_CASE("a view's PNG is no larger than OpenCV's", "[io][png]") {
  const cv::Mat view = view_like(1136, 1008);
  std::vector<uchar> opencv;
  REQUIRE(cv::imencode(".png", view, opencv));
  const std::string ours = encode(view);
  INFO("vitscope " << ours.size() << " bytes, OpenCV " << opencv.size());
  CHECK(ours.size() <= opencv.size() * 11 / 10);
  CHECK(ours.size() < view.total() * 3 * 7 / 10);  // the noise in it keeps it above half
}

TEST_CASE("write_png writes a PNG file and refuses what is not 8-bit BGR", "[io][png]") {
  test::TempDir dir;
  const cv::Mat view = view_like(40, 30);
  image::write_png(dir.file("view.png"), view);
  CHECK(cv::norm(cv::imread(dir.file("view.png"), cv::IMREAD_UNCHANGED), view, cv::NORM_INF) == 0);
  const cv::Mat gray(4, 4, CV_8UC1, cv::Scalar(3));
  CHECK_THROWS_WITH(image::write_png(dir.file("gray.png"), gray), Catch::Contains("8-bit BGR"));
  try {
    io::encode_png_bgr(view.data, 0, 4, 0);
    FAIL("a PNG of no pixels was written");
  } catch (const Error& e) {
    CHECK(e.code() == "write_failed");
  }
}
