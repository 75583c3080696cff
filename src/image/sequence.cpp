#include "vitscope/image/sequence.hpp"

#include <limits>
#include <string>

#include "vitscope/error.hpp"

namespace vitscope::image {

Tensor3 to_sequence(const Tensor4& x) {
  const std::size_t B = x.shape(0), E = x.shape(1), S = x.shape(2) * x.shape(3);
  // (B,E,h,w) viewed as (B,E,S); output (S,B,E): seq[s][b][e] = x[b][e][s].
  Tensor3 seq = Tensor3::from_shape({S, B, E});
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t e = 0; e < E; ++e) {
      const float* plane = x.data() + (b * E + e) * S;
      for (std::size_t s = 0; s < S; ++s) seq.data()[(s * B + b) * E + e] = plane[s];
    }
  }
  return seq;
}

Tensor4 to_feature_map(const Tensor3& seq, std::size_t h, std::size_t w) {
  const std::size_t S = seq.shape(0), B = seq.shape(1), E = seq.shape(2);
  if (S != h * w) {
    throw Error("shape_mismatch", "to_feature_map: " + std::to_string(S) +
                                      " tokens do not fill a " + std::to_string(h) + "x" +
                                      std::to_string(w) + " grid");
  }
  Tensor4 x = Tensor4::from_shape({B, E, h, w});
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t e = 0; e < E; ++e) {
      float* plane = x.data() + (b * E + e) * S;
      for (std::size_t s = 0; s < S; ++s) plane[s] = seq.data()[(s * B + b) * E + e];
    }
  }
  return x;
}

Tensor3 crop_feature_map(const Tensor4& maps, std::size_t b, std::size_t rows, std::size_t cols) {
  const std::size_t K = maps.shape(1);
  Tensor3 crop = Tensor3::from_shape({K, rows, cols});
  for (std::size_t k = 0; k < K; ++k) {
    for (std::size_t i = 0; i < rows; ++i) std::copy_n(&maps(b, k, i, 0), cols, &crop(k, i, 0));
  }
  return crop;
}

Tensor2 to_key_padding_mask(const xt::xtensor<bool, 3>& token_mask) {
  const std::size_t B = token_mask.shape(0), S = token_mask.shape(1) * token_mask.shape(2);
  Tensor2 mask = Tensor2::from_shape({B, S});
  for (std::size_t i = 0; i < B * S; ++i) {
    mask.data()[i] = token_mask.data()[i] ? -std::numeric_limits<float>::infinity() : 0.0f;
  }
  return mask;
}

}  // namespace vitscope::image
