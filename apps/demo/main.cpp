// vitscope-demo: an OpenCV HighGUI window over an image (or a folder of them) showing, for the
// token under a click, where every attention head of the chosen layer looks. The forward pass runs
// once per image with every attention module captured, so clicks and keys only redraw.
//
// Exit codes: 0 quit by q / Esc / closing the window, 1 bad input (model, image, no display),
// 2 usage error.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <opencv2/highgui.hpp>
#include <opencv2/imgcodecs.hpp>

#include "demo_frame.hpp"
#include "vitscope/error.hpp"
#include "vitscope/image/inputs.hpp"
#include "vitscope/image/load.hpp"

namespace fs = std::filesystem;
using namespace vitscope;

namespace {

constexpr int kBadInputExit = 1;
constexpr int kUsageExit = 2;
const char* const kWindow = "vitscope-demo";

void report_error(const std::string& message) {
  std::string line = message;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::cerr << "vitscope-demo: error: " << line << std::endl;
}

// The images to browse: the file itself, or the folder's image files as vitscope run finds them
// (recursively, sorted by their names).
std::vector<fs::path> list_inputs(const fs::path& input) {
  std::error_code error;
  if (!fs::exists(input, error)) throw Error("demo_input", input.string() + ": no such file or folder");
  if (!fs::is_directory(input, error)) return {input};
  std::vector<fs::path> files;
  for (const image::InputFile& file : image::collect_inputs({input.string()}, {})) {
    if (file.is_image) files.push_back(file.path);
  }
  if (files.empty()) throw Error("demo_input", input.string() + ": no image files in the folder");
  return files;
}

struct Viewer {
  image::ImageModel& model;
  demo::ModelShape shape;
  std::vector<std::string> class_names;
  std::vector<fs::path> files;
  std::size_t index = 0;
  demo::DemoImage current;
  demo::DemoState state;
  std::optional<cv::Point> pending_click;

