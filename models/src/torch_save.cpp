#include "pneumo/models/torch_save.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/versions.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>
#include <zlib.h>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"

namespace pneumo::models {

namespace fs = std::filesystem;
using Kind = PickleValue::Kind;

namespace {

PickleRef make(Kind kind) {
  auto v = std::make_shared<PickleValue>();
  v->kind = kind;
  return v;
}

c10::ScalarType storage_dtype(const std::string& global) {
  static const std::map<std::string, c10::ScalarType> types = {
      {"torch.FloatStorage", c10::kFloat},    {"torch.DoubleStorage", c10::kDouble},
      {"torch.HalfStorage", c10::kHalf},      {"torch.BFloat16Storage", c10::kBFloat16},
      {"torch.LongStorage", c10::kLong},      {"torch.IntStorage", c10::kInt},
      {"torch.ShortStorage", c10::kShort},    {"torch.CharStorage", c10::kChar},
      {"torch.ByteStorage", c10::kByte},      {"torch.BoolStorage", c10::kBool}};
  const auto it = types.find(global);
  if (it == types.end()) throw core::CheckpointError("unsupported storage type " + global);
  return it->second;
}

// Storages by key: allocated when the pickle names them, filled from the zip record at once or,
// in the legacy format, after the pickle.
struct Storages {
  std::function<void(const std::string& key, torch::Tensor& flat)> fill;  // zip: immediate
  std::map<std::string, torch::Tensor> by_key;
  // The file's size: torch.save stores tensor bytes uncompressed, so no storage is larger, and a
  // 400-byte file declaring 5 GB is refused before anything is allocated (fuzz_checkpoint).
  uint64_t file_bytes = 0;
};

class Unpickler {
 public:
  Unpickler(const char* data, size_t size, Storages& storages) : p_(data), end_(data + size), storages_(storages) {}

  size_t consumed(const char* start) const { return static_cast<size_t>(p_ - start); }

