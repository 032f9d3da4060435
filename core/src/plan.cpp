// Precision plans: policies, validation, JSON I/O (dptq/plan.hpp, docs/plan-format.md).
// Torch-free and HDF5-free: only the in-memory Trace is used.
#include "dptq/plan.hpp"

#include "dptq/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "dptq/error.hpp"

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace dptq {

int64_t Plan::n_selected() const {
  return std::count_if(blocks.begin(), blocks.end(), [](const PlanBlock& b) { return b.selected; });
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// Small helpers

std::string errno_text() {
  return std::strerror(errno);
}

template <size_t N>
bool is_one_of(const std::string& s, const char* const (&names)[N]) {
  return std::any_of(std::begin(names), std::end(names), [&](const char* n) { return s == n; });
}

template <size_t N>
std::string join_names(const char* const (&names)[N]) {
  std::string out;
  for (const char* n : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

// A number for a reason / summary line: 3 significant digits, integers up to 9999 in full.
std::string num(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  if (std::fabs(x) >= 1000)
    std::snprintf(buf, sizeof buf, "%.0f", x);
  else
    std::snprintf(buf, sizeof buf, "%.3g", x);
  return buf;
}

std::string db(double x) {
  if (!std::isfinite(x)) return num(x) + " dB";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f dB", x);
  return buf;
}

std::string fp12(const std::string& fp) {
  return (fp.empty() ? std::string("(none)") : fp.substr(0, 12)) + "\xE2\x80\xA6";  // "…"
}


// Three-way comparisons that put NaN last (NaN = no tokens measured: never preferred).
int cmp_desc(double a, double b) {
  const bool na = std::isnan(a), nb = std::isnan(b);
  if (na || nb) return na == nb ? 0 : (na ? 1 : -1);
  return a > b ? -1 : (a < b ? 1 : 0);
}
int cmp_asc(double a, double b) {
  const bool na = std::isnan(a), nb = std::isnan(b);
  if (na || nb) return na == nb ? 0 : (na ? 1 : -1);
  return a < b ? -1 : (a > b ? 1 : 0);
}

bool is_boundary(const PlanBlock& b) {
  return b.emergence || b.disappearance;
}

std::string boundary_text(const PlanBlock& b) {
  if (b.emergence && b.disappearance) return "emergence and disappearance boundary";
  return b.emergence ? "emergence boundary" : "disappearance boundary";
}

std::string rank_text(int rank) {
  return " (rank " + std::to_string(rank) + ")";
}

std::string plural_blocks(int64_t n) {
  return n == 1 ? std::string("block") : std::to_string(n) + " blocks";
}

// Uniform integer in [0, n), n >= 1, from raw 64-bit draws: rejection of the top 2^64 mod n
// values, then modulo. Spelled out (not std::uniform_int_distribution, whose algorithm differs
// between standard libraries) so a seed selects the same blocks everywhere.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t rem = (UINT64_MAX % n + 1) % n;  // 2^64 mod n
  uint64_t r;
  do r = rng();
  while (rem != 0 && r > UINT64_MAX - rem);
  return r % n;
}

// ---------------------------------------------------------------------------------------------
// Policies: each returns the selected block indices in rank order and may set scores / reasons.

using Order = std::vector<int64_t>;

Order rank_dynamicptq_jr(std::vector<PlanBlock>& blocks, const PlanOptions& o) {
  const int64_t L = static_cast<int64_t>(blocks.size());
  Order order(static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i) order[size_t(i)] = i;
  auto before = [&](int64_t i, int64_t j) {
    const PlanBlock &a = blocks[size_t(i)], &b = blocks[size_t(j)];
    if (is_boundary(a) != is_boundary(b)) return is_boundary(a);
    if (int c = cmp_desc(a.jump_ratio_p99, b.jump_ratio_p99)) return c < 0;
    if (int c = cmp_asc(a.hsnr4_p1_db, b.hsnr4_p1_db)) return c < 0;
    return i < j;
  };
  std::sort(order.begin(), order.end(), before);
  for (PlanBlock& b : blocks) b.score = b.jump_ratio_p99;

  const bool threshold = !std::isnan(o.jr_threshold);
  Order chosen;
  if (threshold) {
    // Boundaries come first in `order` and JR p99 descends after them: a prefix.
    for (int64_t i : order) {
      const PlanBlock& b = blocks[size_t(i)];
      if (is_boundary(b) || b.jump_ratio_p99 >= o.jr_threshold) chosen.push_back(i);
    }
  } else {
    chosen.assign(order.begin(), order.begin() + o.budget);
  }

  for (size_t r = 0; r < chosen.size(); ++r) {
    PlanBlock& b = blocks[size_t(chosen[r])];
    std::string why;
    if (is_boundary(b)) why = boundary_text(b) + "; ";
    why += "JR p99 " + num(b.jump_ratio_p99);
    if (threshold && !is_boundary(b)) why += " >= " + num(o.jr_threshold);
    // Say when HSNR decided: another candidate of the same group has the same JR p99.
    const bool tie = std::any_of(blocks.begin(), blocks.end(), [&](const PlanBlock& other) {
      return other.index != b.index && is_boundary(other) == is_boundary(b) &&
             cmp_desc(other.jump_ratio_p99, b.jump_ratio_p99) == 0;
    });
    if (tie) why += ", tie broken by HSNR4 p1 " + db(b.hsnr4_p1_db);
    b.reason = why + rank_text(int(r) + 1);
  }
  return chosen;
}

Order rank_hsnr(std::vector<PlanBlock>& blocks, const PlanOptions& o) {
  const int64_t L = static_cast<int64_t>(blocks.size());
  Order order(static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i) order[size_t(i)] = i;
  std::sort(order.begin(), order.end(), [&](int64_t i, int64_t j) {
    const PlanBlock &a = blocks[size_t(i)], &b = blocks[size_t(j)];
    if (int c = cmp_asc(a.hsnr4_p1_db, b.hsnr4_p1_db)) return c < 0;
    if (int c = cmp_desc(a.jump_ratio_p99, b.jump_ratio_p99)) return c < 0;
    return i < j;
  });
  for (PlanBlock& b : blocks) b.score = b.hsnr4_p1_db;
  Order chosen(order.begin(), order.begin() + o.budget);
  for (size_t r = 0; r < chosen.size(); ++r) {
    PlanBlock& b = blocks[size_t(chosen[r])];
    std::string why = "HSNR4 p1 " + db(b.hsnr4_p1_db);
    const bool tie = std::any_of(blocks.begin(), blocks.end(), [&](const PlanBlock& other) {
      return other.index != b.index && cmp_asc(other.hsnr4_p1_db, b.hsnr4_p1_db) == 0;
    });
    if (tie) why += ", tie broken by JR p99 " + num(b.jump_ratio_p99);
    b.reason = why + rank_text(int(r) + 1);
  }
  return chosen;
}

Order rank_first_last(std::vector<PlanBlock>& blocks, const PlanOptions& o) {
  const int64_t L = static_cast<int64_t>(blocks.size());
  const int64_t k = o.budget, n_first = (k + 1) / 2, n_last = k / 2;
  // Rank order 0, L-1, 1, L-2, ...: the set for budget k is a prefix, so budgets nest.
  Order chosen;
  for (int64_t r = 0; r < k; ++r) {
    const bool front = r % 2 == 0;
    const int64_t i = front ? r / 2 : L - 1 - r / 2;
    chosen.push_back(i);
    blocks[size_t(i)].reason =
        std::string("first-last heuristic: among the ") +
        (front ? "first " + plural_blocks(n_first) : "last " + plural_blocks(n_last)) +
        rank_text(int(r) + 1);
  }
  return chosen;
}

Order rank_manual(std::vector<PlanBlock>& blocks, const PlanOptions& o) {
  Order chosen = o.manual_blocks;
  for (size_t r = 0; r < chosen.size(); ++r)
    blocks[size_t(chosen[r])].reason = "chosen by hand" + rank_text(int(r) + 1);
  return chosen;
}

Order rank_random(std::vector<PlanBlock>& blocks, const PlanOptions& o) {
  const int64_t L = static_cast<int64_t>(blocks.size());
  Order perm(static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i) perm[size_t(i)] = i;
  std::mt19937_64 rng(o.seed);
  // Partial Fisher-Yates: the first k entries are a uniform k-subset, in draw order.
  for (int64_t i = 0; i < o.budget; ++i) {
    const int64_t j = i + static_cast<int64_t>(uniform_below(rng, uint64_t(L - i)));
    std::swap(perm[size_t(i)], perm[size_t(j)]);
  }
  Order chosen(perm.begin(), perm.begin() + o.budget);
  for (size_t r = 0; r < chosen.size(); ++r)
    blocks[size_t(chosen[r])].reason =
        "random choice, seed " + std::to_string(o.seed) + rank_text(int(r) + 1);
  return chosen;
}

std::vector<double> sensitivity_gain_of(const Trace& t) {
  std::vector<double> g;
  for (const SensitivityEntry& e : t.sensitivity.block) g.push_back(e.nll_gain);
  return g;
}

// Blocks by `score` descending (NaN last), ties by lower index; top `budget`. `what` names the
// score in the reasons ("hsnr-mlp-max score 0.0101", "measured NLL gain 0.034").
Order rank_by_score(std::vector<PlanBlock>& blocks, const std::vector<double>& score, const std::string& what,
                    int64_t budget) {
  const int64_t L = static_cast<int64_t>(blocks.size());
  Order order(static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i) order[size_t(i)] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) {
    return cmp_desc(score[size_t(i)], score[size_t(j)]) < 0;
  });
  for (int64_t l = 0; l < L; ++l) blocks[size_t(l)].score = score[size_t(l)];
  Order chosen(order.begin(), order.begin() + budget);
  for (size_t r = 0; r < chosen.size(); ++r)
    blocks[size_t(chosen[r])].reason = what + " " + num(score[size_t(chosen[r])]) + rank_text(int(r) + 1);
  return chosen;
}

// Multiply-accumulates per token of the linear layers behind each site of block l (plan_cost's
// shapes): qkv d·(o + kv), o o·d, gate_up 2·d·ff, down ff·d.
std::array<double, 4> site_macs(const Trace& t, int64_t l) {
  auto width = [&](Site s) { return double(t.sites[size_t(l)][size_t(s)].channel_absmax.size()); };
  const double d = width(Site::Qkv), o = width(Site::O), ff = width(Site::Down), kv = width(Site::K) + width(Site::V);
  if (d <= 0 || o <= 0 || ff <= 0 || kv <= 0)
    throw Error(ErrorKind::InvalidArgument, "", "the trace has no site widths for block " + std::to_string(l));
  return {d * (o + kv), o * d, 2 * d * ff, ff * d};
}

// Site-level plan: sites by value per MAC, highest first, each taken while the 8-bit MAC share
// stays within `share`. A block's rank is the order of its first chosen site. Sets bits directly.
void choose_sites(std::vector<PlanBlock>& blocks, const Trace& t, const std::vector<std::array<double, 4>>& value,
                  const std::string& what, double share) {
  const int64_t L = static_cast<int64_t>(blocks.size());
  struct Cand { int64_t l; int s; double v, macs; };
  std::vector<Cand> c;
  double total = 0;
  for (int64_t l = 0; l < L; ++l) {
    const auto m = site_macs(t, l);
    for (int s = 0; s < 4; ++s) {
      total += m[size_t(s)];
      c.push_back({l, s, value[size_t(l)][size_t(s)], m[size_t(s)]});
    }
  }
  std::stable_sort(c.begin(), c.end(), [](const Cand& a, const Cand& b) {
    return cmp_desc(a.v / a.macs, b.v / b.macs) < 0;
  });
  static const char* names[4] = {"qkv", "o", "gate_up", "down"};
  double used = 0;
  int rank = 0;
  for (const Cand& x : c) {
    if (!std::isfinite(x.v) || x.v <= 0) break;  // nothing left that is predicted to help
    if ((used + x.macs) / total > share + 1e-12) continue;
    used += x.macs;
    PlanBlock& b = blocks[size_t(x.l)];
    int* field[4] = {&b.bits.qkv, &b.bits.o, &b.bits.gate_up, &b.bits.down};
    *field[x.s] = 8;
    if (!b.selected) {
      b.selected = true;
      b.rank = ++rank;
      b.reason = "sites";
    }
    b.reason += std::string(" ") + names[x.s] + " (" + what + " " + num(x.v) + ")";
  }
  for (PlanBlock& b : blocks)
    if (b.selected) b.reason += rank_text(b.rank);
}

// ---------------------------------------------------------------------------------------------
// Invariants shared by validate_plan (InvalidArgument) and read_plan (Format): the first problem
// as one line, or "" when there is none.

std::string bits_problem(const std::string& field, int bits, const char* what) {
  if (bits == 4 || bits == 8) return "";
  return field + " is " + std::to_string(bits) + "; " + what + " bits must be 4 or 8";
}

std::string clip_problem(const std::string& field, double clip) {
  if (clip > 0 && clip <= 1) return "";
  return field + " is " + num(clip) + "; a clip ratio must be in (0, 1]";
}

std::string plan_problem(const Plan& p) {
  if (p.format != kPlanFormat)
    return "format is \"" + p.format + "\", expected \"" + kPlanFormat + "\"";
  if (p.version_major != kPlanVersionMajor)
    return "unsupported plan version " + std::to_string(p.version_major) + "." +
           std::to_string(p.version_minor) + " (this build reads " +
           std::to_string(kPlanVersionMajor) + ".x)";
  if (!is_one_of(p.base_method, kBaseMethods))
    return "unknown base method \"" + p.base_method + "\" (known: " + join_names(kBaseMethods) +
           ")";
  const QuantizerSettings& q = p.quantizer;
  for (const std::string& s : {bits_problem("quantizer.weight_bits", q.weight_bits, "weight"),
                               bits_problem("quantizer.act_bits", q.act_bits, "activation"),
                               bits_problem("quantizer.kv_bits", q.kv_bits, "KV cache"),
                               clip_problem("quantizer.act_clip_4bit", q.act_clip_4bit),
                               clip_problem("quantizer.act_clip_8bit", q.act_clip_8bit),
                               clip_problem("quantizer.kv_clip", q.kv_clip)})
    if (!s.empty()) return s;
  if (q.kv_group_size < 0)
    return "quantizer.kv_group_size is " + std::to_string(q.kv_group_size) +
           "; it must be >= 0 (0 = min(128, head_dim))";

  const int64_t L = p.n_layers();
  if (!is_one_of(p.policy.name, kPlanPolicies))
    return "unknown policy \"" + p.policy.name + "\" (known: " + join_names(kPlanPolicies) + ")";
  if (p.policy.budget < -1 || p.policy.budget > L)
    return "policy.budget is " + std::to_string(p.policy.budget) + ", outside 0.." +
           std::to_string(L) + " (or -1 = unset)";
  for (int64_t m : p.policy.manual_blocks)
    if (m < 0 || m >= L)
      return "policy.manual_blocks lists block " + std::to_string(m) + ", outside 0.." +
             std::to_string(L - 1);
  if (!p.trace.model_fingerprint.empty() && p.trace.model_fingerprint != p.model_fingerprint)
    return "the trace was recorded for model " + fp12(p.trace.model_fingerprint) +
           ", but the plan names model " + fp12(p.model_fingerprint);

  if (L == 0) return "the plan has no blocks";
  std::vector<int> rank_seen(size_t(L) + 1, 0);
  int64_t n_selected = 0;
  for (int64_t l = 0; l < L; ++l) {
    const PlanBlock& b = p.blocks[size_t(l)];
    const std::string where = "block " + std::to_string(l);
    if (b.index != l)
      return "blocks[" + std::to_string(l) + "] has index " + std::to_string(b.index) +
             "; blocks must be listed in order 0.." + std::to_string(L - 1);
    for (const std::string& s :
         {bits_problem(where + ": bits.qkv", b.bits.qkv, "activation"),
          bits_problem(where + ": bits.o", b.bits.o, "activation"),
          bits_problem(where + ": bits.gate_up", b.bits.gate_up, "activation"),
          bits_problem(where + ": bits.down", b.bits.down, "activation")})
      if (!s.empty()) return s;
    if (b.selected != (b.rank > 0) || b.rank < 0 || b.rank > L)
      return where + ": " + (b.selected ? "selected" : "not selected") + " but rank is " +
             std::to_string(b.rank) + " (a selected block has rank 1.." + std::to_string(L) +
             ", an unselected one 0)";
    if (b.selected) {
      ++n_selected;
      if (rank_seen[size_t(b.rank)]++)
        return where + ": rank " + std::to_string(b.rank) + " is given to more than one block";
    }
    if (b.reason.find_first_of("\r\n") != std::string::npos)
      return where + ": reason must be one line";
  }
  for (int64_t r = 1; r <= n_selected; ++r)
    if (!rank_seen[size_t(r)])
      return "ranks of the " + std::to_string(n_selected) + " selected blocks must be 1.." +
             std::to_string(n_selected) + " (rank " + std::to_string(r) + " is missing)";
  return "";
}

// ---------------------------------------------------------------------------------------------
// JSON

// Non-finite metrics (HSNR of an exactly representable token is +inf, a block without tokens
// gives NaN) are written as the strings "inf", "-inf", "nan": JSON has no such numbers.
ojson number_json(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return x;
}

ojson to_json(const Plan& p) {
  const QuantizerSettings& q = p.quantizer;
  ojson j;
  j["format"] = kPlanFormat;
  j["version"] = std::to_string(kPlanVersionMajor) + "." + std::to_string(kPlanVersionMinor);
  j["created_utc"] = p.created_utc;
  j["model_fingerprint"] = p.model_fingerprint;
  j["model_name"] = p.model_name;
  j["n_layers"] = p.n_layers();
  j["base_method"] = p.base_method;
  j["quantizer"] = {{"weight_bits", q.weight_bits},
                    {"weight_symmetric", q.weight_symmetric},
                    {"act_bits", q.act_bits},
                    {"act_asymmetric", q.act_asymmetric},
                    {"act_clip_4bit", q.act_clip_4bit},
                    {"act_clip_8bit", q.act_clip_8bit},
                    {"kv_bits", q.kv_bits},
                    {"kv_group_size", q.kv_group_size},
                    {"kv_clip", q.kv_clip}};
  ojson pol;
  pol["name"] = p.policy.name;
  pol["budget"] = p.policy.budget >= 0 ? ojson(p.policy.budget) : ojson(nullptr);
  pol["jr_threshold"] =
      std::isnan(p.policy.jr_threshold) ? ojson(nullptr) : number_json(p.policy.jr_threshold);
  if (!std::isnan(p.policy.budget_macs)) pol["budget_macs"] = number_json(p.policy.budget_macs);  // 1.1
  pol["seed"] = p.policy.seed;
  pol["manual_blocks"] = p.policy.manual_blocks;
  j["policy"] = pol;
  j["trace"] = {{"path", p.trace.path},
                {"model_fingerprint", p.trace.model_fingerprint},
                {"created_utc", p.trace.created_utc},
                {"tokens", p.trace.tokens}};
  ojson blocks = ojson::array();
  for (const PlanBlock& b : p.blocks) {
    ojson jb;
    jb["index"] = b.index;
    jb["bits"] = {
        {"qkv", b.bits.qkv}, {"o", b.bits.o}, {"gate_up", b.bits.gate_up}, {"down", b.bits.down}};
    jb["selected"] = b.selected;
    jb["rank"] = b.rank;
    jb["reason"] = b.reason;
    jb["jump_ratio_p99"] = number_json(b.jump_ratio_p99);
    jb["jump_ratio_inf_p99"] = number_json(b.jump_ratio_inf_p99);
    jb["hsnr4_p1_db"] = number_json(b.hsnr4_p1_db);
    jb["hsnr4_mean_db"] = number_json(b.hsnr4_mean_db);
    jb["emergence"] = b.emergence;
    jb["disappearance"] = b.disappearance;
    jb["score"] = number_json(b.score);
    blocks.push_back(std::move(jb));
  }
  j["blocks"] = std::move(blocks);
  return j;
}

const char* type_name(const ojson& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "boolean";
  if (v.is_number_integer()) return "integer";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  if (v.is_array()) return "array";
  return "object";
}

// Field access with one-line Format errors that name the field ("blocks[3].bits.qkv").
class JsonReader {
 public:
  explicit JsonReader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void bad(const std::string& why) const {
    throw Error(ErrorKind::Format, file_, why);
  }

  static std::string join(const std::string& prefix, const std::string& key) {
    return prefix.empty() ? key : prefix + "." + key;
  }

  const ojson& field(const ojson& obj, const std::string& prefix, const char* key) const {
    const auto it = obj.find(key);
    if (it == obj.end()) bad("missing field \"" + join(prefix, key) + "\"");
    return *it;
  }
  [[noreturn]] void wrong_type(const std::string& name, const ojson& v, const char* want) const {
    bad("field \"" + name + "\" must be " + want + " (got " + type_name(v) + ")");
  }
  const ojson& object(const ojson& obj, const std::string& prefix, const char* key) const {
    const ojson& v = field(obj, prefix, key);
    if (!v.is_object()) wrong_type(join(prefix, key), v, "an object");
    return v;
  }
  const ojson& array(const ojson& obj, const std::string& prefix, const char* key) const {
    const ojson& v = field(obj, prefix, key);
    if (!v.is_array()) wrong_type(join(prefix, key), v, "an array");
    return v;
  }
  std::string string(const ojson& obj, const std::string& prefix, const char* key) const {
    const ojson& v = field(obj, prefix, key);
    if (!v.is_string()) wrong_type(join(prefix, key), v, "a string");
    return v.get<std::string>();
  }
  bool boolean(const ojson& obj, const std::string& prefix, const char* key) const {
    const ojson& v = field(obj, prefix, key);
    if (!v.is_boolean()) wrong_type(join(prefix, key), v, "true or false");
    return v.get<bool>();
  }
  int64_t integer(const ojson& v, const std::string& name) const {
    if (!v.is_number_integer()) wrong_type(name, v, "an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
      bad("field \"" + name + "\" is too large");
    return v.get<int64_t>();
  }
  int64_t integer(const ojson& obj, const std::string& prefix, const char* key) const {
    return integer(field(obj, prefix, key), join(prefix, key));
  }
  int small_int(const ojson& obj, const std::string& prefix, const char* key) const {
    const int64_t x = integer(obj, prefix, key);
    if (x < INT32_MIN || x > INT32_MAX) bad("field \"" + join(prefix, key) + "\" is out of range");
    return static_cast<int>(x);
  }
  uint64_t unsigned_int(const ojson& obj, const std::string& prefix, const char* key) const {
    const ojson& v = field(obj, prefix, key);
    if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0))
      wrong_type(join(prefix, key), v, "a non-negative integer");
    return v.get<uint64_t>();
  }
  // A number, or "inf" / "-inf" / "nan" (or null) for the non-finite values.
  double number(const ojson& obj, const std::string& prefix, const char* key) const {
    const ojson& v = field(obj, prefix, key);
    if (v.is_number()) return v.get<double>();
    if (v.is_null()) return kNaN;
    if (v.is_string()) {
      const std::string& s = v.get_ref<const std::string&>();
      if (s == "inf") return std::numeric_limits<double>::infinity();
      if (s == "-inf") return -std::numeric_limits<double>::infinity();
      if (s == "nan") return kNaN;
    }
    wrong_type(join(prefix, key), v, "a number (or \"inf\", \"-inf\", \"nan\")");
  }
  int bits(const ojson& obj, const std::string& prefix, const char* key, const char* what) const {
    const int b = small_int(obj, prefix, key);
    if (const std::string s = bits_problem(join(prefix, key), b, what); !s.empty()) bad(s);
    return b;
  }

 private:
  std::string file_;
};

