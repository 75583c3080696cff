#pragma once
// Replacing a file so readers never see it half-written: write a temp file beside it, then rename.

#include <string>

namespace vitscope::io {

// Writes bytes to a uniquely named temp file in path's folder, flushes it to disk and renames it
// over path (atomic on POSIX within one filesystem). On any failure the temp file is removed, path
// is left untouched, and vitscope::Error("write_failed", ...) is thrown.
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace vitscope::io