  // Opens files[index], or the next one that loads in the direction `step` (+1 / -1), dropping the
  // files that fail with a message. False when none is left.
  bool open(int step) {
    while (!files.empty()) {
      index %= files.size();
      const fs::path path = files[index];
      try {
        current = demo::analyse_image(model, image::load_image(path.string()),
                                      path.filename().string());
        demo::select_centre(state, current);
        std::cout << current.name << ": forward pass with attention in " << current.inference_ms
                  << " ms" << std::endl;
        return true;
      } catch (const std::exception& e) {
        std::cerr << "vitscope-demo: skipping " << path.string() << ": " << e.what() << std::endl;
        files.erase(files.begin() + static_cast<std::ptrdiff_t>(index));
        if (files.empty()) break;
        index = step < 0 ? (index + files.size() - 1) % files.size() : index % files.size();
      }
    }
    return false;
  }
};

void on_mouse(int event, int x, int y, int, void* data) {
  if (event == cv::EVENT_LBUTTONDOWN) static_cast<Viewer*>(data)->pending_click = cv::Point(x, y);
}

// save_dir/vitscope-demo-NNN.png, the first NNN not taken.
fs::path save_path(const fs::path& save_dir) {
  for (int n = 1;; ++n) {
    char name[32];
    std::snprintf(name, sizeof name, "vitscope-demo-%03d.png", n);
    std::error_code error;
    if (!fs::exists(save_dir / name, error)) return save_dir / name;
  }
}

int run(int argc, char** argv) {
  std::string input = std::string(VITSCOPE_ASSETS_DIR) + "/images";
  std::string model_path = VITSCOPE_DEFAULT_MODEL;
  std::string save_dir;
  CLI::App app{"vitscope-demo: click a token of an image and see where every attention head looks",
               "vitscope-demo"};
  app.add_option("input", input,
                 "image file or folder of images (searched recursively); default: the shipped "
                 "assets/images")
      ->type_name("IMAGE|FOLDER")
      ->capture_default_str();
  app.add_option("--model", model_path, "model file (.safetensors); default: the shipped model")
      ->type_name("FILE")
      ->capture_default_str();
  app.add_option("--save-dir", save_dir,
                 "folder where s writes vitscope-demo-NNN.png (default: $VITSCOPE_DEMO_SAVE_DIR, "
                 "else the current directory)")
      ->type_name("DIR");
  app.footer("Keys (in the window):\n" + demo::key_help() +
             "The status line at the bottom shows image, module, layer, fusion, token (or CLS) and "
             "the inference time. Models that crop (resize modes shorter-crop, patch-crop) are "
             "shown on the crop they saw.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kUsageExit;
  }
  if (save_dir.empty()) {
    const char* env = std::getenv("VITSCOPE_DEMO_SAVE_DIR");
    save_dir = env != nullptr && *env != '\0' ? env : ".";
  }

  image::ImageModelFile file = image::load_image_model(model_path);
  Viewer viewer{file.model, demo::ModelShape::of(file.model), file.model.options.class_names,
                list_inputs(input), 0, {}, {}, std::nullopt};
  if (viewer.shape.kinds().empty()) throw Error("demo_model", model_path + ": the model has no attention");
  viewer.state = demo::initial_state(viewer.shape);
  if (!viewer.open(+1)) throw Error("demo_input", input + ": no image could be read");

  // Qt aborts the process without a display: say so instead.
  const char* display = std::getenv("DISPLAY");
  const char* wayland = std::getenv("WAYLAND_DISPLAY");
  if ((display == nullptr || *display == '\0') && (wayland == nullptr || *wayland == '\0')) {
    throw Error("demo_display", "no display (DISPLAY is not set); run it on a desktop or under xvfb-run");
  }

  cv::namedWindow(kWindow, cv::WINDOW_AUTOSIZE | cv::WINDOW_GUI_NORMAL);
  cv::setMouseCallback(kWindow, on_mouse, &viewer);
  bool dirty = true;
  cv::Mat frame;
  const auto redraw = [&] {
    if (!dirty) return;
    frame = demo::compose_frame(viewer.current, viewer.state, viewer.shape, viewer.class_names);
    cv::imshow(kWindow, frame);
    dirty = false;
  };
  while (true) {
    redraw();
    const int key = cv::waitKey(20);
    if (viewer.pending_click) {
      dirty = demo::click(viewer.state, *viewer.pending_click, viewer.current) || dirty;
      viewer.pending_click.reset();
    }
    // Closed with the window manager's button.
    if (cv::getWindowProperty(kWindow, cv::WND_PROP_VISIBLE) < 1) break;
    if (key < 0) continue;
    switch (demo::apply_key(viewer.state, key, viewer.shape)) {
      case demo::Action::none: break;
      case demo::Action::redraw: dirty = true; break;
      case demo::Action::next_image:
      case demo::Action::previous_image: {
        const int step = key == 'p' ? -1 : +1;
        if (step < 0) viewer.index = viewer.index == 0 ? viewer.files.size() - 1 : viewer.index - 1;
        else viewer.index = (viewer.index + 1) % viewer.files.size();
        if (!viewer.open(step)) throw Error("demo_input", "no image left that can be read");
        dirty = true;
        break;
      }
      case demo::Action::save: {
        redraw();  // a click in the same waitKey as the key: save what it selected
        std::error_code error;
        fs::create_directories(save_dir, error);
        const fs::path path = save_path(save_dir);
        bool written = false;
        try {
          written = cv::imwrite(path.string(), frame);
        } catch (const cv::Exception&) {
        }
        if (written) std::cout << "saved " << path.string() << std::endl;
        else std::cerr << "vitscope-demo: could not write " << path.string() << std::endl;
        break;
      }
      case demo::Action::quit:
        cv::destroyAllWindows();
        return 0;
    }
  }
  cv::destroyAllWindows();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::bad_alloc&) {
    report_error("out of memory");
  } catch (const std::exception& e) {
    report_error(e.what());
  } catch (...) {
    report_error("unexpected failure");
  }
  return kBadInputExit;
}
