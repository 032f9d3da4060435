// dptq/quantize.hpp — the W4A4KV4 engine (DESIGN §5–7): QuaRot rotations, RTN / GPTQ weights,
// per-block activation bits from a DynamicPTQ plan, the KV-cache quantizer, and the real int4
// checkpoint. Torch-free header: the CLI, the studio and the benches share it.
//
// Contents
//   kQuantMethods / QuantizeOptions   rtn | gptq | quarot-rtn | quarot-gptq and their settings
//   uniform_plan            a plan with the same activation bits in every block (no policy)
//   quantize_model          FP model -> simulated ("fake") quantized model, in place
//   set_activation_plan     swap the per-block activation bits of a quantized model (sweeps)
//   quant_summary           one line describing a quantized model
//   save_quantized_checkpoint / load_quantized_checkpoint / is_quantized_checkpoint
//   OracleOptions / oracle_plan / spearman
//
// What quantize_model does, in order (QuaRot's recipe; exact conventions in docs/checkpoint-format.md):
//   1. quarot-*: fold every RMSNorm γ into the linear layers that read it (the norms become 1 and
//      lm_head is untied from the embeddings); fuse R1 (d×d, seeded random Hadamard or a file's
//      "R1") into embeddings, q/k/v/gate/up (inputs), o/down (outputs) and lm_head; fuse R2 (hd×hd)
//      into v_proj rows and o_proj columns per head; install the online rotations: a random
//      Hadamard of d_ff before down_proj (fused into down_proj's columns), one across heads before
//      o_proj (fused into o_proj's columns) and one of hd on queries and keys after RoPE.
//      Without quantization this leaves the logits unchanged (tests/test_quantize.cpp).
//   2. weights: every q/k/v/o/gate/up/down_proj to `weight_bits` per output channel, symmetric,
//      with RTN + MSE clip search, or GPTQ calibrated layer by layer on the calibration stream
//      (activations unquantized while calibrating, as QuaRot does); scales are rounded to fp16 so
//      the simulated model is exactly what the checkpoint stores.
//   3. activations: per token at the inputs of q/k/v, o, gate/up and down_proj with the plan's
//      bits per block (8 in selected blocks, else 4) and clip ratios; KV cache: the plan's bits,
//      asymmetric groups of min(128, head_dim), clip 0.95, keys after the online rotation.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "dptq/model.hpp"
#include "dptq/plan.hpp"
#include "dptq/quant_config.hpp"  // kQuantMethods, is_quant_method
#include "dptq/task.hpp"

