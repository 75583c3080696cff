#pragma once
// Tensor aliases used across vitscope: fixed-rank, row-major float tensors.

#include <cstddef>
#include <string>
#include <vector>

#include <xtensor/xtensor.hpp>

namespace vitscope {

using Tensor1 = xt::xtensor<float, 1>;
using Tensor2 = xt::xtensor<float, 2>;
using Tensor3 = xt::xtensor<float, 3>;
using Tensor4 = xt::xtensor<float, 4>;

using Shape = std::vector<std::size_t>;

// "(2, 3, 4)": for error messages.
std::string shape_to_string(const Shape& shape);

}  // namespace vitscope