  PickleRef run() {
    for (;;) {
      const auto op = static_cast<uint8_t>(byte());
      switch (op) {
        case 0x80: byte(); break;                      // PROTO
        case 0x95: skip(8); break;                     // FRAME
        case '.': return pop();                        // STOP
        case '(': marks_.push_back(stack_.size()); break;
        case 'N': stack_.push_back(make(Kind::kNone)); break;
        case 0x88: case 0x89: { auto v = make(Kind::kBool); v->boolean = op == 0x88; stack_.push_back(v); break; }
        case 'J': push_int(static_cast<int32_t>(le(4))); break;
        case 'K': push_int(static_cast<uint8_t>(le(1))); break;
        case 'M': push_int(static_cast<uint16_t>(le(2))); break;
        case 0x8a: push_long(static_cast<size_t>(static_cast<uint8_t>(byte()))); break;  // LONG1
        case 0x8b: push_long(static_cast<size_t>(le(4))); break;                         // LONG4
        case 'G': { auto v = make(Kind::kFloat); uint64_t bits = 0; for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint8_t>(byte()); std::memcpy(&v->number, &bits, 8); stack_.push_back(v); break; }
        case 'X': push_string(static_cast<size_t>(le(4))); break;  // BINUNICODE
        case 0x8c: push_string(static_cast<uint8_t>(byte())); break;  // SHORT_BINUNICODE
        case 0x8d: push_string(static_cast<size_t>(le(8))); break;    // BINUNICODE8
        case 'T': push_string(static_cast<size_t>(le(4))); break;    // BINSTRING
        case 'U': push_string(static_cast<uint8_t>(byte())); break;  // SHORT_BINSTRING
        case 'B': push_string(static_cast<size_t>(le(4))); break;    // BINBYTES
        case 'C': push_string(static_cast<uint8_t>(byte())); break;  // SHORT_BINBYTES
        case '}': stack_.push_back(make(Kind::kDict)); break;
        case ']': case ')': stack_.push_back(make(Kind::kList)); break;
        case 'd': { auto d = make(Kind::kDict); set_items(d, pop_mark()); stack_.push_back(d); break; }
        case 'l': case 't': { auto l = make(Kind::kList); append(l, pop_mark()); stack_.push_back(l); break; }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          auto t = make(Kind::kList);
          const size_t n = op - 0x84;
          need(n);
          append(t, std::vector<PickleRef>(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end()));
          stack_.resize(stack_.size() - n);
          stack_.push_back(t);
          break;
        }
        case 'a': { auto v = pop(); append(list_top(), {v}); break; }
        case 'e': { auto items = pop_mark(); append(list_top(), items); break; }
        case 's': { auto v = pop(); auto k = pop(); set_items(dict_top(), {k, v}); break; }
        case 'u': { auto items = pop_mark(); set_items(dict_top(), items); break; }
        case 'q': memo_[static_cast<uint8_t>(byte())] = top(); break;
        case 'r': memo_[static_cast<uint32_t>(le(4))] = top(); break;
        case 0x94: memo_[memo_.size()] = top(); break;  // MEMOIZE
        case 'h': stack_.push_back(memo(static_cast<uint8_t>(byte()))); break;
        case 'j': stack_.push_back(memo(static_cast<uint32_t>(le(4)))); break;
        case 'c': { auto g = make(Kind::kGlobal); const std::string module = line(); g->text = module + "." + line(); stack_.push_back(g); break; }
        case 0x93: {  // STACK_GLOBAL: module and name are strings, as Python's pickle requires (a global
                      // fed back as its own module doubled its name each time: fuzz_checkpoint's timeout)
          auto name = pop(); auto module = pop();
          if (module->kind != Kind::kString || name->kind != Kind::kString) throw core::CheckpointError("malformed pickle (STACK_GLOBAL needs two strings)");
          auto g = make(Kind::kGlobal); g->text = module->text + "." + name->text; stack_.push_back(g); break;
        }
        case 'R': { auto args = pop(); auto callable = pop(); stack_.push_back(reduce(*callable, *args)); break; }
        case 0x81: { auto args = pop(); auto cls = pop(); stack_.push_back(reduce(*cls, *args)); break; }  // NEWOBJ
        case 'b': pop(); top(); break;  // BUILD: object state (OrderedDict _metadata, ...) is not needed
        case 'Q': { auto pid = pop(); stack_.push_back(persistent_load(*pid)); break; }
        case '0': pop(); break;
        case '1': pop_mark(); break;
        case '2': stack_.push_back(top()); break;
        default:
          throw core::CheckpointError(fmt::format("unsupported pickle opcode 0x{:02x}", op));
      }
    }
  }

