// Reading validates in this order; the first failing check decides the one error code:
//   1. io_error              the file cannot be opened or read (never for parse_safetensors)
//   2. file_too_short        fewer than 8 bytes
//   3. header_too_large      header length N > 100,000,000
//      header_out_of_bounds  8 + N > file size
//   4. header_not_utf8       header bytes are not valid UTF-8
//      header_not_json       not parseable as JSON (trailing whitespace is allowed)
//      header_not_object     JSON, but not an object
//      invalid_header_entry  an entry or "__metadata__" has the wrong structure or types
//   5. unknown_dtype         dtype is not a safetensors dtype
//      unsupported_dtype     a safetensors dtype other than F32, F16, BF16
//   6. duplicate_tensor_name a top-level key (tensor name or "__metadata__") appears twice
//   7. offsets_not_tiling    sorted by begin, the ranges leave a gap, overlap or do not start at 0
//   8. tensor_size_overflow  product(shape) * dtype size does not fit in 64 bits
//      tensor_size_mismatch  that product differs from end - begin
//   9. offsets_out_of_bounds the data section (up to the last end) runs past the end of the file
//      trailing_data         the file continues after the data section
// Each step is checked for every entry before the next step starts, so the code does not depend on
// the order of entries. With duplicate keys only the last value is kept and validated.
// Tensor storage is allocated only after all checks, so its size is bounded by the file size.

#include "vitscope/io/safetensors.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "binary_file.hpp"
#include "vitscope/io/atomic_file.hpp"

