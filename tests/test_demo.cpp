// The demo app: its frame drawn headless (apps/demo/demo_frame.hpp), its keys as state changes,
// and the real vitscope-demo started under Xvfb, clicked and quit with xdotool.

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <opencv2/imgcodecs.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xview.hpp>

#include "demo_frame.hpp"
#include "cli_support.hpp"
#include "vitscope/image/load.hpp"
#include "vitscope/image/preprocess.hpp"
#include "vitscope/io/npy.hpp"

namespace vitscope::demo {
namespace {

namespace fs = std::filesystem;
using image::HeadFusion;
using test::quote;
using test::TempDir;

const std::string kImages = std::string(VITSCOPE_ASSETS_DIR) + "/images";
const std::string kRandomModel = std::string(VITSCOPE_ASSETS_DIR) + "/models/random.safetensors";

ModelShape token_model_shape() {
  ModelShape shape;
  shape.encoder_layers = 3;
  shape.decoder_layers = 2;
  shape.head = true;
  shape.heads = 4;
  return shape;
}

// The seeded random model and one shipped image, analysed once for all the frame tests.
struct Analysed {
  image::ImageModelFile file = image::load_image_model(kRandomModel);
  ModelShape shape = ModelShape::of(file.model);
  DemoImage image = analyse_image(file.model, image::load_image(kImages + "/chelsea.jpg"),
                                  "chelsea.jpg");
};
const Analysed& analysed() {
  static const Analysed a;
  return a;
}

double difference(const cv::Mat& a, const cv::Mat& b) {
  REQUIRE(a.size() == b.size());
  REQUIRE(a.type() == b.type());
  return cv::norm(a, b, cv::NORM_L1);
}

cv::Mat right_box(const cv::Mat& frame) {
  return frame(cv::Rect(kPanel + kGap, 0, kRightWidth, kPanel));
}
cv::Mat left_box(const cv::Mat& frame) { return frame(cv::Rect(0, 0, kPanel, kPanel)); }

// The frame pixel at the centre of token (i, j) as the image box draws it (the last row and column
// of tokens may be partial).
cv::Point token_centre_on_frame(const DemoImage& image, std::size_t i, std::size_t j) {
  const ImageBox box = image_box(image.rgb.size());
  const double p = image.layout.patch_size;
  const auto centre = [&](std::size_t k, int resized, int original) {
    const double mid = (k * p + std::min((k + 1) * p, static_cast<double>(resized))) / 2;
    return mid * original / resized * box.scale;
  };
  return {box.rect.x + static_cast<int>(centre(j, image.layout.resized.width, image.rgb.cols)),
          box.rect.y + static_cast<int>(centre(i, image.layout.resized.height, image.rgb.rows))};
}

struct Run {
  int exit_code;
  std::string out;
  std::string err;
};

// Runs a /bin/sh command line, capturing stdout and stderr.
Run run_shell(const std::string& command_line) {
  TempDir dir;
  const std::string command =
      command_line + " >" + quote(dir.file("stdout")) + " 2>" + quote(dir.file("stderr"));
  const int status = std::system(command.c_str());
  INFO(command);
  REQUIRE(WIFEXITED(status));
  return {WEXITSTATUS(status), test::read_bytes(dir.file("stdout")),
          test::read_bytes(dir.file("stderr"))};
}

bool have_program(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

TEST_CASE("demo keys: layers wrap, fusion and modules cycle, views toggle", "[demo]") {
  const ModelShape shape = token_model_shape();
  DemoState s = initial_state(shape);
  CHECK(s.kind == ModuleKind::encoder_self);
  CHECK(s.layer == 0);
  CHECK(s.view == View::attention);

  CHECK(apply_key(s, 'l', shape) == Action::redraw);
  CHECK(s.layer == 1);
  apply_key(s, 'l', shape);
  apply_key(s, 'l', shape);
  CHECK(s.layer == 0);  // 3 encoder layers: wraps
  CHECK(apply_key(s, 'L', shape) == Action::redraw);
  CHECK(s.layer == 2);

  CHECK(apply_key(s, 'h', shape) == Action::redraw);
  CHECK(s.fusion == HeadFusion::max);
  apply_key(s, 'h', shape);
  CHECK(s.fusion == HeadFusion::min);
  apply_key(s, 'h', shape);
  CHECK(s.fusion == HeadFusion::mean);

  CHECK(apply_key(s, 'm', shape) == Action::redraw);
  CHECK(s.kind == ModuleKind::decoder_self);
  CHECK(s.layer == 1);  // clamped to the 2 decoder layers
  apply_key(s, 'm', shape);
  CHECK(s.kind == ModuleKind::cross);
  apply_key(s, 'm', shape);
  CHECK(s.kind == ModuleKind::encoder_self);

  CHECK(apply_key(s, 'r', shape) == Action::redraw);
  CHECK(s.view == View::rollout);
  apply_key(s, 'r', shape);
  CHECK(s.view == View::attention);
  apply_key(s, 'f', shape);
  CHECK(s.view == View::pca);
  apply_key(s, 'c', shape);
  CHECK(s.view == View::classes);
  apply_key(s, 'c', shape);
  CHECK(s.view == View::attention);
  apply_key(s, 'f', shape);
  apply_key(s, 'l', shape);  // a layer change goes back to the attention view
  CHECK(s.view == View::attention);

  CHECK(apply_key(s, 'n', shape) == Action::next_image);
  CHECK(apply_key(s, 'p', shape) == Action::previous_image);
  CHECK(apply_key(s, 's', shape) == Action::save);
  CHECK(apply_key(s, 'q', shape) == Action::quit);
  CHECK(apply_key(s, 27, shape) == Action::quit);
  const DemoState before = s;
  CHECK(apply_key(s, 'z', shape) == Action::none);
  CHECK(s.layer == before.layer);
  CHECK(s.view == before.view);
}

TEST_CASE("demo keys offer only what the model has", "[demo]") {
  ModelShape queries = token_model_shape();
  queries.queries = true;
  queries.head = false;
  CHECK(queries.kinds() == std::vector<ModuleKind>{ModuleKind::encoder_self, ModuleKind::cross});
  DemoState s = initial_state(queries);
  apply_key(s, 'm', queries);
  CHECK(s.kind == ModuleKind::cross);
  CHECK(apply_key(s, 'c', queries) == Action::none);  // no per-token head
  CHECK(s.view == View::attention);

  ModelShape encoder_only = token_model_shape();
  encoder_only.decoder_layers = 0;
  CHECK(encoder_only.kinds() == std::vector<ModuleKind>{ModuleKind::encoder_self});
  s = initial_state(encoder_only);
  apply_key(s, 'm', encoder_only);
  CHECK(s.kind == ModuleKind::encoder_self);

  ModelShape decoder_only_view = token_model_shape();
  decoder_only_view.encoder_layers = 0;
  s = initial_state(decoder_only_view);
  CHECK(s.kind == ModuleKind::decoder_self);
  CHECK(apply_key(s, 'r', decoder_only_view) == Action::none);  // no encoder to roll out
}

TEST_CASE("demo frame: fixed size, every view, for a token-target model", "[demo]") {
  const Analysed& a = analysed();
  CHECK(a.image.inference_ms > 0);
  DemoState s = initial_state(a.shape);
  select_centre(s, a.image);
  const std::vector<std::string>& names = a.file.model.options.class_names;
  for (const ModuleKind kind : a.shape.kinds()) {
    for (std::size_t layer = 0; layer < a.shape.layers(kind); ++layer) {
      s.kind = kind;
      s.layer = layer;
      INFO(module_path(kind, layer));
      const cv::Mat frame = compose_frame(a.image, s, a.shape, names);
      CHECK(frame.size() == kFrameSize);
      CHECK(frame.type() == CV_8UC3);
    }
  }
  for (const View view : {View::rollout, View::pca, View::classes}) {
    s.view = view;
    INFO(to_string(view));
    CHECK(compose_frame(a.image, s, a.shape, names).size() == kFrameSize);
  }
  const std::string status = status_line(a.image, s, a.shape);
  CHECK(status.find("chelsea.jpg") != std::string::npos);
  CHECK(status.find(" ms") != std::string::npos);
}

TEST_CASE("demo click selects the token under it, as token_at maps pixels", "[demo]") {
  const Analysed& a = analysed();
  const auto [h, w] = a.image.attention.grid;
  REQUIRE(h > 2);
  REQUIRE(w > 2);
  DemoState s = initial_state(a.shape);
  select_centre(s, a.image);
  for (const auto& [i, j] : std::vector<std::array<std::size_t, 2>>{
           {0, 0}, {1, 2}, {h / 2, w - 1}, {h - 1, 0}, {h - 1, w - 1}}) {
    const cv::Point at = token_centre_on_frame(a.image, i, j);
    INFO("token (" << i << "," << j << ") drawn at frame pixel " << at);
    REQUIRE(click(s, at, a.image));
    CHECK(s.token == i * w + j);
    CHECK(s.token == image::token_at(s.point, a.image.rgb.size(), a.image.layout, a.image.attention.grid));
    CHECK(token_cell(s.token, a.image) == std::array<std::size_t, 2>{i, j});
  }
  // Clicks beside the image (the attention box, the status strip) select nothing.
  const DemoState before = s;
  CHECK_FALSE(click(s, {kPanel + kGap + 50, 50}, a.image));
  CHECK_FALSE(click(s, {10, kPanel + 10}, a.image));
  CHECK(s.token == before.token);
}

TEST_CASE("demo frame changes with the token, the layer and the fusion", "[demo]") {
  const Analysed& a = analysed();
  const std::vector<std::string>& names = a.file.model.options.class_names;
  DemoState s = initial_state(a.shape);
  select_centre(s, a.image);
  const cv::Mat base = compose_frame(a.image, s, a.shape, names);

  DemoState other_token = s;
  REQUIRE(click(other_token, token_centre_on_frame(a.image, 0, 0), a.image));
  const cv::Mat clicked = compose_frame(a.image, other_token, a.shape, names);
  CHECK(difference(right_box(base), right_box(clicked)) > 0);
  CHECK(difference(left_box(base), left_box(clicked)) > 0);  // the outline moved

  REQUIRE(a.shape.layers(s.kind) > 1);
  DemoState next_layer = s;
  apply_key(next_layer, 'l', a.shape);
  const cv::Mat layered = compose_frame(a.image, next_layer, a.shape, names);
  CHECK(difference(right_box(base), right_box(layered)) > 0);
  CHECK(difference(left_box(base), left_box(layered)) == 0);  // same image, same token

  DemoState fused = s;
  apply_key(fused, 'h', a.shape);
  CHECK(difference(right_box(base), right_box(compose_frame(a.image, fused, a.shape, names))) > 0);

  DemoState module = s;
  apply_key(module, 'm', a.shape);
  CHECK(difference(right_box(base), right_box(compose_frame(a.image, module, a.shape, names))) > 0);
}

TEST_CASE("demo frame for learned-query and encoder-only models", "[demo]") {
  for (const std::string case_name :
       {"b_learned_attention_queries_prenorm", "c_none_encoder_only_shrink_gray"}) {
    INFO(case_name);
    const std::string dir = std::string(VITSCOPE_IMAGE_FIXTURES_DIR) + "/" + case_name;
    const fs::path picture = fs::exists(dir + "/a.png") ? dir + "/a.png" : dir + "/rgb.png";
    image::ImageModelFile file = image::load_image_model(dir + "/model.safetensors");
    const ModelShape shape = ModelShape::of(file.model);
    const DemoImage image = analyse_image(file.model, image::load_image(picture.string()), "x");
    DemoState s = initial_state(shape);
    select_centre(s, image);
    for (const ModuleKind kind : shape.kinds()) {
      s.kind = kind;
      CHECK(compose_frame(image, s, shape, {}).size() == kFrameSize);
    }
    s.view = View::pca;
    CHECK(compose_frame(image, s, shape, {}).size() == kFrameSize);
  }
}

// A CLS-token fixture model (tests/fixtures/vit) on one shipped image, analysed as the demo does.
struct ClsModel {
  image::ImageModelFile file;
  ModelShape shape;
  DemoImage image;
  explicit ClsModel(const std::string& fixture, const std::string& picture = "chelsea.jpg")
      : file(image::load_image_model(std::string(VITSCOPE_VIT_FIXTURES_DIR) + "/" + fixture +
                                     "/model.safetensors")),
        shape(ModelShape::of(file.model)),
        image(analyse_image(file.model, image::load_image(kImages + "/" + picture), picture)) {}
};

// PyTorch's attention of the CLS token (nh, X+S) from a fixture, its prefix columns dropped,
// head k as a (h,w) map.
Tensor2 pytorch_cls_map(const std::string& fixture, const std::string& stem, std::size_t X,
                        std::size_t k, std::array<std::size_t, 2> grid) {
  const io::NpyArray cls = io::read_npy(std::string(VITSCOPE_VIT_FIXTURES_DIR) + "/" + fixture +
                                        "/" + stem + ".attention_cls.npy");
  REQUIRE(cls.shape.size() == 2);
  REQUIRE(cls.shape[1] == X + grid[0] * grid[1]);
  Tensor2 map = Tensor2::from_shape({grid[0], grid[1]});
  std::copy_n(cls.data.begin() + static_cast<std::ptrdiff_t>(k * cls.shape[1] + X), map.size(), map.begin());
  return map;
}

double worst(const Tensor2& a, const Tensor2& b) {
  REQUIRE(a.shape() == b.shape());
  double w = 0;
  for (std::size_t i = 0; i < a.size(); ++i) w = std::max(w, std::fabs(double(a.data()[i]) - b.data()[i]));
  return w;
}

TEST_CASE("demo key t: the CLS token's view, only for models with a CLS token", "[demo]") {
  ModelShape none = token_model_shape();
  DemoState s = initial_state(none);
  CHECK(apply_key(s, 't', none) == Action::none);  // no CLS token: nothing changes
  CHECK_FALSE(s.cls);

  ModelShape cls = token_model_shape();
  cls.decoder_layers = 0;  // prefix tokens need an encoder-only model
  cls.head = false;
  cls.cls = true;
  s = initial_state(cls);
  CHECK(apply_key(s, 't', cls) == Action::redraw);
  CHECK(s.cls);
  CHECK(s.view == View::attention);
  apply_key(s, 'l', cls);  // the layers go on in the CLS view
  CHECK(s.cls);
  CHECK(s.layer == 1);
  CHECK(apply_key(s, 't', cls) == Action::redraw);
  CHECK_FALSE(s.cls);
  apply_key(s, 'r', cls);
  apply_key(s, 't', cls);  // the rollout view stays: its CLS row
  CHECK(s.view == View::rollout);
  CHECK(s.cls);
  apply_key(s, 'f', cls);
  apply_key(s, 't', cls);  // from the PCA view back to attention, the CLS token's
  CHECK(s.view == View::attention);
  CHECK_FALSE(s.cls);
  CHECK(key_help().find("(models with a CLS token)") != std::string::npos);
}

TEST_CASE("demo CLS view: the CLS token's maps of the layer and the rollout, as PyTorch's, on the "
          "crop the model saw", "[demo]") {
  // torchvision ViT: CLS token, head on it, shorter-crop 256 -> 224: 14x14 tokens of the crop.
  const std::string fixture = "torchvision_p16_224";
  const ClsModel m(fixture);
  const DemoImage& image = m.image;
  REQUIRE(m.shape.cls);
  CHECK_FALSE(m.shape.head);  // a CLS classifier: no per-token class overlay
  CHECK(m.shape.kinds() == std::vector<ModuleKind>{ModuleKind::encoder_self});
  CHECK(image.original == cv::Size(451, 300));
  REQUIRE(image.rgb.size() == cv::Size(224, 224));
  CHECK(image.layout.resized == cv::Size(224, 224));
  CHECK(image.attention.grid == std::array<std::size_t, 2>{14, 14});
  CHECK(cv::norm(image.rgb, image::resize_and_crop(image::load_image(kImages + "/chelsea.jpg"),
                                                   m.file.model.preprocess_options()).rgb,
                 cv::NORM_INF) == 0);
  CHECK(image.attention.num_prefix_tokens == 1);
  CHECK(image.attention.modules.at(nn::ModulePath::encoder_self_attn(1)).shape(1) == 196);  // patches only
  CHECK(!image.top_class.empty());

  DemoState s = initial_state(m.shape);
  select_centre(s, image);
  s.layer = 1;  // the fixture's attention module, encoder.layers.1.self_attn
  CHECK(apply_key(s, 'c', m.shape) == Action::none);
  const cv::Mat token_frame = compose_frame(image, s, m.shape, {});
  const std::vector<Tile> token_tiles = view_tiles(image, s, m.shape);
  DemoState c = s;
  REQUIRE(apply_key(c, 't', m.shape) == Action::redraw);
  const cv::Mat cls_frame = compose_frame(image, c, m.shape, {});
  CHECK(cls_frame.size() == kFrameSize);
  CHECK(difference(right_box(token_frame), right_box(cls_frame)) > 0);
  CHECK(difference(left_box(token_frame), left_box(cls_frame)) > 0);  // no token outlined

  // The tiles: the fused CLS map, then each head's, PyTorch's attentions[:, 0, 1:].
  const std::vector<Tile> tiles = view_tiles(image, c, m.shape);
  REQUIRE(tiles.size() == m.shape.heads + 1);
  Tensor2 mean = xt::zeros<float>({std::size_t{14}, std::size_t{14}});
  for (std::size_t k = 0; k < m.shape.heads; ++k) {
    const Tensor2 expected = pytorch_cls_map(fixture, "chelsea", 1, k, image.attention.grid);
    INFO("head " << k << " worst " << worst(tiles[k + 1].map, expected));
    CHECK(worst(tiles[k + 1].map, expected) < 1e-4);
    CHECK(tiles[k + 1].caption == "CLS head " + std::to_string(k));
    mean += expected / static_cast<float>(m.shape.heads);
    CHECK(worst(tiles[k + 1].map, token_tiles[k + 1].map) > 0);
  }
  CHECK(worst(tiles[0].map, mean) < 1e-4);
  const std::string status = status_line(image, c, m.shape);
  CHECK(status.find("CLS token") != std::string::npos);
  CHECK(status.find("token (") == std::string::npos);
  CHECK(status.find("224x224 crop") != std::string::npos);

  // The rollout: the CLS token's row of the rollout over all tokens (vit-explain keeps its own
  // entry), then the mean over the patch rows as in the token view.
  DemoState r = c;
  REQUIRE(apply_key(r, 'r', m.shape) == Action::redraw);
  REQUIRE(r.cls);
  const std::vector<Tile> cls_rollout = view_tiles(image, r, m.shape);
  r.cls = false;
  const std::vector<Tile> token_rollout = view_tiles(image, r, m.shape);
  REQUIRE(cls_rollout.size() == 2);
  REQUIRE(token_rollout.size() == 2);
  CHECK(cls_rollout[0].caption == "rollout of the CLS token");
  std::vector<Tensor3> layers;
  for (const nn::ModulePath& path : image.attention.encoder_modules()) layers.push_back(image.attention.with_prefix.at(path));
  const Tensor2 rollout = image::attention_rollout(layers, HeadFusion::mean, kRolloutDiscard, true);
  const Tensor2 row = xt::view(rollout, xt::range(0, 1), xt::range(1, rollout.shape(1)));
  CHECK(worst(cls_rollout[0].map, image::key_map(row, 0, image.attention.grid)) == 0);
  CHECK(worst(cls_rollout[0].map, token_rollout[0].map) > 0);
  CHECK(worst(cls_rollout[1].map, token_rollout[1].map) == 0);
  const cv::Mat token_rollout_frame = compose_frame(image, r, m.shape, {});
  r.cls = true;
  CHECK(difference(right_box(compose_frame(image, r, m.shape, {})), right_box(token_rollout_frame)) > 0);

  // Clicks map to the tokens of the crop and go back to the token's view. The crop fills the
  // 480-pixel box: crop pixel (184, 56), the centre of token (3, 11), is frame pixel (394, 120).
  DemoState at_crop = c;
  REQUIRE(click(at_crop, {394, 120}, image));
  CHECK(at_crop.token == 3 * 14 + 11);
  for (const auto& [i, j] : std::vector<std::array<std::size_t, 2>>{{0, 0}, {3, 11}, {13, 13}}) {
    DemoState k = c;
    const cv::Point at = token_centre_on_frame(image, i, j);
    INFO("token (" << i << "," << j << ") drawn at frame pixel " << at);
    REQUIRE(click(k, at, image));
    CHECK(k.token == i * 14 + j);
    CHECK_FALSE(k.cls);
  }
}

TEST_CASE("demo CLS view with register tokens: the prefix columns are dropped", "[demo]") {
  // DINOv2: CLS + 4 registers (X = 5), patch-crop 168: 8x12 tokens on chelsea.
  const std::string fixture = "dinov2_p14_registers_layerscale";
  const ClsModel m(fixture);
  REQUIRE(m.shape.cls);
  REQUIRE(m.image.attention.num_prefix_tokens == 5);
  REQUIRE(m.image.attention.grid == std::array<std::size_t, 2>{8, 12});
  DemoState s = initial_state(m.shape);
  select_centre(s, m.image);
  s.layer = 2;  // the fixture's encoder.layers.2.self_attn
  REQUIRE(apply_key(s, 't', m.shape) == Action::redraw);
  const std::vector<Tile> tiles = view_tiles(m.image, s, m.shape);
  REQUIRE(tiles.size() == m.shape.heads + 1);
  for (std::size_t k = 0; k < m.shape.heads; ++k) {
    const double w = worst(tiles[k + 1].map, pytorch_cls_map(fixture, "chelsea", 5, k, m.image.attention.grid));
    INFO("head " << k << " worst " << w);
    CHECK(w < 1e-4);
  }
  for (const View view : {View::attention, View::rollout, View::pca}) {
    s.view = view;
    CHECK(compose_frame(m.image, s, m.shape, {}).size() == kFrameSize);
  }
}

TEST_CASE("demo model: t does nothing and the frame stays as it was", "[demo]") {
  image::ImageModelFile file =
      image::load_image_model(std::string(VITSCOPE_ASSETS_DIR) + "/models/demo.safetensors");
  const ModelShape shape = ModelShape::of(file.model);
  CHECK_FALSE(shape.cls);
  const DemoImage image = analyse_image(file.model, image::load_image(kImages + "/shapes_1.png"), "shapes_1.png");
  CHECK(image.rgb.size() == image.original);  // no crop: the picture is the image
  CHECK(image.attention.num_prefix_tokens == 0);
  CHECK(image.attention.with_prefix.empty());
  CHECK(image.top_class.empty());
  const std::vector<std::string>& names = file.model.options.class_names;
  for (const View view : {View::attention, View::rollout}) {
    DemoState s = initial_state(shape);
    select_centre(s, image);
    s.view = view;
    const cv::Mat before = compose_frame(image, s, shape, names);
    DemoState after = s;
    CHECK(apply_key(after, 't', shape) == Action::none);
    CHECK_FALSE(after.cls);
    CHECK(difference(before, compose_frame(image, after, shape, names)) == 0);
    CHECK(status_line(image, after, shape).find("CLS") == std::string::npos);
  }
}

// ---- the executable ------------------------------------------------------------------------

TEST_CASE("vitscope-demo --help lists the keys, and bad inputs fail on one line", "[demo][app]") {
  const Run help = run_shell(quote(VITSCOPE_DEMO) + " --help");
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("--model") != std::string::npos);
  CHECK(help.out.find("next / previous layer") != std::string::npos);

  TempDir dir;
  // Without a display the app must stop with a message before touching HighGUI.
  const std::string no_display = "env -u DISPLAY -u WAYLAND_DISPLAY " + quote(VITSCOPE_DEMO) + " ";
  for (const std::string& args :
       {quote(dir.file("missing.png")), quote(kImages) + " --model " + quote(dir.file("none")),
        quote(dir.path().string()) /* no images */}) {
    INFO(args);
    const Run r = run_shell(no_display + args);
    CHECK(r.exit_code == 1);
    REQUIRE(!r.err.empty());
    CHECK(r.err.find('\n') == r.err.size() - 1);  // one line
    CHECK(r.err.rfind("vitscope-demo: error: ", 0) == 0);
  }
  CHECK(run_shell(no_display + "--no-such-option").exit_code == 2);

  // A folder with a broken image: it is skipped with a message and the good one opens (then the
  // missing display stops the app).
  dir.write("a_broken.png", "not a png at all");
  fs::copy_file(kImages + "/chelsea.jpg", dir.file("b_good.jpg"));
  const Run r = run_shell(no_display + quote(dir.path().string()));
  CHECK(r.err.find("skipping") != std::string::npos);
  CHECK(r.err.find("a_broken.png") != std::string::npos);
  CHECK(r.out.find("b_good.jpg") != std::string::npos);
  CHECK(r.err.find("no display") != std::string::npos);
  CHECK(r.exit_code == 1);
}

TEST_CASE("vitscope-demo under Xvfb: a click changes the saved view, q quits with 0",
          "[demo][app][xvfb]") {
  if (!have_program("Xvfb") || !have_program("xdotool")) {
    WARN("skipped: Xvfb or xdotool is not installed (apt-get install xvfb xdotool)");
    return;
  }
  TempDir dir;
  const std::string saves = dir.file("saves");
  // Waits for the window, saves the first view (centre token), clicks the top-left token, saves,
  // clicks near the bottom-right of the image, saves, quits; exits with the app's exit code.
  // Leak checking is off for the app: under the sanitizer build, LeakSanitizer reports a 1 KB
  // allocation libdbus (loaded by Qt) never frees, which would turn a clean quit into exit 1.
  const std::string script = R"(
set -u
ASAN_OPTIONS=detect_leaks=0 "$DEMO" "$IMAGES" --save-dir "$SAVES" &
app=$!
wid=""
for _ in $(seq 1 300); do
  wid=$(xdotool search --name '^vitscope-demo$' 2>/dev/null | head -n 1)
  [ -n "$wid" ] && break
  kill -0 $app 2>/dev/null || break
  sleep 0.1
done
if [ -z "$wid" ]; then echo "no window" >&2; kill $app 2>/dev/null; wait $app; exit 90; fi
sleep 1
xdotool windowfocus --sync "$wid" 2>/dev/null || xdotool windowfocus "$wid"
wait_for() { for _ in $(seq 1 100); do [ -f "$SAVES/$1" ] && return 0; sleep 0.1; done; echo "no $1" >&2; return 1; }
xdotool key s; wait_for vitscope-demo-001.png
xdotool mousemove --window "$wid" 10 10 click 1; sleep 0.5
xdotool key s; wait_for vitscope-demo-002.png
xdotool mousemove --window "$wid" 400 250 click 1; sleep 0.5
xdotool key s; wait_for vitscope-demo-003.png
xdotool key q
wait $app
)";
  const std::string script_path = dir.write("drive.sh", script);
  const std::string command = "DEMO=" + quote(VITSCOPE_DEMO) + " IMAGES=" + quote(kImages) +
                              " SAVES=" + quote(saves) +
                              " timeout 120 " + quote(VITSCOPE_WITH_XVFB) + " sh " + quote(script_path);
  const Run r = run_shell(command);
  INFO("stdout: " << r.out);
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  std::vector<cv::Mat> views;
  for (const char* name : {"vitscope-demo-001.png", "vitscope-demo-002.png", "vitscope-demo-003.png"}) {
    views.push_back(cv::imread(saves + "/" + name));
    INFO(name);
    REQUIRE(!views.back().empty());
    CHECK(views.back().size() == kFrameSize);
  }
  // Each click selected another token: the attention box differs between the saved views.
  CHECK(difference(right_box(views[0]), right_box(views[1])) > 0);
  CHECK(difference(right_box(views[1]), right_box(views[2])) > 0);
}


TEST_CASE("demo with a detector: boxes on the image, a click on one shows its query per head", "[demo][detector]") {
  image::ImageModelFile file = image::load_image_model(std::string(VITSCOPE_DETR_FIXTURES_DIR) +
                                                       "/r50_slim_postnorm/model.safetensors");
  const ModelShape shape = ModelShape::of(file.model);
  REQUIRE(shape.detector);
  DemoImage image = analyse_image(file.model, image::load_image(kImages + "/chelsea.jpg"), "chelsea.jpg");
  // The fixture's random weights detect nothing at 0.7: one detection of query 3, by hand.
  image.detections = {{3, 1, "class 1", 0.9, cv::Rect2d(100, 50, 120, 100)}};
  DemoState s = initial_state(shape);
  CHECK(s.kind == ModuleKind::cross);
  CHECK(s.layer == shape.decoder_layers - 1);
  select_centre(s, image);
  REQUIRE(s.detection == std::optional<std::size_t>(0));

  const std::vector<Tile> per_head = view_tiles(image, s, shape);
  REQUIRE(per_head.size() == 1 + shape.heads);
  CHECK(per_head[0].caption.rfind("query 3: class 1 90%", 0) == 0);
  const Tensor3& cross = image.attention.modules.at(nn::ModulePath::decoder_multihead_attn(s.layer));
  const Tensor2 fused = image::fuse_heads(cross, image::HeadFusion::mean);
  CHECK(worst(per_head[0].map, image::key_map(fused, 3, image.attention.grid)) == 0);
  CHECK(status_line(image, s, shape).find("query 3: class 1 90%") != std::string::npos);
  const cv::Mat with_box = compose_frame(image, s, shape, {});
  CHECK(with_box.size() == kFrameSize);

  // Off the box: no detection, every query's fused map; on it again: the detection.
  const ImageBox box = image_box(image.rgb.size());
  const auto frame_pixel = [&](double x, double y) {
    return cv::Point(static_cast<int>(x * box.scale), static_cast<int>(y * box.scale));
  };
  REQUIRE(click(s, frame_pixel(10, 10), image));
  CHECK(!s.detection);
  CHECK(static_cast<int64_t>(view_tiles(image, s, shape).size()) ==
        std::min(file.model.options.num_queries, int64_t{12}));
  REQUIRE(click(s, frame_pixel(160, 100), image));
  CHECK(s.detection == std::optional<std::size_t>(0));
  CHECK(cv::norm(compose_frame(image, s, shape, {}), with_box, cv::NORM_INF) > 0);  // the token moved
}

}  // namespace
}  // namespace vitscope::demo
