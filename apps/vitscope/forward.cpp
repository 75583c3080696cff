// vitscope forward: one inference run from .npy inputs to an .npy output, optionally dumping every
// attention module's per-head weights. An nn.Transformer takes sequences (--src, --tgt, masks); an
// image model takes preprocessed pixels (--pixels) and gives its feature map.

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "model_option.hpp"
#include "precision.hpp"
#include "threads.hpp"
#include "vitscope/error.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/io/npy.hpp"
#include "vitscope/io/npy_tensors.hpp"
#include "vitscope/io/model_file.hpp"
#include "vitscope/nn/attention_recorder.hpp"
#include "vitscope/nn/masks.hpp"
#include "vitscope/nn/state_dict.hpp"

namespace vitscope::cli {

namespace {

struct ForwardOptions {
  std::string model;
  TransformerArguments given;
  std::string pixels;      // image model
  std::string pixel_mask;  // image model, optional
  std::string src;
  std::string tgt;
  std::string pos;
  std::string query_pos;
  std::string src_mask;
  std::string tgt_mask;
  std::string memory_mask;
  std::string src_key_padding_mask;
  std::string tgt_key_padding_mask;
  std::string memory_key_padding_mask;
  std::string out;
  std::string logits_out;  // image model with a head, optional
  std::string boxes_out;   // detector, optional
  std::string attn_dir;
  int threads = 1;
  std::string precision;
};

// An input file with the option that named it, which is how errors refer to it.
struct InputFile {
  std::string option;
  std::string path;

  bool given() const { return !path.empty(); }
  std::string label() const { return option + " " + path; }
};

struct Inputs {
  Tensor3 src;
  Tensor3 tgt;  // empty when only the encoder runs
  Tensor3 pos, query_pos;  // DETR's positions, shaped as src and tgt; empty when not given
  nn::AttnMask src_mask, tgt_mask, memory_mask;
  nn::KeyPaddingMask src_key_padding_mask, tgt_key_padding_mask, memory_key_padding_mask;
};

// The sizes every input must agree on.
struct Dims {
  std::size_t batch = 0;
  std::size_t src_len = 0;
  std::size_t tgt_len = 0;
  std::size_t batch_heads = 0;  // N * nhead, the first dimension of a 3-D attention mask
};

std::string dims_text(std::size_t a, std::size_t b) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
}

std::string dims_text(std::size_t a, std::size_t b, std::size_t c) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + ")";
}

[[noreturn]] void reject_shape(const InputFile& file, const Shape& shape,
                               const std::string& expected) {
  throw Error("bad_input",
              file.label() + ": shape " + shape_to_string(shape) + ", expected " + expected);
}

Shape shape_of(const Tensor3& x) { return Shape(x.shape().begin(), x.shape().end()); }

// src / tgt: (len, N, d_model), or (N, len, d_model) for a batch_first model. Empty sequences
// are refused: zero keys leave the softmax undefined, and nothing is computed for zero queries.
Tensor3 read_sequence(const InputFile& file, const nn::TransformerOptions& model,
                      const std::string& len_name) {
  Tensor3 x = io::read_tensor3(file.path, file.label());
  const std::string E = std::to_string(model.d_model);
  if (x.shape(0) == 0 || x.shape(1) == 0 || x.shape(2) != static_cast<std::size_t>(model.d_model)) {
    const std::string layout =
        model.batch_first ? "(N, " + len_name + ", " + E + ")" : "(" + len_name + ", N, " + E + ")";
    reject_shape(file, shape_of(x),
                 layout + ", N and " + len_name + " at least 1 (d_model " + E +
                     (model.batch_first ? ", batch_first)" : ", sequence first)"));
  }
  return x;
}

// PyTorch's rule: (L, S) for every batch and head, or (N * nhead, L, S).
nn::AttnMask read_attn_mask(const InputFile& file, std::size_t L, std::size_t S, const Dims& dims) {
  const io::NpyArray array = io::read_npy(file.path);
  nn::AttnMask mask = nn::to_attn_mask(array.shape, array.data, array.dtype == io::NpyDType::Bool,
                                         file.label());
  const Shape& shape = array.shape;
  const bool fits = shape.size() == 2
                        ? shape[0] == L && shape[1] == S
                        : shape[0] == dims.batch_heads && shape[1] == L && shape[2] == S;
  if (!fits) {
    reject_shape(file, shape,
                 "(L, S) = " + dims_text(L, S) +
                     " or (N*nhead, L, S) = " + dims_text(dims.batch_heads, L, S));
  }
  return mask;
}

