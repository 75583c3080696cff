#pragma once
// Model files: safetensors holding a state_dict, with the constructor arguments as
// __metadata__ strings under their PyTorch names (see README, "Model files").

#include <map>
#include <string>

#include "vitscope/nn/multihead_attention.hpp"
#include "vitscope/nn/transformer.hpp"

namespace vitscope {

// "architecture" plus the options under their PyTorch names, as strings.
std::map<std::string, std::string> to_metadata(const nn::TransformerOptions& options);
// The options under their PyTorch names (whatever the architecture that embeds them).
nn::TransformerOptions transformer_options_from_metadata(
    const std::map<std::string, std::string>& metadata, const std::string& source);

struct TransformerFile {
  nn::Transformer model;
  std::map<std::string, std::string> metadata;
};

// Throws vitscope::Error for unreadable, malformed or non-fitting files.
TransformerFile load_transformer(const std::string& path);
// Written atomically.
void save_transformer(nn::Transformer& model, const std::string& path);

// A bare MultiheadAttention file (architecture "MultiheadAttention"), as tools/export_pytorch.py
// writes for attention-only tests.
nn::MultiheadAttention load_multihead_attention(const std::string& path);

}  // namespace vitscope
