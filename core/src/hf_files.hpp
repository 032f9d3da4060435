// Internal to dptq_core: the HF-folder pieces shared by save_hf_folder and the quantized
// checkpoint writer (hf_writer.cpp), and the reader helpers of model.cpp.
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>

#include "dptq/model.hpp"

namespace dptq {

nlohmann::json hf_config_json(const ModelConfig& c);
// Writes config.json (from `config`) and the tokenizer files of `model` into `dir`.
void write_hf_metadata(const Model& model, const ModelConfig& config, const std::filesystem::path& dir);
// Atomic folders: begin_folder refuses an existing `out` (InvalidArgument) or a missing parent (Io)
// and creates the temp folder "<out>.tmp-<pid>" beside it; commit_folder fsyncs every file and the
// folder, renames it into place and fsyncs the parent. A trailing separator in `out` is ignored.
std::filesystem::path begin_folder(const std::filesystem::path& out);
void commit_folder(const std::filesystem::path& tmp, const std::filesystem::path& out);
// Reads config.json of a HF folder (model.cpp's parser; errors name the file).
ModelConfig read_hf_config(const std::filesystem::path& folder);
int64_t model_param_count(const ModelConfig& c);        // parameters of a model with config c
std::string tokenizer_kind_name(const TokenizerSpec& s);  // ModelInfo::tokenizer_kind

}  // namespace dptq