nn::KeyPaddingMask read_key_padding_mask(const InputFile& file, std::size_t len, const Dims& dims) {
  const io::NpyArray array = io::read_npy(file.path);
  nn::KeyPaddingMask mask = nn::to_key_padding_mask(
      array.shape, array.data, array.dtype == io::NpyDType::Bool, file.label());
  if (mask.shape(0) != dims.batch || mask.shape(1) != len) {
    reject_shape(file, array.shape, dims_text(dims.batch, len));
  }
  return mask;
}

nn::AttnMask read_optional_attn_mask(const InputFile& file, std::size_t L, std::size_t S,
                                     const Dims& dims) {
  return file.given() ? read_attn_mask(file, L, S, dims) : nn::AttnMask{};
}

nn::KeyPaddingMask read_optional_key_padding_mask(const InputFile& file, std::size_t len,
                                                  const Dims& dims) {
  return file.given() ? read_key_padding_mask(file, len, dims) : nn::KeyPaddingMask{};
}

InputFile src_file(const ForwardOptions& o) { return {"--src", o.src}; }
InputFile tgt_file(const ForwardOptions& o) { return {"--tgt", o.tgt}; }

// The inputs that only the decoder uses: meaningless without a target.
std::vector<InputFile> target_mask_files(const ForwardOptions& o) {
  return {{"--query-pos", o.query_pos},
          {"--tgt-mask", o.tgt_mask},
          {"--memory-mask", o.memory_mask},
          {"--tgt-key-padding-mask", o.tgt_key_padding_mask},
          {"--memory-key-padding-mask", o.memory_key_padding_mask}};
}

void require_target_for_target_masks(const ForwardOptions& o) {
  if (tgt_file(o).given()) return;
  for (const InputFile& file : target_mask_files(o)) {
    if (file.given()) {
      throw UsageError(file.option + " applies to the decoder: it needs --tgt");
    }
  }
}

// A model file that adds positions in every attention (DETR's position_mode attention) gives a
// wrong answer without them, so they are required.
void require_positions(const TransformerFile& file, const ForwardOptions& o) {
  if (!file.pos_in_attention) return;
  if (o.pos.empty()) {
    throw UsageError(o.model + " adds positions in every attention (position_mode attention, as "
                     "DETR): give --pos, shaped as --src");
  }
  if (tgt_file(o).given() && o.query_pos.empty()) {
    throw UsageError(o.model + " adds positions in every attention (position_mode attention, as "
                     "DETR): give --query-pos, shaped as --tgt");
  }
}

void require_decoder(const nn::Transformer& model, const ForwardOptions& o) {
  if (tgt_file(o).given() && model.encoder_only()) {
    throw UsageError(o.model +
                     " is an encoder-only model (num_decoder_layers 0): it has no decoder "
                     "to run --tgt through; drop --tgt and the target masks to run its encoder");
  }
}

// A position input: the shape of the sequence it is added to.
Tensor3 read_optional_like(const InputFile& file, const Tensor3& like, const InputFile& like_file) {
  if (!file.given()) return {};
  Tensor3 x = io::read_tensor3(file.path, file.label());
  if (x.shape() != like.shape()) {
    reject_shape(file, shape_of(x), shape_to_string(shape_of(like)) + ", the shape of " + like_file.option);
  }
  return x;
}

