#pragma once
// Parameters under PyTorch's state_dict names, strict loading and seeded initialisation.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "vitscope/nn/multihead_attention.hpp"
#include "vitscope/nn/transformer.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope {

// A view of one parameter tensor owned by a module.
struct Parameter {
  std::string name;  // state_dict key, e.g. "encoder.layers.0.self_attn.in_proj_weight"
  Shape shape;
  float* data;

  std::size_t numel() const {
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    return n;
  }
};

// In state_dict order (PyTorch's registration order). Absent optional tensors are not listed.
std::vector<Parameter> named_parameters(nn::Transformer& model, const std::string& prefix = "");
std::vector<Parameter> named_parameters(nn::MultiheadAttention& module, const std::string& prefix = "");

std::size_t parameter_count(const std::vector<Parameter>& parameters);

// Copies tensors into parameters, as load_state_dict(strict=True): throws
// vitscope::Error("state_dict_mismatch") naming every missing, unexpected and wrong-shape tensor
// (with both shapes). `source` names the file in the message.
void load_state_dict(const std::vector<Parameter>& parameters,
                     const std::vector<NamedTensor>& tensors, const std::string& source);

// nn.Transformer's initialisation, seeded: xavier-uniform for every parameter of rank > 1
// (as Transformer._reset_parameters), PyTorch's defaults for the rest (Linear biases
// uniform(±1/sqrt(in)), attention biases 0, LayerNorm 1 and 0).
void reset_parameters(nn::Transformer& model, uint64_t seed);

}  // namespace vitscope
