#include "vitscope/nn/linear.hpp"

#include <cblas.h>

namespace vitscope::nn {

void linear_rows(const float* rows, std::size_t count, std::size_t k, const float* weight,
                 std::size_t n, const float* bias, float* out) {
  if (count == 0 || n == 0) return;
  // Start from the bias so the GEMM accumulates onto it (beta = 1) instead of a second pass.
  float beta = 0.0f;
  if (bias != nullptr) {
    for (std::size_t r = 0; r < count; ++r) std::copy(bias, bias + n, out + r * n);
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(count),
              static_cast<int>(n), static_cast<int>(k), 1.0f, rows, static_cast<int>(k), weight,
              static_cast<int>(k), beta, out, static_cast<int>(n));
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
