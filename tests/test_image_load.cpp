#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <zlib.h>

#include "support.hpp"
#include "vitscope/image/load.hpp"

using vitscope::image::decode_image;
using vitscope::image::has_image_extension;
using vitscope::image::load_image;
using vitscope::image::LoadLimits;
using vitscope::test::error_code;
using vitscope::test::TempDir;

namespace {

std::string encode(const std::string& extension, const cv::Mat& image) {
  std::vector<uchar> bytes;
  REQUIRE(cv::imencode(extension, image, bytes));
  return {bytes.begin(), bytes.end()};
}

cv::Mat load_bytes(const std::string& name, const std::string& bytes,
                   const LoadLimits& limits = {}) {
  TempDir tmp;
  return load_image(tmp.write(name, bytes), limits);
}

std::string load_code(const std::string& name, const std::string& bytes,
                      const LoadLimits& limits = {}) {
  TempDir tmp;
  const std::string path = tmp.write(name, bytes);
  return error_code([&] { load_image(path, limits); });
}

cv::Vec3f rgb_at(const cv::Mat& image, int x, int y) { return image.at<cv::Vec3f>(y, x); }

std::string be(std::uint32_t value, int bytes) {
  std::string out;
  for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
  return out;
}

std::string le(std::uint32_t value, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
  return out;
}

std::string png_chunk(const std::string& type, const std::string& data) {
  const std::string body = type + data;
  const auto crc = crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size());
  return be(static_cast<std::uint32_t>(data.size()), 4) + body + be(crc, 4);
}

// A PNG written by hand, for what cv::imencode cannot make: palette and gray+alpha images and
// headers that lie. rows: the 8-bit scanlines, stored unfiltered.
std::string png_file(std::uint32_t width, std::uint32_t height, int color_type,
                     const std::vector<std::string>& rows, const std::string& extra_chunks = "") {
  std::string raw;
  for (const std::string& row : rows) raw += '\0' + row;
  uLongf size = compressBound(raw.size());
  std::string compressed(size, '\0');
  REQUIRE(compress(reinterpret_cast<Bytef*>(compressed.data()), &size,
                   reinterpret_cast<const Bytef*>(raw.data()), raw.size()) == Z_OK);
  compressed.resize(size);
  const std::string ihdr = be(width, 4) + be(height, 4) + '\x08' + static_cast<char>(color_type) +
                           std::string(3, '\0');
  return "\x89PNG\r\n\x1a\n" + png_chunk("IHDR", ihdr) + extra_chunks +
         png_chunk("IDAT", compressed) + png_chunk("IEND", "");
}

// An APP1 EXIF segment around a TIFF block.
std::string exif_segment(const std::string& tiff) {
  const std::string payload = std::string("Exif\0\0", 6) + tiff;
  return "\xFF\xE1" + be(static_cast<std::uint32_t>(payload.size() + 2), 2) + payload;
}

std::string orientation_tiff(int orientation, bool big_endian) {
  const auto num = [&](std::uint32_t v, int n) { return big_endian ? be(v, n) : le(v, n); };
  // The SHORT value is left-justified in the 4-byte value field.
  const std::string entry =
      num(0x0112, 2) + num(3, 2) + num(1, 4) + num(orientation, 2) + num(0, 2);
  return (big_endian ? "MM" : "II") + num(42, 2) + num(8, 4) + num(1, 2) + entry + num(0, 4);
}

// The segment spliced in right after SOI, where cameras put it.
std::string with_segment(const std::string& jpeg, const std::string& segment) {
  return jpeg.substr(0, 2) + segment + jpeg.substr(2);
}

// 32 wide, 16 high, black with a white 8x8 block in the top-left corner.
cv::Mat marked_image() {
  cv::Mat image(16, 32, CV_8UC3, cv::Scalar::all(0));
  image(cv::Rect(0, 0, 8, 8)).setTo(cv::Scalar::all(255));
  return image;
}

bool bright(const cv::Mat& rgb, int x, int y) { return rgb_at(rgb, x, y)[0] > 200; }

}  // namespace

