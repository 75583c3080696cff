// CLS-token ViTs from PyTorch: every case under tests/fixtures/vit (tools/make_vit_goldens.py)
// is a torchvision, timm-style (DeiT, DINO, DINOv2) or Hugging Face model with random weights,
// brought in by tools/import_model.py and run on real photos by the original PyTorch module.
// vitscope must give its CLS output, logits, patch features and last-layer attention within
// the case's tolerance, through the library and through `vitscope run`.

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "cli_support.hpp"
#include "vitscope/image/attention.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/image/load.hpp"
#include "vitscope/image/sequence.hpp"
#include "vitscope/image/position.hpp"
#include "vitscope/io/npy.hpp"
#include "vitscope/io/safetensors.hpp"

namespace fs = std::filesystem;
using namespace vitscope;
using namespace vitscope::image;
using nlohmann::json;

namespace {

const fs::path kRepo = fs::path(VITSCOPE_ASSETS_DIR).parent_path();
const fs::path kCases = VITSCOPE_VIT_FIXTURES_DIR;

struct VitCase {
  fs::path dir;
  json spec;

  std::vector<std::string> images() const { return spec.at("images"); }
  fs::path model() const { return dir / spec.at("model").get<std::string>(); }
  io::NpyArray expected(const std::string& image, const std::string& kind) const {
    return io::read_npy((dir / spec.at("expected").at(image).at(kind).get<std::string>()).string());
  }
  // The preprocessing the fixture fed PyTorch, whatever the model file's defaults are.
  PreprocessOptions preprocess(const ImageModel& model) const {
    PreprocessOptions options = model.preprocess_options();
    options.size = spec.at("size");
    options.resize.resize_mode = parse_resize_mode(spec.at("resize_mode"));
    options.resize.resize_size = spec.at("resize_size").is_null() ? 0 : spec.at("resize_size").get<int>();
    options.resize.interpolation = parse_interpolation(spec.at("interpolation"));
    return options;
  }
};

std::vector<VitCase> vit_cases() {
  std::vector<VitCase> cases;
  for (const fs::directory_entry& entry : fs::directory_iterator(kCases)) {
    if (!fs::exists(entry.path() / "case.json")) continue;
    std::ifstream in(entry.path() / "case.json");
    cases.push_back({entry.path(), json::parse(in)});
  }
  std::sort(cases.begin(), cases.end(), [](const VitCase& a, const VitCase& b) { return a.dir < b.dir; });
  return cases;
}

template <class Tensor>
void check(const VitCase& c, const std::string& image, const std::string& kind, const Tensor& actual) {
  const io::NpyArray reference = c.expected(image, kind);
  const std::string what = c.dir.filename().string() + " " + fs::path(image).stem().string() + " " + kind;
  INFO(what);
  REQUIRE(Shape(actual.shape().begin(), actual.shape().end()) == reference.shape);
  test::require_close(what, actual, reference, c.spec.at("tolerance").get<double>());
}

}  // namespace

TEST_CASE("ViT fixtures cover every importer family and the prefix-token kinds", "[vit]") {
  std::set<std::string> families;
  bool dist = false, registers = false, dino_resize = false;
  for (const VitCase& c : vit_cases()) {
    families.insert(c.spec.at("family").get<std::string>());
    const ImageModelFile file = load_image_model(c.model().string());
    dist |= file.model.options.dist_token;
    registers |= file.model.options.num_register_tokens > 0;
    dino_resize |= file.model.options.pos_resize == GridResize::dino;
  }
  REQUIRE(families == std::set<std::string>{"torchvision-vit", "timm-vit", "hf-vit"});
  REQUIRE(dist);
  REQUIRE(registers);
  REQUIRE(dino_resize);
}

