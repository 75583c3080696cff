#include "vitscope/image/image_model.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "vitscope/io/metadata_reader.hpp"
#include "vitscope/error.hpp"
#include "vitscope/image/patch_embed.hpp"
#include "vitscope/image/position.hpp"
#include "vitscope/image/sequence.hpp"
#include "vitscope/io/safetensors.hpp"
#include "vitscope/io/model_file.hpp"
#include "vitscope/nn/sublayers.hpp"
#include "vitscope/nn/state_dict.hpp"

namespace vitscope::image {

namespace {

constexpr int64_t kMaxPatch = 1024;
constexpr int64_t kMaxImageSize = 1 << 14;
constexpr int64_t kMaxCount = 100000;  // queries, classes
constexpr int64_t kMaxGrid = 1024;     // learned pos_embed rows / columns
constexpr int64_t kMaxChannels = 4096;  // a stem step's output channels

std::size_t to_size(int64_t v) { return static_cast<std::size_t>(v); }

std::array<float, 3> three_numbers(const MetadataReader& read, const std::string& key) {
  std::array<float, 3> values{};
  std::istringstream in(read.text(key));
  std::string item;
  std::size_t n = 0;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    if (n == 3 || item.empty() || *end != '\0' || !std::isfinite(v)) {
      read.fail(key, "'" + read.text(key) + "' is not three comma-separated numbers");
    }
    values[n++] = static_cast<float>(v);
  }
  if (n != 3) read.fail(key, "'" + read.text(key) + "' is not three comma-separated numbers");
  return values;
}

template <class Enum>
Enum choice(const MetadataReader& read, const std::string& key,
            const std::vector<std::pair<const char*, Enum>>& names) {
  for (const auto& [name, value] : names) {
    if (read.text(key) == name) return value;
  }
  std::string allowed;
  for (const auto& [name, value] : names) allowed += (allowed.empty() ? "" : ", ") + std::string(name);
  read.fail(key, "'" + read.text(key) + "' is not one of " + allowed);
}

int64_t bounded(const MetadataReader& read, const std::string& key, int64_t lo, int64_t hi) {
  const int64_t v = read.integer(key);
  if (v < lo || v > hi) {
    read.fail(key, std::to_string(v) + " is not in " + std::to_string(lo) + ".." + std::to_string(hi));
  }
  return v;
}

// "c_1,..,c_n": the output channels of n stride-2 steps that make patches of 2^n = patch_size.
std::vector<int64_t> stem_channels(const MetadataReader& read, int64_t patch_size) {
  std::vector<int64_t> channels;
  std::istringstream in(read.text("patch_stem"));
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long long c = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || c < 1 || c > kMaxChannels) {
      read.fail("patch_stem", "'" + read.text("patch_stem") +
                                  "' is not comma-separated channel counts in 1.." +
                                  std::to_string(kMaxChannels));
    }
    channels.push_back(c);
  }
  if (channels.empty() || channels.size() > 10 || (int64_t{1} << channels.size()) != patch_size) {
    read.fail("patch_stem", "has " + std::to_string(channels.size()) +
                                " stride-2 steps, which do not make patches of " +
                                std::to_string(patch_size));
  }
  return channels;
}

std::vector<std::string> class_names(const MetadataReader& read, std::size_t count) {
  nlohmann::json names = nlohmann::json::parse(read.text("class_names"), nullptr, false);
  if (!names.is_array() || names.size() != count ||
      !std::all_of(names.begin(), names.end(), [](const auto& n) { return n.is_string(); })) {
    read.fail("class_names", "is not a JSON array of " + std::to_string(count) + " strings");
  }
  return names.get<std::vector<std::string>>();
}

