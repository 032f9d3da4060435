// `dptq trace-upgrade` (cli/commands.hpp) and the output-path check shared by the writers.
#include <cstdio>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "dptq/error.hpp"
#include "dptq/trace.hpp"

namespace dptq_cli {

void check_output_file(const std::string& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(out);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec))
    throw dptq::Error(dptq::ErrorKind::Io, out,
                      "cannot write: folder " + dir.string() + " does not exist or is not a folder");
  if (fs::is_directory(p, ec)) throw dptq::Error(dptq::ErrorKind::Io, out, "cannot write: is a folder");
}

int cmd_trace_upgrade(const std::string& in, const std::string& out, double timeout_s, bool as_json) {
  check_output_file(out);
  if (!(timeout_s > 0))
    throw dptq::Error(dptq::ErrorKind::InvalidArgument, "", "--timeout must be positive");
  // HDF5 1.10 can crash or loop forever on a corrupt global heap, which is where format 1.x keeps
  // its strings: read_legacy_trace reads in a child process killed after timeout_s.
  const dptq::Trace t = dptq::read_legacy_trace(in, timeout_s);
  dptq::write_trace(t, out);
  const std::string version = std::to_string(dptq::kTraceVersionMajor) + "." + std::to_string(dptq::kTraceVersionMinor);
  if (as_json)
    std::printf("%s\n", nlohmann::json{{"in", in}, {"out", out}, {"version", version}}.dump().c_str());
  else
    std::printf("wrote %s (trace format %s)\n", out.c_str(), version.c_str());
  return 0;
}

}  // namespace dptq_cli
