// cli/commands.hpp — `dptq` subcommands that live outside main.cpp (issue 12: measured
// sensitivity and the proxy screen). main.cpp registers them and dispatches; errors are
// dptq::Error, turned into one line and exit code 2 by main.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <string>

#include "dptq/task.hpp"

namespace dptq_cli {

// The progress printer every subcommand uses (main.cpp): one line per finished step on stderr
// (one rewritten line on a terminal), with the time left from the pace of the current count.
std::function<void(const dptq::Progress&)> stderr_progress(std::string label);

// Adds `dptq sensitivity MODEL --method M --calib FILE|builtin [--windows N --seqlen S]
// [--sequential] [--blocks-only] --out TRACE.h5` to `app` (its options live in static storage);
// `as_json` is the shared --json flag. Returns the subcommand: run it when `*sub` after parsing.
CLI::App* add_sensitivity_command(CLI::App& app, bool& as_json);
int run_sensitivity_command(bool as_json);

// `dptq report TRACE --proxies [--gain nll|kl] [--permutations N] [--json]`: Spearman / Kendall
// of every per-block trace metric against the trace's measured gain, with permutation p-values.
int cmd_report_proxies(const std::string& trace_path, const std::string& gain_metric, int64_t permutations,
                       bool as_json);

// Exit code for bad input (main.cpp's kUserError).
inline constexpr int kUserError = 2;

// Throws a one-line dptq::Error when `out` cannot be a file: its folder is missing, or it is a folder.
void check_output_file(const std::string& out);

// `dptq trace-upgrade IN --out OUT [--timeout S]`: reads a format 1.x trace (variable-length
// strings) in a child process that is killed after `timeout_s`, and writes it in the current format.
int cmd_trace_upgrade(const std::string& in, const std::string& out, double timeout_s, bool as_json);

}  // namespace dptq_cli
