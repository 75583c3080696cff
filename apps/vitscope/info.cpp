// vitscope info MODEL [--json]: what a model file holds, an nn.Transformer or an image model.

#include <array>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "model_option.hpp"
#include "vitscope/io/model_file.hpp"
#include "vitscope/nn/state_dict.hpp"

namespace vitscope::cli {

namespace {

using Json = nlohmann::ordered_json;

struct InfoOptions {
  std::string model;
  TransformerArguments given;
  bool json = false;
};

// The nn.Transformer's constructor arguments, as an nn.Transformer file and an image model show them.
Json describe_options(nn::Transformer& model) {
  const nn::TransformerOptions& o = model.options;
  Json d;
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
  d["encoder_only"] = model.encoder_only();
  d["parameters"] = parameter_count(named_parameters(model));
  return d;
}

// One description for both outputs, in the order a reader wants it.
Json describe(const std::string& path, TransformerFile& file) {
  Json d;
  d["model"] = path;
  d["architecture"] = "Transformer";
  d.update(describe_options(file.model));
  // Positions in every attention (DETR): forward needs --pos and --query-pos.
  if (file.pos_in_attention) d["position_mode"] = "attention";
  if (!file.inferred.empty()) d["inferred"] = file.inferred;  // not in the file's metadata
  d["metadata"] = file.metadata;
  return d;
}

// The float values as the metadata wrote them (0.485, not 0.48500001430511475).
std::vector<double> shortest(const std::array<float, 3>& values) {
  std::vector<double> out;
  for (float v : values) {
    char text[32];
    std::snprintf(text, sizeof text, "%.7g", v);
    out.push_back(std::strtod(text, nullptr));
  }
  return out;
}

std::string position_name(image::Position p) {
  return p == image::Position::sine ? "sine" : p == image::Position::learned ? "learned" : "none";
}

// The prefix tokens (CLS, distillation, registers) and what comes with them: the sequence-layout
// pos_embed they index, and the head on the CLS token. Every ImageModelOptions field of
// CLS-token ViTs is printed here, so a new one is added in this one place.
void describe_prefix_tokens(const image::ImageModelOptions& o, Json& d) {
  d["prefix_tokens"] = {{"cls_token", o.cls_token},
                        {"dist_token", o.dist_token},
                        {"num_register_tokens", o.num_register_tokens},
                        {"count", o.num_prefix_tokens()}};
  if (o.position == image::Position::learned) {
    d["positions"]["grid"] = o.pos_grid;
    d["positions"]["prefix_rows"] = o.pos_embed_prefix;
    d["positions"]["resize"] = image::grid_resize_name(o.pos_resize);
  }
  if (o.num_classes > 0) d["head"]["pool"] = o.head_pool == image::HeadPool::cls ? "cls" : "tokens";
}

// parameters: every value of the file's tensors (the image model's own and its Transformer's).
Json describe(const std::string& path, image::ImageModelFile& file, const ModelFileHeader& header) {
  image::ImageModel& model = file.model;
  const image::ImageModelOptions& o = model.options;
  Json d;
  d["model"] = path;
  d["architecture"] = "ImageTransformer";
  d["image_size"] = o.image_size;
  d["mean"] = shortest(o.mean);
  d["std"] = shortest(o.std);
  const image::PreprocessOptions preprocess = model.preprocess_options();
  d["preprocess"] = {{"resize_mode", image::resize_mode_name(o.resize.resize_mode)},
                     {"interpolation", image::interpolation_name(o.resize.interpolation)}};
  if (o.resize.resize_mode == image::ResizeMode::shorter_crop) {
    d["preprocess"]["resize_size"] = image::effective_resize_size(preprocess);
  }
  if (o.resize.resize_mode == image::ResizeMode::shorter_max) {
    d["preprocess"]["max_size"] = image::effective_max_size(preprocess);
  }
  d["stem"] = {{"in_chans", o.in_chans},
               {"patch_size", o.patch_size},
               {"stem_channels", o.stem_channels}};  // empty: the single p x p Conv2d
  if (o.backbone) {
    const image::ResNetOptions& r = *o.backbone;
    d["backbone"] = {{"kind", "resnet"},
                     {"block", r.block == image::ResNetBlock::Bottleneck ? "Bottleneck" : "BasicBlock"},
                     {"layers", r.layers},
                     {"planes", r.planes},
                     {"width_per_group", r.width_per_group},
                     {"dilation", r.dilation},
                     {"out_channels", model.backbone.out_channels()}};
  }
  d["positions"] = {{"kind", position_name(o.position)},
                    {"mode", o.position_mode == image::PositionMode::input ? "input" : "attention"}};
  d["target"] = model.transformer.encoder_only() ? "none (encoder only)"
                : o.target == image::Target::tokens ? "tokens"
                                                    : "queries";
  if (o.target == image::Target::queries) d["num_queries"] = o.num_queries;
  d["transformer"] = describe_options(model.transformer);
  d["head"]["num_classes"] = o.num_classes;
  d["head"]["class_names"] = o.class_names.size();
  if (o.detector) d["head"]["kind"] = "detr (class_embed with no-object, bbox_embed)";
  describe_prefix_tokens(o, d);
  std::size_t parameters = 0;
  for (const auto& [name, shape] : header.shapes) {
    std::size_t n = 1;
    for (std::size_t dim : shape) n *= dim;
    parameters += n;
  }
  d["parameters"] = parameters;
  d["metadata"] = file.metadata;
  return d;
}

std::string as_text(const Json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// key: value lines; an object's keys indented under its own.
void print_text(const Json& description, const std::string& indent = "") {
  for (const auto& [key, value] : description.items()) {
    if (value.is_object()) {
      std::cout << indent << key << ":\n";
      print_text(value, indent + "  ");
    } else {
      std::cout << indent << key << ": " << as_text(value) << "\n";
    }
  }
}

void run_info(const InfoOptions& options) {
  ModelFile file = load_model_file(options.model, options.given);
  const Json description =
      file.image ? describe(options.model, *file.image, read_model_header(options.model))
                 : describe(options.model, *file.transformer);
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
      "info",
      "Print a model's architecture, options, parameter count and metadata: an nn.Transformer "
      "file or an image model (its stem, positions, prefix tokens, transformer and head)");
  add_model_option(*command, "model", options->model);
  command->add_flag("--json", options->json, "print one JSON object");
  add_transformer_arguments(*command, options->given);
  return {command, [options] { run_info(*options); }};
}

}  // namespace vitscope::cli
