#include "vitscope/nn/layer_norm.hpp"

#include <cmath>

namespace vitscope::nn {

LayerNorm::LayerNorm(int64_t normalized_shape, double eps)
    : normalized_shape(normalized_shape),
      eps(eps),
      weight(xt::ones<float>({static_cast<std::size_t>(normalized_shape)})),
      bias(xt::zeros<float>({static_cast<std::size_t>(normalized_shape)})) {}

Tensor3 LayerNorm::forward(const Tensor3& input) const {
  const std::size_t width = static_cast<std::size_t>(normalized_shape);
  const std::size_t rows = input.size() / width;
  Tensor3 output = Tensor3::from_shape(input.shape());
  const float* w = weight.data();
  const float* b = bias.data();
  for (std::size_t r = 0; r < rows; ++r) {
    const float* x = input.data() + r * width;
    float* y = output.data() + r * width;
    // Two passes in double: the mean first, then the biased variance around it, so rows with a
    // large offset keep their precision.
    double sum = 0.0;
    for (std::size_t i = 0; i < width; ++i) sum += x[i];
    const double mean = sum / static_cast<double>(width);
    double squares = 0.0;
    for (std::size_t i = 0; i < width; ++i) squares += (x[i] - mean) * (x[i] - mean);
    const double rstd = 1.0 / std::sqrt(squares / static_cast<double>(width) + eps);
    for (std::size_t i = 0; i < width; ++i) {
      y[i] = static_cast<float>((x[i] - mean) * rstd) * w[i] + b[i];
    }
  }
  return output;
}

}  // namespace vitscope::nn