// "n_1,n_2,n_3,n_4": four counts in lo..hi.
std::array<std::size_t, 4> four_counts(const MetadataReader& read, const std::string& key, int64_t lo,
                                       int64_t hi) {
  std::array<std::size_t, 4> counts{};
  std::istringstream in(read.text(key));
  std::string item;
  std::size_t n = 0;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long long c = std::strtoll(item.c_str(), &end, 10);
    if (n == 4 || item.empty() || *end != '\0' || c < lo || c > hi) n = 5;
    if (n == 5) break;
    counts[n++] = to_size(c);
  }
  if (n != 4) {
    read.fail(key, "'" + read.text(key) + "' is not four comma-separated counts in " + std::to_string(lo) +
                       ".." + std::to_string(hi));
  }
  return counts;
}

// The keys of docs/image_model.md, "Detector": DETR's ResNet backbone and its heads.
void read_detector(const MetadataReader& read, ImageModelOptions& o) {
  if (read.has("backbone")) {
    if (read.text("backbone") != "resnet") read.fail("backbone", "'" + read.text("backbone") + "' is not resnet");
    ResNetOptions r;
    r.block = choice<ResNetBlock>(read, "backbone_block",
                                  {{"BasicBlock", ResNetBlock::BasicBlock}, {"Bottleneck", ResNetBlock::Bottleneck}});
    r.layers = four_counts(read, "backbone_layers", 1, 1000);
    r.planes = four_counts(read, "backbone_planes", 1, kMaxChannels);
    r.width_per_group = to_size(bounded(read, "backbone_width_per_group", 1, kMaxChannels));
    r.dilation = read.flag_or("backbone_dilation", false);
    if (r.dilation && r.block == ResNetBlock::BasicBlock) {
      read.fail("backbone_dilation", "needs Bottleneck blocks (torchvision's BasicBlock has no dilation)");
    }
    const int64_t stride = r.dilation ? 16 : 32;
    if (o.patch_size != stride) {
      read.fail("patch_size", "must be the backbone's stride " + std::to_string(stride) + ", not " +
                                  std::to_string(o.patch_size));
    }
    if (read.has("patch_stem")) read.fail("patch_stem", "a model with a backbone has no patch stem");
    o.backbone = r;
  }
  if (!read.has("detector")) return;
  if (read.text("detector") != "detr") read.fail("detector", "'" + read.text("detector") + "' is not detr");
  if (o.target != Target::queries || o.transformer.num_decoder_layers == 0 || o.num_classes == 0) {
    read.fail("detector", "detr needs target queries, decoder layers and num_classes > 0");
  }
  o.detector = true;
}

// The ViT keys of docs/image_model.md, "Prefix tokens": every one optional, absent meaning none.
void read_prefix_tokens(const MetadataReader& read, ImageModelOptions& o) {
  if (read.has("pos_resize")) {
    std::vector<std::pair<const char*, GridResize>> rules;
    for (GridResize r : {GridResize::size, GridResize::dino, GridResize::size_antialias}) {
      rules.emplace_back(grid_resize_name(r), r);
    }
    o.pos_resize = choice<GridResize>(read, "pos_resize", rules);
  }
  if (read.has("head_pool")) {
    o.head_pool = choice<HeadPool>(read, "head_pool", {{"tokens", HeadPool::tokens}, {"cls", HeadPool::cls}});
  }
  o.cls_token = read.flag_or("cls_token", false);
  o.dist_token = read.flag_or("dist_token", false);
  if (o.dist_token && !o.cls_token) read.fail("dist_token", "needs cls_token: it follows the CLS token");
  if (read.has("num_register_tokens")) o.num_register_tokens = bounded(read, "num_register_tokens", 0, kMaxCount);
  const auto X = static_cast<int64_t>(o.num_prefix_tokens());
  // As ViTs store them: positions for the CLS and distillation tokens, none for registers.
  const int64_t positioned = o.position == Position::learned ? int64_t{o.cls_token} + int64_t{o.dist_token} : 0;
  o.pos_embed_prefix = read.has("pos_embed_prefix") ? bounded(read, "pos_embed_prefix", 0, X) : positioned;
  if (o.head_pool == HeadPool::cls && (!o.cls_token || o.num_classes == 0)) {
    read.fail("head_pool", "'cls' needs cls_token true and num_classes > 0");
  }
  if (X == 0) return;
  if (o.transformer.num_decoder_layers > 0) {
    read.fail("cls_token", "prefix tokens need an encoder-only model (num_decoder_layers 0)");
  }
  if (o.position_mode != PositionMode::input || o.position == Position::sine) {
    read.fail("cls_token", "prefix tokens need position learned or none, with position_mode input");
  }
}