 private:
  char byte() {
    if (p_ >= end_) throw core::CheckpointError("truncated pickle");
    return *p_++;
  }
  void skip(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) throw core::CheckpointError("truncated pickle");
    p_ += n;
  }
  uint64_t le(int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(byte())) << (8 * i);
    return v;
  }
  std::string line() {
    const char* start = p_;
    while (byte() != '\n') {}
    return std::string(start, p_ - start - 1);
  }
  void push_int(int64_t v) {
    auto r = make(Kind::kInt);
    r->integer = v;
    stack_.push_back(r);
  }
  void push_long(size_t n) {
    if (n > 8) {  // kept as raw little-endian bytes (the legacy format's magic number)
      auto big = make(Kind::kOpaque);
      if (static_cast<size_t>(end_ - p_) < n) throw core::CheckpointError("truncated pickle");
      big->text.assign(p_, n);
      p_ += n;
      stack_.push_back(big);
      return;
    }
    uint64_t v = le(static_cast<int>(n));
    if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    push_int(static_cast<int64_t>(v));
  }
  void push_string(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) throw core::CheckpointError("truncated pickle");
    auto s = make(Kind::kString);
    s->text.assign(p_, n);
    p_ += n;
    stack_.push_back(s);
  }
  void need(size_t n) const {
    if (stack_.size() < n) throw core::CheckpointError("malformed pickle (stack underflow)");
  }
  PickleRef pop() {
    need(1);
    PickleRef v = stack_.back();
    stack_.pop_back();
    return v;
  }
  PickleRef top() const {
    need(1);
    return stack_.back();
  }
  std::vector<PickleRef> pop_mark() {
    if (marks_.empty() || marks_.back() > stack_.size()) throw core::CheckpointError("malformed pickle (no mark)");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<PickleRef> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  PickleRef list_top() const {
    PickleRef l = top();
    if (l->kind != Kind::kList) throw core::CheckpointError("malformed pickle (append to a non-list)");
    return l;
  }
  PickleRef dict_top() const {
    PickleRef d = top();
    if (d->kind != Kind::kDict) throw core::CheckpointError("malformed pickle (item set on a non-dict)");
    return d;
  }
  // Python's pickler fills a container before it places it in another (depth first), so here a
  // container already placed may not grow. That keeps the graph acyclic (a cycle would need a
  // placed container to grow) without walking it, and bounds, as it is built, its depth and
  // the size of the tree that recursive readers (the checkpoint's checksum, the destructor)
  // walk: shared references multiply it (fuzz_checkpoint: a list of a list of ... twice each;
  // nesting 200,000 deep, which took minutes to refuse when each append walked the graph).
  struct Shape {
    int height = 0;          // of the deepest path below
    uint64_t tree_size = 1;  // nodes, counting each shared one once per reference
    bool placed = false;
  };
  static constexpr int kMaxNesting = 1000;
  static constexpr uint64_t kMaxTreeSize = uint64_t{1} << 24;  // 16.8 M; a checkpoint holds thousands
  void place(const PickleRef& container, const PickleRef& child) {
    if (child == container) throw core::CheckpointError("a pickle whose containers contain themselves");
    Shape& c = shapes_[container];
    if (c.placed)
      throw core::CheckpointError("malformed pickle (a container grows after it was placed in another; Python's "
                                  "pickler does not write that, a reference cycle needs it)");
    Shape& v = shapes_[child];  // unordered_map: references stay valid as it grows
    v.placed = true;
    c.height = std::max(c.height, v.height + 1);
    c.tree_size = std::min(c.tree_size + v.tree_size, kMaxTreeSize + 1);
    if (c.height > kMaxNesting)
      throw core::CheckpointError(fmt::format("a pickle nested deeper than {} levels", kMaxNesting));
    if (c.tree_size > kMaxTreeSize)
      throw core::CheckpointError(
          fmt::format("a pickle whose shared references expand to more than {} values", kMaxTreeSize));
  }
  void append(const PickleRef& list, const std::vector<PickleRef>& items) {
    for (const PickleRef& v : items) place(list, v);
    list->items.insert(list->items.end(), items.begin(), items.end());
  }
  void set_items(const PickleRef& dict, const std::vector<PickleRef>& items) {  // key, value, key, value...
    for (size_t i = 0; i + 1 < items.size(); i += 2) {
      place(dict, items[i]);
      place(dict, items[i + 1]);
      dict->entries.emplace_back(items[i], items[i + 1]);
    }
  }

  PickleRef memo(uint64_t key) const {
    const auto it = memo_.find(key);
    if (it == memo_.end()) throw core::CheckpointError("malformed pickle (unknown memo)");
    return it->second;
  }

  static const PickleValue& arg(const PickleValue& args, size_t i) {
    if (args.kind != Kind::kList || args.items.size() <= i) throw core::CheckpointError("malformed tensor record");
    return *args.items[i];
  }
  static std::vector<int64_t> ints(const PickleValue& tuple) {
    std::vector<int64_t> out;
    for (const auto& item : tuple.items) {
      if (item->kind != Kind::kInt) throw core::CheckpointError("malformed tensor shape");
      out.push_back(item->integer);
    }
    return out;
  }

  // Calls of the few globals a state dict needs; anything else stays opaque.
  PickleRef reduce(const PickleValue& callable, const PickleValue& args) {
    const std::string name = callable.kind == Kind::kGlobal ? callable.text : "";
    if (name == "collections.OrderedDict") return make(Kind::kDict);
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      const PickleValue& storage = arg(args, 0);
      if (storage.kind != Kind::kStorage) throw core::CheckpointError("tensor without storage");
      const int64_t offset = arg(args, 1).integer;
      const std::vector<int64_t> sizes = ints(arg(args, 2)), strides = ints(arg(args, 3));
      if (sizes.size() != strides.size()) throw core::CheckpointError("malformed tensor record");
      int64_t last = offset;
      for (size_t i = 0; i < sizes.size(); ++i) {
        if (sizes[i] < 0 || strides[i] < 0) throw core::CheckpointError("malformed tensor record");
        if (sizes[i] > 0) last += (sizes[i] - 1) * strides[i];
      }
      if (offset < 0 || (storage.tensor.numel() > 0 && last >= storage.tensor.numel()) ||
          (storage.tensor.numel() == 0 && std::count(sizes.begin(), sizes.end(), 0) == 0 && !sizes.empty()))
        throw core::CheckpointError("tensor record reaches outside its storage");
      auto t = make(Kind::kTensor);
      t->tensor = storage.tensor.as_strided(sizes, strides, offset);  // a view: legacy storages fill later
      return t;
    }
    if (name == "torch._utils._rebuild_parameter") {
      const PickleValue& data = arg(args, 0);
      if (data.kind != Kind::kTensor) throw core::CheckpointError("parameter without tensor");
      auto t = make(Kind::kTensor);
      t->tensor = data.tensor;
      return t;
    }
    auto opaque = make(Kind::kOpaque);
    opaque->text = name.empty() ? "object" : name;
    return opaque;
  }

  // ('storage', storage type, key, location, numel[, view metadata])
  PickleRef persistent_load(const PickleValue& pid) {
    if (pid.kind != Kind::kList || pid.items.size() < 5 || pid.items[0]->text != "storage" ||
        pid.items[1]->kind != Kind::kGlobal || pid.items[4]->kind != Kind::kInt)
      throw core::CheckpointError("unsupported persistent record (not a tensor storage)");
    const c10::ScalarType dtype = storage_dtype(pid.items[1]->text);
    const std::string key = pid.items[2]->text;
    const int64_t numel = pid.items[4]->integer;
    if (numel < 0 || numel > (int64_t{1} << 40)) throw core::CheckpointError("absurd storage size");
    const uint64_t bytes = static_cast<uint64_t>(numel) * c10::elementSize(dtype);
    if (bytes > storages_.file_bytes)
      throw core::CheckpointError(fmt::format("a tensor storage of {} bytes in a file of {} bytes", bytes,
                                              storages_.file_bytes));
    auto it = storages_.by_key.find(key);
    if (it == storages_.by_key.end()) {
      torch::Tensor flat = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
      if (storages_.fill) storages_.fill(key, flat);
      it = storages_.by_key.emplace(key, flat).first;
    }
    auto s = make(Kind::kStorage);
    s->tensor = it->second;
    if (pid.items.size() >= 6 && pid.items[5]->kind == Kind::kList && pid.items[5]->items.size() == 3) {
      const int64_t view_offset = pid.items[5]->items[1]->integer, view_size = pid.items[5]->items[2]->integer;
      if (view_offset < 0 || view_size < 0 || view_offset + view_size > it->second.numel())
        throw core::CheckpointError("storage view outside its storage");
      s->tensor = it->second.narrow(0, view_offset, view_size);
    }
    return s;
  }

  const char* p_;
  const char* end_;
  Storages& storages_;
  std::vector<PickleRef> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, PickleRef> memo_;
  std::unordered_map<PickleRef, Shape> shapes_;  // containers and what they hold (keeps them alive)
};

