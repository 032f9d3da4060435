// dptq/quant_config.hpp — the torch-free half of a quantized checkpoint: parsing and validating
// its quant_config.json (docs/checkpoint-format.md). The loader (quant_checkpoint.cpp) and the
// fuzz target (fuzz/fuzz_quant_config.cpp) share it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "dptq/plan.hpp"

namespace dptq {

inline constexpr const char* kQuantMethods[] = {"rtn", "gptq", "quarot-rtn", "quarot-gptq"};
bool is_quant_method(const std::string& method);
std::string quant_method_list();  // "rtn, gptq, quarot-rtn, quarot-gptq"

struct QuantConfig {
  std::string version;        // "1.0"
  std::string method;         // one of kQuantMethods
  std::string model_name;     // may be empty
  std::string fingerprint;
  bool act_quantized = true;  // activations.quantized
  Plan plan;
  struct Online {             // rotations.online.<key>
    std::string kind;
    uint64_t seed = 0;
  };
  std::map<std::string, Online> online;
};

// Parses quant_config.json text. Every problem (not JSON, wrong format or major version, unknown
// method, a field of the wrong type, an invalid embedded plan) is an Error(Format / Version)
// naming `file`.
QuantConfig parse_quant_config(std::string_view text, const std::string& file);

}  // namespace dptq
