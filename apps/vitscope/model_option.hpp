#pragma once
// The model file argument, shared by every command that loads a model, and the one loader of
// info, bench and forward: an nn.Transformer file (with metadata, or a bare state_dict and the
// constructor arguments as flags) or an image model (architecture "ImageTransformer").

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "vitscope/image/image_model.hpp"
#include "vitscope/io/model_file.hpp"

namespace vitscope::cli {

// Registers the required model file on command as name ("--model", or "model" for a positional).
void add_model_option(CLI::App& command, const std::string& name, std::string& model);

// --nhead, --activation, --layer-norm-eps, --batch-first, --norm-first: the nn.Transformer
// arguments of a model file whose metadata does not hold them.
void add_transformer_arguments(CLI::App& command, TransformerArguments& given);

// Exactly one of the two is set.
struct ModelFile {
  std::optional<TransformerFile> transformer;
  std::optional<image::ImageModelFile> image;
};

// Throws UsageError when the file lacks constructor arguments no flag gave (naming each flag), or
// when the flags are given for an image model; vitscope::Error for bad files.
ModelFile load_model_file(const std::string& path, const TransformerArguments& given);

}  // namespace vitscope::cli
