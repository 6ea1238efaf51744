// The tokenizer network in plain C++, mirroring python/mdllm/tokenizer/{features,model}.py op by op.
#include "mdllm/tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "amx.hpp"
#include "json.hpp"
#include "mdllm/geometry.hpp"
#include "mdllm/safetensors.hpp"
#include "mdllm/torsion_tokenizer.hpp"
#include "parallel.hpp"
#include "simd.hpp"

namespace mdllm {

namespace {

constexpr float kLayerNormEps = 1e-5f;
constexpr float kFeatureEps = 1e-8f;
constexpr float kFrameEps = 1e-6f;
constexpr int kHeadOutputs = 18;  // translation 3, two rotation vectors 6, local N, C, O corrections 9

using Vec = std::vector<float>;

// Scratch memory that is fully written before it is read, so it skips std::vector's zero fill.
class Scratch {
 public:
  explicit Scratch(int64_t n) : p_(new float[static_cast<size_t>(n)]) {}
  float* data() { return p_.get(); }
  float& operator[](int64_t i) { return p_[i]; }

 private:
  std::unique_ptr<float[]> p_;
};

using detail::exp16;
using detail::f32x16;
using detail::kLanes;
using detail::load16;
using detail::map16;
using detail::splat;
using detail::store16;
using detail::sum16;

// Runs fn(begin, end) over [0, n): split across threads when `par` (a single frame uses every core),
// in one piece otherwise (frames are already spread over threads).
template <class Fn>
void rows(bool par, int64_t n, Fn&& fn, int64_t min_chunk = 8) {
  if (par) detail::parallel_for(n, fn, min_chunk);
  else if (n > 0) fn(int64_t{0}, n);
}

// The dense kernels below are compiled for the building machine's CPU by default (MDLLM_NATIVE).
// A portable build instead compiles them for AVX-512, AVX2 and the baseline, and the loader picks
// the variant the CPU supports (GCC function multi-versioning).
#if defined(MDLLM_PORTABLE_CLONES) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__)
#define MDLLM_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MDLLM_KERNEL
#endif

// One register tile of a matrix product: R rows x 16C outputs, accumulated over the whole input
// before a single store. R = 8, C = 2 keeps 16 accumulators in AVX-512 registers.
template <int R, int C>
MDLLM_SIMD void product_tile(const float* x, int64_t ldx, const float* w, int64_t ldw, const float* b,
                             int64_t in, float* y, int64_t ldy) {
  f32x16 acc[R][C];
  for (int c = 0; c < C; ++c) {
    const f32x16 bias = b ? load16(b + c * kLanes) : splat(0.0f);
    for (int r = 0; r < R; ++r) acc[r][c] = bias;
  }
  for (int64_t i = 0; i < in; ++i) {
    f32x16 wv[C];
    for (int c = 0; c < C; ++c) wv[c] = load16(w + i * ldw + c * kLanes);
    for (int r = 0; r < R; ++r) {
      const float xv = x[r * ldx + i];
      for (int c = 0; c < C; ++c) acc[r][c] += xv * wv[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) store16(y + r * ldy + c * kLanes, acc[r][c]);
}

template <int R>
MDLLM_SIMD void product_row_block(const float* x, int64_t ldx, const float* w, int64_t ldw, const float* b,
                                  int64_t in, int64_t out, float* y, int64_t ldy) {
  int64_t o = 0;
  for (; o + 2 * kLanes <= out; o += 2 * kLanes) product_tile<R, 2>(x, ldx, w + o, ldw, b ? b + o : b, in, y + o, ldy);
  for (; o + kLanes <= out; o += kLanes) product_tile<R, 1>(x, ldx, w + o, ldw, b ? b + o : b, in, y + o, ldy);
  for (int r = 0; r < R; ++r)  // the last out % 16 outputs
    for (int64_t oo = o; oo < out; ++oo) {
      float acc = b ? b[oo] : 0.0f;
      for (int64_t i = 0; i < in; ++i) acc += x[r * ldx + i] * w[i * ldw + oo];
      y[r * ldy + oo] = acc;
    }
}

// Rows [begin, end) of y = x w + b, where x is (rows, in) with row stride ldx, w is (in, out) with
// row stride ldw (a linear layer's weight transposed at load time), b (out) or null, and y has row
// stride ldy. The strides let attention multiply per-head slices in place.
MDLLM_KERNEL
void product_rows(const float* x, int64_t ldx, const float* w, int64_t ldw, const float* b, int64_t in,
                  int64_t out, float* y, int64_t ldy, int64_t begin, int64_t end) {
  int64_t r = begin;
  for (; r + 8 <= end; r += 8) product_row_block<8>(x + r * ldx, ldx, w, ldw, b, in, out, y + r * ldy, ldy);
  // leftover rows in blocks of 4, 2, 1: a single row would leave the multiply-adds waiting on each other
  if (r + 4 <= end) product_row_block<4>(x + r * ldx, ldx, w, ldw, b, in, out, y + r * ldy, ldy), r += 4;
  if (r + 2 <= end) product_row_block<2>(x + r * ldx, ldx, w, ldw, b, in, out, y + r * ldy, ldy), r += 2;
  if (r < end) product_row_block<1>(x + r * ldx, ldx, w, ldw, b, in, out, y + r * ldy, ldy);
}

// y (n, out) = x (n, in) W^T + b with `wt` = W transposed to (in, out).
void linear(const float* x, int64_t n, int64_t in, const float* wt, const float* b, int64_t out, float* y,
            bool par = false) {
  rows(par, n, [&](int64_t begin, int64_t end) { product_rows(x, in, wt, out, b, in, out, y, out, begin, end); });
}

MDLLM_KERNEL
void layer_norm(const float* x, int64_t n, int64_t d, const float* gamma, const float* beta, float* out) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * d;
    float* yr = out + r * d;
    f32x16 acc = splat(0.0f);
    int64_t i = 0;
    for (; i + kLanes <= d; i += kLanes) acc += load16(xr + i);
    float mean = sum16(acc);
    for (; i < d; ++i) mean += xr[i];
    mean /= static_cast<float>(d);
    acc = splat(0.0f);
    for (i = 0; i + kLanes <= d; i += kLanes) {
      const f32x16 c = load16(xr + i) - mean;
      acc += c * c;
    }
    float var = sum16(acc);
    for (; i < d; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= static_cast<float>(d);
    const float inv = 1.0f / std::sqrt(var + kLayerNormEps);
    for (i = 0; i + kLanes <= d; i += kLanes)
      store16(yr + i, (load16(xr + i) - mean) * inv * load16(gamma + i) + load16(beta + i));
    for (; i < d; ++i) yr[i] = (xr[i] - mean) * inv * gamma[i] + beta[i];
  }
}

MDLLM_KERNEL
void silu_inplace(float* x, int64_t n) { map16(x, n, detail::Silu{}); }

MDLLM_KERNEL
void exp_inplace(float* x, int64_t n) { map16(x, n, detail::Exp{}); }

MDLLM_KERNEL
void sigmoid_inplace(float* x, int64_t n) { map16(x, n, detail::Sigmoid{}); }

// One row of unnormalised attention weights over n keys, in place on s (np >= n entries, np a multiple of 16):
// scores * scale + relative-position bias, exponentiated after subtracting the maximum. `band` holds
// the bias for key j at band[j]. Returns 1 / sum, the factor that normalises the row.
MDLLM_KERNEL
float softmax_row(float* s, int64_t n, int64_t np, float scale, const float* band) {
  for (int64_t j = 0; j < np; j += kLanes) store16(s + j, load16(s + j) * scale + load16(band + j));
  for (int64_t j = n; j < np; ++j) s[j] = -INFINITY;  // padding keys
  f32x16 mx = splat(-INFINITY);
  for (int64_t j = 0; j < np; j += kLanes) {
    const f32x16 v = load16(s + j);
    mx = v > mx ? v : mx;
  }
  float m = -INFINITY;
  for (int64_t l = 0; l < kLanes; ++l) m = std::max(m, mx[l]);
  f32x16 sum = splat(0.0f);
  for (int64_t j = 0; j < np; j += kLanes) {
    const f32x16 e = exp16(load16(s + j) - m);
    sum += e;
    store16(s + j, e);
  }
  return 1.0f / sum16(sum);
}

struct V3 {
  float x, y, z;
};
inline V3 load(const float* p) { return {p[0], p[1], p[2]}; }
inline V3 sub(V3 a, V3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
inline V3 scale(V3 a, float s) { return {a.x * s, a.y * s, a.z * s}; }
inline float dot3(V3 a, V3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
inline V3 cross(V3 a, V3 b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
inline float norm(V3 a) { return std::sqrt(dot3(a, a)); }
inline V3 normalized(V3 a, float eps) { return scale(a, 1.0f / std::max(norm(a), eps)); }

// Frame of residue i: rot[9] row-major R[r][c] with columns e1 (CA->C), e2, e3; origin CA.
void residue_frame(const float* res, float* rot) {
  const V3 n = load(res), ca = load(res + 3), c = load(res + 6);
  const V3 e1 = normalized(sub(c, ca), kFeatureEps);
  const V3 u = sub(n, ca);
  const V3 e2 = normalized(sub(u, scale(e1, dot3(u, e1))), kFeatureEps);
  const V3 e3 = cross(e1, e2);
  const V3 cols[3] = {e1, e2, e3};
  for (int col = 0; col < 3; ++col) {
    rot[0 * 3 + col] = cols[col].x;
    rot[1 * 3 + col] = cols[col].y;
    rot[2 * 3 + col] = cols[col].z;
  }
}

// local = R^T (p - origin)
inline void to_local3(const float* rot, V3 origin, V3 p, float* out) {
  const V3 d = sub(p, origin);
  for (int e = 0; e < 3; ++e) out[e] = d.x * rot[0 * 3 + e] + d.y * rot[1 * 3 + e] + d.z * rot[2 * 3 + e];
}

void dihedral_sin_cos(V3 a, V3 b, V3 c, V3 d, float* sin_out, float* cos_out) {
  const V3 b1 = sub(b, a), b2 = sub(c, b), b3 = sub(d, c);
  const V3 n1 = cross(b1, b2), n2 = cross(b2, b3);
  const V3 m1 = cross(n1, normalized(b2, kFeatureEps));
  const float x = dot3(n1, n2), y = dot3(m1, n2);
  const float r = std::max(std::sqrt(x * x + y * y), kFeatureEps);
  *sin_out = y / r;
  *cos_out = x / r;
}

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

int json_int(const detail::Json& root, const char* key, int fallback, int lo, int hi) {
  const detail::Json* v = root.find(key);
  if (!v) return fallback;
  if (!v->is_number() || v->number != std::floor(v->number) || v->number < lo || v->number > hi)
    bad(std::string("tokenizer config: '") + key + "' must be an integer in [" + std::to_string(lo) + ", " +
        std::to_string(hi) + "]");
  return static_cast<int>(v->number);
}

std::map<std::string, std::vector<int64_t>> expected_shapes(const TokenizerConfig& c) {
  std::map<std::string, std::vector<int64_t>> s;
  const int64_t d = c.dim, f = c.ffn_dim, nl = static_cast<int64_t>(c.levels.size());
  auto linear_shape = [&](const std::string& name, int64_t out, int64_t in) {
    s[name + ".weight"] = {out, in};
    s[name + ".bias"] = {out};
  };
  auto norm_shape = [&](const std::string& name) {
    s[name + ".weight"] = {d};
    s[name + ".bias"] = {d};
  };
  auto blocks = [&](const std::string& prefix, int count) {
    for (int i = 0; i < count; ++i) {
      const std::string b = prefix + ".blocks." + std::to_string(i);
      norm_shape(b + ".attn_norm");
      for (const char* p : {"q_proj", "k_proj", "v_proj", "o_proj"}) linear_shape(b + ".attn." + p, d, d);
      s[b + ".attn.rel_pos_bias"] = {c.heads, 2 * c.max_rel_pos + 1};
      norm_shape(b + ".ffn_norm");
      linear_shape(b + ".up_proj", f, d);
      linear_shape(b + ".down_proj", d, f);
    }
  };
  linear_shape("encoder.edge_in", d, 21 + c.n_rbf);
  s["encoder.seq_sep.weight"] = {2 * c.max_seq_sep + 1, d};
  linear_shape("encoder.edge_out", d, d);
  linear_shape("encoder.node_in", d, 9);
  norm_shape("encoder.in_norm");
  blocks("encoder", c.encoder_layers);
  norm_shape("encoder.out_norm");
  linear_shape("encoder.to_latent", nl, d);
  linear_shape("decoder.from_code", d, nl);
  blocks("decoder", c.decoder_layers);
  norm_shape("decoder.out_norm");
  linear_shape("decoder.head", kHeadOutputs, d);
  s["decoder.ideal_local"] = {3, 3};
  return s;
}

}  // namespace

int64_t TokenizerConfig::codebook_size() const {
  int64_t n = 1;
  for (int l : levels) n *= l;
  return n;
}

TokenizerConfig TokenizerConfig::from_json(const std::string& json_text) {
  const detail::Json root = detail::parse_json(json_text);
  if (!root.is_object()) bad("tokenizer config: not a JSON object");
  if (const detail::Json* kind = root.find("kind"); kind && !(kind->is_string() && kind->string == "transformer"))
    bad("tokenizer config: 'kind' must be \"transformer\" for this tokenizer");
  TokenizerConfig c;
  const detail::Json* levels = root.find("levels");
  if (!levels || !levels->is_array() || levels->array.empty() || levels->array.size() > 16)
    bad("tokenizer config: 'levels' must be a list of 1 to 16 integers");
  for (const auto& l : levels->array) {
    if (!l.is_number() || l.number != std::floor(l.number) || l.number < 2 || l.number > 1024)
      bad("tokenizer config: every level must be an integer in [2, 1024]");
    c.levels.push_back(static_cast<int>(l.number));
  }
  if (c.codebook_size() > (1 << 20)) bad("tokenizer config: codebook larger than 2^20");
  c.k_neighbours = json_int(root, "k_neighbours", c.k_neighbours, 1, 1024);
  c.n_rbf = json_int(root, "n_rbf", c.n_rbf, 2, 1024);
  c.max_seq_sep = json_int(root, "max_seq_sep", c.max_seq_sep, 0, 100000);
  c.dim = json_int(root, "dim", c.dim, 1, 8192);
  c.heads = json_int(root, "heads", c.heads, 1, 256);
  c.ffn_dim = json_int(root, "ffn_dim", c.ffn_dim, 1, 65536);
  c.encoder_layers = json_int(root, "encoder_layers", c.encoder_layers, 0, 256);
  c.decoder_layers = json_int(root, "decoder_layers", c.decoder_layers, 0, 256);
  c.max_rel_pos = json_int(root, "max_rel_pos", c.max_rel_pos, 0, 100000);
  if (const detail::Json* r = root.find("rbf_max_nm")) {
    if (!r->is_number() || !(r->number > 0) || r->number > 1e4) bad("tokenizer config: 'rbf_max_nm' must be positive");
    c.rbf_max_nm = static_cast<float>(r->number);
  }
  if (c.dim % c.heads) bad("tokenizer config: dim is not divisible by heads");
  return c;
}

Tokenizer::Tokenizer(const std::string& weights_path, const std::string& config_json)
    : cfg_(TokenizerConfig::from_json(config_json)) {
  SafetensorsFile file = read_safetensors(weights_path);
  for (const auto& [name, shape] : expected_shapes(cfg_)) {
    auto it = file.tensors.find(name);
    if (it == file.tensors.end()) bad(weights_path + ": missing tensor " + name + " (wrong or corrupt tokenizer)");
    if (it->second.shape != shape) bad(weights_path + ": tensor " + name + " has the wrong shape for this config");
    for (float v : it->second.data)
      if (!std::isfinite(v)) bad(weights_path + ": tensor " + name + " holds NaN or infinite values");
    std::vector<float> data = std::move(it->second.data);
    const bool is_linear = shape.size() == 2 && name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0 &&
                           name != "encoder.seq_sep.weight";
    if (is_linear) {  // stored (out, in); kept as (in, out) for linear()
      const int64_t out = shape[0], in = shape[1];
      std::vector<float> t(data.size());
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) t[i * out + o] = data[o * in + i];
      data.swap(t);
    }
    w_[name] = std::move(data);
  }
  // q, k and v projections fused into one (in, 3 dim) product per block; the separate ones go
  auto fuse = [&](const std::string& attn) {
    const int64_t d = cfg_.dim;
    std::vector<float> w(d * 3 * d), b(3 * d);
    for (int part = 0; part < 3; ++part) {
      const std::string name = attn + "." + "qkv"[part] + "_proj";
      const std::vector<float>& wp = w_.at(name + ".weight");
      for (int64_t i = 0; i < d; ++i) std::copy(&wp[i * d], &wp[i * d] + d, &w[i * 3 * d + part * d]);
      std::copy(w_.at(name + ".bias").begin(), w_.at(name + ".bias").end(), b.begin() + part * d);
      w_.erase(name + ".weight");
      w_.erase(name + ".bias");
    }
    w_[attn + ".qkv.weight"] = std::move(w);
    w_[attn + ".qkv.bias"] = std::move(b);
  };
  for (int i = 0; i < cfg_.encoder_layers; ++i) fuse("encoder.blocks." + std::to_string(i) + ".attn");
  for (int i = 0; i < cfg_.decoder_layers; ++i) fuse("decoder.blocks." + std::to_string(i) + ".attn");
  if (!detail::amx_enabled()) return;
  const int64_t d = cfg_.dim, f = cfg_.ffn_dim;
  auto pack = [&](const std::string& name, int64_t in, int64_t out) {
    packed_[name] = std::make_shared<const detail::PackedLinear>(detail::amx_pack(get(name + ".weight"), in, out));
  };
  for (const char* part : {"encoder", "decoder"}) {
    const int layers = part[0] == 'e' ? cfg_.encoder_layers : cfg_.decoder_layers;
    for (int i = 0; i < layers; ++i) {
      const std::string b = std::string(part) + ".blocks." + std::to_string(i);
      pack(b + ".attn.qkv", d, 3 * d);
      pack(b + ".attn.o_proj", d, d);
      pack(b + ".up_proj", d, f);
      pack(b + ".down_proj", f, d);
    }
  }
}

Tokenizer Tokenizer::from_directory(const std::string& directory) {
  return Tokenizer(directory + "/model.safetensors", detail::read_text_file(directory + "/config.json"));
}

std::unique_ptr<StructureTokenizer> load_tokenizer(const std::string& directory) {
  const std::string config = detail::read_text_file(directory + "/config.json");
  const detail::Json root = detail::parse_json(config);
  const detail::Json* kind = root.is_object() ? root.find("kind") : nullptr;
  const std::string weights = directory + "/model.safetensors";
  if (!kind || (kind->is_string() && kind->string == "transformer")) return std::make_unique<Tokenizer>(weights, config);
  if (kind->is_string() && kind->string == "torsion") return std::make_unique<TorsionTokenizer>(weights, config);
  bad(directory + "/config.json: unknown tokenizer kind (expected \"transformer\" or \"torsion\")");
}

const float* Tokenizer::get(const std::string& name) const { return w_.at(name).data(); }

// Rows [0, m) of y (stride ldy) = x (stride ldx) W + b for the linear layer `name`, whose weight is
// stored (in, out): on the AMX tiles when it was packed for them, else on the vector kernels.
void Tokenizer::dense(const std::string& name, const float* x, int64_t ldx, int64_t m, int64_t in, int64_t out,
                      float* y, int64_t ldy) const {
  const float* b = get(name + ".bias");
  const auto it = packed_.find(name);
  if (it != packed_.end()) detail::amx_product(x, ldx, m, *it->second, b, y, ldy);
  else product_rows(x, ldx, get(name + ".weight"), out, b, in, out, y, ldy, 0, m);
}

// Pre-norm transformer block with a clipped relative-position attention bias, in place on x (n, dim).
void Tokenizer::block(const std::string& p, Vec& x, int64_t n, bool par) const {
  const int64_t d = cfg_.dim, heads = cfg_.heads, dh = d / heads, f = cfg_.ffn_dim, r = cfg_.max_rel_pos;
  const int64_t np = (n + kLanes - 1) / kLanes * kLanes;  // keys padded to whole vectors
  // 1. per row: q, k, v in one product (fused weights); keys also stored transposed per head, as
  //    (dh, np), so that the scores are a plain product
  Scratch qkv(n * 3 * d), att(n * d);
  Vec kt(d * np, 0.0f);
  const float *norm_w = get(p + ".attn_norm.weight"), *norm_b = get(p + ".attn_norm.bias");
  // with AMX, each head's keys (as K^T, dh x n) and values (n x dh) are also packed as tile operands,
  // by the thread that computed those rows (chunks of 16 rows: whole tile columns)
  const bool amx = !packed_.empty();
  std::vector<detail::PackedLinear> keys_t, values;
  for (int64_t hd = 0; amx && hd < heads; ++hd) {
    keys_t.push_back(detail::amx_packed_zeros(dh, n));
    values.push_back(detail::amx_packed_zeros(n, dh));
  }
  rows(par, n, [&](int64_t begin, int64_t end) {
    Scratch h((end - begin) * d);
    layer_norm(x.data() + begin * d, end - begin, d, norm_w, norm_b, h.data());
    dense(p + ".attn.qkv", h.data(), d, end - begin, d, 3 * d, qkv.data() + begin * 3 * d, 3 * d);
    for (int64_t j0 = begin; j0 < end; j0 += 8) {  // 8 keys at a time: whole cache lines written
      const int64_t j1 = std::min(end, j0 + 8);
      for (int64_t c = 0; c < d; ++c)
        for (int64_t j = j0; j < j1; ++j) kt[c * np + j] = qkv[j * 3 * d + d + c];
    }
    for (int64_t hd = 0; amx && hd < heads; ++hd) {
      detail::amx_pack_into(keys_t[hd], kt.data() + hd * dh * np, np, 0, dh, begin, end);
      detail::amx_pack_into(values[hd], qkv.data() + 2 * d + hd * dh, 3 * d, begin, end, 0, dh);
    }
  }, amx ? 16 : 8);
  // 2. per (head, block of query rows): scores, softmax with the relative-position bias, weighted
  //    values; on the tiles with AMX (16 rows a block), else on the vector kernels (8 rows).
  //    band[hd][j - i + n - 1] is the bias of key j for query i.
  const float* bias = get(p + ".attn.rel_pos_bias");
  const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(dh));
  const int64_t band_len = n - 1 + np;
  Vec band(heads * band_len);
  for (int64_t hd = 0; hd < heads; ++hd)
    for (int64_t t = 0; t < band_len; ++t)
      band[hd * band_len + t] = bias[hd * (2 * r + 1) + std::clamp<int64_t>(t - (n - 1), -r, r) + r];
  constexpr int64_t kMaxRowBlock = 16;
  const int64_t row_block = amx ? 16 : 8, blocks = (n + row_block - 1) / row_block;
  rows(par, heads * blocks, [&](int64_t begin, int64_t end) {
    Scratch s(row_block * np);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t hd = task / blocks, r0 = task % blocks * row_block, r1 = std::min(n, r0 + row_block);
      const float* q = qkv.data() + r0 * 3 * d + hd * dh;
      float* out = att.data() + r0 * d + hd * dh;
      if (amx) detail::amx_product(q, 3 * d, r1 - r0, keys_t[hd], nullptr, s.data(), np);
      else product_rows(q, 3 * d, kt.data() + hd * dh * np, np, nullptr, dh, np, s.data(), np, 0, r1 - r0);
      float norm[kMaxRowBlock];
      for (int64_t i = r0; i < r1; ++i)
        norm[i - r0] = softmax_row(s.data() + (i - r0) * np, n, np, inv_sqrt, band.data() + hd * band_len + n - 1 - i);
      if (amx) detail::amx_product(s.data(), np, r1 - r0, values[hd], nullptr, out, d);
      else product_rows(s.data(), np, qkv.data() + 2 * d + hd * dh, 3 * d, nullptr, n, dh, out, d, 0, r1 - r0);
      for (int64_t i = 0; i < r1 - r0; ++i)
        for (int64_t e = 0; e < dh; ++e) out[i * d + e] *= norm[i];
    }
  }, 1);
  // 3. per row: output projection and residual, then the feed-forward half of the block
  const float *ffn_norm_w = get(p + ".ffn_norm.weight"), *ffn_norm_b = get(p + ".ffn_norm.bias");
  rows(par, n, [&](int64_t begin, int64_t end) {
    const int64_t m = end - begin;
    float* xr = x.data() + begin * d;
    Scratch tmp(m * d), h(m * d), up(m * f);
    dense(p + ".attn.o_proj", att.data() + begin * d, d, m, d, d, tmp.data(), d);
    for (int64_t i = 0; i < m * d; ++i) xr[i] += tmp[i];
    layer_norm(xr, m, d, ffn_norm_w, ffn_norm_b, h.data());
    dense(p + ".up_proj", h.data(), d, m, d, f, up.data(), f);
    silu_inplace(up.data(), m * f);
    dense(p + ".down_proj", up.data(), f, m, f, d, tmp.data(), d);
    for (int64_t i = 0; i < m * d; ++i) xr[i] += tmp[i];
  });
}

void Tokenizer::encode_frame(const float* xyz, int64_t n, float* digits, bool par) const {
  const TokenizerConfig& c = cfg_;
  const int64_t d = c.dim, k = std::min<int64_t>(c.k_neighbours, n), n_edge = 21 + c.n_rbf;
  Vec rot(n * 9);
  for (int64_t i = 0; i < n; ++i) residue_frame(xyz + i * 12, rot.data() + i * 9);
  auto atom = [&](int64_t i, int a) { return load(xyz + i * 12 + a * 3); };

  // k nearest residues by CA distance, ties broken by index (matches a stable sort)
  std::vector<int64_t> nbr(n * k);
  rows(par, n, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<float, int64_t>> dist(n);
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        const V3 dv = sub(atom(j, 1), atom(i, 1));
        dist[j] = {dot3(dv, dv), j};  // squared: same order, no square roots
      }
      std::nth_element(dist.begin(), dist.begin() + (k - 1), dist.end());
      std::sort(dist.begin(), dist.begin() + k);
      for (int64_t m = 0; m < k; ++m) nbr[i * k + m] = dist[m].second;
    }
  });

  // edge MLP, averaged over each residue's neighbours; groups of residues make the products taller
  Vec agg(n * d, 0.0f);
  const float* sep_table = get("encoder.seq_sep.weight");
  const float width = c.rbf_max_nm / static_cast<float>(c.n_rbf);
  constexpr int64_t kGroup = 8;
  rows(par, n, [&](int64_t begin, int64_t end) {
    Scratch ef(kGroup * k * n_edge), e1(kGroup * k * d), e2(kGroup * k * d);
    for (int64_t g0 = begin; g0 < end; g0 += kGroup) {
      const int64_t g1 = std::min(end, g0 + kGroup), edges = (g1 - g0) * k;
      for (int64_t i = g0; i < g1; ++i) {
        const float* ri = rot.data() + i * 9;
        const V3 ca_i = atom(i, 1);
        for (int64_t m = 0; m < k; ++m) {
          const int64_t j = nbr[i * k + m];
          float* f = ef.data() + ((i - g0) * k + m) * n_edge;
          for (int a = 0; a < 4; ++a) to_local3(ri, ca_i, atom(j, a), f + 3 * a);
          const float* rj = rot.data() + j * 9;
          for (int a = 0; a < 3; ++a)
            for (int b = 0; b < 3; ++b)
              f[12 + a * 3 + b] = ri[0 * 3 + a] * rj[0 * 3 + b] + ri[1 * 3 + a] * rj[1 * 3 + b] + ri[2 * 3 + a] * rj[2 * 3 + b];
          const float dd = norm(sub(atom(j, 1), ca_i));
          for (int b = 0; b < c.n_rbf; ++b) {
            const float centre = c.rbf_max_nm * static_cast<float>(b) / static_cast<float>(c.n_rbf - 1);
            const float z = (dd - centre) / width;
            f[21 + b] = -z * z;
          }
          exp_inplace(f + 21, c.n_rbf);
          const int64_t sep = std::clamp<int64_t>(j - i, -c.max_seq_sep, c.max_seq_sep) + c.max_seq_sep;
          std::copy(sep_table + sep * d, sep_table + (sep + 1) * d, e1.data() + ((i - g0) * k + m) * d);
        }
      }
      // e1 holds the sequence-separation embedding; add edge_in(ef) to it
      linear(ef.data(), edges, n_edge, get("encoder.edge_in.weight"), get("encoder.edge_in.bias"), d, e2.data());
      for (int64_t t = 0; t < edges * d; ++t) e1[t] += e2[t];
      silu_inplace(e1.data(), edges * d);
      linear(e1.data(), edges, d, get("encoder.edge_out.weight"), get("encoder.edge_out.bias"), d, e2.data());
      silu_inplace(e2.data(), edges * d);
      for (int64_t i = g0; i < g1; ++i) {
        float* ai = agg.data() + i * d;
        for (int64_t m = 0; m < k; ++m)
          for (int64_t e = 0; e < d; ++e) ai[e] += e2[((i - g0) * k + m) * d + e];
        for (int64_t e = 0; e < d; ++e) ai[e] /= static_cast<float>(k);
      }
    }
  });

  // node features: sin/cos of phi, psi, omega (zero where undefined) and O in the own frame
  Vec nf(n * 9, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    float* f = nf.data() + i * 9;
    if (i > 0) dihedral_sin_cos(atom(i - 1, 2), atom(i, 0), atom(i, 1), atom(i, 2), f + 0, f + 1);
    if (i + 1 < n) {
      dihedral_sin_cos(atom(i, 0), atom(i, 1), atom(i, 2), atom(i + 1, 0), f + 2, f + 3);
      dihedral_sin_cos(atom(i, 1), atom(i, 2), atom(i + 1, 0), atom(i + 1, 1), f + 4, f + 5);
    }
    to_local3(rot.data() + i * 9, atom(i, 1), atom(i, 3), f + 6);
  }
  Vec x(n * d);
  linear(nf.data(), n, 9, get("encoder.node_in.weight"), get("encoder.node_in.bias"), d, x.data());
  for (int64_t i = 0; i < n * d; ++i) x[i] += agg[i];
  layer_norm(x.data(), n, d, get("encoder.in_norm.weight"), get("encoder.in_norm.bias"), x.data());
  for (int b = 0; b < c.encoder_layers; ++b) block("encoder.blocks." + std::to_string(b), x, n, par);
  layer_norm(x.data(), n, d, get("encoder.out_norm.weight"), get("encoder.out_norm.bias"), x.data());
  const int64_t nl = static_cast<int64_t>(c.levels.size());
  linear(x.data(), n, d, get("encoder.to_latent.weight"), get("encoder.to_latent.bias"), nl, digits, par);
  sigmoid_inplace(digits, n * nl);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t l = 0; l < nl; ++l) digits[i * nl + l] *= static_cast<float>(c.levels[l] - 1);
}