TEST_CASE("load: 8-bit RGB PNG keeps exact values in RGB order", "[image]") {
  cv::Mat bgr(2, 3, CV_8UC3);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) bgr.at<cv::Vec3b>(y, x) = cv::Vec3b(10 * x, 100 + y, 200 + x + y);
  const cv::Mat rgb = load_bytes("a.png", encode(".png", bgr));
  REQUIRE(rgb.type() == CV_32FC3);
  REQUIRE(rgb.size() == cv::Size(3, 2));
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x)
      CHECK(rgb_at(rgb, x, y) == cv::Vec3f(200 + x + y, 100 + y, 10 * x));
}

TEST_CASE("load: gray is replicated", "[image]") {
  const cv::Mat gray = (cv::Mat_<uchar>(1, 3) << 0, 7, 255);
  const cv::Mat rgb = load_bytes("g.png", encode(".png", gray));
  REQUIRE(rgb.type() == CV_32FC3);
  CHECK(rgb_at(rgb, 0, 0) == cv::Vec3f(0, 0, 0));
  CHECK(rgb_at(rgb, 1, 0) == cv::Vec3f(7, 7, 7));
  CHECK(rgb_at(rgb, 2, 0) == cv::Vec3f(255, 255, 255));
}

TEST_CASE("load: alpha is composited over white", "[image]") {
  const cv::Mat bgra = (cv::Mat_<cv::Vec4b>(1, 3) << cv::Vec4b(10, 20, 200, 0),
                        cv::Vec4b(10, 20, 200, 128), cv::Vec4b(10, 20, 200, 255));
  const cv::Mat rgb = load_bytes("a.png", encode(".png", bgra));
  CHECK(rgb_at(rgb, 0, 0) == cv::Vec3f(255, 255, 255));
  CHECK(rgb_at(rgb, 2, 0) == cv::Vec3f(200, 20, 10));
  const float a = 128.0f / 255.0f;
  CHECK(rgb_at(rgb, 1, 0) ==
        cv::Vec3f(200 * a + (1 - a) * 255, 20 * a + (1 - a) * 255, 10 * a + (1 - a) * 255));
  CHECK(rgb_at(rgb, 1, 0)[0] == Approx(200 * 128 / 255.0 + 127).margin(1e-4));
  CHECK(rgb_at(rgb, 1, 0)[2] == Approx(10 * 128 / 255.0 + 127).margin(1e-4));
}

TEST_CASE("load: 16-bit samples are divided by 257", "[image]") {
  const cv::Mat bgr = (cv::Mat_<cv::Vec3w>(1, 2) << cv::Vec3w(0, 25700, 65535),
                       cv::Vec3w(1000, 1, 65534));
  const cv::Mat rgb = load_bytes("a.png", encode(".png", bgr));
  CHECK(rgb_at(rgb, 0, 0) == cv::Vec3f(255, 100, 0));
  CHECK(rgb_at(rgb, 1, 0) == cv::Vec3f(65534 / 257.0f, 1 / 257.0f, 1000 / 257.0f));

  const cv::Mat bgra = (cv::Mat_<cv::Vec4w>(1, 2) << cv::Vec4w(0, 0, 0, 0),
                        cv::Vec4w(257, 514, 771, 65535));
  const cv::Mat composited = load_bytes("b.png", encode(".png", bgra));
  CHECK(rgb_at(composited, 0, 0) == cv::Vec3f(255, 255, 255));
  CHECK(rgb_at(composited, 1, 0) == cv::Vec3f(3, 2, 1));

  // Alpha is scaled by 1/257 first, as tools/reference_model.py does: 128 * 257 acts as 8-bit 128.
  const cv::Mat half =
      (cv::Mat_<cv::Vec4w>(1, 1) << cv::Vec4w(10 * 257, 20 * 257, 200 * 257, 128 * 257));
  const cv::Mat half8 = (cv::Mat_<cv::Vec4b>(1, 1) << cv::Vec4b(10, 20, 200, 128));
  CHECK(rgb_at(load_bytes("c.png", encode(".png", half)), 0, 0) ==
        rgb_at(load_bytes("d.png", encode(".png", half8)), 0, 0));
}

