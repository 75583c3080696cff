#pragma once
// The model file argument, shared by every command that loads a model.

#include <string>

#include <CLI/CLI.hpp>

namespace vitscope::cli {

// Registers the required model file on command as name ("--model", or "model" for a positional).
void add_model_option(CLI::App& command, const std::string& name, std::string& model);

}  // namespace vitscope::cli