Plan from_json(const ojson& j, const std::string& file) {
  JsonReader r(file);
  if (!j.is_object())
    r.bad(std::string("not a dptq plan (the file holds a JSON ") + type_name(j) +
          ", not an object)");
  // Format and version first: a file of another major version may differ in everything else.
  const auto fmt = j.find("format");
  if (fmt == j.end() || !fmt->is_string())
    r.bad("not a dptq plan (no \"format\" string; expected \"" + std::string(kPlanFormat) + "\")");
  if (fmt->get<std::string>() != kPlanFormat)
    r.bad("not a dptq plan (format is \"" + fmt->get<std::string>() + "\", expected \"" +
          kPlanFormat + "\")");
  Plan p;
  {
    const std::string v = r.string(j, "", "version");
    int major = -1, minor = -1;
    const char* const end = v.data() + v.size();
    const auto r1 = std::from_chars(v.data(), end, major);
    const char* const dot = r1.ptr;  // a plain pointer: clang < 16 cannot capture structured bindings
    const bool ok = r1.ec == std::errc() && dot != end && *dot == '.' && std::isdigit(uint8_t(v[0])) &&
                    dot + 1 != end && std::isdigit(uint8_t(dot[1])) && [&] {
                      const auto [rest, e2] = std::from_chars(dot + 1, end, minor);
                      return e2 == std::errc() && rest == end;
                    }();
    if (!ok) r.bad("field \"version\" is \"" + v + "\", not \"major.minor\"");
    if (major != kPlanVersionMajor)
      throw Error(ErrorKind::Version, file,
                  "unsupported plan version " + v + " (this build reads " +
                      std::to_string(kPlanVersionMajor) + ".x)");
    p.version_major = major;
    p.version_minor = minor;
  }
  p.created_utc = r.string(j, "", "created_utc");
  p.model_fingerprint = r.string(j, "", "model_fingerprint");
  p.model_name = r.string(j, "", "model_name");
  p.base_method = r.string(j, "", "base_method");
  if (!is_one_of(p.base_method, kBaseMethods))
    r.bad("field \"base_method\" is \"" + p.base_method + "\" (known: " + join_names(kBaseMethods) +
          ")");

  {
    const std::string pre = "quantizer";
    const ojson& q = r.object(j, "", "quantizer");
    QuantizerSettings& s = p.quantizer;
    s.weight_bits = r.bits(q, pre, "weight_bits", "weight");
    s.weight_symmetric = r.boolean(q, pre, "weight_symmetric");
    s.act_bits = r.bits(q, pre, "act_bits", "activation");
    s.act_asymmetric = r.boolean(q, pre, "act_asymmetric");
    s.act_clip_4bit = r.number(q, pre, "act_clip_4bit");
    s.act_clip_8bit = r.number(q, pre, "act_clip_8bit");
    s.kv_bits = r.bits(q, pre, "kv_bits", "KV cache");
    s.kv_group_size = r.integer(q, pre, "kv_group_size");
    s.kv_clip = r.number(q, pre, "kv_clip");
  }
  {
    const std::string pre = "policy";
    const ojson& q = r.object(j, "", "policy");
    p.policy.name = r.string(q, pre, "name");
    // 1.0 files name the first reading "dynamicptq"; since 1.1 that rule is "dynamicptq-jr" and
    // "dynamicptq" ranks by the dynamics score (docs/plan-format.md, Versioning). The blocks and
    // bits of a file never depend on the rule, only the recorded name does.
    if (p.version_minor == 0 && p.policy.name == "dynamicptq") p.policy.name = "dynamicptq-jr";
    if (!is_one_of(p.policy.name, kPlanPolicies))
      r.bad("field \"policy.name\" is \"" + p.policy.name +
            "\" (known: " + join_names(kPlanPolicies) + ")");
    const ojson& budget = r.field(q, pre, "budget");
    p.policy.budget = budget.is_null() ? -1 : r.integer(budget, "policy.budget");
    if (p.policy.budget < 0 && !budget.is_null())
      r.bad("field \"policy.budget\" is " + std::to_string(p.policy.budget) +
            "; it must be >= 0 (null = unset)");
    p.policy.jr_threshold = r.number(q, pre, "jr_threshold");
    if (q.contains("budget_macs")) p.policy.budget_macs = r.number(q, pre, "budget_macs");  // since 1.1
    p.policy.seed = r.unsigned_int(q, pre, "seed");
    const ojson& manual = r.array(q, pre, "manual_blocks");
    for (size_t i = 0; i < manual.size(); ++i)
      p.policy.manual_blocks.push_back(
          r.integer(manual[i], "policy.manual_blocks[" + std::to_string(i) + "]"));
  }
  {
    const std::string pre = "trace";
    const ojson& t = r.object(j, "", "trace");
    p.trace.path = r.string(t, pre, "path");
    p.trace.model_fingerprint = r.string(t, pre, "model_fingerprint");
    p.trace.created_utc = r.string(t, pre, "created_utc");
    p.trace.tokens = r.integer(t, pre, "tokens");
  }

  const int64_t n_layers = r.integer(j, "", "n_layers");
  const ojson& blocks = r.array(j, "", "blocks");
  const int64_t L = static_cast<int64_t>(blocks.size());
  if (L == 0) r.bad("field \"blocks\" is empty; a plan has one entry per decoder block");
  if (n_layers != L)
    r.bad("field \"n_layers\" is " + std::to_string(n_layers) + " but \"blocks\" has " +
          std::to_string(L) + " entries");
  std::vector<PlanBlock> by_index(static_cast<size_t>(L));
  std::vector<bool> seen(size_t(L), false);
  for (int64_t pos = 0; pos < L; ++pos) {
    const std::string pre = "blocks[" + std::to_string(pos) + "]";
    const ojson& jb = blocks[size_t(pos)];
    if (!jb.is_object()) r.wrong_type(pre, jb, "an object");
    PlanBlock b;
    b.index = r.integer(jb, pre, "index");
    if (b.index < 0 || b.index >= L)
      r.bad(pre + ".index is " + std::to_string(b.index) + ", outside 0.." + std::to_string(L - 1) +
            " (the plan has " + std::to_string(L) + " blocks)");
    if (seen[size_t(b.index)])
      r.bad("block index " + std::to_string(b.index) + " appears more than once (" + pre +
            "); every block 0.." + std::to_string(L - 1) + " must appear exactly once");
    seen[size_t(b.index)] = true;
    const ojson& bits = r.object(jb, pre, "bits");
    const std::string bpre = pre + ".bits";
    b.bits.qkv = r.bits(bits, bpre, "qkv", "activation");
    b.bits.o = r.bits(bits, bpre, "o", "activation");
    b.bits.gate_up = r.bits(bits, bpre, "gate_up", "activation");
    b.bits.down = r.bits(bits, bpre, "down", "activation");
    b.selected = r.boolean(jb, pre, "selected");
    b.rank = r.small_int(jb, pre, "rank");
    b.reason = r.string(jb, pre, "reason");
    b.jump_ratio_p99 = r.number(jb, pre, "jump_ratio_p99");
    b.jump_ratio_inf_p99 = r.number(jb, pre, "jump_ratio_inf_p99");
    b.hsnr4_p1_db = r.number(jb, pre, "hsnr4_p1_db");
    b.hsnr4_mean_db = r.number(jb, pre, "hsnr4_mean_db");
    b.emergence = r.boolean(jb, pre, "emergence");
    b.disappearance = r.boolean(jb, pre, "disappearance");
    b.score = r.number(jb, pre, "score");
    by_index[size_t(b.index)] = std::move(b);
  }
  // L entries, each index in range and none twice: every index appears (no "missing" case).
  p.blocks = std::move(by_index);
  if (const std::string problem = plan_problem(p); !problem.empty()) r.bad(problem);
  return p;
}