namespace vitscope::io {
namespace {

using detail::ByteSource;
using detail::checked_mul;
using detail::element_count;
using detail::fail;
using json = nlohmann::json;

constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
const std::string kMetadataKey = "__metadata__";
const std::string kIoError = "io_error";

enum class DType { F32, F16, BF16 };

struct Entry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

// JSON quoting escapes control characters, so messages stay on one line whatever names hold.
std::string quoted(const std::string& name) {
  return json(name).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Returns the offset of the first byte that does not start a valid UTF-8 sequence, if any.
std::optional<std::size_t> find_invalid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((b0 & 0xE0) == 0xC0) {
      len = 2;
      cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3;
      cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4;
      cp = b0 & 0x07;
    } else {
      return i;
    }
    if (s.size() - i < len) return i;
    for (std::size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr std::uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> as_u64(const json& j) {
  if (!j.is_number_integer()) return std::nullopt;
  if (j.is_number_unsigned()) return j.get<std::uint64_t>();
  const auto v = j.get<std::int64_t>();  // "-0" parses as signed and is still non-negative
  if (v < 0) return std::nullopt;
  return static_cast<std::uint64_t>(v);
}

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu;
  const std::uint32_t mantissa = h & 0x3FFu;
  std::uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // inf, or nan with its payload
  } else if (exponent != 0) {
    bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  } else {
    // Zero or subnormal: mantissa * 2^-24 is exact in float.
    const float v = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -v : v;
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float bf16_to_f32(std::uint16_t h) {
  const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

std::size_t dtype_size(DType d) { return d == DType::F32 ? 4 : 2; }

// Parses the header while recording the first repeated top-level key, which nlohmann::json would
// otherwise silently drop. The repeat is reported later, at its place in the check order.
json parse_header(const std::string& header, const std::string& path,
                  std::optional<std::string>& duplicate) {
  std::set<std::string> seen;
  const json::parser_callback_t record_keys = [&](int depth, json::parse_event_t event,
                                                  json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && !duplicate &&
        !seen.insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    return json::parse(header, record_keys);
  } catch (const json::exception& e) {
    // Not only parse_error: a number such as 1e999 throws out_of_range.
    fail("header_not_json", path, "header is not valid JSON: " + std::string(e.what()));
  }
}

void check_metadata(const json& meta, const std::string& path) {
  if (!meta.is_object()) fail("invalid_header_entry", path, "\"__metadata__\" is not an object");
  for (const auto& [key, value] : meta.items())
    if (!value.is_string())
      fail("invalid_header_entry", path,
           "\"__metadata__\" value for key " + quoted(key) + " is not a string");
}

void check_entry_types(const std::string& name, const json& entry, const std::string& path) {
  const auto bad = [&](const std::string& what) {
    fail("invalid_header_entry", path, "tensor " + quoted(name) + ": " + what);
  };
  if (!entry.is_object()) bad("entry is not an object");
  const auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) bad("\"dtype\" is missing or not a string");
  const auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) bad("\"shape\" is missing or not an array");
  for (const auto& d : *shape)  // only scalars are dumped: a deeply nested array would recurse
    if (!as_u64(d))
      bad("\"shape\" holds " + (d.is_primitive() ? d.dump() : std::string(d.type_name())) +
          ", not a non-negative integer");
  const auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
      !as_u64((*offsets)[0]) || !as_u64((*offsets)[1]))
    bad("\"data_offsets\" is not an array of 2 non-negative integers");
  const std::uint64_t begin = *as_u64((*offsets)[0]);
  const std::uint64_t end = *as_u64((*offsets)[1]);
  if (begin > end)
    bad("data_offsets begin " + std::to_string(begin) + " is after end " + std::to_string(end));
}

DType parse_dtype(const std::string& name, const std::string& dtype, const std::string& path) {
  if (dtype == "F32") return DType::F32;
  if (dtype == "F16") return DType::F16;
  if (dtype == "BF16") return DType::BF16;
  static const std::set<std::string> kOtherDtypes = {
      "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "I32", "U32", "F64", "I64", "U64"};
  if (kOtherDtypes.count(dtype))
    fail("unsupported_dtype", path,
         "tensor " + quoted(name) + " has dtype " + dtype +
             "; only F32, F16 and BF16 are supported");
  fail("unknown_dtype", path, "tensor " + quoted(name) + " has unknown dtype " + quoted(dtype));
}

// Steps 4-8 of the order above; returns the entries sorted by data offset.
std::vector<Entry> validate_header(const json& header, const std::string& path,
                                   const std::optional<std::string>& duplicate) {
  if (!header.is_object()) fail("header_not_object", path, "header JSON is not an object");
  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey)
      check_metadata(entry, path);
    else
      check_entry_types(name, entry, path);
  }
  std::vector<Entry> entries;
  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) continue;
    Entry e;
    e.name = name;
    e.dtype = parse_dtype(name, entry["dtype"].get<std::string>(), path);
    for (const auto& d : entry["shape"]) e.shape.push_back(*as_u64(d));
    e.begin = *as_u64(entry["data_offsets"][0]);
    e.end = *as_u64(entry["data_offsets"][1]);
    entries.push_back(std::move(e));
  }
  if (duplicate)
    fail("duplicate_tensor_name", path, "header key " + quoted(*duplicate) + " appears twice");

  // Zero-size ranges sort before the range starting where they sit, so they never break tiling.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  std::uint64_t expected_begin = 0;
  for (const Entry& e : entries) {
    if (e.begin != expected_begin)
      fail("offsets_not_tiling", path,
           "tensor " + quoted(e.name) + " starts at data byte " + std::to_string(e.begin) +
               " but the previous tensor ends at byte " + std::to_string(expected_begin));
    expected_begin = e.end;
  }

  for (const Entry& e : entries) {
    const auto count = element_count(e.shape);
    const auto bytes = count ? checked_mul(*count, dtype_size(e.dtype)) : std::nullopt;
    if (!bytes)
      fail("tensor_size_overflow", path,
           "tensor " + quoted(e.name) + " of shape " + shape_to_string(e.shape) +
               " has more bytes than fit in 64 bits");
    if (*bytes != e.end - e.begin)
      fail("tensor_size_mismatch", path,
           "tensor " + quoted(e.name) + " of shape " + shape_to_string(e.shape) + " needs " +
               std::to_string(*bytes) + " bytes but data_offsets [" + std::to_string(e.begin) +
               ", " + std::to_string(e.end) + "] span " + std::to_string(e.end - e.begin));
  }
  return entries;
}

