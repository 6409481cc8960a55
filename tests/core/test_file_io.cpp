#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <random>
#include <thread>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "test_support.h"

using namespace pneumo::core;
using pneumo::testing::TempDir;
using Catch::Matchers::Contains;

namespace {
int count_files(const std::filesystem::path& dir) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) n += entry.is_regular_file();
  return n;
}
}  // namespace

TEST_CASE("write_file_atomic creates, replaces and leaves no temporary files") {
  TempDir dir;
  const auto file = dir / "nested/out.bin";
  const std::string binary("a\0b\nc", 5);
  write_file_atomic(file, binary);
  CHECK(read_text_file(file) == binary);
  write_file_atomic(file, "second");
  CHECK(read_text_file(file) == "second");
  CHECK(count_files(dir / "nested") == 1);
}

TEST_CASE("a failed atomic write keeps the old content and names the file") {
  TempDir dir;
  std::filesystem::create_directories(dir / "target_is_a_folder/child");
  CHECK_THROWS_AS(write_file_atomic(dir / "target_is_a_folder", "x"), IoError);
  CHECK(std::filesystem::is_directory(dir / "target_is_a_folder/child"));
  CHECK(count_files(dir.path()) == 0);
}

TEST_CASE("read_text_file names a missing file or a folder") {
  TempDir dir;
  CHECK_THROWS_WITH(read_text_file(dir / "absent.txt"), Contains("absent.txt") &&
                                                           Contains("No such file"));
  CHECK_THROWS_WITH(read_text_file(dir.path()), Contains("is a folder"));
}

TEST_CASE("a write killed at any moment leaves the old file or the new one, never a mix") {
  pneumo::testing::TempDir dir;
  const auto target = dir / "big.bin";
  const std::string a(8 << 20, 'a'), b(8 << 20, 'b');
  pneumo::core::write_file_atomic(target, a);
  std::mt19937 rng(7);
  int temps = 0;
  for (int trial = 0; trial < 8; ++trial) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      for (int i = 0;; ++i) pneumo::core::write_file_atomic(target, i % 2 ? a : b);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(5, 120)(rng)));
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    const std::string now = pneumo::testing::read_file(target);
    CHECK((now == a || now == b));
    for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
      if (pneumo::core::is_atomic_write_temp(entry.path())) {
        ++temps;
        std::filesystem::remove(entry.path());
      }
  }
  WARN(temps << " of 8 kills landed inside a write");
  CHECK_FALSE(pneumo::core::is_atomic_write_temp(dir / "big.bin"));
  CHECK_FALSE(pneumo::core::is_atomic_write_temp(dir / ".tmp-1-2"));
  CHECK(pneumo::core::is_atomic_write_temp(dir / "best.ckpt.tmp-4711-3"));
}

TEST_CASE("reading a file larger than its kind allows is refused with both sizes") {
  pneumo::testing::TempDir dir;
  pneumo::testing::write_file(dir / "big.yaml", std::string((3 << 20) + 5, '#'));
  CHECK(pneumo::core::read_text_file(dir / "big.yaml").size() == (3u << 20) + 5);
  CHECK_THROWS_WITH(pneumo::core::read_text_file(dir / "big.yaml", 2 << 20),
                    Catch::Matchers::Contains("big.yaml") && Catch::Matchers::Contains("3 MiB") &&
                        Catch::Matchers::Contains("2 MiB"));
}