// For quoting library messages that may echo file bytes: printable ASCII only, at most 240 chars.
std::string one_line(std::string s) {
  for (char& c : s)
    if (uint8_t(c) < 0x20 || uint8_t(c) >= 0x7f) c = '?';
  if (s.size() > 240) s = s.substr(0, 240) + "...";
  return s;
}

// nlohmann's message without its "[json.exception.xxx.nnn] " prefix, made safe for one line.
std::string json_message(const nlohmann::json::exception& e) {
  std::string why = e.what();
  if (const size_t k = why.find("] "); why.rfind("[json.exception", 0) == 0 && k != why.npos)
    why = why.substr(k + 2);
  return one_line(why);
}


}  // namespace

// -------------------------------------------------------------------------------------------------

Plan make_plan(const Trace& trace, const PlanOptions& o) {
  auto bad = [](const std::string& why) { throw Error(ErrorKind::InvalidArgument, "", why); };
  if (!is_one_of(o.policy, kPlanPolicies))
    bad("unknown policy \"" + o.policy + "\" (known: " + join_names(kPlanPolicies) + ")");
  if (o.policy == "oracle")
    bad("policy oracle measures perplexity and needs the model: dptq plan TRACE --policy oracle --model MODEL");
  std::string base = o.base_method;
  if (base.empty()) base = trace.meta.rotation == "quarot" ? "quarot-rtn" : "rtn";
  if (!is_one_of(base, kBaseMethods))
    bad("unknown base method \"" + base + "\" (known: " + join_names(kBaseMethods) + ")");

  const int64_t L = static_cast<int64_t>(trace.blocks.size());
  if (L == 0) bad("the trace has no blocks to plan for");
  const bool has_budget = o.budget >= 0, has_threshold = !std::isnan(o.jr_threshold);
  if (o.budget < -1 || o.budget > L)
    bad("budget " + std::to_string(o.budget) + " is out of range 0.." + std::to_string(L) +
        " (the trace has " + std::to_string(L) + " blocks)");
  if (o.policy != "manual" && !o.manual_blocks.empty())
    bad("a block list is only for policy manual (policy is " + o.policy + ")");
  const bool has_macs = !std::isnan(o.budget_macs);
  if (has_macs && o.policy != "dynamicptq" && o.policy != "measured")
    bad("a MAC budget (site-level plan) is for policies dynamicptq and measured (policy is " + o.policy + ")");
  if (has_macs && !(o.budget_macs > 0 && o.budget_macs <= 1))
    bad("MAC budget " + num(o.budget_macs) + " is outside (0, 1]");
  if (has_macs && has_budget) bad("give a block budget or a MAC budget, not both");
  if (o.policy == "measured" && !trace.has_sensitivity)
    bad("policy measured needs a trace with measured sensitivity (dptq sensitivity MODEL --out TRACE)");
  if (o.policy == "measured" && has_macs && !trace.sensitivity.has_sites)
    bad("a site-level measured plan needs site sensitivities (dptq sensitivity without --blocks-only)");
  if (o.policy == "dynamicptq-jr") {
    if (has_budget && has_threshold)
      bad("policy dynamicptq-jr takes a budget or a JR threshold, not both");
    if (!has_budget && !has_threshold)
      bad("policy dynamicptq-jr needs a budget (number of 8-bit blocks) or a JR threshold");
  } else if (o.policy == "dynamicptq" || o.policy == "measured") {
    if (has_threshold) bad("policy " + o.policy + " takes no JR threshold (only dynamicptq-jr does)");
    if (!has_budget && !has_macs) bad("policy " + o.policy + " needs a budget (number of 8-bit blocks) or a MAC budget");
  } else if (o.policy == "manual") {
    if (has_budget || has_threshold)
      bad("policy manual takes a block list, not a budget or a JR threshold");
    std::vector<bool> seen(size_t(L), false);
    for (int64_t m : o.manual_blocks) {
      if (m < 0 || m >= L)
        bad("manual block " + std::to_string(m) + " is out of range (valid blocks: 0.." +
            std::to_string(L - 1) + ")");
      if (seen[size_t(m)]) bad("manual block " + std::to_string(m) + " is listed twice");
      seen[size_t(m)] = true;
    }
  } else {
    if (has_threshold) bad("policy " + o.policy + " takes no JR threshold (only dynamicptq-jr does)");
    if (!has_budget) bad("policy " + o.policy + " needs a budget (number of 8-bit blocks)");
  }

  Plan p;
  p.model_fingerprint = trace.meta.model_fingerprint;
  p.model_name = trace.meta.model_name;
  p.base_method = base;
  p.quantizer.act_asymmetric = trace.meta.act_asymmetric;
  p.quantizer.act_clip_4bit = trace.meta.act_clip_4bit;
  p.quantizer.act_clip_8bit = trace.meta.act_clip_8bit;
  p.policy.name = o.policy;
  p.policy.budget = o.budget;
  p.policy.jr_threshold = o.jr_threshold;
  p.policy.budget_macs = o.budget_macs;
  p.policy.seed = o.policy == "random" ? o.seed : 0;
  p.policy.manual_blocks = o.manual_blocks;
  p.trace.path = o.trace_path;
  p.trace.model_fingerprint = trace.meta.model_fingerprint;
  p.trace.created_utc = trace.meta.created_utc;
  p.trace.tokens = trace.meta.tokens;
  p.created_utc = utc_now();

  p.blocks.resize(size_t(L));
  for (int64_t l = 0; l < L; ++l) {
    const BlockStats& s = trace.blocks[size_t(l)];
    PlanBlock& b = p.blocks[size_t(l)];
    b.index = l;
    b.jump_ratio_p99 = s.jump_ratio.p99;
    b.jump_ratio_inf_p99 = s.jump_ratio_inf.p99;
    b.hsnr4_p1_db = s.hsnr4_db.p1;
    b.hsnr4_mean_db = s.hsnr4_db.mean;
    b.emergence = s.emergence;
    b.disappearance = s.disappearance;
  }

  if (has_macs) {  // site-level: choose_sites sets bits, selection and ranks itself
    std::vector<std::array<double, 4>> value;
    std::string what;
    if (o.policy == "measured") {
      for (const auto& row : trace.sensitivity.site)
        value.push_back({row[0].nll_gain, row[1].nll_gain, row[2].nll_gain, row[3].nll_gain});
      for (int64_t l = 0; l < L; ++l) p.blocks[size_t(l)].score = trace.sensitivity.block[size_t(l)].nll_gain;
      what = "measured NLL gain";
    } else {
      const std::vector<double> sc = dynamics_score(trace, kDefaultDynamicsScore, &value);
      for (int64_t l = 0; l < L; ++l) p.blocks[size_t(l)].score = sc[size_t(l)];
      what = std::string(kDefaultDynamicsScore);
    }
    choose_sites(p.blocks, trace, value, what, o.budget_macs);
    return p;
  }

  Order chosen;
  if (o.policy == "dynamicptq")
    chosen = rank_by_score(p.blocks, dynamics_score(trace, kDefaultDynamicsScore),
                           std::string(kDefaultDynamicsScore) + " score", o.budget);
  else if (o.policy == "measured")
    chosen = rank_by_score(p.blocks, sensitivity_gain_of(trace), "measured NLL gain", o.budget);
  else if (o.policy == "dynamicptq-jr")
    chosen = rank_dynamicptq_jr(p.blocks, o);
  else if (o.policy == "hsnr")
    chosen = rank_hsnr(p.blocks, o);
  else if (o.policy == "first-last")
    chosen = rank_first_last(p.blocks, o);
  else if (o.policy == "manual")
    chosen = rank_manual(p.blocks, o);
  else
    chosen = rank_random(p.blocks, o);

  for (size_t r = 0; r < chosen.size(); ++r) {
    PlanBlock& b = p.blocks[size_t(chosen[r])];
    b.selected = true;
    b.rank = static_cast<int>(r) + 1;
    b.bits = SiteBits{8, 8, 8, 8};
  }
  return p;
}

