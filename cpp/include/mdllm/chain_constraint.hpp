// Constrained decoding of motion tokens: which structure codes residue j may take, given the codes
// already drawn for residues 0 .. j-1 of the same frame, so that the decoded chain keeps its local
// geometry. A motion code places residue j's N, CA, C, O at key[j] + F_j code (F_j: the key residue's
// rigid frame, as MotionTokenizer::decode does, before projection). Code k is allowed for residue j
// when, on those placed coordinates (double arithmetic):
//   (a) when residues j-1 and j are linked (same chain and key C(j-1)-N(j) <= break_nm), the distances
//       C(j-1)-N(j) (unless link_cn is false) and CA(j-1)-CA(j) are within link_tolerance_nm of the key's own,
//       and with link_angles the 1-3 distances across the peptide bond as well (CA(j-1)-N(j), C(j-1)-CA(j),
//       O(j-1)-N(j): the angles the projection restores, so that it moves the link, and the torsions
//       judged in (b), little);
//   (b) then residue j-1's (phi, psi), now defined (phi needs j-2 linked to j-1), is not in the outlier
//       region of its Ramachandran class (level grid as mdllm.geometry.ramachandran.grid()), and
//       residue j's phi, now defined too, leaves some psi outside the outlier region of j's class (when
//       j is linked to j+1, so that its psi will be judged): a proline with no allowed phi is not left
//       for the next draw to fail on;
//   (c) no backbone atom of residue j overlaps an atom of residue j-2 .. j-local_reach, or of an earlier
//       residue whose key CA lies within neighbour_cutoff_nm of residue j's key CA, by more than
//       clash_overlap_nm (van der Waals radii N 0.155, CA 0.170, C 0.170, O 0.152 nm), and no such CA
//       pair is closer than ca_min_nm (the clash rules of mdllm.evaluate.check_backbone).
// When no code is allowed and relax_when_empty is set, the codes allowed with the link tolerance times
// kRelaxTolerance and clash_overlap_nm + kRelaxOverlapNm are; when still none, every code is (the caller
// counts it). The numpy reference is python/mdllm/sampling/constraint.py; tests compare the two.
//
// With a causal context decoder attached (MotionContextDecoder with ahead() == 0: residue i's decoded
// placement is final once codes 0..i are drawn), allows_decoded() judges a drawn code as the frame will
// hold it: residues j-kDecodedWindow .. j are decoded and projected together onto the key's geometry
// (mdllm/projection.hpp; the decoder was trained through the projection, so its raw output is not
// chain-like: atoms up to 4 A from where the frame's projection puts them), then (b) and (c) are judged
// on those coordinates (a clash partner i before that window as residues i-3 .. i+3 projected together
// place it, cached); and j must not add faults (Ramachandran outliers, clashes among them and with their
// earlier partners) to residues j-10 .. j-1, which it moves through the projection (the window projected
// without j is the comparison); (a) is left to the projection. Residue j-1's (phi, psi) so judged is
// within a few degrees of the whole frame's projection (median 1-3, p90 4-8 degrees on Trp-cage draws).
// mask() stays on code-alone placements: decoding every code of the codebook would cost K network
// evaluations per draw.
//
// Layouts (row-major): codebook (K, 12) float nm; key (L, 4, 3) float nm; classes (L) int32 in 0..3
// (general, glycine, proline, pre-proline); levels (4, n_bins, n_bins) uint8 (0 = outlier) indexed
// [class][phi bin][psi bin], bin = floor((angle_deg + 180) / bin_deg) clipped to [0, n_bins); linked
// (L - 1) uint8, 0 where residues i and i + 1 are in different chains (may be null: one chain). Bad
// input throws std::invalid_argument.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "mdllm/motion_context.hpp"

namespace mdllm {

struct ChainConstraintParams {
  double link_tolerance_nm = 0.03;   // (a): |d - d_key| for each distance across the link
  bool link_cn = true;               // (a) judges C(j-1)-N(j) too (false: CA(j-1)-CA(j) only)
  bool ramachandran = true;          // (b)
  double clash_overlap_nm = 0.05;    // (c): 0.2 A inside the validity check's 0.7 A, for what decoding moves
  double ca_min_nm = 0.30;           // (c): non-neighbouring CA atoms closer than this clash
  int64_t local_reach = 4;           // (c): residues j-2 .. j-local_reach are always checked (0: none)
  double neighbour_cutoff_nm = 1.0;  // (c): earlier residues with key CA this close too (0 = none)
  double break_nm = 0.2;             // key C(i)-N(i+1) longer than this: a chain break, not constrained
  bool link_angles = true;           // (a) judges the 1-3 distances across the link too
  bool relax_when_empty = true;      // an empty mask is built again with looser limits before all codes pass
};

inline constexpr double kRelaxTolerance = 2.0;   // relax_when_empty: link tolerance x this
inline constexpr double kRelaxOverlapNm = 0.02;  // and clash overlap + this
inline constexpr int64_t kDecodedWindow = 10;    // allows_decoded: residues j-10 .. j projected together
inline constexpr int64_t kSettleReach = 3;       // clash partners before that window: i-3 .. i+3 projected

class ChainConstraint {
 public:
  ChainConstraint(const float* codebook, int64_t n_codes, const float* key, int64_t n_res, const int32_t* classes,
                  const uint8_t* levels, int64_t n_bins, double bin_deg, const uint8_t* linked,
                  const ChainConstraintParams& params = {});

