// dptq/safetensors.hpp — safetensors reader (mmap), sharded-checkpoint index, atomic writer.
// Torch-free.
//
// Contents
//   safetensors_dtype_size   bytes per element of a dtype name ("F32" -> 4); throws on unknown
//   SafetensorsFile          read-only mmap of one file; header validated strictly at open
//   read_safetensors_index   HF folder -> tensor name -> shard path (index.json or model.safetensors)
//   WriteEntry, write_safetensors   atomic writer producing files the reference library accepts
//
// Format (github.com/huggingface/safetensors): u64 little-endian header length N, N bytes of UTF-8
// JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then
// the byte buffer. data_offsets are relative to the buffer (which starts at 8 + N); the tensors
// must tile the buffer exactly (no gap, no overlap, nothing after the last one), as the reference
// reader demands. Supported dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL; F8_* and others are
// rejected with Error(Unsupported). Every problem is a dptq::Error "<file>: <problem>".
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dptq {

// Bytes per element of a supported dtype name, 0 when the name is not supported.
size_t safetensors_dtype_size(std::string_view dtype) noexcept;

class SafetensorsFile {
 public:
  struct TensorEntry {
    std::string name;
    std::string dtype;           // "F32", "BF16", ... (always a supported dtype)
    std::vector<int64_t> shape;  // [] for a scalar
    uint64_t offset = 0;         // absolute offset of the first byte in the file
    uint64_t nbytes = 0;         // == numel() * safetensors_dtype_size(dtype)
    int64_t numel() const;
  };

  // Maps `path` read-only and validates the whole header. Throws Error(Io) when the file cannot
  // be opened, Error(Format) when it is malformed, Error(Unsupported) for an unsupported dtype.
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // All tensors, sorted by offset (the order of their bytes in the file).
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  // The entry named `name`, or nullptr.
  const TensorEntry* find(const std::string& name) const;
  // The entry named `name`; throws Error(Format) "missing tensor '<name>'" when absent.
  const TensorEntry& get(const std::string& name) const;
  // Start of the tensor's bytes inside the mapping (valid while this object lives). Only as
  // aligned as the file makes it (files we write: aligned to the element size); use memcpy or
  // to_float32 when unsure.
  const std::byte* data(const TensorEntry& t) const;
  // The "__metadata__" strings (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Copies an F32 / F16 / BF16 / F64 tensor out as fp32 (exact widening for F16/BF16, rounding
  // for F64). Throws Error(Unsupported) for integer dtypes.
  std::vector<float> to_float32(const TensorEntry& t) const;
  void to_float32(const TensorEntry& t, float* out) const;  // out holds numel() floats

 private:
  void parse_header();
  void unmap() noexcept;

  std::filesystem::path path_;
  const std::byte* base_ = nullptr;
  size_t size_ = 0;
  std::vector<TensorEntry> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

// Tensor name -> shard path for an HF model folder: reads model.safetensors.index.json
// ("weight_map") when present, else lists the tensors of model.safetensors. Throws Error(Io) when
// neither exists or a listed shard is missing, Error(Format) for a malformed index (including
// shard names that leave the folder).
std::map<std::string, std::filesystem::path> read_safetensors_index(const std::filesystem::path& folder);

struct WriteEntry {
  std::string name;
  std::string dtype;           // a supported dtype name
  std::vector<int64_t> shape;
  const void* data = nullptr;  // nbytes bytes, little-endian element layout, row-major
  size_t nbytes = 0;           // must equal numel * dtype size
};

// Writes a safetensors file atomically: "<path>.tmp-<pid>" in the same folder, fsync, rename over
// `path`, fsync of the folder. On any failure the temp file is removed, `path` is untouched and
// Error is thrown (InvalidArgument for bad entries, Io for the file system). Layout follows the
// reference writer: header padded with spaces to a multiple of 8 bytes, tensors ordered by
// element size (largest first) then name, so every tensor is aligned to its element size.
void write_safetensors(const std::filesystem::path& path, const std::vector<WriteEntry>& entries,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace dptq