void validate_plan(const Plan& plan, const std::string& where) {
  if (const std::string problem = plan_problem(plan); !problem.empty())
    throw Error(ErrorKind::InvalidArgument, where, problem);
}

void write_plan(const Plan& plan, const fs::path& path) {
  const std::string target = path.string();
  validate_plan(plan, target);  // before anything touches the disk
  std::string text;
  try {
    text = to_json(plan).dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {  // e.g. a string that is not UTF-8
    throw Error(ErrorKind::InvalidArgument, target,
                "cannot encode the plan as JSON: " + json_message(e));
  }

  AtomicFile out(path);
  out.write(text.data(), text.size());
  out.commit();
}

std::string plan_to_json(const Plan& plan) {
  validate_plan(plan);
  try {
    return to_json(plan).dump(2);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::InvalidArgument, "", "cannot encode the plan as JSON: " + json_message(e));
  }
}

Plan plan_from_json(const std::string& text, const std::string& where) {
  ojson j;
  try {
    j = ojson::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for "1e999"
    throw Error(ErrorKind::Format, where, "not valid JSON (truncated or corrupt?): " + json_message(e));
  }
  return from_json(j, where);
}

Plan read_plan(const fs::path& path) {
  const std::string file = path.string();
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0)
    throw Error(ErrorKind::Io, file, "cannot open: " + errno_text());
  if (!S_ISREG(st.st_mode)) throw Error(ErrorKind::Io, file, "cannot open: not a regular file");
  // A plan of a 1000-block model is well under 1 MiB; anything far larger is not a plan.
  if (st.st_size > (int64_t{64} << 20))
    throw Error(ErrorKind::Format, file, "not a dptq plan (file is larger than 64 MiB)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::Io, file, "cannot open: " + errno_text());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(ErrorKind::Io, file, "cannot read: " + errno_text());
  return plan_from_json(text, file);
}