TEST_CASE("load: float32 images are taken as [0, 1]", "[image]") {
  const cv::Mat bgr = (cv::Mat_<cv::Vec3f>(1, 2) << cv::Vec3f(0, 0.25f, 1), cv::Vec3f(0.5f, 0, 0));
  const cv::Mat rgb = load_bytes("f.pfm", encode(".pfm", bgr));
  CHECK(rgb_at(rgb, 0, 0) == cv::Vec3f(255, 63.75f, 0));
  CHECK(rgb_at(rgb, 1, 0) == cv::Vec3f(0, 0, 127.5f));
}

TEST_CASE("load: palette and gray+alpha PNGs", "[image]") {
  const std::string palette = png_chunk("PLTE", "\x0a\x14\x1e\xc8\x64\x32");
  const std::string indices("\x00\x01", 2);
  const cv::Mat indexed = load_bytes("p.png", png_file(2, 1, 3, {indices}, palette));
  REQUIRE(indexed.size() == cv::Size(2, 1));
  CHECK(rgb_at(indexed, 0, 0) == cv::Vec3f(10, 20, 30));
  CHECK(rgb_at(indexed, 1, 0) == cv::Vec3f(200, 100, 50));

  // tRNS makes entry 0 fully transparent: white after compositing.
  const std::string transparency = png_chunk("tRNS", std::string(1, '\0'));
  const cv::Mat transparent =
      load_bytes("t.png", png_file(2, 1, 3, {indices}, palette + transparency));
  CHECK(rgb_at(transparent, 0, 0) == cv::Vec3f(255, 255, 255));
  CHECK(rgb_at(transparent, 1, 0) == cv::Vec3f(200, 100, 50));

  const std::string gray_alpha_row("\x07\xff\x07\x00", 4);
  const cv::Mat gray_alpha = load_bytes("ga.png", png_file(2, 1, 4, {gray_alpha_row}));
  CHECK(rgb_at(gray_alpha, 0, 0) == cv::Vec3f(7, 7, 7));
  CHECK(rgb_at(gray_alpha, 1, 0) == cv::Vec3f(255, 255, 255));
}

TEST_CASE("load: EXIF orientation of a JPEG", "[image]") {
  const std::string jpeg = encode(".jpg", marked_image());

  SECTION("6: rotated 90 degrees clockwise") {
    const cv::Mat rgb =
        load_bytes("a.jpg", with_segment(jpeg, exif_segment(orientation_tiff(6, true))));
    REQUIRE(rgb.size() == cv::Size(16, 32));
    CHECK(bright(rgb, 12, 3));
    CHECK_FALSE(bright(rgb, 3, 3));
    CHECK_FALSE(bright(rgb, 12, 28));
  }
  SECTION("3: rotated 180 degrees") {
    const cv::Mat rgb =
        load_bytes("a.jpg", with_segment(jpeg, exif_segment(orientation_tiff(3, false))));
    REQUIRE(rgb.size() == cv::Size(32, 16));
    CHECK(bright(rgb, 28, 12));
    CHECK_FALSE(bright(rgb, 3, 3));
  }
  SECTION("1 to 8, both byte orders, as OpenCV's own imread orients them") {
    for (const bool big_endian : {false, true}) {
      for (int orientation = 1; orientation <= 8; ++orientation) {
        INFO("orientation " << orientation << (big_endian ? " MM" : " II"));
        TempDir tmp;
        const std::string path = tmp.write(
            "a.jpg", with_segment(jpeg, exif_segment(orientation_tiff(orientation, big_endian))));
        cv::Mat expected;
        cv::cvtColor(cv::imread(path, cv::IMREAD_COLOR), expected, cv::COLOR_BGR2RGB);
        expected.convertTo(expected, CV_32F);
        const cv::Mat rgb = load_image(path);
        REQUIRE(rgb.size() == expected.size());
        CHECK(cv::norm(rgb, expected, cv::NORM_INF) == 0);
      }
    }
  }
}