// LibTorch's zip reader leaks its archive state when its constructor throws (a zip without
// the `<archive>/version` record, files outside one top folder, an unsupported version), so
// those are checked here first from the zip's central directory. Throws CheckpointError.
void check_torch_zip(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  const auto read_at = [&](uint64_t offset, size_t n) {
    if (offset > size || n > size - offset) throw core::CheckpointError("a zip record points outside the file");
    std::string bytes(n, '\0');
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(bytes.data(), static_cast<std::streamsize>(n));
    if (!in) throw core::CheckpointError("the zip cannot be read");
    return bytes;
  };
  const auto le = [](const std::string& b, size_t at, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b.at(at + static_cast<size_t>(i)));
    return v;
  };
  // The end-of-central-directory record: in the last 22 + 65535 bytes.
  const uint64_t tail_size = std::min<uint64_t>(size, 22 + 65535);
  const std::string tail = read_at(size - tail_size, tail_size);
  size_t eocd = std::string::npos;
  for (size_t i = tail.size() >= 22 ? tail.size() - 22 + 1 : 0; i-- > 0;)
    if (tail.compare(i, 4, "PK\x05\x06") == 0) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos) throw core::CheckpointError("a zip without its central directory (truncated?)");
  uint64_t entries = le(tail, eocd + 10, 2), directory = le(tail, eocd + 16, 4);
  if (entries == 0xFFFF || directory == 0xFFFFFFFF) {  // zip64: the locator sits just before
    if (eocd < 20 || tail.compare(eocd - 20, 4, "PK\x06\x07") != 0)
      throw core::CheckpointError("a zip64 archive without its locator");
    const std::string record = read_at(le(tail, eocd - 20 + 8, 8), 56);
    if (record.compare(0, 4, "PK\x06\x06") != 0) throw core::CheckpointError("a damaged zip64 directory");
    entries = le(record, 32, 8);
    directory = le(record, 48, 8);
  }
  std::string prefix;
  std::optional<uint64_t> version_header;
  uint64_t version_size = 0;
  uint64_t offset = directory;
  for (uint64_t e = 0; e < entries; ++e) {
    const std::string header = read_at(offset, 46);
    if (header.compare(0, 4, "PK\x01\x02") != 0) throw core::CheckpointError("a damaged zip directory");
    const uint64_t name_length = le(header, 28, 2), extra = le(header, 30, 2), comment = le(header, 32, 2);
    const std::string name = read_at(offset + 46, name_length);
    const size_t slash = name.find('/');
    if (slash == std::string::npos || slash == 0)
      throw core::CheckpointError("zip entry '" + name.substr(0, 80) + "' is outside the archive's folder");
    if (prefix.empty()) prefix = name.substr(0, slash);
    if (name.compare(0, slash, prefix) != 0 || slash != prefix.size())
      throw core::CheckpointError("zip entries in more than one top folder");
    const std::string rest = name.substr(slash + 1);
    if (rest == "version" || rest == ".data/version") {
      uint64_t local = le(header, 42, 4);
      if (local == 0xFFFFFFFF) throw core::CheckpointError("unsupported zip64 offset of the version record");
      if (le(header, 10, 2) != 0) throw core::CheckpointError("a compressed version record");
      version_header = local;
      version_size = le(header, 24, 4);
    }
    offset += 46 + name_length + extra + comment;
  }
  if (!version_header) throw core::CheckpointError("no version record: not written by torch.save");
  // The version record is stored uncompressed: a few ASCII digits after its local header (its
  // size from the directory: the local header may defer it to a data descriptor).
  const std::string local = read_at(*version_header, 30);
  if (local.compare(0, 4, "PK\x03\x04") != 0) throw core::CheckpointError("a damaged zip entry");
  const std::string digits =
      read_at(*version_header + 30 + le(local, 26, 2) + le(local, 28, 2), std::min<uint64_t>(version_size, 20));
  uint64_t version = 0;
  size_t used = 0;
  for (char c : digits) {
    if (c == '\n' || c == '\r') break;
    if (c < '0' || c > '9' || ++used > 10) throw core::CheckpointError("an unreadable version record");
    version = version * 10 + static_cast<uint64_t>(c - '0');
  }
  if (used == 0 || version < caffe2::serialize::kMinSupportedFileFormatVersion ||
      version > caffe2::serialize::kMaxSupportedFileFormatVersion)
    throw core::CheckpointError(fmt::format("file format version {} is not one this LibTorch reads ({}..{})", version,
                                            caffe2::serialize::kMinSupportedFileFormatVersion,
                                            caffe2::serialize::kMaxSupportedFileFormatVersion));
}

