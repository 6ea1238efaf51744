// Constrained decoding of motion tokens (see mdllm/chain_constraint.hpp).
#include "mdllm/chain_constraint.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "mdllm/geometry.hpp"
#include "mdllm/projection.hpp"
#include "vec3.hpp"

namespace mdllm {

namespace {

constexpr const double* kRadius = geometry::kVdwRadiusNm;  // N, CA, C, O

void bad(const std::string& what) { throw std::invalid_argument("chain constraint: " + what); }

using detail::Vec3;

inline Vec3 at(const double* p) { return {p[0], p[1], p[2]}; }
inline double dist(Vec3 a, Vec3 b) { return detail::norm(a - b); }

// Largest distance of a residue's atoms from its CA.
double reach(const double* r) {
  const Vec3 ca = at(r + 3);
  return std::max({dist(at(r), ca), dist(at(r + 6), ca), dist(at(r + 9), ca)});
}

}  // namespace

ChainConstraint::ChainConstraint(const float* codebook, int64_t n_codes, const float* key, int64_t n_res,
                                 const int32_t* classes, const uint8_t* levels, int64_t n_bins, double bin_deg,
                                 const uint8_t* linked, const ChainConstraintParams& params)
    : k_(n_codes), l_(n_res), n_bins_(n_bins), bin_deg_(bin_deg), p_(params) {
  if (n_codes < 1 || n_res < 1) bad("need at least one code and one residue");
  if (n_bins < 1 || !(bin_deg > 0)) bad("the Ramachandran grid needs bins of positive width");
  if (!(p_.link_tolerance_nm >= 0) || !(p_.clash_overlap_nm >= 0) || !(p_.ca_min_nm >= 0) ||
      !(p_.neighbour_cutoff_nm >= 0) || !(p_.break_nm > 0) || p_.local_reach < 0 || p_.local_reach == 1)
    bad("tolerances must be non-negative, break_nm positive and local_reach 0 (no local clash check) or at least 2");
  codes_.assign(codebook, codebook + n_codes * 12);
  key_.assign(key, key + n_res * 12);
  for (double v : codes_)
    if (!std::isfinite(v)) bad("the codebook contains NaN or infinite values");
  for (double v : key_)
    if (!std::isfinite(v)) bad("key coordinates contain NaN or infinite values");
  classes_.assign(classes, classes + n_res);
  for (int32_t c : classes_)
    if (c < 0 || c > 3) bad("Ramachandran class " + std::to_string(c) + " outside 0..3");
  levels_.assign(levels, levels + 4 * n_bins * n_bins);
  phi_open_.assign(4 * n_bins, 0);
  for (int64_t c = 0; c < 4; ++c)
    for (int64_t i = 0; i < n_bins; ++i)
      for (int64_t k = 0; k < n_bins; ++k) phi_open_[c * n_bins + i] |= levels_[(c * n_bins + i) * n_bins + k] != 0;

  // Each key residue's rigid frame, as the motion tokenizer builds it (x along CA->C, y towards N).
  frames_.resize(n_res * 9);
  for (int64_t i = 0; i < n_res; ++i) {
    const double* r = &key_[i * 12];
    Vec3 e1, e2, e3;
    const auto status = detail::residue_frame(at(r), at(r + 3), at(r + 6), 1e-6, e1, e2, e3);
    if (status == detail::FrameStatus::kCaCCoincide)
      bad("key residue " + std::to_string(i) + " is degenerate (CA and C coincide)");
    if (status == detail::FrameStatus::kCollinear)
      bad("key residue " + std::to_string(i) + " is degenerate (N, CA and C are collinear)");
    double* f = &frames_[i * 9];
    f[0] = e1.x, f[1] = e2.x, f[2] = e3.x;
    f[3] = e1.y, f[4] = e2.y, f[5] = e3.y;
    f[6] = e1.z, f[7] = e2.z, f[8] = e3.z;
  }

  linked_.assign(std::max<int64_t>(n_res - 1, 0), 1);
  key_cn_.assign(linked_.size(), 0.0);
  key_ca_.assign(linked_.size(), 0.0);
  key_angles_.assign(linked_.size() * 3, 0.0);
  for (int64_t i = 0; i + 1 < n_res; ++i) {
    const double* r = &key_[i * 12];
    const double* next = &key_[(i + 1) * 12];
    key_cn_[i] = dist(at(r + 6), at(next));
    key_ca_[i] = dist(at(r + 3), at(next + 3));
    key_angles_[i * 3] = dist(at(r + 3), at(next));
    key_angles_[i * 3 + 1] = dist(at(r + 6), at(next + 3));
    key_angles_[i * 3 + 2] = dist(at(r + 9), at(next));
    linked_[i] = (linked == nullptr || linked[i]) && key_cn_[i] <= p_.break_nm;
  }

  clash_partners_.resize(n_res);
  for (int64_t j = 0; j < n_res; ++j)
    for (int64_t k = 0; k + 2 <= j; ++k)
      if (j - k <= p_.local_reach ||
          dist(at(&key_[j * 12 + 3]), at(&key_[k * 12 + 3])) < p_.neighbour_cutoff_nm)
        clash_partners_[j].push_back(k);
}

void ChainConstraint::place(int64_t i, int32_t k, double* out) const {
  const double* f = &frames_[i * 9];
  const double* c = &codes_[static_cast<int64_t>(k) * 12];
  const double* y = &key_[i * 12];
  for (int a = 0; a < 4; ++a)
    for (int r = 0; r < 3; ++r)
      out[a * 3 + r] = y[a * 3 + r] + (f[r * 3] * c[a * 3] + f[r * 3 + 1] * c[a * 3 + 1] + f[r * 3 + 2] * c[a * 3 + 2]);
}

// What code k of residue j is judged against: the residues placed by their drawn codes.
struct ChainConstraint::Scene {
  bool link = false, rama = false, ahead = false;
  bool distances = true;  // (a); false where the projection has restored them
  double prev[12] = {}, before[12] = {};
  const uint8_t* level_row = nullptr;
  const uint8_t* open_row = nullptr;
  std::vector<double> others, others_reach;  // placed clash partners and their reach
  double tolerance = 0;  // (a), nm
  double clash_dist[4][4] = {};
  double max_clash = 0;
};

int64_t ChainConstraint::angle_bin(double deg) const {
  return std::clamp<int64_t>(static_cast<int64_t>(std::floor((deg + 180.0) / bin_deg_)), 0, n_bins_ - 1);
}

void ChainConstraint::check_drawn(int64_t j, const int32_t* drawn, int64_t count) const {
  if (j < 0 || j >= l_) bad("residue " + std::to_string(j) + " outside 0.." + std::to_string(l_ - 1));
  for (int64_t i = 0; i < count; ++i)
    if (drawn[i] < 0 || drawn[i] >= k_) bad("drawn code " + std::to_string(drawn[i]) + " outside the codebook");
}

ChainConstraint::Scene ChainConstraint::prepare(int64_t j, const std::function<void(int64_t, double*)>& placed,
                                                bool relaxed) const {
  Scene s;
  s.link = j > 0 && linked_[j - 1];
  if (s.link) placed(j - 1, s.prev);
  s.rama = s.link && p_.ramachandran && j >= 2 && linked_[j - 2];
  int64_t phi_bin = 0;
  if (s.rama) {
    placed(j - 2, s.before);
    const double phi = detail::dihedral_deg(at(s.before + 6), at(s.prev), at(s.prev + 3), at(s.prev + 6));
    phi_bin = angle_bin(phi);
  }
  s.level_row = &levels_[(classes_[s.rama ? j - 1 : 0] * n_bins_ + phi_bin) * n_bins_];
  // Residue j's own phi is defined by its placement too: it must leave some psi allowed (when j has a psi).
  s.ahead = s.link && p_.ramachandran && j + 1 < l_ && linked_[j];
  s.open_row = &phi_open_[classes_[j] * n_bins_];
  const auto& partners = clash_partners_[j];
  s.others.resize(partners.size() * 12);
  s.others_reach.resize(partners.size());
  for (size_t p = 0; p < partners.size(); ++p) {
    placed(partners[p], &s.others[p * 12]);
    s.others_reach[p] = reach(&s.others[p * 12]);
  }
  s.tolerance = p_.link_tolerance_nm * (relaxed ? kRelaxTolerance : 1.0);
  const double overlap = p_.clash_overlap_nm + (relaxed ? kRelaxOverlapNm : 0.0);
  for (int a = 0; a < 4; ++a)
    for (int b = 0; b < 4; ++b) s.clash_dist[a][b] = kRadius[a] + kRadius[b] - overlap;
  s.max_clash = std::max(kRadius[1] + kRadius[1] - overlap, p_.ca_min_nm);
  return s;
}

bool ChainConstraint::judge(const Scene& s, int64_t j, const double* x) const {
  if (s.link && s.distances) {
    if ((p_.link_cn && std::abs(dist(at(s.prev + 6), at(x)) - key_cn_[j - 1]) > s.tolerance) ||
        std::abs(dist(at(s.prev + 3), at(x + 3)) - key_ca_[j - 1]) > s.tolerance)
      return false;
    if (p_.link_angles) {
      const double* want = &key_angles_[(j - 1) * 3];
      if (std::abs(dist(at(s.prev + 3), at(x)) - want[0]) > s.tolerance ||
          std::abs(dist(at(s.prev + 6), at(x + 3)) - want[1]) > s.tolerance ||
          std::abs(dist(at(s.prev + 9), at(x)) - want[2]) > s.tolerance)
        return false;
    }
  }
  if (s.link) {
    if (s.rama) {
      const double psi = detail::dihedral_deg(at(s.prev), at(s.prev + 3), at(s.prev + 6), at(x));
      if (!s.level_row[angle_bin(psi)]) return false;
    }
    if (s.ahead) {
      const double phi_j = detail::dihedral_deg(at(s.prev + 6), at(x), at(x + 3), at(x + 6));
      if (!s.open_row[angle_bin(phi_j)]) return false;
    }
  }
  const Vec3 ca = at(x + 3);
  const double own_reach = reach(x);
  for (size_t p = 0; p < s.others_reach.size(); ++p) {
    const double* o = &s.others[p * 12];
    // Atoms of two residues whose CAs are this far apart cannot come close enough to clash.
    if (dist(ca, at(o + 3)) >= own_reach + s.others_reach[p] + s.max_clash) continue;
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b) {
        const double d = dist(at(x + a * 3), at(o + b * 3));
        if (d < s.clash_dist[a][b] || (a == 1 && b == 1 && d < p_.ca_min_nm)) return false;
      }
  }
  return true;
}

