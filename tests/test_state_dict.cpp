// state_dict keys, strict loading, seeded initialisation and model files.

#include "support.hpp"
#include "vitscope/io/safetensors.hpp"
#include "vitscope/io/model_file.hpp"
#include "vitscope/nn/state_dict.hpp"

using namespace vitscope;
using test::error_code;

namespace {

nn::TransformerOptions small_options() {
  nn::TransformerOptions o;
  o.d_model = 8;
  o.nhead = 2;
  o.num_encoder_layers = 2;
  o.num_decoder_layers = 1;
  o.dim_feedforward = 16;
  return o;
}

std::map<std::string, Shape> keys_and_shapes(nn::Transformer& model) {
  std::map<std::string, Shape> out;
  for (const Parameter& p : named_parameters(model)) out[p.name] = p.shape;
  return out;
}

}  // namespace

TEST_CASE("parameters carry PyTorch's state_dict keys and shapes", "[state_dict]") {
  nn::Transformer model(small_options());
  const auto keys = keys_and_shapes(model);
  REQUIRE(keys.at("encoder.layers.0.self_attn.in_proj_weight") == Shape{24, 8});
  REQUIRE(keys.at("encoder.layers.1.self_attn.out_proj.bias") == Shape{8});
  REQUIRE(keys.at("encoder.layers.1.linear1.weight") == Shape{16, 8});
  REQUIRE(keys.at("encoder.norm.weight") == Shape{8});
  REQUIRE(keys.at("decoder.layers.0.multihead_attn.in_proj_bias") == Shape{24});
  REQUIRE(keys.at("decoder.layers.0.norm3.bias") == Shape{8});
  REQUIRE(keys.at("decoder.norm.bias") == Shape{8});
  // 2 encoder layers x 12 + encoder.norm 2 + 1 decoder layer x 18 + decoder.norm 2
  REQUIRE(keys.size() == 2 * 12 + 2 + 18 + 2);
  // sum(p.numel() for p in torch.nn.Transformer(8, 2, 2, 1, 16).parameters()): 2 x 600 + 16 + 904 + 16
  REQUIRE(parameter_count(named_parameters(model)) == 2136);
}

TEST_CASE("reset_parameters is seeded and xavier-bounded", "[state_dict]") {
  nn::Transformer a(small_options()), b(small_options()), c(small_options());
  reset_parameters(a, 1);
  reset_parameters(b, 1);
  reset_parameters(c, 2);
  const auto pa = named_parameters(a), pb = named_parameters(b), pc = named_parameters(c);
  const float bound = std::sqrt(6.0f / (8 + 24));  // in_proj_weight (24, 8)
  REQUIRE(pa[0].name == "encoder.layers.0.self_attn.in_proj_weight");
  bool all_equal_ab = true, all_equal_ac = true;
  for (std::size_t i = 0; i < pa[0].numel(); ++i) {
    REQUIRE(std::fabs(pa[0].data[i]) <= bound);
    all_equal_ab &= pa[0].data[i] == pb[0].data[i];
    all_equal_ac &= pa[0].data[i] == pc[0].data[i];
  }
  REQUIRE(all_equal_ab);
  REQUIRE_FALSE(all_equal_ac);
  REQUIRE(a.encoder.norm->weight(0) == 1.0f);
  REQUIRE(a.encoder.layers[0].self_attn.in_proj_bias(0) == 0.0f);
}

TEST_CASE("a saved model loads back identically and computes the same", "[state_dict]") {
  nn::TransformerOptions options = small_options();
  options.activation = nn::Activation::gelu;
  options.layer_norm_eps = 1e-3;
  options.norm_first = true;
  nn::Transformer model(options);
  reset_parameters(model, 3);
  const test::TempDir dir;
  const std::string path = dir.file("roundtrip.safetensors");
  save_transformer(model, path);

  TransformerFile loaded = load_transformer(path);
  REQUIRE(loaded.metadata.at("activation") == "gelu");
  REQUIRE(loaded.model.options.layer_norm_eps == 1e-3);
  REQUIRE(loaded.model.options.norm_first);
  const auto original = named_parameters(model), reloaded = named_parameters(loaded.model);
  REQUIRE(original.size() == reloaded.size());
  for (std::size_t i = 0; i < original.size(); ++i) {
    REQUIRE(original[i].name == reloaded[i].name);
    REQUIRE(std::equal(original[i].data, original[i].data + original[i].numel(), reloaded[i].data));
  }
}

TEST_CASE("strict loading names missing, unexpected and wrong-shape tensors", "[state_dict]") {
  nn::Transformer model(small_options());
  std::vector<NamedTensor> tensors;
  for (const Parameter& p : named_parameters(model)) {
    tensors.push_back({p.name, p.shape, std::vector<float>(p.numel(), 0.0f)});
  }
  tensors.erase(tensors.begin());  // drops encoder.layers.0.self_attn.in_proj_weight
  tensors.push_back({"encoder.layers.9.linear1.weight", {1}, {0.0f}});
  tensors[0].shape = {23};  // encoder.layers.0.self_attn.in_proj_bias
  tensors[0].data.resize(23);
  try {
    load_state_dict(named_parameters(model), tensors, "model.safetensors");
    FAIL("no error");
  } catch (const Error& e) {
    const std::string message = e.what();
    REQUIRE(e.code() == "state_dict_mismatch");
    REQUIRE_THAT(message, Catch::Contains("missing encoder.layers.0.self_attn.in_proj_weight (24, 8)"));
    REQUIRE_THAT(message, Catch::Contains("unexpected encoder.layers.9.linear1.weight"));
    REQUIRE_THAT(message, Catch::Contains(
        "encoder.layers.0.self_attn.in_proj_bias is (23) in the file, the model expects (24)"));
  }
}

TEST_CASE("metadata that cannot make a model is rejected", "[state_dict]") {
  nn::Transformer model(small_options());
  const test::TempDir dir;
  const std::string path = dir.file("bad_metadata.safetensors");
  auto write_with = [&](const std::string& key, const std::string& value) {
    std::vector<NamedTensor> tensors;
    for (const Parameter& p : named_parameters(model)) {
      tensors.push_back({p.name, p.shape, std::vector<float>(p.numel(), 0.0f)});
    }
    auto metadata = to_metadata(model.options);
    if (value.empty()) {
      metadata.erase(key);
    } else {
      metadata[key] = value;
    }
    io::write_safetensors(path, tensors, metadata);
  };
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"nhead", "3"},          {"activation", "tanh"},     {"num_encoder_layers", "100000"},
      {"d_model", "eight"},    {"layer_norm_eps", "-1"},   {"batch_first", "yes"},
      {"dim_feedforward", ""}, {"architecture", "Conv2d"}, {"d_model", "99999999999999999999"}};
  for (const auto& [key, value] : bad) {
    INFO(key << " = '" << value << "'");
    write_with(key, value);
    REQUIRE(error_code([&] { load_transformer(path); }) == "bad_metadata");
  }
}

TEST_CASE("an encoder-only model has no decoder tensors and refuses a target", "[state_dict]") {
  nn::TransformerOptions options = small_options();
  options.num_decoder_layers = 0;
  options.decoder_norm = false;
  nn::Transformer model(options);
  REQUIRE(model.encoder_only());
  for (const Parameter& p : named_parameters(model)) REQUIRE(p.name.rfind("encoder.", 0) == 0);
  const Tensor3 x = xt::zeros<float>({3, 1, 8});
  REQUIRE(error_code([&] { model.forward(x, x); }) == "encoder_only");
}