std::vector<float> read_tensor_data(const ByteSource& source, std::uint64_t data_start,
                                    const Entry& e) {
  const std::uint64_t bytes = e.end - e.begin;
  std::vector<float> out(static_cast<std::size_t>(bytes / dtype_size(e.dtype)));
  if (e.dtype == DType::F32) {
    source.read(data_start + e.begin, reinterpret_cast<char*>(out.data()), bytes);
    return out;
  }
  std::vector<std::uint16_t> half(out.size());
  source.read(data_start + e.begin, reinterpret_cast<char*>(half.data()), bytes);
  const auto convert = e.dtype == DType::F16 ? f16_to_f32 : bf16_to_f32;
  std::transform(half.begin(), half.end(), out.begin(), convert);
  return out;
}

SafetensorsFile parse(const ByteSource& source, const std::string& path) {
  const std::uint64_t file_size = source.size;
  if (file_size < 8)
    fail("file_too_short", path,
         "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
  unsigned char len_bytes[8];
  source.read(0, reinterpret_cast<char*>(len_bytes), 8);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxHeaderBytes)
    fail("header_too_large", path,
         "header length " + std::to_string(header_len) + " exceeds the " +
             std::to_string(kMaxHeaderBytes) + "-byte limit");
  if (header_len > file_size - 8)
    fail("header_out_of_bounds", path,
         "header length " + std::to_string(header_len) + " runs past the end of the " +
             std::to_string(file_size) + "-byte file");

  std::string header_text(static_cast<std::size_t>(header_len), '\0');
  source.read(8, header_text.data(), header_len);
  if (const auto bad = find_invalid_utf8(header_text))
    fail("header_not_utf8", path,
         "header byte " + std::to_string(*bad) + " starts an invalid UTF-8 sequence");
  std::optional<std::string> duplicate;
  const json header = parse_header(header_text, path, duplicate);
  const std::vector<Entry> entries = validate_header(header, path, duplicate);

  const std::uint64_t data_start = 8 + header_len;
  const std::uint64_t data_size = entries.empty() ? 0 : entries.back().end;
  const std::uint64_t available = file_size - data_start;
  if (data_size > available)
    fail("offsets_out_of_bounds", path,
         "data section of " + std::to_string(data_size) +
             " bytes runs past the end of the file, which has " + std::to_string(available) +
             " bytes after the header");
  if (data_size < available)
    fail("trailing_data", path,
         std::to_string(available - data_size) + " bytes follow the " + std::to_string(data_size) +
             "-byte data section");

  SafetensorsFile result;
  if (const auto meta = header.find(kMetadataKey); meta != header.end())
    for (const auto& [key, value] : meta->items()) result.metadata[key] = value.get<std::string>();
  for (const Entry& e : entries)
    result.tensors.push_back({e.name, e.shape, read_tensor_data(source, data_start, e)});
  return result;
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  return parse(detail::file_source(path, kIoError), path);
}

SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& name) {
  return parse(detail::memory_source(bytes, name, kIoError), name);
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    const auto count = element_count(t.shape);
    if (!count || *count != t.data.size())
      fail("invalid_argument", path,
           "tensor " + quoted(t.name) + " of shape " + shape_to_string(t.shape) + " has " +
               std::to_string(t.data.size()) + " values");
    if (t.name == kMetadataKey || !names.insert(t.name).second)
      fail("invalid_argument", path, "tensor name " + quoted(t.name) + " is reserved or repeated");
    const std::uint64_t end = offset + t.data.size() * sizeof(float);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::ordered_json::type_error&) {
    fail("invalid_argument", path, "a tensor name or metadata string is not valid UTF-8");
  }
  // Padding to a multiple of 8 keeps the data section aligned for memory-mapping readers.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string bytes;
  bytes.reserve(8 + header_text.size() + offset);
  for (int i = 0; i < 8; ++i)
    bytes.push_back(
        static_cast<char>((static_cast<std::uint64_t>(header_text.size()) >> (8 * i)) & 0xFF));
  bytes += header_text;
  for (const NamedTensor& t : tensors)
    bytes.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(float));
  write_file_atomically(path, bytes);
}

}  // namespace vitscope::io
