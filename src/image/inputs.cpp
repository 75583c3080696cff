#include "vitscope/image/inputs.hpp"

#include <algorithm>
#include <set>
#include <system_error>

#include "vitscope/error.hpp"
#include "vitscope/image/load.hpp"

namespace vitscope::image {

namespace fs = std::filesystem;

namespace {

// One input of the command line and the name its files get.
struct Argument {
  fs::path path;
  bool is_folder = false;
  std::string name;  // one path component, or empty for "/"
};

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

// Arguments naming the same file or folder share one name. Another argument with a name an earlier
// one has gets "~2", "~3", ...: the first that is no argument's own name and no earlier one's new
// name. Then no two arguments' files can share a first path component, nor a name.
void disambiguate(std::vector<Argument>& arguments) {
  std::vector<std::string> own;
  for (const Argument& a : arguments) own.push_back(a.name);
  std::set<std::string> taken(own.begin(), own.end());
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    std::size_t j = 0;
    while (j < i && !(own[j] == own[i] && same_file(arguments[j].path, arguments[i].path))) ++j;
    if (j < i) {
      arguments[i].name = arguments[j].name;
      continue;
    }
    if (std::find(own.begin(), own.begin() + i, own[i]) == own.begin() + i) continue;
    for (int n = 2;; ++n) {
      const std::string name = own[i] + "~" + std::to_string(n);
      if (taken.insert(name).second) {
        arguments[i].name = name;
        break;
      }
    }
  }
}

InputFile make_input(const fs::path& path, const fs::path& relative) {
  return {path, relative.generic_string(), has_image_extension(path)};
}

// Symbolic links to folders inside the folder are not followed (files they name are read; links to
// files keep the link's name). Nothing can name a file outside the output folder: a name is the
// argument's name and the entries' names below it, which are never "." or "..".
void add_folder(const Argument& folder, const fs::path& out_dir, std::vector<InputFile>& files) {
  fs::recursive_directory_iterator it(folder.path, fs::directory_options::skip_permission_denied);
  for (; it != fs::recursive_directory_iterator(); ++it) {
    std::error_code ignored;
    // A rerun must not read the previous run's views as new images.
    if (it->is_directory(ignored) && same_file(it->path(), out_dir)) {
      it.disable_recursion_pending();
    } else if (it->is_regular_file(ignored)) {
      files.push_back(
          make_input(it->path(), folder.name / it->path().lexically_relative(folder.path)));
    }
  }
}

}  // namespace

std::vector<InputFile> collect_inputs(const std::vector<std::string>& inputs,
                                      const fs::path& out_dir) {
  std::vector<Argument> arguments;
  for (const std::string& input : inputs) {
    std::error_code error;
    const fs::file_status status = fs::status(input, error);
    if (!fs::exists(status)) throw Error("bad_input", "input " + input + " does not exist");
    const bool is_folder = fs::is_directory(status);
    const fs::path name = is_folder ? folder_name(input) : fs::path(input).filename();
    arguments.push_back({input, is_folder, name.string()});
  }
  disambiguate(arguments);

  std::vector<InputFile> files;
  for (const Argument& argument : arguments) {
    if (argument.is_folder) {
      add_folder(argument, out_dir, files);
    } else {
      files.push_back(make_input(argument.path, argument.name));
    }
  }
  std::stable_sort(files.begin(), files.end(),
                   [](const InputFile& a, const InputFile& b) { return a.relative < b.relative; });

  std::vector<InputFile> unique;
  for (InputFile& file : files) {
    if (!unique.empty() && unique.back().relative == file.relative) {
      if (same_file(unique.back().path, file.path)) continue;
      // Only "/" (no name: its entries' names come first) can still meet another argument.
      throw Error("bad_input", "inputs " + unique.back().path.string() + " and " + file.path.string() +
                       " would both be named " + file.relative + " under the output folder");
    }
    unique.push_back(std::move(file));
  }
  return unique;
}

}  // namespace vitscope::image
