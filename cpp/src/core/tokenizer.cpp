// The tokenizer network in plain C++, mirroring python/mdllm/tokenizer/{features,model}.py op by op.
#include "mdllm/tokenizer.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "json.hpp"
#include "mdllm/geometry.hpp"
#include "mdllm/safetensors.hpp"
#include "parallel.hpp"

namespace mdllm {

namespace {

constexpr float kLayerNormEps = 1e-5f;
constexpr float kFeatureEps = 1e-8f;
constexpr float kFrameEps = 1e-6f;
constexpr int kHeadOutputs = 18;  // translation 3, two rotation vectors 6, local N, C, O corrections 9

using Vec = std::vector<float>;

inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// y (n, out) = x (n, in) W^T + b. `wt` is W transposed to (in, out) at load time, so the inner loop
// is a contiguous multiply-add over outputs that the compiler vectorises without reordering sums.
// Runs fn(begin, end) over [0, n): split across threads when `par` (a single frame uses every core),
// in one piece otherwise (frames are already spread over threads).
template <class Fn>
void rows(bool par, int64_t n, Fn&& fn) {
  if (par) detail::parallel_for(n, fn, 8);
  else if (n > 0) fn(int64_t{0}, n);
}

// Rows [begin, end) of a linear layer. Compiled for AVX2+FMA as well as the baseline; the loader
// picks the variant the CPU supports (GCC function multi-versioning), so the wheel stays portable.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("avx2,fma", "default")))
#endif
void linear_rows(const float* x, int64_t begin, int64_t end, int64_t in, const float* wt, const float* b,
                 int64_t out, float* y) {
  // register tile: 4 rows x 32 outputs accumulate over the whole input before one store
  constexpr int64_t kR = 4, kO = 32;
  int64_t r = begin;
  for (; r + kR <= end; r += kR) {
    int64_t o0 = 0;
    for (; o0 + kO <= out; o0 += kO) {
      float acc[kR][kO];
      for (int64_t a = 0; a < kR; ++a)
        for (int64_t o = 0; o < kO; ++o) acc[a][o] = b[o0 + o];
      for (int64_t i = 0; i < in; ++i) {
        const float* wi = wt + i * out + o0;
        for (int64_t a = 0; a < kR; ++a) {
          const float xa = x[(r + a) * in + i];
          for (int64_t o = 0; o < kO; ++o) acc[a][o] += xa * wi[o];
        }
      }
      for (int64_t a = 0; a < kR; ++a)
        for (int64_t o = 0; o < kO; ++o) y[(r + a) * out + o0 + o] = acc[a][o];
    }
    for (int64_t a = 0; a < kR; ++a) {  // leftover outputs
      const float* xr = x + (r + a) * in;
      float* yr = y + (r + a) * out;
      for (int64_t o = o0; o < out; ++o) yr[o] = b[o];
      for (int64_t i = 0; i < in; ++i)
        for (int64_t o = o0; o < out; ++o) yr[o] += xr[i] * wt[i * out + o];
    }
  }
  for (; r < end; ++r) {  // leftover rows
    const float* xr = x + r * in;
    float* yr = y + r * out;
    for (int64_t o = 0; o < out; ++o) yr[o] = b[o];
    for (int64_t i = 0; i < in; ++i) {
      const float xi = xr[i];
      const float* wi = wt + i * out;
      for (int64_t o = 0; o < out; ++o) yr[o] += xi * wi[o];
    }
  }
}

void linear(const float* x, int64_t n, int64_t in, const float* wt, const float* b, int64_t out, float* y,
            bool par = false) {
  rows(par, n, [&](int64_t begin, int64_t end) { linear_rows(x, begin, end, in, wt, b, out, y); });
}

void layer_norm(float* x, int64_t n, int64_t d, const float* gamma, const float* beta, float* out) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * d;
    float mean = 0.0f;
    for (int64_t i = 0; i < d; ++i) mean += xr[i];
    mean /= static_cast<float>(d);
    float var = 0.0f;
    for (int64_t i = 0; i < d; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= static_cast<float>(d);
    const float inv = 1.0f / std::sqrt(var + kLayerNormEps);
    for (int64_t i = 0; i < d; ++i) out[r * d + i] = (xr[i] - mean) * inv * gamma[i] + beta[i];
  }
}

inline float silu(float v) { return v / (1.0f + std::exp(-v)); }
inline float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

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

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad(path + ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
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
}

Tokenizer Tokenizer::from_directory(const std::string& directory) {
  return Tokenizer(directory + "/model.safetensors", read_text(directory + "/config.json"));
}

const float* Tokenizer::get(const std::string& name) const { return w_.at(name).data(); }

// Pre-norm transformer block with a clipped relative-position attention bias, in place on x (n, dim).
void Tokenizer::block(const std::string& p, Vec& x, int64_t n, bool par) const {
  const int64_t d = cfg_.dim, heads = cfg_.heads, dh = d / heads, f = cfg_.ffn_dim, r = cfg_.max_rel_pos;
  Vec h(n * d), q(n * d), k(n * d), v(n * d), att(n * d), tmp(n * d);
  layer_norm(x.data(), n, d, get(p + ".attn_norm.weight"), get(p + ".attn_norm.bias"), h.data());
  linear(h.data(), n, d, get(p + ".attn.q_proj.weight"), get(p + ".attn.q_proj.bias"), d, q.data(), par);
  linear(h.data(), n, d, get(p + ".attn.k_proj.weight"), get(p + ".attn.k_proj.bias"), d, k.data(), par);
  linear(h.data(), n, d, get(p + ".attn.v_proj.weight"), get(p + ".attn.v_proj.bias"), d, v.data(), par);
  const float* bias = get(p + ".attn.rel_pos_bias");
  const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(dh));
  // keys laid out per head contiguously for the dot products
  Vec kh(n * dh);
  for (int64_t hd = 0; hd < heads; ++hd) {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t e = 0; e < dh; ++e) kh[j * dh + e] = k[j * d + hd * dh + e];
    const float* bh = bias + hd * (2 * r + 1);
    rows(par, n, [&](int64_t begin, int64_t end) {
      Vec scores(n);
      for (int64_t i = begin; i < end; ++i) {
        const float* qi = q.data() + i * d + hd * dh;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          const int64_t rel = std::clamp<int64_t>(j - i, -r, r) + r;
          scores[j] = dot(qi, kh.data() + j * dh, dh) * inv_sqrt + bh[rel];
          mx = std::max(mx, scores[j]);
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < n; ++j) {
          scores[j] = std::exp(scores[j] - mx);
          sum += scores[j];
        }
        float* out = att.data() + i * d + hd * dh;
        std::fill(out, out + dh, 0.0f);
        for (int64_t j = 0; j < n; ++j) {
          const float pj = scores[j] / sum;
          const float* vj = v.data() + j * d + hd * dh;
          for (int64_t e = 0; e < dh; ++e) out[e] += pj * vj[e];
        }
      }
    });
  }
  linear(att.data(), n, d, get(p + ".attn.o_proj.weight"), get(p + ".attn.o_proj.bias"), d, tmp.data(), par);
  for (int64_t i = 0; i < n * d; ++i) x[i] += tmp[i];
  layer_norm(x.data(), n, d, get(p + ".ffn_norm.weight"), get(p + ".ffn_norm.bias"), h.data());
  Vec up(n * f);
  linear(h.data(), n, d, get(p + ".up_proj.weight"), get(p + ".up_proj.bias"), f, up.data(), par);
  for (float& u : up) u = silu(u);
  linear(up.data(), n, f, get(p + ".down_proj.weight"), get(p + ".down_proj.bias"), d, tmp.data(), par);
  for (int64_t i = 0; i < n * d; ++i) x[i] += tmp[i];
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
      for (int64_t j = 0; j < n; ++j) dist[j] = {norm(sub(atom(j, 1), atom(i, 1))), j};
      std::partial_sort(dist.begin(), dist.begin() + k, dist.end());
      for (int64_t m = 0; m < k; ++m) nbr[i * k + m] = dist[m].second;
    }
  });

  // edge MLP, averaged over each residue's neighbours
  Vec agg(n * d, 0.0f);
  const float* sep_table = get("encoder.seq_sep.weight");
  const float width = c.rbf_max_nm / static_cast<float>(c.n_rbf);
  rows(par, n, [&](int64_t begin, int64_t end) {
  Vec ef(k * n_edge), e1(k * d), e2(k * d);
  for (int64_t i = begin; i < end; ++i) {
    const float* ri = rot.data() + i * 9;
    const V3 ca_i = atom(i, 1);
    for (int64_t m = 0; m < k; ++m) {
      const int64_t j = nbr[i * k + m];
      float* f = ef.data() + m * n_edge;
      for (int a = 0; a < 4; ++a) to_local3(ri, ca_i, atom(j, a), f + 3 * a);
      const float* rj = rot.data() + j * 9;
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b)
          f[12 + a * 3 + b] = ri[0 * 3 + a] * rj[0 * 3 + b] + ri[1 * 3 + a] * rj[1 * 3 + b] + ri[2 * 3 + a] * rj[2 * 3 + b];
      const float dd = norm(sub(atom(j, 1), ca_i));
      for (int b = 0; b < c.n_rbf; ++b) {
        const float centre = c.rbf_max_nm * static_cast<float>(b) / static_cast<float>(c.n_rbf - 1);
        const float z = (dd - centre) / width;
        f[21 + b] = std::exp(-z * z);
      }
    }
    linear(ef.data(), k, n_edge, get("encoder.edge_in.weight"), get("encoder.edge_in.bias"), d, e1.data());
    for (int64_t m = 0; m < k; ++m) {
      const int64_t sep = std::clamp<int64_t>(nbr[i * k + m] - i, -c.max_seq_sep, c.max_seq_sep) + c.max_seq_sep;
      for (int64_t e = 0; e < d; ++e) e1[m * d + e] = silu(e1[m * d + e] + sep_table[sep * d + e]);
    }
    linear(e1.data(), k, d, get("encoder.edge_out.weight"), get("encoder.edge_out.bias"), d, e2.data());
    for (int64_t m = 0; m < k; ++m)
      for (int64_t e = 0; e < d; ++e) agg[i * d + e] += silu(e2[m * d + e]);
    for (int64_t e = 0; e < d; ++e) agg[i * d + e] /= static_cast<float>(k);
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
  for (int64_t i = 0; i < n; ++i)
    for (int64_t l = 0; l < nl; ++l) digits[i * nl + l] = sigmoid(digits[i * nl + l]) * static_cast<float>(c.levels[l] - 1);
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
