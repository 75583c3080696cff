#pragma once
// The feed-forward activations nn.Transformer accepts: relu and gelu (exact, erf form).

#include <string>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::nn {

enum class Activation { relu, gelu };

// "relu" / "gelu" -> Activation; anything else throws vitscope::Error("unknown_activation").
Activation activation_from_string(const std::string& name);
std::string to_string(Activation activation);

// In place, element-wise.
void apply_activation(Activation activation, Tensor3& x);

}  // namespace vitscope::nn
