// vitscope info MODEL [--json]: what a model file holds.

#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "model_option.hpp"
#include "vitscope/model_file.hpp"
#include "vitscope/state_dict.hpp"

namespace vitscope::cli {

namespace {

struct InfoOptions {
  std::string model;
  bool json = false;
};

// One description for both outputs, in the order a reader wants it.
nlohmann::ordered_json describe(const std::string& path, TransformerFile& file) {
  const nn::TransformerOptions& o = file.model.options;
  nlohmann::ordered_json d;
  d["model"] = path;
  d["architecture"] = file.metadata.at("architecture");
  d["d_model"] = o.d_model;
  d["nhead"] = o.nhead;
  d["num_encoder_layers"] = o.num_encoder_layers;
  d["num_decoder_layers"] = o.num_decoder_layers;
  d["dim_feedforward"] = o.dim_feedforward;
  d["activation"] = nn::to_string(o.activation);
  d["layer_norm_eps"] = o.layer_norm_eps;
  d["batch_first"] = o.batch_first;
  d["norm_first"] = o.norm_first;
  d["encoder_norm"] = o.encoder_norm;
  d["decoder_norm"] = o.decoder_norm;
  d["encoder_only"] = file.model.encoder_only();
  d["parameters"] = parameter_count(named_parameters(file.model));
  d["metadata"] = file.metadata;
  return d;
}

std::string as_text(const nlohmann::ordered_json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

void print_text(const nlohmann::ordered_json& description) {
  for (const auto& [key, value] : description.items()) {
    if (key == "metadata") continue;
    std::cout << key << ": " << as_text(value) << "\n";
  }
  std::cout << "metadata:\n";
  for (const auto& [key, value] : description["metadata"].items()) {
    std::cout << "  " << key << ": " << as_text(value) << "\n";
  }
}

void run_info(const InfoOptions& options) {
  TransformerFile file = load_transformer(options.model);
  const nlohmann::ordered_json description = describe(options.model, file);
  if (options.json) {
    std::cout << description.dump(2) << "\n";
  } else {
    print_text(description);
  }
}

}  // namespace

Command add_info_command(CLI::App& app) {
  auto options = std::make_shared<InfoOptions>();
  CLI::App* command = app.add_subcommand(
      "info", "Print a model's architecture, options, parameter count and metadata");
  add_model_option(*command, "model", options->model);
  command->add_flag("--json", options->json, "print one JSON object");
  return {command, [options] { run_info(*options); }};
}

}  // namespace vitscope::cli