TEST_CASE("ViT parity with PyTorch: CLS, logits, features and attention of every fixture", "[vit][parity]") {
  for (const VitCase& c : vit_cases()) {
    INFO("case " << c.dir.filename());
    ImageModelFile file = load_image_model(c.model().string());
    const std::string module_name = c.spec.at("attention_module");
    nn::ModulePath module;
    for (const nn::ModulePath& path : file.model.attention_modules()) {
      if (path.str() == module_name) module = path;
    }
    REQUIRE(module.str() == module_name);
    const std::vector<std::string> images = c.images();
    std::vector<cv::Mat> loaded;
    for (const std::string& image : images) loaded.push_back(load_image((kRepo / image).string()));
    // All of a case's images in one batch: mixed grids are padded and masked, and each must still
    // give what PyTorch gives for it alone.
    const ImageModelOutput out =
        file.model.forward(preprocess(loaded, c.preprocess(file.model)), "output", {module});
    for (std::size_t b = 0; b < loaded.size(); ++b) {
      const std::string& image = images[b];
      const auto grid = c.spec.at("grid").at(image).get<std::array<std::size_t, 2>>();
      REQUIRE(out.grids[b] == grid);
      const json& expected = c.spec.at("expected").at(image);
      check(c, image, "cls", Tensor1(xt::view(out.prefix_outputs, b, 0, xt::all())));
      check(c, image, "features", crop_feature_map(out.features, b, grid[0], grid[1]));
      if (expected.contains("logits")) check(c, image, "logits", Tensor1(xt::view(out.class_logits, b, xt::all())));
      const Tensor3 attention = image_attention(out, b).with_prefix.at(module);
      check(c, image, "attention_cls", Tensor2(xt::view(attention, xt::all(), 0, xt::all())));
      if (expected.contains("attention")) check(c, image, "attention", attention);
    }
  }
}

TEST_CASE("ViT parity through vitscope run: cls.npy, logits.npy, features.npy, predictions", "[vit]") {
  for (const VitCase& c : vit_cases()) {
    INFO("case " << c.dir.filename());
    const test::TempDir dir;
    std::string args = "run --out " + test::quote(dir.file("out")) + " --model " +
                       test::quote(c.model().string()) + " --size " +
                       std::to_string(c.spec.at("size").get<int>()) + " --resize-mode " +
                       c.spec.at("resize_mode").get<std::string>() + " --interpolation " +
                       c.spec.at("interpolation").get<std::string>() + " --batch 3 --attention-views cls";
    if (!c.spec.at("resize_size").is_null()) {
      args += " --resize-size " + std::to_string(c.spec.at("resize_size").get<int>());
    }
    const std::vector<std::string> images = c.images();
    for (const std::string& image : images) args += " " + test::quote((kRepo / image).string());
    const test::Run run = test::run_cli(args);
    INFO("stderr: " << run.err);
    REQUIRE(run.exit_code == 0);
    std::ifstream summary_file(dir.file("out/summary.json"));
    const json summary = json::parse(summary_file);
    for (std::size_t b = 0; b < images.size(); ++b) {
      const std::string& image = images[b];
      const json& expected = c.spec.at("expected").at(image);
      const fs::path folder = dir.path() / "out" / fs::path(image).filename();
      for (const char* kind : {"cls", "features", "logits"}) {
        if (!expected.contains(kind)) continue;
        const io::NpyArray actual = io::read_npy((folder / (std::string(kind) + ".npy")).string());
        const io::NpyArray reference = c.expected(image, kind);
        REQUIRE(actual.shape == reference.shape);
        test::require_close(c.dir.filename().string() + " run " + kind, actual.data, reference,
                            c.spec.at("tolerance").get<double>());
      }
      REQUIRE(fs::exists(folder / "attention_cls.png"));
      // Views draw on what the model saw: a crop at the model's resolution, else the whole image.
      const cv::Mat token_norm = cv::imread((folder / "token_norm.png").string());
      const cv::Mat photo = cv::imread((kRepo / image).string());
      const std::string mode = c.spec.at("resize_mode");
      const auto grid = c.spec.at("grid").at(image).get<std::array<int, 2>>();
      const int p = static_cast<int>(load_image_model(c.model().string()).model.options.patch_size);
      if (mode == "shorter-crop") {
        REQUIRE(token_norm.size() == cv::Size(grid[1] * p, grid[0] * p));
      } else if (mode == "stretch") {
        REQUIRE(token_norm.size() == photo.size());
      }
      const json& records = summary.at("images");
      const auto record_of = std::find_if(records.begin(), records.end(), [&](const json& r) {
        return r.at("input") == fs::path(image).filename().string();
      });
      REQUIRE(record_of != records.end());
      const json& record = *record_of;
      if (expected.contains("logits")) {
        // The summary's top class is the PyTorch logits' argmax.
        const io::NpyArray logits = c.expected(image, "logits");
        const auto best = std::max_element(logits.data.begin(), logits.data.end()) - logits.data.begin();
        REQUIRE(record.at("prediction").at("index").get<long>() == best);
        std::ifstream predictions(folder / "predictions.json");
        REQUIRE(json::parse(predictions).at("top5").size() == std::min<std::size_t>(5, logits.data.size()));
      } else {
        REQUIRE(record.at("prediction").is_null());
      }
    }
  }
}

