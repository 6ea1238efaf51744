// Frame repair of motion tokens (see mdllm/frame_repair.hpp).
#include "mdllm/frame_repair.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "mdllm/geometry.hpp"
#include "mdllm/projection.hpp"
#include "vec3.hpp"

namespace mdllm {

namespace {

constexpr const double* kRadius = geometry::kVdwRadiusNm;  // N, CA, C, O

void bad(const std::string& what) { throw std::invalid_argument("frame repair: " + what); }

// Residues each side of a changed code that its first judgement projects (a chain longer than 2 x this + 1).
constexpr int64_t kRepairReach = 12;

using detail::Vec3;

}  // namespace

bool FrameRepair::Faults::valid(double max_rama_fraction) const {
  const double fraction = static_cast<double>(rama.size()) / static_cast<double>(std::max<int64_t>(defined, 1));
  return geometry.empty() && clashes.empty() && fraction <= max_rama_fraction;
}

FrameRepair::FrameRepair(const MotionTokenizer& tokenizer, const MotionContextDecoder* decoder, const float* key,
                         int64_t n_res, const int32_t* classes, const int32_t* decoder_classes, const int32_t* chain,
                         const uint8_t* levels, int64_t n_bins, double bin_deg, const validity::IdealGeometry& ideal,
                         const FrameRepairParams& params)
    : tokenizer_(tokenizer), decoder_(decoder), l_(n_res), n_bins_(n_bins), bin_deg_(bin_deg), p_(params), ideal_(ideal) {
  if (n_res < 1) bad("need at least one residue");
  if (n_bins < 1 || !(bin_deg > 0)) bad("the Ramachandran grid needs bins of positive width");
  if (p_.max_changes < 0 || p_.candidates < 1 || p_.wide_candidates < 0 || !(p_.max_z > 0) || !(p_.break_nm > 0) ||
      p_.min_separation < 1)
    bad("max_changes must be >= 0, candidates >= 1, wide_candidates >= 0, max_z and break_nm positive, "
        "min_separation >= 1");
  if (decoder_ && decoder_->codes() != tokenizer_.codebook_size()) bad("the decoder belongs to another codebook");
  key_.assign(key, key + n_res * 12);
  for (float v : key_)
    if (!std::isfinite(v)) bad("key coordinates contain NaN or infinite values");
  classes_.assign(classes, classes + n_res);
  for (int32_t c : classes_)
    if (c < 0 || c > 3) bad("Ramachandran class " + std::to_string(c) + " outside 0..3");
  if (decoder_classes) decoder_classes_.assign(decoder_classes, decoder_classes + n_res);
  chain_.assign(chain, chain + n_res);
  chain_end_.assign(n_res, 1);
  for (int64_t i = 0; i + 1 < n_res; ++i) chain_end_[i] = chain_[i] != chain_[i + 1];
  levels_.assign(levels, levels + 4 * n_bins * n_bins);
  if (decoder_) layout_ = decoder_->layout(key_.data(), l_, decoder_classes_.empty() ? nullptr : decoder_classes_.data());
}

void FrameRepair::use_fine_codes() {
  if (!decoder_) bad("fine codes need the context decoder");
  if (!tokenizer_.has_fine()) bad("the tokenizer has no fine codes loaded");
  const std::vector<double>& v = tokenizer_.fine_codes();
  double best = std::numeric_limits<double>::infinity();
  for (int64_t k = 0; k < tokenizer_.fine_size(); ++k) {
    double sq = 0;
    for (int o = 0; o < 12; ++o) sq += v[k * 12 + o] * v[k * 12 + o];
    if (sq < best) best = sq, fine_default_ = static_cast<int32_t>(k);
  }
  fine_ = true;
}

std::vector<double> FrameRepair::fine_extra(const int32_t* codes, const int32_t* fine) const {
  if (!has_fine()) {
    if (fine) bad("fine codes given, but this repair does not use them");
    return {};
  }
  if (!fine) bad("this repair uses fine codes: give the frame's fine codes");
  tokenizer_.check_fine(codes, fine, l_);
  std::vector<double> extra(l_ * 12, 0.0);
  for (int64_t i = 0; i < l_; ++i)
    if (fine[i] >= 0) std::copy_n(&tokenizer_.fine_codes()[fine[i] * 12], 12, &extra[i * 12]);
  return extra;
}

void FrameRepair::decode_raw(const int32_t* codes, int64_t first, int64_t last, float* raw, const double* extra) const {
  if (!decoder_) {
    tokenizer_.decode(codes + first, 1, last - first, key_.data() + first * 12, raw + first * 12);
    return;
  }
  double placed[12];
  for (int64_t i = first; i < last; ++i) {
    decoder_->decode_residue(*layout_, i, codes, placed, extra);
    for (int o = 0; o < 12; ++o) raw[i * 12 + o] = static_cast<float>(placed[o]);
  }
}

std::pair<int64_t, int64_t> FrameRepair::seen_by(int64_t r) const {
  if (!decoder_) return {r, r + 1};
  if (decoder_->spatial() > 0) return {0, l_};  // nearest residues in space see it too
  return {std::max<int64_t>(0, r - decoder_->ahead()), std::min<int64_t>(l_, r + decoder_->window() + 1)};
}

void FrameRepair::decode(const int32_t* codes, float* out, const int32_t* fine) const {
  const std::vector<double> extra = fine_extra(codes, fine);
  decode_raw(codes, 0, l_, out, extra.empty() ? nullptr : extra.data());
  projection::project_to_key_geometry(out, 1, l_, key_.data(), out);
}

FrameRepair::Faults FrameRepair::faults(const float* xyz) const {
  Faults f;
  auto atom = [&](int64_t i, int a) { return detail::load(xyz + (i * 4 + a) * 3); };
  auto outlier = [&](double value, float ideal, float sigma) { return std::fabs(value - ideal) / sigma > p_.max_z; };
  // Geometry, as validity::check_bonds judges it.
  for (int64_t i = 0; i < l_; ++i) {
    const Vec3 n = atom(i, 0), ca = atom(i, 1), c = atom(i, 2), o = atom(i, 3);
    if (outlier(detail::norm(ca - n), ideal_.bond[0], ideal_.bond_sigma[0]) ||
        outlier(detail::norm(c - ca), ideal_.bond[1], ideal_.bond_sigma[1]) ||
        outlier(detail::norm(o - c), ideal_.bond[3], ideal_.bond_sigma[3]) ||
        outlier(detail::angle(n, ca, c), ideal_.angle[0], ideal_.angle_sigma[0]) ||
        outlier(detail::angle(ca, c, o), ideal_.angle[3], ideal_.angle_sigma[3]))
      f.geometry.emplace_back(i, i);
    if (i + 1 >= l_ || chain_end_[i]) continue;
    const Vec3 n1 = atom(i + 1, 0), ca1 = atom(i + 1, 1);
    const double peptide = detail::norm(n1 - c);
    if (peptide > p_.break_nm || outlier(peptide, ideal_.bond[2], ideal_.bond_sigma[2]) ||
        outlier(detail::angle(ca, c, n1), ideal_.angle[1], ideal_.angle_sigma[1]) ||
        outlier(detail::angle(c, n1, ca1), ideal_.angle[2], ideal_.angle_sigma[2]))
      f.geometry.emplace_back(i, i + 1);
  }
  // Clashes, as validity::find_clashes judges them (one entry per residue pair).
  // CA pairs further apart than the largest clash distance plus two atoms' reach from their CA (O: 0.24 nm)
  // cannot hold a clashing atom pair.
  const double reach = 2 * kRadius[1] - p_.clash_overlap_nm + 2 * 0.26;
  for (int64_t i = 0; i < l_; ++i)
    for (int64_t j = i + 1; j < l_; ++j) {
      if (chain_[i] == chain_[j] && j - i < p_.min_separation) continue;
      const double ca_ca = detail::norm(atom(i, 1) - atom(j, 1));
      if (ca_ca > std::max(reach, p_.ca_min_nm)) continue;
      bool clash = ca_ca < p_.ca_min_nm;
      for (int a = 0; a < 4 && !clash; ++a)
        for (int b = 0; b < 4 && !clash; ++b)
          clash = detail::norm(atom(i, a) - atom(j, b)) < kRadius[a] + kRadius[b] - p_.clash_overlap_nm;
      if (clash) f.clashes.emplace_back(i, j);
    }
  // Ramachandran outliers of residues with both angles defined.
  for (int64_t i = 1; i + 1 < l_; ++i) {
    if (chain_end_[i - 1] || chain_end_[i]) continue;
    const double phi = detail::dihedral_deg(atom(i - 1, 2), atom(i, 0), atom(i, 1), atom(i, 2));
    const double psi = detail::dihedral_deg(atom(i, 0), atom(i, 1), atom(i, 2), atom(i + 1, 0));
    if (!std::isfinite(phi) || !std::isfinite(psi)) continue;
    ++f.defined;
    auto bin = [&](double deg) {
      return std::clamp<int64_t>(static_cast<int64_t>(std::floor((deg + 180.0) / bin_deg_)), 0, n_bins_ - 1);
    };
    if (levels_[(classes_[i] * n_bins_ + bin(phi)) * n_bins_ + bin(psi)] == 0) f.rama.push_back(i);
  }
  return f;
}

FrameRepair::Outcome FrameRepair::repair(int32_t* codes, const float* logits, int64_t row_stride, int32_t* fine) const {
  const int64_t K = tokenizer_.codebook_size();
  if (row_stride < K) bad("logit rows shorter than the codebook");
  for (int64_t i = 0; i < l_; ++i)
    if (codes[i] < 0 || codes[i] >= K) bad("code " + std::to_string(codes[i]) + " outside 0.." + std::to_string(K - 1));
  std::vector<double> extra = fine_extra(codes, fine);
  double* extra_p = extra.empty() ? nullptr : extra.data();
  // A first code c at residue r keeps r's fine code when both take one, gains the default one, or drops it.
  auto fine_for = [&](int64_t r, int32_t c) -> int32_t {
    if (!tokenizer_.fine_follows()[c]) return -1;
    return fine[r] >= 0 ? fine[r] : fine_default_;
  };
  auto set_extra = [&](int64_t r, int32_t f) {
    for (int o = 0; o < 12; ++o) extra[r * 12 + o] = f >= 0 ? tokenizer_.fine_codes()[f * 12 + o] : 0.0;
  };
  Outcome out;
  std::vector<float> raw(l_ * 12), trial_raw, xyz(l_ * 12);
  decode_raw(codes, 0, l_, raw.data(), extra_p);
  projection::project_to_key_geometry(raw.data(), 1, l_, key_.data(), xyz.data());
  Faults now = faults(xyz.data());
  out.was_valid = out.valid = now.valid(p_.max_rama_fraction);
  // Each residue's codes by the model's logits, most likely first, sorted when first needed.
  const int64_t narrow = std::min(p_.candidates, K), wide = std::min(std::max(p_.wide_candidates, narrow), K);
  std::vector<std::vector<int32_t>> order(l_);
  auto ranked = [&](int64_t r) -> const std::vector<int32_t>& {
    if (order[r].empty()) {
      const float* row = logits + r * row_stride;
      order[r].resize(K);
      std::iota(order[r].begin(), order[r].end(), 0);
      std::partial_sort(order[r].begin(), order[r].begin() + wide, order[r].end(),
                        [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
      order[r].resize(wide);
    }
    return order[r];
  };
  // Code c at residue r decoded into trial_raw, where the decoder sees it (the rest as raw).
  auto decode_trial = [&](int64_t r, int32_t c) {
    const int32_t kept = codes[r];
    codes[r] = c;
    if (extra_p) set_extra(r, fine_for(r, c));
    trial_raw = raw;
    const auto [first, last] = seen_by(r);
    decode_raw(codes, first, last, trial_raw.data(), extra_p);
    codes[r] = kept;
    if (extra_p) set_extra(r, fine[r]);
    ++out.judged;
  };
  // ... then the whole frame projected and judged.
  auto judge_trial = [&] {
    projection::project_to_key_geometry(trial_raw.data(), 1, l_, key_.data(), xyz.data());
    return faults(xyz.data());
  };
  // In a long chain a code is first judged on the residues within kRepairReach of it projected alone, the
  // rest of the frame as it stands (`settled`); only a code that lowers that score is projected whole.
  std::vector<float> settled = xyz, local(l_ * 12);
  auto window_of = [&](int64_t r) {
    return std::pair{std::max<int64_t>(0, r - kRepairReach), std::min<int64_t>(l_, r + kRepairReach + 1)};
  };
  auto local_score = [&](int64_t r, const std::vector<float>& from) {
    const auto [lo, hi] = window_of(r);
    local = settled;
    projection::project_to_key_geometry(from.data() + lo * 12, 1, hi - lo, key_.data() + lo * 12, local.data() + lo * 12);
    return faults(local.data()).score();
  };
  for (int64_t change = 0; !out.valid && change < p_.max_changes; ++change) {
    std::vector<int64_t> residues;
    std::vector<uint8_t> seen(l_, 0);
    auto implicate = [&](int64_t r) {
      if (r >= 0 && r < l_ && !seen[r]) seen[r] = 1, residues.push_back(r);
    };
    for (const auto& [a, b] : now.geometry) implicate(b), implicate(a);
    for (const auto& [a, b] : now.clashes) implicate(b), implicate(a);
    for (int64_t r : now.rama) implicate(r), implicate(r + 1), implicate(r - 1);
    bool improved = false;
    for (const auto& [begin, end] : {std::pair{int64_t{0}, narrow}, std::pair{narrow, wide}}) {
      for (int64_t r : residues) {
        const auto& codes_r = ranked(r);
        const auto [lo, hi] = window_of(r);
        const bool windowed = hi - lo < l_;
        const int64_t local_now = windowed ? local_score(r, raw) : 0;
        for (int64_t k = begin; k < end && !improved; ++k) {
          if (codes_r[k] == codes[r]) continue;
          decode_trial(r, codes_r[k]);
          if (windowed && local_score(r, trial_raw) >= local_now) continue;
          Faults trial = judge_trial();
          if (trial.score() < now.score()) {
            if (extra_p) {
              fine[r] = fine_for(r, codes_r[k]);
              set_extra(r, fine[r]);
            }
            codes[r] = codes_r[k];
            raw.swap(trial_raw);
            now = std::move(trial);
            settled = xyz;
            improved = true;
          }
        }
        if (improved) break;
      }
      if (improved) break;
    }
    if (!improved) break;
    ++out.changed;
    out.valid = now.valid(p_.max_rama_fraction);
  }
  return out;
}

}  // namespace mdllm
