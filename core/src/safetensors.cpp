// safetensors reader / writer. See dptq/safetensors.hpp for the format and the guarantees.
#include "dptq/safetensors.hpp"

#include "dptq/atomic_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "dptq/error.hpp"
#include "dptq/half.hpp"

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

namespace dptq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we (a corrupt length field
// would otherwise make us parse gigabytes of tensor data as JSON).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string errno_text() { return std::strerror(errno); }

// dtype names that exist in the safetensors spec but that we do not handle.
bool is_known_unsupported_dtype(std::string_view d) {
  static const char* const names[] = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
                                      "F6_E2M3", "F6_E3M2", "F4", "U16", "U32", "U64", "C64"};
  for (const char* n : names)
    if (d == n) return true;
  return false;
}

// Reads a JSON non-negative integer or returns false.
bool get_u64(const json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

// numel of `shape` times `elem`, false on negative dims or overflow.
bool checked_nbytes(const std::vector<int64_t>& shape, size_t elem, uint64_t& out) {
  uint64_t n = elem;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  }
  out = n;
  return true;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

size_t safetensors_dtype_size(std::string_view d) noexcept {
  if (d == "F64" || d == "I64") return 8;
  if (d == "F32" || d == "I32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL") return 1;
  return 0;
}

int64_t SafetensorsFile::TensorEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsFile::SafetensorsFile(const fs::path& path) : path_(path) {
  const std::string file = path.string();
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorKind::Io, file, "cannot open: " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::string why = errno_text();
    ::close(fd);
    throw Error(ErrorKind::Io, file, "cannot stat: " + why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorKind::Io, file, "not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ < 8) {
    ::close(fd);
    throw Error(ErrorKind::Format, file,
                "truncated safetensors file: " + std::to_string(size_) +
                    " bytes, shorter than the 8-byte header length");
  }
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  std::string why = p == MAP_FAILED ? errno_text() : std::string();
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED) throw Error(ErrorKind::Io, file, "cannot mmap: " + why);
  base_ = static_cast<const std::byte*>(p);
  try {
    parse_header();
  } catch (...) {
    unmap();
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)), base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)),
      tensors_(std::move(o.tensors_)), by_name_(std::move(o.by_name_)), metadata_(std::move(o.metadata_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    tensors_ = std::move(o.tensors_);
    by_name_ = std::move(o.by_name_);
    metadata_ = std::move(o.metadata_);
  }
  return *this;
}

void SafetensorsFile::unmap() noexcept {
  if (base_) ::munmap(const_cast<std::byte*>(base_), size_);
  base_ = nullptr;
}