TEST_CASE("prefix-token metadata that does not fit is refused with its key named", "[vit]") {
  const io::SafetensorsFile deit =
      io::read_safetensors((kCases / "timm_deit_distilled_224" / "model.safetensors").string());
  REQUIRE(deit.metadata.at("dist_token") == "true");
  const test::TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  // Each change with the error code and a word the message must hold.
  struct Bad {
    std::string key, value, code, says;
  };
  const std::vector<Bad> bad = {
      {"cls_token", "false", "bad_metadata", "dist_token"},          // a distillation token needs the CLS token
      {"head_pool", "mean", "bad_metadata", "head_pool"},
      {"pos_resize", "bilinear", "bad_metadata", "pos_resize"},
      {"num_register_tokens", "-1", "bad_metadata", "num_register_tokens"},
      {"pos_embed_prefix", "3", "bad_metadata", "pos_embed_prefix"},  // more than the 2 prefix tokens
      {"pos_embed_prefix", "1", "bad_metadata", "pos_embed_grid"},    // 197 patch rows: no square grid
      {"pos_embed_grid", "14,x", "bad_metadata", "pos_embed_grid"},
      {"pos_embed_grid", "7,28", "no error", ""},                     // 196 rows as a 7x28 grid loads
      {"pos_embed_grid", "15,14", "bad_metadata", "pos_embed_grid"},
      {"position_mode", "attention", "bad_metadata", "position_mode input"},
      {"num_register_tokens", "2", "state_dict_mismatch", "register_tokens"},
  };
  for (const Bad& b : bad) {
    INFO(b.key << " = '" << b.value << "'");
    auto metadata = deit.metadata;
    metadata[b.key] = b.value;
    io::write_safetensors(path, deit.tensors, metadata);
    std::string message;
    const std::string code = test::error_code([&] {
      try {
        load_image_model(path);
      } catch (const Error& e) {
        message = e.what();
        throw;
      }
    });
    INFO(message);
    REQUIRE(code == b.code);
    REQUIRE(message.find(b.says) != std::string::npos);
  }
}

TEST_CASE("learned positions resize as F.interpolate does under each pos_resize rule", "[vit][parity]") {
  // tools/make_interpolate_fixtures.py: one (E,5,7) grid enlarged, shrunk, both, and kept.
  const fs::path dir = kCases.parent_path() / "interpolate";
  std::ifstream in(dir / "case.json");
  const json spec = json::parse(in);
  const io::NpyArray stored = io::read_npy((dir / spec.at("grid").get<std::string>()).string());
  Tensor4 grid = Tensor4::from_shape({1, stored.shape[0], stored.shape[1], stored.shape[2]});
  std::copy(stored.data.begin(), stored.data.end(), grid.begin());
  std::set<std::string> rules;
  for (const json& c : spec.at("cases")) {
    const std::string rule = c.at("rule");
    const auto [h, w] = c.at("size").get<std::array<std::size_t, 2>>();
    GridResize resize = GridResize::size;
    for (GridResize r : {GridResize::size, GridResize::dino, GridResize::size_antialias}) {
      if (rule == grid_resize_name(r)) resize = r;
    }
    REQUIRE(rule == grid_resize_name(resize));
    rules.insert(rule);
    const Tensor4 pos = position_embedding_learned(grid, h, w, {{h, w}}, resize);
    const Tensor3 placed = xt::view(pos, 0);
    test::require_close(rule + " " + std::to_string(h) + "x" + std::to_string(w), placed,
                        io::read_npy((dir / c.at("expected").get<std::string>()).string()),
                        spec.at("tolerance").get<double>());
  }
  REQUIRE(rules.size() == 3);
}
