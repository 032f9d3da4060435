// dptq/gguf.hpp — GGUF (v2/v3) reader: metadata, tensor directory, dequantization to fp32.
//
// Contents
//   GgufType, GgufValue   metadata value model
//   GgufTensor            one tensor's directory entry (dims fastest-first, as in the file)
//   GgufFile              mmap-backed reader; validates every offset against the file size
//   dequantize_gguf       F32 / F16 / BF16 / Q8_0 / Q4_0 / Q4_1 -> fp32
//   read_gguf_tokenizer_spec  tokenizer metadata -> TokenizerSpec
// Torch-free.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "dptq/tokenizer.hpp"

namespace dptq {

// ggml tensor types we know by name; only some are dequantizable (see gguf_type_supported).
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};
std::string ggml_type_name(uint32_t type);
bool ggml_type_supported(uint32_t type);

struct GgufValue {
  using Array = std::vector<GgufValue>;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> v;
  // Accessors throw Error(Format) naming `key` when the stored type does not fit.
  int64_t as_int(const std::string& key) const;
  double as_double(const std::string& key) const;
  bool as_bool(const std::string& key) const;
  const std::string& as_string(const std::string& key) const;
  const Array& as_array(const std::string& key) const;
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> dims;  // ne[0] first (fastest-varying): a linear weight is {in, out}
  uint32_t type = 0;
  uint64_t offset = 0;        // absolute offset in the file
  uint64_t nbytes = 0;
  int64_t numel() const;
};

class GgufFile {
 public:
  // Opens and validates the header, metadata and tensor directory. Throws dptq::Error naming the file.
  explicit GgufFile(const std::filesystem::path& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  const GgufValue& get(const std::string& key) const;  // throws Format "missing metadata key"
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(const std::string& name) const;
  const uint8_t* data(const GgufTensor& t) const { return base_ + t.offset; }
  // Dequantizes a tensor to fp32 into `out` (numel floats). Throws Unsupported for other types.
  void dequantize(const GgufTensor& t, float* out) const;

 private:
  std::filesystem::path path_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> by_name_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

// Dequantizes `n` elements (a multiple of the block size for block types) of `type` from `src`.
void dequantize_gguf(uint32_t type, const uint8_t* src, int64_t n, float* dst);
// Bytes taken by `n` elements of `type` (n a multiple of the block size). Throws on unknown types.
uint64_t ggml_nbytes(uint32_t type, int64_t n, const std::string& file);

TokenizerSpec read_gguf_tokenizer_spec(const GgufFile& file);
TokenizerSpec read_gguf_tokenizer_spec(const std::filesystem::path& path);

}  // namespace dptq
