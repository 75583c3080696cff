#pragma once
// Private to the npy and safetensors readers and writers, which open, size, read and report on
// binary files the same way and differ only in their error codes.

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "vitscope/error.hpp"
#include "vitscope/nn/tensor.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vitscope reads and writes little-endian data by memcpy and needs a little-endian host"
#endif

namespace vitscope::io::detail {

static_assert(sizeof(std::size_t) == 8, "shape dimensions are parsed as 64-bit sizes");

// Every message starts with the file it is about, so a user with several inputs knows which one.
[[noreturn]] inline void fail(const std::string& code, const std::string& path,
                              const std::string& what) {
  throw Error(code, path + ": " + what);
}

// Sizes come from untrusted headers, so every product is checked before it is used.
inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return std::nullopt;
  return a * b;
}

// Mathematical product: any zero dimension makes it 0 even if the others would overflow.
inline std::optional<std::uint64_t> element_count(const Shape& shape) {
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  std::uint64_t n = 1;
  for (const std::size_t d : shape) {
    const auto next = checked_mul(n, d);
    if (!next) return std::nullopt;
    n = *next;
  }
  return n;
}

// Returns the size too, because the readers check every header length against it before reading.
inline std::uint64_t open_for_reading(std::ifstream& in, const std::string& path,
                                      const std::string& io_error_code) {
  in.open(path, std::ios::binary);
  if (!in) fail(io_error_code, path, std::string("cannot open: ") + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff end_pos = in.tellg();
  if (!in || end_pos < 0) fail(io_error_code, path, "cannot determine the file size");
  return static_cast<std::uint64_t>(end_pos);
}

// A short read means the file changed or broke under us: an io_error_code, not a format error.
inline void read_exact(std::ifstream& in, std::uint64_t offset, char* out, std::uint64_t n,
                       const std::string& path, const std::string& io_error_code) {
  if (n == 0) return;
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(out, static_cast<std::streamsize>(n));
  if (!in || static_cast<std::uint64_t>(in.gcount()) != n)
    fail(io_error_code, path,
         "cannot read " + std::to_string(n) + " bytes at offset " + std::to_string(offset));
}

// The bytes a reader parses. Files are read piecewise, so that only ranges the header has
// justified are allocated; in-memory buffers (parse_npy, parse_safetensors) share the same parser.
struct ByteSource {
  std::uint64_t size = 0;
  // Copies [offset, offset + n) to out; a range past size fails with the reader's I/O error code.
  std::function<void(std::uint64_t offset, char* out, std::uint64_t n)> read;
};

inline ByteSource file_source(const std::string& path, const std::string& io_error_code) {
  auto in = std::make_shared<std::ifstream>();  // shared: ByteSource must stay copyable
  const std::uint64_t size = open_for_reading(*in, path, io_error_code);
  return {size, [in, path, io_error_code](std::uint64_t offset, char* out, std::uint64_t n) {
            read_exact(*in, offset, out, n, path, io_error_code);
          }};
}

// bytes must outlive the source.
inline ByteSource memory_source(const std::string& bytes, const std::string& name,
                                const std::string& io_error_code) {
  return {bytes.size(), [&bytes, name, io_error_code](std::uint64_t offset, char* out,
                                                      std::uint64_t n) {
            if (n == 0) return;
            // The same short read a truncated file gives; parsers never ask for one.
            if (offset > bytes.size() || n > bytes.size() - offset)
              fail(io_error_code, name,
                   "cannot read " + std::to_string(n) + " bytes at offset " +
                       std::to_string(offset));
            std::memcpy(out, bytes.data() + offset, static_cast<std::size_t>(n));
          }};
}

}  // namespace vitscope::io::detail
