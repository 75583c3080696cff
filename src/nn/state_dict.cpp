#include "vitscope/nn/state_dict.hpp"

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "vitscope/error.hpp"

namespace vitscope {

namespace {

using namespace vitscope::nn;

// The state_dict keys, written once each. A module's keys are its prefix plus its own names,
// listed in PyTorch's registration order so files we write read like PyTorch's state_dict().
constexpr const char* kEncoderLayers = "encoder.layers.";
constexpr const char* kDecoderLayers = "decoder.layers.";
constexpr const char* kEncoderNorm = "encoder.norm.";
constexpr const char* kDecoderNorm = "decoder.norm.";

std::string layer_prefix(const char* stack, std::size_t i) {
  return stack + std::to_string(i) + ".";
}

template <class Container>
void add(std::vector<Parameter>& out, const std::string& name, Container& tensor) {
  if (tensor.size() == 0) return;  // an optional parameter this configuration does not have
  out.push_back({name, Shape(tensor.shape().begin(), tensor.shape().end()), tensor.data()});
}

void add_linear(std::vector<Parameter>& out, const std::string& prefix, Linear& m) {
  add(out, prefix + "weight", m.weight);
  add(out, prefix + "bias", m.bias);
}

void add_layer_norm(std::vector<Parameter>& out, const std::string& prefix, LayerNorm& m) {
  add(out, prefix + "weight", m.weight);
  add(out, prefix + "bias", m.bias);
}

void add_attention(std::vector<Parameter>& out, const std::string& prefix, MultiheadAttention& m) {
  add(out, prefix + "in_proj_weight", m.in_proj_weight);
  add(out, prefix + "q_proj_weight", m.q_proj_weight);
  add(out, prefix + "k_proj_weight", m.k_proj_weight);
  add(out, prefix + "v_proj_weight", m.v_proj_weight);
  add(out, prefix + "in_proj_bias", m.in_proj_bias);
  add(out, prefix + "bias_k", m.bias_k);
  add(out, prefix + "bias_v", m.bias_v);
  add_linear(out, prefix + "out_proj.", m.out_proj);
}

void add_encoder_layer(std::vector<Parameter>& out, const std::string& prefix,
                       TransformerEncoderLayer& m) {
  add_attention(out, prefix + "self_attn.", m.self_attn);
  add_linear(out, prefix + "linear1.", m.linear1);
  add_linear(out, prefix + "linear2.", m.linear2);
  add_layer_norm(out, prefix + "norm1.", m.norm1);
  add_layer_norm(out, prefix + "norm2.", m.norm2);
}

void add_decoder_layer(std::vector<Parameter>& out, const std::string& prefix,
                       TransformerDecoderLayer& m) {
  add_attention(out, prefix + "self_attn.", m.self_attn);
  add_attention(out, prefix + "multihead_attn.", m.multihead_attn);
  add_linear(out, prefix + "linear1.", m.linear1);
  add_linear(out, prefix + "linear2.", m.linear2);
  add_layer_norm(out, prefix + "norm1.", m.norm1);
  add_layer_norm(out, prefix + "norm2.", m.norm2);
  add_layer_norm(out, prefix + "norm3.", m.norm3);
}

void fill_uniform(float* data, std::size_t n, float bound, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> uniform(-bound, bound);
  for (std::size_t i = 0; i < n; ++i) data[i] = uniform(rng);
}

// PyTorch's defaults before Transformer._reset_parameters: nn.Linear's bias is
// uniform(±1/sqrt(in_features)); attention biases are 0; LayerNorm weight 1, bias 0.
void reset_biases(Linear& linear, std::mt19937_64& rng) {
  const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(linear.in_features)));
  fill_uniform(linear.bias.data(), linear.bias.size(), bound, rng);
}
void reset_biases(MultiheadAttention& attention) {
  attention.in_proj_bias.fill(0.0f);
  attention.out_proj.bias.fill(0.0f);
}
void reset_biases(LayerNorm& norm) {
  norm.weight.fill(1.0f);
  norm.bias.fill(0.0f);
}

}  // namespace

