#include "vitscope/nn/masks.hpp"

#include <algorithm>
#include <limits>

#include "vitscope/error.hpp"

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

void require_rank(bool ok, const Shape& shape, bool is_bool, const std::string& name,
                  const std::string& wanted) {
  if (ok) return;
  throw Error("bad_input", name + ": expected " + wanted + ", got " +
                               (is_bool ? "bool " : "float32 ") + shape_to_string(shape));
}

template <class Tensor>
Tensor from_values(const Shape& shape, const std::vector<float>& values) {
  typename Tensor::shape_type fixed{};
  std::copy(shape.begin(), shape.end(), fixed.begin());
  Tensor tensor = Tensor::from_shape(fixed);
  std::copy(values.begin(), values.end(), tensor.begin());
  return tensor;
}

}  // namespace

Tensor3 additive_from_bool(const Tensor3& bool_mask) { return additive_from_bool_impl(bool_mask); }
Tensor2 additive_from_bool(const Tensor2& bool_mask) { return additive_from_bool_impl(bool_mask); }

AttnMask attn_mask_2d(const Tensor2& mask) {
  AttnMask mask3 = AttnMask::from_shape({1, mask.shape(0), mask.shape(1)});
  std::copy(mask.begin(), mask.end(), mask3.begin());
  return mask3;
}

AttnMask to_attn_mask(const Shape& shape, const std::vector<float>& values, bool is_bool,
                      const std::string& name) {
  require_rank(shape.size() == 2 || shape.size() == 3, shape, is_bool, name,
               "a float32 or bool mask of shape (L,S) or (N*nhead,L,S)");
  const AttnMask mask = shape.size() == 2 ? attn_mask_2d(from_values<Tensor2>(shape, values))
                                          : from_values<Tensor3>(shape, values);
  return is_bool ? additive_from_bool(mask) : mask;
}

KeyPaddingMask to_key_padding_mask(const Shape& shape, const std::vector<float>& values,
                                   bool is_bool, const std::string& name) {
  require_rank(shape.size() == 2, shape, is_bool, name, "a float32 or bool mask of shape (N,S)");
  const KeyPaddingMask mask = from_values<Tensor2>(shape, values);
  return is_bool ? additive_from_bool(mask) : mask;
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