ImageModelOptions options_from_metadata(const std::map<std::string, std::string>& metadata,
                                        const std::string& source) {
  const MetadataReader read(metadata, source);
  read.expect_architecture("ImageTransformer");
  ImageModelOptions o;
  o.transformer = transformer_options_from_metadata(metadata, source);
  if (o.transformer.batch_first) read.fail("batch_first", "must be false in an image model");
  o.in_chans = bounded(read, "in_chans", 3, 3);
  o.patch_size = bounded(read, "patch_size", 1, kMaxPatch);
  if (metadata.count("patch_stem")) o.stem_channels = stem_channels(read, o.patch_size);
  o.image_size = bounded(read, "image_size", 1, kMaxImageSize);
  o.mean = three_numbers(read, "mean");
  o.std = three_numbers(read, "std");
  if (std::any_of(o.std.begin(), o.std.end(), [](float s) { return !(s > 0.0f); })) {
    read.fail("std", "must be positive");
  }
  o.resize = resize_options_from_metadata(metadata, source);
  o.position = choice<Position>(read, "position", {{"sine", Position::sine},
                                                   {"learned", Position::learned},
                                                   {"none", Position::none}});
  if (o.position == Position::sine && o.transformer.d_model % 4 != 0) {
    read.fail("position", "sine needs d_model divisible by 4");
  }
  o.position_mode = choice<PositionMode>(
      read, "position_mode", {{"input", PositionMode::input}, {"attention", PositionMode::attention}});
  if (o.transformer.num_decoder_layers > 0) {
    o.target = choice<Target>(read, "target", {{"tokens", Target::tokens}, {"queries", Target::queries}});
    if (o.target == Target::queries) o.num_queries = bounded(read, "num_queries", 1, kMaxCount);
  }
  o.num_classes = bounded(read, "num_classes", 0, kMaxCount);
  if (o.num_classes > 0) o.class_names = class_names(read, to_size(o.num_classes));
  read_prefix_tokens(read, o);
  read_detector(read, o);
  return o;
}

// "gh,gw", or the square grid of n rows when the key is absent.
std::array<std::size_t, 2> sequence_grid(const MetadataReader& read, std::size_t n) {
  if (!read.has("pos_embed_grid")) {
    const auto side = static_cast<std::size_t>(std::llround(std::sqrt(double(n))));
    if (side * side != n) {
      read.fail("pos_embed_grid", "is missing, and pos_embed's " + std::to_string(n) +
                                      " patch rows are not a square grid");
    }
    return {side, side};
  }
  std::istringstream in(read.text("pos_embed_grid"));
  char comma = 0;
  long long gh = 0, gw = 0;
  if (!(in >> gh >> comma >> gw) || comma != ',' || !in.eof() || gh < 1 || gw < 1 ||
      gh > kMaxGrid || gw > kMaxGrid || to_size(gh) * to_size(gw) != n) {
    read.fail("pos_embed_grid", "'" + read.text("pos_embed_grid") + "' is not gh,gw with gh*gw = " +
                                    std::to_string(n) + " patch rows of pos_embed");
  }
  return {to_size(gh), to_size(gw)};
}

