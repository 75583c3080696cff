#include "shared_files.hpp"

#include <string>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "embedded_assets.hpp"
#include "vitscope/io/atomic_file.hpp"

namespace vitscope::gallery {

namespace {

// The turbo colormap as OpenCV draws it, so the explorer matches the PNG views.
std::string turbo_table() {
  cv::Mat ramp(1, 256, CV_8U), colours;
  for (int i = 0; i < 256; ++i) ramp.at<uchar>(0, i) = static_cast<uchar>(i);
  cv::applyColorMap(ramp, colours, cv::COLORMAP_TURBO);
  nlohmann::json table = nlohmann::json::array();
  for (int i = 0; i < 256; ++i) {
    const cv::Vec3b bgr = colours.at<cv::Vec3b>(0, i);
    table.push_back({bgr[2], bgr[1], bgr[0]});
  }
  return table.dump();
}

}  // namespace

void write_shared_files(const std::filesystem::path& out_dir) {
  io::write_file_atomically((out_dir / "gallery.css").string(), std::string(embedded::gallery_css));
  io::write_file_atomically((out_dir / "gallery.js").string(),
                            "const TURBO = " + turbo_table() + ";\n\n" + std::string(embedded::gallery_js));
}

}  // namespace vitscope::gallery