int64_t ChainConstraint::mask(int64_t j, const int32_t* drawn, uint8_t* allowed) const {
  check_drawn(j, drawn, j);
  const auto by_code = [&](int64_t i, double* out) { place(i, drawn[i], out); };
  for (const bool relaxed : {false, true}) {
    if (relaxed && !p_.relax_when_empty) break;
    const Scene s = prepare(j, by_code, relaxed);
    int64_t n_allowed = 0;
    double x[12];
    for (int32_t k = 0; k < k_; ++k) {
      place(j, k, x);
      allowed[k] = judge(s, j, x);
      n_allowed += allowed[k];
    }
    if (n_allowed > 0) return n_allowed;
  }
  std::fill(allowed, allowed + k_, uint8_t{1});
  return 0;
}

bool ChainConstraint::allows(int64_t j, const int32_t* drawn, int32_t code) const {
  check_drawn(j, drawn, j);
  if (code < 0 || code >= k_) bad("code " + std::to_string(code) + " outside the codebook");
  double x[12];
  place(j, code, x);
  return judge(prepare(j, [&](int64_t i, double* out) { place(i, drawn[i], out); }, false), j, x);
}

void ChainConstraint::attach_decoder(const MotionContextDecoder& decoder, const int32_t* decoder_classes) {
  if (decoder.ahead() != 0)
    bad("the decoder looks " + std::to_string(decoder.ahead()) +
        " residues ahead; judging draws as decoded needs a causal one (ahead 0)");
  if (decoder.codes() != k_)
    bad("the decoder has " + std::to_string(decoder.codes()) + " codes, the constraint " + std::to_string(k_));
  const std::vector<float> key(key_.begin(), key_.end());  // the float key this was built from
  layout_ = decoder.layout(key.data(), l_, decoder_classes);
  decoder_ = &decoder;
}

