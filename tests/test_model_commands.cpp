// info, bench and forward on every kind of model file: an image model, a Transformer file without
// its architecture key, and a bare state_dict with the constructor arguments given as flags.

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "cli_support.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/image/load.hpp"
#include "vitscope/image/sequence.hpp"
#include "vitscope/io/npy.hpp"
#include "vitscope/io/npy_tensors.hpp"
#include "vitscope/io/safetensors.hpp"
#include "vitscope/nn/kernel_level.hpp"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using vitscope::test::fixture_path;
using vitscope::test::quote;
using vitscope::test::read_case;
using vitscope::test::Run;
using vitscope::test::run_cli;
using vitscope::test::TempDir;

const std::string kDemoModel = std::string(VITSCOPE_ASSETS_DIR) + "/models/demo.safetensors";
const std::string kTinyModel = std::string(VITSCOPE_ASSETS_DIR) + "/models/tiny.safetensors";
// Every flag a bare state_dict needs, in the order the error lists them.
const std::vector<std::string> kArgumentFlags = {"--nhead", "--activation", "--layer-norm-eps",
                                                 "--batch-first", "--norm-first"};

// A one-line error with the given exit code.
void require_one_line_error(const Run& run, int exit_code) {
  INFO("stderr: " << run.err);
  REQUIRE(run.exit_code == exit_code);
  REQUIRE(run.err.rfind("vitscope: error: ", 0) == 0);
  REQUIRE(run.err.find('\n') == run.err.size() - 1);
}

// A fixture's model file rewritten with its metadata filtered by keep(key).
template <class Keep>
std::string rewrite_model(const TempDir& dir, const std::string& case_name, const std::string& name,
                          Keep keep, std::vector<vitscope::NamedTensor> extra = {}) {
  vitscope::io::SafetensorsFile file =
      vitscope::io::read_safetensors(fixture_path(case_name, "model.safetensors"));
  std::map<std::string, std::string> metadata;
  for (const auto& [key, value] : file.metadata) {
    if (keep(key)) metadata[key] = value;
  }
  for (auto& t : extra) file.tensors.push_back(std::move(t));
  const std::string path = dir.file(name);
  vitscope::io::write_safetensors(path, file.tensors, metadata);
  return path;
}

std::string forward_args(const std::string& case_name) {
  std::string args;
  const json spec = read_case(case_name);
  for (const auto& [name, file] : spec.at("inputs").items()) {
    std::string option = "--" + name;
    std::replace(option.begin(), option.end(), '_', '-');
    args += " " + option + " " + quote(fixture_path(case_name, file.get<std::string>()));
  }
  return args;
}

// forward on the fixture's inputs matches its PyTorch output.
void require_forward_matches(const std::string& model, const std::string& case_name,
                             const std::string& flags) {
  TempDir dir;
  const Run run = run_cli("forward --model " + quote(model) + forward_args(case_name) + flags +
                          " --out " + quote(dir.file("out.npy")) + " --threads 1");
  INFO("stderr: " << run.err);
  REQUIRE(run.exit_code == 0);
  const vitscope::io::NpyArray out = vitscope::io::read_npy(dir.file("out.npy"));
  const vitscope::io::NpyArray expected = vitscope::io::read_npy(fixture_path(case_name, "out.npy"));
  REQUIRE(out.shape == expected.shape);
  vitscope::test::require_close(case_name + " forward", out.data, expected,
                                read_case(case_name).at("tolerance").get<double>());
}

json info_json(const std::string& model, const std::string& flags = "") {
  const Run run = run_cli("info --json " + quote(model) + flags);
  INFO("stderr: " << run.err);
  REQUIRE(run.exit_code == 0);
  return json::parse(run.out);
}

json bench_json(const std::string& args) {
  const Run run = run_cli("bench " + args + " --repeat 1 --warmup 0 --threads 1");
  INFO("stderr: " << run.err);
  REQUIRE(run.exit_code == 0);
  return json::parse(run.out);
}

// The constructor arguments info prints, with the parameter count.
json transformer_fields(const json& info) {
  json fields;
  for (const char* key : {"architecture", "d_model", "nhead", "num_encoder_layers",
                          "num_decoder_layers", "dim_feedforward", "activation", "layer_norm_eps",
                          "batch_first", "norm_first", "encoder_norm", "decoder_norm",
                          "encoder_only", "parameters"}) {
    fields[key] = info.at(key);
  }
  return fields;
}

}  // namespace

