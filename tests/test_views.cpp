// The image views: sizes, determinism, and that what they draw lands where the tokens are.

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "support.hpp"
#include "vitscope/image/views.hpp"

namespace {

using vitscope::Tensor3;
using vitscope::image::channels_view;
using vitscope::image::class_overlay_view;
using vitscope::image::pca_view;
using vitscope::image::token_norm_view;
using vitscope::image::TokenLayout;

Tensor3 make_features(std::size_t e, std::size_t h, std::size_t w,
                      const std::function<float(std::size_t, std::size_t, std::size_t)>& value) {
  Tensor3 t = Tensor3::from_shape({e, h, w});
  for (std::size_t c = 0; c < e; ++c)
    for (std::size_t i = 0; i < h; ++i)
      for (std::size_t j = 0; j < w; ++j) t(c, i, j) = value(c, i, j);
  return t;
}

cv::Mat grey_image(cv::Size size, float value = 100.0f) {
  return cv::Mat(size, CV_32FC3, cv::Scalar::all(value));
}

// A layout whose tokens are exact patch × patch squares of the image.
TokenLayout exact_layout(const Tensor3& t, int patch) {
  return {cv::Size(static_cast<int>(t.shape(2)) * patch, static_cast<int>(t.shape(1)) * patch),
          patch};
}

cv::Vec3b viridis_bgr(int value) {
  cv::Mat gray(1, 1, CV_8U, cv::Scalar(value)), bgr;
  cv::applyColorMap(gray, bgr, cv::COLORMAP_VIRIDIS);
  return bgr.at<cv::Vec3b>(0, 0);
}

bool same(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

// The centre pixel of token (i, j) under an exact layout.
cv::Vec3b at_token(const cv::Mat& view, int i, int j, int patch, int x_offset = 0) {
  return view.at<cv::Vec3b>(i * patch + patch / 2, x_offset + j * patch + patch / 2);
}

}  // namespace

TEST_CASE("views are BGR 8-bit at the image's size and the same on every call", "[views]") {
  const Tensor3 features = make_features(8, 3, 5, [](std::size_t c, std::size_t i, std::size_t j) {
    return std::sin(float(c * 7 + i * 3 + j));
  });
  const cv::Mat image = grey_image({37, 23});
  const TokenLayout layout{{80, 48}, 16};  // 37×23 shown as 80×48: a 3×5 grid

  const cv::Mat pca = pca_view(features, image, layout);
  CHECK(pca.type() == CV_8UC3);
  CHECK(pca.size() == cv::Size(2 * 37, 23));
  CHECK(same(pca, pca_view(features, image, layout)));

  const cv::Mat norm = token_norm_view(features, image, layout);
  CHECK(norm.type() == CV_8UC3);
  CHECK(norm.size() == image.size());
  CHECK(same(norm, token_norm_view(features, image, layout)));

  const cv::Mat classes = class_overlay_view(features, image, layout, {});
  CHECK(classes.type() == CV_8UC3);
  CHECK(classes.size() == image.size());
  CHECK(same(classes, class_overlay_view(features, image, layout, {})));

  const cv::Mat channels = channels_view(features, image.size());
  CHECK(channels.type() == CV_8UC3);
  CHECK(same(channels, channels_view(features, image.size())));
}

TEST_CASE("pca_view shows the principal directions as colour gradients", "[views]") {
  // Channel 0 varies left to right (the most variance), channel 1 top to bottom, the rest is flat.
  const float sign = GENERATE(1.0f, -1.0f);
  const Tensor3 features = make_features(6, 4, 8, [&](std::size_t c, std::size_t i, std::size_t j) {
    return c == 0 ? sign * 10.0f * float(j) : c == 1 ? 3.0f * float(i) : 5.0f;
  });
  const int patch = 10;
  const cv::Mat image = grey_image({80, 40});
  const cv::Mat view = pca_view(features, image, exact_layout(features, patch));
  REQUIRE(view.size() == cv::Size(160, 40));

  CHECK(view.at<cv::Vec3b>(20, 40) == cv::Vec3b(100, 100, 100));  // the image, on the left
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 8; ++j) {
      const cv::Vec3b bgr = at_token(view, i, j, patch, 80);
      INFO("token " << i << "," << j);
      // The largest loading of each component is positive: red follows channel 0 as it is.
      CHECK(int(bgr[2]) == std::lround((sign > 0 ? j : 7 - j) * 255.0 / 7));
      CHECK(int(bgr[1]) == i * 255 / 3);
      CHECK(bgr[0] == 0);  // no third direction
    }
  }
}

TEST_CASE("pca_view survives a single token and fewer than three channels", "[views]") {
  const cv::Mat image = grey_image({16, 16});
  const Tensor3 one_token =
      make_features(4, 1, 1, [](std::size_t c, std::size_t, std::size_t) { return float(c); });
  CHECK(pca_view(one_token, image, exact_layout(one_token, 16)).size() == cv::Size(32, 16));
  const Tensor3 two_channels = make_features(
      2, 2, 2, [](std::size_t c, std::size_t i, std::size_t j) { return float(c + i * j); });
  const cv::Mat view = pca_view(two_channels, image, exact_layout(two_channels, 8));
  CHECK(view.size() == cv::Size(32, 16));
}