int64_t ChainConstraint::window_faults(const float* w, int64_t lo, int64_t last, const double* earlier) const {
  const auto atom = [&](int64_t i, int a) {
    if (i < lo) return at(earlier + i * 12 + a * 3);
    const float* p = w + (i - lo) * 12 + a * 3;
    return Vec3{p[0], p[1], p[2]};
  };
  int64_t faults = 0;
  if (p_.ramachandran)
    for (int64_t r = lo + 1; r < last; ++r) {
      if (!linked_[r - 1] || !linked_[r]) continue;
      const double phi = detail::dihedral_deg(atom(r - 1, 2), atom(r, 0), atom(r, 1), atom(r, 2));
      const double psi = detail::dihedral_deg(atom(r, 0), atom(r, 1), atom(r, 2), atom(r + 1, 0));
      faults += levels_[(classes_[r] * n_bins_ + angle_bin(phi)) * n_bins_ + angle_bin(psi)] == 0;
    }
  const auto clashes = [&](int64_t a, int64_t b) {
    int64_t n = 0;
    for (int u = 0; u < 4; ++u)
      for (int v = 0; v < 4; ++v) {
        const double d = dist(atom(a, u), atom(b, v));
        n += d < kRadius[u] + kRadius[v] - p_.clash_overlap_nm || (u == 1 && v == 1 && d < p_.ca_min_nm);
      }
    return n;
  };
  for (int64_t b = lo; b <= last; ++b) {
    for (int64_t a = lo; a + 2 <= b; ++a) faults += clashes(a, b);
    for (int64_t a : clash_partners_[b])  // and the window's clash partners before it, as they settled
      if (a < lo) faults += clashes(a, b);
  }
  return faults;
}

