// Loading checks in this order; the first failing check decides the one error code:
//   image_io_error              the file cannot be opened, sized or read (also: a directory);
//                               never for decode_image
//   image_empty_file            0 bytes
//   image_too_large_file        more than max_file_bytes (refused before reading)
//   image_too_many_pixels       width * height > max_pixels: from the PNG or JPEG header before
//                               decoding, from OpenCV's own size check (OPENCV_IO_MAX_IMAGE_*),
//                               and after decoding
//   image_decode_failed         OpenCV cannot decode it (its short message follows), or it is DICOM
//   image_out_of_memory         an allocation failed while reading, decoding or converting
//   image_unsupported_depth     a sample type other than 8-bit, 16-bit unsigned or float32
//   image_unsupported_channels  a channel count other than 1, 3 or 4

#include "vitscope/image/load.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <set>
#include <system_error>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "vitscope/error.hpp"

namespace vitscope::image {
namespace {

using Bytes = std::vector<uchar>;

// Every message starts with the file it is about, so a user with several inputs knows which one.
[[noreturn]] void fail(const std::string& code, const std::string& path, const std::string& what) {
  throw Error(code, path + ": " + what);
}

const uchar kPng[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

std::uint32_t be16(const uchar* p) { return std::uint32_t(p[0]) << 8 | p[1]; }
std::uint32_t be32(const uchar* p) { return be16(p) << 16 | be16(p + 2); }

// A TIFF block inside an untrusted file: callers check has() before every read.
struct TiffView {
  const uchar* data;
  std::size_t size;
  bool big_endian;

  bool has(std::size_t at, std::size_t n) const { return at <= size && n <= size - at; }
  std::uint32_t u16(std::size_t at) const {
    const uchar* p = data + at;
    return big_endian ? be16(p) : std::uint32_t(p[1]) << 8 | p[0];
  }
  std::uint32_t u32(std::size_t at) const {
    return big_endian ? u16(at) << 16 | u16(at + 2) : u16(at + 2) << 16 | u16(at);
  }
};

// The Orientation tag (0x0112, one SHORT) of IFD0; 1 when it is absent, out of range or the block
// is malformed, because a broken EXIF block should not make a decodable image unreadable.
int exif_orientation(const uchar* data, std::size_t size) {
  if (size < 8) return 1;
  const bool big_endian = data[0] == 'M' && data[1] == 'M';
  if (!big_endian && !(data[0] == 'I' && data[1] == 'I')) return 1;
  const TiffView tiff{data, size, big_endian};
  if (tiff.u16(2) != 42) return 1;
  const std::size_t ifd = tiff.u32(4);
  if (!tiff.has(ifd, 2)) return 1;
  const std::size_t count = tiff.u16(ifd);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t entry = ifd + 2 + 12 * i;
    if (!tiff.has(entry, 12)) return 1;
    constexpr std::uint32_t kOrientation = 0x0112, kShort = 3;
    if (tiff.u16(entry) == kOrientation && tiff.u16(entry + 2) == kShort &&
        tiff.u32(entry + 4) == 1) {
      const int value = static_cast<int>(tiff.u16(entry + 8));  // left-justified in the value field
      return value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}

struct HeaderInfo {
  std::uint64_t pixels = 0;  // 0: unknown
  int orientation = 1;
};

// PNG and JPEG are sized from their headers so that max_pixels holds before OpenCV allocates: a
// small file can claim a huge image, and OpenCV's own limit cannot be lowered from inside the
// process (the CLI restarts itself with it set: apps/vitscope/opencv_limit.hpp). JPEG also gives its EXIF orientation, which OpenCV ignores
// under IMREAD_UNCHANGED. Both walks must reach the size record wherever libpng and libjpeg would
// find it, or a file could slip past max_pixels (fuzzing found both ways); they may look further
// than the libraries, which only risks refusing a file that would not decode anyway.
HeaderInfo read_header(const Bytes& d) {
  HeaderInfo info;
  if (d.size() >= 8 && std::memcmp(d.data(), kPng, 8) == 0) {
    // libpng skips ancillary chunks it does not know even before IHDR.
    for (std::size_t pos = 8; d.size() - pos >= 8;) {
      const uchar* type = &d[pos + 4];
      if (std::memcmp(type, "IHDR", 4) == 0) {
        if (d.size() - pos >= 16)
          info.pixels = std::uint64_t(be32(&d[pos + 8])) * be32(&d[pos + 12]);
        break;
      }
      if (std::memcmp(type, "IDAT", 4) == 0 || std::memcmp(type, "IEND", 4) == 0) break;
      const std::uint64_t chunk_size = 12 + std::uint64_t(be32(&d[pos]));  // length, type, CRC
      if (chunk_size > d.size() - pos) break;
      pos += chunk_size;
    }
    return info;
  }
  if (d.size() < 4 || d[0] != 0xFF || d[1] != 0xD8) return info;
  bool seen_exif = false;
  std::size_t pos = 2;
  // Marker segments up to the scan, found as libjpeg's next_marker finds them: it skips stray
  // bytes, fill bytes and stuffed FF 00 pairs between segments. A segment running past the end
  // ends the walk: libjpeg then stops without an image.
  while (true) {
    while (pos < d.size() && d[pos] != 0xFF) ++pos;
    while (pos < d.size() && d[pos] == 0xFF) ++pos;
    if (pos >= d.size()) break;
    const uchar marker = d[pos++];
    if (marker == 0x00) continue;
    if (marker == 0xDA || marker == 0xD9) break;  // start of scan, end of image
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;  // TEM, RSTn, SOI
    if (d.size() - pos < 2) break;
    const std::size_t length = be16(&d[pos]);  // counts itself, not the marker
    if (length < 2) {  // libjpeg skips nothing and scans on from after the length
      pos += 2;
      continue;
    }
    if (length > d.size() - pos) break;
    const uchar* segment = &d[pos + 2];
    const std::size_t segment_size = length - 2;
    if (marker == 0xE1 && !seen_exif && segment_size >= 6 &&
        std::memcmp(segment, "Exif\0\0", 6) == 0) {
      seen_exif = true;
      info.orientation = exif_orientation(segment + 6, segment_size - 6);
    }
    const bool start_of_frame =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    // libjpeg rejects a second frame header; the largest one is kept in case it did not.
    if (start_of_frame && segment_size >= 5)
      info.pixels = std::max(info.pixels, std::uint64_t(be16(segment + 1)) * be16(segment + 3));
    pos += length;
  }
  return info;
}

// OpenCV hands a buffer with "DICM" at byte 128 that no other decoder claims to GDCM, which in
// Debian's build asserts, aborting the process, on malformed files (found by fuzzing). DICOM is not
// among the formats vitscope reads (has_image_extension), so such files never reach OpenCV; JPEG
// and PNG, whose decoders OpenCV tries first, are let through whatever byte 128 holds.
bool is_dicom(const Bytes& d) {
  if (d.size() < 132 || std::memcmp(&d[128], "DICM", 4) != 0) return false;
  const bool jpeg = d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF;
  return !jpeg && std::memcmp(d.data(), kPng, 8) != 0;
}

cv::Mat apply_orientation(const cv::Mat& m, int orientation) {
  cv::Mat out;
  switch (orientation) {
    case 2: cv::flip(m, out, 1); break;
    case 3: cv::rotate(m, out, cv::ROTATE_180); break;
    case 4: cv::flip(m, out, 0); break;
    case 5: cv::transpose(m, out); break;
    case 6: cv::rotate(m, out, cv::ROTATE_90_CLOCKWISE); break;
    case 7: cv::transpose(m, out); cv::flip(out, out, -1); break;
    case 8: cv::rotate(m, out, cv::ROTATE_90_COUNTERCLOCKWISE); break;
    default: return m;
  }
  return out;
}

// One pass from OpenCV's 1-, 3- or 4-channel (gray, BGR, BGRA) samples to RGB in [0, 255];
// value(sample) scales a sample to [0, 255]. Alpha is scaled like the colours and then divided by
// 255, the order tools/reference_model.py uses, so that 16-bit results match it to the bit.
template <class T, class Value>
cv::Mat to_rgb(const cv::Mat& src, Value value) {
  cv::Mat rgb(src.size(), CV_32FC3);
  const int channels = src.channels();
  for (int y = 0; y < src.rows; ++y) {
    const T* s = src.ptr<T>(y);
    float* d = rgb.ptr<float>(y);
    for (int x = 0; x < src.cols; ++x, s += channels, d += 3) {
      if (channels == 1) {
        d[0] = d[1] = d[2] = value(s[0]);
      } else if (channels == 3) {
        d[0] = value(s[2]);
        d[1] = value(s[1]);
        d[2] = value(s[0]);
      } else {
        const float a = value(s[3]) / 255;
        d[0] = value(s[2]) * a + (1 - a) * 255;
        d[1] = value(s[1]) * a + (1 - a) * 255;
        d[2] = value(s[0]) * a + (1 - a) * 255;
      }
    }
  }
  return rgb;
}

cv::Mat to_rgb(const cv::Mat& decoded, const std::string& path) {
  const int channels = decoded.channels();
  if (channels != 1 && channels != 3 && channels != 4)
    fail("image_unsupported_channels", path, std::to_string(channels) + " channels");
  switch (decoded.depth()) {
    case CV_8U: return to_rgb<uchar>(decoded, [](float v) { return v; });
    case CV_16U: return to_rgb<ushort>(decoded, [](float v) { return v / 257; });
    // Float images (EXR, HDR, PFM, float TIFF) are taken to be in [0, 1]; values outside are
    // scaled the same way, not clipped.
    case CV_32F: return to_rgb<float>(decoded, [](float v) { return v * 255; });
    default:
      fail("image_unsupported_depth", path,
           "samples of OpenCV depth " + std::to_string(decoded.depth()) +
               "; only 8-bit, 16-bit unsigned and float32 are read");
  }
}

void check_pixels(std::uint64_t pixels, const LoadLimits& limits, const std::string& path) {
  if (pixels > limits.max_pixels)
    fail("image_too_many_pixels", path,
         std::to_string(pixels) + " pixels, over the limit of " +
             std::to_string(limits.max_pixels));
}

void check_file_size(std::uint64_t size, const LoadLimits& limits, const std::string& path) {
  if (size == 0) fail("image_empty_file", path, "the file is empty");
  if (size > limits.max_file_bytes)
    fail("image_too_large_file", path,
         std::to_string(size) + " bytes, over the limit of " +
             std::to_string(limits.max_file_bytes));
}

Bytes read_file(const std::string& path, const LoadLimits& limits) {
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) fail("image_io_error", path, "cannot read: " + ec.message());
  check_file_size(size, limits, path);
  Bytes bytes(size);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("image_io_error", path, std::string("cannot open: ") + std::strerror(errno));
  if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
    fail("image_io_error", path, "cannot read its " + std::to_string(size) + " bytes");
  return bytes;
}

}  // namespace

cv::Mat load_image(const std::string& path, const LoadLimits& limits) {
  Bytes bytes;
  try {
    bytes = read_file(path, limits);
  } catch (const std::bad_alloc&) {
    fail("image_out_of_memory", path, "out of memory");
  }
  return decode_image(bytes, path, limits);
}

cv::Mat decode_image(const std::vector<unsigned char>& bytes, const std::string& path,
                     const LoadLimits& limits) {
  check_file_size(bytes.size(), limits, path);
  try {
    const HeaderInfo header = read_header(bytes);
    check_pixels(header.pixels, limits, path);
    if (is_dicom(bytes)) fail("image_decode_failed", path, "DICOM files are not read");
    const cv::Mat decoded = cv::imdecode(bytes, cv::IMREAD_UNCHANGED);
    if (decoded.empty()) fail("image_decode_failed", path, "not an image OpenCV can decode");
    check_pixels(decoded.total(), limits, path);
    return to_rgb(apply_orientation(decoded, header.orientation), path);
  } catch (const cv::Exception& e) {
    if (e.code == cv::Error::StsNoMem) fail("image_out_of_memory", path, e.err);
    // OpenCV refuses sizes over OPENCV_IO_MAX_IMAGE_{WIDTH,HEIGHT,PIXELS} with an assertion there.
    if (e.func == "validateInputImageSize") fail("image_too_many_pixels", path, e.err);
    fail("image_decode_failed", path, e.err);
  } catch (const std::bad_alloc&) {
    fail("image_out_of_memory", path, "out of memory");
  }
}

bool has_image_extension(const std::filesystem::path& path) {
  static const std::set<std::string> kExtensions = {
      ".bmp", ".dib", ".exr", ".hdr", ".jp2", ".jpe", ".jpeg", ".jpg", ".pam", ".pbm", ".pfm",
      ".pgm", ".pic", ".png", ".pnm", ".ppm", ".pxm", ".ras", ".sr",  ".tif", ".tiff", ".webp"};
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return kExtensions.count(extension) > 0;
}

}  // namespace vitscope::image
