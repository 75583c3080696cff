#pragma once
// What a folder run reads: the files named on the command line and those found in folders, each
// with the name it has in summary.json and under the output folder.

#include <filesystem>
#include <string>
#include <vector>

namespace vitscope::image {

struct InputFile {
  std::filesystem::path path;
  // '/'-separated, relative, without "." or "..", and unique: a folder's files keep the folder's
  // name and their path inside it (photos/cats given, photos/cats/x/a.jpg -> "cats/x/a.jpg"); a
  // file given directly is its name. Of two different inputs with one name the later is renamed
  // ("cats~2/x/a.jpg", "a.jpg~2"), in command-line order.
  std::string relative;
  bool is_image = false;  // by extension, as has_image_extension decides
};

// Every regular file of inputs, folders walked recursively (permission-denied folders and links to
// folders skipped, out_dir never entered), sorted by relative name; a file reached twice under one
// name is listed once. Throws vitscope::Error("bad_input") for an input that does not exist.
std::vector<InputFile> collect_inputs(const std::vector<std::string>& inputs,
                                      const std::filesystem::path& out_dir);

}  // namespace vitscope::image