  int64_t codes() const { return k_; }
  int64_t residues() const { return l_; }
  const ChainConstraintParams& params() const { return p_; }
  // Whether residues i and i + 1 are constrained as bonded (i in 0 .. L-2).
  bool linked(int64_t i) const { return linked_[i] != 0; }

  // allowed[K] (1 = allowed) for residue j given drawn[0 .. j-1], the codes of residues 0 .. j-1 in this
  // frame (0-based codes). Returns the number of allowed codes (with relax_when_empty, under the looser
  // limits when the strict ones allowed none); 0 means none was, and then every code is marked allowed.
  // Thread-safe (const, no shared scratch).
  int64_t mask(int64_t j, const int32_t* drawn, uint8_t* allowed) const;

  // Whether code `code` is allowed for residue j given drawn[0 .. j-1] by the strict limits (one code of
  // mask() before any relaxation or fallback). For checking a drawn code without building the whole mask.
  bool allows(int64_t j, const int32_t* drawn, int32_t code) const;

  // The placed (undecoded, unprojected) coordinates out[12] of residue i with code k.
  void place(int64_t i, int32_t k, double* out) const;

  // Judge drawn codes as decoded by `decoder` (causal, built for this constraint's codebook; not owned,
  // it must outlive this object) with the Ramachandran classes it decodes with (L, or null: all general;
  // MotionContextDecoder::residue_classes). Throws std::invalid_argument for a decoder that looks ahead
  // or has another codebook size.
  void attach_decoder(const MotionContextDecoder& decoder, const int32_t* decoder_classes);
  bool decodes() const { return decoder_ != nullptr; }
  // Whether drawn[j], with drawn[0 .. j-1] before it, is allowed by the strict limits on decoded
  // coordinates (requires an attached decoder).
  bool allows_decoded(int64_t j, const int32_t* drawn) const;

  // The same in two steps, for judging many codes of one residue: what residues 0 .. j-1 contribute
  // (decoded once), then each code of residue j.
  struct DecodedPrefix {
    int64_t j = 0, lo = 0;        // residue judged; first residue of its projected window
    std::vector<int32_t> codes;   // drawn codes 0 .. j (j's slot takes the code judged)
    std::vector<float> raw, key;  // residues lo .. j decoded (j's slot per code) and their key atoms
    std::vector<double> earlier;  // (lo, 12): decoded clash partners before the window
    int64_t faults_without = 0;   // faults of residues lo .. j-1 projected without j
  };
  DecodedPrefix decoded_prefix(int64_t j, const int32_t* drawn) const;
  bool allows_decoded(DecodedPrefix& prefix, int32_t code) const;

 private:
  struct Scene;
  // `placed(i, out)` writes residue i's coordinates (i < j) as judged.
  Scene prepare(int64_t j, const std::function<void(int64_t, double*)>& placed, bool relaxed) const;
  bool judge(const Scene& s, int64_t j, const double* x) const;
  void check_drawn(int64_t j, const int32_t* drawn, int64_t count) const;
  int64_t angle_bin(double deg) const;  // Ramachandran grid bin of an angle
  // Ramachandran outliers of residues lo+1 .. last-1 and clashing atom pairs among residues lo .. last
  // (two or more apart) of projected window coordinates w (residues lo ..), and between them and their
  // clash partners before lo at earlier[(i, 12)].
  int64_t window_faults(const float* w, int64_t lo, int64_t last, const double* earlier) const;
  // Residue i decoded and projected with residues i-kSettleReach .. i+kSettleReach (all drawn): where an
  // earlier clash partner sits, nearly as the whole frame's projection will put it.
  void settled(int64_t i, const int32_t* drawn, double* out) const;
  // Residues lo .. end-1 decoded (raw, float as decoded frames are) and their key atoms.
  void decode_span(int64_t lo, int64_t end, const int32_t* drawn, float* raw, float* keys) const;

  int64_t k_ = 0, l_ = 0, n_bins_ = 0;
  double bin_deg_ = 0;
  ChainConstraintParams p_;
  std::vector<double> codes_;   // (K, 12)
  std::vector<double> key_;     // (L, 12)
  std::vector<double> frames_;  // (L, 9): F_i row-major, columns e1 e2 e3
  std::vector<int32_t> classes_;
  std::vector<uint8_t> levels_;
  std::vector<uint8_t> phi_open_;  // (4, n_bins): 1 where some psi of the phi bin is not an outlier
  std::vector<uint8_t> linked_;          // (L - 1)
  std::vector<double> key_cn_, key_ca_;  // (L - 1) key C(i)-N(i+1) and CA(i)-CA(i+1)
  std::vector<double> key_angles_;       // (L - 1, 3) key CA(i)-N(i+1), C(i)-CA(i+1), O(i)-N(i+1)
  std::vector<std::vector<int64_t>> clash_partners_;  // per residue j: earlier residues checked in (c)
  const MotionContextDecoder* decoder_ = nullptr;
  // settled() results by (i, codes of i-3 .. i+3): each is asked for again at every later residue whose
  // clash partner it is. Cleared when it holds more than kSettledCacheSize entries.
  using SettledKey = std::array<int32_t, 2 * kSettleReach + 2>;
  static constexpr size_t kSettledCacheSize = 200000;
  mutable std::map<SettledKey, std::array<double, 12>> settled_cache_;
  mutable std::mutex settled_mutex_;
  std::shared_ptr<const MotionContextDecoder::Layout> layout_;
};

}  // namespace mdllm
