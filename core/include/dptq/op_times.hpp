// dptq/op_times.hpp — where a forward's time goes (`dptq ppl --profile-ops`, bench_forward
// --profile-ops): wall time per named operation, summed over calls. Torch-free. Off by default;
// while off, a timed section costs one branch. Not thread-safe: enable it around one forward
// loop at a time (the forward itself is single-threaded at this level; ATen parallelizes inside).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace dptq {

struct OpTimes {
  struct Row {
    std::string op;
    double seconds = 0;
    int64_t calls = 0;
  };
  static bool enabled();
  static void enable(bool on);  // also clears the rows
  static void add(const char* op, double seconds);
  static std::vector<Row> rows();  // in the order the ops were first seen
  // A human table (op, seconds, share of the total, calls), one line per op.
  static std::string table();
};

// Times the enclosing scope as `op` when OpTimes is enabled.
class OpTimer {
 public:
  explicit OpTimer(const char* op) : op_(OpTimes::enabled() ? op : nullptr) {
    if (op_) t0_ = std::chrono::steady_clock::now();
  }
  ~OpTimer() {
    if (op_) OpTimes::add(op_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  const char* op_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace dptq
