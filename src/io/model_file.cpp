#include "vitscope/io/model_file.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "vitscope/error.hpp"
#include "vitscope/io/safetensors.hpp"
#include "vitscope/nn/state_dict.hpp"
#include "vitscope/io/metadata_reader.hpp"

namespace vitscope {

namespace {

using Metadata = std::map<std::string, std::string>;

constexpr int64_t kMaxWidth = 1 << 16;  // embed_dim, kdim, vdim of a bare attention file
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // as read_safetensors allows
constexpr std::size_t kMaxLayerDigits = 9;  // larger layer indices are left to the loader to refuse

// The tensors a state_dict of nn.Transformer always has, and the sizes they give.
const std::string kEncoderInProj = "encoder.layers.0.self_attn.in_proj_weight";  // (3E, E)
const std::string kEncoderLinear1 = "encoder.layers.0.linear1.weight";           // (F, E)

std::string bool_text(bool b) { return b ? "true" : "false"; }

std::string number_text(double x) {
  std::ostringstream out;
  out.precision(17);
  out << x;
  return out.str();
}

// The header's JSON read straight from the file, or nothing when anything about it is unusual:
// read_safetensors then checks the whole file and names what is wrong.
std::optional<ModelFileHeader> peek_header(const std::string& path) {
  using Json = nlohmann::json;
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  const std::streamoff size = in ? static_cast<std::streamoff>(in.tellg()) : -1;
  unsigned char length_bytes[8];
  if (size < 8 || !in.seekg(0) || !in.read(reinterpret_cast<char*>(length_bytes), sizeof length_bytes)) {
    return std::nullopt;
  }
  std::uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | length_bytes[i];
  if (length > kMaxHeaderBytes || length > static_cast<std::uint64_t>(size - 8)) return std::nullopt;
  std::string text(length, '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(length))) return std::nullopt;
  const Json header = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!header.is_object()) return std::nullopt;
  ModelFileHeader result;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) return std::nullopt;
      for (const auto& [name, text_value] : value.items()) {
        if (!text_value.is_string()) return std::nullopt;
        result.metadata[name] = text_value.get<std::string>();
      }
      continue;
    }
    if (!value.is_object() || !value.contains("shape") || !value["shape"].is_array()) return std::nullopt;
    Shape shape;
    for (const Json& d : value["shape"]) {
      if (!d.is_number_unsigned()) return std::nullopt;
      shape.push_back(d.get<std::size_t>());
    }
    result.shapes[key] = shape;
  }
  return result;
}