void SafetensorsFile::parse_header() {
  const std::string file = path_.string();
  auto fail = [&](const std::string& msg) { return Error(ErrorKind::Format, file, msg); };

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(base_[i]);
  if (header_len > size_ - 8)
    throw fail("header length " + std::to_string(header_len) + " goes beyond the end of the file (" +
               std::to_string(size_) + " bytes)");
  if (header_len > kMaxHeaderBytes)
    throw fail("header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  const char* hbegin = reinterpret_cast<const char*>(base_ + 8);
  if (header_len == 0 || hbegin[0] != '{') throw fail("bad JSON header: does not start with '{'");

  json header;
  // JSON objects keep the last of duplicate keys; a header naming a tensor twice is malformed
  // (which bytes would it mean?), so the top-level keys are checked while parsing.
  std::set<std::string> seen;
  std::string duplicate;
  const json::parser_callback_t no_duplicates = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && duplicate.empty() &&
        !seen.insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    header = json::parse(hbegin, hbegin + header_len, no_duplicates);
  } catch (const json::exception& e) {
    throw fail(std::string("bad JSON header: ") + e.what());
  }
  if (!duplicate.empty()) throw fail("bad JSON header: tensor '" + duplicate + "' is listed twice");
  if (!header.is_object()) throw fail("bad JSON header: not an object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_len = size_ - data_start;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw fail("__metadata__ value of '" + m.key() + "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!v.is_object()) throw fail(where + "entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) throw fail(where + "missing or non-string dtype");
    if (sh == v.end() || !sh->is_array()) throw fail(where + "missing or non-array shape");
    if (off == v.end() || !off->is_array() || off->size() != 2)
      throw fail(where + "data_offsets is not a [begin, end] pair");

    TensorEntry t;
    t.name = name;
    t.dtype = dt->get<std::string>();
    const size_t elem = safetensors_dtype_size(t.dtype);
    if (elem == 0) {
      if (is_known_unsupported_dtype(t.dtype))
        throw Error(ErrorKind::Unsupported, file, where + "dtype " + t.dtype + " is not supported");
      throw fail(where + "unknown dtype '" + t.dtype + "'");
    }
    for (const json& d : *sh) {
      uint64_t dim = 0;
      if (!get_u64(d, dim) || dim > static_cast<uint64_t>(INT64_MAX))
        throw fail(where + "shape entries must be non-negative integers");
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t begin = 0, end = 0;
    if (!get_u64((*off)[0], begin) || !get_u64((*off)[1], end))
      throw fail(where + "data_offsets must be non-negative integers");
    if (end < begin)
      throw fail(where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] end before begin");
    if (end > data_len)
      throw fail(where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] out of range (data section is " + std::to_string(data_len) + " bytes)");
    uint64_t expected = 0;
    if (!checked_nbytes(t.shape, elem, expected))
      throw fail(where + "shape " + shape_str(t.shape) + " overflows");
    if (expected != end - begin)
      throw fail(where + "holds " + std::to_string(end - begin) + " bytes but " + t.dtype + " " +
                 shape_str(t.shape) + " needs " + std::to_string(expected));
    t.offset = data_start + begin;
    t.nbytes = end - begin;
    tensors_.push_back(std::move(t));
  }

  // Like the reference reader: the tensors must tile the data section exactly.
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.offset != b.offset ? a.offset < b.offset
                                : (a.nbytes != b.nbytes ? a.nbytes < b.nbytes : a.name < b.name);
  });
  uint64_t cursor = data_start;
  const TensorEntry* prev = nullptr;
  for (const TensorEntry& t : tensors_) {
    if (t.offset < cursor)
      throw fail("tensor '" + t.name + "' overlaps tensor '" + prev->name + "' (data_offsets begin " +
                 std::to_string(t.offset - data_start) + " < " + std::to_string(cursor - data_start) + ")");
    if (t.offset > cursor)
      throw fail("gap of " + std::to_string(t.offset - cursor) + " unused bytes before tensor '" + t.name + "'");
    cursor = t.offset + t.nbytes;
    prev = &t;
  }
  if (cursor != size_)
    throw fail(std::to_string(size_ - cursor) + " bytes after the last tensor are not described by the header");

  by_name_.reserve(tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) by_name_.emplace(tensors_[i].name, i);
}

const SafetensorsFile::TensorEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const SafetensorsFile::TensorEntry& SafetensorsFile::get(const std::string& name) const {
  if (const TensorEntry* t = find(name)) return *t;
  throw Error(ErrorKind::Format, path_.string(), "missing tensor '" + name + "'");
}

const std::byte* SafetensorsFile::data(const TensorEntry& t) const { return base_ + t.offset; }

void SafetensorsFile::to_float32(const TensorEntry& t, float* out) const {
  const std::byte* src = data(t);
  const size_t n = static_cast<size_t>(t.numel());
  if (t.dtype == "F32") {
    std::memcpy(out, src, n * 4);
  } else if (t.dtype == "F16" || t.dtype == "BF16") {
    const bool bf = t.dtype == "BF16";
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = bf ? bf16_to_fp32(h) : fp16_to_fp32(h);
    }
  } else if (t.dtype == "F64") {
    for (size_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, src + 8 * i, 8);
      out[i] = static_cast<float>(d);
    }
  } else {
    throw Error(ErrorKind::Unsupported, path_.string(),
                "tensor '" + t.name + "': cannot read dtype " + t.dtype + " as float32");
  }
}