PickleRef read_zip(const fs::path& file) {
  check_torch_zip(file);
  caffe2::serialize::PyTorchStreamReader reader(file.string());
  Storages storages;
  storages.file_bytes = fs::file_size(file);
  storages.fill = [&reader](const std::string& key, torch::Tensor& flat) {
    const std::string record = "data/" + key;
    if (!reader.hasRecord(record)) throw core::CheckpointError("missing tensor data " + record);
    const size_t expected = static_cast<size_t>(flat.numel()) * flat.element_size();
    const size_t size = reader.getRecordSize(record);
    if (size < expected) throw core::CheckpointError("tensor data " + record + " is truncated");
    if (size == expected) {  // straight into the tensor: no second copy of the weights
      reader.getRecord(record, flat.data_ptr(), expected);
      return;
    }
    auto [data, read] = reader.getRecord(record);
    std::memcpy(flat.data_ptr(), data.get(), std::min(expected, read));
  };
  auto [pickle, size] = reader.getRecord("data.pkl");
  Unpickler unpickler(static_cast<const char*>(pickle.get()), size, storages);
  return unpickler.run();
}

// Legacy format: magic, protocol and system-info pickles, the object pickle, a pickle of the
// storage keys, then each storage as an 8-byte element count and its raw bytes.
PickleRef read_legacy(const std::string& bytes) {
  Storages storages;
  storages.file_bytes = bytes.size();
  const char* start = bytes.data();
  size_t offset = 0;
  auto next = [&](Storages& s) {
    Unpickler u(start + offset, bytes.size() - offset, s);
    PickleRef v = u.run();
    offset += u.consumed(start + offset);
    return v;
  };
  Storages none;
  const PickleRef magic = next(none);
  static const std::string kMagic = "\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";  // 0x1950a86a20f9469cfc6c
  if (magic->kind != Kind::kOpaque || magic->text != kMagic)
    throw core::CheckpointError("a pickle, but not one written by torch.save");
  next(none);  // protocol version
  next(none);  // system info
  PickleRef root = next(storages);
  const PickleRef keys = next(none);
  for (const PickleRef& key : keys->items) {
    const auto it = storages.by_key.find(key->text);
    if (offset + 8 > bytes.size()) throw core::CheckpointError("truncated storage data");
    int64_t numel = 0;
    std::memcpy(&numel, start + offset, 8);
    offset += 8;
    if (it == storages.by_key.end() || numel != it->second.numel())
      throw core::CheckpointError("storage data does not match the pickle");
    const size_t n = static_cast<size_t>(numel) * it->second.element_size();
    if (offset + n > bytes.size()) throw core::CheckpointError("truncated storage data");
    std::memcpy(it->second.data_ptr(), start + offset, n);
    offset += n;
  }
  return root;
}