TEST_CASE("info describes an image model: stem, positions, prefix tokens, transformer, head",
          "[cli][model_commands]") {
  const Run text = run_cli("info " + quote(kDemoModel));
  INFO("stderr: " << text.err);
  REQUIRE(text.exit_code == 0);
  for (const char* line : {"architecture: ImageTransformer\n", "stem:\n", "  patch_size: 16\n",
                           "  stem_channels: [16,32,64,96]\n", "positions:\n", "  kind: sine\n",
                           "  mode: attention\n", "prefix_tokens:\n", "transformer:\n",
                           "  d_model: 96\n", "head:\n", "  num_classes: 5\n"}) {
    INFO(line);
    CHECK(text.out.find(line) != std::string::npos);
  }

  const json info = info_json(kDemoModel);
  CHECK(info.at("stem").at("patch_size") == 16);
  CHECK(info.at("stem").at("in_chans") == 3);
  CHECK(info.at("positions").at("kind") == "sine");
  CHECK(info.at("prefix_tokens").at("count") == 0);
  CHECK(info.at("transformer").at("num_encoder_layers") == 3);
  CHECK(info.at("transformer").at("num_decoder_layers") == 1);
  CHECK(info.at("head").at("num_classes") == 5);
  CHECK(info.at("head").at("class_names") == 5);
  CHECK(info.at("mean") == json({0.485, 0.456, 0.406}));
  // The image model's own tensors (stem, head) come on top of its Transformer's.
  CHECK(info.at("parameters").get<std::size_t>() >
        info.at("transformer").at("parameters").get<std::size_t>());
  CHECK(info.at("metadata").at("architecture") == "ImageTransformer");

  // A learned position's grid.
  const json learned = info_json(std::string(VITSCOPE_IMAGE_FIXTURES_DIR) +
                                 "/e_learned_input_tokens_enlarge/model.safetensors");
  CHECK(learned.at("positions").at("kind") == "learned");
  CHECK(learned.at("positions").at("grid").size() == 2);
  CHECK(info.at("preprocess") == json({{"resize_mode", "longer"}, {"interpolation", "area-linear"}}));

  // An imported DeiT: its prefix tokens, sequence-layout positions and eval preprocessing.
  const json deit = info_json(std::string(VITSCOPE_VIT_FIXTURES_DIR) +
                              "/timm_deit_distilled_224/model.safetensors");
  CHECK(deit.at("prefix_tokens").at("cls_token") == true);
  CHECK(deit.at("prefix_tokens").at("dist_token") == true);
  CHECK(deit.at("positions").at("prefix_rows") == 2);
  CHECK(deit.at("head").at("pool") == "cls");
  CHECK(deit.at("preprocess") ==
        json({{"resize_mode", "shorter-crop"}, {"interpolation", "area-linear"}, {"resize_size", 256}}));
}

TEST_CASE("bench times an image model on random pictures of --image-size", "[cli][model_commands]") {
  const json report = bench_json("--model " + quote(kDemoModel) + " --image-size 40 --batch 2");
  for (const char* field : {"load_ms", "forward_ms", "forward_ms_min", "peak_rss_mb"}) {
    INFO(field);
    CHECK(report.at(field).is_number());
  }
  CHECK(report.at("image_size") == 40);
  CHECK(report.at("batch") == 2);
  CHECK(report.at("pixels") == json({2, 3, 48, 48}));  // 40 padded to a multiple of p = 16
  CHECK(report.at("src_len") == 9);                   // 3 x 3 patches
  CHECK(report.at("tgt_len") == 9);                   // the tokens are the decoder's targets

  // Sequence lengths are an nn.Transformer's; an image size is an image model's.
  const Run lengths = run_cli("bench --model " + quote(kDemoModel) + " --src-len 4");
  require_one_line_error(lengths, 2);
  CHECK(lengths.err.find("--image-size") != std::string::npos);
  const Run size = run_cli("bench --model " + quote(kTinyModel) + " --image-size 32 --src-len 4");
  require_one_line_error(size, 2);
  CHECK(size.err.find("--image-size") != std::string::npos);
  require_one_line_error(run_cli("bench --model " + quote(kTinyModel)), 2);  // no --src-len
}