TEST_CASE("channels_view shows the strongest channels first, in a near-square grid", "[views]") {
  // Channel c is zero except for (c + 1) at token c: strength grows with c, and each channel's
  // bright token tells which one a tile shows.
  const std::size_t h = 5, w = 5;
  const Tensor3 features =
      make_features(20, h, w, [&](std::size_t c, std::size_t i, std::size_t j) {
        return i * w + j == c ? float(c + 1) : 0.0f;
      });
  const cv::Mat view = channels_view(features, {200, 200});
  // 16 tiles in 4×4, each 5 tokens × 9 pixels, 2-pixel gaps: 4 * 45 + 3 * 2.
  REQUIRE(view.size() == cv::Size(186, 186));
  const cv::Vec3b bright = viridis_bgr(255), dark = viridis_bgr(0);
  for (int tile = 0; tile < 16; ++tile) {
    const int channel = 19 - tile;
    const cv::Point origin((tile % 4) * 47, (tile / 4) * 47);
    for (int token = 0; token < 25; ++token) {
      const cv::Point centre = origin + cv::Point((token % 5) * 9 + 4, (token / 5) * 9 + 4);
      INFO("tile " << tile << " token " << token);
      CHECK(view.at<cv::Vec3b>(centre) == (token == channel ? bright : dark));
    }
  }
  CHECK(view.at<cv::Vec3b>(10, 45) == cv::Vec3b(255, 255, 255));  // a gap

  // 3 tiles in 2×2, each 5 tokens × 19 pixels.
  CHECK(channels_view(features, {200, 200}, 3).size() == cv::Size(2 * 95 + 2, 2 * 95 + 2));
  CHECK(channels_view(features, {4, 4}, 1).size() ==
        cv::Size(5, 5));  // never below a pixel a token
}

TEST_CASE("token_norm_view colours the largest norm brightest, over the image", "[views]") {
  const Tensor3 features = make_features(3, 2, 4, [](std::size_t c, std::size_t i, std::size_t j) {
    return (i == 1 && j == 2) ? 5.0f : float(c) * 0.1f;
  });
  const int patch = 20;
  const cv::Mat view =
      token_norm_view(features, grey_image({80, 40}), exact_layout(features, patch));
  const cv::Vec3b bright = viridis_bgr(255), dark = viridis_bgr(0);
  const auto half = [](cv::Vec3b v) {
    return cv::Vec3b(cv::saturate_cast<uchar>(50 + 0.5 * v[0]),
                     cv::saturate_cast<uchar>(50 + 0.5 * v[1]),
                     cv::saturate_cast<uchar>(50 + 0.5 * v[2]));
  };
  CHECK(at_token(view, 1, 2, patch) == half(bright));
  CHECK(at_token(view, 0, 0, patch) == half(dark));
}

TEST_CASE("class_overlay_view colours each token by its class", "[views]") {
  // 2×3 tokens of 160 pixels; the top-left one, under the legend, is class 0.
  const int classes[2][3] = {{0, 1, 2}, {2, 1, 0}};
  const Tensor3 logits = make_features(3, 2, 3, [&](std::size_t k, std::size_t i, std::size_t j) {
    return int(k) == classes[i][j] ? 1.0f : 0.0f;
  });
  const int patch = 160;
  const cv::Mat image = grey_image({480, 320});
  const TokenLayout layout = exact_layout(logits, patch);
  const cv::Vec3b grey(100, 100, 100);

  const cv::Mat named = class_overlay_view(logits, image, layout, {"background", "cat", "dog"});
  CHECK(named.at<cv::Vec3b>(150, 150) == grey);  // background stays transparent
  CHECK(at_token(named, 1, 2, patch) == grey);
  const cv::Vec3b cat = at_token(named, 0, 1, patch), dog = at_token(named, 0, 2, patch);
  CHECK(cat != grey);
  CHECK(dog != grey);
  CHECK(cat != dog);
  CHECK(at_token(named, 1, 1, patch) == cat);
  CHECK(at_token(named, 1, 0, patch) == dog);
  CHECK(named.at<cv::Vec3b>(2, 2) == cv::Vec3b(0, 0, 0));  // the legend's box

  // Without a "background" name class 0 is a class like the others, and colours stay per class.
  const cv::Mat unnamed = class_overlay_view(logits, image, layout, {});
  CHECK(at_token(unnamed, 1, 2, patch) != grey);
  CHECK(at_token(unnamed, 1, 1, patch) == cat);
  CHECK(at_token(unnamed, 1, 0, patch) == dog);
}

TEST_CASE("tokens land on the original pixels they were resized from", "[views]") {
  // 70 pixels wide, seen at 40 in patches of 16: tokens cover resized [0,16), [16,32), [32,40),
  // so original columns 0-27, 28-55 and 56-69 (pixel centres mapped by 40/70).
  const Tensor3 logits = make_features(
      3, 1, 3, [](std::size_t k, std::size_t, std::size_t j) { return k == j ? 1.0f : 0.0f; });
  const cv::Mat view = class_overlay_view(logits, grey_image({70, 100}), {{40, 57}, 16}, {});
  const int y = 99;  // below the legend
  CHECK(view.at<cv::Vec3b>(y, 27) == view.at<cv::Vec3b>(y, 0));
  CHECK(view.at<cv::Vec3b>(y, 28) != view.at<cv::Vec3b>(y, 27));
  CHECK(view.at<cv::Vec3b>(y, 55) == view.at<cv::Vec3b>(y, 28));
  CHECK(view.at<cv::Vec3b>(y, 56) != view.at<cv::Vec3b>(y, 55));
  CHECK(view.at<cv::Vec3b>(y, 69) == view.at<cv::Vec3b>(y, 56));
}
