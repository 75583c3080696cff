// The ResNet backbone against torchvision 0.14 (tools/make_resnet_fixtures.py): every case under
// tests/fixtures/resnet, C5 from random weights and random BatchNorm statistics, folded at load.

#include <algorithm>

#include "support.hpp"
#include "vitscope/image/resnet.hpp"
#include "vitscope/io/safetensors.hpp"

using namespace vitscope;
using namespace vitscope::image;

namespace {

std::string case_path(const std::string& name, const std::string& file) {
  return std::string(VITSCOPE_RESNET_FIXTURES_DIR) + "/" + name + "/" + file;
}

nlohmann::json read_resnet_case(const std::string& name) {
  std::ifstream in(case_path(name, "case.json"));
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

ResNetOptions case_options(const nlohmann::json& spec) {
  ResNetOptions options;
  options.block = spec.at("block") == "BasicBlock" ? ResNetBlock::BasicBlock : ResNetBlock::Bottleneck;
  options.layers = spec.at("layers").get<std::array<std::size_t, 4>>();
  options.planes = spec.at("planes").get<std::array<std::size_t, 4>>();
  options.width_per_group = spec.at("width_per_group");
  options.dilation = spec.at("dilation");
  return options;
}

Tensor4 read_pixels(const std::string& path) {
  const io::NpyArray array = io::read_npy(path);
  REQUIRE(array.shape.size() == 4);
  Tensor4 pixels = Tensor4::from_shape({array.shape[0], array.shape[1], array.shape[2], array.shape[3]});
  std::copy(array.data.begin(), array.data.end(), pixels.data());
  return pixels;
}

void run_case(const std::string& name) {
  const nlohmann::json spec = read_resnet_case(name);
  const std::string model = case_path(name, "model.safetensors");
  const ResNet net = load_resnet(io::read_safetensors(model).tensors, case_options(spec), "", model);
  for (const std::string& input : spec.at("inputs").get<std::vector<std::string>>()) {
    const Tensor4 c5 = net.forward(read_pixels(case_path(name, input + ".input.npy")));
    const io::NpyArray expected = io::read_npy(case_path(name, input + ".c5.npy"));
    REQUIRE(Shape(c5.shape().begin(), c5.shape().end()) == expected.shape);
    REQUIRE(c5.shape(1) == net.out_channels());
    test::require_close(name + " " + input + " C5", c5, expected, spec.at("tolerance"));
  }
}

// The case's tensors, renamed under prefix.
std::vector<NamedTensor> case_tensors(const std::string& name, const std::string& prefix) {
  std::vector<NamedTensor> tensors = io::read_safetensors(case_path(name, "model.safetensors")).tensors;
  for (NamedTensor& t : tensors) t.name = prefix + t.name;
  return tensors;
}

// The message of the vitscope::Error that f throws with code, or "" when it throws none.
template <class F>
std::string mismatch_message(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    REQUIRE(e.code() == "state_dict_mismatch");
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("ResNet BasicBlock C5 matches torchvision", "[resnet][parity]") { run_case("basic_2222"); }

TEST_CASE("ResNet Bottleneck C5 matches torchvision", "[resnet][parity]") {
  run_case("bottleneck_2112");
}

TEST_CASE("ResNet Bottleneck with DETR's dilated layer4 matches torchvision", "[resnet][parity]") {
  run_case("bottleneck_2112_dilation");
}

TEST_CASE("ResNet loads a DETR checkpoint's backbone.0.body. names and ignores the rest", "[resnet]") {
  const std::string name = "bottleneck_2112";
  const ResNetOptions options = case_options(read_resnet_case(name));
  std::vector<NamedTensor> tensors = case_tensors(name, "backbone.0.body.");
  tensors.push_back({"transformer.encoder.layers.0.linear1.bias", {2}, {0.0f, 0.0f}});
  const ResNet net = load_resnet(tensors, options, "backbone.0.body.", "detr.safetensors");
  const Tensor4 c5 = net.forward(read_pixels(case_path(name, "batch_64x80.input.npy")));
  test::require_close("prefixed C5", c5, io::read_npy(case_path(name, "batch_64x80.c5.npy")), 1e-4);
}

TEST_CASE("ResNet loading names a missing, mis-shaped or unexpected tensor", "[resnet]") {
  const std::string name = "basic_2222";
  const ResNetOptions options = case_options(read_resnet_case(name));
  std::vector<NamedTensor> tensors = case_tensors(name, "");

  SECTION("missing") {
    tensors.erase(std::find_if(tensors.begin(), tensors.end(),
                               [](const NamedTensor& t) { return t.name == "layer2.0.bn1.running_var"; }));
    const std::string message = mismatch_message([&] { load_resnet(tensors, options, "", "m.safetensors"); });
    CHECK(message.find("m.safetensors") != std::string::npos);
    CHECK(message.find("missing layer2.0.bn1.running_var (16)") != std::string::npos);
  }
  SECTION("mis-shaped") {
    for (NamedTensor& t : tensors) {
      if (t.name == "layer3.0.downsample.0.weight") t.shape = {32, 16, 1, 1, 1};
    }
    const std::string message = mismatch_message([&] { load_resnet(tensors, options, "", "m.safetensors"); });
    CHECK(message.find("layer3.0.downsample.0.weight is (32, 16, 1, 1, 1) in the file, the model "
                       "expects (32, 16, 1, 1)") != std::string::npos);
  }
  SECTION("unexpected, e.g. a Bottleneck file read as BasicBlock") {
    ResNetOptions bottleneck = options;
    bottleneck.block = ResNetBlock::Bottleneck;
    const std::string message = mismatch_message([&] { load_resnet(tensors, bottleneck, "", "m.safetensors"); });
    CHECK(message.find("missing layer1.0.conv3.weight") != std::string::npos);
    tensors.push_back({"fc.weight", {1}, {0.0f}});
    const std::string extra = mismatch_message([&] { load_resnet(tensors, options, "", "m.safetensors"); });
    CHECK(extra.find("unexpected fc.weight") != std::string::npos);
  }
}

TEST_CASE("ResNetOptions::named is torchvision's constructors", "[resnet]") {
  CHECK(ResNetOptions::named("resnet18").block == ResNetBlock::BasicBlock);
  CHECK(ResNetOptions::named("resnet34").layers == std::array<std::size_t, 4>{3, 4, 6, 3});
  CHECK(ResNetOptions::named("resnet50").block == ResNetBlock::Bottleneck);
  CHECK(ResNetOptions::named("resnet101").layers == std::array<std::size_t, 4>{3, 4, 23, 3});
  CHECK(test::error_code([] { ResNetOptions::named("resnet152x"); }) == "invalid_argument");
}
