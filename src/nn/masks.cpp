#include "vitscope/nn/masks.hpp"

#include <limits>

namespace vitscope::nn {

namespace {

template <class T>
T additive_from_bool_impl(const T& bool_mask) {
  constexpr float neg_inf = -std::numeric_limits<float>::infinity();
  T additive = T::from_shape(bool_mask.shape());
  std::transform(bool_mask.begin(), bool_mask.end(), additive.begin(),
                 [](float masked) { return masked != 0.0f ? neg_inf : 0.0f; });
  return additive;
}

}  // namespace

Tensor3 additive_from_bool(const Tensor3& bool_mask) { return additive_from_bool_impl(bool_mask); }
Tensor2 additive_from_bool(const Tensor2& bool_mask) { return additive_from_bool_impl(bool_mask); }

AttnMask attn_mask_2d(const Tensor2& mask) {
  AttnMask mask3 = AttnMask::from_shape({1, mask.shape(0), mask.shape(1)});
  std::copy(mask.begin(), mask.end(), mask3.begin());
  return mask3;
}

Tensor2 generate_square_subsequent_mask(int64_t sz) {
  const std::size_t n = static_cast<std::size_t>(sz);
  Tensor2 mask = xt::zeros<float>({n, n});
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = i + 1; j < n; ++j) mask(i, j) = -std::numeric_limits<float>::infinity();
  }
  return mask;
}

}  // namespace vitscope::nn