Inputs read_inputs(const ForwardOptions& o, const nn::TransformerOptions& model) {
  const std::size_t batch_dim = model.batch_first ? 0 : 1;
  const std::size_t len_dim = 1 - batch_dim;
  Inputs in;
  in.src = read_sequence(src_file(o), model, "S");
  Dims dims;
  dims.batch = in.src.shape(batch_dim);
  dims.src_len = in.src.shape(len_dim);
  dims.batch_heads = dims.batch * static_cast<std::size_t>(model.nhead);
  if (tgt_file(o).given()) {
    in.tgt = read_sequence(tgt_file(o), model, "T");
    if (in.tgt.shape(batch_dim) != dims.batch) {
      reject_shape(tgt_file(o), shape_of(in.tgt),
                   "batch size N = " + std::to_string(dims.batch) + " as in " +
                       src_file(o).label() + " " + shape_to_string(shape_of(in.src)));
    }
    dims.tgt_len = in.tgt.shape(len_dim);
  }
  const std::size_t S = dims.src_len, T = dims.tgt_len;
  in.src_mask = read_optional_attn_mask({"--src-mask", o.src_mask}, S, S, dims);
  in.tgt_mask = read_optional_attn_mask({"--tgt-mask", o.tgt_mask}, T, T, dims);
  in.memory_mask = read_optional_attn_mask({"--memory-mask", o.memory_mask}, T, S, dims);
  in.src_key_padding_mask =
      read_optional_key_padding_mask({"--src-key-padding-mask", o.src_key_padding_mask}, S, dims);
  in.tgt_key_padding_mask =
      read_optional_key_padding_mask({"--tgt-key-padding-mask", o.tgt_key_padding_mask}, T, dims);
  in.memory_key_padding_mask = read_optional_key_padding_mask(
      {"--memory-key-padding-mask", o.memory_key_padding_mask}, S, dims);
  in.pos = read_optional_like({"--pos", o.pos}, in.src, src_file(o));
  in.query_pos = read_optional_like({"--query-pos", o.query_pos}, in.tgt, tgt_file(o));
  return in;
}

// Each recorded module's per-head weights (N, nhead, L, S) as DIR/<module path>.npy.
void write_attention(const std::map<nn::ModulePath, Tensor4>& weights, const std::string& dir) {
  std::filesystem::create_directories(dir);
  for (const auto& [path, module_weights] : weights) {
    io::write_npy((std::filesystem::path(dir) / (path.str() + ".npy")).string(), module_weights);
  }
}

Tensor3 run_model(const nn::Transformer& model, const Inputs& in, nn::AttentionRecorder& recorder) {
  if (in.tgt.size() == 0) {
    return model.encoder.forward(in.src, in.src_mask, in.src_key_padding_mask, in.pos, &recorder);
  }
  return model.forward(in.src, in.tgt, in.src_mask, in.tgt_mask, in.memory_mask,
                       in.src_key_padding_mask, in.tgt_key_padding_mask,
                       in.memory_key_padding_mask, in.pos, in.query_pos, &recorder);
}

// Every option that names a sequence input: an image model has none of them.
std::vector<InputFile> sequence_files(const ForwardOptions& o) {
  std::vector<InputFile> files = {src_file(o), tgt_file(o), {"--pos", o.pos}, {"--src-mask", o.src_mask},
                                  {"--src-key-padding-mask", o.src_key_padding_mask}};
  for (const InputFile& file : target_mask_files(o)) files.push_back(file);
  return files;
}

// pixels (B,C,H,W) as preprocessing gives them, H and W multiples of p; no padding until a
// --pixel-mask says where it is.
image::ImageBatch read_pixels(const InputFile& file, const image::ImageModelOptions& model) {
  const io::NpyArray array = io::read_npy(file.path);
  const std::size_t C = static_cast<std::size_t>(model.in_chans);
  const std::size_t p = static_cast<std::size_t>(model.patch_size);
  const Shape& s = array.shape;
  if (s.size() != 4 || s[0] == 0 || s[1] != C || s[2] == 0 || s[3] == 0 || s[2] % p || s[3] % p) {
    reject_shape(file, s,
                 "(B, " + std::to_string(C) + ", H, W) with H and W positive multiples of the "
                 "patch size " + std::to_string(p));
  }
  image::ImageBatch batch;
  batch.pixels = io::to_tensor4(array, file.label());
  batch.pixel_mask = xt::zeros<bool>({s[0], s[2], s[3]});
  batch.resized.assign(s[0], cv::Size(static_cast<int>(s[3]), static_cast<int>(s[2])));
  return batch;
}

