// GGUF reader. Layout (v2/v3): magic "GGUF", u32 version, u64 tensor_count, u64 kv_count,
// kv pairs, tensor infos, padding to `general.alignment` (default 32), tensor data.
// Every length and offset read from the file is checked against the file size before use, so a
// truncated or corrupt file gives one Error(Format) line instead of a crash.
#include "dptq/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <limits>

#include "dptq/error.hpp"
#include "dptq/half.hpp"

namespace dptq {
namespace {

enum GgufValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

struct BlockInfo { int64_t block; uint64_t bytes; };

// Elements per block and bytes per block; {0,0} for unknown types.
BlockInfo block_info(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: return {1, 4};
    case GgmlType::F16: return {1, 2};
    case GgmlType::BF16: return {1, 2};
    case GgmlType::Q4_0: return {32, 18};
    case GgmlType::Q4_1: return {32, 20};
    case GgmlType::Q5_0: return {32, 22};
    case GgmlType::Q5_1: return {32, 24};
    case GgmlType::Q8_0: return {32, 34};
    case GgmlType::Q8_1: return {32, 36};
    case GgmlType::Q2_K: return {256, 84};
    case GgmlType::Q3_K: return {256, 110};
    case GgmlType::Q4_K: return {256, 144};
    case GgmlType::Q5_K: return {256, 176};
    case GgmlType::Q6_K: return {256, 210};
    case GgmlType::Q8_K: return {256, 292};
  }
  return {0, 0};
}

class Cursor {
 public:
  Cursor(const uint8_t* base, size_t size, const std::string& file)
      : base_(base), size_(size), file_(file) {}
  template <class T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string() {
    const uint64_t n = read<uint64_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(base_ + pos_), n);
    pos_ += n;
    return s;
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorKind::Format, file_, what + " (at byte " + std::to_string(pos_) + ")");
  }

 private:
  void need(uint64_t n) const {
    if (n > size_ - pos_) fail("truncated file: needs " + std::to_string(n) + " more bytes");
  }
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& file_;
};

GgufValue read_value(Cursor& c, uint32_t type, int depth) {
  GgufValue out;
  switch (type) {
    case kU8: out.v = uint64_t(c.read<uint8_t>()); break;
    case kI8: out.v = int64_t(c.read<int8_t>()); break;
    case kU16: out.v = uint64_t(c.read<uint16_t>()); break;
    case kI16: out.v = int64_t(c.read<int16_t>()); break;
    case kU32: out.v = uint64_t(c.read<uint32_t>()); break;
    case kI32: out.v = int64_t(c.read<int32_t>()); break;
    case kU64: out.v = c.read<uint64_t>(); break;
    case kI64: out.v = c.read<int64_t>(); break;
    case kF32: out.v = double(c.read<float>()); break;
    case kF64: out.v = c.read<double>(); break;
    case kBool: out.v = c.read<uint8_t>() != 0; break;
    case kString: out.v = c.read_string(); break;
    case kArray: {
      if (depth > 2) c.fail("nested arrays too deep");
      const uint32_t elem = c.read<uint32_t>();
      const uint64_t n = c.read<uint64_t>();
      if (n > (1ull << 32)) c.fail("array length " + std::to_string(n) + " is implausible");
      // Every element takes at least one byte: a longer array is a lying count (found by
      // fuzz_gguf: reserve(n) asked for 171 GB).
      if (n > c.remaining()) c.fail("array of " + std::to_string(n) + " elements is longer than the rest of the file");
      GgufValue::Array arr;
      arr.reserve(n);
      for (uint64_t i = 0; i < n; ++i) arr.push_back(read_value(c, elem, depth + 1));
      out.v = std::move(arr);
      break;
    }
    default: c.fail("unknown metadata value type " + std::to_string(type));
  }
  return out;
}

[[noreturn]] void type_error(const std::string& key, const char* want) {
  throw Error(ErrorKind::Format, "", "metadata key '" + key + "' is not " + want);
}

}  // namespace

std::string ggml_type_name(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: return "F32";
    case GgmlType::F16: return "F16";
    case GgmlType::BF16: return "BF16";
    case GgmlType::Q4_0: return "Q4_0";
    case GgmlType::Q4_1: return "Q4_1";
    case GgmlType::Q5_0: return "Q5_0";
    case GgmlType::Q5_1: return "Q5_1";
    case GgmlType::Q8_0: return "Q8_0";
    case GgmlType::Q8_1: return "Q8_1";
    case GgmlType::Q2_K: return "Q2_K";
    case GgmlType::Q3_K: return "Q3_K";
    case GgmlType::Q4_K: return "Q4_K";
    case GgmlType::Q5_K: return "Q5_K";
    case GgmlType::Q6_K: return "Q6_K";
    case GgmlType::Q8_K: return "Q8_K";
  }
  return "type" + std::to_string(type);
}

bool ggml_type_supported(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q8_0: return true;
    default: return false;
  }
}

