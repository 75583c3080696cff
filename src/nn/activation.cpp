#include "vitscope/nn/activation.hpp"

#include <cmath>

#include "vitscope/error.hpp"

namespace vitscope::nn {

Activation activation_from_string(const std::string& name) {
  if (name == "relu") return Activation::relu;
  if (name == "gelu") return Activation::gelu;
  throw Error("unknown_activation", "unknown activation '" + name + "' (expected relu or gelu)");
}

std::string to_string(Activation activation) {
  return activation == Activation::relu ? "relu" : "gelu";
}

void apply_activation(Activation activation, Tensor3& x) {
  float* v = x.data();
  const std::size_t n = x.size();
  if (activation == Activation::relu) {
    for (std::size_t i = 0; i < n; ++i) v[i] = v[i] > 0.0f ? v[i] : 0.0f;
    return;
  }
  // PyTorch's default gelu is the exact one, x * Phi(x), not the tanh approximation.
  constexpr float inv_sqrt2 = 0.70710678118654752440f;
  for (std::size_t i = 0; i < n; ++i) v[i] = 0.5f * v[i] * (1.0f + std::erf(v[i] * inv_sqrt2));
}

}  // namespace vitscope::nn