std::vector<Parameter> named_parameters(Transformer& model, const std::string& prefix) {
  std::vector<Parameter> out;
  for (std::size_t i = 0; i < model.encoder.layers.size(); ++i) {
    add_encoder_layer(out, prefix + layer_prefix(kEncoderLayers, i), model.encoder.layers[i]);
  }
  if (model.encoder.norm) add_layer_norm(out, prefix + kEncoderNorm, *model.encoder.norm);
  for (std::size_t i = 0; i < model.decoder.layers.size(); ++i) {
    add_decoder_layer(out, prefix + layer_prefix(kDecoderLayers, i), model.decoder.layers[i]);
  }
  if (model.decoder.norm) add_layer_norm(out, prefix + kDecoderNorm, *model.decoder.norm);
  return out;
}

std::vector<Parameter> named_parameters(MultiheadAttention& module, const std::string& prefix) {
  std::vector<Parameter> out;
  add_attention(out, prefix, module);
  return out;
}

std::size_t parameter_count(const std::vector<Parameter>& parameters) {
  std::size_t n = 0;
  for (const Parameter& p : parameters) n += p.numel();
  return n;
}

void load_state_dict(const std::vector<Parameter>& parameters,
                     const std::vector<NamedTensor>& tensors, const std::string& source) {
  std::map<std::string, const NamedTensor*> by_name;
  for (const NamedTensor& t : tensors) by_name[t.name] = &t;

  // Collect every problem first, so one message names all of them, as load_state_dict does.
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (const Parameter& p : parameters) {
    expected.insert(p.name);
    auto it = by_name.find(p.name);
    if (it == by_name.end()) {
      problems.push_back("missing " + p.name + " " + shape_to_string(p.shape));
    } else if (it->second->shape != p.shape) {
      problems.push_back(p.name + " is " + shape_to_string(it->second->shape) +
                         " in the file, the model expects " + shape_to_string(p.shape));
    }
  }
  for (const NamedTensor& t : tensors) {
    if (!expected.count(t.name)) problems.push_back("unexpected " + t.name);
  }
  if (!problems.empty()) {
    std::string message = source + ": tensors do not fit the model: ";
    for (std::size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
    throw Error("state_dict_mismatch", message);
  }
  for (const Parameter& p : parameters) {
    const std::vector<float>& data = by_name.at(p.name)->data;
    std::copy(data.begin(), data.end(), p.data);
  }
}

void reset_parameters(Transformer& model, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (TransformerEncoderLayer& layer : model.encoder.layers) {
    reset_biases(layer.self_attn);
    reset_biases(layer.linear1, rng);
    reset_biases(layer.linear2, rng);
    reset_biases(layer.norm1);
    reset_biases(layer.norm2);
  }
  for (TransformerDecoderLayer& layer : model.decoder.layers) {
    reset_biases(layer.self_attn);
    reset_biases(layer.multihead_attn);
    reset_biases(layer.linear1, rng);
    reset_biases(layer.linear2, rng);
    reset_biases(layer.norm1);
    reset_biases(layer.norm2);
    reset_biases(layer.norm3);
  }
  if (model.encoder.norm) reset_biases(*model.encoder.norm);
  if (model.decoder.norm) reset_biases(*model.decoder.norm);

  // Transformer._reset_parameters: xavier_uniform_ on every parameter of rank > 1, where
  // fan_in = size(1) * receptive field and fan_out = size(0) * receptive field.
  for (const Parameter& p : named_parameters(model)) {
    if (p.shape.size() < 2) continue;
    const std::size_t n = p.numel();
    const std::size_t receptive = n / (p.shape[0] * p.shape[1]);
    const double fan_in = static_cast<double>(p.shape[1] * receptive);
    const double fan_out = static_cast<double>(p.shape[0] * receptive);
    fill_uniform(p.data, n, static_cast<float>(std::sqrt(6.0 / (fan_in + fan_out))), rng);
  }
}

}  // namespace vitscope
