#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "support.hpp"
#include "vitscope/error.hpp"
#include "vitscope/io/safetensors.hpp"

namespace fs = std::filesystem;
using vitscope::NamedTensor;
using vitscope::io::parse_safetensors;
using vitscope::io::read_safetensors;
using vitscope::io::write_safetensors;
using vitscope::test::error_code;
using vitscope::test::read_bytes;
using vitscope::test::TempDir;

namespace {

std::string le64(std::uint64_t v) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
  return out;
}

std::string st_file(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::string u16_bytes(const std::vector<std::uint16_t>& v) {
  std::string out;
  for (const std::uint16_t x : v) out += {static_cast<char>(x & 0xFF), static_cast<char>(x >> 8)};
  return out;
}

std::uint32_t bits_of(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

std::string read_code(const std::string& bytes) {
  TempDir tmp;
  const std::string path = tmp.write("t.safetensors", bytes);
  return error_code([&] { read_safetensors(path); });
}

// One valid F32 entry named "a" of 2 values, for cases that break something else.
const std::string kEntryA = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

}  // namespace

TEST_CASE("safetensors: unreadable file is io_error", "[safetensors]") {
  TempDir tmp;
  CHECK(error_code([&] { read_safetensors(tmp.file("missing.safetensors")); }) == "io_error");
  CHECK(error_code([&] { read_safetensors(tmp.path().string()); }) == "io_error");
}

TEST_CASE("safetensors: file shorter than 8 bytes", "[safetensors]") {
  CHECK(read_code("") == "file_too_short");
  CHECK(read_code(std::string(7, '\0')) == "file_too_short");
}

TEST_CASE("safetensors: header length checks", "[safetensors]") {
  CHECK(read_code(le64(100'000'001) + "{}") == "header_too_large");
  CHECK(read_code(le64(std::numeric_limits<std::uint64_t>::max()) + "{}") == "header_too_large");
  CHECK(read_code(le64(100'000'000) + "{}") == "header_out_of_bounds");
  CHECK(read_code(le64(3) + "{}") == "header_out_of_bounds");
  // N = 2^64 - 8 would wrap 8 + N around to 0 with naive arithmetic.
  CHECK(read_code(le64(std::numeric_limits<std::uint64_t>::max() - 7) + "{}") ==
        "header_too_large");
}

TEST_CASE("safetensors: error message is one line starting with the path and naming the numbers",
          "[safetensors]") {
  TempDir tmp;
  const std::string path = tmp.write("t.safetensors", le64(4294967296ULL) + "{}");
  try {
    read_safetensors(path);
    FAIL("no error thrown");
  } catch (const vitscope::Error& e) {
    CHECK(e.code() == "header_too_large");
    CHECK(std::string(e.what()) ==
          path + ": header length 4294967296 exceeds the 100000000-byte limit");
  }
  const std::string path2 = tmp.write("nl.safetensors", st_file("{\"a\n\":{}}"));
  try {
    read_safetensors(path2);
    FAIL("no error thrown");
  } catch (const vitscope::Error& e) {
    CHECK(e.code() == "header_not_json");
    CHECK(std::string(e.what()).rfind(path2 + ": ", 0) == 0);
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
  }
}

TEST_CASE("safetensors: header must be valid UTF-8", "[safetensors]") {
  const char* bad[] = {
      "\xFF",              // never valid
      "\xC0\xAF",          // overlong '/'
      "\xE0\x80\xAF",      // overlong, 3 bytes
      "\xED\xA0\x80",      // surrogate U+D800
      "\xF4\x90\x80\x80",  // U+110000
      "\xE2\x82",          // truncated
      "\x80",              // lone continuation byte
  };
  for (const char* seq : bad) {
    INFO("sequence " << seq);
    CHECK(read_code(st_file("{\"" + std::string(seq) + "\":{}}")) == "header_not_utf8");
  }
  // 2-, 3- and 4-byte characters at the edges of their ranges are accepted.
  const std::string name = "\xC2\x80\xE2\x82\xAC\xED\x9F\xBF\xF0\x9D\x84\x9E\xF4\x8F\xBF\xBF";
  TempDir tmp;
  const std::string path = tmp.write(
      "t.safetensors",
      st_file("{\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
              f32_bytes({1.5f})));
  const auto file = read_safetensors(path);
  REQUIRE(file.tensors.size() == 1);
  CHECK(file.tensors[0].name == name);
}

TEST_CASE("safetensors: header must be a JSON object", "[safetensors]") {
  CHECK(read_code(st_file("")) == "header_not_json");
  CHECK(read_code(st_file("{")) == "header_not_json");
  CHECK(read_code(st_file("{}x")) == "header_not_json");
  CHECK(read_code(st_file("{\"a\":1,\"a\":")) == "header_not_json");
  // Found by fuzzing: nlohmann reports a number out of double's range as out_of_range.
  CHECK(read_code(st_file("{\"a\":1e999}")) == "header_not_json");
  CHECK(read_code(st_file("[]")) == "header_not_object");
  CHECK(read_code(st_file("5    ")) == "header_not_object");
}

TEST_CASE("safetensors: entries with wrong types", "[safetensors]") {
  const char* bad[] = {
      R"({"a":[]})",
      R"({"a":{"shape":[2],"data_offsets":[0,8]}})",
      R"({"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})",
      R"({"a":{"dtype":"F32","data_offsets":[0,8]}})",
      R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})",
      R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
      R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})",
      R"({"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}})",
      R"({"a":{"dtype":"F32","shape":[2]}})",
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})",
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})",
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-1,8]}})",
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})",
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
      R"({"__metadata__":[]})",
      R"({"__metadata__":{"k":1}})",
  };
  for (const char* header : bad) {
    INFO(header);
    CHECK(read_code(st_file(header, std::string(8, '\0'))) == "invalid_header_entry");
  }
  // Deep nesting is parsed without recursion and reported without printing it.
  const std::string deep = R"({"a":{"dtype":"F32","shape":)" + std::string(1'000'000, '[') +
                           std::string(1'000'000, ']') + R"(,"data_offsets":[0,8]}})";
  CHECK(read_code(st_file(deep, std::string(8, '\0'))) == "invalid_header_entry");
}