TEST_CASE("forward runs an image model on preprocessed pixels, as PyTorch does",
          "[cli][model_commands]") {
  // The fixture's image, preprocessed here and padded (30x37 -> 32x40): forward with the pixel
  // mask gives the features tools/reference_model.py gave.
  const std::string case_name = "a_sine_input_tokens_postnorm";
  const std::string dir_name = std::string(VITSCOPE_IMAGE_FIXTURES_DIR) + "/" + case_name;
  const json spec = json::parse(vitscope::test::read_bytes(dir_name + "/case.json"));
  const std::string model = dir_name + "/model.safetensors";
  vitscope::image::ImageModelFile file = vitscope::image::load_image_model(model);
  vitscope::image::PreprocessOptions options = file.model.preprocess_options();
  options.size = spec.at("size");
  const vitscope::image::ImageBatch batch =
      vitscope::image::preprocess({vitscope::image::load_image(dir_name + "/a.png")}, options);
  TempDir dir;
  vitscope::io::write_npy(dir.file("pixels.npy"), batch.pixels);
  std::vector<float> mask(batch.pixel_mask.begin(), batch.pixel_mask.end());
  const auto& m = batch.pixel_mask.shape();
  vitscope::io::write_npy(dir.file("mask.npy"), mask.data(), {m[0], m[1], m[2]});

  const std::string forward = "forward --model " + quote(model) + " --pixels " +
                              quote(dir.file("pixels.npy")) + " --threads 1 --out " +
                              quote(dir.file("out.npy"));
  const Run run = run_cli(forward + " --pixel-mask " + quote(dir.file("mask.npy")) +
                          " --attn-dir " + quote(dir.file("attn")));
  INFO("stderr: " << run.err);
  REQUIRE(run.exit_code == 0);
  const vitscope::io::NpyArray out = vitscope::io::read_npy(dir.file("out.npy"));
  REQUIRE(out.shape.size() == 4);
  const auto grid = spec.at("grid").at("a.png").get<std::array<std::size_t, 2>>();
  const vitscope::Tensor3 features = vitscope::image::crop_feature_map(
      vitscope::io::to_tensor4(out, "out.npy"), 0, grid[0], grid[1]);
  const vitscope::io::NpyArray expected = vitscope::io::read_npy(dir_name + "/a.features.npy");
  REQUIRE(vitscope::Shape(features.shape().begin(), features.shape().end()) == expected.shape);
  vitscope::test::require_close(case_name + " forward --pixels", features, expected,
                                spec.at("tolerance").get<double>());
  std::set<std::string> attention;
  for (const auto& entry : fs::directory_iterator(dir.file("attn"))) {
    attention.insert(entry.path().filename().string());
  }
  std::set<std::string> modules;
  for (const vitscope::nn::ModulePath& path : file.model.attention_modules()) modules.insert(path.str() + ".npy");
  CHECK(attention == modules);

  SECTION("bad pixels and masks exit 1 naming the option") {
    const std::vector<float> values(1 * 3 * 30 * 40, 0.5f);
    vitscope::io::write_npy(dir.file("odd.npy"), values.data(), {1, 3, 30, 40});
    const Run odd = run_cli("forward --model " + quote(model) + " --pixels " +
                            quote(dir.file("odd.npy")) + " --out " + quote(dir.file("o.npy")));
    require_one_line_error(odd, 1);
    CHECK(odd.err.find("--pixels") != std::string::npos);
    CHECK(odd.err.find("(1, 3, 30, 40)") != std::string::npos);

    std::vector<float> all_padding(mask.size(), 1.0f);
    vitscope::io::write_npy(dir.file("padding.npy"), all_padding.data(), {m[0], m[1], m[2]});
    const Run padding = run_cli(forward + " --pixel-mask " + quote(dir.file("padding.npy")));
    require_one_line_error(padding, 1);
    CHECK(padding.err.find("--pixel-mask") != std::string::npos);
  }
  SECTION("sequence inputs are an nn.Transformer's") {
    const Run src = run_cli(forward + " --src " + quote(dir.file("pixels.npy")));
    require_one_line_error(src, 2);
    CHECK(src.err.find("--src applies to nn.Transformer models") != std::string::npos);
    const Run none = run_cli("forward --model " + quote(model) + " --out " + quote(dir.file("o.npy")));
    require_one_line_error(none, 2);
    CHECK(none.err.find("--pixels") != std::string::npos);
    const Run pixels = run_cli("forward --model " + quote(kTinyModel) + " --pixels " +
                               quote(dir.file("pixels.npy")) + " --out " + quote(dir.file("o.npy")));
    require_one_line_error(pixels, 2);
    CHECK(pixels.err.find("--src") != std::string::npos);
  }
}