void Tokenizer::decode_frame(const int32_t* tokens, int64_t n, float* xyz, bool par) const {
  const TokenizerConfig& c = cfg_;
  const int64_t d = c.dim, nl = static_cast<int64_t>(c.levels.size());
  Vec code(n * nl);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rest = tokens[i];
    for (int64_t l = 0; l < nl; ++l) {
      const int64_t digit = rest % c.levels[l];
      rest /= c.levels[l];
      code[i * nl + l] = static_cast<float>(digit) / static_cast<float>(c.levels[l] - 1) * 2.0f - 1.0f;
    }
  }
  Vec x(n * d);
  linear(code.data(), n, nl, get("decoder.from_code.weight"), get("decoder.from_code.bias"), d, x.data());
  for (int b = 0; b < c.decoder_layers; ++b) block("decoder.blocks." + std::to_string(b), x, n, par);
  layer_norm(x.data(), n, d, get("decoder.out_norm.weight"), get("decoder.out_norm.bias"), x.data());
  Vec out(n * kHeadOutputs);
  linear(x.data(), n, d, get("decoder.head.weight"), get("decoder.head.bias"), kHeadOutputs, out.data(), par);
  const float* ideal = get("decoder.ideal_local");
  for (int64_t i = 0; i < n; ++i) {
    const float* o = out.data() + i * kHeadOutputs;
    const V3 t = load(o), a = load(o + 3), b0 = load(o + 6);
    const V3 e1 = normalized(a, kFrameEps);
    const V3 e2 = normalized(sub(b0, scale(e1, dot3(b0, e1))), kFrameEps);
    const V3 e3 = cross(e1, e2);
    float* res = xyz + i * 12;
    const int slot[3] = {0, 2, 3};  // N, C, O; CA is the frame origin
    for (int p = 0; p < 3; ++p) {
      float l[3];
      for (int e = 0; e < 3; ++e) l[e] = ideal[p * 3 + e] + 0.1f * o[9 + p * 3 + e];
      const V3 g = {e1.x * l[0] + e2.x * l[1] + e3.x * l[2] + t.x, e1.y * l[0] + e2.y * l[1] + e3.y * l[2] + t.y,
                    e1.z * l[0] + e2.z * l[1] + e3.z * l[2] + t.z};
      res[slot[p] * 3 + 0] = g.x;
      res[slot[p] * 3 + 1] = g.y;
      res[slot[p] * 3 + 2] = g.z;
    }
    res[3] = t.x;
    res[4] = t.y;
    res[5] = t.z;
  }
}

