#include <catch2/catch.hpp>

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
