// The seed article's reshape/permute: (B,E,h,w) -> (h*w,B,E) and back.

#include "support.hpp"
#include "vitscope/image/sequence.hpp"

using namespace vitscope;
using namespace vitscope::image;

namespace {

// Every element distinct and its indices readable from its value: b*1000 + e*100 + i*10 + j.
Tensor4 indexed_map(std::size_t B, std::size_t E, std::size_t h, std::size_t w) {
  Tensor4 x = Tensor4::from_shape({B, E, h, w});
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t e = 0; e < E; ++e)
      for (std::size_t i = 0; i < h; ++i)
        for (std::size_t j = 0; j < w; ++j) x(b, e, i, j) = float(b * 1000 + e * 100 + i * 10 + j);
  return x;
}

}  // namespace

TEST_CASE("to_sequence puts token i*w+j of image b, channel e at (i*w+j, b, e)", "[sequence]") {
  const std::size_t B = 2, E = 3, h = 2, w = 5;  // h != w
  const Tensor4 x = indexed_map(B, E, h, w);
  const Tensor3 seq = to_sequence(x);
  REQUIRE((seq.shape() == std::array<std::size_t, 3>{h * w, B, E}));
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t e = 0; e < E; ++e)
      for (std::size_t i = 0; i < h; ++i)
        for (std::size_t j = 0; j < w; ++j) REQUIRE(seq(i * w + j, b, e) == x(b, e, i, j));
}

TEST_CASE("to_feature_map is the exact inverse of to_sequence", "[sequence]") {
  const Tensor4 x = indexed_map(3, 4, 5, 2);
  REQUIRE((to_feature_map(to_sequence(x), 5, 2) == x));
  const Tensor3 seq = to_sequence(x);
  REQUIRE((to_sequence(to_feature_map(seq, 5, 2)) == seq));
}

TEST_CASE("to_feature_map refuses a grid the tokens do not fill", "[sequence]") {
  const Tensor3 seq = xt::zeros<float>({10, 1, 4});
  REQUIRE(test::error_code([&] { to_feature_map(seq, 3, 3); }) == "shape_mismatch");
}

TEST_CASE("the token mask becomes an additive key padding mask in token order", "[sequence]") {
  xt::xtensor<bool, 3> mask = xt::zeros<bool>({2, 2, 3});
  mask(0, 1, 2) = true;  // token 5 of image 0
  mask(1, 0, 1) = true;  // token 1 of image 1
  const Tensor2 kpm = to_key_padding_mask(mask);
  REQUIRE((kpm.shape() == std::array<std::size_t, 2>{2, 6}));
  for (std::size_t b = 0; b < 2; ++b) {
    for (std::size_t s = 0; s < 6; ++s) {
      const bool padding = (b == 0 && s == 5) || (b == 1 && s == 1);
      REQUIRE(kpm(b, s) == (padding ? -INFINITY : 0.0f));
    }
  }
}

TEST_CASE("crop_feature_map keeps an image's real grid", "[sequence]") {
  const Tensor4 x = indexed_map(2, 2, 4, 5);
  const Tensor3 crop = crop_feature_map(x, 1, 3, 2);
  REQUIRE((crop.shape() == std::array<std::size_t, 3>{2, 3, 2}));
  REQUIRE(crop(1, 2, 1) == x(1, 1, 2, 1));
}