// pixel_mask (B,H,W), bool or float, true (non-zero) on padding, as preprocessing pads a batch.
xt::xtensor<bool, 3> read_pixel_mask(const InputFile& file, const Shape& pixels) {
  const io::NpyArray array = io::read_npy(file.path);
  const Shape want = {pixels[0], pixels[2], pixels[3]};
  if (array.shape != want) reject_shape(file, array.shape, dims_text(want[0], want[1], want[2]));
  xt::xtensor<bool, 3> mask = xt::xtensor<bool, 3>::from_shape({want[0], want[1], want[2]});
  std::transform(array.data.begin(), array.data.end(), mask.begin(), [](float v) { return v != 0; });
  // Preprocessing pads at the bottom and right only: each image's real pixels are a top-left
  // rectangle of at least one pixel, which the model's token grids rely on.
  for (std::size_t b = 0; b < want[0]; ++b) {
    std::size_t rows = 0, cols = 0;
    while (rows < want[1] && !mask(b, rows, 0)) ++rows;
    while (cols < want[2] && !mask(b, 0, cols)) ++cols;
    bool rectangle = rows > 0 && cols > 0;
    for (std::size_t i = 0; rectangle && i < want[1]; ++i) {
      for (std::size_t j = 0; j < want[2]; ++j) {
        if (mask(b, i, j) != (i >= rows || j >= cols)) rectangle = false;
      }
    }
    if (!rectangle) {
      throw Error("bad_input", file.label() + ": image " + std::to_string(b) +
                                   ": the real pixels (false) must be a non-empty top-left "
                                   "rectangle, padding at the bottom and right");
    }
  }
  return mask;
}

// An image model: pixels in, the feature map (B,E,h,w) out, attention (B,nh,L,S) per module.
void run_image_forward(const ForwardOptions& o, image::ImageModel& model) {
  for (const InputFile& file : sequence_files(o)) {
    if (file.given()) {
      throw UsageError(file.option + " applies to nn.Transformer models; " + o.model +
                       " is an image model: give --pixels");
    }
  }
  if (o.pixels.empty()) throw UsageError(o.model + " is an image model: give --pixels");
  image::ImageBatch batch = read_pixels({"--pixels", o.pixels}, model.options);
  if (!o.pixel_mask.empty()) {
    const Shape pixels(batch.pixels.shape().begin(), batch.pixels.shape().end());
    batch.pixel_mask = read_pixel_mask({"--pixel-mask", o.pixel_mask}, pixels);
  }
  const std::vector<nn::ModulePath> modules =
      o.attn_dir.empty() ? std::vector<nn::ModulePath>{} : model.attention_modules();
  if (!o.boxes_out.empty() && !model.options.detector) {
    throw UsageError("--boxes applies to detectors; " + o.model + " has no box head");
  }
  if (!o.logits_out.empty() && model.options.num_classes == 0) {
    throw UsageError("--logits applies to models with a head; " + o.model + " has none");
  }
  const image::ImageModelOutput out = model.forward(batch, "output", modules);
  io::write_npy(o.out, out.features);
  // The head's logits as the model gives them: per query (B,Q,K or K+1), per CLS (B,K) or per token (B,K,h,w).
  if (!o.logits_out.empty() && out.query_logits.size() > 0) io::write_npy(o.logits_out, out.query_logits);
  if (!o.logits_out.empty() && out.class_logits.size() > 0) io::write_npy(o.logits_out, out.class_logits);
  if (!o.logits_out.empty() && out.logits.size() > 0) io::write_npy(o.logits_out, out.logits);
  if (!o.boxes_out.empty()) io::write_npy(o.boxes_out, out.query_boxes);
  if (!o.attn_dir.empty()) write_attention(out.attention, o.attn_dir);
}

void run_forward(const ForwardOptions& o) {
  use_threads(o.threads);
  use_precision(o.precision);
  ModelFile model_file = load_model_file(o.model, o.given);
  if (model_file.image) return run_image_forward(o, model_file.image->model);
  require_target_for_target_masks(o);
  if (!o.pixels.empty() || !o.pixel_mask.empty() || !o.logits_out.empty() || !o.boxes_out.empty()) {
    throw UsageError("--pixels, --pixel-mask, --logits and --boxes apply to image models; " + o.model +
                     " is an nn.Transformer: give --src");
  }
  if (o.src.empty()) throw UsageError("--src is required for an nn.Transformer model");
  TransformerFile& file = *model_file.transformer;
  require_decoder(file.model, o);
  require_positions(file, o);
  const Inputs inputs = read_inputs(o, file.model.options);
  // Computing the weights costs time, so modules only form them when they are wanted.
  if (!o.attn_dir.empty()) std::filesystem::create_directories(o.attn_dir);
  nn::AttentionRecorder recorder(o.attn_dir.empty() ? std::vector<nn::ModulePath>{}
                                                    : file.model.attention_modules());
  io::write_npy(o.out, run_model(file.model, inputs, recorder));
  if (!o.attn_dir.empty()) write_attention(recorder.weights(), o.attn_dir);
}

