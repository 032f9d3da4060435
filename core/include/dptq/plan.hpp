// dptq/plan.hpp — DynamicPTQ precision plans (DESIGN §5 "DynamicPTQ plan", §6): which decoder
// blocks get 8-bit activations, chosen by a policy from a profiling trace, and the plan file.
// Torch-free: `dptq plan`, the studio's Plan panel and `dptq quantize` share it.
//
// Contents
//   SiteBits          activation bits of the four quantizer sites of one block (4 or 8)
//   PlanBlock         one block: bits, selected / rank, one-line reason, the metrics behind it
//   QuantizerSettings base quantizers (weights / activations / KV cache), W4A4KV4 by default
//   PlanPolicy        the policy that made the plan and its parameters
//   PlanTraceSource   the trace the plan was made from
//   Plan              all of the above (format "dptq-plan", version kPlanVersionMajor.Minor)
//   PlanOptions       input of make_plan
//   make_plan         runs a policy on a Trace
//   validate_plan     checks a Plan in memory (bits in {4, 8}, block indices 0..L-1, ranks, ...)
//   write_plan / read_plan   JSON I/O; file layout and versioning: docs/plan-format.md
//   check_plan_matches       refuses a plan made for another model
//   plan_summary             plain-text table for terminals and logs
//   set_block_bits           hand edit of one block (the studio's per-site toggles)
//   plan_mac_share           share of the linear layers' multiply-accumulates with 8-bit inputs
//
// Policies (exact definitions, including what is this project's reading of the DynamicPTQ paper,
// whose code is not public: docs/plan-format.md):
//   dynamicptq  the dynamics score kDefaultDynamicsScore (dynamics_score below; the candidates, the
//               calibration-text evidence that chose it and its formula: docs/metrics.md §9),
//               highest first, ties by lower index;
//               top `budget` blocks, or with `budget_macs` single sites (site-level plan)
//   dynamicptq-jr  the first reading: phase-boundary blocks (emergence / disappearance) first,
//               then JR p99 descending, ties by lowest HSNR4 p1 (dB), then by lower block index;
//               top `budget` blocks, or with `jr_threshold` every boundary block plus every block
//               with JR p99 >= X
//   measured    the trace's measured sensitivity (dptq sensitivity; NLL gain), highest first; with
//               `budget_macs` single sites by measured site gain per multiply-accumulate
//   hsnr        lowest HSNR4 p1 (dB) first (ties: higher JR p99, then lower index); top `budget`
//   first-last  the first ceil(k/2) and the last floor(k/2) blocks
//   manual      exactly `manual_blocks`, ranked in list order
//   random      `budget` blocks drawn uniformly without replacement, seeded (sweep baseline)
//   oracle      greedy by measured perplexity on held-out text (needs the model: oracle_plan in
//               dptq/quantize.hpp; make_plan refuses it); score = the block's single-step gain
// A selected block gets 8 bits at all four sites; every other block keeps 4. Weights and the KV
// cache stay 4-bit in every block.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "dptq/trace.hpp"

