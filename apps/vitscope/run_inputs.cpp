#include "run_inputs.hpp"

#include <algorithm>
#include <system_error>

#include "commands.hpp"
#include "vitscope/image/load.hpp"

namespace vitscope::cli {

namespace fs = std::filesystem;

namespace {

// "photos/cats/" and "photos/cats" are both "cats"; "/" has no name.
fs::path folder_name(const fs::path& folder) {
  fs::path normal = fs::absolute(folder).lexically_normal();
  if (!normal.has_filename()) normal = normal.parent_path();
  return normal.filename();
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ignored;
  return fs::equivalent(a, b, ignored);
}

InputFile make_input(const fs::path& path, const fs::path& relative) {
  return {path, relative.generic_string(), image::has_image_extension(path)};
}

void add_folder(const fs::path& folder, const fs::path& out_dir, std::vector<InputFile>& files) {
  const fs::path name = folder_name(folder);
  fs::recursive_directory_iterator it(folder, fs::directory_options::skip_permission_denied);
  for (; it != fs::recursive_directory_iterator(); ++it) {
    std::error_code ignored;
    // A rerun must not read the previous run's views as new images.
    if (it->is_directory(ignored) && same_file(it->path(), out_dir)) {
      it.disable_recursion_pending();
    } else if (it->is_regular_file(ignored)) {
      files.push_back(make_input(it->path(), name / it->path().lexically_relative(folder)));
    }
  }
}

}  // namespace

std::vector<InputFile> collect_inputs(const std::vector<std::string>& inputs,
                                      const fs::path& out_dir) {
  std::vector<InputFile> files;
  for (const std::string& input : inputs) {
    std::error_code error;
    const fs::file_status status = fs::status(input, error);
    if (!fs::exists(status)) throw UsageError("input " + input + " does not exist");
    if (fs::is_directory(status)) {
      add_folder(input, out_dir, files);
    } else {
      files.push_back(make_input(input, fs::path(input).filename()));
    }
  }
  std::stable_sort(files.begin(), files.end(),
                   [](const InputFile& a, const InputFile& b) { return a.relative < b.relative; });

  std::vector<InputFile> unique;
  for (InputFile& file : files) {
    if (!unique.empty() && unique.back().relative == file.relative) {
      if (same_file(unique.back().path, file.path)) continue;
      throw UsageError("inputs " + unique.back().path.string() + " and " + file.path.string() +
                       " would both be named " + file.relative + " under the output folder");
    }
    unique.push_back(std::move(file));
  }
  return unique;
}

}  // namespace vitscope::cli