// A learned pos_embed's grid is the file's own: its shape says the layout and the grid, checked
// before use. Grid layout (1,E,gh,gw) allocates model.pos_embed, sequence layout (1,P+gh*gw,E)
// model.pos_embed_sequence.
void allocate_pos_embed(const std::vector<NamedTensor>& tensors, const MetadataReader& read,
                        const std::string& source, ImageModel& m) {
  ImageModelOptions& o = m.options;
  const std::size_t E = to_size(o.transformer.d_model), P = to_size(o.pos_embed_prefix);
  for (const NamedTensor& t : tensors) {
    if (t.name != "pos_embed") continue;
    const Shape& s = t.shape;
    if (s.size() == 4 && s[0] == 1 && s[1] == E && s[2] >= 1 && s[3] >= 1 &&
        s[2] <= to_size(kMaxGrid) && s[3] <= to_size(kMaxGrid)) {
      if (read.has("pos_embed_prefix") && P > 0) {
        read.fail("pos_embed_prefix", "needs a sequence-layout pos_embed (1, P + gh*gw, E)");
      }
      o.pos_embed_prefix = 0;
      o.pos_grid = {s[2], s[3]};
      m.pos_embed = xt::zeros<float>({std::size_t{1}, E, s[2], s[3]});
      return;
    }
    if (s.size() == 3 && s[0] == 1 && s[2] == E && s[1] > P &&
        s[1] - P <= to_size(kMaxGrid) * to_size(kMaxGrid)) {
      o.pos_grid = sequence_grid(read, s[1] - P);
      m.pos_embed_sequence = xt::zeros<float>({std::size_t{1}, s[1], E});
      return;
    }
    throw Error("state_dict_mismatch",
                source + ": pos_embed is " + shape_to_string(s) + ", the model expects (1, " +
                    std::to_string(E) + ", gh, gw) or (1, " + std::to_string(P) + " + gh*gw, " +
                    std::to_string(E) + ")");
  }
  throw Error("state_dict_mismatch", source + ": tensors do not fit the model: missing pos_embed");
}

// The patch rows of a sequence-layout pos_embed (1,P+gh*gw,E) as the grid (1,E,gh,gw).
Tensor4 patch_positions(const Tensor3& sequence, std::size_t P, std::array<std::size_t, 2> grid) {
  const std::size_t E = sequence.shape(2), N = grid[0] * grid[1];
  Tensor4 out = Tensor4::from_shape({1, E, grid[0], grid[1]});
  for (std::size_t n = 0; n < N; ++n) {
    for (std::size_t e = 0; e < E; ++e) out.data()[e * N + n] = sequence(0, P + n, e);
  }
  return out;
}

std::vector<Parameter> image_parameters(ImageModel& m) {
  std::vector<Parameter> out;
  auto add = [&out](const std::string& name, auto& tensor) {
    if (tensor.size() == 0) return;
    out.push_back({name, Shape(tensor.shape().begin(), tensor.shape().end()), tensor.data()});
  };
  for (std::size_t i = 0; i < m.patch_embed.stem.size(); ++i) {
    add("patch_embed.stem." + std::to_string(i) + ".weight", m.patch_embed.stem[i].weight);
    add("patch_embed.stem." + std::to_string(i) + ".bias", m.patch_embed.stem[i].bias);
  }
  add("patch_embed.proj.weight", m.patch_embed.proj.weight);
  add("patch_embed.proj.bias", m.patch_embed.proj.bias);
  add("input_proj.weight", m.input_proj.weight);
  add("input_proj.bias", m.input_proj.bias);
  add("cls_token", m.cls_token);
  add("dist_token", m.dist_token);
  add("register_tokens", m.register_tokens);
  add("pos_embed", m.pos_embed);
  add("pos_embed", m.pos_embed_sequence);  // at most one of the two layouts is allocated
  add("query_embed.weight", m.query_embed);
  for (Parameter& p : named_parameters(m.transformer, "transformer.")) out.push_back(p);
  add("head.weight", m.head.weight);
  add("head.bias", m.head.bias);
  add("head_dist.weight", m.head_dist.weight);
  add("head_dist.bias", m.head_dist.bias);
  add("class_embed.weight", m.class_embed.weight);
  add("class_embed.bias", m.class_embed.bias);
  for (std::size_t i = 0; i < m.bbox_embed.size(); ++i) {
    add("bbox_embed.layers." + std::to_string(i) + ".weight", m.bbox_embed[i].weight);
    add("bbox_embed.layers." + std::to_string(i) + ".bias", m.bbox_embed[i].bias);
  }
  return out;
}

