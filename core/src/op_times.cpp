// Wall time per named forward operation (dptq/op_times.hpp): `dptq ppl --profile-ops`,
// bench_forward --profile-ops.
#include "dptq/op_times.hpp"

#include <cstdio>
#include <map>
#include <mutex>

namespace dptq {

namespace {
struct OpTable {
  bool on = false;
  std::vector<OpTimes::Row> rows;
  std::map<std::string, size_t> index;
  std::mutex mu;
};
OpTable& op_table() {
  static OpTable t;
  return t;
}
}  // namespace

bool OpTimes::enabled() { return op_table().on; }

void OpTimes::enable(bool on) {
  OpTable& t = op_table();
  std::lock_guard<std::mutex> lock(t.mu);
  t.on = on;
  t.rows.clear();
  t.index.clear();
}

void OpTimes::add(const char* op, double seconds) {
  OpTable& t = op_table();
  std::lock_guard<std::mutex> lock(t.mu);
  auto [it, fresh] = t.index.emplace(op, t.rows.size());
  if (fresh) t.rows.push_back({op, 0, 0});
  t.rows[it->second].seconds += seconds;
  t.rows[it->second].calls += 1;
}

std::vector<OpTimes::Row> OpTimes::rows() {
  OpTable& t = op_table();
  std::lock_guard<std::mutex> lock(t.mu);
  return t.rows;
}

std::string OpTimes::table() {
  const std::vector<Row> rs = rows();
  double total = 0;
  for (const Row& r : rs) total += r.seconds;
  std::string out = "op                       seconds   share    calls\n";
  char line[160];
  for (const Row& r : rs) {
    std::snprintf(line, sizeof line, "%-22s %9.3f  %5.1f%%  %7lld\n", r.op.c_str(), r.seconds,
                  total > 0 ? 100.0 * r.seconds / total : 0.0, (long long)r.calls);
    out += line;
  }
  std::snprintf(line, sizeof line, "%-22s %9.3f  100.0%%\n", "total (timed ops)", total);
  return out + line;
}

}  // namespace dptq
