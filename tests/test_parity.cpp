// Parity with PyTorch 1.13: every fixture under tests/fixtures/transformer (made by tools/make_goldens.py on
// PyTorch's reference path) is run through the library and compared within its tolerance.

#include <filesystem>
#include <set>

#include "support.hpp"
#include "vitscope/io/model_file.hpp"
#include "vitscope/io/npy.hpp"
#include "vitscope/io/npy_tensors.hpp"
#include "vitscope/nn/masks.hpp"
#include "vitscope/nn/state_dict.hpp"

using namespace vitscope;
using vitscope::test::fixture_path;
using vitscope::test::read_case;
using vitscope::test::require_close;

namespace {

// Reads an optional input named in case.json with the matching converter, or returns none.
struct CaseInputs {
  std::string case_name;
  nlohmann::json inputs;

  bool has(const char* name) const { return inputs.contains(name); }
  std::string path(const char* name) const {
    return fixture_path(case_name, inputs.at(name).get<std::string>());
  }
  Tensor3 tensor(const char* name) const { return io::read_tensor3(path(name), name); }
  Tensor3 optional(const char* name) const { return has(name) ? tensor(name) : Tensor3(); }
  nn::AttnMask attn_mask(const char* name) const {
    if (!has(name)) return {};
    const io::NpyArray array = io::read_npy(path(name));
    return nn::to_attn_mask(array.shape, array.data, array.dtype == io::NpyDType::Bool, name);
  }
  nn::KeyPaddingMask key_padding_mask(const char* name) const {
    if (!has(name)) return {};
    const io::NpyArray array = io::read_npy(path(name));
    return nn::to_key_padding_mask(array.shape, array.data, array.dtype == io::NpyDType::Bool,
                                   name);
  }
};

void run_transformer_case(const std::string& name, const nlohmann::json& spec) {
  TransformerFile file = load_transformer(fixture_path(name, spec.at("model")));
  const CaseInputs in{name, spec.at("inputs")};
  const double tolerance = spec.at("tolerance");

  nn::AttentionRecorder recorder(file.model.attention_modules());
  const Tensor3 out =
      in.has("tgt")
          ? file.model.forward(in.tensor("src"), in.tensor("tgt"), in.attn_mask("src_mask"),
                               in.attn_mask("tgt_mask"), in.attn_mask("memory_mask"),
                               in.key_padding_mask("src_key_padding_mask"),
                               in.key_padding_mask("tgt_key_padding_mask"),
                               in.key_padding_mask("memory_key_padding_mask"), in.optional("pos"),
                               in.optional("query_pos"), &recorder)
          : file.model.encoder.forward(in.tensor("src"), in.attn_mask("src_mask"),
                                       in.key_padding_mask("src_key_padding_mask"),
                                       in.optional("pos"), &recorder);
  std::map<std::string, Tensor4> captured;
  for (const auto& [path, weights] : recorder.weights()) captured[path.str()] = weights;
  const io::NpyArray expected = io::read_npy(fixture_path(name, spec.at("expected")));
  REQUIRE(Shape(out.shape().begin(), out.shape().end()) == expected.shape);
  require_close(name + " output", out, expected, tolerance);

  REQUIRE(spec.contains("attention"));
  for (auto& [path, file_name] : spec.at("attention").items()) {
    REQUIRE(captured.count(path) == 1);
    const io::NpyArray weights = io::read_npy(fixture_path(name, file_name));
    REQUIRE(Shape(captured[path].shape().begin(), captured[path].shape().end()) == weights.shape);
    require_close(name + " " + path, captured[path], weights, tolerance);
  }
  REQUIRE(captured.size() == spec.at("attention").size());
}

void run_mha_case(const std::string& name, const nlohmann::json& spec) {
  const nn::MultiheadAttention mha = load_multihead_attention(fixture_path(name, spec.at("model")));
  const CaseInputs in{name, spec.at("inputs")};
  const double tolerance = spec.at("tolerance");
  const bool average = spec.at("average_attn_weights");

  const nn::MultiheadAttentionOutput result = mha.forward(
      in.tensor("query"), in.tensor("key"), in.tensor("value"),
      in.key_padding_mask("key_padding_mask"), spec.at("need_weights"), in.attn_mask("attn_mask"),
      average);
  const io::NpyArray expected = io::read_npy(fixture_path(name, spec.at("expected")));
  require_close(name + " attn_output", result.attn_output, expected, tolerance);

  const io::NpyArray weights = io::read_npy(fixture_path(name, spec.at("expected_weights")));
  Shape shape(result.attn_output_weights.shape().begin(), result.attn_output_weights.shape().end());
  if (average) shape.erase(shape.begin() + 1);  // vitscope keeps the head axis as 1; PyTorch drops it
  REQUIRE(shape == weights.shape);
  require_close(name + " attn_output_weights", result.attn_output_weights, weights, tolerance);
}

void run_case(const std::string& name) {
  const nlohmann::json spec = read_case(name);
  if (spec.at("kind") == "transformer") {
    run_transformer_case(name, spec);
  } else {
    REQUIRE(spec.at("kind") == "mha");
    run_mha_case(name, spec);
  }
}

}  // namespace

// One entry per fixture directory; the last test checks the list against the disk.
#define FOR_EACH_FIXTURE(X) \
  X("mha_bias_kv_zero_attn") \
  X("mha_kdim_vdim") \
  X("mha_no_bias_batch_first_3d_mask") \
  X("mha_self_attention") \
  X("transformer_3d_masks") \
  X("transformer_batch_first_norm_first_gelu") \
  X("transformer_bool_masks") \
  X("transformer_defaults") \
  X("transformer_detr_no_encoder_norm") \
  X("transformer_detr_positions") \
  X("transformer_encoder_only") \
  X("transformer_float_key_padding") \
  X("transformer_float_key_padding_with_attn_masks") \
  X("transformer_float_masks") \
  X("transformer_full_model_src_only") \
  X("transformer_single_head")

#define PARITY_CASE(name) \
  TEST_CASE("parity with PyTorch: " name, "[parity]") { run_case(name); }
FOR_EACH_FIXTURE(PARITY_CASE)

TEST_CASE("every fixture directory has a parity test", "[parity]") {
  std::set<std::string> on_disk;
  for (const auto& entry : std::filesystem::directory_iterator(VITSCOPE_FIXTURES_DIR)) {
    if (entry.is_directory()) on_disk.insert(entry.path().filename().string());
  }
#define FIXTURE_NAME(name) name,
  const std::set<std::string> listed = {FOR_EACH_FIXTURE(FIXTURE_NAME)};
  REQUIRE(on_disk == listed);
}
