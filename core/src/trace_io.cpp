// HDF5 trace file I/O (write_trace / read_trace) and phase marking. Contract: dptq/trace.hpp;
// the file layout, dtypes and versioning rules: docs/trace-format.md (keep the two in step).
//
// Uses the HDF5 C API only (no LibTorch, no HDF5 C++ API). Every HDF5 call runs inside an
// Hdf5Session, which serializes HDF5 use from this file and switches off the library's automatic
// error printing, so the only thing a user ever sees is our one-line dptq::Error.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dptq/error.hpp"
#include "dptq/trace.hpp"

#include "dptq/atomic_file.hpp"

namespace dptq {
namespace {

namespace fs = std::filesystem;

std::string errno_text() {
  return std::strerror(errno);
}

// ---------------------------------------------------------------------------------------------
// HDF5 plumbing

// HDF5 may be built without thread safety; the lock also keeps the save/restore of the automatic
// error handler below from interleaving between threads.
std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

class Hdf5Session {
 public:
  Hdf5Session() : lock_(hdf5_mutex()) {
    // No library shutdown at exit: after a corrupt file HDF5 may keep objects it cannot close,
    // and its atexit handler then prints "infinite loop closing library" after our one-line error
    // (found by fuzz_trace). Every file we open is closed (or abandoned with an error) by then.
    static const bool no_atexit = (H5dont_atexit(), true);
    (void)no_atexit;
    H5Eget_auto2(H5E_DEFAULT, &old_func_, &old_data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~Hdf5Session() { H5Eset_auto2(H5E_DEFAULT, old_func_, old_data_); }
  Hdf5Session(const Hdf5Session&) = delete;
  Hdf5Session& operator=(const Hdf5Session&) = delete;

 private:
  std::lock_guard<std::mutex> lock_;
  H5E_auto2_t old_func_ = nullptr;
  void* old_data_ = nullptr;
};

// Owns one HDF5 identifier; closes it with the matching H5?close on destruction.
class Hid {
 public:
  using Closer = herr_t (*)(hid_t);
  Hid() = default;
  Hid(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Hid(Hid&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), closer_(o.closer_) {}
  Hid& operator=(Hid&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      closer_ = o.closer_;
    }
    return *this;
  }
  ~Hid() { reset(); }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }
  // Closes now and reports whether closing worked (closing a file is where buffered data is
  // written).
  bool close() {
    const hid_t id = std::exchange(id_, H5I_INVALID_HID);
    return id < 0 || closer_(id) >= 0;
  }

 private:
  void reset() {
    if (id_ >= 0) closer_(std::exchange(id_, H5I_INVALID_HID));
  }
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// The root cause recorded on the HDF5 error stack, in one line ("" when the stack is empty).
// Prefers the operating-system message HDF5 quotes ("error message = '...'").
std::string hdf5_detail() {
  std::vector<std::string> descs;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* err, void* data) -> herr_t {
        if (err->desc) static_cast<std::vector<std::string>*>(data)->push_back(err->desc);
        return 0;
      },
      &descs);
  H5Eclear2(H5E_DEFAULT);
  for (auto it = descs.rbegin(); it != descs.rend(); ++it) {
    const std::string key = "error message = '";
    const size_t a = it->find(key);
    if (a == std::string::npos) continue;
    const size_t b = it->find('\'', a + key.size());
    if (b != std::string::npos) return it->substr(a + key.size(), b - a - key.size());
  }
  if (descs.empty()) return "";
  std::string s = descs.back();
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  if (s.size() > 200) s = s.substr(0, 200) + "...";
  return s;
}

std::string with_detail(std::string message) {
  const std::string d = hdf5_detail();
  if (!d.empty()) message += " (" + d + ")";
  return message;
}

// Element types: native in memory, little-endian standard types in the file.
template <class T>
struct H5Type;
template <>
struct H5Type<double> {
  static hid_t mem() { return H5T_NATIVE_DOUBLE; }
  static hid_t file() { return H5T_IEEE_F64LE; }
  static constexpr H5T_class_t cls = H5T_FLOAT;
  static constexpr const char* name = "float64";
};
template <>
struct H5Type<float> {
  static hid_t mem() { return H5T_NATIVE_FLOAT; }
  static hid_t file() { return H5T_IEEE_F32LE; }
  static constexpr H5T_class_t cls = H5T_FLOAT;
  static constexpr const char* name = "float32";
};
template <>
struct H5Type<int64_t> {
  static hid_t mem() { return H5T_NATIVE_INT64; }
  static hid_t file() { return H5T_STD_I64LE; }
  static constexpr H5T_class_t cls = H5T_INTEGER;
  static constexpr const char* name = "int64";
};
template <>
struct H5Type<int32_t> {
  static hid_t mem() { return H5T_NATIVE_INT32; }
  static hid_t file() { return H5T_STD_I32LE; }
  static constexpr H5T_class_t cls = H5T_INTEGER;
  static constexpr const char* name = "int32";
};
template <>
struct H5Type<uint64_t> {
  static hid_t mem() { return H5T_NATIVE_UINT64; }
  static hid_t file() { return H5T_STD_U64LE; }
  static constexpr H5T_class_t cls = H5T_INTEGER;
  static constexpr const char* name = "uint64";
};
template <>
struct H5Type<uint8_t> {
  static hid_t mem() { return H5T_NATIVE_UINT8; }
  static hid_t file() { return H5T_STD_U8LE; }
  static constexpr H5T_class_t cls = H5T_INTEGER;
  static constexpr const char* name = "uint8";
};

// Fixed-length UTF-8 string type of `width` bytes, NUL-padded (format 2.x). Variable-length
// strings (format 1.x) live in HDF5's global heap, whose reader in HDF5 1.10 crashes or loops on
// corrupt files (fuzz/regressions/trace/h5hg_*): the writer never makes them and the reader
// refuses them unless asked to convert a legacy file.
Hid fixed_utf8_type(size_t width) {
  Hid t(H5Tcopy(H5T_C_S1), H5Tclose);
  if (!t.ok() || H5Tset_size(t.get(), std::max<size_t>(1, width)) < 0 ||
      H5Tset_strpad(t.get(), H5T_STR_NULLPAD) < 0 || H5Tset_cset(t.get(), H5T_CSET_UTF8) < 0)
    return Hid();
  return t;
}

std::string shape_str(const std::vector<hsize_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// ---------------------------------------------------------------------------------------------
// Layout tables shared by writer and reader (docs/trace-format.md lists the same names).

struct BlockAggregateField {
  const char* name;
  Aggregate BlockStats::*member;
  const char* description;
};
constexpr BlockAggregateField kBlockAggregates[] = {
    {"jump_ratio", &BlockStats::jump_ratio, "Jump Ratio ||h_{l+1} - h_l||_2 / ||h_l||_2 per token"},
    {"jump_ratio_inf", &BlockStats::jump_ratio_inf,
     "Jump Ratio, max-norm variant ||h_{l+1} - h_l||_inf / ||h_l||_inf per token"},
    {"jump_ratio_attn", &BlockStats::jump_ratio_attn,
     "attention sublayer ||a_l - h_l||_2 / ||h_l||_2 per token"},
    {"jump_ratio_mlp", &BlockStats::jump_ratio_mlp,
     "MLP sublayer ||h_{l+1} - a_l||_2 / ||a_l||_2 per token"},
    {"hsnr4_db", &BlockStats::hsnr4_db,
     "Historical Feature SNR at 4 bits, h_l -> h_{l+1}, dB per token"},
    {"hsnr8_db", &BlockStats::hsnr8_db,
     "Historical Feature SNR at 8 bits, h_l -> h_{l+1}, dB per token"},
    {"hsnr4_mlp_db", &BlockStats::hsnr4_mlp_db,
     "Historical Feature SNR at 4 bits at the MLP input, h_l -> a_l, dB"},
    {"hsnr8_mlp_db", &BlockStats::hsnr8_mlp_db,
     "Historical Feature SNR at 8 bits at the MLP input, h_l -> a_l, dB"},
};

constexpr const char* kAggregateFieldNames[] = {"mean", "min", "max", "p1", "p50", "p99"};
double Aggregate::*const kAggregateFields[] = {&Aggregate::mean, &Aggregate::min, &Aggregate::max,
                                               &Aggregate::p1,   &Aggregate::p50, &Aggregate::p99};

bool has_nul(const std::string& s) {
  return s.find('\0') != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// Validation before anything touches the disk.

void validate(const Trace& t, const std::string& target) {
  auto bad = [&](const std::string& why) {
    throw Error(ErrorKind::InvalidArgument, target, "inconsistent trace: " + why);
  };
  const size_t L = t.blocks.size();
  if (L == 0) bad("no blocks");
  if (t.streams.size() != L + 1)
    bad(std::to_string(t.streams.size()) + " streams for " + std::to_string(L) +
        " blocks (expected L + 1 = " + std::to_string(L + 1) + ")");
  if (t.sites.size() != L)
    bad(std::to_string(t.sites.size()) + " site rows for " + std::to_string(L) + " blocks");
  if (t.meta.n_layers != static_cast<int64_t>(L))
    bad("meta.n_layers is " + std::to_string(t.meta.n_layers) + " but there are " +
        std::to_string(L) + " blocks");
  if (t.meta.d_model < 0) bad("meta.d_model is negative");
  const TraceMeta& m = t.meta;
  for (const std::string* s : {&m.model_path, &m.model_name, &m.model_fingerprint, &m.tokenizer,
                               &m.calib_source, &m.rotation, &m.dptq_version, &m.created_utc})
    if (has_nul(*s)) bad("a meta string contains a NUL byte");

  const size_t S = t.streams[0].position_absmax_mean.size();
  for (size_t i = 0; i < t.streams.size(); ++i) {
    const StreamStats& st = t.streams[i];
    const std::string where = "streams[" + std::to_string(i) + "]";
    if (st.index != static_cast<int64_t>(i)) bad(where + ".index is " + std::to_string(st.index));
    if (st.channel_absmax.size() != static_cast<size_t>(m.d_model))
      bad(where + ".channel_absmax has " + std::to_string(st.channel_absmax.size()) +
          " entries, meta.d_model is " + std::to_string(m.d_model));
    if (st.position_absmax_mean.size() != S)
      bad(where + ".position_absmax_mean has " + std::to_string(st.position_absmax_mean.size()) +
          " entries, streams[0] has " + std::to_string(S));
    for (size_t j = 0; j < st.top.size(); ++j) {
      // channel -1 marks padding in the file, so a real entry needs a real channel.
      if (st.top[j].channel < 0) bad(where + ".top[" + std::to_string(j) + "].channel is negative");
      if (has_nul(st.top[j].token_text))
        bad(where + ".top[" + std::to_string(j) + "].token_text contains a NUL byte");
    }
  }
  for (size_t l = 0; l < L; ++l)
    if (t.blocks[l].index != static_cast<int64_t>(l))
      bad("blocks[" + std::to_string(l) + "].index is " + std::to_string(t.blocks[l].index));
  for (int s = 0; s < kNumSites; ++s) {
    const size_t C = t.sites[0][s].channel_absmax.size();
    for (size_t l = 1; l < L; ++l)
      if (t.sites[l][s].channel_absmax.size() != C)
        bad("sites[" + std::to_string(l) + "][" + kSiteNames[s] + "].channel_absmax has " +
            std::to_string(t.sites[l][s].channel_absmax.size()) + " entries, sites[0] has " +
            std::to_string(C));
  }
  if (t.has_sensitivity) {
    const Sensitivity& sv = t.sensitivity;
    if (sv.block.size() != L)
      bad("sensitivity.block has " + std::to_string(sv.block.size()) + " rows, expected " + std::to_string(L));
    if (sv.has_sites ? sv.site.size() != L : !sv.site.empty())
      bad("sensitivity.site has " + std::to_string(sv.site.size()) + " rows, expected " +
          std::to_string(sv.has_sites ? L : 0));
    for (const std::string* str : {&sv.method, &sv.text_source, &sv.window_mode, &sv.created_utc})
      if (has_nul(*str)) bad("a sensitivity string contains a NUL byte");
  }
  for (size_t p = 0; p < t.phases.size(); ++p) {
    const Phase& ph = t.phases[p];
    if (ph.first_stream < 0 || ph.first_stream > ph.last_stream ||
        ph.last_stream > static_cast<int64_t>(L))
      bad("phases[" + std::to_string(p) + "] = [" + std::to_string(ph.first_stream) + ", " +
          std::to_string(ph.last_stream) + "] is not a stream range within [0, " +
          std::to_string(L) + "]");
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

constexpr hsize_t kCompressMinBytes = 4096;

class Writer {
 public:
  Writer(hid_t file, std::string target) : file_(file), target_(std::move(target)) {
    gzip_ = H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0;
    unsigned info = 0;
    if (gzip_ && (H5Zget_filter_info(H5Z_FILTER_DEFLATE, &info) < 0 ||
                  !(info & H5Z_FILTER_CONFIG_ENCODE_ENABLED)))
      gzip_ = false;
  }

  void group(const std::string& path, const char* description = nullptr) {
    Hid g(H5Gcreate2(file_, path.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    if (!g.ok()) fail("group " + path);
    if (description) attr_string(g.get(), path, "description", description);
  }

  // Scalar attribute `name` on the object at `path`.
  void attr_string(const std::string& path, const char* name, const std::string& value) {
    Hid o = open_object(path);
    attr_string(o.get(), path, name, value);
  }
  template <class T>
  void attr(const std::string& path, const char* name, T value) {
    Hid o = open_object(path);
    Hid space(H5Screate(H5S_SCALAR), H5Sclose);
    Hid a(H5Acreate2(o.get(), name, H5Type<T>::file(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
          H5Aclose);
    if (!a.ok() || H5Awrite(a.get(), H5Type<T>::mem(), &value) < 0)
      fail("attribute " + path + "@" + name);
  }

  // Numeric dataset of shape `dims` (row-major data). `compress`: gzip + shuffle when available.
  template <class T>
  void dataset(const std::string& path, const std::vector<hsize_t>& dims, const T* data,
               const char* description = nullptr, bool compress = false) {
    Hid space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    Hid dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    if (!space.ok() || !dcpl.ok()) fail("dataset " + path);
    hsize_t n = 1;
    for (hsize_t d : dims) n *= d;
    // Small arrays stay contiguous: a chunk index costs more than gzip would save.
    if (compress && gzip_ && n * sizeof(T) >= kCompressMinBytes) {
      // ~256 KiB chunks of whole rows: a row (one layer) is what the studio reads at a time.
      std::vector<hsize_t> chunk = dims;
      const hsize_t row = dims.size() > 1 ? dims.back() : 1;
      const hsize_t per_chunk = std::max<hsize_t>(1, (hsize_t{1} << 18) / sizeof(T) / row);
      chunk[0] = std::min(dims[0], per_chunk);
      if (H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()) < 0 ||
          H5Pset_shuffle(dcpl.get()) < 0 || H5Pset_deflate(dcpl.get(), 4) < 0)
        fail("dataset " + path);
    }
    Hid d(H5Dcreate2(file_, path.c_str(), H5Type<T>::file(), space.get(), H5P_DEFAULT, dcpl.get(),
                     H5P_DEFAULT),
          H5Dclose);
    if (!d.ok()) fail("dataset " + path);
    if (n > 0 && H5Dwrite(d.get(), H5Type<T>::mem(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
      fail("dataset " + path);
    if (description) attr_string(d.get(), path, "description", description);
  }
  template <class T>
  void dataset(const std::string& path, const std::vector<T>& v,
               const char* description = nullptr) {
    dataset<T>(path, {static_cast<hsize_t>(v.size())}, v.data(), description);
  }

  // Fixed-length UTF-8 string dataset of shape `dims`, as wide as its longest string.
  void strings(const std::string& path, const std::vector<hsize_t>& dims,
               const std::vector<const char*>& data, const char* description = nullptr) {
    size_t width = 1;
    for (const char* p : data) width = std::max(width, std::strlen(p));
    std::vector<char> buf(data.size() * width, '\0');
    for (size_t i = 0; i < data.size(); ++i) std::memcpy(&buf[i * width], data[i], std::strlen(data[i]));
    Hid type = fixed_utf8_type(width);
    Hid space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    if (!type.ok() || !space.ok()) fail("dataset " + path);
    Hid d(H5Dcreate2(file_, path.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                     H5P_DEFAULT),
          H5Dclose);
    if (!d.ok()) fail("dataset " + path);
    if (!data.empty() &&
        H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
      fail("dataset " + path);
    if (description) attr_string(d.get(), path, "description", description);
  }

  [[noreturn]] void fail(const std::string& what) {
    throw Error(ErrorKind::Io, target_, with_detail("cannot write " + what));
  }

 private:
  Hid open_object(const std::string& path) {
    Hid o(H5Oopen(file_, path.c_str(), H5P_DEFAULT), H5Oclose);
    if (!o.ok()) fail("object " + path);
    return o;
  }
  void attr_string(hid_t obj, const std::string& path, const char* name, const std::string& value) {
    Hid type = fixed_utf8_type(value.size());
    Hid space(H5Screate(H5S_SCALAR), H5Sclose);
    std::string padded = value;
    if (padded.empty()) padded.push_back('\0');
    Hid a(type.ok() && space.ok()
              ? H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT)
              : H5I_INVALID_HID,
          H5Aclose);
    if (!a.ok() || H5Awrite(a.get(), type.get(), padded.data()) < 0)
      fail("attribute " + path + "@" + name);
  }

  hid_t file_;
  std::string target_;
  bool gzip_ = false;
};

void write_aggregates(Writer& w, const std::string& group,
                      const std::vector<const Aggregate*>& rows, const char* description) {
  w.group(group, description);
  std::vector<double> v(rows.size());
  for (size_t f = 0; f < std::size(kAggregateFields); ++f) {
    for (size_t i = 0; i < rows.size(); ++i) v[i] = rows[i]->*kAggregateFields[f];
    w.dataset(group + "/" + kAggregateFieldNames[f], v);
  }
  std::vector<int64_t> c(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) c[i] = rows[i]->count;
  w.dataset(group + "/count", c);
}

void write_contents(Writer& w, const Trace& t) {
  const hsize_t L = t.blocks.size(), N = L + 1;
  const hsize_t D = static_cast<hsize_t>(t.meta.d_model);
  const hsize_t S = t.streams[0].position_absmax_mean.size();

  // Root identity first: a reader checks these before anything else.
  w.attr_string("/", "format", kTraceFormat);
  w.attr_string("/", "version",
                std::to_string(kTraceVersionMajor) + "." + std::to_string(kTraceVersionMinor));

  const TraceMeta& m = t.meta;
  w.group("/meta",
          "run metadata: model, tokenizer, calibration data, quantizer settings (attributes)");
  w.attr_string("/meta", "model_path", m.model_path);
  w.attr_string("/meta", "model_name", m.model_name);
  w.attr_string("/meta", "model_fingerprint", m.model_fingerprint);
  w.attr_string("/meta", "tokenizer", m.tokenizer);
  w.attr_string("/meta", "calib_source", m.calib_source);
  w.attr("/meta", "windows", m.windows);
  w.attr("/meta", "seqlen", m.seqlen);
  w.attr("/meta", "tokens", m.tokens);
  w.attr("/meta", "seed", m.seed);
  w.attr_string("/meta", "rotation", m.rotation);
  w.attr("/meta", "rotation_seed", m.rotation_seed);
  w.attr("/meta", "massive_abs_threshold", m.massive_abs_threshold);
  w.attr("/meta", "massive_rel_threshold", m.massive_rel_threshold);
  w.attr("/meta", "topk", m.topk);
  w.attr("/meta", "act_clip_4bit", m.act_clip_4bit);
  w.attr("/meta", "act_clip_8bit", m.act_clip_8bit);
  w.attr("/meta", "act_asymmetric", static_cast<uint8_t>(m.act_asymmetric));
  w.attr_string("/meta", "dptq_version", m.dptq_version);
  w.attr_string("/meta", "created_utc", m.created_utc);
  w.attr("/meta", "n_layers", m.n_layers);
  w.attr("/meta", "d_model", m.d_model);

  // --- /streams: one row per residual stream h_0 .. h_L
  w.group("/streams", "residual streams h_0 (embeddings) .. h_L (last block output), one row each");
  {
    std::vector<double> top1(N), median(N), ratio(N);
    std::vector<int64_t> n_massive(N);
    std::vector<uint8_t> has_massive(N);
    std::vector<float> chan(N * D), pos(N * S);
    for (hsize_t i = 0; i < N; ++i) {
      const StreamStats& s = t.streams[i];
      top1[i] = s.top1_abs;
      median[i] = s.median_abs;
      ratio[i] = s.ratio;
      n_massive[i] = s.n_massive;
      has_massive[i] = s.has_massive ? 1 : 0;
      std::copy(s.channel_absmax.begin(), s.channel_absmax.end(), chan.begin() + i * D);
      std::copy(s.position_absmax_mean.begin(), s.position_absmax_mean.end(), pos.begin() + i * S);
    }
    w.dataset("/streams/top1_abs", top1, "largest |h_l| over all calibration tokens");
    w.dataset("/streams/median_abs", median, "median |h_l| over all entries (streaming histogram)");
    w.dataset("/streams/ratio", ratio, "top1_abs / median_abs");
    w.dataset("/streams/n_massive", n_massive, "count of massive entries (both thresholds met)");
    w.dataset("/streams/has_massive", has_massive, "1 when n_massive > 0");
    w.dataset("/streams/channel_absmax", {N, D}, chan.data(),
              "max |h_l[:, c]| over all tokens, [L+1, d_model]", true);
    w.dataset("/streams/position_absmax_mean", {N, S}, pos.data(),
              "mean over windows of max_c |h_l[t, c]|, [L+1, seqlen]", true);

    hsize_t K = 0;
    for (const StreamStats& s : t.streams) K = std::max<hsize_t>(K, s.top.size());
    std::vector<float> value(N * K, 0.0f);
    std::vector<int64_t> channel(N * K, -1), window(N * K, -1), position(N * K, -1);
    std::vector<int32_t> token_id(N * K, -1);
    std::vector<const char*> text(N * K, "");
    for (hsize_t i = 0; i < N; ++i)
      for (size_t j = 0; j < t.streams[i].top.size(); ++j) {
        const MassiveEntry& e = t.streams[i].top[j];
        const hsize_t at = i * K + j;
        value[at] = e.value;
        channel[at] = e.channel;
        window[at] = e.window;
        position[at] = e.position;
        token_id[at] = e.token_id;
        text[at] = e.token_text.c_str();
      }
    w.dataset("/streams/top_value", {N, K}, value.data(),
              "signed value of the top-k entries by |value|; 0 = padding");
    w.dataset("/streams/top_channel", {N, K}, channel.data(),
              "channel of each top entry; -1 marks padding");
    w.dataset("/streams/top_window", {N, K}, window.data(),
              "calibration window of each top entry; -1 = padding");
    w.dataset("/streams/top_position", {N, K}, position.data(),
              "token position inside the window; -1 = padding");
    w.dataset("/streams/top_token_id", {N, K}, token_id.data(),
              "token id at that position; -1 = padding");
    w.strings("/streams/top_token_text", {N, K}, text,
              "token text (UTF-8) at that position; empty = padding");
  }

  // --- /blocks: one row per decoder block 0 .. L-1
  w.group("/blocks", "decoder blocks 0 .. L-1: Jump Ratios, Historical SNR, phase boundaries");
  std::vector<const Aggregate*> rows(L);
  for (const BlockAggregateField& f : kBlockAggregates) {
    for (hsize_t l = 0; l < L; ++l) rows[l] = &(t.blocks[l].*f.member);
    write_aggregates(w, std::string("/blocks/") + f.name, rows, f.description);
  }
  {
    std::vector<uint8_t> emergence(L), disappearance(L);
    for (hsize_t l = 0; l < L; ++l) {
      emergence[l] = t.blocks[l].emergence ? 1 : 0;
      disappearance[l] = t.blocks[l].disappearance ? 1 : 0;
    }
    w.dataset("/blocks/emergence", emergence, "1: massive activations in h_{l+1} but not in h_l");
    w.dataset("/blocks/disappearance", disappearance,
              "1: massive activations in h_l but not in h_{l+1}");
  }

  // --- /sites/<site>: one row per block
  w.group("/sites", "activation-quantizer sites of every block (qkv, o, gate_up, down) and K, V");
  for (int s = 0; s < kNumSites; ++s) {
    const std::string g = std::string("/sites/") + kSiteNames[s];
    w.group(g);
    const hsize_t C = t.sites[0][s].channel_absmax.size();
    std::vector<float> chan(L * C);
    std::vector<double> kurt(L), sqnr(L), entropy(L);
    for (hsize_t l = 0; l < L; ++l) {
      const SiteStats& st = t.sites[l][s];
      std::copy(st.channel_absmax.begin(), st.channel_absmax.end(), chan.begin() + l * C);
      kurt[l] = st.kurtosis;
      sqnr[l] = st.sqnr4_db;
      entropy[l] = st.code_entropy_bits;
      rows[l] = &st.token_absmax;
    }
    w.dataset(g + "/channel_absmax", {L, C}, chan.data(),
              "max |x[:, c]| over all tokens, [L, channels]", true);
    write_aggregates(w, g + "/token_absmax", rows, "per-token absmax distribution");
    w.dataset(g + "/kurtosis", kurt, "Pearson kurtosis of all entries (normal = 3)");
    w.dataset(g + "/sqnr4_db", sqnr, "4-bit quantization SQNR, dB");
    w.dataset(g + "/code_entropy_bits", entropy,
              "entropy of the 4-bit code histogram, bits (max 4)");
  }

  // --- /phases [P, 2]
  {
    const hsize_t P = t.phases.size();
    std::vector<int64_t> ph(P * 2);
    for (hsize_t p = 0; p < P; ++p) {
      ph[2 * p] = t.phases[p].first_stream;
      ph[2 * p + 1] = t.phases[p].last_stream;
    }
    w.dataset(
        "/phases", {P, 2}, ph.data(),
        "maximal runs of streams with massive activations: [first_stream, last_stream], inclusive");
  }

  // --- /sensitivity (1.1, optional): measured gain of 8-bit activations per block and site
  if (t.has_sensitivity) {
    const Sensitivity& sv = t.sensitivity;
    w.group("/sensitivity",
            "measured decrease of mean NLL / KL(FP||quant) when one block or site goes 4 -> 8 bits");
    w.attr_string("/sensitivity", "method", sv.method);
    w.attr_string("/sensitivity", "text_source", sv.text_source);
    w.attr_string("/sensitivity", "window_mode", sv.window_mode);
    w.attr("/sensitivity", "windows", sv.windows);
    w.attr("/sensitivity", "seqlen", sv.seqlen);
    w.attr("/sensitivity", "tokens", sv.tokens);
    w.attr("/sensitivity", "seed", sv.seed);
    w.attr_string("/sensitivity", "created_utc", sv.created_utc);
    w.attr("/sensitivity", "fp_nll", sv.fp_nll);
    w.attr("/sensitivity", "base_nll", sv.base_nll);
    w.attr("/sensitivity", "base_kl", sv.base_kl);
    auto write_entries = [&](const std::string& g, const std::vector<hsize_t>& dims,
                             const std::vector<const SensitivityEntry*>& e, const char* what) {
      w.group(g, what);
      std::vector<double> v(e.size());
      const std::pair<const char*, double SensitivityEntry::*> fields[] = {
          {"nll_gain", &SensitivityEntry::nll_gain}, {"nll_gain_se", &SensitivityEntry::nll_gain_se},
          {"kl_gain", &SensitivityEntry::kl_gain}, {"kl_gain_se", &SensitivityEntry::kl_gain_se}};
      for (const auto& [name, member] : fields) {
        for (size_t i = 0; i < e.size(); ++i) v[i] = e[i]->*member;
        w.dataset(g + "/" + name, dims, v.data());
      }
    };
    std::vector<const SensitivityEntry*> rows_b;
    for (const SensitivityEntry& e : sv.block) rows_b.push_back(&e);
    write_entries("/sensitivity/block", {L}, rows_b, "block l alone at 8 bits (all four sites), [L]");
    if (sv.has_sites) {
      std::vector<const SensitivityEntry*> rows_s;
      for (const auto& row : sv.site)
        for (const SensitivityEntry& e : row) rows_s.push_back(&e);
      write_entries("/sensitivity/site", {L, hsize_t(kNumPlanSites)}, rows_s,
                    "one site of block l alone at 8 bits, [L, 4]: qkv, o, gate_up, down");
    }
  }
}


// ---------------------------------------------------------------------------------------------
// Reader

constexpr hsize_t kAny = ~hsize_t{0};

class Reader {
 public:
  // `legacy`: also read variable-length strings (format 1.x; see fixed_utf8_type).
  Reader(hid_t file, std::string path, bool legacy)
      : file_(file), path_(std::move(path)), legacy_(legacy) {}

  bool legacy() const { return legacy_; }

  const std::string& path() const { return path_; }
  [[noreturn]] void bad(const std::string& why) const {
    throw Error(ErrorKind::Format, path_, why);
  }

  // True when every link along `path` ("/a/b/c") exists.
  bool exists(const std::string& path) const {
    size_t pos = 0;
    while ((pos = path.find('/', pos + 1)) != std::string::npos)
      if (H5Lexists(file_, path.substr(0, pos).c_str(), H5P_DEFAULT) <= 0) return false;
    return H5Lexists(file_, path.c_str(), H5P_DEFAULT) > 0;
  }

  bool has_attr(const std::string& obj, const char* name) const {
    return exists_or_root(obj) && H5Aexists_by_name(file_, obj.c_str(), name, H5P_DEFAULT) > 0;
  }

  std::string attr_string(const std::string& obj, const char* name) const {
    Hid a = open_attr(obj, name);
    Hid type(H5Aget_type(a.get()), H5Tclose);
    if (!type.ok() || H5Tget_class(type.get()) != H5T_STRING)
      bad("attribute " + obj + "@" + name + " is not a string");
    Hid space(H5Aget_space(a.get()), H5Sclose);
    if (H5Sget_simple_extent_npoints(space.get()) != 1)
      bad("attribute " + obj + "@" + name + " is not a scalar");
    Hid mem(H5Tcopy(type.get()), H5Tclose);
    if (H5Tis_variable_str(type.get()) > 0) {
      refuse_vlen("attribute " + obj + "@" + name);
      char* p = nullptr;
      if (H5Aread(a.get(), mem.get(), &p) < 0) {
        H5free_memory(p);
        bad(with_detail("cannot read attribute " + obj + "@" + name));
      }
      std::string s = p ? p : "";
      H5free_memory(p);
      return s;
    }
    const size_t n = H5Tget_size(type.get());
    if (n > kMaxAttrString) bad("attribute " + obj + "@" + name + " is " + std::to_string(n) + " bytes long");
    std::string s(n, '\0');
    if (H5Aread(a.get(), mem.get(), s.data()) < 0)
      bad(with_detail("cannot read attribute " + obj + "@" + name));
    if (const size_t z = s.find('\0'); z != std::string::npos) s.resize(z);
    return s;
  }

  template <class T>
  T attr(const std::string& obj, const char* name) const {
    Hid a = open_attr(obj, name);
    Hid type(H5Aget_type(a.get()), H5Tclose);
    if (!type.ok() || H5Tget_class(type.get()) != H5Type<T>::cls)
      bad("attribute " + obj + "@" + name + " is not " + H5Type<T>::name);
    Hid space(H5Aget_space(a.get()), H5Sclose);
    if (H5Sget_simple_extent_npoints(space.get()) != 1)
      bad("attribute " + obj + "@" + name + " is not a scalar");
    T v{};
    if (H5Aread(a.get(), H5Type<T>::mem(), &v) < 0)
      bad(with_detail("cannot read attribute " + obj + "@" + name));
    return v;
  }

  // Reads a numeric dataset whose shape must match `expect` (kAny: any extent). `dims` gets the
  // shape.
  template <class T>
  std::vector<T> read(const std::string& path, const std::vector<hsize_t>& expect,
                      std::vector<hsize_t>* dims_out = nullptr) const {
    Hid d = open_dataset(path);
    Hid type(H5Dget_type(d.get()), H5Tclose);
    if (!type.ok() || H5Tget_class(type.get()) != H5Type<T>::cls)
      bad("dataset " + path + " is not " +
          (H5Type<T>::cls == H5T_FLOAT ? "floating point" : "integer"));
    const std::vector<hsize_t> dims = check_shape(d.get(), path, expect);
    if (dims_out) *dims_out = dims;
    const hsize_t n = checked_count(d.get(), type.get(), path, dims);
    std::vector<T> v(n);
    if (n > 0 && H5Dread(d.get(), H5Type<T>::mem(), H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
      bad(with_detail("cannot read dataset " + path));
    return v;
  }

  std::vector<std::string> read_strings(const std::string& path,
                                        const std::vector<hsize_t>& expect) const {
    Hid d = open_dataset(path);
    Hid type(H5Dget_type(d.get()), H5Tclose);
    if (!type.ok() || H5Tget_class(type.get()) != H5T_STRING)
      bad("dataset " + path + " is not a string dataset");
    const std::vector<hsize_t> dims = check_shape(d.get(), path, expect);
    const hsize_t n = checked_count(d.get(), type.get(), path, dims);
    std::vector<std::string> out(n);
    if (n == 0) return out;
    Hid mem(H5Tcopy(type.get()), H5Tclose);
    if (H5Tis_variable_str(type.get()) > 0) {
      refuse_vlen("dataset " + path);
      std::vector<char*> p(n, nullptr);
      if (H5Dread(d.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, p.data()) < 0) {
        // A read that fails half-way (a corrupt file) has already allocated some strings
        // (found by fuzz_trace under LeakSanitizer).
        for (char* q : p) H5free_memory(q);
        bad(with_detail("cannot read dataset " + path));
      }
      for (hsize_t i = 0; i < n; ++i) out[i] = p[i] ? p[i] : "";
      Hid space(H5Dget_space(d.get()), H5Sclose);
      H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, p.data());
    } else {
      const size_t w = H5Tget_size(type.get());
      std::vector<char> buf(n * w);
      if (H5Dread(d.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
        bad(with_detail("cannot read dataset " + path));
      for (hsize_t i = 0; i < n; ++i) {
        std::string s(buf.data() + i * w, w);
        if (const size_t z = s.find('\0'); z != std::string::npos) s.resize(z);
        out[i] = std::move(s);
      }
    }
    return out;
  }

  // Variable-length strings are read only when converting a legacy (1.x) file.
  void refuse_vlen(const std::string& what) const {
    if (!legacy_)
      bad(what + " is a variable-length string (trace format 1.x); convert the file once with "
                 "'dptq trace-upgrade " + path_ + " NEW.h5'");
  }

  bool attr_is_vlen(const std::string& obj, const char* name) const {
    if (!has_attr(obj, name)) return false;
    Hid a = open_attr(obj, name);
    Hid type(H5Aget_type(a.get()), H5Tclose);
    return type.ok() && H5Tis_variable_str(type.get()) > 0;
  }

 private:
  static constexpr size_t kMaxAttrString = size_t{1} << 20;
  bool exists_or_root(const std::string& obj) const { return obj == "/" || exists(obj); }

  Hid open_attr(const std::string& obj, const char* name) const {
    if (!has_attr(obj, name)) bad("missing attribute " + obj + "@" + name);
    Hid a(H5Aopen_by_name(file_, obj.c_str(), name, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!a.ok()) bad(with_detail("cannot open attribute " + obj + "@" + name));
    return a;
  }

  Hid open_dataset(const std::string& path) const {
    if (!exists(path)) bad("missing dataset " + path);
    Hid d(H5Dopen2(file_, path.c_str(), H5P_DEFAULT), H5Dclose);
    if (!d.ok()) bad(with_detail("cannot open dataset " + path));
    return d;
  }

  // Number of elements, refusing extents a corrupt file could use to make us allocate without
  // bound: the data must be stored in the file (gzip expands at most ~1000x; allow 1100x).
  hsize_t checked_count(hid_t d, hid_t type, const std::string& path,
                        const std::vector<hsize_t>& dims) const {
    hsize_t n = 1;
    for (hsize_t x : dims)
      if (__builtin_mul_overflow(n, x, &n)) bad("dataset " + path + " has an impossible shape");
    hsize_t bytes = 0;
    const hsize_t elem = std::max<size_t>(1, H5Tget_size(type));
    if (__builtin_mul_overflow(n, elem, &bytes))
      bad("dataset " + path + " has an impossible shape");
    const hsize_t stored = H5Dget_storage_size(d);
    if (bytes > (hsize_t{1} << 20) && bytes / 1100 > stored)
      bad("dataset " + path + " has shape " + shape_str(dims) + " but only " +
          std::to_string(stored) + " bytes stored");
    return n;
  }

  std::vector<hsize_t> check_shape(hid_t d, const std::string& path,
                                   const std::vector<hsize_t>& expect) const {
    Hid space(H5Dget_space(d), H5Sclose);
    const int rank = space.ok() ? H5Sget_simple_extent_ndims(space.get()) : -1;
    if (rank < 0) bad(with_detail("cannot read the shape of dataset " + path));
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    bool ok = dims.size() == expect.size();
    for (size_t i = 0; ok && i < dims.size(); ++i) ok = expect[i] == kAny || expect[i] == dims[i];
    if (!ok) {
      std::string want = "[";
      for (size_t i = 0; i < expect.size(); ++i)
        want +=
            (i ? ", " : "") + (expect[i] == kAny ? std::string("*") : std::to_string(expect[i]));
      bad("dataset " + path + " has shape " + shape_str(dims) + ", expected " + want + "]");
    }
    return dims;
  }

  hid_t file_;
  std::string path_;
  bool legacy_;
};

std::vector<Aggregate> read_aggregates(const Reader& r, const std::string& group, hsize_t n) {
  std::vector<Aggregate> out(n);
  for (size_t f = 0; f < std::size(kAggregateFields); ++f) {
    const std::vector<double> v = r.read<double>(group + "/" + kAggregateFieldNames[f], {n});
    for (hsize_t i = 0; i < n; ++i) out[i].*kAggregateFields[f] = v[i];
  }
  const std::vector<int64_t> c = r.read<int64_t>(group + "/count", {n});
  for (hsize_t i = 0; i < n; ++i) out[i].count = c[i];
  return out;
}

// Parses "major.minor" (both non-negative decimal integers).
bool parse_version(const std::string& s, int& major, int& minor) {
  const size_t dot = s.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == s.size() || dot > 6 ||
      s.size() - dot - 1 > 6)
    return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (i != dot && (s[i] < '0' || s[i] > '9')) return false;
  major = std::stoi(s.substr(0, dot));
  minor = std::stoi(s.substr(dot + 1));
  return true;
}

Trace read_contents(const Reader& r) {
  if (!r.legacy() && r.attr_is_vlen("/", "format"))
    r.bad("trace format 1.x (variable-length strings), which this build reads only to convert it: "
          "dptq trace-upgrade " + r.path() + " NEW.h5");
  std::string format;
  try {
    format = r.attr_string("/", "format");
  } catch (const Error&) {
    r.bad("not a dptq trace (no format attribute)");
  }
  if (format != kTraceFormat) r.bad("not a dptq trace (format is '" + format.substr(0, 40) + "')");
  if (!r.has_attr("/", "version")) r.bad("not a dptq trace (no version attribute)");
  const std::string version = r.attr_string("/", "version");
  int major = 0, minor = 0;
  if (!parse_version(version, major, minor))
    r.bad("trace version '" + version + "' is not \"major.minor\"");
  // A newer minor only adds optional content, which this reader ignores.
  if (major != kTraceVersionMajor && !(r.legacy() && major == 1))
    throw Error(ErrorKind::Version, r.path(),
                "unsupported trace version " + std::to_string(major) + "." + std::to_string(minor) +
                    " (this build reads " + std::to_string(kTraceVersionMajor) + ".x)");

  Trace t;
  TraceMeta& m = t.meta;
  m.model_path = r.attr_string("/meta", "model_path");
  m.model_name = r.attr_string("/meta", "model_name");
  m.model_fingerprint = r.attr_string("/meta", "model_fingerprint");
  m.tokenizer = r.attr_string("/meta", "tokenizer");
  m.calib_source = r.attr_string("/meta", "calib_source");
  m.windows = r.attr<int64_t>("/meta", "windows");
  m.seqlen = r.attr<int64_t>("/meta", "seqlen");
  m.tokens = r.attr<int64_t>("/meta", "tokens");
  m.seed = r.attr<uint64_t>("/meta", "seed");
  m.rotation = r.attr_string("/meta", "rotation");
  m.rotation_seed = r.attr<uint64_t>("/meta", "rotation_seed");
  m.massive_abs_threshold = r.attr<double>("/meta", "massive_abs_threshold");
  m.massive_rel_threshold = r.attr<double>("/meta", "massive_rel_threshold");
  m.topk = r.attr<int64_t>("/meta", "topk");
  m.act_clip_4bit = r.attr<double>("/meta", "act_clip_4bit");
  m.act_clip_8bit = r.attr<double>("/meta", "act_clip_8bit");
  m.act_asymmetric = r.attr<uint8_t>("/meta", "act_asymmetric") != 0;
  m.dptq_version = r.attr_string("/meta", "dptq_version");
  m.created_utc = r.attr_string("/meta", "created_utc");
  m.n_layers = r.attr<int64_t>("/meta", "n_layers");
  m.d_model = r.attr<int64_t>("/meta", "d_model");
  if (m.n_layers < 1) r.bad("/meta@n_layers is " + std::to_string(m.n_layers));
  if (m.d_model < 0) r.bad("/meta@d_model is " + std::to_string(m.d_model));

  const hsize_t L = static_cast<hsize_t>(m.n_layers), N = L + 1,
                D = static_cast<hsize_t>(m.d_model);

  // --- streams
  {
    const auto top1 = r.read<double>("/streams/top1_abs", {N});
    const auto median = r.read<double>("/streams/median_abs", {N});
    const auto ratio = r.read<double>("/streams/ratio", {N});
    const auto n_massive = r.read<int64_t>("/streams/n_massive", {N});
    const auto has_massive = r.read<uint8_t>("/streams/has_massive", {N});
    const auto chan = r.read<float>("/streams/channel_absmax", {N, D});
    std::vector<hsize_t> dims;
    const auto pos = r.read<float>("/streams/position_absmax_mean", {N, kAny}, &dims);
    const hsize_t S = dims[1];
    const auto value = r.read<float>("/streams/top_value", {N, kAny}, &dims);
    const hsize_t K = dims[1];
    const auto channel = r.read<int64_t>("/streams/top_channel", {N, K});
    const auto window = r.read<int64_t>("/streams/top_window", {N, K});
    const auto position = r.read<int64_t>("/streams/top_position", {N, K});
    const auto token_id = r.read<int32_t>("/streams/top_token_id", {N, K});
    const auto text = r.read_strings("/streams/top_token_text", {N, K});
    t.streams.resize(N);
    for (hsize_t i = 0; i < N; ++i) {
      StreamStats& s = t.streams[i];
      s.index = static_cast<int64_t>(i);
      s.top1_abs = top1[i];
      s.median_abs = median[i];
      s.ratio = ratio[i];
      s.n_massive = n_massive[i];
      s.has_massive = has_massive[i] != 0;
      s.channel_absmax.assign(chan.begin() + i * D, chan.begin() + (i + 1) * D);
      s.position_absmax_mean.assign(pos.begin() + i * S, pos.begin() + (i + 1) * S);
      bool padding = false;
      for (hsize_t j = 0; j < K; ++j) {
        const hsize_t at = i * K + j;
        if (channel[at] < 0) {
          padding = true;
          continue;
        }
        if (padding)
          r.bad("dataset /streams/top_channel row " + std::to_string(i) +
                " has an entry after padding (-1)");
        s.top.push_back({value[at], channel[at], window[at], position[at], token_id[at], text[at]});
      }
    }
  }

  // --- blocks
  t.blocks.resize(L);
  for (hsize_t l = 0; l < L; ++l) t.blocks[l].index = static_cast<int64_t>(l);
  for (const BlockAggregateField& f : kBlockAggregates) {
    const std::vector<Aggregate> a = read_aggregates(r, std::string("/blocks/") + f.name, L);
    for (hsize_t l = 0; l < L; ++l) t.blocks[l].*f.member = a[l];
  }
  {
    const auto emergence = r.read<uint8_t>("/blocks/emergence", {L});
    const auto disappearance = r.read<uint8_t>("/blocks/disappearance", {L});
    for (hsize_t l = 0; l < L; ++l) {
      t.blocks[l].emergence = emergence[l] != 0;
      t.blocks[l].disappearance = disappearance[l] != 0;
    }
  }

  // --- sites
  t.sites.resize(L);
  for (int s = 0; s < kNumSites; ++s) {
    const std::string g = std::string("/sites/") + kSiteNames[s];
    std::vector<hsize_t> dims;
    const auto chan = r.read<float>(g + "/channel_absmax", {L, kAny}, &dims);
    const hsize_t C = dims[1];
    const std::vector<Aggregate> tok = read_aggregates(r, g + "/token_absmax", L);
    const auto kurt = r.read<double>(g + "/kurtosis", {L});
    const auto sqnr = r.read<double>(g + "/sqnr4_db", {L});
    const auto entropy = r.read<double>(g + "/code_entropy_bits", {L});
    for (hsize_t l = 0; l < L; ++l) {
      SiteStats& st = t.sites[l][s];
      st.channel_absmax.assign(chan.begin() + l * C, chan.begin() + (l + 1) * C);
      st.token_absmax = tok[l];
      st.kurtosis = kurt[l];
      st.sqnr4_db = sqnr[l];
      st.code_entropy_bits = entropy[l];
    }
  }

  // --- phases
  {
    std::vector<hsize_t> dims;
    const auto ph = r.read<int64_t>("/phases", {kAny, 2}, &dims);
    for (hsize_t p = 0; p < dims[0]; ++p) {
      const Phase phase{ph[2 * p], ph[2 * p + 1]};
      if (phase.first_stream < 0 || phase.first_stream > phase.last_stream ||
          phase.last_stream > static_cast<int64_t>(L))
        r.bad("dataset /phases row " + std::to_string(p) + " is not a stream range within [0, " +
              std::to_string(L) + "]");
      t.phases.push_back(phase);
    }
  }

  // --- sensitivity (optional since 1.1)
  if (r.exists("/sensitivity")) {
    Sensitivity& sv = t.sensitivity;
    const std::string g = "/sensitivity";
    sv.method = r.attr_string(g, "method");
    sv.text_source = r.attr_string(g, "text_source");
    sv.window_mode = r.attr_string(g, "window_mode");
    sv.windows = r.attr<int64_t>(g, "windows");
    sv.seqlen = r.attr<int64_t>(g, "seqlen");
    sv.tokens = r.attr<int64_t>(g, "tokens");
    sv.seed = r.attr<uint64_t>(g, "seed");
    sv.created_utc = r.attr_string(g, "created_utc");
    sv.fp_nll = r.attr<double>(g, "fp_nll");
    sv.base_nll = r.attr<double>(g, "base_nll");
    sv.base_kl = r.attr<double>(g, "base_kl");
    auto read_entries = [&](const std::string& grp, const std::vector<hsize_t>& dims) {
      const auto a = r.read<double>(grp + "/nll_gain", dims), b = r.read<double>(grp + "/nll_gain_se", dims),
                 c = r.read<double>(grp + "/kl_gain", dims), d = r.read<double>(grp + "/kl_gain_se", dims);
      std::vector<SensitivityEntry> e(a.size());
      for (size_t i = 0; i < a.size(); ++i) e[i] = {a[i], b[i], c[i], d[i]};
      return e;
    };
    sv.block = read_entries(g + "/block", {L});
    sv.has_sites = r.exists(g + "/site");
    if (sv.has_sites) {
      const auto e = read_entries(g + "/site", {L, hsize_t(kNumPlanSites)});
      sv.site.resize(L);
      for (hsize_t l = 0; l < L; ++l)
        for (int s = 0; s < kNumPlanSites; ++s) sv.site[l][size_t(s)] = e[l * kNumPlanSites + size_t(s)];
    }
    t.has_sensitivity = true;
  }
  return t;
}

}  // namespace

void write_trace(const Trace& trace, const fs::path& path) {
  const std::string target = path.string();
  validate(trace, target);  // before anything touches the disk

  AtomicFile out(path);  // created here: errno gives a clear message (missing folder, permissions)
  {
    Hdf5Session session;
    Hid fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    if (!fapl.ok()) throw Error(ErrorKind::Io, target, with_detail("cannot set up HDF5"));
    // Every object we open is closed before the file; STRONG makes a leak impossible anyway.
    H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
#if H5_VERS_MAJOR > 1 ||                                                                           \
    (H5_VERS_MAJOR == 1 && (H5_VERS_MINOR > 12 || (H5_VERS_MINOR == 12 && H5_VERS_RELEASE >= 1) || \
                            (H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7)))
    // File systems without flock() support (some network mounts) would otherwise refuse the file.
    H5Pset_file_locking(fapl.get(), true, true);
#endif
    Hid file(H5Fcreate(out.temp_path().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
    if (!file.ok())
      throw Error(ErrorKind::Io, target, with_detail("cannot create temporary HDF5 file"));
    Writer w(file.get(), target);
    write_contents(w, trace);
    if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0 || !file.close())
      throw Error(ErrorKind::Io, target, with_detail("cannot finish writing the HDF5 file"));
  }

  out.commit();
}

namespace {

Trace read_trace_file(const fs::path& path, bool legacy) {
  const std::string file = path.string();
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0)
    throw Error(ErrorKind::Io, file, "cannot open: " + errno_text());
  if (!S_ISREG(st.st_mode)) throw Error(ErrorKind::Io, file, "cannot open: not a regular file");
  if (const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC); fd < 0)
    throw Error(ErrorKind::Io, file, "cannot open: " + errno_text());
  else
    ::close(fd);

  Hdf5Session session;
  Hid fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (!fapl.ok()) throw Error(ErrorKind::Io, file, with_detail("cannot set up HDF5"));
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
#if H5_VERS_MAJOR > 1 ||                                                                           \
    (H5_VERS_MAJOR == 1 && (H5_VERS_MINOR > 12 || (H5_VERS_MINOR == 12 && H5_VERS_RELEASE >= 1) || \
                            (H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7)))
  H5Pset_file_locking(fapl.get(), true, true);
#endif
#if H5_VERS_MAJOR > 1 || (H5_VERS_MAJOR == 1 && H5_VERS_MINOR >= 12)
  const htri_t is_hdf5 = H5Fis_accessible(file.c_str(), fapl.get());
#else
  const htri_t is_hdf5 = H5Fis_hdf5(file.c_str());
#endif
  H5Eclear2(H5E_DEFAULT);
  if (is_hdf5 <= 0) throw Error(ErrorKind::Format, file, "not a dptq trace (not an HDF5 file)");
  Hid h5(H5Fopen(file.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
  if (!h5.ok()) throw Error(ErrorKind::Format, file, with_detail("truncated or corrupt HDF5 file"));

  return read_contents(Reader(h5.get(), file, legacy));
}

void write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= size_t(w);
  }
}

// The child's report of an Error: kind, then the file and the message, each length-prefixed.
void send_error(int fd, const Error& e) {
  const uint8_t kind = static_cast<uint8_t>(e.kind());
  write_all(fd, &kind, 1);
  for (const std::string* s : {&e.file(), &e.message()}) {
    const uint32_t n = static_cast<uint32_t>(std::min<size_t>(s->size(), 1u << 16));
    write_all(fd, &n, sizeof n);
    write_all(fd, s->data(), n);
  }
}

bool parse_error(const std::string& buf, ErrorKind& kind, std::string& file, std::string& message) {
  size_t at = 1;
  if (buf.empty() || buf[0] > static_cast<char>(ErrorKind::Cancelled)) return false;
  kind = static_cast<ErrorKind>(buf[0]);
  for (std::string* s : {&file, &message}) {
    uint32_t n = 0;
    if (at + sizeof n > buf.size()) return false;
    std::memcpy(&n, buf.data() + at, sizeof n);
    at += sizeof n;
    if (at + n > buf.size()) return false;
    *s = buf.substr(at, n);
    at += n;
  }
  return true;
}

// Reads `path` in a child process — HDF5 1.10 can crash, hang or corrupt memory on a crafted file
// (fuzz_trace, docs/robustness.md), and none of that may reach this process — which writes what it
// read to a temporary trace; this process then reads that well-formed copy. A child that dies by a
// signal or runs past `timeout_s` becomes one Error(Format) naming `path`.
Trace read_isolated(const fs::path& path, bool legacy, double timeout_s) {
  const std::string file = path.string();
  static std::atomic<uint64_t> counter{0};
  std::error_code ec;
  fs::path tmp_dir = fs::temp_directory_path(ec);
  if (ec) tmp_dir = "/tmp";
  const fs::path tmp = tmp_dir / ("dptq-trace-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".h5");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(ErrorKind::Io, file, "cannot read: pipe: " + errno_text());
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(ErrorKind::Io, file, "cannot read: fork: " + errno_text());
  }
  if (pid == 0) {  // child: only HDF5, the trace code and the pipe
    ::close(fds[0]);
    // A crash here is the file's doing: die by the signal (the parent reports it) instead of
    // running handlers inherited from the caller (a crash reporter, a fuzzer's artifact writer).
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::signal(sig, SIG_DFL);
    ::unsetenv("DPTQ_FAILPOINT");  // the copy is the child's own business, not the caller's write
    int code = 0;
    try {
      const Trace t = read_trace_file(path, legacy);
      write_trace(t, tmp);
    } catch (const Error& e) {
      send_error(fds[1], e.file() == tmp.string() ? Error(ErrorKind::Format, file, e.message()) : e);
      code = 2;
    } catch (const std::exception& e) {
      send_error(fds[1], Error(ErrorKind::Format, file, std::string("cannot read: ") + e.what()));
      code = 2;
    }
    ::_exit(code);
  }
  ::close(fds[1]);
  auto cleanup = [&] {
    fs::remove(tmp, ec);
    remove_stale_temps(tmp);
  };
  std::string report;
  const auto start = std::chrono::steady_clock::now();
  bool timed_out = false;
  for (;;) {  // read the child's report until it closes the pipe (exits) or the time is up
    const double left = timeout_s - std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{fds[0], POLLIN, 0};
    const int r = ::poll(&pfd, 1, static_cast<int>(std::min(left * 1000.0, 1000.0)) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    report.append(buf, size_t(n));
  }
  ::close(fds[0]);
  int status = 0;
  if (timed_out) ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    cleanup();
    throw Error(ErrorKind::Format, file, "HDF5 did not finish reading the file within " +
                                             std::to_string(static_cast<int>(timeout_s)) + " s (corrupt or crafted?)");
  }
  if (WIFSIGNALED(status)) {
    cleanup();
    throw Error(ErrorKind::Format, file, std::string("HDF5 crashed reading the file (") + strsignal(WTERMSIG(status)) +
                                             "; corrupt or crafted?)");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    cleanup();
    ErrorKind kind = ErrorKind::Format;
    std::string efile, message;
    if (parse_error(report, kind, efile, message)) throw Error(kind, efile, message);
    throw Error(ErrorKind::Format, file, "the reading process failed (exit " +
                                             std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) + ")");
  }
  try {
    Trace t = read_trace_file(tmp, false);
    cleanup();
    return t;
  } catch (const Error& e) {
    cleanup();
    throw Error(e.kind(), file, e.message());
  }
}

}  // namespace

Trace read_trace(const fs::path& path, double timeout_s) { return read_isolated(path, false, timeout_s); }

Trace read_trace_in_process(const fs::path& path) { return read_trace_file(path, false); }

Trace read_legacy_trace(const fs::path& path, double timeout_s) { return read_isolated(path, true, timeout_s); }

void mark_phases(Trace& trace) {
  const size_t n = trace.streams.size();
  if (trace.blocks.size() + 1 != n)
    throw Error(ErrorKind::InvalidArgument, "",
                "mark_phases: " + std::to_string(n) + " streams for " +
                    std::to_string(trace.blocks.size()) + " blocks (expected L + 1)");
  trace.phases.clear();
  for (size_t i = 0; i < n; ++i) {
    if (!trace.streams[i].has_massive) continue;
    if (i == 0 || !trace.streams[i - 1].has_massive)
      trace.phases.push_back({static_cast<int64_t>(i), static_cast<int64_t>(i)});
    else
      trace.phases.back().last_stream = static_cast<int64_t>(i);
  }
  for (size_t l = 0; l + 1 < n; ++l) {
    const bool before = trace.streams[l].has_massive, after = trace.streams[l + 1].has_massive;
    trace.blocks[l].emergence = after && !before;
    trace.blocks[l].disappearance = before && !after;
  }
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace dptq