uint64_t ggml_nbytes(uint32_t type, int64_t n, const std::string& file) {
  const BlockInfo b = block_info(type);
  if (b.block == 0) throw Error(ErrorKind::Unsupported, file, "unknown GGUF tensor type " + std::to_string(type));
  if (n % b.block != 0)
    throw Error(ErrorKind::Format, file, "tensor of " + std::to_string(n) + " elements is not a multiple of the " +
                                             ggml_type_name(type) + " block size " + std::to_string(b.block));
  return uint64_t(n / b.block) * b.bytes;
}

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

int64_t GgufValue::as_int(const std::string& key) const {
  if (auto* u = std::get_if<uint64_t>(&v)) return int64_t(*u);
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  type_error(key, "an integer");
}
double GgufValue::as_double(const std::string& key) const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto* u = std::get_if<uint64_t>(&v)) return double(*u);
  if (auto* i = std::get_if<int64_t>(&v)) return double(*i);
  type_error(key, "a number");
}
bool GgufValue::as_bool(const std::string& key) const {
  if (auto* b = std::get_if<bool>(&v)) return *b;
  type_error(key, "a bool");
}
const std::string& GgufValue::as_string(const std::string& key) const {
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  type_error(key, "a string");
}
const GgufValue::Array& GgufValue::as_array(const std::string& key) const {
  if (auto* a = std::get_if<Array>(&v)) return *a;
  type_error(key, "an array");
}

GgufFile::GgufFile(const std::filesystem::path& path) : path_(path) {
  const std::string file = path.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorKind::Io, file, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorKind::Io, file, "not a regular file");
  }
  size_ = size_t(st.st_size);
  if (size_ < 24) {
    ::close(fd);
    throw Error(ErrorKind::Format, file, "truncated GGUF: " + std::to_string(size_) + " bytes is shorter than the header");
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw Error(ErrorKind::Io, file, std::string("cannot mmap: ") + std::strerror(errno));
  base_ = static_cast<const uint8_t*>(m);

  try {
    Cursor c(base_, size_, file);
    if (std::memcmp(base_, "GGUF", 4) != 0) throw Error(ErrorKind::Format, file, "not a GGUF file (bad magic)");
    c.read<uint32_t>();
    version_ = c.read<uint32_t>();
    if (version_ != 2 && version_ != 3)
      throw Error(ErrorKind::Version, file, "unsupported GGUF version " + std::to_string(version_) + " (supported: 2, 3)");
    const uint64_t n_tensors = c.read<uint64_t>();
    const uint64_t n_kv = c.read<uint64_t>();
    if (n_tensors > size_ / 8 || n_kv > size_ / 8) c.fail("tensor or metadata count larger than the file");
    for (uint64_t i = 0; i < n_kv; ++i) {
      std::string key = c.read_string();
      const uint32_t type = c.read<uint32_t>();
      kv_[key] = read_value(c, type, 0);
    }
    tensors_.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
      GgufTensor t;
      t.name = c.read_string();
      const uint32_t n_dims = c.read<uint32_t>();
      if (n_dims == 0 || n_dims > 4) c.fail("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions");
      uint64_t numel = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        const uint64_t ne = c.read<uint64_t>();
        if (ne == 0 || ne > (1ull << 40)) c.fail("tensor '" + t.name + "' has an invalid dimension");
        // Each dimension is < 2^41, so the product only overflows past 2^40 elements: refuse there
        // (found by fuzz_gguf: numel() overflowed int64).
        if (numel > (1ull << 40) / ne) c.fail("tensor '" + t.name + "' has more than 2^40 elements");
        numel *= ne;
        t.dims.push_back(int64_t(ne));
      }
      t.type = c.read<uint32_t>();
      t.offset = c.read<uint64_t>();
      if (block_info(t.type).block == 0)
        throw Error(ErrorKind::Unsupported, file, "tensor '" + t.name + "' has unknown GGUF tensor type " + std::to_string(t.type));
      t.nbytes = ggml_nbytes(t.type, t.numel(), file);
      if (by_name_.count(t.name)) c.fail("duplicate tensor name '" + t.name + "'");
      by_name_[t.name] = tensors_.size();
      tensors_.push_back(std::move(t));
    }
    uint64_t alignment = 32;
    if (auto* a = find("general.alignment")) alignment = uint64_t(a->as_int("general.alignment"));
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) c.fail("general.alignment is not a power of two");
    const uint64_t data_start = (c.pos() + alignment - 1) / alignment * alignment;
    for (auto& t : tensors_) {
      if (t.offset > size_ || data_start > size_ - t.offset || t.nbytes > size_ - data_start - t.offset)
        throw Error(ErrorKind::Format, file, "truncated GGUF: tensor '" + t.name + "' data [" +
                    std::to_string(data_start + t.offset) + ", +" + std::to_string(t.nbytes) +
                    ") lies beyond the end of the file (" + std::to_string(size_) + " bytes)");
      t.offset += data_start;
    }
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(base_), size_);
    base_ = nullptr;
    throw;
  }
}

GgufFile::~GgufFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  if (auto* v = find(key)) return *v;
  throw Error(ErrorKind::Format, path_.string(), "missing metadata key '" + key + "'");
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