TEST_CASE("load: a malformed EXIF block is ignored", "[image]") {
  const std::string jpeg = encode(".jpg", marked_image());
  const cv::Mat plain = load_bytes("a.jpg", jpeg);
  const std::string valid = orientation_tiff(6, false);
  const std::vector<std::string> tiffs = {
      "",
      "garbage!",
      "XX" + valid.substr(2),                                  // no byte order
      valid.substr(0, 2) + le(43, 2) + valid.substr(4),        // wrong magic
      valid.substr(0, 4) + le(0xFFFFFFF0u, 4) + valid.substr(8),  // IFD0 past the end
      valid.substr(0, 8) + le(0xFFFF, 2) + le(0x010F, 2) + valid.substr(12, 10),  // runs out
      valid.substr(0, 10 + 6),                                 // entry cut short
      orientation_tiff(9, false),                              // out of range
      orientation_tiff(0, true),
      valid.substr(0, 12) + le(4, 2) + valid.substr(14),       // LONG, not SHORT
  };
  for (std::size_t i = 0; i < tiffs.size(); ++i) {
    INFO("case " << i);
    const cv::Mat rgb = load_bytes("a.jpg", with_segment(jpeg, exif_segment(tiffs[i])));
    REQUIRE(rgb.size() == plain.size());
    CHECK(cv::norm(rgb, plain, cv::NORM_INF) == 0);
  }
  // An APP1 that is not EXIF (XMP) before the EXIF one is skipped over.
  const std::string xmp = "\xFF\xE1" + be(2 + 29, 2) + "http://ns.adobe.com/xap/1.0/" + '\0';
  const cv::Mat rotated =
      load_bytes("a.jpg", with_segment(jpeg, xmp + exif_segment(orientation_tiff(6, false))));
  CHECK(rotated.size() == cv::Size(16, 32));
}

TEST_CASE("load: broken files", "[image]") {
  const std::string png = encode(".png", marked_image());
  CHECK(load_code("a.png", png.substr(0, png.size() / 2)) == "image_decode_failed");
  CHECK(load_code("a.png", png.substr(0, 20)) == "image_decode_failed");
  CHECK(load_code("a.png", "this is not an image\n") == "image_decode_failed");
  CHECK(load_code("a.jpg", "\xFF\xD8\xFF") == "image_decode_failed");
  CHECK(load_code("a.png", "") == "image_empty_file");
  // Found by fuzzing: OpenCV's DICOM decoder (GDCM) aborted the process on this.
  CHECK(load_code("a.png", std::string(128, '\0') + "DICM") == "image_decode_failed");

  TempDir tmp;
  CHECK(error_code([&] { load_image(tmp.file("missing.png")); }) == "image_io_error");
  CHECK(error_code([&] { load_image(tmp.path().string()); }) == "image_io_error");

  const std::string huge = png_file(100000, 100000, 2, {});
  CHECK(load_code("h.png", huge) == "image_too_many_pixels");
  // Past this library's limit, OpenCV's own (1 << 30 pixels by default) refuses it.
  LoadLimits unlimited;
  unlimited.max_pixels = ~0ull;
  CHECK(load_code("h.png", huge, unlimited) == "image_too_many_pixels");

  CHECK(load_code("i.tiff", encode(".tiff", cv::Mat(2, 2, CV_32SC1, cv::Scalar(1)))) ==
        "image_unsupported_depth");
}

