// io::write_file_atomically and io::BatchFlush: whole files in place, nothing left beside them,
// failures as one-line write_failed errors.

#include <filesystem>
#include <string>

#include "support.hpp"
#include "vitscope/io/atomic_file.hpp"

using namespace vitscope;
using vitscope::test::read_bytes;
using vitscope::test::TempDir;

namespace {

std::size_t entries(const std::filesystem::path& folder) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(folder)) ++n;
  return n;
}

}  // namespace

TEST_CASE("write_file_atomically replaces a file whole and leaves no temporary file", "[io]") {
  TempDir dir;
  io::write_file_atomically(dir.file("a.txt"), "first");
  io::write_file_atomically(dir.file("a.txt"), "second, longer");
  CHECK(read_bytes(dir.file("a.txt")) == "second, longer");
  CHECK(entries(dir.path()) == 1);
  try {
    io::write_file_atomically(dir.file("missing/a.txt"), "x");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == "write_failed");
    CHECK(std::string(e.what()).find("missing/a.txt") != std::string::npos);
  }
}

TEST_CASE("files written under a BatchFlush are whole once it flushes", "[io]") {
  TempDir dir;
  {
    io::BatchFlush batch(dir.path().string());
    for (int i = 0; i < 20; ++i) {
      io::write_file_atomically(dir.file("f" + std::to_string(i)), std::string(10000 + i, 'x'));
    }
    batch.flush();
  }
  CHECK(entries(dir.path()) == 20);
  for (int i = 0; i < 20; ++i) CHECK(read_bytes(dir.file("f" + std::to_string(i))).size() == 10000u + i);
  // After it, files are flushed one by one again, and writing still works.
  io::write_file_atomically(dir.file("after"), "y");
  CHECK(read_bytes(dir.file("after")) == "y");

  io::BatchFlush missing(dir.file("no_such_folder"));
  try {
    missing.flush();
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == "write_failed");
    const std::string message = e.what();
    CHECK(message.find("no_such_folder") != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  }
}
