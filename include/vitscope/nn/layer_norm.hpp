#pragma once
// nn::LayerNorm over the last dimension, as torch.nn.LayerNorm(normalized_shape, eps).

#include <cstdint>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::nn {

class LayerNorm {
 public:
  LayerNorm() = default;
  LayerNorm(int64_t normalized_shape, double eps = 1e-5);

  // input: (..., E) -> (..., E): (x - mean) / sqrt(var + eps) * weight + bias, biased variance.
  Tensor3 forward(const Tensor3& input) const;

  int64_t normalized_shape = 0;
  double eps = 1e-5;
  Tensor1 weight;  // (E), ones at construction
  Tensor1 bias;    // (E), zeros at construction
};

}  // namespace vitscope::nn
