#include <catch2/catch.hpp>

#include "pneumo/core/config_node.h"
#include "pneumo/core/error.h"
#include "test_support.h"

using namespace pneumo::core;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
using Catch::Matchers::Contains;

TEST_CASE("parse_yaml keeps the line and column of every key and value") {
  const ConfigNode root = parse_yaml("a: 1\nsection:\n  key: [x, y]\n", "f.yaml");
  REQUIRE(root.is_map());
  REQUIRE(root.entries().size() == 2);
  CHECK(root.entries()[1].key == "section");
  CHECK(root.entries()[1].key_where.str() == "f.yaml:2:1");
  const ConfigNode* key = root.find("section")->find("key");
  REQUIRE(key != nullptr);
  CHECK(key->is_sequence());
  CHECK(key->items().size() == 2);
  CHECK(key->items()[1].text() == "y");
  CHECK(key->where().str() == "f.yaml:3:8");
  CHECK(root.find("section")->entries()[0].key_where.str() == "f.yaml:3:3");
}

TEST_CASE("parse_yaml rejects syntax errors and duplicate keys with their location") {
  CHECK_THROWS_WITH(parse_yaml("a: [1, 2\n", "s.yaml"), Contains("s.yaml:2:1") &&
                                                           Contains("YAML syntax error"));
  CHECK_THROWS_WITH(parse_yaml("a: 1\nb: 2\na: 3\n", "d.yaml"),
                    Contains("d.yaml:3:1") && Contains("duplicate key 'a'"));
  CHECK_THROWS_AS(parse_yaml("? [a, b]\n: 1\n", "k.yaml"), ConfigError);
}

TEST_CASE("merge_into merges sections key by key and replaces everything else") {
  ConfigNode base = parse_yaml("a: {x: 1, y: 2}\nlist: [1, 2, 3]\ns: old\n", "base");
  const ConfigNode overlay = parse_yaml("a: {y: 20, z: 30}\nlist: [9]\ns: {now: map}\n", "top");
  merge_into(base, overlay);
  CHECK(base.find("a")->find("x")->text() == "1");
  CHECK(base.find("a")->find("y")->text() == "20");
  CHECK(base.find("a")->find("y")->where().source == "top");
  CHECK(base.find("a")->find("z")->text() == "30");
  REQUIRE(base.find("list")->items().size() == 1);
  CHECK(base.find("list")->items()[0].text() == "9");
  CHECK(base.find("s")->is_map());
}

TEST_CASE("load_yaml_file resolves base chains relative to each file") {
  TempDir dir;
  write_file(dir / "shared/root.yaml", "a: {x: 1, y: 1}\nb: root\n");
  write_file(dir / "shared/middle.yaml", "base: root.yaml\na: {y: 2}\n");
  write_file(dir / "other.yaml", "c: other\n");
  const auto top = write_file(dir / "top.yaml",
                              "base: [shared/middle.yaml, other.yaml]\nb: top\n");
  const ConfigNode root = load_yaml_file(top);
  CHECK(root.find("base") == nullptr);
  CHECK(root.find("a")->find("x")->text() == "1");
  CHECK(root.find("a")->find("y")->text() == "2");
  CHECK(root.find("b")->text() == "top");
  CHECK(root.find("c")->text() == "other");
  // Locations still point into the file each value came from.
  CHECK_THAT(root.find("a")->find("x")->where().str(), Contains("root.yaml:1:"));
}

TEST_CASE("load_yaml_file reports base cycles, missing bases and non-map documents") {
  TempDir dir;
  write_file(dir / "a.yaml", "base: b.yaml\n");
  write_file(dir / "b.yaml", "base: a.yaml\n");
  CHECK_THROWS_WITH(load_yaml_file(dir / "a.yaml"), Contains("cycle"));
  write_file(dir / "m.yaml", "base: missing.yaml\n");
  CHECK_THROWS_WITH(load_yaml_file(dir / "m.yaml"), Contains("missing.yaml"));
  write_file(dir / "n.yaml", "base: [1, [2]]\n");
  CHECK_THROWS_WITH(load_yaml_file(dir / "n.yaml"), Contains("n.yaml:1:") && Contains("base"));
  write_file(dir / "list.yaml", "- 1\n- 2\n");
  CHECK_THROWS_WITH(load_yaml_file(dir / "list.yaml"), Contains("must be a map"));
  CHECK_THROWS_AS(load_yaml_file(dir / "absent.yaml"), ConfigError);
  write_file(dir / "empty.yaml", "");
  CHECK(load_yaml_file(dir / "empty.yaml").is_map());
}

TEST_CASE("apply_override sets values, creates sections and indexes lists") {
  ConfigNode root = parse_yaml("train: {epochs: 10}\nops: [{p: 0.5}, {p: 0.1}]\n", "f");
  apply_override(root, "train.epochs=3");
  apply_override(root, "model.encoder.name=vgg19");
  apply_override(root, "train.sizes=[256, 512]");
  apply_override(root, "ops.1.p=0.9");
  apply_override(root, "train.name=a=b");
  CHECK(root.find("train")->find("epochs")->text() == "3");
  CHECK(root.find("train")->find("epochs")->where().str() == "[--set train.epochs=3]");
  CHECK(root.find("model")->find("encoder")->find("name")->text() == "vgg19");
  CHECK(root.find("train")->find("sizes")->items().size() == 2);
  CHECK(root.find("ops")->items()[1].find("p")->text() == "0.9");
  CHECK(root.find("ops")->items()[0].find("p")->text() == "0.5");
  CHECK(root.find("train")->find("name")->text() == "a=b");
}

TEST_CASE("apply_override rejects malformed assignments") {
  ConfigNode root = parse_yaml("train: {epochs: 10}\nops: [1]\n", "f");
  CHECK_THROWS_WITH(apply_override(root, "train.epochs"), Contains("key.path=value"));
  CHECK_THROWS_WITH(apply_override(root, "=3"), Contains("key.path=value"));
  CHECK_THROWS_WITH(apply_override(root, "train..epochs=3"), Contains("empty name"));
  CHECK_THROWS_WITH(apply_override(root, "train.epochs.x=3"),
                    Contains("cannot set 'x' inside 'train.epochs'"));
  CHECK_THROWS_WITH(apply_override(root, "ops.4=2"), Contains("index 4 is past the end"));
  CHECK_THROWS_WITH(apply_override(root, "train.epochs=[1"), Contains("--set train.epochs=[1"));
}

TEST_CASE("to_yaml writes a tree that parses back to the same tree") {
  const std::string text = "a: 1\nb:\n  c: [1, two, \"3 4\"]\n  d: ~\n  e: \"\"\nf:\n  - {x: 1}\n";
  const ConfigNode first = parse_yaml(text, "t");
  const ConfigNode second = parse_yaml(to_yaml(first), "t2");
  CHECK(to_yaml(first) == to_yaml(second));
  CHECK(second.find("b")->find("c")->items()[2].text() == "3 4");
  CHECK(second.find("b")->find("d")->is_null());
  CHECK(second.find("b")->find("e")->is_scalar());
  CHECK(second.find("b")->find("e")->text().empty());
}
