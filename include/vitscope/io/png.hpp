#pragma once
// PNG files for the views: 8-bit RGB, each row filtered with the Paeth predictor, compressed by
// io::zlib_compress. Lossless like any PNG, and read by every PNG reader.

#include <cstddef>
#include <string>

namespace vitscope::io {

// pixels: height rows of width BGR triples (OpenCV's order), row_step bytes apart. Returns the
// file's bytes.
std::string encode_png_bgr(const unsigned char* pixels, std::size_t width, std::size_t height,
                           std::size_t row_step);

}  // namespace vitscope::io
