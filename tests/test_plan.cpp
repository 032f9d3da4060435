// Precision plans (dptq/plan.hpp, docs/plan-format.md): every policy's selection and order on a
// hand-made trace, threshold mode, argument validation, JSON round trip, rejection of broken plan
// files with one-line messages, atomic writes, the model-fingerprint check and the summary table.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "dptq/error.hpp"
#include "dptq/plan.hpp"
#include "dptq/trace.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;
using dptq::Error;
using dptq::ErrorKind;
using dptq::Plan;
using dptq::PlanOptions;
using dptq::Trace;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const std::string kFingerprint = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kOtherFingerprint =
    "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

struct BlockSpec {
  double jr_p99, hsnr4_p1;
  bool emergence = false, disappearance = false;
};

// 8 blocks. dynamicptq order: boundaries 1 (JR 12.3), 6 (JR 0.8); then 7 (6.0), 4 and 3 (JR 4.0
// both; 4 has the lower HSNR4 p1), 2, 5, 0.  hsnr order: 1 (-3), 4 (-1), 7 (0), 3 and 6 (1 dB
// both; 3 has the larger JR), 2, 5, 0.
const BlockSpec kBlocks[] = {
    {0.5, 10.0}, {12.3, -3.0, true, false}, {2.0, 5.0}, {4.0, 1.0}, {4.0, -1.0},
    {1.0, 8.0},  {0.8, 1.0, false, true},   {6.0, 0.0},
};

Trace make_trace(const std::vector<BlockSpec>& specs = {std::begin(kBlocks), std::end(kBlocks)}) {
  Trace t;
  t.meta.model_name = "TinyLlama-8";
  t.meta.model_fingerprint = kFingerprint;
  t.meta.created_utc = "2026-01-02T03:04:05Z";
  t.meta.tokens = 4096;
  t.meta.rotation = "quarot";
  t.meta.act_clip_4bit = 0.85;
  t.meta.act_clip_8bit = 1.0;
  t.meta.act_asymmetric = true;
  t.meta.n_layers = static_cast<int64_t>(specs.size());
  for (size_t l = 0; l < specs.size(); ++l) {
    dptq::BlockStats b;
    b.index = static_cast<int64_t>(l);
    b.jump_ratio.p99 = specs[l].jr_p99;
    b.jump_ratio_inf.p99 = 2 * specs[l].jr_p99;
    b.hsnr4_db.p1 = specs[l].hsnr4_p1;
    b.hsnr4_db.mean = specs[l].hsnr4_p1 + 10;
    b.emergence = specs[l].emergence;
    b.disappearance = specs[l].disappearance;
    t.blocks.push_back(b);
  }
  return t;
}

PlanOptions opts(const std::string& policy, int64_t budget, double threshold = kNaN) {
  PlanOptions o;
  o.policy = policy;
  o.budget = budget;
  o.jr_threshold = threshold;
  return o;
}

// Selected blocks in rank order (and checks the per-block invariants of a selection).
// Policies give a selected block 8 bits at every site; hand edits (`policy_bits` false) may not.
std::vector<int64_t> selection(const Plan& p, bool policy_bits = true) {
  std::vector<std::pair<int, int64_t>> ranked;
  for (const dptq::PlanBlock& b : p.blocks) {
    const int expect_bits = b.selected ? 8 : 4;
    if (policy_bits) CHECK(b.bits == dptq::SiteBits{expect_bits, expect_bits, expect_bits, expect_bits});
    CHECK(b.selected == (b.rank > 0));
    CHECK(b.selected == !b.reason.empty());
    if (b.selected) ranked.emplace_back(b.rank, b.index);
  }
  std::sort(ranked.begin(), ranked.end());
  std::vector<int64_t> out;
  for (size_t i = 0; i < ranked.size(); ++i) {
    CHECK(ranked[i].first == int(i) + 1);
    out.push_back(ranked[i].second);
  }
  return out;
}

using V = std::vector<int64_t>;

// Runs `f`, expects dptq::Error of `kind` whose what() is exactly `what`.
template <class F>
void expect_error(F&& f, ErrorKind kind, const std::string& what) {
  try {
    f();
    FAIL("no error thrown; expected: " << what);
  } catch (const Error& e) {
    CHECK(e.kind() == kind);
    CHECK(std::string(e.what()) == what);
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
  }
}

bool same(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}

