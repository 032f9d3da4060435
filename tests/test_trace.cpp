// HDF5 trace files (dptq/trace.hpp, docs/trace-format.md): exact round trip, phase marking,
// rejection of broken files, atomic writes, and readability by h5dump / h5py.
//
// Some error cases patch a written trace. With hdf5.h visible to this test they use the HDF5 C API;
// otherwise they fall back to h5py (python3) and skip with a message when neither is available.
#include <sys/wait.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "dptq/error.hpp"
#include "dptq/trace.hpp"
#include "test_util.hpp"

#if __has_include(<hdf5.h>)
#include <hdf5.h>
#define DPTQ_TEST_HAVE_HDF5_API 1
#else
#define DPTQ_TEST_HAVE_HDF5_API 0
#endif

namespace fs = std::filesystem;
using dptq::Error;
using dptq::ErrorKind;
using dptq::Trace;

namespace {

constexpr int kLayers = 3, kDim = 8, kSeqlen = 5, kTopK = 3;
constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- building a trace with known content

dptq::Aggregate random_aggregate(std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-5.0, 50.0);
  dptq::Aggregate a;
  a.mean = u(rng);
  a.min = u(rng);
  a.max = u(rng);
  a.p1 = u(rng);
  a.p50 = u(rng);
  a.p99 = u(rng);
  a.count = std::uniform_int_distribution<int64_t>(0, int64_t{1} << 40)(rng);
  return a;
}

