#include "vitscope/gallery/outputs.hpp"

#include <cmath>
#include <numeric>

#include "vitscope/gallery/explorer.hpp"
#include "vitscope/gallery/file_names.hpp"
#include "vitscope/gallery/image_page.hpp"
#include "vitscope/gallery/thumbnail.hpp"
#include "vitscope/image/attention_views.hpp"
#include "vitscope/image/detections.hpp"
#include "vitscope/image/image_file.hpp"
#include "vitscope/image/predictions.hpp"
#include "vitscope/image/views.hpp"
#include "vitscope/io/atomic_file.hpp"
#include "vitscope/io/npy_tensors.hpp"

namespace vitscope::gallery {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using image::AttentionView;
using image::ImageAnalysis;

constexpr std::size_t kTopClasses = 5;

std::string json_text(const Json& json) {
  // Replaces bytes that are not UTF-8 (class names may hold any) instead of throwing.
  return json.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

// A tensor of the analysis, which outlives its writers.
template <class Tensor>
FileWriter npy(const Tensor& tensor) {
  return [&tensor](const fs::path& path) { io::write_npy(path.string(), tensor); };
}

FileWriter text(std::string content) {
  return [content = std::move(content)](const fs::path& path) {
    io::write_file_atomically(path.string(), content);
  };
}

struct Registry {
  image::PictureFormat format;
  std::vector<ImageOutput> outputs;
  void add(std::string kind, std::string file, std::string title, int picture,
           std::function<FileWriter(const ImageContext&)> prepare) {
    outputs.push_back({std::move(kind), std::move(file), std::move(title), picture, std::move(prepare)});
  }
  // A picture drawn by `draw` and encoded in the run's format, as <stem>.<format>.
  void add_picture(std::string kind, const std::string& stem, std::string title, int picture,
                   std::function<cv::Mat(const ImageContext&)> draw) {
    add(std::move(kind), stem + "." + image::to_string(format), std::move(title), picture,
        [draw = std::move(draw), format = format](const ImageContext& c) -> FileWriter {
          return [bgr = draw(c), format](const fs::path& path) { image::write_picture(path, bgr, format); };
        });
  }
};

// detections.json: DETR's PostProcess at the threshold, boxes (x0, y0, x1, y1) in image pixels.
Json detections_json(const ImageAnalysis& a, double threshold) {
  Json list = Json::array();
  for (const image::Detection& d : a.detections) {
    list.push_back({{"query", d.query},
                    {"label", d.name},
                    {"index", d.label},
                    {"score", d.score},
                    {"box", {d.box.x, d.box.y, d.box.br().x, d.box.br().y}}});
  }
  return {{"score_threshold", threshold}, {"detections", list}};
}

// A detector's own outputs: DETR's pred_logits and pred_boxes, and what its notebook keeps of them.
void add_detector_outputs(Registry& r, double threshold) {
  r.add("logits", "logits.npy", "", -1, [](const ImageContext& c) { return npy(c.analysis.query_logits); });
  r.add("boxes", "boxes.npy", "", -1, [](const ImageContext& c) { return npy(c.analysis.boxes); });
  r.add("detections", "detections.json", "", -1, [threshold](const ImageContext& c) {
    return text(json_text(detections_json(c.analysis, threshold)));
  });
  const int percent = static_cast<int>(std::lround(100 * threshold));
  r.add_picture("detections_view", "detections",
                "Detections: the queries whose best class scores " + std::to_string(percent) + "% or more", 0,
                [](const ImageContext& c) {
                  return image::detections_view(c.analysis.picture, c.analysis.detections);
                });
}

void add_feature_outputs(Registry& r, const image::ImageModel& model) {
  r.add("features", "features.npy", "", -1,
        [](const ImageContext& c) { return npy(c.analysis.features); });
  r.add_picture("pca", "pca", "Features: first three principal components as RGB", 1,
                [](const ImageContext& c) {
                  return image::pca_view(c.analysis.features, c.analysis.picture, c.analysis.layout);
                });
  r.add_picture("channels", "channels", "Features: the strongest channels", 3, [](const ImageContext& c) {
    return image::channels_view(c.analysis.features, c.analysis.picture.size());
  });
  r.add_picture("token_norm", "token_norm", "Features: each token's norm", 2, [](const ImageContext& c) {
    return image::token_norm_view(c.analysis.features, c.analysis.picture, c.analysis.layout);
  });
  const bool queries = model.options.target == image::Target::queries &&
                       model.options.transformer.num_decoder_layers > 0;
  const bool classifier = model.options.num_classes > 0;
  const bool cls_head = model.options.head_pool == image::HeadPool::cls;
  const std::vector<std::string> names = model.options.class_names;
  if (classifier && !queries && !cls_head) {
    r.add_picture("classes", "classes", "Class of each token", 0, [names](const ImageContext& c) {
      return image::class_overlay_view(c.analysis.logits, c.analysis.picture, c.analysis.layout, names);
    });
  }
  if (queries) {
    r.add("queries", "queries.npy", "", -1, [](const ImageContext& c) { return npy(c.analysis.queries); });
  }
  if (model.options.cls_token) {
    r.add("cls", "cls.npy", "", -1, [](const ImageContext& c) { return npy(c.analysis.cls); });
  }
  if (classifier && cls_head) {
    r.add("logits", "logits.npy", "", -1, [](const ImageContext& c) { return npy(c.analysis.class_logits); });
    r.add("predictions", "predictions.json", "", -1, [names](const ImageContext& c) {
      return text(json_text({{"top5", top_predictions(c.analysis, names)}}));
    });
  }
}

// The cross view's rows: a detector's detections with their boxes (its top queries when it has
// none), the top queries of a learned-query model, else the tokens under the points.
std::vector<image::CrossRow> cross_rows(const ImageAnalysis& a) {
  std::vector<image::CrossRow> rows;
  for (const image::Detection& d : a.detections) {
    rows.push_back({d.query,
                    "query " + std::to_string(d.query) + ": " + d.name + " " +
                        std::to_string(std::lround(100 * d.score)) + "%",
                    {},
                    d.box});
  }
  if (!rows.empty()) return rows;
  if (a.queries.size() > 0) {
    for (const image::RankedQuery& q : a.top_queries) rows.push_back({q.query, q.caption, {}, std::nullopt});
    return rows;
  }
  for (std::size_t i = 0; i < a.points.size(); ++i) {
    rows.push_back({a.point_tokens[i],
                    "token under (" + std::to_string(std::lround(a.points[i].x)) + ", " +
                        std::to_string(std::lround(a.points[i].y)) + ")",
                    {a.points[i]},
                    std::nullopt});
  }
  return rows;
}

void add_attention_views(Registry& r, const image::AnalysisPlan& plan) {
  const image::HeadFusion fusion = plan.request.fusion;
  const float threshold = plan.request.threshold;
  // The montages draw on the canvas of smaller tiles.
  const auto montage = [](AttentionView v) {
    return v == AttentionView::heads || v == AttentionView::masks || v == AttentionView::cls ||
           v == AttentionView::cls_masks;
  };
  const auto view = [&](AttentionView v, std::string title, int picture,
                        std::function<cv::Mat(const ImageAnalysis&, const image::AttentionCanvas&)> draw) {
    if (!plan.draws(v)) return;
    const std::string kind = "attention_" + image::to_string(v);
    r.add_picture(kind, kind, std::move(title), picture, [draw, small = montage(v)](const ImageContext& c) {
      return draw(c.analysis, small ? c.analysis.montage_canvas : c.analysis.canvas);
    });
  };
  view(AttentionView::points, "Encoder self-attention of the token under each point (heads fused)", 4,
       [=](const ImageAnalysis& a, const image::AttentionCanvas& canvas) {
         return image::points_view(a.view_rows, a.points, fusion, canvas);
       });
  view(AttentionView::heads, "Head montage: fused, then every head, per point", 5,
       [=](const ImageAnalysis& a, const image::AttentionCanvas& canvas) {
         return image::heads_view(a.view_rows, a.points, fusion, canvas);
       });
  view(AttentionView::masks, "Masks: the tokens holding the top share of each map's attention", 6,
       [=](const ImageAnalysis& a, const image::AttentionCanvas& canvas) {
         return image::masks_view(a.view_rows, a.points, fusion, threshold, canvas);
       });
  view(AttentionView::cls, "The CLS token's attention over the patches: fused, then every head", 7,
       [=](const ImageAnalysis& a, const image::AttentionCanvas& canvas) {
         return image::cls_heads_view(a.cls_attention, fusion, canvas);
       });
  view(AttentionView::cls_masks, "Masks: the patches holding the top share of the CLS token's attention", 8,
       [=](const ImageAnalysis& a, const image::AttentionCanvas& canvas) {
         return image::cls_masks_view(a.cls_attention, fusion, threshold, canvas);
       });
  view(AttentionView::rollout,
       "Attention rollout through the encoder: the CLS token's (with one), per point, over all tokens", 9,
       [](const ImageAnalysis& a, const image::AttentionCanvas& canvas) {
         return image::rollout_view(a.rollout, a.points, canvas);
       });
  const nn::ModulePath cross_module = plan.cross_module.value_or(nn::ModulePath{});
  view(AttentionView::cross, "Decoder cross-attention", 10,
       [=](const ImageAnalysis& a, const image::AttentionCanvas& canvas) {
         std::vector<image::CrossRow> rows = cross_rows(a);
         if (!a.attention.scored.count(cross_module)) {
           return image::cross_view(a.attention.modules.at(cross_module), rows, fusion, canvas);
         }
         // Token rows of a module captured as scores: formed for the rows shown, numbered anew.
         std::vector<std::size_t> tokens;
         for (image::CrossRow& row : rows) {
           tokens.push_back(row.row);
           row.row = tokens.size() - 1;
         }
         return image::cross_view(a.attention.token_rows(cross_module, tokens), rows, fusion, canvas);
       });
}

// --save-attention: each kept module's whole map, prefix tokens first as PyTorch's module gives
// it. A module captured as scores (over the memory budget) has no whole map: its file holds the
// rows of the prefix tokens and of the points' tokens, (nh, X+P, X+S_i).
void add_saved_attention(Registry& r, const image::AnalysisPlan& plan) {
  for (const nn::ModulePath& path : plan.kept) {
    r.add("attention:" + path.str(), "attention/" + path.str() + ".npy", "", -1,
          [path](const ImageContext& c) -> FileWriter {
            const image::ImageAttention& attention = c.analysis.attention;
            const std::size_t X = attention.num_prefix_tokens;
            if (!attention.scored.count(path)) {
              const Tensor3& weights = X > 0 ? attention.with_prefix.at(path) : attention.modules.at(path);
              return [&weights](const fs::path& file) {
                fs::create_directories(file.parent_path());
                io::write_npy(file.string(), weights);
              };
            }
            std::vector<std::size_t> rows(X);
            std::iota(rows.begin(), rows.end(), 0);
            for (std::size_t t : c.analysis.point_tokens) rows.push_back(X + t);
            return [weights = attention.sequence_rows(path, rows)](const fs::path& file) {
              fs::create_directories(file.parent_path());
              io::write_npy(file.string(), weights);
            };
          });
  }
}

// What the page states about the image.
Json page_facts(const ImageContext& c, const std::vector<std::string>& class_names) {
  const ImageAnalysis& a = c.analysis;
  Json facts = {{"size", std::to_string(a.original.width) + "x" + std::to_string(a.original.height)},
                {"tokens", std::to_string(a.grid[0]) + "x" + std::to_string(a.grid[1])},
                {"model", c.model}};
  if (a.boxes.size() > 0) facts["detections"] = std::to_string(a.detections.size());
  const Json top = top_predictions(a, class_names);
  if (!top.empty()) {
    facts["top class"] = top.at(0).at("class").get<std::string>() + " (" +
                         std::to_string(std::lround(100 * top.at(0).at("probability").get<double>())) + "%)";
  }
  return facts;
}

void add_page(Registry& r, const image::ImageModel& model, const image::AnalysisPlan& plan) {
  r.add("thumbnail", kThumbnailFile, "", -1, [](const ImageContext& c) -> FileWriter {
    const cv::Mat& picture = c.analysis.picture;
    return [&picture](const fs::path& path) { write_thumbnail(path, picture); };
  });
  std::vector<PageFile> files;
  for (const ImageOutput& o : r.outputs) files.push_back({o.kind, o.file, o.title, o.picture});
  files.push_back({"page", kPageFile, "", -1});
  r.add("page", kPageFile, "", -1, [files, &model, plan](const ImageContext& c) -> FileWriter {
    const Json facts = page_facts(c, model.options.class_names);
    const nlohmann::json maps = explorer_maps(c.analysis, plan, model);
    const std::string input = c.input;
    return [files, facts, maps, input](const fs::path& path) {
      write_image_page(path, input, files, facts, maps);
    };
  });
}

}  // namespace

std::vector<ImageOutput> image_outputs(const image::ImageModel& model,
                                       const image::AnalysisPlan& plan, bool save_attention,
                                       image::PictureFormat format) {
  Registry r{format, {}};
  add_feature_outputs(r, model);
  if (model.options.detector) add_detector_outputs(r, plan.request.score_threshold);
  add_attention_views(r, plan);
  if (save_attention) add_saved_attention(r, plan);
  add_page(r, model, plan);
  return r.outputs;
}

nlohmann::ordered_json top_predictions(const ImageAnalysis& a,
                                       const std::vector<std::string>& class_names) {
  Json top = Json::array();
  if (a.class_logits.size() == 0) return top;
  for (const image::ClassScore& c :
       image::top_classes(a.class_logits.data(), a.class_logits.size(), class_names, kTopClasses)) {
    top.push_back({{"class", c.name}, {"index", c.index}, {"probability", c.probability}});
  }
  return top;
}

}  // namespace vitscope::gallery
