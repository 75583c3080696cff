#include "model_option.hpp"

#include <algorithm>
#include <vector>

#include "commands.hpp"

namespace vitscope::cli {

namespace {

// The flag of each argument TransformerArguments holds, by its PyTorch name.
std::string flag_of(std::string key) {
  std::replace(key.begin(), key.end(), '_', '-');
  return "--" + key;
}

std::string joined(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (const std::string& part : parts) out += (out.empty() ? "" : separator) + part;
  return out;
}

bool any_given(const TransformerArguments& given) {
  return given.nhead || given.activation || given.layer_norm_eps || given.batch_first ||
         given.norm_first;
}

void add_bool_argument(CLI::App& command, const std::string& name, std::optional<bool>& value,
                       const std::string& description) {
  command
      .add_option_function<std::string>(
          name, [&value](const std::string& text) { value = text == "true"; }, description)
      ->type_name("BOOL")
      ->check(CLI::IsMember({"true", "false"}));
}

}  // namespace

void add_model_option(CLI::App& command, const std::string& name, std::string& model) {
  command.add_option(name, model, "model file (.safetensors)")->type_name("FILE")->required();
}

void add_transformer_arguments(CLI::App& command, TransformerArguments& given) {
  const std::string group = "nn.Transformer arguments of a file without them in its metadata "
                            "(a bare state_dict; the rest is read off the tensors' shapes)";
  command.add_option_function<int64_t>("--nhead", [&given](const int64_t& n) { given.nhead = n; },
                                       "nn.Transformer nhead")
      ->check(CLI::Range(int64_t{1}, int64_t{65536}))
      ->group(group);
  command
      .add_option_function<std::string>(
          "--activation", [&given](const std::string& a) { given.activation = a; },
          "nn.Transformer activation")
      ->check(CLI::IsMember({"relu", "gelu"}))
      ->group(group);
  command
      .add_option_function<double>(
          "--layer-norm-eps", [&given](const double& eps) { given.layer_norm_eps = eps; },
          "nn.Transformer layer_norm_eps (PyTorch's default: 1e-5)")
      ->check(CLI::PositiveNumber)
      ->group(group);
  add_bool_argument(command, "--batch-first", given.batch_first, "nn.Transformer batch_first");
  add_bool_argument(command, "--norm-first", given.norm_first, "nn.Transformer norm_first");
  command.get_option("--batch-first")->group(group);
  command.get_option("--norm-first")->group(group);
}

ModelFile load_model_file(const std::string& path, const TransformerArguments& given) {
  const ModelFileHeader header = read_model_header(path);
  ModelFile file;
  if (header.architecture() == "ImageTransformer") {
    if (any_given(given)) {
      throw UsageError(path + " is an image model, whose metadata holds its nn.Transformer "
                              "arguments: drop --nhead, --activation, --layer-norm-eps, "
                              "--batch-first and --norm-first");
    }
    file.image = image::load_image_model(path);
    return file;
  }
  // A file that is not nn.Transformer's state_dict at all is load_transformer's error to name.
  const bool transformer_tensors = header.shapes.count("encoder.layers.0.self_attn.in_proj_weight") > 0;
  if (header.architecture().empty() && transformer_tensors) {
    std::vector<std::string> flags;
    for (const std::string& key : missing_transformer_arguments(header.metadata, given)) {
      flags.push_back(flag_of(key));
    }
    if (!flags.empty()) {
      throw UsageError(path + " has no architecture metadata: to load it as an nn.Transformer "
                              "state_dict, give " + joined(flags, ", ") +
                       " (the constructor arguments its tensors do not tell)");
    }
  }
  file.transformer = load_transformer(path, given);
  return file;
}

}  // namespace vitscope::cli