void check_plan_matches(const Plan& plan, const std::string& model_fingerprint, int64_t n_layers,
                        const std::string& plan_path) {
  if (plan.model_fingerprint != model_fingerprint)
    throw Error(ErrorKind::InvalidArgument, plan_path,
                "plan was made for model " + fp12(plan.model_fingerprint) + ", not " +
                    fp12(model_fingerprint));
  if (plan.n_layers() != n_layers)
    throw Error(ErrorKind::InvalidArgument, plan_path,
                "plan has " + std::to_string(plan.n_layers()) + " blocks, the model has " +
                    std::to_string(n_layers));
}

std::string plan_summary(const Plan& p) {
  std::ostringstream s;
  s << "plan for " << (p.model_name.empty() ? "(unnamed model)" : p.model_name) << " (model "
    << fp12(p.model_fingerprint) << "), base method " << p.base_method << "\n";
  s << "policy " << p.policy.name;
  if (p.policy.budget >= 0) s << ", budget " << p.policy.budget;
  if (!std::isnan(p.policy.jr_threshold)) s << ", JR threshold " << num(p.policy.jr_threshold);
  if (!std::isnan(p.policy.budget_macs)) s << ", MAC budget " << num(p.policy.budget_macs) << " (site-level)";
  if (p.policy.name == "random") s << ", seed " << p.policy.seed;
  if (p.policy.name == "manual") {
    s << ", blocks";
    for (size_t i = 0; i < p.policy.manual_blocks.size(); ++i)
      s << (i ? "," : " ") << p.policy.manual_blocks[i];
    if (p.policy.manual_blocks.empty()) s << " (none)";
  }
  s << "\n";
  const QuantizerSettings& q = p.quantizer;
  s << "8-bit activations in " << p.n_selected() << " of " << p.n_layers() << " blocks; W"
    << q.weight_bits << "A" << q.act_bits << "KV" << q.kv_bits << " elsewhere\n";
  s << "bits = activation bits at qkv/o/gate_up/down; phase: E = emergence, D = disappearance\n\n";

  char line[256];
  std::snprintf(line, sizeof line, "%5s  %-7s  %-3s  %4s  %7s  %10s  %-5s  %s\n", "block", "bits",
                "sel", "rank", "JR p99", "HSNR4 p1", "phase", "reason");
  s << line;
  for (const PlanBlock& b : p.blocks) {
    const std::string bits = std::to_string(b.bits.qkv) + "/" + std::to_string(b.bits.o) + "/" +
                             std::to_string(b.bits.gate_up) + "/" + std::to_string(b.bits.down);
    const std::string phase = std::string(b.emergence ? "E" : "") + (b.disappearance ? "D" : "");
    const std::string rank = b.rank > 0 ? std::to_string(b.rank) : "-";
    std::snprintf(line, sizeof line, "%5lld  %-7s  %-3s  %4s  %7s  %10s  %-5s  ",
                  static_cast<long long>(b.index), bits.c_str(), b.selected ? "yes" : "",
                  rank.c_str(), num(b.jump_ratio_p99).c_str(), db(b.hsnr4_p1_db).c_str(),
                  phase.c_str());
    std::string row = line + b.reason;
    row.erase(row.find_last_not_of(' ') + 1);
    s << row << "\n";
  }
  return s.str();
}