void ChainConstraint::decode_span(int64_t lo, int64_t end, const int32_t* drawn, float* raw, float* keys) const {
  double x[12];
  for (int64_t r = lo; r < end; ++r) {
    decoder_->decode_residue(*layout_, r, drawn, x);
    std::copy(x, x + 12, raw + (r - lo) * 12);
    std::copy(&key_[r * 12], &key_[r * 12] + 12, keys + (r - lo) * 12);
  }
}

ChainConstraint::DecodedPrefix ChainConstraint::decoded_prefix(int64_t j, const int32_t* drawn) const {
  if (!decoder_) bad("allows_decoded needs an attached decoder");
  check_drawn(j, drawn, j);
  DecodedPrefix p;
  p.j = j;
  p.lo = std::max<int64_t>(0, j - kDecodedWindow);
  const int64_t n = j - p.lo + 1;
  p.codes.assign(drawn, drawn + j);
  p.codes.push_back(0);  // residue j's slot: the code judged
  p.raw.assign(n * 12, 0.0f);
  p.key.assign(n * 12, 0.0f);
  decode_span(p.lo, j, drawn, p.raw.data(), p.key.data());
  std::copy(&key_[j * 12], &key_[j * 12] + 12, &p.key[(n - 1) * 12]);
  p.earlier.assign(p.lo * 12, 0.0);  // the window's clash partners before it, as they settled
  std::vector<char> done(p.lo, 0);
  for (int64_t r = p.lo; r <= j; ++r)
    for (int64_t i : clash_partners_[r])
      if (i < p.lo && !done[i]) settled(i, drawn, &p.earlier[i * 12]), done[i] = 1;
  if (n > 1) {  // lo .. j-1 projected without j: the faults that j must not add to
    std::vector<float> without((n - 1) * 12);
    projection::project_to_key_geometry(p.raw.data(), 1, n - 1, p.key.data(), without.data());
    p.faults_without = window_faults(without.data(), p.lo, j - 1, p.earlier.data());
  }
  return p;
}

void ChainConstraint::settled(int64_t i, const int32_t* drawn, double* out) const {
  const int64_t lo = std::max<int64_t>(0, i - kSettleReach), n = i + kSettleReach - lo + 1;
  SettledKey key{};
  key[0] = static_cast<int32_t>(i);
  for (int64_t r = lo; r < lo + n; ++r) key[1 + r - lo] = drawn[r];
  {
    const std::lock_guard<std::mutex> lock(settled_mutex_);
    const auto it = settled_cache_.find(key);
    if (it != settled_cache_.end()) {
      std::copy(it->second.begin(), it->second.end(), out);
      return;
    }
  }
  std::vector<float> raw(n * 12), keys(n * 12);
  decode_span(lo, lo + n, drawn, raw.data(), keys.data());
  projection::project_to_key_geometry(raw.data(), 1, n, keys.data(), raw.data());
  std::array<double, 12> value;
  std::copy(&raw[(i - lo) * 12], &raw[(i - lo) * 12] + 12, value.begin());
  std::copy(value.begin(), value.end(), out);
  const std::lock_guard<std::mutex> lock(settled_mutex_);
  if (settled_cache_.size() > kSettledCacheSize) settled_cache_.clear();
  settled_cache_.emplace(key, value);
}

bool ChainConstraint::allows_decoded(DecodedPrefix& p, int32_t code) const {
  if (code < 0 || code >= k_) bad("code " + std::to_string(code) + " outside the codebook");
  const int64_t j = p.j, lo = p.lo, n = j - lo + 1;
  p.codes[j] = code;
  double x[12];
  decoder_->decode_residue(*layout_, j, p.codes.data(), x);
  std::copy(x, x + 12, &p.raw[(n - 1) * 12]);
  // Residues lo..j projected together (float, as decoded frames are projected).
  std::vector<float> with(n * 12);
  projection::project_to_key_geometry(p.raw.data(), 1, n, p.key.data(), with.data());
  const auto as_judged = [&](int64_t i, double* out) {
    if (i < lo)
      std::copy_n(&p.earlier[i * 12], 12, out);
    else
      std::copy_n(&with[(i - lo) * 12], 12, out);
  };
  Scene s = prepare(j, as_judged, false);
  s.distances = false;
  as_judged(j, x);
  if (!judge(s, j, x)) return false;
  return n < 2 || window_faults(with.data(), lo, j - 1, p.earlier.data()) <= p.faults_without;
}

bool ChainConstraint::allows_decoded(int64_t j, const int32_t* drawn) const {
  DecodedPrefix p = decoded_prefix(j, drawn);
  return allows_decoded(p, drawn[j]);
}

}  // namespace mdllm