void Tokenizer::encode_digits(const float* xyz, int64_t n_frames, int64_t n_res, float* digits) const {
  if (n_frames < 0 || n_res < 1) bad("encode: need at least one residue");
  for (int64_t i = 0; i < n_frames * n_res * 12; ++i)
    if (!std::isfinite(xyz[i])) bad("encode: coordinates contain NaN or infinite values");
  const int64_t nl = static_cast<int64_t>(cfg_.levels.size());
  if (n_frames < num_threads()) {  // few frames: spread each frame's work over the cores instead
    for (int64_t f = 0; f < n_frames; ++f) encode_frame(xyz + f * n_res * 12, n_res, digits + f * n_res * nl, true);
    return;
  }
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) encode_frame(xyz + f * n_res * 12, n_res, digits + f * n_res * nl, false);
  });
}

void Tokenizer::encode(const float* xyz, int64_t n_frames, int64_t n_res, int32_t* tokens) const {
  const int64_t nl = static_cast<int64_t>(cfg_.levels.size());
  Vec digits(n_frames * n_res * nl);
  encode_digits(xyz, n_frames, n_res, digits.data());
  for (int64_t i = 0; i < n_frames * n_res; ++i) {
    int64_t token = 0, radix = 1;
    for (int64_t l = 0; l < nl; ++l) {
      token += static_cast<int64_t>(std::nearbyint(digits[i * nl + l])) * radix;  // ties to even, as torch.round
      radix *= cfg_.levels[l];
    }
    tokens[i] = static_cast<int32_t>(token);
  }
}

void Tokenizer::decode(const int32_t* tokens, int64_t n_frames, int64_t n_res, float* xyz) const {
  if (n_frames < 0 || n_res < 1) bad("decode: need at least one residue");
  const int64_t k = codebook_size();
  for (int64_t i = 0; i < n_frames * n_res; ++i)
    if (tokens[i] < 0 || tokens[i] >= k)
      bad("decode: token " + std::to_string(tokens[i]) + " is out of range for this tokenizer (codebook size " +
          std::to_string(k) + ")");
  if (n_frames < num_threads()) {
    for (int64_t f = 0; f < n_frames; ++f) decode_frame(tokens + f * n_res, n_res, xyz + f * n_res * 12, true);
    return;
  }
  detail::parallel_for(n_frames, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) decode_frame(tokens + f * n_res, n_res, xyz + f * n_res * 12, false);
  });
}

}  // namespace mdllm