TEST_CASE("the CLI runs bf16 where the CPU has AVX-512 BF16 and refuses it elsewhere",
          "[cli][model_commands]") {
  const std::string model_args = "--model " + quote(kDemoModel) + " --image-size 40";
  CHECK(bench_json(model_args).at("precision") == "fp32");
  const Run unknown = run_cli("bench " + model_args + " --precision fp16");
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.err.find("--precision: fp16 not in {fp32,bf16}") != std::string::npos);
  // At the avx2 level no CPU runs the bf16 GEMM.
  const Run refused = run_cli("bench " + model_args + " --precision bf16", "VITSCOPE_SIMD=avx2 ");
  require_one_line_error(refused, 1);
  CHECK(refused.err.find("bf16 needs a CPU with AVX-512 BF16") != std::string::npos);
  if (!vitscope::bf16_supported()) {
    std::cout << "bf16 not supported on this CPU: only the refusal was checked\n";
    return;
  }
  CHECK(bench_json(model_args + " --precision bf16").at("precision") == "bf16");

  // forward on a fixture's pixels: PyTorch's features within the bf16 bound, and not the fp32
  // path's numbers.
  const std::string case_name = "a_sine_input_tokens_postnorm";
  const std::string dir_name = std::string(VITSCOPE_IMAGE_FIXTURES_DIR) + "/" + case_name;
  const std::string model = dir_name + "/model.safetensors";
  vitscope::image::ImageModelFile file = vitscope::image::load_image_model(model);
  vitscope::image::PreprocessOptions options = file.model.preprocess_options();
  options.size = json::parse(vitscope::test::read_bytes(dir_name + "/case.json")).at("size");
  const vitscope::image::ImageBatch batch =
      vitscope::image::preprocess({vitscope::image::load_image(dir_name + "/a.png")}, options);
  TempDir dir;
  vitscope::io::write_npy(dir.file("pixels.npy"), batch.pixels);
  const std::string forward =
      "forward --model " + quote(model) + " --pixels " + quote(dir.file("pixels.npy")) + " --out ";
  REQUIRE(run_cli(forward + quote(dir.file("fp32.npy"))).exit_code == 0);
  REQUIRE(run_cli(forward + quote(dir.file("bf16.npy")) + " --precision bf16").exit_code == 0);
  const vitscope::io::NpyArray fp32 = vitscope::io::read_npy(dir.file("fp32.npy"));
  const vitscope::io::NpyArray bf16 = vitscope::io::read_npy(dir.file("bf16.npy"));
  REQUIRE(bf16.shape == fp32.shape);
  double largest = 1.0, worst = 0.0;
  for (std::size_t i = 0; i < fp32.data.size(); ++i) {
    largest = std::max(largest, double(std::fabs(fp32.data[i])));
    worst = std::max(worst, double(std::fabs(bf16.data[i] - fp32.data[i])));
  }
  std::cout << case_name << " forward --precision bf16 against fp32: worst abs error " << worst
            << " (bound " << vitscope::test::kBf16Relative * largest << ")\n";
  CHECK(worst > 0.0);
  CHECK(worst <= vitscope::test::kBf16Relative * largest);
}

TEST_CASE("a Transformer file without its architecture key loads from its metadata",
          "[cli][model_commands]") {
  TempDir dir;
  const std::string case_name = "transformer_defaults";
  const std::string model = rewrite_model(dir, case_name, "no_architecture.safetensors",
                                          [](const std::string& key) { return key != "architecture"; });
  const json info = info_json(model);
  CHECK(transformer_fields(info) ==
        transformer_fields(info_json(fixture_path(case_name, "model.safetensors"))));
  CHECK_FALSE(info.contains("inferred"));  // every argument came from the metadata
  CHECK(bench_json("--model " + quote(model) + " --src-len 4 --tgt-len 3").at("tgt_len") == 3);
  require_forward_matches(model, case_name, "");
}