void set_block_bits(Plan& plan, int64_t block, const SiteBits& bits) {
  const int64_t L = plan.n_layers();
  if (block < 0 || block >= L)
    throw Error(ErrorKind::InvalidArgument, "", "block " + std::to_string(block) +
                " is out of range 0.." + std::to_string(L - 1));
  for (int b : {bits.qkv, bits.o, bits.gate_up, bits.down})
    if (b != 4 && b != 8)
      throw Error(ErrorKind::InvalidArgument, "", "activation bits must be 4 or 8, not " + std::to_string(b));
  PlanBlock& target = plan.blocks[size_t(block)];
  const bool now = bits.qkv == 8 || bits.o == 8 || bits.gate_up == 8 || bits.down == 8;
  target.bits = bits;
  if (now == target.selected) return;  // same selection, new per-site bits

  // " (rank N)" at the end of a reason follows the block's rank.
  auto rerank = [](PlanBlock& b, int rank) {
    const std::string old = rank_text(b.rank);
    if (b.reason.size() >= old.size() && b.reason.compare(b.reason.size() - old.size(), old.size(), old) == 0)
      b.reason.resize(b.reason.size() - old.size());
    b.rank = rank;
    if (rank > 0) b.reason += rank_text(rank);
  };
  if (now) {
    target.selected = true;
    target.reason = "chosen by hand";
    rerank(target, int(plan.n_selected()));
  } else {
    const int gone = target.rank;
    target.selected = false;
    rerank(target, 0);
    target.reason.clear();
    for (PlanBlock& b : plan.blocks)
      if (b.selected && b.rank > gone) rerank(b, b.rank - 1);
  }
  plan.policy = PlanPolicy{};
  plan.policy.name = "manual";
  plan.policy.manual_blocks = selected_blocks(plan);
}

