// dptq/trace.hpp — what a profiling run measured (DESIGN §4), in memory and as an HDF5 trace file.
// Torch-free: the studio and `dptq report` / `dptq plan` read traces without LibTorch tensors.
//
// Contents
//   Aggregate        mean / quantiles / extrema of a per-token quantity
//   MassiveEntry     one large entry of a residual stream (value, channel, position, token)
//   StreamStats      residual stream h_l, l = 0..L (h_0 = embeddings, h_L = last block's output)
//   BlockStats       decoder block l = 0..L-1: Jump Ratios, Historical SNR, phase boundary marks
//   SiteStats        one activation-quantizer site of a block (qkv, o, gate_up, down) or K / V
//   Trace            all of the above + run metadata
//   write_trace / read_trace   HDF5 I/O (format "dptq-trace", version kTraceVersionMajor.Minor);
//                              file layout, dtypes and versioning rules: docs/trace-format.md
//   mark_phases                phases and emergence / disappearance marks from has_massive
//   SensitivityEntry / Sensitivity   measured per-block and per-site gain of 8-bit activations
//                              (optional, version 1.1; filled by dptq/sensitivity.hpp)
//
// Naming: fields are named as in docs/metrics.md and as the HDF5 datasets: blocks[l].jump_ratio.p99
// is row l of /blocks/jump_ratio/p99, sites[l][Site::Down].sqnr4_db of /sites/down/sqnr4_db.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace dptq {

inline constexpr const char* kTraceFormat = "dptq-trace";
inline constexpr int kTraceVersionMajor = 2;  // 2.0: fixed-length strings only
inline constexpr int kTraceVersionMinor = 0;

struct Aggregate {
  double mean = 0, min = 0, max = 0;
  double p1 = 0, p50 = 0, p99 = 0;  // streaming-histogram quantiles (relative error documented in docs/metrics.md)
  int64_t count = 0;                // tokens aggregated
};

struct MassiveEntry {
  float value = 0;        // signed value of h_l[t, channel]
  int64_t channel = 0;
  int64_t window = 0;     // calibration window index
  int64_t position = 0;   // token position inside the window
  int32_t token_id = -1;
  std::string token_text; // display text of the token (UTF-8 intended); must not contain NUL
};

struct StreamStats {
  int64_t index = 0;                 // l of h_l
  double top1_abs = 0;               // largest |h_l| seen
  double median_abs = 0;             // median |h_l| over all entries (streaming histogram)
  double ratio = 0;                  // top1_abs / median_abs
  int64_t n_massive = 0;             // entries with |v| >= abs threshold and >= rel threshold * median
  bool has_massive = false;          // n_massive > 0
  std::vector<MassiveEntry> top;     // top-k by |value|, at most one per (window, position, channel);
                                     // channel >= 0 (the file marks padding with channel -1)
  std::vector<float> channel_absmax; // [d] max |h_l[:, c]| over all tokens
  std::vector<float> position_absmax_mean;  // [seqlen] mean over windows of max_c |h_l[t, c]|
                                            // (same length for every stream)
};

struct BlockStats {
  int64_t index = 0;
  Aggregate jump_ratio;       // ||Δ_l||2 / ||h_l||2
  Aggregate jump_ratio_inf;   // ||Δ_l||inf / ||h_l||inf
  Aggregate jump_ratio_attn;  // ||a_l - h_l||2 / ||h_l||2
  Aggregate jump_ratio_mlp;   // ||h_{l+1} - a_l||2 / ||a_l||2
  Aggregate hsnr4_db;         // Historical SNR at 4 bits (dB), block input of l+1
  Aggregate hsnr8_db;
  Aggregate hsnr4_mlp_db;     // sublayer variant: h_l -> a_l at the MLP input
  Aggregate hsnr8_mlp_db;
  bool emergence = false;     // massive activations in h_{l+1} but not in h_l
  bool disappearance = false; // massive activations in h_l but not in h_{l+1}
};

enum class Site : int { Qkv = 0, O = 1, GateUp = 2, Down = 3, K = 4, V = 5 };
inline constexpr int kNumSites = 6;
inline constexpr std::array<const char*, kNumSites> kSiteNames = {"qkv", "o", "gate_up", "down", "k", "v"};

struct SiteStats {
  std::vector<float> channel_absmax;  // per input channel (for K/V: per kv-head channel, n_kv*hd);
                                      // same length for a given site in every block
  Aggregate token_absmax;             // per-token absmax distribution
  double kurtosis = 0;                // of all entries (Pearson, normal = 3)
  double sqnr4_db = 0;                // 10 log10(sum x^2 / sum (Q4(x) - x)^2), per-token 4-bit quantizer (KV: grouped)
  double code_entropy_bits = 0;       // entropy of the 4-bit code histogram, in bits (max 4)
};