void GgufFile::dequantize(const GgufTensor& t, float* out) const {
  if (!ggml_type_supported(t.type))
    throw Error(ErrorKind::Unsupported, path_.string(),
                "tensor '" + t.name + "' has type " + ggml_type_name(t.type) +
                    ", which is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)");
  dequantize_gguf(t.type, data(t), t.numel(), out);
}

void dequantize_gguf(uint32_t type, const uint8_t* src, int64_t n, float* dst) {
  auto f16 = [](const uint8_t* p) { uint16_t h; std::memcpy(&h, p, 2); return fp16_to_fp32(h); };
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case GgmlType::F16: for (int64_t i = 0; i < n; ++i) dst[i] = f16(src + 2 * i); return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) { uint16_t b; std::memcpy(&b, src + 2 * i, 2); dst[i] = bf16_to_fp32(b); }
      return;
    case GgmlType::Q8_0:  // block: f16 d, int8 q[32]; x = d * q
      for (int64_t b = 0; b < n / 32; ++b, src += 34, dst += 32) {
        const float d = f16(src);
        for (int j = 0; j < 32; ++j) dst[j] = d * float(int8_t(src[2 + j]));
      }
      return;
    case GgmlType::Q4_0:  // block: f16 d, u8 qs[16]; x[j] = d*(lo(qs[j])-8), x[j+16] = d*(hi(qs[j])-8)
      for (int64_t b = 0; b < n / 32; ++b, src += 18, dst += 32) {
        const float d = f16(src);
        for (int j = 0; j < 16; ++j) {
          dst[j] = d * float(int(src[2 + j] & 0x0F) - 8);
          dst[j + 16] = d * float(int(src[2 + j] >> 4) - 8);
        }
      }
      return;
    case GgmlType::Q4_1:  // block: f16 d, f16 m, u8 qs[16]; x = d*q + m, same nibble order as Q4_0
      for (int64_t b = 0; b < n / 32; ++b, src += 20, dst += 32) {
        const float d = f16(src), m = f16(src + 2);
        for (int j = 0; j < 16; ++j) {
          dst[j] = d * float(src[4 + j] & 0x0F) + m;
          dst[j + 16] = d * float(src[4 + j] >> 4) + m;
        }
      }
      return;
    default:
      throw Error(ErrorKind::Unsupported, "", "cannot dequantize GGUF type " + ggml_type_name(type));
  }
}

TokenizerSpec read_gguf_tokenizer_spec(const GgufFile& f) {
  TokenizerSpec spec;
  spec.source = f.path().string();
  const std::string model = f.get("tokenizer.ggml.model").as_string("tokenizer.ggml.model");
  if (model == "gpt2") {
    spec.kind = TokenizerSpec::Kind::Bpe;
  } else if (model == "llama") {
    spec.kind = TokenizerSpec::Kind::SentencePiece;
  } else {
    throw Error(ErrorKind::Unsupported, spec.source, "unsupported tokenizer model '" + model + "' (supported: gpt2, llama)");
  }
  if (auto* p = f.find("tokenizer.ggml.pre")) spec.pre = p->as_string("tokenizer.ggml.pre");
  for (auto& v : f.get("tokenizer.ggml.tokens").as_array("tokenizer.ggml.tokens"))
    spec.tokens.push_back(v.as_string("tokenizer.ggml.tokens"));
  if (auto* t = f.find("tokenizer.ggml.token_type"))
    for (auto& v : t->as_array("tokenizer.ggml.token_type")) spec.token_types.push_back(int32_t(v.as_int("tokenizer.ggml.token_type")));
  if (auto* m = f.find("tokenizer.ggml.merges"))
    for (auto& v : m->as_array("tokenizer.ggml.merges")) spec.merges.push_back(v.as_string("tokenizer.ggml.merges"));
  if (auto* s = f.find("tokenizer.ggml.scores"))
    for (auto& v : s->as_array("tokenizer.ggml.scores")) spec.scores.push_back(float(v.as_double("tokenizer.ggml.scores")));
  if (auto* p = f.find("tokenizer.ggml.add_space_prefix")) spec.add_space_prefix = p->as_bool("tokenizer.ggml.add_space_prefix");
  auto id = [&](const char* key) { auto* v = f.find(key); return v ? int32_t(v->as_int(key)) : -1; };
  spec.bos_id = id("tokenizer.ggml.bos_token_id");
  spec.eos_id = id("tokenizer.ggml.eos_token_id");
  spec.unk_id = id("tokenizer.ggml.unknown_token_id");
  // llama.cpp's default: SentencePiece vocabularies add BOS, BPE ones do not, unless the key says.
  spec.add_bos = spec.kind == TokenizerSpec::Kind::SentencePiece;
  if (auto* b = f.find("tokenizer.ggml.add_bos_token")) spec.add_bos = b->as_bool("tokenizer.ggml.add_bos_token");
  return spec;
}

TokenizerSpec read_gguf_tokenizer_spec(const std::filesystem::path& path) {
  return read_gguf_tokenizer_spec(GgufFile(path));
}

}  // namespace dptq