CLI::Option* add_input_option(CLI::App& command, const std::string& name, std::string& path,
                              const std::string& description) {
  return command.add_option(name, path, description)->type_name("NPY");
}

}  // namespace

Command add_forward_command(CLI::App& app) {
  auto options = std::make_shared<ForwardOptions>();
  ForwardOptions& o = *options;
  CLI::App* command = app.add_subcommand(
      "forward",
      "Run a model on .npy inputs (shaped as PyTorch shapes them for the model's batch_first). "
      "Without --tgt, or for an encoder-only model, runs the encoder alone. An image model "
      "takes --pixels instead and writes its feature map (B,E,h,w) to --out.");
  add_model_option(*command, "--model", o.model);
  add_input_option(*command, "--src", o.src,
                   "source sequence (S,N,E), or (N,S,E) when batch_first (nn.Transformer: required)");
  add_input_option(*command, "--pixels", o.pixels,
                   "image model: preprocessed pixels (B,C,H,W) float32, H and W multiples of the "
                   "patch size, as tools/reference_model.py's preprocess gives them");
  add_input_option(*command, "--pixel-mask", o.pixel_mask,
                   "image model: bool or float mask (B,H,W); true = padding (default: none)");
  add_input_option(*command, "--tgt", o.tgt,
                   "target sequence (T,N,E), or (N,T,E) when batch_first");
  add_input_option(*command, "--pos", o.pos,
                   "DETR's positions, shaped as --src: added to the keys of every attention over "
                   "the source and to the encoder's queries (required by position_mode attention "
                   "files)");
  add_input_option(*command, "--query-pos", o.query_pos,
                   "DETR's query positions, shaped as --tgt: added to the decoder's queries and "
                   "self-attention keys");
  add_input_option(*command, "--src-mask", o.src_mask, "float or bool mask (S,S) or (N*nhead,S,S)");
  add_input_option(*command, "--tgt-mask", o.tgt_mask, "float or bool mask (T,T) or (N*nhead,T,T)");
  add_input_option(*command, "--memory-mask", o.memory_mask,
                   "float or bool mask (T,S) or (N*nhead,T,S)");
  add_input_option(*command, "--src-key-padding-mask", o.src_key_padding_mask,
                   "float or bool mask (N,S); true = ignore");
  add_input_option(*command, "--tgt-key-padding-mask", o.tgt_key_padding_mask,
                   "float or bool mask (N,T); true = ignore");
  add_input_option(*command, "--memory-key-padding-mask", o.memory_key_padding_mask,
                   "float or bool mask (N,S); true = ignore");
  command->add_option("--out", o.out, "output .npy file (float32)")->required()->type_name("NPY");
  command->add_option("--logits", o.logits_out,
                      "image model with a head: also write its logits, (B,Q,K) per learned query "
                      "((B,Q,K+1) for a detector, the last 'no object'), (B,K) on the CLS token or "
                      "(B,K,h,w) per token")
      ->type_name("NPY");
  command->add_option("--boxes", o.boxes_out,
                      "detector: also write its boxes (B,Q,4), (cx,cy,w,h) fractions of each "
                      "image's unpadded size, as DETR's pred_boxes")
      ->type_name("NPY");
  command
      ->add_option("--attn-dir", o.attn_dir,
                   "write each attention module's per-head weights (N,nhead,L,S) to "
                   "DIR/<module path>.npy (DIR is created if missing)")
      ->type_name("DIR");
  add_threads_option(*command, o.threads);
  add_precision_option(*command, o.precision);
  add_transformer_arguments(*command, o.given);
  return {command, [options] { run_forward(*options); }};
}

}  // namespace vitscope::cli
