#include "model_option.hpp"

namespace vitscope::cli {

void add_model_option(CLI::App& command, const std::string& name, std::string& model) {
  command.add_option(name, model, "model file (.safetensors)")->type_name("FILE")->required();
}

}  // namespace vitscope::cli