// The stack layer "encoder.layers.N" / "decoder.layers.N" names; none for "output" and "encoder".
std::optional<nn::LayerPath> layer_path(const nn::Transformer& transformer, const std::string& layer) {
  for (std::size_t i = 0; i < transformer.encoder.layers.size(); ++i) {
    if (nn::LayerPath{nn::Stack::encoder, i}.str() == layer) return nn::LayerPath{nn::Stack::encoder, i};
  }
  for (std::size_t i = 0; i < transformer.decoder.layers.size(); ++i) {
    if (nn::LayerPath{nn::Stack::decoder, i}.str() == layer) return nn::LayerPath{nn::Stack::decoder, i};
  }
  return std::nullopt;
}

// (Q,E) -> (Q,B,E): the same queries for every image.
Tensor3 repeat_over_batch(const Tensor2& queries, std::size_t B) {
  const std::size_t Q = queries.shape(0), E = queries.shape(1);
  Tensor3 out = Tensor3::from_shape({Q, B, E});
  for (std::size_t q = 0; q < Q; ++q) {
    for (std::size_t b = 0; b < B; ++b) std::copy_n(&queries(q, 0), E, &out(q, b, 0));
  }
  return out;
}

// (T,B,E) -> (B,T,E)
Tensor3 batch_major(const Tensor3& seq) {
  const std::size_t T = seq.shape(0), B = seq.shape(1), E = seq.shape(2);
  Tensor3 out = Tensor3::from_shape({B, T, E});
  for (std::size_t t = 0; t < T; ++t) {
    for (std::size_t b = 0; b < B; ++b) std::copy_n(&seq(t, b, 0), E, &out(b, t, 0));
  }
  return out;
}

// Rows [first, first + count) of seq (T,B,E).
Tensor3 sequence_rows(const Tensor3& seq, std::size_t first, std::size_t count) {
  const std::size_t row = seq.shape(1) * seq.shape(2);
  Tensor3 out = Tensor3::from_shape({count, seq.shape(1), seq.shape(2)});
  std::copy_n(seq.data() + first * row, count * row, out.data());
  return out;
}

// (B,S) key padding mask -> (B,X+S): prefix tokens are never padding.
nn::KeyPaddingMask with_prefix_columns(const nn::KeyPaddingMask& kpm, std::size_t X) {
  const std::size_t B = kpm.shape(0), S = kpm.shape(1);
  nn::KeyPaddingMask out = xt::zeros<float>({B, X + S});
  for (std::size_t b = 0; b < B; ++b) std::copy_n(&kpm(b, 0), S, &out(b, X));
  return out;
}

}  // namespace