std::vector<float> random_floats(std::mt19937& rng, size_t n) {
  std::uniform_real_distribution<float> u(-1000.0f, 1000.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

Trace make_trace(uint32_t seed = 1234) {
  std::mt19937 rng(seed);
  Trace t;
  dptq::TraceMeta& m = t.meta;
  m.model_path = "/models/SmolLM2 – 135M/Ünïcode.gguf";
  m.model_name = "SmolLM2-135M-Instruct";
  m.model_fingerprint = "sha256:0123456789abcdef";
  m.tokenizer = "gpt2 (smollm pre-tokenizer)";
  m.calib_source = "builtin";
  m.windows = 7;
  m.seqlen = kSeqlen;
  m.tokens = 7 * kSeqlen;
  m.seed = std::numeric_limits<uint64_t>::max() - 5;  // needs all 64 unsigned bits
  m.rotation = "quarot";
  m.rotation_seed = uint64_t{1} << 63;
  m.massive_abs_threshold = 100.0;
  m.massive_rel_threshold = 1000.0;
  m.topk = kTopK;
  m.act_clip_4bit = 0.9;
  m.act_clip_8bit = 1.0;
  m.act_asymmetric = false;  // not the default, so a reader that ignores it fails
  m.dptq_version = "0.1.0-test";
  m.created_utc = "2026-01-02T03:04:05Z";
  m.n_layers = kLayers;
  m.d_model = kDim;

  const char* texts[] = {"▁Привет", "日本語", "🙂", "", " \"q\"\t\\", "é"};
  const size_t top_sizes[kLayers + 1] = {kTopK, 0, 2, 1};  // padding in every shape
  const bool massive[kLayers + 1] = {false, true, true, false};
  for (int i = 0; i <= kLayers; ++i) {
    dptq::StreamStats s;
    s.index = i;
    s.top1_abs = std::uniform_real_distribution<double>(1, 3000)(rng);
    s.median_abs = std::uniform_real_distribution<double>(0.01, 1)(rng);
    s.ratio = s.top1_abs / s.median_abs;
    s.n_massive = massive[i] ? 17 + i : 0;
    s.has_massive = massive[i];
    s.channel_absmax = random_floats(rng, kDim);
    s.position_absmax_mean = random_floats(rng, kSeqlen);
    for (size_t j = 0; j < top_sizes[i]; ++j) {
      dptq::MassiveEntry e;
      e.value = std::uniform_real_distribution<float>(-2000, 2000)(rng);
      e.channel = std::uniform_int_distribution<int64_t>(0, kDim - 1)(rng);
      e.window = std::uniform_int_distribution<int64_t>(0, 6)(rng);
      e.position = std::uniform_int_distribution<int64_t>(0, kSeqlen - 1)(rng);
      e.token_id = std::uniform_int_distribution<int32_t>(0, 49151)(rng);
      e.token_text = texts[(i + j) % std::size(texts)];
      s.top.push_back(e);
    }
    t.streams.push_back(s);
  }
  // Values a trace really holds: +inf HSNR (zero quantization noise), NaN (no tokens), inf absmax.
  t.streams[0].top1_abs = kInf;
  t.streams[2].ratio = kNaN;
  t.streams[1].channel_absmax[3] = kInfF;
  t.streams[3].channel_absmax[0] = -std::numeric_limits<float>::quiet_NaN();
  t.streams[0].top[1].value = -0.0f;

  const size_t site_channels[dptq::kNumSites] = {kDim, kDim, kDim, 2 * kDim, kDim / 2, kDim / 2};
  for (int l = 0; l < kLayers; ++l) {
    dptq::BlockStats b;
    b.index = l;
    b.jump_ratio = random_aggregate(rng);
    b.jump_ratio_inf = random_aggregate(rng);
    b.jump_ratio_attn = random_aggregate(rng);
    b.jump_ratio_mlp = random_aggregate(rng);
    b.hsnr4_db = random_aggregate(rng);
    b.hsnr8_db = random_aggregate(rng);
    b.hsnr4_mlp_db = random_aggregate(rng);
    b.hsnr8_mlp_db = random_aggregate(rng);
    t.blocks.push_back(b);
    std::array<dptq::SiteStats, dptq::kNumSites> row;
    for (int s = 0; s < dptq::kNumSites; ++s) {
      row[s].channel_absmax = random_floats(rng, site_channels[s]);
      row[s].token_absmax = random_aggregate(rng);
      row[s].kurtosis = std::uniform_real_distribution<double>(1, 500)(rng);
      row[s].sqnr4_db = std::uniform_real_distribution<double>(-3, 30)(rng);
      row[s].code_entropy_bits = std::uniform_real_distribution<double>(0, 4)(rng);
    }
    t.sites.push_back(row);
  }
  t.blocks[1].hsnr8_db.max = kInf;
  t.blocks[2].hsnr4_db.mean = kNaN;
  t.blocks[0].jump_ratio_inf.min = -kInf;
  t.sites[2][dptq::kNumSites - 1].sqnr4_db = kInf;
  t.sites[0][0].channel_absmax[1] = std::numeric_limits<float>::quiet_NaN();
  dptq::mark_phases(t);
  return t;
}

// ---- exact comparison (bit patterns, so NaN == NaN and -0 != +0)

bool same(double a, double b) {
  return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
}
bool same(float a, float b) {
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

void check_same(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  INFO(what);
  REQUIRE(a.size() == b.size());
  size_t i = 0;
  while (i < a.size() && same(a[i], b[i])) ++i;
  INFO("first difference at entry " << i);
  CHECK(i == a.size());
}

void check_same(const dptq::Aggregate& a, const dptq::Aggregate& b, const std::string& what) {
  INFO(what);
  CHECK(same(a.mean, b.mean));
  CHECK(same(a.min, b.min));
  CHECK(same(a.max, b.max));
  CHECK(same(a.p1, b.p1));
  CHECK(same(a.p50, b.p50));
  CHECK(same(a.p99, b.p99));
  CHECK(a.count == b.count);
}

void check_same(const Trace& a, const Trace& b) {
  const dptq::TraceMeta &x = a.meta, &y = b.meta;
  CHECK(x.model_path == y.model_path);
  CHECK(x.model_name == y.model_name);
  CHECK(x.model_fingerprint == y.model_fingerprint);
  CHECK(x.tokenizer == y.tokenizer);
  CHECK(x.calib_source == y.calib_source);
  CHECK(x.windows == y.windows);
  CHECK(x.seqlen == y.seqlen);
  CHECK(x.tokens == y.tokens);
  CHECK(x.seed == y.seed);
  CHECK(x.rotation == y.rotation);
  CHECK(x.rotation_seed == y.rotation_seed);
  CHECK(same(x.massive_abs_threshold, y.massive_abs_threshold));
  CHECK(same(x.massive_rel_threshold, y.massive_rel_threshold));
  CHECK(x.topk == y.topk);
  CHECK(same(x.act_clip_4bit, y.act_clip_4bit));
  CHECK(same(x.act_clip_8bit, y.act_clip_8bit));
  CHECK(x.act_asymmetric == y.act_asymmetric);
  CHECK(x.dptq_version == y.dptq_version);
  CHECK(x.created_utc == y.created_utc);
  CHECK(x.n_layers == y.n_layers);
  CHECK(x.d_model == y.d_model);

  REQUIRE(a.streams.size() == b.streams.size());
  for (size_t i = 0; i < a.streams.size(); ++i) {
    const dptq::StreamStats &s = a.streams[i], &r = b.streams[i];
    INFO("stream " << i);
    CHECK(s.index == r.index);
    CHECK(same(s.top1_abs, r.top1_abs));
    CHECK(same(s.median_abs, r.median_abs));
    CHECK(same(s.ratio, r.ratio));
    CHECK(s.n_massive == r.n_massive);
    CHECK(s.has_massive == r.has_massive);
    check_same(s.channel_absmax, r.channel_absmax, "channel_absmax");
    check_same(s.position_absmax_mean, r.position_absmax_mean, "position_absmax_mean");
    REQUIRE(s.top.size() == r.top.size());
    for (size_t j = 0; j < s.top.size(); ++j) {
      INFO("top " << j);
      CHECK(same(s.top[j].value, r.top[j].value));
      CHECK(s.top[j].channel == r.top[j].channel);
      CHECK(s.top[j].window == r.top[j].window);
      CHECK(s.top[j].position == r.top[j].position);
      CHECK(s.top[j].token_id == r.top[j].token_id);
      CHECK(s.top[j].token_text == r.top[j].token_text);
    }
  }
  REQUIRE(a.blocks.size() == b.blocks.size());
  for (size_t l = 0; l < a.blocks.size(); ++l) {
    const dptq::BlockStats &s = a.blocks[l], &r = b.blocks[l];
    INFO("block " << l);
    CHECK(s.index == r.index);
    check_same(s.jump_ratio, r.jump_ratio, "jump_ratio");
    check_same(s.jump_ratio_inf, r.jump_ratio_inf, "jump_ratio_inf");
    check_same(s.jump_ratio_attn, r.jump_ratio_attn, "jump_ratio_attn");
    check_same(s.jump_ratio_mlp, r.jump_ratio_mlp, "jump_ratio_mlp");
    check_same(s.hsnr4_db, r.hsnr4_db, "hsnr4_db");
    check_same(s.hsnr8_db, r.hsnr8_db, "hsnr8_db");
    check_same(s.hsnr4_mlp_db, r.hsnr4_mlp_db, "hsnr4_mlp_db");
    check_same(s.hsnr8_mlp_db, r.hsnr8_mlp_db, "hsnr8_mlp_db");
    CHECK(s.emergence == r.emergence);
    CHECK(s.disappearance == r.disappearance);
  }
  REQUIRE(a.sites.size() == b.sites.size());
  for (size_t l = 0; l < a.sites.size(); ++l)
    for (int k = 0; k < dptq::kNumSites; ++k) {
      const dptq::SiteStats &s = a.sites[l][k], &r = b.sites[l][k];
      INFO("site " << dptq::kSiteNames[k] << " of block " << l);
      check_same(s.channel_absmax, r.channel_absmax, "channel_absmax");
      check_same(s.token_absmax, r.token_absmax, "token_absmax");
      CHECK(same(s.kurtosis, r.kurtosis));
      CHECK(same(s.sqnr4_db, r.sqnr4_db));
      CHECK(same(s.code_entropy_bits, r.code_entropy_bits));
    }
  REQUIRE(a.phases.size() == b.phases.size());
  for (size_t p = 0; p < a.phases.size(); ++p) {
    CHECK(a.phases[p].first_stream == b.phases[p].first_stream);
    CHECK(a.phases[p].last_stream == b.phases[p].last_stream);
  }
}

// ---- helpers for files and tools

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream o(p, std::ios::binary);
  o.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Names of the files in `dir` (to see that no temporary file is left behind).
std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Expects read_trace(p) to throw Error(kind) whose one-line message names the file and contains
// `needle`.
// Expects `op()` to throw Error(kind), one line, naming `p` and containing `needle`.
template <class Op>
void expect_error(Op op, const fs::path& p, ErrorKind kind, const std::string& needle) {
  try {
    op();
    FAIL("no error for " << p << ", expected one containing '" << needle << "'");
  } catch (const Error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(e.kind() == kind);
    CHECK(e.file() == p.string());
    CHECK(what.find(needle) != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
  }
}

void expect_read_error(const fs::path& p, ErrorKind kind, const std::string& needle) {
  expect_error([&] { (void)dptq::read_trace(p); }, p, kind, needle);
}

struct Run {
  int rc = -1;
  std::string out;
};
// Runs a shell command, capturing stdout and stderr.
Run run(const std::string& cmd) {
  Run r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}
bool have_command(const std::string& name) {
  return run("command -v " + name + " >/dev/null").rc == 0;
}

std::string quoted(const fs::path& p) {
  std::string s = "'";
  for (char c : p.string()) s += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return s + "'";
}

// A python3 that can import h5py ("" when none): Debian's python3-h5py lives in /usr/bin/python3,
// which a virtualenv on the PATH may hide.
std::string python_with_h5py() {
  for (const char* py : {"/usr/bin/python3", "python3"})
    if (run(std::string(py) + " -c 'import h5py' >/dev/null").rc == 0) return py;
  return "";
}

// Runs a python script with h5py against `file`; the script sees the path as sys.argv[1].
Run run_h5py(const std::string& python, const fs::path& dir, const std::string& script,
             const fs::path& file) {
  const fs::path py = dir / "check.py";
  write_bytes(py, "import sys, h5py, numpy as np\nf_path = sys.argv[1]\n" + script);
  return run(python + " " + quoted(py) + " " + quoted(file));
}

// ---- patching written traces for the error cases

// ShrinkDataset replaces a dataset by float64[2]; HugeDataset by an unwritten float32[N, 10^9].
enum class Patch {
  VersionAttr,
  LegacyStrings,
  DeleteFormatAttr,
  DeleteObject,
  ShrinkDataset,
  HugeDataset,
  AddDataset
};

// Applies one patch to `file` (`name` is an attribute value or an object path). False when no
// means to patch is available (the caller skips).
bool patch(const fs::path& file, Patch what, const std::string& name, const fs::path& scratch) {
#if DPTQ_TEST_HAVE_HDF5_API
  (void)scratch;
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  herr_t rc = 0;
  switch (what) {
    case Patch::VersionAttr:  // fixed-length, as the writer stores strings (format 2.x)
    case Patch::LegacyStrings: {  // format 1.x: variable-length format and version strings
      const bool legacy = what == Patch::LegacyStrings;
      for (const char* attr : {"format", "version"}) {
        if (!legacy && std::string(attr) == "format") continue;
        const std::string value = legacy ? (std::string(attr) == "format" ? "dptq-trace" : "1.1") : name;
        const hid_t type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, legacy ? H5T_VARIABLE : value.size());
        H5Tset_cset(type, H5T_CSET_UTF8);
        const hid_t space = H5Screate(H5S_SCALAR);
        if (H5Adelete(f, attr) < 0) rc = -1;
        const hid_t a = H5Acreate2(f, attr, type, space, H5P_DEFAULT, H5P_DEFAULT);
        const char* p = value.c_str();
        if (a < 0 || H5Awrite(a, type, legacy ? static_cast<const void*>(&p) : value.data()) < 0) rc = -1;
        H5Aclose(a);
        H5Sclose(space);
        H5Tclose(type);
      }
      break;
    }
    case Patch::DeleteFormatAttr:
      rc = H5Adelete(f, "format");
      break;
    case Patch::DeleteObject:
      rc = H5Ldelete(f, name.c_str(), H5P_DEFAULT);
      break;
    case Patch::ShrinkDataset:
    case Patch::AddDataset: {
      if (what == Patch::ShrinkDataset) rc = H5Ldelete(f, name.c_str(), H5P_DEFAULT);
      const hsize_t dims[1] = {2};
      const double v[2] = {1.0, 2.0};
      const hid_t space = H5Screate_simple(1, dims, nullptr);
      const hid_t d =
          H5Dcreate2(f, name.c_str(), H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      if (rc >= 0)
        rc = d >= 0 ? H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) : -1;
      H5Dclose(d);
      H5Sclose(space);
      break;
    }
    case Patch::HugeDataset: {
      rc = H5Ldelete(f, name.c_str(), H5P_DEFAULT);
      const hsize_t dims[2] = {kLayers + 1, 1'000'000'000};
      const hid_t space = H5Screate_simple(2, dims, nullptr);
      const hid_t d =
          H5Dcreate2(f, name.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      if (d < 0) rc = -1;
      H5Dclose(d);
      H5Sclose(space);
      break;
    }
  }
  REQUIRE(H5Fclose(f) >= 0);
  REQUIRE(rc >= 0);
  return true;
#else
  const std::string python = python_with_h5py();
  if (python.empty()) return false;
  std::string script = "f = h5py.File(f_path, 'r+')\n";
  switch (what) {
    case Patch::VersionAttr:
      script += "f.attrs['version'] = np.bytes_('" + name + "')\n";
      break;
    case Patch::LegacyStrings:  // h5py stores str as a variable-length string
      script += "f.attrs['format'] = 'dptq-trace'\nf.attrs['version'] = '1.1'\n";
      break;
    case Patch::DeleteFormatAttr:
      script += "del f.attrs['format']\n";
      break;
    case Patch::DeleteObject:
      script += "del f['" + name + "']\n";
      break;
    case Patch::ShrinkDataset:
      script += "del f['" + name + "']\nf['" + name + "'] = np.array([1.0, 2.0])\n";
      break;
    case Patch::AddDataset:
      script += "f['" + name + "'] = np.array([1.0, 2.0])\n";
      break;
    case Patch::HugeDataset:
      script += "del f['" + name + "']\nf.create_dataset('" + name + "', shape=(" +
                std::to_string(kLayers + 1) + ", 10**9), dtype='f4')\n";
      break;
  }
  script += "f.close()\n";
  const Run r = run_h5py(python, scratch, script, file);
  INFO(r.out);
  REQUIRE(r.rc == 0);
  return true;
#endif
}

}  // namespace

TEST_CASE("trace: write then read reproduces every field exactly") {
  const fs::path dir = dptq::test::scratch_dir("trace_roundtrip");
  const Trace t = make_trace();
  REQUIRE(t.phases.size() == 1);
  const fs::path p = dir / "run.h5";
  dptq::write_trace(t, p);
  CHECK(listing(dir) == std::vector<std::string>{"run.h5"});  // no temporary left
  const Trace r = dptq::read_trace(p);
  check_same(t, r);

  SUBCASE("overwriting an existing trace replaces it") {
    const Trace t2 = make_trace(99);
    dptq::write_trace(t2, p);
    CHECK(listing(dir) == std::vector<std::string>{"run.h5"});
    check_same(t2, dptq::read_trace(p));
  }
  SUBCASE("no top entries at all and no phases") {
    Trace t2 = make_trace(7);
    for (auto& s : t2.streams) {
      s.top.clear();
      s.has_massive = false;
    }
    dptq::mark_phases(t2);
    dptq::write_trace(t2, p);
    check_same(t2, dptq::read_trace(p));
  }
  SUBCASE("a larger trace (compressed chunks span several rows)") {
    Trace t2 = make_trace(5);
    std::mt19937 rng(3);
    t2.meta.d_model = 20000;
    for (auto& s : t2.streams) s.channel_absmax = random_floats(rng, 20000);
    for (auto& row : t2.sites) row[3].channel_absmax = random_floats(rng, 70000);
    dptq::write_trace(t2, p);
    check_same(t2, dptq::read_trace(p));
  }
}

TEST_CASE("trace: mark_phases finds maximal runs and boundary blocks") {
  // streams has_massive pattern -> expected phases and emergence / disappearance per block.
  struct Case {
    const char* name;
    std::vector<bool> massive;
    std::vector<dptq::Phase> phases;
    std::vector<int> emergence, disappearance;  // block indices
  };
  const std::vector<Case> cases = {
      {"no massive activations", {false, false, false, false}, {}, {}, {}},
      {"one phase", {false, true, true, false, false}, {{1, 2}}, {0}, {2}},
      {"two phases",
       {false, true, false, false, true, true, false},
       {{1, 1}, {4, 5}},
       {0, 3},
       {1, 5}},
      {"massive from h_0", {true, true, false, false}, {{0, 1}}, {}, {1}},
      {"massive to the last stream", {false, false, true, true}, {{2, 3}}, {1}, {}},
      {"massive everywhere", {true, true, true}, {{0, 2}}, {}, {}},
      {"single stream h_L only", {false, false, true}, {{2, 2}}, {1}, {}},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    Trace t;
    for (size_t i = 0; i < c.massive.size(); ++i) {
      t.streams.emplace_back();
      t.streams.back().index = static_cast<int64_t>(i);
      t.streams.back().has_massive = c.massive[i];
    }
    t.blocks.resize(c.massive.size() - 1);
    t.phases = {{9, 9}};  // stale content is replaced
    t.blocks[0].emergence = t.blocks[0].disappearance = true;
    dptq::mark_phases(t);
    REQUIRE(t.phases.size() == c.phases.size());
    for (size_t p = 0; p < c.phases.size(); ++p) {
      CHECK(t.phases[p].first_stream == c.phases[p].first_stream);
      CHECK(t.phases[p].last_stream == c.phases[p].last_stream);
    }
    for (size_t l = 0; l < t.blocks.size(); ++l) {
      INFO("block " << l);
      const bool em =
          std::find(c.emergence.begin(), c.emergence.end(), int(l)) != c.emergence.end();
      const bool dis = std::find(c.disappearance.begin(), c.disappearance.end(), int(l)) !=
                       c.disappearance.end();
      CHECK(t.blocks[l].emergence == em);
      CHECK(t.blocks[l].disappearance == dis);
    }
  }
  Trace bad;
  bad.streams.resize(3);
  bad.blocks.resize(3);
  CHECK_THROWS_AS(dptq::mark_phases(bad), Error);
}

TEST_CASE("trace: reading rejects missing, foreign, truncated and broken files") {
  const fs::path dir = dptq::test::scratch_dir("trace_bad");
  const fs::path good = dir / "good.h5";
  dptq::write_trace(make_trace(), good);
  const std::string bytes = read_bytes(good);
  REQUIRE(bytes.size() > 2000);

  expect_read_error(dir / "missing.h5", ErrorKind::Io, "No such file");
  expect_read_error(dir, ErrorKind::Io, "not a regular file");

  write_bytes(dir / "text.h5", "layer,jump_ratio\n0,0.5\n1,0.25\n");
  expect_read_error(dir / "text.h5", ErrorKind::Format, "not a dptq trace");
  write_bytes(dir / "empty.h5", "");
  expect_read_error(dir / "empty.h5", ErrorKind::Format, "not a dptq trace");

  for (const size_t keep :
       {bytes.size() / 2, bytes.size() - 1, size_t{1000}, size_t{100}, size_t{8}}) {
    INFO("truncated to " << keep << " of " << bytes.size() << " bytes");
    const fs::path p = dir / "truncated.h5";
    write_bytes(p, bytes.substr(0, keep));
    expect_read_error(p, ErrorKind::Format, "HDF5 file");
  }

  // Patched copies of the good file.
  auto copy = [&](const char* name) {
    const fs::path p = dir / name;
    write_bytes(p, bytes);
    return p;
  };
  bool patched = patch(copy("v3.h5"), Patch::VersionAttr, "3.0", dir);
  DPTQ_SKIP_UNLESS(patched,
                   "neither hdf5.h nor python3 with h5py is available to patch trace files");
  expect_read_error(dir / "v3.h5", ErrorKind::Version,
                    "unsupported trace version 3.0 (this build reads 2.x)");

  patch(copy("v0.h5"), Patch::VersionAttr, "0.9", dir);
  expect_read_error(dir / "v0.h5", ErrorKind::Version, "unsupported trace version 0.9");

  // Format 1.x (variable-length strings) is refused before HDF5 reads a string from the global
  // heap; read_legacy_trace (dptq trace-upgrade) still reads it.
  const fs::path legacy = copy("v1_1.h5");
  patch(legacy, Patch::LegacyStrings, "", dir);
  expect_read_error(legacy, ErrorKind::Format, "trace format 1.x (variable-length strings)");
  expect_read_error(legacy, ErrorKind::Format, "dptq trace-upgrade");
  check_same(make_trace(), dptq::read_legacy_trace(legacy));

  patch(copy("vbad.h5"), Patch::VersionAttr, "one", dir);
  expect_read_error(dir / "vbad.h5", ErrorKind::Format, "version");

  patch(copy("noformat.h5"), Patch::DeleteFormatAttr, "", dir);
  expect_read_error(dir / "noformat.h5", ErrorKind::Format, "not a dptq trace");

  patch(copy("nop99.h5"), Patch::DeleteObject, "/blocks/jump_ratio/p99", dir);
  expect_read_error(dir / "nop99.h5", ErrorKind::Format, "missing dataset /blocks/jump_ratio/p99");

  patch(copy("nosite.h5"), Patch::DeleteObject, "/sites/gate_up", dir);
  expect_read_error(dir / "nosite.h5", ErrorKind::Format,
                    "missing dataset /sites/gate_up/channel_absmax");

  patch(copy("nometa.h5"), Patch::DeleteObject, "/meta", dir);
  expect_read_error(dir / "nometa.h5", ErrorKind::Format, "missing attribute /meta@model_path");

  patch(copy("shape.h5"), Patch::ShrinkDataset, "/streams/ratio", dir);
  expect_read_error(dir / "shape.h5", ErrorKind::Format,
                    "dataset /streams/ratio has shape [2], expected [4]");

  // A corrupt extent must not make the reader allocate gigabytes.
  patch(copy("huge.h5"), Patch::HugeDataset, "/streams/top_value", dir);
  expect_read_error(dir / "huge.h5", ErrorKind::Format, "bytes stored");

  // A newer minor version may add datasets; this reader ignores them.
  const fs::path newer = copy("v1_7.h5");
  patch(newer, Patch::VersionAttr, "2.7", dir);
  patch(newer, Patch::AddDataset, "/blocks/some_future_metric", dir);
  check_same(make_trace(), dptq::read_trace(newer));
}

TEST_CASE("trace: a failed write leaves the target untouched and no temporary file") {
  const fs::path dir = dptq::test::scratch_dir("trace_write_fail");
  const fs::path target = dir / "keep.h5";
  write_bytes(target, "previous content");
  const Trace good = make_trace();

  auto expect_write_error = [&](const Trace& t, const fs::path& p, ErrorKind kind,
                                const std::string& needle) {
    expect_error([&] { dptq::write_trace(t, p); }, p, kind, needle);
  };


  SUBCASE("into a folder that does not exist") {
    expect_write_error(good, dir / "no" / "such" / "dir" / "t.h5", ErrorKind::Io,
                       "No such file or directory");
    CHECK_FALSE(fs::exists(dir / "no"));
  }
  SUBCASE("onto a path that is a folder (fails at the rename, after the HDF5 file was written)") {
    fs::create_directories(dir / "folder.h5" / "inside");
    expect_write_error(good, dir / "folder.h5", ErrorKind::Io, "rename");
    CHECK(fs::is_directory(dir / "folder.h5" / "inside"));
  }
  SUBCASE("inconsistent sizes are rejected before the disk is touched") {
    struct Bad {
      const char* name;
      void (*spoil)(Trace&);
      const char* needle;
    };
    const Bad bads[] = {
        {"stream count", [](Trace& t) { t.streams.pop_back(); }, "3 streams for 3 blocks"},
        {"site rows", [](Trace& t) { t.sites.pop_back(); }, "site rows"},
        {"n_layers", [](Trace& t) { t.meta.n_layers = 4; }, "n_layers"},
        {"no blocks",
         [](Trace& t) {
           t.blocks.clear();
           t.sites.clear();
           t.streams.resize(1);
           t.meta.n_layers = 0;
         },
         "no blocks"},
        {"channel_absmax width", [](Trace& t) { t.streams[2].channel_absmax.pop_back(); },
         "streams[2].channel_absmax"},
        {"d_model", [](Trace& t) { t.meta.d_model = 9; }, "meta.d_model"},
        {"position width", [](Trace& t) { t.streams[1].position_absmax_mean.push_back(1); },
         "position_absmax_mean"},
        {"stream index", [](Trace& t) { t.streams[1].index = 7; }, "streams[1].index"},
        {"block index", [](Trace& t) { t.blocks[2].index = 0; }, "blocks[2].index"},
        {"site width", [](Trace& t) { t.sites[1][3].channel_absmax.push_back(0); },
         "sites[1][down]"},
        {"padding channel", [](Trace& t) { t.streams[0].top[1].channel = -1; }, "top[1].channel"},
        {"NUL in token text",
         [](Trace& t) { t.streams[0].top[0].token_text = std::string("a\0b", 3); }, "NUL"},
        {"phase range",
         [](Trace& t) {
           t.phases.push_back({2, 4});
         },
         "phases[1]"},
    };
    for (const Bad& b : bads) {
      INFO(b.name);
      Trace t = make_trace();
      b.spoil(t);
      expect_write_error(t, target, ErrorKind::InvalidArgument, b.needle);
    }
  }
  // Only what the test itself created: no temporary file survives a failure.
  std::vector<std::string> names = listing(dir);
  std::erase(names, "folder.h5");
  CHECK(names == std::vector<std::string>{"keep.h5"});
}

TEST_CASE("trace: files are readable by h5dump and h5py") {
  const fs::path dir = dptq::test::scratch_dir("trace_interop");
  const fs::path p = dir / "interop trace.h5";  // a space, to check the quoting too
  Trace t = make_trace();
  std::mt19937 rng(11);
  for (auto& row : t.sites)
    row[3].channel_absmax = random_floats(rng, 2048);  // big enough for gzip
  dptq::write_trace(t, p);
  const bool have_h5dump = have_command("h5dump");
  const std::string python = python_with_h5py();
  DPTQ_SKIP_UNLESS(have_h5dump || !python.empty(),
                   "neither h5dump nor python3 with h5py is installed");

  if (have_h5dump) {
    const Run header = run("h5dump -H " + quoted(p));
    INFO(header.out);
    CHECK(header.rc == 0);
    CHECK(header.out.find("GROUP \"jump_ratio\"") != std::string::npos);
    const Run format = run("h5dump -a /format " + quoted(p));
    INFO(format.out);
    CHECK(format.rc == 0);
    CHECK(format.out.find("\"dptq-trace\"") != std::string::npos);
    const Run p99 = run("h5dump -H -d /blocks/jump_ratio/p99 " + quoted(p));
    INFO(p99.out);
    CHECK(p99.rc == 0);
    CHECK(p99.out.find("SIMPLE { ( 3 ) / ( 3 ) }") != std::string::npos);
    // Every value, including the gzip-compressed arrays and the variable-length strings.
    const Run all = run("h5dump " + quoted(p) + " >/dev/null");
    INFO(all.out);
    CHECK(all.rc == 0);
  } else {
    MESSAGE("h5dump not installed: checked with h5py only");
  }

  if (!python.empty()) {
    std::ostringstream expect;
    expect.precision(17);
    expect << "[";
    for (const auto& b : t.blocks) expect << b.jump_ratio.p99 << ", ";
    expect << "]";
    std::ostringstream wide;
    wide.precision(17);
    wide << static_cast<double>(t.sites[2][3].channel_absmax[2047]);
    const std::string script =
        "f = h5py.File(f_path, 'r')\n"
        "assert f.attrs['format'] == b'dptq-trace', f.attrs['format']\n"
        "assert f.attrs['version'] == b'2.0'\n"
        "p99 = f['blocks/jump_ratio/p99'][()]\n"
        "assert p99.shape == (3,), p99.shape\n"
        "assert list(p99) == " +
        expect.str() +
        ", p99\n"
        "assert f['streams/channel_absmax'].shape == (4, 8)\n"
        "down = f['sites/down/channel_absmax']\n"
        "assert down.shape == (3, 2048) and down.compression in ('gzip', None), down\n"
        "assert float(down[2, 2047]) == " +
        wide.str() +
        ", down[2, 2047]\n"
        "assert f['sites/k/channel_absmax'].shape == (3, 4)\n"
        "assert f['streams/top_channel'][1, 0] == -1\n"
        "assert f['streams/top_token_text'][0, 0].decode('utf-8') == "
        "'\u2581\u041f\u0440\u0438\u0432\u0435\u0442'\n"
        "assert np.isinf(f['streams/top1_abs'][0])\n"
        "assert f['meta'].attrs['seed'] == 2**64 - 6\n"
        "assert f['meta'].attrs['model_name'] == b'SmolLM2-135M-Instruct'\n"
        "assert f['phases'].shape == (1, 2) and list(f['phases'][0]) == [1, 2]\n"
        "print('h5py ok')\n";
    const Run r = run_h5py(python, dir, script, p);
    INFO(r.out);
    CHECK(r.rc == 0);
    CHECK(r.out.find("h5py ok") != std::string::npos);
  } else {
    MESSAGE("python3 with h5py not installed: checked with h5dump only");
  }
}