std::vector<float> SafetensorsFile::to_float32(const TensorEntry& t) const {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  to_float32(t, out.data());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sharded index

std::map<std::string, fs::path> read_safetensors_index(const fs::path& folder) {
  std::map<std::string, fs::path> out;
  const fs::path index = folder / "model.safetensors.index.json";
  const fs::path single = folder / "model.safetensors";
  std::error_code ec;
  if (fs::exists(index, ec)) {
    const std::string file = index.string();
    json j;
    {
      std::FILE* f = std::fopen(file.c_str(), "rb");
      if (!f) throw Error(ErrorKind::Io, file, "cannot open: " + errno_text());
      std::string text;
      char buf[65536];
      size_t got;
      while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, got);
      const bool bad = std::ferror(f);
      std::fclose(f);
      if (bad) throw Error(ErrorKind::Io, file, "read error");
      try {
        j = json::parse(text);
      } catch (const json::exception& e) {
        throw Error(ErrorKind::Format, file, std::string("bad JSON: ") + e.what());
      }
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(ErrorKind::Format, file, "no \"weight_map\" object");
    std::set<std::string> checked;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw Error(ErrorKind::Format, file, "weight_map entry of '" + it.key() + "' is not a string");
      const std::string shard = it.value().get<std::string>();
      const fs::path rel(shard);
      bool escapes = shard.empty() || rel.is_absolute();
      for (const auto& part : rel) escapes = escapes || part == "..";
      if (escapes)
        throw Error(ErrorKind::Format, file, "shard name '" + shard + "' of tensor '" + it.key() +
                                                 "' is not a file inside the folder");
      const fs::path p = folder / rel;
      if (checked.insert(shard).second && !fs::is_regular_file(p, ec))
        throw Error(ErrorKind::Io, file, "shard '" + shard + "' (holding '" + it.key() + "') does not exist");
      out.emplace(it.key(), p);
    }
    if (out.empty()) throw Error(ErrorKind::Format, file, "weight_map is empty");
    return out;
  }
  if (fs::exists(single, ec)) {
    SafetensorsFile f(single);
    for (const auto& t : f.tensors()) out.emplace(t.name, single);
    return out;
  }
  throw Error(ErrorKind::Io, folder.string(), "neither model.safetensors.index.json nor model.safetensors exists");
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {


}  // namespace

void write_safetensors(const fs::path& path, const std::vector<WriteEntry>& entries,
                       const std::map<std::string, std::string>& metadata) {
  const std::string target = path.string();
  auto bad = [&](const std::string& msg) { return Error(ErrorKind::InvalidArgument, target, msg); };

  // Validate everything before touching the file system.
  std::set<std::string> names;
  for (const WriteEntry& e : entries) {
    const std::string where = "tensor '" + e.name + "': ";
    if (e.name.empty()) throw bad("tensor with an empty name");
    if (e.name == "__metadata__") throw bad("'__metadata__' is reserved and cannot name a tensor");
    if (!names.insert(e.name).second) throw bad(where + "name used twice");
    const size_t elem = safetensors_dtype_size(e.dtype);
    if (elem == 0) throw bad(where + "unsupported dtype '" + e.dtype + "'");
    uint64_t expected = 0;
    if (!checked_nbytes(e.shape, elem, expected)) throw bad(where + "invalid shape " + shape_str(e.shape));
    if (expected != e.nbytes)
      throw bad(where + std::to_string(e.nbytes) + " bytes given but " + e.dtype + " " + shape_str(e.shape) +
                " needs " + std::to_string(expected));
    if (e.nbytes > 0 && e.data == nullptr) throw bad(where + "null data");
  }

  // Reference layout: largest element size first, then by name; header padded with spaces.
  std::vector<const WriteEntry*> order;
  for (const WriteEntry& e : entries) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](const WriteEntry* a, const WriteEntry* b) {
    size_t sa = safetensors_dtype_size(a->dtype), sb = safetensors_dtype_size(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t cursor = 0;
  for (const WriteEntry* e : order) {
    header[e->name] = {{"dtype", e->dtype}, {"shape", e->shape}, {"data_offsets", {cursor, cursor + e->nbytes}}};
    cursor += e->nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t len_le[8];
  for (int i = 0; i < 8; ++i) len_le[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));

  AtomicFile out(path);
  out.write(len_le, 8);
  out.write(text.data(), text.size());
  for (const WriteEntry* e : order) out.write(e->data, e->nbytes);
  out.commit();
}

}  // namespace dptq