namespace dptq {

inline constexpr const char* kPlanFormat = "dptq-plan";
inline constexpr int kPlanVersionMajor = 1;
inline constexpr int kPlanVersionMinor = 1;  // 1.1: policy.budget_macs

// Names accepted for PlanOptions::policy / PlanPolicy::name and Plan::base_method.
inline constexpr const char* kPlanPolicies[] = {"dynamicptq", "dynamicptq-jr", "measured", "hsnr",
                                                "first-last", "manual", "random", "oracle"};
// Dynamics-only block scores (higher = more sensitive; docs/metrics.md §9). dynamicptq uses the
// default; the others are kept so `dptq report --proxies` can show them against measured gains.
inline constexpr const char* kDynamicsScores[] = {"injected-noise", "site-nsr", "hsnr-mlp-max"};
inline constexpr const char* kDefaultDynamicsScore = "hsnr-mlp-max";
inline constexpr const char* kBaseMethods[] = {"quarot-rtn", "quarot-gptq", "rtn", "gptq", "none"};

// Activation bits at the input of q/k/v_proj, o_proj, gate/up_proj and down_proj; 4 or 8.
struct SiteBits {
  int qkv = 4, o = 4, gate_up = 4, down = 4;
  bool operator==(const SiteBits&) const = default;
};

struct PlanBlock {
  int64_t index = 0;      // decoder block l, 0..L-1 (blocks[l].index == l)
  SiteBits bits;          // 8 at all four sites when the policy selected the block
  bool selected = false;  // chosen by the policy (or by hand)
  int rank = 0;           // 0 = not selected; 1 = chosen first, 2 = second, ...
  std::string reason;     // one readable line for a selected block ("emergence boundary; JR p99
                          // 12.3 (rank 1)"); empty otherwise
  // The trace metrics the policies look at (copied from Trace::blocks[l]; may be ±inf or NaN).
  double jump_ratio_p99 = 0;
  double jump_ratio_inf_p99 = 0;
  double hsnr4_p1_db = 0;
  double hsnr4_mean_db = 0;
  bool emergence = false;
  bool disappearance = false;
  double score = std::numeric_limits<double>::quiet_NaN();  // the policy's ranking key for this
                                                            // block (dynamicptq: JR p99, hsnr:
                                                            // HSNR4 p1 dB); NaN for the others
};

// Base quantizers of the plan (DESIGN §5). Only activation bits vary per block (PlanBlock::bits).
struct QuantizerSettings {
  int weight_bits = 4;  // per-output-channel weights, 4 or 8
  bool weight_symmetric = true;
  int act_bits = 4;  // per-token activations of unselected blocks, 4 or 8
  bool act_asymmetric = true;
  double act_clip_4bit = 0.9;  // clip ratio of 4-bit activation quantizers, in (0, 1]
  double act_clip_8bit = 1.0;  // clip ratio of 8-bit activation quantizers, in (0, 1]
  int kv_bits = 4;             // KV cache, asymmetric groups, 4 or 8
  int64_t kv_group_size = 0;   // 0 = min(128, head_dim), resolved by the quantizer
  double kv_clip = 0.95;       // in (0, 1]
};

struct PlanPolicy {
  std::string name = "dynamicptq";  // one of kPlanPolicies
  int64_t budget = -1;              // k; -1 when unset (threshold mode, manual)
  // NaN when unset (budget mode, other policies).
  double jr_threshold = std::numeric_limits<double>::quiet_NaN();
  // Site-level budget: share (0, 1] of the linear layers' MACs with 8-bit inputs; NaN when unset.
  double budget_macs = std::numeric_limits<double>::quiet_NaN();
  uint64_t seed = 0;                   // random policy only (0 otherwise)
  std::vector<int64_t> manual_blocks;  // manual policy only, in the order given
};

struct PlanTraceSource {
  std::string path;               // trace file the plan was made from ("" when unknown)
  std::string model_fingerprint;  // the trace's /meta@model_fingerprint; must equal the plan's
  std::string created_utc;        // the trace's creation time
  int64_t tokens = 0;             // calibration tokens behind the metrics
};

struct Plan {
  std::string format = kPlanFormat;  // "dptq-plan"
  int version_major = kPlanVersionMajor, version_minor = kPlanVersionMinor;
  std::string model_fingerprint;  // sha256 of config + tensor names/shapes (DESIGN §6)
  std::string model_name;
  std::string base_method = "quarot-rtn";  // one of kBaseMethods
  QuantizerSettings quantizer;
  PlanPolicy policy;
  PlanTraceSource trace;
  std::string created_utc;        // ISO 8601 UTC, "YYYY-MM-DDTHH:MM:SSZ"
  std::vector<PlanBlock> blocks;  // L entries, blocks[l].index == l

