#include "vitscope/io/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>

#include "vitscope/error.hpp"

namespace vitscope::io {
namespace {

// Set while a BatchFlush defers the files' flushes.
std::atomic<bool> flush_deferred{false};

[[noreturn]] void fail(const std::string& path, const std::string& what, int err) {
  throw Error("write_failed", path + ": " + what + ": " + std::strerror(err));
}

// O_EXCL instead of mkstemp so the final file gets the usual umask-based permissions, not 0600.
// pid + counter is unique among live writers; a leftover from a dead process only costs a retry.
int create_temp_file(const std::string& path, std::string& temp_path) {
  static std::atomic<unsigned long> counter{0};
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string name = ".vitscope-" + std::to_string(::getpid()) + "-" +
                             std::to_string(counter.fetch_add(1)) + ".tmp";
    temp_path = (folder / name).string();
    const int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) return fd;
    if (errno != EEXIST) fail(path, "cannot create temporary file " + temp_path, errno);
  }
  fail(path, "cannot find an unused temporary file name in its folder", EEXIST);
}

void write_all(int fd, const std::string& bytes, const std::string& path) {
  const char* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, "cannot write " + std::to_string(bytes.size()) + " bytes", errno);
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  // fsync before rename: otherwise a crash can leave the new name pointing at empty data. Under a
  // BatchFlush the caller flushes before it records the file as written.
  if (!flush_deferred.load() && ::fsync(fd) != 0) fail(path, "cannot flush to disk", errno);
}

}  // namespace

void write_file_atomically(const std::string& path, const std::string& bytes) {
  std::string temp_path;
  const int fd = create_temp_file(path, temp_path);
  try {
    write_all(fd, bytes, path);
  } catch (...) {
    ::close(fd);
    ::unlink(temp_path.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(temp_path.c_str());
    fail(path, "cannot close temporary file " + temp_path, err);
  }
  if (std::rename(temp_path.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp_path.c_str());
    fail(path, "cannot rename temporary file " + temp_path + " over it", err);
  }
}

BatchFlush::BatchFlush(std::string folder) : folder_(std::move(folder)) { flush_deferred.store(true); }

BatchFlush::~BatchFlush() { flush_deferred.store(false); }

void BatchFlush::flush() {
  flush_deferred.store(false);
  const int fd = ::open(folder_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail(folder_, "cannot open the folder to flush its files to disk", errno);
  const int result = ::syncfs(fd);
  const int err = errno;
  ::close(fd);
  if (result != 0) fail(folder_, "cannot flush its files to disk", err);
}

}  // namespace vitscope::io