// Protocol-2 pickle output.
class PickleWriter {
 public:
  void raw(const std::string& bytes) { out_ += bytes; }
  void op(char c) { out_ += c; }
  void global(const std::string& module, const std::string& name) { out_ += "c" + module + "\n" + name + "\n"; }
  void string(const std::string& s) {
    op('X');
    le(s.size(), 4);
    out_ += s;
  }
  void integer(int64_t v) {
    if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      le(static_cast<uint64_t>(static_cast<uint32_t>(static_cast<int32_t>(v))), 4);
    } else {
      op(static_cast<char>(0x8a));
      op(8);
      le(static_cast<uint64_t>(v), 8);
    }
  }
  void int_tuple(c10::IntArrayRef values) {
    op('(');
    for (int64_t v : values) integer(v);
    op('t');
  }
  const std::string& bytes() const { return out_; }

 private:
  void le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  std::string out_;
};

std::string storage_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::kFloat: return "FloatStorage";
    case c10::kDouble: return "DoubleStorage";
    case c10::kHalf: return "HalfStorage";
    case c10::kBFloat16: return "BFloat16Storage";
    case c10::kLong: return "LongStorage";
    case c10::kInt: return "IntStorage";
    case c10::kShort: return "ShortStorage";
    case c10::kChar: return "CharStorage";
    case c10::kByte: return "ByteStorage";
    case c10::kBool: return "BoolStorage";
    default: throw core::CheckpointError(std::string("cannot save tensors of type ") + c10::toString(dtype));
  }
}

}  // namespace