  int64_t n_layers() const { return static_cast<int64_t>(blocks.size()); }
  int64_t n_selected() const;
};

struct PlanOptions {
  std::string policy = "dynamicptq";  // one of kPlanPolicies
  int64_t budget = -1;                // -1 = unset
  // NaN = unset; dynamicptq-jr only.
  double jr_threshold = std::numeric_limits<double>::quiet_NaN();
  // NaN = unset; dynamicptq and measured only: a site-level plan whose 8-bit sites take at most
  // this share of the linear layers' multiply-accumulates (plan_cost), chosen greedily.
  double budget_macs = std::numeric_limits<double>::quiet_NaN();
  std::vector<int64_t> manual_blocks;  // manual policy only
  uint64_t seed = 0;                   // random policy only
  std::string base_method;             // "" = from the trace: "quarot-rtn" if it was profiled
                                       // with rotation "quarot", else "rtn"
  std::string trace_path;              // recorded in Plan::trace.path
};

// Runs `options.policy` on the blocks of `trace` and returns the plan (quantizer activation
// settings from trace.meta, the rest DESIGN §5 defaults; created_utc = now). Throws
// Error(InvalidArgument) (one line, no file) for: an unknown policy or base method (listing the
// known ones), a trace without blocks, budget < -1 or > L, dynamicptq with both or neither of
// budget / jr_threshold, hsnr / first-last / random without a budget or with a threshold, a manual
// block out of range (naming it and 0..L-1) or listed twice, a block list given to another policy
// or budget / threshold given to manual. The seed is recorded for random only (0 otherwise).
Plan make_plan(const Trace& trace, const PlanOptions& options);

// Per-block dynamics score `name` (one of kDynamicsScores), higher = predicted more sensitive;
// InvalidArgument for an unknown name. `site_scores` (optional) gets the per-site parts [L][4]
// (qkv, o, gate_up, down) where the score is a sum over sites (injected-noise, site-nsr), else
// the block score at every site.
std::vector<double> dynamics_score(const Trace& trace, const std::string& name,
                                   std::vector<std::array<double, 4>>* site_scores = nullptr);

// Checks the invariants every plan file holds; throws Error(InvalidArgument, where, ...) on the
// first problem: format name, bits not in {4, 8} (any site, weights, activations, KV), clip ratios
// outside (0, 1], kv_group_size < 0, unknown policy / base method, no blocks,
// blocks[l].index != l, selected without a rank >= 1 or unselected with one, selected ranks not
// exactly 1..n_selected, trace fingerprint (when recorded) different from model_fingerprint.
void validate_plan(const Plan& plan, const std::string& where = "");

// Atomic write of the JSON file: validate_plan first (Error(InvalidArgument) naming `path`, disk
// untouched), then "<path>.tmp-<pid>-<n>" in the same folder, write, fsync, close, rename over
// `path`; on any failure the temp file is removed and `path` is untouched (Error(Io)).
void write_plan(const Plan& plan, const std::filesystem::path& path);

// Reads and validates a plan file. Error(Io) when it cannot be opened; Error(Version,
// "unsupported plan version X.Y (this build reads 1.x)") for another major version (newer minors
// read fine, unknown fields are ignored); Error(Format) for anything else: not JSON, truncated,
// not a plan, a missing or mistyped field (named, e.g. "blocks[3].bits.qkv"), bits not in {4, 8},
// a block index missing / repeated / out of range, inconsistent ranks. Every message is one line
// naming the file. Blocks come back sorted by index.
Plan read_plan(const std::filesystem::path& path);

// The plan as the JSON text of a plan file (validated first), and back (the same checks as
// read_plan, errors naming `where`): quantized checkpoints embed their plan this way.
std::string plan_to_json(const Plan& plan);
Plan plan_from_json(const std::string& text, const std::string& where);

// Refuses to apply a plan to another model: Error(InvalidArgument, plan_path, "plan was made for
// model <first 12 hex of the plan's fingerprint>…, not <model's>…") when the fingerprints differ,
// "plan has N blocks, the model has M" when the block counts do.
void check_plan_matches(const Plan& plan, const std::string& model_fingerprint, int64_t n_layers,
                        const std::string& plan_path);

// Plain-text summary: header (model, base method, policy) and one row per block with bits
// (qkv/o/gate_up/down), selection, rank, JR p99, HSNR4 p1, phase marks and reason.
std::string plan_summary(const Plan& plan);

// The selected blocks in rank order (rank 1 first). Throws Error(InvalidArgument) when the ranks of
// the selected blocks are not exactly 1..n (validate_plan's rule).
std::vector<int64_t> selected_blocks(const Plan& plan);

// Hand edit (the studio's Plan panel): sets the activation bits of `block` (each 4 or 8) and keeps
// the plan valid. A block is selected while any of its sites has 8 bits. A block that becomes
// selected takes the next rank with the reason "chosen by hand"; one that becomes unselected gives
// its rank up, and the blocks ranked after it move up by one (their "(rank N)" texts follow). The
// policy becomes "manual" with manual_blocks = the selected blocks in rank order, unless the
// selection is unchanged. Throws Error(InvalidArgument) for a block outside 0..L-1 or bits not in
// {4, 8}, leaving the plan untouched.
void set_block_bits(Plan& plan, int64_t block, const SiteBits& bits);

// Cost side of a plan: the share of the linear layers' multiply-accumulates (q/k/v, o, gate/up,
// down of every block; the head excluded) whose inputs are quantized to 8 bits, and the
// MAC-weighted mean activation bits. Shapes come from the trace's site widths: d_model (qkv,
// gate_up), n_heads·head_dim (o), d_ff (down), n_kv_heads·head_dim (k, v). Throws
// Error(InvalidArgument) when the plan and the trace have different block counts or the trace has
// no site widths.
struct PlanCost {
  double mac_share_8bit = 0;   // 0..1
  double mean_act_bits = 4;    // MAC-weighted
  int64_t sites_8bit = 0;      // quantizer sites at 8 bits (of 4·L)
};
PlanCost plan_cost(const Plan& plan, const Trace& trace);

}  // namespace dptq