ImageModel::ImageModel(const ImageModelOptions& options)
    : options(options), transformer(options.transformer) {
  const std::size_t E = to_size(options.transformer.d_model), p = to_size(options.patch_size);
  std::size_t channels = to_size(options.in_chans);
  for (int64_t c : options.stem_channels) {
    patch_embed.stem.push_back(
        {xt::zeros<float>({to_size(c), channels, std::size_t{3}, std::size_t{3}}),
         xt::zeros<float>({to_size(c)})});
    channels = to_size(c);
  }
  if (options.backbone) {
    backbone.options = *options.backbone;
    input_proj = {xt::zeros<float>({E, backbone.out_channels(), std::size_t{1}, std::size_t{1}}),
                  xt::zeros<float>({E})};
  } else {
    const std::size_t kernel = patch_embed.stem.empty() ? p : 1;
    patch_embed.proj = {xt::zeros<float>({E, channels, kernel, kernel}), xt::zeros<float>({E})};
  }
  if (options.target == Target::queries && !transformer.encoder_only()) {
    query_embed = xt::zeros<float>({to_size(options.num_queries), E});
  }
  const int64_t d_model = options.transformer.d_model;
  if (options.detector) {
    class_embed = nn::Linear(d_model, options.num_classes + 1);
    bbox_embed = {nn::Linear(d_model, d_model), nn::Linear(d_model, d_model), nn::Linear(d_model, 4)};
  } else if (options.num_classes > 0) {
    head = nn::Linear(d_model, options.num_classes);
  }
  if (options.cls_token) cls_token = xt::zeros<float>({std::size_t{1}, std::size_t{1}, E});
  if (options.dist_token) dist_token = xt::zeros<float>({std::size_t{1}, std::size_t{1}, E});
  if (options.num_register_tokens > 0) {
    register_tokens = xt::zeros<float>({std::size_t{1}, to_size(options.num_register_tokens), E});
  }
  if (options.dist_token && options.head_pool == HeadPool::cls) {
    head_dist = nn::Linear(options.transformer.d_model, options.num_classes);
  }
}

Tensor3 ImageModel::with_prefix_tokens(const Tensor3& patches) const {
  const std::size_t S = patches.shape(0), B = patches.shape(1), E = patches.shape(2);
  const std::size_t X = options.num_prefix_tokens(), P = to_size(options.pos_embed_prefix);
  std::vector<const float*> prefix;  // each token's (E) row, in sequence order
  if (cls_token.size()) prefix.push_back(cls_token.data());
  if (dist_token.size()) prefix.push_back(dist_token.data());
  for (std::size_t r = 0; r < register_tokens.size() / E; ++r) prefix.push_back(&register_tokens(0, r, 0));
  Tensor3 src = Tensor3::from_shape({X + S, B, E});
  for (std::size_t x = 0; x < X; ++x) {
    for (std::size_t b = 0; b < B; ++b) {
      float* row = &src(x, b, 0);
      std::copy_n(prefix[x], E, row);
      if (x < P) {
        for (std::size_t e = 0; e < E; ++e) row[e] += pos_embed_sequence(0, x, e);
      }
    }
  }
  std::copy_n(patches.data(), patches.size(), &src(X, 0, 0));
  return src;
}

PreprocessOptions ImageModel::preprocess_options() const {
  return {static_cast<int>(options.image_size), static_cast<int>(options.patch_size), options.mean,
          options.std, options.resize};
}

std::vector<std::string> ImageModel::layer_names() const {
  std::vector<std::string> names = {"output", "encoder"};
  for (std::size_t i = 0; i < transformer.encoder.layers.size(); ++i) {
    names.push_back("encoder.layers." + std::to_string(i));
  }
  if (options.target == Target::tokens) {
    for (std::size_t i = 0; i < transformer.decoder.layers.size(); ++i) {
      names.push_back("decoder.layers." + std::to_string(i));
    }
  }
  return names;
}

void ImageModel::check_layer(const std::string& layer) const {
  const std::vector<std::string> names = layer_names();
  if (std::find(names.begin(), names.end(), layer) != names.end()) return;
  std::string known;
  for (const std::string& name : names) known += (known.empty() ? "" : ", ") + name;
  throw Error("bad_layer", "this model's layers are " + known);
}

