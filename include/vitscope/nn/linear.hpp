#pragma once
// nn::Linear, as torch.nn.Linear: y = x W^T + b.

#include <cstdint>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::nn {

class Linear {
 public:
  Linear() = default;
  Linear(int64_t in_features, int64_t out_features, bool bias = true);

  // input: (..., in_features) -> (..., out_features); the leading dimensions are flattened rows.
  Tensor3 forward(const Tensor3& input) const;

  // rows: `count` contiguous rows of in_features -> `out` (count rows of out_features).
  void forward_rows(const float* rows, std::size_t count, float* out) const;

  int64_t in_features = 0;
  int64_t out_features = 0;
  Tensor2 weight;  // (out_features, in_features)
  Tensor1 bias;    // (out_features), or empty when bias=false
};

// out (count, n) = rows (count, k) · weight (n, k)^T [+ bias (n)]: the GEMM every projection uses.
void linear_rows(const float* rows, std::size_t count, std::size_t k, const float* weight,
                 std::size_t n, const float* bias, float* out);

}  // namespace vitscope::nn
