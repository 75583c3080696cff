#include "vitscope/nn/activation.hpp"

#include "kernels.hpp"
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
  // PyTorch's default gelu is the exact one, x * Phi(x), not the tanh approximation.
  kernels::activation(activation == Activation::relu ? kernels::Act::relu : kernels::Act::gelu,
                      x.data(), x.size());
}

}  // namespace vitscope::nn