TEST_CASE("a bare state_dict loads with the constructor arguments as flags, else names them",
          "[cli][model_commands]") {
  TempDir dir;
  const auto no_metadata = [](const std::string&) { return false; };
  const std::string case_name = "transformer_defaults";  // nhead 4, relu, post-norm, seq-first
  const std::string model = rewrite_model(dir, case_name, "bare.safetensors", no_metadata);
  const std::string most_flags =
      " --activation relu --layer-norm-eps 1e-5 --batch-first false --norm-first false";
  const std::string flags = " --nhead 4" + most_flags;

  SECTION("without the flags: a usage error naming each missing flag") {
    const Run info = run_cli("info " + quote(model));
    require_one_line_error(info, 2);
    CHECK(info.err.find("give --nhead, --activation, --layer-norm-eps, --batch-first, --norm-first ") !=
          std::string::npos);
    // Only what is still missing.
    const Run some = run_cli("bench --model " + quote(model) + " --src-len 4 --nhead 4 --norm-first false");
    require_one_line_error(some, 2);
    CHECK(some.err.find("give --activation, --layer-norm-eps, --batch-first (") != std::string::npos);
    const Run forward = run_cli("forward --model " + quote(model) + forward_args(case_name) +
                                " --activation relu --out " + quote(dir.file("o.npy")));
    require_one_line_error(forward, 2);
    CHECK(forward.err.find("give --nhead, --layer-norm-eps, --batch-first, --norm-first (") !=
          std::string::npos);
    CHECK_FALSE(fs::exists(dir.file("o.npy")));
  }
  SECTION("with them: the rest read off the tensors' shapes") {
    const json info = info_json(model, flags);
    CHECK(transformer_fields(info) ==
          transformer_fields(info_json(fixture_path(case_name, "model.safetensors"))));
    CHECK(info.at("inferred").size() == 11);  // every argument
    CHECK(info.at("metadata").empty());
    CHECK(bench_json("--model " + quote(model) + " --src-len 4" + flags).at("src_len") == 4);
    require_forward_matches(model, case_name, flags);
  }
  SECTION("an encoder-only state_dict with the decoder.norm nn.Transformer still saves") {
    const std::string encoder_case = "transformer_encoder_only";  // batch_first, 0 decoder layers
    std::vector<vitscope::NamedTensor> decoder_norm;
    const std::size_t E = info_json(fixture_path(encoder_case, "model.safetensors")).at("d_model");
    decoder_norm.push_back({"decoder.norm.weight", {E}, std::vector<float>(E, 1.0f)});
    decoder_norm.push_back({"decoder.norm.bias", {E}, std::vector<float>(E, 0.0f)});
    const std::string encoder =
        rewrite_model(dir, encoder_case, "encoder.safetensors", no_metadata, decoder_norm);
    const json original = info_json(fixture_path(encoder_case, "model.safetensors"));
    const std::string encoder_flags =
        " --nhead " + original.at("nhead").dump() + " --activation " +
        original.at("activation").get<std::string>() + " --layer-norm-eps " +
        original.at("layer_norm_eps").dump() + " --batch-first true --norm-first " +
        original.at("norm_first").dump();
    const json info = info_json(encoder, encoder_flags);
    CHECK(info.at("num_decoder_layers") == 0);
    CHECK(info.at("decoder_norm") == false);
    CHECK(transformer_fields(info) == transformer_fields(original));
    require_forward_matches(encoder, encoder_case, encoder_flags);
  }
  SECTION("flags that disagree with the metadata, and files that are no Transformer") {
    const Run disagree = run_cli("info " + quote(kTinyModel) + " --nhead 3");
    require_one_line_error(disagree, 1);
    CHECK(disagree.err.find("nhead 3 disagrees with the file's metadata nhead") != std::string::npos);
    const Run image = run_cli("info " + quote(kDemoModel) + " --nhead 4");
    require_one_line_error(image, 2);
    CHECK(image.err.find("image model") != std::string::npos);
    const Run indivisible = run_cli("info " + quote(model) + most_flags + " --nhead 5");
    require_one_line_error(indivisible, 1);  // 16 is not divisible by 5
    vitscope::io::write_safetensors(dir.file("other.safetensors"),
                                    {{"weight", {2, 2}, std::vector<float>(4, 1.0f)}}, {});
    const Run other = run_cli("info " + quote(dir.file("other.safetensors")));
    require_one_line_error(other, 1);
    CHECK(other.err.find("not an nn.Transformer state_dict") != std::string::npos);
  }
}