TEST_CASE("safetensors: unknown fields and trailing header spaces are allowed", "[safetensors]") {
  TempDir tmp;
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":[1]},"__metadata__":{}}   )";
  const auto file =
      read_safetensors(tmp.write("t.safetensors", st_file(header, f32_bytes({1.0f, -1.0f}))));
  REQUIRE(file.tensors.size() == 1);
  CHECK(file.tensors[0].data == std::vector<float>{1.0f, -1.0f});
  CHECK(file.metadata.empty());
}

TEST_CASE("safetensors: dtypes", "[safetensors]") {
  const auto with_dtype = [](const std::string& dtype) {
    return st_file(R"({"a":{"dtype":")" + dtype + R"(","shape":[2],"data_offsets":[0,8]}})",
                   std::string(8, '\0'));
  };
  CHECK(read_code(with_dtype("F128")) == "unknown_dtype");
  CHECK(read_code(with_dtype("f32")) == "unknown_dtype");
  for (const char* dtype : {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "I32", "U32",
                            "F64", "I64", "U64"}) {
    INFO(dtype);
    CHECK(read_code(with_dtype(dtype)) == "unsupported_dtype");
  }
}

TEST_CASE("safetensors: duplicate top-level keys", "[safetensors]") {
  CHECK(read_code(st_file("{" + kEntryA + "," + kEntryA + "}", std::string(8, '\0'))) ==
        "duplicate_tensor_name");
  CHECK(read_code(st_file(R"({"__metadata__":{},)" + kEntryA + R"(,"__metadata__":{}})",
                          std::string(8, '\0'))) == "duplicate_tensor_name");
  // Same key nested deeper is not a tensor name.
  TempDir tmp;
  const auto file = read_safetensors(
      tmp.write("t.safetensors",
                st_file(R"({"__metadata__":{"a":"x"},)" + kEntryA + "}", f32_bytes({1.0f, 2.0f}))));
  CHECK(file.metadata.at("a") == "x");
}

TEST_CASE("safetensors: offsets must tile the data section", "[safetensors]") {
  const auto two = [](const std::string& b_offsets) {
    return st_file(
        "{" + kEntryA + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":)" + b_offsets + "}}",
        std::string(12, '\0'));
  };
  CHECK(read_code(two("[12,16]")) == "offsets_not_tiling");  // gap
  CHECK(read_code(two("[4,8]")) == "offsets_not_tiling");    // overlap
  CHECK(read_code(two("[0,4]")) == "offsets_not_tiling");    // overlap at 0
  CHECK(read_code(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                          std::string(8, '\0'))) == "offsets_not_tiling");

  // Zero-size tensors may sit at any boundary; they come before the tensor starting there.
  TempDir tmp;
  const std::string header = "{" + kEntryA +
                             R"(,"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)" +
                             R"("y":{"dtype":"F16","shape":[0,3],"data_offsets":[8,8]},)" +
                             R"("m":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  const auto file =
      read_safetensors(tmp.write("t.safetensors", st_file(header, f32_bytes({1, 2, 3}))));
  std::vector<std::string> names;
  for (const auto& t : file.tensors) names.push_back(t.name);
  CHECK(names == std::vector<std::string>{"z", "a", "y", "m"});
  CHECK(file.tensors[3].data == std::vector<float>{3});
}