PickleRef pickle_none() { return make(Kind::kNone); }
PickleRef pickle_bool(bool value) {
  auto v = make(Kind::kBool);
  v->boolean = value;
  return v;
}
PickleRef pickle_int(int64_t value) {
  auto v = make(Kind::kInt);
  v->integer = value;
  return v;
}
PickleRef pickle_float(double value) {
  auto v = make(Kind::kFloat);
  v->number = value;
  return v;
}
PickleRef pickle_string(std::string value) {
  auto v = make(Kind::kString);
  v->text = std::move(value);
  return v;
}
PickleRef pickle_tensor(torch::Tensor value) {
  auto v = make(Kind::kTensor);
  v->tensor = std::move(value);
  return v;
}
PickleRef pickle_list(std::vector<PickleRef> items) {
  auto v = make(Kind::kList);
  v->items = std::move(items);
  return v;
}
PickleRef pickle_dict(std::vector<std::pair<std::string, PickleRef>> entries) {
  auto v = make(Kind::kDict);
  for (auto& [key, value] : entries) v->entries.emplace_back(pickle_string(key), std::move(value));
  return v;
}

namespace {

uLong crc_bytes(uLong crc, const void* data, size_t size) {
  const auto* bytes = static_cast<const Bytef*>(data);
  while (size > 0) {  // zlib takes 32-bit lengths
    const auto chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = ::crc32(crc, bytes, chunk);
    bytes += chunk;
    size -= chunk;
  }
  return crc;
}

template <class T>
uLong crc_value(uLong crc, const T& value) {
  return crc_bytes(crc, &value, sizeof value);
}

uLong crc_tree(uLong crc, const PickleValue& v, const std::string& skip_key) {
  crc = crc_value(crc, static_cast<int32_t>(v.kind));
  switch (v.kind) {
    case Kind::kBool: return crc_value(crc, static_cast<uint8_t>(v.boolean));
    case Kind::kInt: return crc_value(crc, v.integer);
    case Kind::kFloat: return crc_value(crc, v.number);
    case Kind::kString:
    case Kind::kGlobal:
    case Kind::kOpaque: return crc_bytes(crc_value(crc, v.text.size()), v.text.data(), v.text.size());
    case Kind::kList:
      crc = crc_value(crc, v.items.size());
      for (const PickleRef& item : v.items) crc = crc_tree(crc, *item, "");
      return crc;
    case Kind::kDict:
      for (const auto& [key, value] : v.entries) {
        if (!skip_key.empty() && key->kind == Kind::kString && key->text == skip_key) continue;
        crc = crc_tree(crc_tree(crc, *key, ""), *value, "");
      }
      return crc;
    case Kind::kTensor:
    case Kind::kStorage: {
      if (!v.tensor.defined()) return crc;
      const torch::Tensor t = v.tensor.detach().cpu().contiguous();
      crc = crc_value(crc, static_cast<int32_t>(t.scalar_type()));
      for (int64_t d : t.sizes()) crc = crc_value(crc, d);
      return crc_bytes(crc, t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
    }
    case Kind::kNone: return crc;
  }
  return crc;
}

}  // namespace

uint32_t pickle_checksum(const PickleRef& value, const std::string& skip_key) {
  if (!value) return 0;
  return static_cast<uint32_t>(crc_tree(::crc32(0L, Z_NULL, 0), *value, skip_key));
}

PickleRef pickle_get(const PickleRef& dict, const std::string& key) {
  if (!dict || dict->kind != Kind::kDict) return nullptr;
  for (const auto& [k, v] : dict->entries)
    if (k->kind == Kind::kString && k->text == key) return v;
  return nullptr;
}

namespace {

void write_value(const PickleValue& v, PickleWriter& p, caffe2::serialize::PyTorchStreamWriter& writer,
                 int64_t& next_storage) {
  switch (v.kind) {
    case Kind::kNone: p.op('N'); return;
    case Kind::kBool: p.op(static_cast<char>(v.boolean ? 0x88 : 0x89)); return;
    case Kind::kInt: p.integer(v.integer); return;
    case Kind::kFloat: {
      uint64_t bits = 0;
      std::memcpy(&bits, &v.number, 8);
      p.op('G');
      std::string be(8, '\0');
      for (int i = 0; i < 8; ++i) be[i] = static_cast<char>((bits >> (8 * (7 - i))) & 0xff);
      p.raw(be);
      return;
    }
    case Kind::kString: p.string(v.text); return;
    case Kind::kList:
      p.op(']');
      if (!v.items.empty()) {
        p.op('(');
        for (const auto& item : v.items) write_value(*item, p, writer, next_storage);
        p.op('e');
      }
      return;
    case Kind::kDict:
      p.global("collections", "OrderedDict");
      p.op(')');
      p.op('R');
      if (!v.entries.empty()) {
        p.op('(');
        for (const auto& [key, value] : v.entries) {
          write_value(*key, p, writer, next_storage);
          write_value(*value, p, writer, next_storage);
        }
        p.op('u');
      }
      return;
    case Kind::kTensor: {
      const torch::Tensor t = v.tensor.detach().cpu().contiguous();
      const std::string key = std::to_string(next_storage++);
      writer.writeRecord("data/" + key, t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
      p.global("torch._utils", "_rebuild_tensor_v2");
      p.op('(');
      p.op('(');  // persistent id
      p.string("storage");
      p.global("torch", storage_name(t.scalar_type()));
      p.string(key);
      p.string("cpu");
      p.integer(t.numel());
      p.op('t');
      p.op('Q');
      p.integer(0);
      p.int_tuple(t.sizes());
      p.int_tuple(t.strides());
      p.op(static_cast<char>(0x89));  // requires_grad False
      p.global("collections", "OrderedDict");
      p.op(')');
      p.op('R');
      p.op('t');
      p.op('R');
      return;
    }
    default:
      throw core::CheckpointError("cannot write this value to a torch.save file");
  }
}

}  // namespace

std::string torch_save_bytes(const PickleRef& root) {
  std::string file;
  caffe2::serialize::PyTorchStreamWriter writer([&file](const void* data, size_t size) {
    file.append(static_cast<const char*>(data), size);
    return size;
  });
  PickleWriter p;
  p.raw("\x80\x02");
  int64_t next_storage = 0;
  write_value(*root, p, writer, next_storage);
  p.op('.');
  writer.writeRecord("data.pkl", p.bytes().data(), p.bytes().size());
  writer.writeEndOfFile();
  return file;
}

std::string torch_save_bytes(const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  std::vector<std::pair<std::string, PickleRef>> entries;
  for (const auto& [name, tensor] : tensors) entries.emplace_back(name, pickle_tensor(tensor));
  return torch_save_bytes(pickle_dict(std::move(entries)));
}

PickleRef read_torch_save(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec))
    throw core::CheckpointError(fmt::format("{}: weights file not found", file.string()));
  try {
    std::ifstream in(file, std::ios::binary);
    char head[2] = {};
    in.read(head, 2);
    if (head[0] == 'P' && head[1] == 'K') return read_zip(file);
    if (static_cast<uint8_t>(head[0]) == 0x80) return read_legacy(core::read_text_file(file));
    throw core::CheckpointError("neither the zip nor the legacy format");
  } catch (const core::CheckpointError& e) {
    throw core::CheckpointError(fmt::format("{}: not a readable torch.save file: {}", file.string(), e.what()));
  } catch (const c10::Error& e) {
    const std::string why = e.what_without_backtrace();
    throw core::CheckpointError(fmt::format("{}: not a readable torch.save file: {}", file.string(),
                                            why.substr(0, why.find('\n'))));
  }
}

}  // namespace pneumo::models
