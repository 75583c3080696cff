#pragma once
// Model files: safetensors holding a state_dict, with the constructor arguments as
// __metadata__ strings under their PyTorch names (see README, "Model files").

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vitscope/nn/multihead_attention.hpp"
#include "vitscope/nn/transformer.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope {

// "architecture" plus the options under their PyTorch names, as strings.
std::map<std::string, std::string> to_metadata(const nn::TransformerOptions& options);
// The options under their PyTorch names (whatever the architecture that embeds them).
nn::TransformerOptions transformer_options_from_metadata(
    const std::map<std::string, std::string>& metadata, const std::string& source);

// A model file's header alone, read without its tensor data: enough to tell which loader it needs.
struct ModelFileHeader {
  std::map<std::string, std::string> metadata;
  std::map<std::string, Shape> shapes;  // tensor name -> shape
  // The metadata's "architecture", or "" when it has none.
  std::string architecture() const;
};

// Throws vitscope::Error, as read_safetensors does, for a file it cannot read.
ModelFileHeader read_model_header(const std::string& path);

// The nn.Transformer constructor arguments no tensor shape tells (d_model, dim_feedforward, the
// layer counts and final norms are read off the tensors), for files whose metadata lacks them:
// a bare state_dict saved with safetensors. Each must agree with the metadata when both give it.
struct TransformerArguments {
  std::optional<int64_t> nhead;
  std::optional<std::string> activation;  // "relu" or "gelu"
  std::optional<double> layer_norm_eps;
  std::optional<bool> batch_first;
  std::optional<bool> norm_first;
};

// The arguments (PyTorch names, in the order above) that neither metadata nor given holds.
std::vector<std::string> missing_transformer_arguments(
    const std::map<std::string, std::string>& metadata, const TransformerArguments& given);

struct TransformerFile {
  nn::Transformer model;
  std::map<std::string, std::string> metadata;  // the file's own
  // Options the metadata did not hold, under their PyTorch names: read off the tensors' shapes
  // or given as arguments. Empty for a file written by vitscope or tools/export_pytorch.py.
  std::vector<std::string> inferred;
  // Metadata position_mode "attention": the model was trained with DETR's positions added in
  // every attention, so it needs them (nn::Transformer::forward's pos and query_pos).
  bool pos_in_attention = false;
};

// Throws vitscope::Error for unreadable, malformed or non-fitting files. A file without an
// "architecture" key loads when its tensors are nn.Transformer's state_dict, taking the
// constructor arguments from its metadata, then `given`, then the tensors' shapes; what none of
// them holds is Error("missing_arguments") naming each argument.
TransformerFile load_transformer(const std::string& path, const TransformerArguments& given = {});
// Written atomically.
void save_transformer(nn::Transformer& model, const std::string& path);

// A bare MultiheadAttention file (architecture "MultiheadAttention"), as tools/export_pytorch.py
// writes for attention-only tests.
nn::MultiheadAttention load_multihead_attention(const std::string& path);

}  // namespace vitscope
