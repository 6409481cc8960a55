#include <catch2/catch.hpp>

#include <functional>

#include "pneumo/core/registry.h"

using namespace pneumo::core;
using Catch::Matchers::Contains;

TEST_CASE("a registry finds factories by name and lists the known names when one is unknown") {
  Registry<std::function<int()>> encoders("encoder");
  encoders.add("vgg19", [] { return 19; });
  encoders.add("resnet34", [] { return 34; });
  encoders.add("densenet121", [] { return 121; });

  CHECK(encoders.at("resnet34")() == 34);
  CHECK(encoders.contains("vgg19"));
  CHECK(encoders.find("resnet43") == nullptr);
  CHECK(encoders.names() == std::vector<std::string>{"densenet121", "resnet34", "vgg19"});
  CHECK_THROWS_AS(encoders.at("resnet43"), ConfigError);
  CHECK_THROWS_WITH(encoders.at("resnet43"),
                    "unknown encoder 'resnet43' (did you mean 'resnet34'?); known: densenet121, resnet34, vgg19");
  CHECK_THROWS_AS(encoders.add("vgg19", [] { return 0; }), std::logic_error);

  const Check<std::string> check = encoders.check();
  CHECK(check.accepts("vgg19"));
  CHECK_FALSE(check.accepts("vgg16"));
  CHECK_THAT(check.expected, Contains("densenet121, resnet34, vgg19"));
}
