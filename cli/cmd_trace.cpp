// `dptq trace-upgrade` (cli/commands.hpp) and the output-path check shared by the writers.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "dptq/atomic_file.hpp"
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
  // its strings (docs/trace-format.md). The read runs in a child process so that neither takes
  // this process down; the child prints its own one-line error.
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw dptq::Error(dptq::ErrorKind::Io, in, std::string("cannot fork: ") + std::strerror(errno));
  if (pid == 0) {
    int rc = 0;
    try {
      const dptq::Trace t = dptq::read_legacy_trace(in);
      dptq::write_trace(t, out);
    } catch (const dptq::Error& e) {
      std::fprintf(stderr, "dptq: error: %s\n", e.what());
      rc = kUserError;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dptq: internal error: %s\n", e.what());
      rc = 1;
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  const auto start = std::chrono::steady_clock::now();
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) throw dptq::Error(dptq::ErrorKind::Io, in, "lost the reading process");
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      dptq::remove_stale_temps(out);
      throw dptq::Error(dptq::ErrorKind::Format, in,
                        "HDF5 did not finish reading the file's strings within " +
                            std::to_string(static_cast<int>(timeout_s)) + " s (a corrupt global heap?); not converted");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (WIFSIGNALED(status)) {
    dptq::remove_stale_temps(out);
    throw dptq::Error(dptq::ErrorKind::Format, in,
                      std::string("HDF5 crashed (") + strsignal(WTERMSIG(status)) +
                          ") reading the file's strings (a corrupt global heap?); not converted");
  }
  const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  if (rc != 0) return rc;
  const std::string version = std::to_string(dptq::kTraceVersionMajor) + "." + std::to_string(dptq::kTraceVersionMinor);
  if (as_json)
    std::printf("%s\n", nlohmann::json{{"in", in}, {"out", out}, {"version", version}}.dump().c_str());
  else
    std::printf("wrote %s (trace format %s)\n", out.c_str(), version.c_str());
  return 0;
}

}  // namespace dptq_cli