const NamedTensor* find_tensor(const std::vector<NamedTensor>& tensors,
                                   const std::string& name) {
  for (const NamedTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

// 1 + the largest N of the names "<stack>N.*" (0 without any): gaps are missing tensors, which
// the strict load names.
int64_t count_layers(const std::vector<NamedTensor>& tensors, const std::string& stack) {
  int64_t count = 0;
  for (const NamedTensor& t : tensors) {
    if (t.name.rfind(stack, 0) != 0) continue;
    const std::string rest = t.name.substr(stack.size());
    const std::size_t dot = rest.find('.');
    if (dot == 0 || dot == std::string::npos || dot > kMaxLayerDigits ||
        rest.find_first_not_of("0123456789") != dot) {
      continue;
    }
    count = std::max<int64_t>(count, std::stoll(rest.substr(0, dot)) + 1);
  }
  return count;
}

// A file without an architecture key: the options its tensors' shapes tell, where its metadata
// does not give them (PyTorch's state_dict has no decoder.norm only when it was removed).
void infer_from_tensors(const std::vector<NamedTensor>& tensors, const std::string& path,
                        Metadata& metadata, std::vector<std::string>& inferred) {
  for (const std::string& name : {kEncoderInProj, kEncoderLinear1}) {
    const NamedTensor* t = find_tensor(tensors, name);
    if (!t || t->shape.size() != 2) {
      throw Error("not_a_transformer",
                  path + ": no architecture metadata, and its tensors are not an nn.Transformer "
                         "state_dict (no 2-D " + name + ")");
    }
  }
  const int64_t decoder_layers = count_layers(tensors, "decoder.layers.");
  const std::map<std::string, std::string> shapes = {
      {"d_model", std::to_string(find_tensor(tensors, kEncoderInProj)->shape[1])},
      {"dim_feedforward", std::to_string(find_tensor(tensors, kEncoderLinear1)->shape[0])},
      {"num_encoder_layers", std::to_string(count_layers(tensors, "encoder.layers."))},
      {"num_decoder_layers", std::to_string(decoder_layers)},
      {"encoder_norm", bool_text(find_tensor(tensors, "encoder.norm.weight") != nullptr)},
      {"decoder_norm",
       bool_text(decoder_layers > 0 && find_tensor(tensors, "decoder.norm.weight") != nullptr)}};
  for (const auto& [key, value] : shapes) {
    if (metadata.emplace(key, value).second) inferred.push_back(key);
  }
}

// `given` into metadata: what the metadata lacks is added, what it has must agree.
void apply_arguments(const TransformerArguments& given, const std::string& path, Metadata& metadata,
                     std::vector<std::string>& inferred) {
  const Metadata file_metadata = metadata;
  const MetadataReader read(file_metadata, path);
  const auto apply = [&](const std::string& key, const std::string& text, bool agrees) {
    if (!metadata.count(key)) {
      metadata[key] = text;
      inferred.push_back(key);
    } else if (!agrees) {
      throw Error("bad_arguments", path + ": " + key + " " + text +
                                       " disagrees with the file's metadata " + key + " " +
                                       metadata.at(key));
    }
  };
  const auto has = [&](const std::string& key) { return file_metadata.count(key) > 0; };
  if (given.nhead) {
    apply("nhead", std::to_string(*given.nhead), has("nhead") && read.integer("nhead") == *given.nhead);
  }
  if (given.activation) {
    apply("activation", *given.activation,
          has("activation") && read.text("activation") == *given.activation);
  }
  if (given.layer_norm_eps) {
    apply("layer_norm_eps", number_text(*given.layer_norm_eps),
          has("layer_norm_eps") && read.number("layer_norm_eps") == *given.layer_norm_eps);
  }
  if (given.batch_first) {
    apply("batch_first", bool_text(*given.batch_first),
          has("batch_first") && read.flag("batch_first") == *given.batch_first);
  }
  if (given.norm_first) {
    apply("norm_first", bool_text(*given.norm_first),
          has("norm_first") && read.flag("norm_first") == *given.norm_first);
  }
}

}  // namespace

std::string ModelFileHeader::architecture() const {
  const auto it = metadata.find("architecture");
  return it == metadata.end() ? "" : it->second;
}

ModelFileHeader read_model_header(const std::string& path) {
  if (std::optional<ModelFileHeader> header = peek_header(path)) return *header;
  io::SafetensorsFile file = io::read_safetensors(path);
  ModelFileHeader header{std::move(file.metadata), {}};
  for (const NamedTensor& t : file.tensors) header.shapes[t.name] = t.shape;
  return header;
}

std::vector<std::string> missing_transformer_arguments(const Metadata& metadata,
                                                       const TransformerArguments& given) {
  const std::vector<std::pair<std::string, bool>> arguments = {
      {"nhead", given.nhead.has_value()},
      {"activation", given.activation.has_value()},
      {"layer_norm_eps", given.layer_norm_eps.has_value()},
      {"batch_first", given.batch_first.has_value()},
      {"norm_first", given.norm_first.has_value()}};
  std::vector<std::string> missing;
  for (const auto& [key, is_given] : arguments) {
    if (!is_given && !metadata.count(key)) missing.push_back(key);
  }
  return missing;
}

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

TransformerFile load_transformer(const std::string& path, const TransformerArguments& given) {
  io::SafetensorsFile file = io::read_safetensors(path);
  const bool bare = !file.metadata.count("architecture");
  Metadata metadata = file.metadata;
  std::vector<std::string> inferred;
  if (bare) {
    infer_from_tensors(file.tensors, path, metadata, inferred);
  } else {
    MetadataReader(file.metadata, path).expect_architecture("Transformer");
  }
  apply_arguments(given, path, metadata, inferred);
  const std::vector<std::string> missing = missing_transformer_arguments(metadata, {});
  if (bare && !missing.empty()) {
    std::string names;
    for (const std::string& key : missing) names += (names.empty() ? "" : ", ") + key;
    throw Error("missing_arguments", path + ": no architecture metadata, and neither its metadata "
                                            "nor the arguments give " + names);
  }
  const nn::TransformerOptions options = transformer_options_from_metadata(metadata, path);
  if (bare && options.num_decoder_layers == 0) {
    // nn.Transformer(num_decoder_layers=0) still saves decoder.norm, which never runs.
    file.tensors.erase(std::remove_if(file.tensors.begin(), file.tensors.end(),
                                      [](const NamedTensor& t) {
                                        return t.name.rfind("decoder.norm.", 0) == 0;
                                      }),
                       file.tensors.end());
  }
  TransformerFile result{nn::Transformer(options), std::move(file.metadata), std::move(inferred)};
  const MetadataReader read(result.metadata, path);
  if (read.has("position_mode")) {
    if (read.text("position_mode") != "attention") {
      read.fail("position_mode", "'" + read.text("position_mode") + "' is not attention");
    }
    result.pos_in_attention = true;
  }
  load_state_dict(named_parameters(result.model), file.tensors, path);
  return result;
}

void save_transformer(nn::Transformer& model, const std::string& path) {
  std::vector<NamedTensor> tensors;
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
  nn::MultiheadAttentionOptions options;
  options.embed_dim = embed_dim;
  options.num_heads = num_heads;
  options.bias = read.flag("bias");
  options.add_bias_kv = read.flag("add_bias_kv");
  options.add_zero_attn = read.flag("add_zero_attn");
  options.kdim = kdim;
  options.vdim = vdim;
  options.batch_first = read.flag("batch_first");
  nn::MultiheadAttention module;
  try {
    module = nn::MultiheadAttention(options);
  } catch (const Error& e) {
    if (e.code() == "bad_metadata") throw;
    throw Error("bad_metadata", path + ": " + e.what());
  }
  load_state_dict(named_parameters(module), file.tensors, path);
  return module;
}

}  // namespace vitscope
