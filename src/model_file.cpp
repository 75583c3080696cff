#include "vitscope/model_file.hpp"

#include <sstream>

#include "vitscope/error.hpp"
#include "vitscope/io/safetensors.hpp"
#include "vitscope/state_dict.hpp"
#include "metadata_reader.hpp"

namespace vitscope {

namespace {

using Metadata = std::map<std::string, std::string>;

constexpr int64_t kMaxWidth = 1 << 16;  // embed_dim, kdim, vdim of a bare attention file

std::string bool_text(bool b) { return b ? "true" : "false"; }

std::string number_text(double x) {
  std::ostringstream out;
  out.precision(17);
  out << x;
  return out.str();
}

}  // namespace

Metadata to_metadata(const nn::TransformerOptions& o) {
  return {{"architecture", "Transformer"},
          {"d_model", std::to_string(o.d_model)},
          {"nhead", std::to_string(o.nhead)},
          {"num_encoder_layers", std::to_string(o.num_encoder_layers)},
          {"num_decoder_layers", std::to_string(o.num_decoder_layers)},
          {"dim_feedforward", std::to_string(o.dim_feedforward)},
          {"activation", nn::to_string(o.activation)},
          {"layer_norm_eps", number_text(o.layer_norm_eps)},
          {"batch_first", bool_text(o.batch_first)},
          {"norm_first", bool_text(o.norm_first)},
          {"encoder_norm", bool_text(o.encoder_norm)},
          {"decoder_norm", bool_text(o.decoder_norm)}};
}

nn::TransformerOptions transformer_options_from_metadata(const Metadata& metadata,
                                                         const std::string& source) {
  const MetadataReader read(metadata, source);
  nn::TransformerOptions o;
  o.d_model = read.integer("d_model");
  o.nhead = read.integer("nhead");
  o.num_encoder_layers = read.integer("num_encoder_layers");
  o.num_decoder_layers = read.integer("num_decoder_layers");
  o.dim_feedforward = read.integer("dim_feedforward");
  try {
    o.activation = nn::activation_from_string(read.text("activation"));
  } catch (const Error& e) {
    read.fail("activation", e.what());
  }
  o.layer_norm_eps = read.number("layer_norm_eps");
  o.batch_first = read.flag("batch_first");
  o.norm_first = read.flag("norm_first");
  o.encoder_norm = read.flag_or("encoder_norm", true);
  o.decoder_norm = read.flag_or("decoder_norm", o.num_decoder_layers > 0);
  try {
    nn::validate(o);
  } catch (const Error& e) {
    throw Error("bad_metadata", source + ": " + e.what());
  }
  return o;
}

TransformerFile load_transformer(const std::string& path) {
  io::SafetensorsFile file = io::read_safetensors(path);
  MetadataReader(file.metadata, path).expect_architecture("Transformer");
  TransformerFile result{nn::Transformer(transformer_options_from_metadata(file.metadata, path)),
                         std::move(file.metadata)};
  load_state_dict(named_parameters(result.model), file.tensors, path);
  return result;
}

void save_transformer(nn::Transformer& model, const std::string& path) {
  std::vector<io::NamedTensor> tensors;
  for (const Parameter& p : named_parameters(model)) {
    tensors.push_back({p.name, p.shape, std::vector<float>(p.data, p.data + p.numel())});
  }
  io::write_safetensors(path, tensors, to_metadata(model.options));
}

nn::MultiheadAttention load_multihead_attention(const std::string& path) {
  io::SafetensorsFile file = io::read_safetensors(path);
  const MetadataReader read(file.metadata, path);
  read.expect_architecture("MultiheadAttention");
  const int64_t embed_dim = read.integer("embed_dim");
  const int64_t num_heads = read.integer("num_heads");
  const int64_t kdim = read.integer_or_zero("kdim");
  const int64_t vdim = read.integer_or_zero("vdim");
  for (const auto& [key, value] : {std::pair{"embed_dim", embed_dim}, {"kdim", kdim}, {"vdim", vdim}}) {
    if (value < 0 || value > kMaxWidth) read.fail(key, "is not in 0.." + std::to_string(kMaxWidth));
  }
  nn::MultiheadAttention module;
  try {
    module = nn::MultiheadAttention(embed_dim, num_heads, read.flag("bias"),
                                    read.flag("add_bias_kv"), read.flag("add_zero_attn"),
                                    kdim, vdim,
                                    read.flag("batch_first"));
  } catch (const Error& e) {
    if (e.code() == "bad_metadata") throw;
    throw Error("bad_metadata", path + ": " + e.what());
  }
  load_state_dict(named_parameters(module), file.tensors, path);
  return module;
}

}  // namespace vitscope