namespace dptq {


struct QuantizeOptions {
  std::string method = "quarot-rtn";     // one of kQuantMethods
  uint64_t rotation_seed = 0;            // R1: seed, online d_ff: seed+1, heads: seed+2, R2 / keys: seed+3
  std::filesystem::path rotation_file;   // SpinQuant-style safetensors with "R1" [d, d] and "R2"
                                         // [hd, hd] or "model.layers.N.self_attn.R2"; "" = seeded
  bool quantize_weights = true;          // false: weights stay FP (rotated)
  bool quantize_activations = true;      // false: activations and KV stay FP (weight-only, W4A16)
  bool weight_mse_clip = true;           // RTN clip search (grid 100, shrink 0.8, norm 2.4)
  // GPTQ (gptq, quarot-gptq): calibration windows, GPTQ-style random crops of the text.
  std::string calib = "builtin";         // "builtin" or a UTF-8 text file
  int64_t calib_samples = 8;
  int64_t calib_seqlen = 2048;
  uint64_t calib_seed = 0;
  int64_t calib_holdout_tokens = 0;      // the text's last N tokens are never used (oracle slice)
  double gptq_damp = 0.01;
  int64_t gptq_block = 128;
  bool gptq_act_order = true;
};

// A plan for `model` with `act_bits` at every site of every block (policy "manual", nothing
// selected when act_bits is 4; every block selected when 8), base method `method`, DESIGN §5
// quantizer settings.
Plan uniform_plan(const Model& model, const std::string& method, int act_bits = 4);

// Quantizes `model` in place under `plan` (check_plan_matches first, naming `plan_where`).
// Throws InvalidArgument for an unknown method, an already quantized model, a bad rotation file
// (missing, wrong shape, not orthogonal: one line naming it); Cancelled through `progress`.
void quantize_model(Model& model, const Plan& plan, const QuantizeOptions& opts, Progress* progress = nullptr,
                    const std::string& plan_where = "");

// Replaces the per-block activation bits and quantizer settings of a quantized model by the
// plan's (weights untouched; weight_bits must equal the model's). Throws InvalidArgument.
void set_activation_plan(Model& model, const Plan& plan, const std::string& plan_where = "");

// The arithmetic of a quantized model's linear layers (dptq/int_engine.hpp). Fake: fp32 GEMMs on
// dequantized activations and weights (the simulation every paper reports, and the default: every
// number in docs/results.md). Int: the same sums computed exactly, u8 x s8 with int32 accumulation
// (FBGEMM); each layer equals fake within fp32 rounding (docs/benchmarks.md for what that means for
// a whole W4A4KV4 model, and for speed). quantize_model and the checkpoint loader leave Fake on.
enum class Engine { Fake, Int };
Engine parse_engine(const std::string& s);  // "int" | "fake"; throws InvalidArgument
const char* engine_name(Engine e);
// Switches `model`'s engine; returns the one in use. Int needs a CPU model with quantized
// activations and symmetric per-channel weight codes of at most 8 bits: otherwise the model stays
// on Fake and *why (when given) says why.
Engine set_engine(Model& model, Engine engine, std::string* why = nullptr);
Engine model_engine(const Model& model);  // Fake for an FP model

bool is_quantized(const Model& model);
// "quarot-rtn W4A4KV4, 8-bit activations in blocks 0, 3 (2 of 30)" or "FP (not quantized)".
std::string quant_summary(const Model& model);
// The plan of a quantized model (throws InvalidArgument when it is not quantized).
const Plan& model_plan(const Model& model);

// Checkpoint folder (docs/checkpoint-format.md): config.json, tokenizer files, model.safetensors
// (packed int4 linear weights + fp16 scales, fp16 everything else, online rotations in fp32),
// quant_config.json (format "dptq-quantized" 1.0: method, quantizers, rotations, the plan).
// Written into "<out>.tmp-<pid>" and renamed; `out` must not exist (InvalidArgument).
struct CheckpointStats {
  int64_t linear_params = 0;    // q/k/v/o/gate/up/down weights
  int64_t linear_bytes = 0;     // their packed codes + scales
  int64_t linear_fp16_bytes = 0;  // 2 bytes per weight
  int64_t total_bytes = 0;      // every file of the folder
};
CheckpointStats save_quantized_checkpoint(const Model& model, const std::filesystem::path& out,
                                          Progress* progress = nullptr);
// The checks save_quantized_checkpoint would fail on, for `model` quantized under `plan` — run them
// before the slow quantization (Unsupported naming `out`).
void check_checkpointable(const Model& model, const Plan& plan, const std::filesystem::path& out);
bool is_quantized_checkpoint(const std::filesystem::path& path);  // a folder with quant_config.json
Model load_quantized_checkpoint(const std::filesystem::path& path, const LoadOptions& opts = {});
ModelInfo inspect_quantized_checkpoint(const std::filesystem::path& path);

// The `oracle` policy (DESIGN §5): greedy selection by measured perplexity of a quantized model on
// held-out windows. Step 1 measures every single block (its gain = ppl(base) - ppl(base + block));
// each further step adds the block that lowers perplexity most. Blocks before the first changed
// one are shared between candidates, so a candidate costs only the blocks from its own onwards.
struct OracleOptions {
  int64_t budget = 1;
  std::vector<std::vector<int32_t>> windows;  // held-out token windows
};
struct OracleResult {
  Plan plan;                          // policy "oracle"; selected blocks in greedy order
  double base_ppl = 0;                // every block at the model plan's bits
  std::vector<double> single_ppl;     // ppl with only block l switched to 8 bits (step 1)
  std::vector<double> single_gain;    // base_ppl - single_ppl[l]
  std::vector<double> step_ppl;       // ppl after each greedy step
};
// `model` must be quantized; its current plan is the base (restored on return).
OracleResult oracle_plan(Model& model, const OracleOptions& opts, Progress* progress = nullptr);

// Spearman rank correlation (average ranks for ties; NaN pairs dropped); NaN for < 3 pairs.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace dptq