TEST_CASE("safetensors: tensor sizes", "[safetensors]") {
  CHECK(read_code(
            st_file(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}})",
                    std::string(8, '\0'))) == "tensor_size_overflow");
  CHECK(read_code(
            st_file(R"({"a":{"dtype":"F16","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                    std::string(8, '\0'))) == "tensor_size_overflow");
  CHECK(read_code(st_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                          std::string(8, '\0'))) == "tensor_size_mismatch");
  CHECK(read_code(st_file(R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,8]}})",
                          std::string(8, '\0'))) == "tensor_size_mismatch");
  // A zero dimension makes the product 0 even though the others alone would overflow.
  TempDir tmp;
  const auto file = read_safetensors(tmp.write(
      "t.safetensors",
      st_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})")));
  REQUIRE(file.tensors.size() == 1);
  CHECK(file.tensors[0].data.empty());
  CHECK(file.tensors[0].shape == vitscope::Shape{4294967296ULL, 4294967296ULL, 0});
}

TEST_CASE("safetensors: data section must end at the file end", "[safetensors]") {
  CHECK(read_code(st_file("{" + kEntryA + "}", std::string(4, '\0'))) == "offsets_out_of_bounds");
  CHECK(read_code(st_file("{" + kEntryA + "}", std::string(9, '\0'))) == "trailing_data");
  CHECK(read_code(st_file("{}", "x")) == "trailing_data");
  CHECK(read_code(st_file(R"({"a":{"dtype":"F32","shape":[4611686018427387903],
      "data_offsets":[0,18446744073709551612]}})")) == "offsets_out_of_bounds");
}

TEST_CASE("safetensors: parse_safetensors reads bytes as read_safetensors reads the file",
          "[safetensors]") {
  const std::string bytes = st_file(R"({"__metadata__":{"k":"v"},)" + kEntryA + "}",
                                    f32_bytes({1.5f, -2.0f}));
  const auto file = parse_safetensors(bytes, "mem");
  CHECK(file.metadata.at("k") == "v");
  REQUIRE(file.tensors.size() == 1);
  CHECK(file.tensors[0].data == std::vector<float>{1.5f, -2.0f});
  const std::string cut = bytes.substr(0, bytes.size() - 1);
  CHECK(read_code(cut) == "offsets_out_of_bounds");
  try {
    parse_safetensors(cut, "mem");
    FAIL("no error");
  } catch (const vitscope::Error& e) {
    CHECK(e.code() == "offsets_out_of_bounds");
    CHECK(std::string(e.what()).rfind("mem: ", 0) == 0);
  }
}

TEST_CASE("safetensors: the check order decides the code, not the entry order", "[safetensors]") {
  const std::string bad_type = R"("a":{"dtype":"F128","shape":[1],"data_offsets":[0,4]})";
  const std::string bad_entry = R"("b":{"dtype":"F32","shape":[1]})";
  CHECK(read_code(st_file("{" + bad_type + "," + bad_entry + "}", std::string(4, '\0'))) ==
        "invalid_header_entry");
  const std::string untiled = R"("a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]})";
  const std::string unknown = R"("b":{"dtype":"X","shape":[1],"data_offsets":[0,4]})";
  CHECK(read_code(st_file("{" + untiled + "," + unknown + "}", std::string(12, '\0'))) ==
        "unknown_dtype");
}