void check_equal(const Plan& a, const Plan& b) {
  CHECK(a.format == b.format);
  CHECK(a.version_major == b.version_major);
  CHECK(a.version_minor == b.version_minor);
  CHECK(a.model_fingerprint == b.model_fingerprint);
  CHECK(a.model_name == b.model_name);
  CHECK(a.base_method == b.base_method);
  const dptq::QuantizerSettings &qa = a.quantizer, &qb = b.quantizer;
  CHECK(qa.weight_bits == qb.weight_bits);
  CHECK(qa.weight_symmetric == qb.weight_symmetric);
  CHECK(qa.act_bits == qb.act_bits);
  CHECK(qa.act_asymmetric == qb.act_asymmetric);
  CHECK(qa.act_clip_4bit == qb.act_clip_4bit);
  CHECK(qa.act_clip_8bit == qb.act_clip_8bit);
  CHECK(qa.kv_bits == qb.kv_bits);
  CHECK(qa.kv_group_size == qb.kv_group_size);
  CHECK(qa.kv_clip == qb.kv_clip);
  CHECK(a.policy.name == b.policy.name);
  CHECK(a.policy.budget == b.policy.budget);
  CHECK(same(a.policy.jr_threshold, b.policy.jr_threshold));
  CHECK(a.policy.seed == b.policy.seed);
  CHECK(a.policy.manual_blocks == b.policy.manual_blocks);
  CHECK(a.trace.path == b.trace.path);
  CHECK(a.trace.model_fingerprint == b.trace.model_fingerprint);
  CHECK(a.trace.created_utc == b.trace.created_utc);
  CHECK(a.trace.tokens == b.trace.tokens);
  CHECK(a.created_utc == b.created_utc);
  REQUIRE(a.blocks.size() == b.blocks.size());
  for (size_t l = 0; l < a.blocks.size(); ++l) {
    CAPTURE(l);
    const dptq::PlanBlock &x = a.blocks[l], &y = b.blocks[l];
    CHECK(x.index == y.index);
    CHECK(x.bits == y.bits);
    CHECK(x.selected == y.selected);
    CHECK(x.rank == y.rank);
    CHECK(x.reason == y.reason);
    CHECK(same(x.jump_ratio_p99, y.jump_ratio_p99));
    CHECK(same(x.jump_ratio_inf_p99, y.jump_ratio_inf_p99));
    CHECK(same(x.hsnr4_p1_db, y.hsnr4_p1_db));
    CHECK(same(x.hsnr4_mean_db, y.hsnr4_mean_db));
    CHECK(x.emergence == y.emergence);
    CHECK(x.disappearance == y.disappearance);
    CHECK(same(x.score, y.score));
  }
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

// A valid plan file's JSON, to be broken by the caller and written to `path`.
nlohmann::json good_json(const fs::path& dir) {
  const fs::path p = dir / "good.plan.json";
  dptq::write_plan(dptq::make_plan(make_trace(), opts("dynamicptq-jr", 3)), p);
  return nlohmann::json::parse(slurp(p));
}

std::vector<std::string> dir_entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("dynamicptq-jr: boundaries first, then JR p99 descending, ties by lowest HSNR4 p1") {
  const Trace t = make_trace();
  CHECK(selection(dptq::make_plan(t, opts("dynamicptq-jr", 0))) == V{});
  CHECK(selection(dptq::make_plan(t, opts("dynamicptq-jr", 1))) == V{1});
  CHECK(selection(dptq::make_plan(t, opts("dynamicptq-jr", 3))) == V{1, 6, 7});
  CHECK(selection(dptq::make_plan(t, opts("dynamicptq-jr", 5))) == V{1, 6, 7, 4, 3});
  CHECK(selection(dptq::make_plan(t, opts("dynamicptq-jr", 8))) == V{1, 6, 7, 4, 3, 2, 5, 0});

  const Plan p = dptq::make_plan(t, opts("dynamicptq-jr", 5));
  CHECK(p.blocks[1].reason == "emergence boundary; JR p99 12.3 (rank 1)");
  CHECK(p.blocks[6].reason == "disappearance boundary; JR p99 0.8 (rank 2)");
  CHECK(p.blocks[7].reason == "JR p99 6 (rank 3)");
  CHECK(p.blocks[4].reason == "JR p99 4, tie broken by HSNR4 p1 -1.0 dB (rank 4)");
  CHECK(p.blocks[3].reason == "JR p99 4, tie broken by HSNR4 p1 1.0 dB (rank 5)");
  CHECK(p.blocks[0].reason.empty());
  // The metrics behind the choice are copied from the trace; score is the JR p99.
  CHECK(p.blocks[4].jump_ratio_p99 == 4.0);
  CHECK(p.blocks[4].jump_ratio_inf_p99 == 8.0);
  CHECK(p.blocks[4].hsnr4_p1_db == -1.0);
  CHECK(p.blocks[4].hsnr4_mean_db == 9.0);
  CHECK(p.blocks[1].emergence);
  CHECK(p.blocks[6].disappearance);
  CHECK(p.blocks[0].score == 0.5);
  // Plan metadata.
  CHECK(p.format == "dptq-plan");
  CHECK(p.version_major == 1);
  CHECK(p.model_fingerprint == kFingerprint);
  CHECK(p.model_name == "TinyLlama-8");
  CHECK(p.base_method == "quarot-rtn");  // the trace was profiled in the QuaRot view
  CHECK(p.quantizer.act_clip_4bit == 0.85);
  CHECK(p.quantizer.weight_bits == 4);
  CHECK(p.quantizer.act_bits == 4);
  CHECK(p.quantizer.kv_bits == 4);
  CHECK(p.quantizer.kv_clip == 0.95);
  CHECK(p.policy.name == "dynamicptq-jr");
  CHECK(p.policy.budget == 5);
  CHECK(std::isnan(p.policy.jr_threshold));
  CHECK(p.trace.model_fingerprint == kFingerprint);
  CHECK(p.trace.tokens == 4096);
  CHECK(p.created_utc.size() == 20);
  CHECK(p.n_selected() == 5);
  dptq::validate_plan(p);

  // A block without tokens (NaN JR p99) is never preferred.
  auto specs = std::vector<BlockSpec>(std::begin(kBlocks), std::end(kBlocks));
  specs[2].jr_p99 = kNaN;
  specs[0].jr_p99 = kInf;
  CHECK(selection(dptq::make_plan(make_trace(specs), opts("dynamicptq-jr", 8))) ==
        V{1, 6, 0, 7, 4, 3, 5, 2});
}

TEST_CASE("dynamicptq-jr threshold mode: every boundary plus every block with JR p99 >= X") {
  const Trace t = make_trace();
  const Plan p = dptq::make_plan(t, opts("dynamicptq-jr", -1, 3.0));
  CHECK(selection(p) == V{1, 6, 7, 4, 3});
  CHECK(p.policy.budget == -1);
  CHECK(p.policy.jr_threshold == 3.0);
  CHECK(p.blocks[7].reason == "JR p99 6 >= 3 (rank 3)");
  CHECK(p.blocks[6].reason == "disappearance boundary; JR p99 0.8 (rank 2)");
  CHECK(selection(dptq::make_plan(t, opts("dynamicptq-jr", -1, 4.0))) == V{1, 6, 7, 4, 3});  // >=
  CHECK(selection(dptq::make_plan(t, opts("dynamicptq-jr", -1, 4.01))) == V{1, 6, 7});
  CHECK(selection(dptq::make_plan(t, opts("dynamicptq-jr", -1, 100.0))) == V{1, 6});
  CHECK(selection(dptq::make_plan(t, opts("dynamicptq-jr", -1, kInf))) == V{1, 6});
  CHECK(selection(dptq::make_plan(t, opts("dynamicptq-jr", -1, 0.0))) == V{1, 6, 7, 4, 3, 2, 5, 0});

  auto specs = std::vector<BlockSpec>(std::begin(kBlocks), std::end(kBlocks));
  specs[1].disappearance = true;  // both marks on one block
  const Plan q = dptq::make_plan(make_trace(specs), opts("dynamicptq-jr", -1, 100.0));
  CHECK(q.blocks[1].reason == "emergence and disappearance boundary; JR p99 12.3 (rank 1)");
}

TEST_CASE("hsnr: lowest HSNR4 p1 first, ties by larger JR p99") {
  const Trace t = make_trace();
  CHECK(selection(dptq::make_plan(t, opts("hsnr", 8))) == V{1, 4, 7, 3, 6, 2, 5, 0});
  const Plan p = dptq::make_plan(t, opts("hsnr", 4));
  CHECK(selection(p) == V{1, 4, 7, 3});
  CHECK(p.blocks[1].reason == "HSNR4 p1 -3.0 dB (rank 1)");
  CHECK(p.blocks[3].reason == "HSNR4 p1 1.0 dB, tie broken by JR p99 4 (rank 4)");
  CHECK(p.blocks[5].score == 8.0);

  auto specs = std::vector<BlockSpec>(std::begin(kBlocks), std::end(kBlocks));
  specs[0].hsnr4_p1 = kNaN;  // no tokens: last
  specs[5].hsnr4_p1 = -kInf;
  specs[2].hsnr4_p1 = kInf;  // exactly representable: least sensitive
  CHECK(selection(dptq::make_plan(make_trace(specs), opts("hsnr", 8))) ==
        V{5, 1, 4, 7, 3, 6, 2, 0});
}

TEST_CASE("first-last: first ceil(k/2) and last floor(k/2) blocks, budgets nest") {
  const Trace t = make_trace();
  CHECK(selection(dptq::make_plan(t, opts("first-last", 0))) == V{});
  CHECK(selection(dptq::make_plan(t, opts("first-last", 1))) == V{0});
  CHECK(selection(dptq::make_plan(t, opts("first-last", 2))) == V{0, 7});
  CHECK(selection(dptq::make_plan(t, opts("first-last", 3))) == V{0, 7, 1});
  CHECK(selection(dptq::make_plan(t, opts("first-last", 5))) == V{0, 7, 1, 6, 2});
  CHECK(selection(dptq::make_plan(t, opts("first-last", 8))) == V{0, 7, 1, 6, 2, 5, 3, 4});
  const Plan p = dptq::make_plan(t, opts("first-last", 3));
  CHECK(p.blocks[0].reason == "first-last heuristic: among the first 2 blocks (rank 1)");
  CHECK(p.blocks[7].reason == "first-last heuristic: among the last block (rank 2)");
  CHECK(std::isnan(p.blocks[0].score));
}

TEST_CASE("manual: exactly the given blocks, ranked in list order") {
  const Trace t = make_trace();
  PlanOptions o = opts("manual", -1);
  o.manual_blocks = {5, 2};
  const Plan p = dptq::make_plan(t, o);
  CHECK(selection(p) == V{5, 2});
  CHECK(p.blocks[5].reason == "chosen by hand (rank 1)");
  CHECK(p.policy.manual_blocks == V{5, 2});
  o.manual_blocks = {};
  CHECK(selection(dptq::make_plan(t, o)) == V{});
}

TEST_CASE("set_block_bits: hand edits keep ranks 1..n, reasons and the plan valid") {
  const Trace t = make_trace();
  Plan p = dptq::make_plan(t, opts("dynamicptq-jr", 3));  // 1, 6, 7
  REQUIRE(selection(p) == V{1, 6, 7});
  // Only some sites of a new block: selected, next rank, "chosen by hand".
  dptq::set_block_bits(p, 2, dptq::SiteBits{4, 4, 4, 8});
  CHECK(selection(p, false) == V{1, 6, 7, 2});
  CHECK(p.blocks[2].bits == dptq::SiteBits{4, 4, 4, 8});
  CHECK(p.blocks[2].reason == "chosen by hand (rank 4)");
  CHECK(p.policy.name == "manual");
  CHECK(p.policy.budget == -1);
  CHECK(p.policy.manual_blocks == V{1, 6, 7, 2});
  CHECK(dptq::selected_blocks(p) == V{1, 6, 7, 2});
  // Dropping rank 1: everyone after moves up, the policy's reasons follow their new rank.
  dptq::set_block_bits(p, 1, dptq::SiteBits{});
  CHECK(selection(p, false) == V{6, 7, 2});
  CHECK(p.blocks[1].reason.empty());
  CHECK(p.blocks[6].reason.find("(rank 1)") != std::string::npos);
  CHECK(p.blocks[6].reason.find("(rank 2)") == std::string::npos);
  CHECK(p.blocks[2].reason == "chosen by hand (rank 3)");
  CHECK_NOTHROW(dptq::validate_plan(p));
  // Per-site change of a selected block: selection and ranks unchanged.
  dptq::set_block_bits(p, 7, dptq::SiteBits{8, 4, 8, 4});
  CHECK(selection(p, false) == V{6, 7, 2});
  CHECK(p.blocks[7].bits == dptq::SiteBits{8, 4, 8, 4});
  // The edited plan survives the file round trip.
  const Plan back = dptq::plan_from_json(dptq::plan_to_json(p), "edited");
  CHECK(selection(back, false) == V{6, 7, 2});
  CHECK(back.blocks[7].bits == dptq::SiteBits{8, 4, 8, 4});
  // Bad edits change nothing.
  CHECK_THROWS_WITH_AS(dptq::set_block_bits(p, 8, dptq::SiteBits{}),
                       doctest::Contains("block 8 is out of range 0..7"), Error);
  CHECK_THROWS_WITH_AS(dptq::set_block_bits(p, 0, dptq::SiteBits{6, 4, 4, 4}),
                       doctest::Contains("must be 4 or 8, not 6"), Error);
  CHECK(selection(p, false) == V{6, 7, 2});
  // selected_blocks refuses ranks that are not 1..n (a plan edited outside these functions).
  Plan broken = p;
  broken.blocks[7].rank = 5;
  CHECK_THROWS_WITH_AS(dptq::selected_blocks(broken), doctest::Contains("plan ranks are not 1..3"), Error);
}

TEST_CASE("plan_cost: MAC share of 8-bit inputs from the trace's site widths") {
  // d = 4, o = 4 (2 heads x 2), d_ff = 8, k = v = 2 (1 kv head): per block
  // qkv 4*(4+4) = 32, o 16, gate_up 4*16 = 64, down 32 -> 144 MACs.
  Trace t = make_trace();
  for (size_t l = 0; l < t.blocks.size(); ++l) {
    std::array<dptq::SiteStats, dptq::kNumSites> s;
    s[0].channel_absmax.assign(4, 1.f);
    s[1].channel_absmax.assign(4, 1.f);
    s[2].channel_absmax.assign(4, 1.f);
    s[3].channel_absmax.assign(8, 1.f);
    s[4].channel_absmax.assign(2, 1.f);
    s[5].channel_absmax.assign(2, 1.f);
    t.sites.push_back(s);
  }
  Plan p = dptq::make_plan(t, opts("first-last", 0));
  dptq::PlanCost c = dptq::plan_cost(p, t);
  CHECK(c.mac_share_8bit == 0.0);
  CHECK(c.mean_act_bits == doctest::Approx(4.0));
  p = dptq::make_plan(t, opts("first-last", 2));
  c = dptq::plan_cost(p, t);
  CHECK(c.mac_share_8bit == doctest::Approx(2.0 / 8.0));
  CHECK(c.mean_act_bits == doctest::Approx(5.0));
  CHECK(c.sites_8bit == 8);
  dptq::set_block_bits(p, 3, dptq::SiteBits{4, 4, 4, 8});  // + one down site: 32 of 8 * 144
  c = dptq::plan_cost(p, t);
  CHECK(c.mac_share_8bit == doctest::Approx((2.0 * 144 + 32) / (8.0 * 144)));
  t.sites.pop_back();
  CHECK_THROWS_WITH_AS(dptq::plan_cost(p, t), doctest::Contains("plan has 8 blocks, the trace 7"), Error);
}

TEST_CASE("random: seeded uniform choice without replacement") {
  const Trace t = make_trace();
  PlanOptions o = opts("random", 3);
  o.seed = 42;
  const Plan a = dptq::make_plan(t, o), b = dptq::make_plan(t, o);
  const V sa = selection(a);
  CHECK(sa.size() == 3);
  CHECK(std::set<int64_t>(sa.begin(), sa.end()).size() == 3);
  CHECK(sa == selection(b));
  CHECK(a.policy.seed == 42);
  CHECK(a.blocks[size_t(sa[0])].reason == "random choice, seed 42 (rank 1)");
  // mt19937_64 is fully specified and the draw is spelled out in docs/plan-format.md: the same
  // seed picks the same blocks with every compiler and standard library. {6, 4, 0} was computed
  // by an independent pure-Python MT19937-64 (checked against the standard's 10000th output) with
  // that draw.
  CHECK(sa == V{6, 4, 0});
  o.budget = 8;
  const V all = selection(dptq::make_plan(t, o));
  CHECK(std::set<int64_t>(all.begin(), all.end()).size() == 8);

  // Roughly uniform: each block's share of k = 1 picks over 4000 seeds within 5 sigma of 1/8.
  std::vector<int> hits(8, 0);
  o.budget = 1;
  for (uint64_t seed = 0; seed < 4000; ++seed) {
    o.seed = seed;
    ++hits[size_t(selection(dptq::make_plan(t, o))[0])];
  }
  for (int h : hits) CHECK(std::abs(h - 500) < 5 * 21);  // sd = sqrt(4000 * 1/8 * 7/8) ~ 21

  // Non-random policies record seed 0.
  PlanOptions d = opts("dynamicptq-jr", 2);
  d.seed = 7;
  CHECK(dptq::make_plan(t, d).policy.seed == 0);
}

TEST_CASE("make_plan rejects bad arguments with one-line messages") {
  const Trace t = make_trace();
  const auto IA = ErrorKind::InvalidArgument;
  auto run = [&](const PlanOptions& o) { return [&t, o] { dptq::make_plan(t, o); }; };

  expect_error(run(opts("dynamicptq-jr", 9)), IA,
               "budget 9 is out of range 0..8 (the trace has 8 blocks)");
  expect_error(run(opts("hsnr", -2)), IA,
               "budget -2 is out of range 0..8 (the trace has 8 blocks)");
  expect_error(run(opts("dynamicptq-jr", 2, 1.0)), IA,
               "policy dynamicptq-jr takes a budget or a JR threshold, not both");
  expect_error(run(opts("dynamicptq-jr", -1)), IA,
               "policy dynamicptq-jr needs a budget (number of 8-bit blocks) or a JR threshold");
  expect_error(run(opts("hsnr", -1, 1.0)), IA,
               "policy hsnr takes no JR threshold (only dynamicptq-jr does)");
  expect_error(run(opts("random", -1)), IA,
               "policy random needs a budget (number of 8-bit blocks)");
  expect_error(run(opts("first-last", -1)), IA,
               "policy first-last needs a budget (number of 8-bit blocks)");
  expect_error(run(opts("oracle", 2)), IA,
               "policy oracle measures perplexity and needs the model: dptq plan TRACE --policy oracle --model MODEL");
  expect_error(run(opts("magic", 2)), IA,
               "unknown policy \"magic\" (known: dynamicptq, dynamicptq-jr, measured, hsnr, first-last, manual, random, oracle)");
  PlanOptions m = opts("manual", -1);
  m.manual_blocks = {3, 8};
  expect_error(run(m), IA, "manual block 8 is out of range (valid blocks: 0..7)");
  m.manual_blocks = {-1};
  expect_error(run(m), IA, "manual block -1 is out of range (valid blocks: 0..7)");
  m.manual_blocks = {3, 1, 3};
  expect_error(run(m), IA, "manual block 3 is listed twice");
  m.manual_blocks = {1};
  m.budget = 1;
  expect_error(run(m), IA, "policy manual takes a block list, not a budget or a JR threshold");
  PlanOptions h = opts("hsnr", 2);
  h.manual_blocks = {1};
  expect_error(run(h), IA, "a block list is only for policy manual (policy is hsnr)");
  PlanOptions b = opts("dynamicptq-jr", 2);
  b.base_method = "awq";
  expect_error(run(b), IA,
               "unknown base method \"awq\" (known: quarot-rtn, quarot-gptq, rtn, gptq, none)");
  expect_error([] { dptq::make_plan(Trace{}, opts("dynamicptq-jr", 0)); }, IA,
               "the trace has no blocks to plan for");

  // Base method: explicit, or from the trace's rotation.
  b.base_method = "gptq";
  CHECK(dptq::make_plan(t, b).base_method == "gptq");
  Trace plain = make_trace();
  plain.meta.rotation = "none";
  CHECK(dptq::make_plan(plain, opts("hsnr", 1)).base_method == "rtn");
}

TEST_CASE("validate_plan: bits other than 4 / 8 and inconsistent selections") {
  const Plan good = dptq::make_plan(make_trace(), opts("dynamicptq-jr", 2));
  const auto IA = ErrorKind::InvalidArgument;
  Plan p = good;
  p.blocks[3].bits.gate_up = 6;
  expect_error([&] { dptq::validate_plan(p, "x.json"); }, IA,
               "x.json: block 3: bits.gate_up is 6; activation bits must be 4 or 8");
  p = good;
  p.quantizer.weight_bits = 3;
  expect_error([&] { dptq::validate_plan(p); }, IA,
               "quantizer.weight_bits is 3; weight bits must be 4 or 8");
  p = good;
  p.quantizer.act_bits = 16;
  expect_error([&] { dptq::validate_plan(p); }, IA,
               "quantizer.act_bits is 16; activation bits must be 4 or 8");
  p = good;
  p.quantizer.kv_bits = 2;
  expect_error([&] { dptq::validate_plan(p); }, IA,
               "quantizer.kv_bits is 2; KV cache bits must be 4 or 8");
  p = good;
  p.quantizer.kv_clip = 1.5;
  expect_error([&] { dptq::validate_plan(p); }, IA,
               "quantizer.kv_clip is 1.5; a clip ratio must be in (0, 1]");
  p = good;
  p.blocks[0].rank = 3;  // unselected with a rank
  expect_error([&] { dptq::validate_plan(p); }, IA,
               "block 0: not selected but rank is 3 (a selected block has rank 1..8, an unselected "
               "one 0)");
  p = good;
  p.blocks[6].rank = 1;  // blocks 1 and 6 both rank 1
  expect_error([&] { dptq::validate_plan(p); }, IA,
               "block 6: rank 1 is given to more than one block");
  p = good;
  p.blocks[6].rank = 3;
  expect_error([&] { dptq::validate_plan(p); }, IA,
               "ranks of the 2 selected blocks must be 1..2 (rank 2 is missing)");
  p = good;
  std::swap(p.blocks[2], p.blocks[3]);
  expect_error([&] { dptq::validate_plan(p); }, IA,
               "blocks[2] has index 3; blocks must be listed in order 0..7");
  p = good;
  p.trace.model_fingerprint = kOtherFingerprint;
  expect_error([&] { dptq::validate_plan(p); }, IA,
               "the trace was recorded for model fedcba987654\xE2\x80\xA6, but the plan names "
               "model 0123456789ab\xE2\x80\xA6");
  // A per-site edit by hand (one 8-bit site in an unselected block) is a valid plan.
  p = good;
  p.blocks[0].bits.down = 8;
  dptq::validate_plan(p);
}

TEST_CASE("plan JSON round trip") {
  const fs::path dir = dptq::test::scratch_dir("plan_roundtrip");
  auto specs = std::vector<BlockSpec>(std::begin(kBlocks), std::end(kBlocks));
  specs[2].hsnr4_p1 = kInf;
  specs[5].hsnr4_p1 = -kInf;
  specs[0].jr_p99 = kNaN;
  specs[3].jr_p99 = 0.1 + 0.2;  // needs all 17 digits
  Trace t = make_trace(specs);
  t.meta.model_name = "Ünïcode – 模型 🙂";

  for (const char* policy : {"dynamicptq-jr", "hsnr", "first-last", "manual", "random"}) {
    CAPTURE(policy);
    PlanOptions o = opts(policy, std::string(policy) == "manual" ? -1 : 3);
    if (o.policy == "manual") o.manual_blocks = {7, 0, 4};
    if (o.policy == "random") o.seed = std::numeric_limits<uint64_t>::max() - 3;
    o.trace_path = "/traces/run \"1\".h5";
    Plan p = dptq::make_plan(t, o);
    p.blocks[5].bits.o = 8;  // a per-site edit survives
    p.quantizer.kv_group_size = 64;
    const fs::path f = dir / (std::string(policy) + ".plan.json");
    dptq::write_plan(p, f);
    check_equal(dptq::read_plan(f), p);
  }
  Plan thr = dptq::make_plan(t, opts("dynamicptq-jr", -1, 2.5));
  dptq::write_plan(thr, dir / "thr.plan.json");
  check_equal(dptq::read_plan(dir / "thr.plan.json"), thr);
  thr.policy.jr_threshold = kInf;  // a legal (boundaries-only) threshold
  dptq::write_plan(thr, dir / "thr.plan.json");
  check_equal(dptq::read_plan(dir / "thr.plan.json"), thr);

  // The file is plain JSON that other tools read: non-finite metrics are strings.
  const auto j = nlohmann::json::parse(slurp(dir / "hsnr.plan.json"));
  CHECK(j["format"] == "dptq-plan");
  CHECK(j["version"] == "1.1");
  CHECK(j["blocks"][2]["hsnr4_p1_db"] == "inf");
  CHECK(j["blocks"][5]["hsnr4_p1_db"] == "-inf");
  CHECK(j["blocks"][0]["jump_ratio_p99"] == "nan");
  CHECK(j["policy"]["jr_threshold"].is_null());
  CHECK(j["blocks"][1]["bits"]["qkv"] == 8);
  // Only the written files are left (no temporaries).
  CHECK(dir_entries(dir) == std::vector<std::string>{"dynamicptq-jr.plan.json", "first-last.plan.json",
                                                     "hsnr.plan.json", "manual.plan.json",
                                                     "random.plan.json", "thr.plan.json"});
}

TEST_CASE("read_plan: newer minor versions and reordered blocks read fine") {
  const fs::path dir = dptq::test::scratch_dir("plan_minor");
  nlohmann::json j = good_json(dir);
  j["version"] = "1.7";
  j["some_future_field"] = {1, 2, 3};
  j["blocks"][0]["future"] = "x";
  std::reverse(j["blocks"].begin(), j["blocks"].end());
  spit(dir / "p.json", j.dump());
  const Plan p = dptq::read_plan(dir / "p.json");
  CHECK(p.version_minor == 7);
  for (size_t l = 0; l < p.blocks.size(); ++l) CHECK(p.blocks[l].index == int64_t(l));
  CHECK(selection(p) == V{1, 6, 7});
}

TEST_CASE("read_plan: a 1.0 file's dynamicptq is the rule now named dynamicptq-jr") {
  const fs::path dir = dptq::test::scratch_dir("plan_v10");
  nlohmann::json j = good_json(dir);
  j["version"] = "1.0";
  j["policy"]["name"] = "dynamicptq";
  spit(dir / "old.json", j.dump());
  const Plan old = dptq::read_plan(dir / "old.json");
  CHECK(old.policy.name == "dynamicptq-jr");
  CHECK(selection(old) == V{1, 6, 7});  // the blocks are the file's, whatever the name
  j["version"] = "1.1";
  spit(dir / "new.json", j.dump());
  CHECK(dptq::read_plan(dir / "new.json").policy.name == "dynamicptq");
}

TEST_CASE("read_plan rejects broken files with one-line messages naming the file") {
  const fs::path dir = dptq::test::scratch_dir("plan_broken");
  const nlohmann::json good = good_json(dir);
  const std::string good_text = slurp(dir / "good.plan.json");
  const fs::path f = dir / "bad.plan.json";
  const std::string F = f.string() + ": ";
  auto read = [&] { dptq::read_plan(f); };
  auto patched = [&](auto&& edit) {
    nlohmann::json j = good;
    edit(j);
    spit(f, j.dump(2));
  };

  expect_error([&] { dptq::read_plan(dir / "missing.json"); }, ErrorKind::Io,
               (dir / "missing.json").string() + ": cannot open: No such file or directory");
  expect_error([&] { dptq::read_plan(dir); }, ErrorKind::Io,
               dir.string() + ": cannot open: not a regular file");

  // Truncated (half the file), corrupt (binary junk), empty.
  spit(f, good_text.substr(0, good_text.size() / 2));
  try {
    read();
    FAIL("truncated file accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
    CHECK(e.file() == f.string());
    CHECK(e.message().rfind("not valid JSON (truncated or corrupt?): parse error at line ", 0) ==
          0);
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
  }
  spit(f, std::string("\x89HDF\r\n\x1a\n\0\0\x01\xff", 12));
  try {
    read();
    FAIL("binary file accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Format);
    CHECK(e.message().rfind("not valid JSON (truncated or corrupt?): ", 0) == 0);
    CHECK(std::string(e.what()).find_first_of("\r\n") == std::string::npos);
  }
  spit(f, "");
  CHECK_THROWS_AS(read(), Error);
  spit(f, "[1, 2]");
  expect_error(read, ErrorKind::Format,
               F + "not a dptq plan (the file holds a JSON array, not an object)");

  patched([](auto& j) { j.erase("format"); });
  expect_error(read, ErrorKind::Format,
               F + "not a dptq plan (no \"format\" string; expected \"dptq-plan\")");
  patched([](auto& j) { j["format"] = "dptq-trace"; });
  expect_error(read, ErrorKind::Format,
               F + "not a dptq plan (format is \"dptq-trace\", expected \"dptq-plan\")");

  // Another major version: Version, whatever else the file holds.
  patched([](auto& j) {
    j["version"] = "2.0";
    j.erase("blocks");
  });
  expect_error(read, ErrorKind::Version, F + "unsupported plan version 2.0 (this build reads 1.x)");
  patched([](auto& j) { j["version"] = "0.9"; });
  expect_error(read, ErrorKind::Version, F + "unsupported plan version 0.9 (this build reads 1.x)");
  patched([](auto& j) { j["version"] = "1"; });
  expect_error(read, ErrorKind::Format, F + "field \"version\" is \"1\", not \"major.minor\"");
  patched([](auto& j) { j["version"] = 1.0; });
  expect_error(read, ErrorKind::Format, F + "field \"version\" must be a string (got number)");

  // Blocks: duplicate, out of range, bits = 6, wrong types, missing fields.
  patched([](auto& j) { j["blocks"][3]["index"] = 2; });
  expect_error(read, ErrorKind::Format,
               F + "block index 2 appears more than once (blocks[3]); every block 0..7 must "
                   "appear exactly once");
  patched([](auto& j) { j["blocks"][5]["index"] = 8; });
  expect_error(read, ErrorKind::Format,
               F + "blocks[5].index is 8, outside 0..7 (the plan has 8 blocks)");
  patched([](auto& j) { j["blocks"].erase(j["blocks"].begin() + 7); });  // last entry lost
  expect_error(read, ErrorKind::Format, F + "field \"n_layers\" is 8 but \"blocks\" has 7 entries");
  patched([](auto& j) { j["blocks"][3]["index"] = -1; });
  expect_error(read, ErrorKind::Format,
               F + "blocks[3].index is -1, outside 0..7 (the plan has 8 blocks)");
  patched([](auto& j) { j["blocks"][2]["bits"]["qkv"] = 6; });
  expect_error(read, ErrorKind::Format,
               F + "blocks[2].bits.qkv is 6; activation bits must be 4 or 8");
  patched([](auto& j) { j["blocks"][2]["bits"]["down"] = "8"; });
  expect_error(read, ErrorKind::Format,
               F + "field \"blocks[2].bits.down\" must be an integer (got string)");
  patched([](auto& j) { j["blocks"][2]["bits"]["o"] = 8.0; });
  expect_error(read, ErrorKind::Format,
               F + "field \"blocks[2].bits.o\" must be an integer (got number)");
  patched([](auto& j) { j["blocks"][4].erase("selected"); });
  expect_error(read, ErrorKind::Format, F + "missing field \"blocks[4].selected\"");
  patched([](auto& j) { j["blocks"][4]["hsnr4_p1_db"] = "-Infinity"; });
  expect_error(read, ErrorKind::Format,
               F + "field \"blocks[4].hsnr4_p1_db\" must be a number (or \"inf\", \"-inf\", "
                   "\"nan\") (got string)");
  patched([](auto& j) { j["blocks"] = nlohmann::json::array(); });
  expect_error(read, ErrorKind::Format,
               F + "field \"blocks\" is empty; a plan has one entry per decoder block");
  patched([](auto& j) { j["blocks"][0]["rank"] = 2; });  // unselected block 0 with rank 2
  expect_error(read, ErrorKind::Format,
               F + "block 0: not selected but rank is 2 (a selected block has rank 1..8, an "
                   "unselected one 0)");

  // Quantizer and policy.
  patched([](auto& j) { j["quantizer"]["kv_bits"] = 6; });
  expect_error(read, ErrorKind::Format, F + "quantizer.kv_bits is 6; KV cache bits must be 4 or 8");
  patched([](auto& j) { j["quantizer"]["weight_bits"] = 2; });
  expect_error(read, ErrorKind::Format,
               F + "quantizer.weight_bits is 2; weight bits must be 4 or 8");
  patched([](auto& j) { j.erase("quantizer"); });
  expect_error(read, ErrorKind::Format, F + "missing field \"quantizer\"");
  patched([](auto& j) { j["policy"]["name"] = "magic"; });
  expect_error(read, ErrorKind::Format,
               F + "field \"policy.name\" is \"magic\" (known: dynamicptq, dynamicptq-jr, measured, hsnr, "
                   "first-last, manual, random, oracle)");
  patched([](auto& j) { j["policy"]["seed"] = -1; });
  expect_error(read, ErrorKind::Format,
               F + "field \"policy.seed\" must be a non-negative integer (got integer)");
  patched([](auto& j) { j["base_method"] = "awq"; });
  expect_error(read, ErrorKind::Format,
               F + "field \"base_method\" is \"awq\" (known: quarot-rtn, quarot-gptq, rtn, gptq, "
                   "none)");
  patched([](auto& j) { j["trace"]["model_fingerprint"] = kOtherFingerprint; });
  expect_error(read, ErrorKind::Format,
               F + "the trace was recorded for model fedcba987654\xE2\x80\xA6, but the plan names "
                   "model 0123456789ab\xE2\x80\xA6");

  // The unbroken file still reads.
  spit(f, good_text);
  CHECK(selection(dptq::read_plan(f)) == V{1, 6, 7});
}

TEST_CASE("write_plan is atomic: nothing is left behind on failure") {
  const fs::path dir = dptq::test::scratch_dir("plan_atomic");
  const Plan p = dptq::make_plan(make_trace(), opts("dynamicptq-jr", 2));

  // Target folder missing: Io, and the folder is not created.
  const fs::path missing = dir / "no-such-dir" / "p.plan.json";
  try {
    dptq::write_plan(p, missing);
    FAIL("write into a missing folder succeeded");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Io);
    CHECK(std::string(e.what()) ==
          missing.string() + ": cannot create temporary file: No such file or directory");
  }
  CHECK(dir_entries(dir).empty());

  // The rename fails (the target is a non-empty folder): the temporary file is removed.
  fs::create_directories(dir / "taken.json" / "child");
  CHECK_THROWS_AS(dptq::write_plan(p, dir / "taken.json"), Error);
  CHECK(dir_entries(dir) == std::vector<std::string>{"taken.json"});
  fs::remove_all(dir / "taken.json");

  // An invalid plan is refused before the disk is touched; an existing file stays as it was.
  const fs::path f = dir / "p.plan.json";
  dptq::write_plan(p, f);
  const std::string before = slurp(f);
  Plan bad = p;
  bad.blocks[1].bits.qkv = 6;
  expect_error([&] { dptq::write_plan(bad, f); }, ErrorKind::InvalidArgument,
               f.string() + ": block 1: bits.qkv is 6; activation bits must be 4 or 8");
  CHECK(slurp(f) == before);
  // A string that is not UTF-8 cannot be written as JSON.
  bad = p;
  bad.model_name = "\xff\xfe";
  try {
    dptq::write_plan(bad, f);
    FAIL("a plan with a non-UTF-8 string was written");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::InvalidArgument);
    CHECK(e.message().rfind("cannot encode the plan as JSON: invalid UTF-8 byte", 0) == 0);
  }
  CHECK(slurp(f) == before);
  CHECK(dir_entries(dir) == std::vector<std::string>{"p.plan.json"});

  // Overwrite in place.
  Plan other = dptq::make_plan(make_trace(), opts("hsnr", 1));
  dptq::write_plan(other, f);
  CHECK(selection(dptq::read_plan(f)) == V{1});
  CHECK(dir_entries(dir) == std::vector<std::string>{"p.plan.json"});
}

TEST_CASE("check_plan_matches refuses a plan made for another model") {
  const Plan p = dptq::make_plan(make_trace(), opts("dynamicptq-jr", 2));
  dptq::check_plan_matches(p, kFingerprint, 8, "p.plan.json");
  expect_error([&] { dptq::check_plan_matches(p, kOtherFingerprint, 8, "p.plan.json"); },
               ErrorKind::InvalidArgument,
               "p.plan.json: plan was made for model 0123456789ab\xE2\x80\xA6, not "
               "fedcba987654\xE2\x80\xA6");
  expect_error([&] { dptq::check_plan_matches(p, kFingerprint, 30, "p.plan.json"); },
               ErrorKind::InvalidArgument, "p.plan.json: plan has 8 blocks, the model has 30");
}

TEST_CASE("plan_summary lists every block") {
  const Plan p = dptq::make_plan(make_trace(), opts("dynamicptq-jr", 3));
  const std::string s = dptq::plan_summary(p);
  INFO(s);
  CHECK(s.find("TinyLlama-8 (model 0123456789ab\xE2\x80\xA6), base method quarot-rtn") !=
        std::string::npos);
  CHECK(s.find("policy dynamicptq-jr, budget 3") != std::string::npos);
  CHECK(s.find("8-bit activations in 3 of 8 blocks; W4A4KV4 elsewhere") != std::string::npos);
  CHECK(s.find("block  bits     sel  rank   JR p99    HSNR4 p1  phase  reason\n") !=
        std::string::npos);
  CHECK(s.find("    1  8/8/8/8  yes     1     12.3     -3.0 dB  E      emergence boundary; JR "
               "p99 12.3 (rank 1)\n") != std::string::npos);
  CHECK(s.find("    0  4/4/4/4          -      0.5     10.0 dB\n") != std::string::npos);
  CHECK(s.find(" \n") == std::string::npos);  // no trailing blanks
  // Header + 4 lines of preamble + blank + one row per block.
  CHECK(std::count(s.begin(), s.end(), '\n') == 4 + 1 + 1 + 8);
}

TEST_CASE("the example in docs/plan-format.md is a valid plan") {
  const fs::path doc = fs::path(DPTQ_SOURCE_DIR) / "docs" / "plan-format.md";
  DPTQ_SKIP_UNLESS(fs::exists(doc), doc.string() << " not found");
  const std::string text = slurp(doc);
  const size_t start = text.find("```json\n");
  REQUIRE(start != std::string::npos);
  const size_t end = text.find("\n```", start + 8);
  REQUIRE(end != std::string::npos);
  const fs::path f = dptq::test::scratch_dir("plan_doc_example") / "example.plan.json";
  spit(f, text.substr(start + 8, end - start - 8));
  const Plan p = dptq::read_plan(f);
  CHECK(selection(p) == V{0, 3});
  CHECK(p.blocks[0].reason == "emergence boundary; JR p99 7.85 (rank 1)");
  // The summary printed in the document is the one this build prints.
  CHECK(text.find(dptq::plan_summary(p)) != std::string::npos);
}