ImageModelOutput ImageModel::forward(const ImageBatch& batch, const std::string& layer,
                                     const std::vector<nn::ModulePath>& attention,
                                     const std::vector<nn::ModulePath>& scored) const {
  check_layer(layer);
  const std::vector<nn::ModulePath> modules = attention_modules();
  for (const auto* paths : {&attention, &scored}) {
    for (const nn::ModulePath& path : *paths) {
      if (std::find(modules.begin(), modules.end(), path) == modules.end()) {
        throw Error("bad_attention_module", "no attention module '" + path.str() + "' in this model");
      }
    }
  }
  const std::size_t B = batch.pixels.shape(0), p = to_size(options.patch_size);
  const std::size_t E = to_size(options.transformer.d_model);
  ImageModelOutput result;

  // 1. Patch embedding, after the convolutional stem if there is one, or the backbone's C5
  //    through input_proj: (B,C,H,W) -> (B,E,h,w).
  const Tensor4 tokens = options.backbone
                             ? image::patch_embed(backbone.forward(batch.pixels), input_proj.weight, input_proj.bias)
                             : patch_embed.forward(batch.pixels);
  const std::size_t h = tokens.shape(2), w = tokens.shape(3);

  // 2. Token mask (B,h,w): a token is padding iff its top-left pixel is; each image's real grid.
  result.token_mask = xt::xtensor<bool, 3>::from_shape({B, h, w});
  for (std::size_t b = 0; b < B; ++b) {
    std::size_t rows = 0, cols = 0;
    for (std::size_t i = 0; i < h; ++i) {
      for (std::size_t j = 0; j < w; ++j) {
        const bool padding = batch.pixel_mask(b, i * p, j * p);
        result.token_mask(b, i, j) = padding;
        if (!padding) rows = std::max(rows, i + 1), cols = std::max(cols, j + 1);
      }
    }
    result.grids.push_back({rows, cols});
  }

  // 3. Position (B,E,h,w), or none.
  Tensor4 pos;
  if (options.position == Position::sine) pos = position_embedding_sine(result.token_mask, E);
  if (options.position == Position::learned) {
    const Tensor4& grid = pos_embed.size() ? pos_embed
                                           : patch_positions(pos_embed_sequence,
                                                             to_size(options.pos_embed_prefix), options.pos_grid);
    pos = position_embedding_learned(grid, h, w, result.grids, options.pos_resize);
  }

  // 4. to_sequence: src and pos (S,B,E); key padding mask (B,S).
  Tensor3 src = to_sequence(tokens);
  const Tensor3 pos_seq = pos.size() ? to_sequence(pos) : Tensor3();
  nn::KeyPaddingMask kpm = to_key_padding_mask(result.token_mask);

  // 5. Encoder: position added once to its input (ViT), or inside every attention (DETR).
  const bool pos_in_attention = options.position_mode == PositionMode::attention;
  if (!pos_in_attention && pos_seq.size()) nn::add_in_place(src, pos_seq);
  // Prefix tokens first: src (X+S,B,E), kpm (B,X+S).
  const std::size_t X = options.num_prefix_tokens();
  result.num_prefix_tokens = X;
  if (X > 0) {
    src = with_prefix_tokens(src);
    kpm = with_prefix_columns(kpm, X);
  }
  const Tensor3 no_pos;
  const Tensor3& layer_pos = pos_in_attention ? pos_seq : no_pos;
  nn::AttentionRecorder recorder(attention, layer_path(transformer, layer), scored);
  const Tensor3 memory = transformer.encoder.forward(src, {}, kpm, layer_pos, &recorder);

  // 6. Decoder: the tokens themselves or learned queries as its target.
  Tensor3 out = memory;
  if (!transformer.encoder_only()) {
    Tensor3 tgt, query_pos;
    nn::KeyPaddingMask tgt_kpm;
    if (options.target == Target::tokens) {
      tgt = src;  // mode input: tokens + pos; mode attention: the bare tokens
      query_pos = layer_pos;
      tgt_kpm = kpm;
    } else if (pos_in_attention) {
      tgt = xt::zeros<float>({to_size(options.num_queries), B, E});
      query_pos = repeat_over_batch(query_embed, B);
    } else {
      tgt = repeat_over_batch(query_embed, B);
    }
    out = transformer.decoder.forward(tgt, memory, {}, {}, tgt_kpm, kpm, layer_pos, query_pos,
                                      &recorder);
  }
  result.attention = recorder.take_weights();
  result.attention_scores = recorder.take_scores();

  // 7. Feature map of the chosen output's patch tokens, prefix outputs, queries.
  const bool queries = options.target == Target::queries && !transformer.encoder_only();
  const Tensor3& token_output = queries ? memory : out;
  const Tensor3& chosen = layer == "output"    ? token_output
                          : layer == "encoder" ? memory
                                               : recorder.layer_output();  // (S,B,E)
  result.features = to_feature_map(X > 0 ? sequence_rows(chosen, X, h * w) : chosen, h, w);
  if (X > 0) {
    result.prefix_outputs = batch_major(sequence_rows(out, 0, X));
    out = sequence_rows(out, X, h * w);
  }
  if (queries) result.query_outputs = batch_major(out);

  // 8. Head: DETR's class and box heads on the queries, on the CLS token (with DeiT's
  //    distillation head beside it), or on every output.
  if (options.detector) {
    result.query_logits = batch_major(class_embed.forward(out));
    result.query_boxes = batch_major(boxes(out));
  } else if (options.num_classes > 0 && options.head_pool == HeadPool::cls) {
    result.class_logits = cls_head(result.prefix_outputs);
  } else if (options.num_classes > 0) {
    const Tensor3 logits = head.forward(out);
    if (queries) {
      result.query_logits = batch_major(logits);
    } else {
      result.logits = to_feature_map(logits, h, w);
    }
  }
  return result;
}