std::vector<int64_t> selected_blocks(const Plan& plan) {
  const int64_t n = plan.n_selected();
  std::vector<int64_t> order(size_t(n), -1);
  for (const PlanBlock& b : plan.blocks) {
    if (!b.selected) continue;
    if (b.rank < 1 || b.rank > n || order[size_t(b.rank - 1)] >= 0)
      throw Error(ErrorKind::InvalidArgument, "", "plan ranks are not 1.." + std::to_string(n) + " (block " +
                  std::to_string(b.index) + " has rank " + std::to_string(b.rank) + ")");
    order[size_t(b.rank - 1)] = b.index;
  }
  return order;
}

std::vector<double> dynamics_score(const Trace& t, const std::string& name, std::vector<std::array<double, 4>>* site_scores) {
  if (!is_one_of(name, kDynamicsScores))
    throw Error(ErrorKind::InvalidArgument, "", "unknown dynamics score \"" + name + "\" (known: " + join_names(kDynamicsScores) + ")");
  const size_t L = t.blocks.size();
  std::vector<double> score(L, 0.0);
  std::vector<std::array<double, 4>> parts(L, {0, 0, 0, 0});
  if (name == "hsnr-mlp-max") {
    // docs/metrics.md §9: 10^(−max_t HSNR4_mlp(t) / 10), the 4-bit noise-to-history power ratio at
    // the MLP input of the block's best-kept token (higher: even that token's history drowns). The
    // site parts put it on the MLP's two sites, half each.
    for (size_t l = 0; l < L; ++l) {
      score[l] = std::pow(10.0, -t.blocks[l].hsnr4_mlp_db.max / 10.0);
      parts[l] = {0.0, 0.0, 0.5 * score[l], 0.5 * score[l]};
    }
  } else {
    if (t.sites.size() != L) throw Error(ErrorKind::InvalidArgument, "", "the trace has no site statistics");
    // docs/metrics.md §9: the 4-bit noise-to-signal power of each site's input, 10^(−SQNR4/10),
    // injected relative to the sublayer's output; "injected-noise" scales it by the square of the
    // sublayer's mean Jump Ratio (that output's size relative to the residual stream).
    for (size_t l = 0; l < L; ++l) {
      const BlockStats& b = t.blocks[l];
      const double jr[4] = {b.jump_ratio_attn.mean, b.jump_ratio_attn.mean, b.jump_ratio_mlp.mean, b.jump_ratio_mlp.mean};
      for (int s = 0; s < 4; ++s) {
        const double nsr = std::pow(10.0, -t.sites[l][size_t(s)].sqnr4_db / 10.0);
        parts[l][size_t(s)] = name == "site-nsr" ? nsr : jr[s] * jr[s] * nsr;
        score[l] += parts[l][size_t(s)];
      }
    }
  }
  if (site_scores) *site_scores = std::move(parts);
  return score;
}

