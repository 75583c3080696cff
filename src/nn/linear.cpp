#include "vitscope/nn/linear.hpp"

#include "kernels.hpp"

namespace vitscope::nn {

void linear_rows(const float* rows, std::size_t count, std::size_t k, const float* weight,
                 std::size_t n, const float* bias, float* out) {
  kernels::gemm_nt(count, n, k, rows, k, weight, k, bias, out, n, kernels::Act::none);
}

Linear::Linear(int64_t in_features, int64_t out_features, bool bias)
    : in_features(in_features),
      out_features(out_features),
      weight(Tensor2::from_shape({static_cast<std::size_t>(out_features),
                                  static_cast<std::size_t>(in_features)})) {
  weight.fill(0.0f);
  if (bias) this->bias = xt::zeros<float>({static_cast<std::size_t>(out_features)});
}

void Linear::forward_rows(const float* rows, std::size_t count, float* out) const {
  linear_rows(rows, count, static_cast<std::size_t>(in_features), weight.data(),
              static_cast<std::size_t>(out_features), bias.size() ? bias.data() : nullptr, out);
}

Tensor3 Linear::forward(const Tensor3& input) const {
  Tensor3 output = Tensor3::from_shape(
      {input.shape(0), input.shape(1), static_cast<std::size_t>(out_features)});
  forward_rows(input.data(), input.shape(0) * input.shape(1), output.data());
  return output;
}

}  // namespace vitscope::nn