Tensor3 ImageModel::boxes(const Tensor3& queries) const {
  const auto relu = [](Tensor3 x) {
    for (float& v : x) v = std::max(v, 0.0f);
    return x;
  };
  Tensor3 out = bbox_embed[2].forward(relu(bbox_embed[1].forward(relu(bbox_embed[0].forward(queries)))));
  for (float& v : out) v = 1.0f / (1.0f + std::exp(-v));
  return out;
}

Tensor2 ImageModel::cls_head(const Tensor3& prefix_outputs) const {
  const std::size_t B = prefix_outputs.shape(0);
  const std::size_t K = to_size(options.num_classes);
  Tensor2 logits = Tensor2::from_shape({B, K});
  std::vector<float> dist_logits(K);
  for (std::size_t b = 0; b < B; ++b) {
    head.forward_rows(&prefix_outputs(b, 0, 0), 1, &logits(b, 0));
    if (!options.dist_token) continue;
    // DeiT at eval: the mean of the class and distillation heads.
    head_dist.forward_rows(&prefix_outputs(b, 1, 0), 1, dist_logits.data());
    for (std::size_t k = 0; k < K; ++k) logits(b, k) = (logits(b, k) + dist_logits[k]) / 2;
  }
  return logits;
}

ImageModelFile load_image_model(const std::string& path) {
  io::SafetensorsFile file = io::read_safetensors(path);
  ImageModelOptions options = options_from_metadata(file.metadata, path);
  ImageModelFile result{ImageModel(options), std::move(file.metadata)};
  if (options.position == Position::learned) {
    allocate_pos_embed(file.tensors, MetadataReader(result.metadata, path), path, result.model);
  }
  if (options.position != Position::learned && result.model.options.pos_embed_prefix > 0) {
    throw Error("bad_metadata", path + ": pos_embed_prefix needs position learned");
  }
  if (options.backbone) {
    // The backbone's convs load with their BatchNorms folded in; the rest binds as it is.
    const std::string body = "backbone.0.body.";
    result.model.backbone = load_resnet(file.tensors, *options.backbone, body, path);
    const auto in_body = [&](const NamedTensor& t) { return t.name.compare(0, body.size(), body) == 0; };
    file.tensors.erase(std::remove_if(file.tensors.begin(), file.tensors.end(), in_body), file.tensors.end());
  }
  load_state_dict(image_parameters(result.model), file.tensors, path);
  return result;
}

}  // namespace vitscope::image