TEST_CASE("load: pixel and file size limits", "[image]") {
  const cv::Mat image(10, 10, CV_8UC3, cv::Scalar(1, 2, 3));
  for (const std::string extension : {".png", ".jpg", ".bmp"}) {
    INFO(extension);
    const std::string bytes = encode(extension, image);
    LoadLimits limits;
    limits.max_pixels = 99;
    CHECK(load_code("a" + extension, bytes, limits) == "image_too_many_pixels");
    limits.max_pixels = 100;
    CHECK(load_code("a" + extension, bytes, limits) == "no error");
  }
  const std::string bytes = encode(".png", image);
  LoadLimits limits;
  limits.max_file_bytes = bytes.size() - 1;
  CHECK(load_code("a.png", bytes, limits) == "image_too_large_file");
  limits.max_file_bytes = bytes.size();
  CHECK(load_code("a.png", bytes, limits) == "no error");
}

// Found by fuzzing: the header walks stopped where libjpeg and libpng go on, so a small file could
// have OpenCV allocate any size under its own limit (1 << 30 pixels) before max_pixels was checked.
// Each file below decodes; cut before its image data, it can only be refused from its header.
TEST_CASE("load: max_pixels is checked wherever the decoders find the size", "[image]") {
  const std::string jpeg = encode(".jpg", marked_image());  // 32 x 16
  const std::string png = encode(".png", marked_image());
  const std::string extra_chunk = png_chunk("abCD", "xx");  // ancillary, unknown to libpng
  struct Case {
    std::string what, name, bytes, header_only;
  };
  std::vector<Case> cases;
  for (const auto& [what, segment] : std::vector<std::pair<std::string, std::string>>{
           {"stray bytes between JPEG segments", "junk"},
           {"a stuffed FF 00 pair", std::string("\xFF\x00", 2)},
           {"a TEM marker", "\xFF\x01"},
           {"an APP segment with a length under 2", std::string("\xFF\xE5\x00\x01", 4)}}) {
    // After the APP0 segment: OpenCV recognises a JPEG by FF D8 FF.
    const std::size_t app0_end = 4 + (std::uint8_t(jpeg[4]) << 8 | std::uint8_t(jpeg[5]));
    const std::string bytes = jpeg.substr(0, app0_end) + segment + jpeg.substr(app0_end);
    cases.push_back({what, "a.jpg", bytes, bytes.substr(0, bytes.find("\xFF\xDA"))});
  }
  const std::string png_bytes = png.substr(0, 8) + extra_chunk + png.substr(8);
  const std::size_t ihdr_end = 8 + extra_chunk.size() + 25;
  cases.push_back({"a PNG chunk before IHDR", "a.png", png_bytes, png_bytes.substr(0, ihdr_end)});

  LoadLimits limits;
  limits.max_pixels = 32 * 16 - 1;
  for (const Case& c : cases) {
    INFO(c.what);
    CHECK(load_code(c.name, c.bytes) == "no error");
    CHECK(load_code(c.name, c.header_only, limits) == "image_too_many_pixels");
  }
}

TEST_CASE("load: decode_image reads bytes as load_image reads the file", "[image]") {
  const std::string png = encode(".png", marked_image());
  const std::vector<uchar> bytes(png.begin(), png.end());
  CHECK(cv::norm(decode_image(bytes, "a.png"), load_bytes("a.png", png), cv::NORM_INF) == 0);
  const std::vector<uchar> cut(bytes.begin(), bytes.begin() + 20);
  CHECK(error_code([&] { decode_image(cut, "a.png"); }) == "image_decode_failed");
  CHECK(error_code([&] { decode_image({}, "a.png"); }) == "image_empty_file");
  LoadLimits limits;
  limits.max_file_bytes = 19;
  CHECK(error_code([&] { decode_image(cut, "a.png", limits); }) == "image_too_large_file");
}

TEST_CASE("load: image extensions", "[image]") {
  for (const char* name : {"a.jpg", "a.JPEG", "b/c.Png", "x.tif", "x.TIFF", "x.webp", "x.bmp",
                           "x.ppm", "x.pgm", "x.exr", "x.hdr", "x.jp2", "x.jpe"})
    CHECK(has_image_extension(name));
  for (const char* name : {"a.txt", "a", "a.png.txt", ".png", "a.gif", "a.", "png"})
    CHECK_FALSE(has_image_extension(name));
}