TEST_CASE("safetensors: F16 and BF16 are widened exactly", "[safetensors]") {
  const std::vector<std::uint16_t> f16 = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF,
                                          0x8000, 0x7C00, 0xFC00, 0x7E00};
  const std::vector<std::uint16_t> bf16 = {0x3F80, 0xC000, 0x7F7F, 0x0001, 0x7F80, 0xFF80, 0x7FC0};
  const std::string header = R"({"h":{"dtype":"F16","shape":[9],"data_offsets":[0,18]},)"
                             R"("b":{"dtype":"BF16","shape":[7],"data_offsets":[18,32]}})";
  TempDir tmp;
  const auto file = read_safetensors(
      tmp.write("t.safetensors", st_file(header, u16_bytes(f16) + u16_bytes(bf16))));
  REQUIRE(file.tensors.size() == 2);
  REQUIRE(file.tensors[0].name == "h");
  const std::vector<float>& h = file.tensors[0].data;
  REQUIRE(h.size() == 9);
  CHECK(h[0] == 1.0f);
  CHECK(h[1] == -2.0f);
  CHECK(h[2] == 65504.0f);
  CHECK(h[3] == std::ldexp(1.0f, -24));
  CHECK(h[4] == std::ldexp(1023.0f, -24));
  CHECK(bits_of(h[5]) == 0x80000000u);
  CHECK(h[6] == std::numeric_limits<float>::infinity());
  CHECK(h[7] == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(h[8]));
  REQUIRE(file.tensors[1].name == "b");
  const std::vector<float>& b = file.tensors[1].data;
  REQUIRE(b.size() == 7);
  CHECK(b[0] == 1.0f);
  CHECK(b[1] == -2.0f);
  CHECK(bits_of(b[2]) == 0x7F7F0000u);
  CHECK(bits_of(b[3]) == 0x00010000u);  // subnormal
  CHECK(b[4] == std::numeric_limits<float>::infinity());
  CHECK(b[5] == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(b[6]));
}

TEST_CASE("safetensors: write then read round trip", "[safetensors]") {
  TempDir tmp;
  const std::string path = tmp.file("model.safetensors");
  const std::vector<NamedTensor> tensors = {
      {"blocks.0.weight", {2, 3}, {1, 2, 3, 4, 5, -6.5f}},
      {"empty", {0, 4}, {}},
      {"scalar", {}, {3.25f}},
      {"a.bias", {4}, {0.1f, 0.2f, 0.3f, 1e-30f}},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "caf\xC3\xA9"}};
  write_safetensors(path, tensors, metadata);
  write_safetensors(path, tensors, metadata);  // replacing an existing file works too

  const auto file = read_safetensors(path);
  CHECK(file.metadata == metadata);
  REQUIRE(file.tensors.size() == tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    CHECK(file.tensors[i].name == tensors[i].name);
    CHECK(file.tensors[i].shape == tensors[i].shape);
    CHECK(file.tensors[i].data == tensors[i].data);
  }

  const std::string bytes = read_bytes(path);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  CHECK((8 + n) % 8 == 0);
  CHECK(bytes.find_last_not_of(' ', 8 + n - 1) >= n);  // padding is under 8 spaces
  CHECK(bytes.compare(8, 16, "{\"__metadata__\":") == 0);
  CHECK(bytes.size() == 8 + n + 4 * (6 + 1 + 4));
  CHECK(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()) == 1);
}

TEST_CASE("safetensors: no metadata means no __metadata__ key", "[safetensors]") {
  TempDir tmp;
  const std::string path = tmp.file("m.safetensors");
  write_safetensors(path, {{"x", {1}, {7.0f}}}, {});
  const std::string bytes = read_bytes(path);
  CHECK(bytes.find("__metadata__") == std::string::npos);
  CHECK(bytes.compare(8, 5, "{\"x\":") == 0);
  CHECK(read_safetensors(path).tensors.at(0).data == std::vector<float>{7.0f});
}

TEST_CASE("safetensors: writer rejects bad input and cleans up on failure", "[safetensors]") {
  TempDir tmp;
  const std::string path = tmp.file("w.safetensors");
  CHECK(error_code([&] {
          write_safetensors(path, {{"x", {2, 2}, {1, 2, 3}}}, {});
        }) == "invalid_argument");
  CHECK(error_code([&] {
          write_safetensors(path, {{"x", {1}, {1}}, {"x", {1}, {2}}}, {});
        }) == "invalid_argument");
  CHECK(error_code([&] {
          write_safetensors(path, {{"__metadata__", {1}, {1}}}, {});
        }) == "invalid_argument");
  CHECK(error_code([&] {
          write_safetensors(path, {{"\xFF", {1}, {1}}}, {});
        }) == "invalid_argument");
  CHECK_FALSE(fs::exists(path));

  CHECK(error_code([&] { write_safetensors(tmp.file("no/such/dir.safetensors"), {}, {}); }) ==
        "write_failed");
  // Renaming a file over a non-empty directory fails after the temp file was written.
  fs::create_directories(tmp.path() / "occupied" / "inner");
  CHECK(error_code([&] { write_safetensors(tmp.file("occupied"), {}, {}); }) == "write_failed");
  CHECK(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()) == 1);
}