PlanCost plan_cost(const Plan& plan, const Trace& trace) {
  const int64_t L = plan.n_layers();
  if (int64_t(trace.sites.size()) != L)
    throw Error(ErrorKind::InvalidArgument, "", "plan has " + std::to_string(L) + " blocks, the trace " +
                std::to_string(trace.sites.size()));
  auto width = [&](int64_t l, Site s) {
    return double(trace.sites[size_t(l)][size_t(s)].channel_absmax.size());
  };
  PlanCost cost;
  double total = 0, eight = 0, bit_macs = 0;
  for (int64_t l = 0; l < L; ++l) {
    const double d = width(l, Site::Qkv), o = width(l, Site::O), ff = width(l, Site::Down),
                 kv = width(l, Site::K) + width(l, Site::V);
    if (d <= 0 || o <= 0 || ff <= 0 || width(l, Site::K) <= 0 || width(l, Site::V) <= 0)
      throw Error(ErrorKind::InvalidArgument, "", "the trace has no site widths for block " + std::to_string(l));
    const SiteBits& b = plan.blocks[size_t(l)].bits;
    const std::pair<double, int> sites[] = {
        {d * (o + kv), b.qkv}, {o * d, b.o}, {d * 2 * ff, b.gate_up}, {ff * d, b.down}};
    for (const auto& [macs, bits] : sites) {
      total += macs;
      bit_macs += macs * bits;
      if (bits == 8) {
        eight += macs;
        ++cost.sites_8bit;
      }
    }
  }
  cost.mac_share_8bit = eight / total;
  cost.mean_act_bits = bit_macs / total;
  return cost;
}

}  // namespace dptq
