#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <opencv2/imgproc.hpp>

#include "support.hpp"
#include "vitscope/image/preprocess.hpp"

using vitscope::image::ImageBatch;
using vitscope::image::preprocess;
using vitscope::image::PreprocessOptions;
using vitscope::image::resize_to_size;
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

TEST_CASE("preprocess: the longer side becomes size, rounded", "[image]") {
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

TEST_CASE("preprocess: an image already at size is not resized or copied", "[image]") {
  const cv::Mat image = test_image(224, 100);
  CHECK(resize_to_size(image, 224).data == image.data);
  const cv::Mat tall = test_image(7, 224);
  CHECK(resize_to_size(tall, 224).data == tall.data);
}

TEST_CASE("preprocess: normalisation is exact", "[image]") {
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

TEST_CASE("preprocess: padding to a multiple of the patch size", "[image]") {
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

TEST_CASE("preprocess: a mixed batch is padded to the largest", "[image]") {
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

TEST_CASE("preprocess: bad input", "[image]") {
  const cv::Mat image = test_image(4, 4);
  CHECK(error_code([&] { preprocess({}, {}); }) == "bad_input");
  CHECK(error_code([&] { preprocess({image, cv::Mat(4, 4, CV_8UC3)}, {}); }) == "bad_input");
  CHECK(error_code([&] { preprocess({cv::Mat(4, 4, CV_32FC1)}, {}); }) == "bad_input");
  CHECK(error_code([&] { preprocess({cv::Mat()}, {}); }) == "bad_input");
  CHECK(error_code([&] { preprocess({image}, options(0, 16)); }) == "bad_input");
  CHECK(error_code([&] { preprocess({image}, options(4, 0)); }) == "bad_input");
  CHECK(error_code([&] { resize_to_size(image, -1); }) == "bad_input");
  CHECK(error_code([&] { resize_to_size(cv::Mat(2, 2, CV_32FC4), 4); }) == "bad_input");
}
