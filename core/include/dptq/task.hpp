// dptq/task.hpp — progress reporting and cancellation for long work (calibration, evaluation,
// export). Long functions take a `Progress&`; they update it and poll cancelled(). Front ends read
// it from another thread: the studio draws a progress bar from snapshot(), the CLI prints to stderr.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace dptq {

class Progress {
 public:
  struct Snapshot {
    int64_t done = 0, total = 0;
    std::string stage;  // "tokenizing", "window 3/140", ...
  };
  void set_total(int64_t total) { total_.store(total); }
  void set_done(int64_t done) { done_.store(done); notify(); }
  void set_stage(std::string stage) {
    { std::lock_guard lock(mu_); stage_ = std::move(stage); }
    notify();
  }
  Snapshot snapshot() const {
    std::lock_guard lock(mu_);
    return {done_.load(), total_.load(), stage_};
  }
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  // Throws Error(Cancelled) when cancel() was called; long loops call it once per step.
  void throw_if_cancelled() const;
  // Optional observer called on every update (the CLI's stderr printer). Set before work starts.
  std::function<void(const Progress&)> on_update;

 private:
  void notify() { if (on_update) on_update(*this); }
  std::atomic<int64_t> done_{0}, total_{0};
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mu_;
  std::string stage_;
};

}  // namespace dptq