struct TraceMeta {
  std::string model_path, model_name, model_fingerprint, tokenizer;
  std::string calib_source;           // file path or "builtin"
  int64_t windows = 0, seqlen = 0, tokens = 0;
  uint64_t seed = 0;
  std::string rotation = "none";      // quantizer view: "none" (γ-scaled) or "quarot" (R1ᵀ, γ folded)
  uint64_t rotation_seed = 0;
  double massive_abs_threshold = 100.0;
  double massive_rel_threshold = 1000.0;
  int64_t topk = 0;
  double act_clip_4bit = 0.9, act_clip_8bit = 1.0;
  bool act_asymmetric = true;
  std::string dptq_version, created_utc;
  int64_t n_layers = 0, d_model = 0;  // must equal blocks.size() and streams[].channel_absmax.size()
};

struct Phase {
  int64_t first_stream = 0, last_stream = 0;  // maximal run of streams h_l with massive activations
};

// Measured gain of 8-bit activations (docs/metrics.md §8): with every site of every block at 4
// bits (W4A4KV4) as the base, switch one block (all four sites) or one site to 8 bits and measure
// the decrease of the mean next-token NLL and of the mean KL(FP ‖ quantized) of the final logits.
// Positive = 8 bits help. `*_se` = standard error of the mean over windows (NaN for one window).
struct SensitivityEntry {
  double nll_gain = 0, nll_gain_se = 0;  // nats per predicted token
  double kl_gain = 0, kl_gain_se = 0;    // nats per predicted token
};
inline constexpr int kNumPlanSites = 4;  // qkv, o, gate_up, down (the first four kSiteNames)

struct Sensitivity {
  std::string method;         // base method of the quantized model ("quarot-rtn", ...)
  std::string text_source;    // calibration text path or "builtin"
  std::string window_mode;    // "random" (seeded crops, as profile) or "sequential" (ppl protocol)
  int64_t windows = 0, seqlen = 0, tokens = 0;
  uint64_t seed = 0;
  std::string created_utc;
  double fp_nll = 0;          // mean NLL of the FP model on these windows
  double base_nll = 0;        // mean NLL with every block at 4 bits
  double base_kl = 0;         // mean KL(FP ‖ base)
  bool has_sites = false;     // site rows measured (else `site` is empty)
  std::vector<SensitivityEntry> block;                              // [L]
  std::vector<std::array<SensitivityEntry, kNumPlanSites>> site;    // [L][qkv, o, gate_up, down] or empty
};

struct Trace {
  TraceMeta meta;
  std::vector<StreamStats> streams;                  // L + 1
  std::vector<BlockStats> blocks;                    // L
  std::vector<std::array<SiteStats, kNumSites>> sites;  // L x 6
  std::vector<Phase> phases;
  bool has_sensitivity = false;  // /sensitivity present (version >= 1.1 and measured)
  Sensitivity sensitivity;       // valid when has_sensitivity
};

// Atomic write: "<path>.tmp-<pid>" in the same folder, flush, close, fsync, rename over `path`; on any
// failure the temp file is removed and `path` is untouched. First checks that the sizes agree
// (streams = L + 1, sites = L, meta.n_layers = L, every stream d_model wide, uniform seqlen and
// site widths, index fields = position, top channels >= 0, no NUL in strings, phases within
// [0, L]) and throws Error(InvalidArgument) before touching the disk if not; Error(Io) for
// file-system failures. Every error is one line naming `path`. Safe to call from any thread.
void write_trace(const Trace& trace, const std::filesystem::path& path);
// Throws Error(Io) for a missing or unreadable file, Error(Format) for a non-HDF5, non-trace,
// truncated or malformed file (naming the missing / misshapen dataset or attribute),
// Error(Version) for an unknown major version. Newer minor versions read fine (extra content is
// ignored). Stream / block `index` fields are set from the row.
// Strings must be fixed-length (format 2.x): a variable-length string anywhere (format 1.x) is
// refused before HDF5 reads it (HDF5 1.10's global-heap reader crashes or loops on corrupt files).
// Isolation: HDF5 1.10 also misreads crafted object headers (fuzz_trace), so the file is read in a
// child process that hands back a well-formed copy; a child that crashes or runs past `timeout_s`
// becomes Error(Format) naming `path`. Nothing a file holds can crash or hang the caller.
Trace read_trace(const std::filesystem::path& path, double timeout_s = 60);
// The same reader in this process, without the isolation: for the fuzzer (which needs the
// coverage) and for files this process wrote itself.
Trace read_trace_in_process(const std::filesystem::path& path);
// Reads a format 1.x or 2.x trace, variable-length strings included, to convert it
// (`dptq trace-upgrade`), isolated like read_trace.
Trace read_legacy_trace(const std::filesystem::path& path, double timeout_s = 60);

// The current time as traces and plans record it: "2026-12-06T23:59:59Z" (UTC).
std::string utc_now();

// Phases (maximal runs of streams with has_massive) and the emergence / disappearance marks of
// every block from streams[].has_massive (DESIGN §4.2). Replaces trace.phases and
// blocks[].emergence / disappearance; throws Error(InvalidArgument) unless streams = blocks + 1.
void mark_phases(Trace& trace);

}  // namespace dptq
