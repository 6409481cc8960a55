#include <catch2/catch.hpp>

#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"

using namespace pneumo::core;
using Catch::Matchers::Contains;

namespace {

struct Inner {
  std::string name = "resnet34";
  int depth = 5;
  template <class V>
  void visit(V& v) {
    v("name", name, "encoder name", one_of({"resnet34", "vgg19"}));
    v("depth", depth, "stages", in_range(1, 5));
  }
};

struct Outer {
  bool flag = false;
  int count = 3;
  int64_t big = 1;
  double rate = 0.5;
  float scale = 1.0F;
  std::string label = "x";
  std::vector<int> sizes{256};
  std::optional<std::string> weights;
  Inner inner;
  ConfigNode raw;
  template <class V>
  void visit(V& v) {
    v("flag", flag, "a switch");
    v("count", count, "how many", at_least(1));
    v("big", big, "a large number");
    v("rate", rate, "a rate", in_range(0.0, 1.0));
    v("scale", scale, "a scale");
    v("label", label, "a label", non_empty());
    v("sizes", sizes, "image sizes");
    v("weights", weights, "optional path");
    v("inner", inner, "nested section");
    v("raw", raw, "left for a component to interpret");
  }
};

Outer read(const std::string& yaml) {
  return read_section<Outer>(parse_yaml(yaml, "t.yaml"), "");
}

}  // namespace

TEST_CASE("an absent section or key keeps its default") {
  const Outer o = read("");
  CHECK(o.count == 3);
  CHECK(o.inner.name == "resnet34");
  CHECK_FALSE(o.weights.has_value());
  CHECK(o.raw.is_null());
  CHECK(read("inner: ~\n").inner.depth == 5);
}

TEST_CASE("values of every field type are read") {
  const Outer o = read(
      "flag: true\ncount: 7\nbig: 9000000000\nrate: 1e-1\nscale: -2.5\nlabel: hello world\n"
      "sizes: [128, 512]\nweights: /w.pth\ninner: {name: vgg19, depth: 4}\n"
      "raw: [{HorizontalFlip: {p: 0.5}}]\n");
  CHECK(o.flag);
  CHECK(o.count == 7);
  CHECK(o.big == 9000000000LL);
  CHECK(o.rate == Approx(0.1));
  CHECK(o.scale == -2.5F);
  CHECK(o.label == "hello world");
  CHECK(o.sizes == std::vector<int>{128, 512});
  CHECK(o.weights == std::optional<std::string>("/w.pth"));
  CHECK(o.inner.name == "vgg19");
  CHECK(o.inner.depth == 4);
  REQUIRE(o.raw.is_sequence());
  CHECK(o.raw.items()[0].find("HorizontalFlip") != nullptr);
}

TEST_CASE("an unknown key names file, line, column, section and the valid keys") {
  CHECK_THROWS_AS(read("inner: {nmae: x}\n"), ConfigError);
  CHECK_THROWS_WITH(read("inner: {nmae: x}\n"),
                    Contains("t.yaml:1:9 inner: unknown key 'nmae' (did you mean 'name'?); "
                             "known: depth, name"));
  CHECK_THROWS_WITH(read("cuont: 3\n"), Contains("t.yaml:1:1 (top level): unknown key 'cuont'") &&
                                           Contains("known: big, count, flag"));
  CHECK_THROWS_WITH(read("zzzzzz: 3\n"), !Contains("did you mean"));
}

TEST_CASE("wrong types are errors naming the key path and what was expected") {
  CHECK_THROWS_WITH(read("count: three\n"),
                    Contains("t.yaml:1:8 count: invalid value 'three'; expected an integer"));
  CHECK_THROWS_WITH(read("count: 1.5\n"), Contains("expected an integer"));
  CHECK_THROWS_WITH(read("count: 99999999999\n"), Contains("expected an integer"));
  CHECK_THROWS_WITH(read("count: [1]\n"), Contains("count: expected an integer; got a list"));
  CHECK_THROWS_WITH(read("count:\n"), Contains("expected an integer; got null"));
  CHECK_THROWS_WITH(read("flag: maybe\n"), Contains("expected true or false"));
  CHECK_THROWS_WITH(read("rate: abc\n"), Contains("expected a number"));
  CHECK_THROWS_WITH(read("scale: 1e999\n"), Contains("expected a number"));
  CHECK_THROWS_WITH(read("rate: .nan\n"), Contains("expected a number"));
  CHECK_THROWS_WITH(read("sizes: 3\n"), Contains("sizes: expected a list; got a single value"));
  CHECK_THROWS_WITH(read("sizes: [1, x]\n"), Contains("sizes[1]: invalid value 'x'"));
  CHECK_THROWS_WITH(read("inner: 3\n"), Contains("inner: expected a section"));
  CHECK_THROWS_WITH(read_section<Outer>(parse_yaml("[1]", "l.yaml"), ""),
                    Contains("expected a section; got a list"));
}

TEST_CASE("out-of-range values are errors that state the allowed range") {
  CHECK_THROWS_WITH(read("count: 0\n"), Contains("count: invalid value '0'; expected >= 1"));
  CHECK_THROWS_WITH(read("rate: 1.5\n"), Contains("expected a value in [0.0, 1.0]"));
  CHECK_THROWS_WITH(read("label: ''\n"), Contains("expected a non-empty string"));
  CHECK_THROWS_WITH(read("inner: {name: resnet43}\n"),
                    Contains("t.yaml:1:15 inner.name: invalid value 'resnet43'; expected one of: "
                             "resnet34, vgg19"));
  CHECK_THROWS_WITH(read("inner: {depth: 6}\n"), Contains("inner.depth"));
}

TEST_CASE("a section written back as YAML reads back to the same values") {
  Outer o = read("count: 4\nrate: 0.25\nsizes: [1, 2]\nweights: w\ninner: {name: vgg19}\n"
                 "raw: {a: [1]}\n");
  const std::string yaml = to_yaml(write_section(o));
  const Outer back = read(yaml);
  CHECK(back.count == 4);
  CHECK(back.rate == 0.25);
  CHECK(back.sizes == o.sizes);
  CHECK(back.weights == o.weights);
  CHECK(back.inner.name == "vgg19");
  CHECK(back.raw.find("a")->items().size() == 1);
  CHECK(to_yaml(write_section(back)) == yaml);
  // Documented output carries each key's description and constraint as a comment.
  CHECK_THAT(to_yaml(write_section(o), true), Contains("count: 4  # how many (>= 1)"));
  CHECK_THAT(yaml, Contains("rate: 0.25") && Contains("scale: 1.0"));
}
