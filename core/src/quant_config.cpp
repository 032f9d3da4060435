// quant_config.json of a quantized checkpoint: torch-free parsing and validation.
#include "dptq/quant_config.hpp"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <nlohmann/json.hpp>

#include "dptq/error.hpp"

namespace dptq {

namespace {
constexpr const char* kCheckpointFormat = "dptq-quantized";
constexpr int kCheckpointMajor = 1;
}  // namespace

bool is_quant_method(const std::string& method) {
  return std::any_of(std::begin(kQuantMethods), std::end(kQuantMethods), [&](const char* m) { return method == m; });
}

std::string quant_method_list() {
  std::string s;
  for (const char* m : kQuantMethods) s += (s.empty() ? "" : ", ") + std::string(m);
  return s;
}

QuantConfig parse_quant_config(std::string_view text, const std::string& file) {
  using json = nlohmann::json;
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception&) {
    throw Error(ErrorKind::Format, file, "not valid JSON (truncated or corrupt?)");
  }
  QuantConfig q;
  try {
    if (!j.is_object() || !j.contains("format") || !j["format"].is_string() || j["format"].get<std::string>() != kCheckpointFormat)
      throw Error(ErrorKind::Format, file, std::string("not a dptq quantized checkpoint (format is not \"") + kCheckpointFormat + "\")");
    q.version = j.contains("version") && j["version"].is_string() ? j["version"].get<std::string>() : "";
    int major = -1;
    if (std::sscanf(q.version.c_str(), "%d.", &major) != 1) throw Error(ErrorKind::Format, file, "missing or malformed \"version\"");
    if (major != kCheckpointMajor)
      throw Error(ErrorKind::Version, file, "unsupported checkpoint version " + q.version + " (this build reads " +
                  std::to_string(kCheckpointMajor) + ".x)");
    q.method = j.value("method", std::string());
    if (!is_quant_method(q.method))
      throw Error(ErrorKind::Format, file, "unknown method \"" + q.method + "\" (known: " + quant_method_list() + ")");
    if (!j.contains("plan") || !j["plan"].is_object()) throw Error(ErrorKind::Format, file, "missing \"plan\"");
    q.plan = plan_from_json(j["plan"].dump(), file + " (plan)");
    if (!j.contains("model") || !j["model"].is_object() || !j["model"].contains("fingerprint") ||
        !j["model"]["fingerprint"].is_string())
      throw Error(ErrorKind::Format, file, "missing \"model.fingerprint\"");
    q.fingerprint = j["model"]["fingerprint"].get<std::string>();
    q.model_name = j["model"].value("name", std::string());
    if (j.contains("activations") && j["activations"].is_object()) q.act_quantized = j["activations"].value("quantized", true);
    if (j.contains("rotations") && j["rotations"].is_object()) {
      const json online = j["rotations"].value("online", json::object());
      if (!online.is_object()) throw Error(ErrorKind::Format, file, "\"rotations.online\" is not an object");
      for (const auto& [key, v] : online.items()) {
        if (!v.is_object()) continue;
        q.online[key] = {v.value("kind", std::string()), v.value("seed", uint64_t(0))};
      }
    }
  } catch (const json::exception& e) {
    throw Error(ErrorKind::Format, file, std::string("malformed field: ") + e.what());
  }
  return q;
}

}  // namespace dptq
