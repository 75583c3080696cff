#include "vitscope/model_file.hpp"

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "vitscope/error.hpp"
#include "vitscope/io/safetensors.hpp"
#include "vitscope/state_dict.hpp"

namespace vitscope {

namespace {

using Metadata = std::map<std::string, std::string>;

constexpr int64_t kMaxWidth = 1 << 16;  // embed_dim, kdim, vdim of a bare attention file

// Reads typed values out of __metadata__, naming the file and key in every error.
class MetadataReader {
 public:
  MetadataReader(const Metadata& metadata, const std::string& source)
      : metadata_(metadata), source_(source) {}

  const std::string& text(const std::string& key) const {
    auto it = metadata_.find(key);
    if (it == metadata_.end()) fail(key, "is missing");
    return it->second;
  }

  int64_t integer(const std::string& key) const {
    const std::string& value = text(key);
    errno = 0;
    char* end = nullptr;
    const long long parsed = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno == ERANGE) fail(key, "'" + value + "' is not an integer");
    return parsed;
  }

  // 0 when the key is absent: PyTorch's None for kdim / vdim.
  int64_t integer_or_zero(const std::string& key) const {
    return metadata_.count(key) ? integer(key) : 0;
  }

  double number(const std::string& key) const {
    const std::string& value = text(key);
    char* end = nullptr;
    const double parsed = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0') fail(key, "'" + value + "' is not a number");
    return parsed;
  }

  bool flag(const std::string& key) const {
    const std::string& value = text(key);
    if (value == "true" || value == "True") return true;
    if (value == "false" || value == "False") return false;
    fail(key, "'" + value + "' is not true or false");
  }

  bool flag_or(const std::string& key, bool fallback) const {
    return metadata_.count(key) ? flag(key) : fallback;
  }

  void expect_architecture(const std::string& architecture) const {
    if (text("architecture") != architecture) {
      fail("architecture", "'" + text("architecture") + "' is not " + architecture);
    }
  }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error("bad_metadata", source_ + ": metadata " + key + " " + what);
  }

 private:
  const Metadata& metadata_;
  const std::string& source_;
};

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
  read.expect_architecture("Transformer");
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
