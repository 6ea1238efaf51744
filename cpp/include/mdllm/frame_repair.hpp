// Frame repair of motion tokens: after a frame's codes are drawn, the frame is decoded as the user gets
// it (context decoder, then the projection onto the key's geometry) and judged by the validity rules of
// mdllm.evaluate.check_backbone; while it fails, a residue that carries a fault takes, in the order of the
// language model's logits at that residue, the first other code that lowers the frame's fault score, so
// only residues with a fault move and each takes a code the model found likely.
//
// Faults, residue by residue (numpy reference: python/mdllm/sampling/repair.py):
//   geometry  a bond (N-CA, CA-C, C-O, C(i)-N(i+1)) or angle (N-CA-C, CA-C-N(i+1), C-N(i+1)-CA(i+1),
//             CA-C-O) more than max_z standard deviations from ideal (validity.hpp's IdealGeometry), or
//             C(i)-N(i+1) longer than break_nm; it implicates the residues it spans;
//   clash     residues i, j (j - i >= min_separation in one chain, any two across chains) with a backbone
//             atom pair closer than radius_a + radius_b - clash_overlap_nm, or CAs closer than ca_min_nm;
//   rama      residue i's (phi, psi), both defined, in the outlier region of its class (levels grid as
//             mdllm.geometry.ramachandran.grid()); it implicates i, i + 1 and i - 1 (phi needs C(i-1),
//             psi N(i+1)).
// A frame is valid with no geometry fault, no clash and Ramachandran outliers on at most
// max_rama_fraction of the residues with both angles defined. Score = rama + 3 (geometry + clashes).
// Residues are tried in the order their faults list them (geometry, clashes, then Ramachandran), each
// with its `candidates` most likely codes, most likely first, then (when none lowers the score) each with
// the codes ranked after those up to `wide_candidates`; the first code that lowers the score is kept and
// the faults are found again, up to max_changes times; when no tried code lowers it, the frame is kept as
// it is (the caller counts it). A changed code is judged by decoding again only the residues whose
// decoder sees it; it is first judged with the 25 residues around it projected alone (the rest of the
// frame as it stands) and, only when that lowers the score, with the whole frame projected.
//
// Layouts (row-major): key (L, 4, 3) float nm; classes (L) int32 Ramachandran classes 0..3 (general,
// glycine, proline, pre-proline) of the validity check; decoder_classes (L) those the context decoder
// decodes with (null: all general); chain (L) int32 chain index; levels (4, n_bins, n_bins) uint8
// (0 = outlier); codes (L) int32 0-based; logits (L rows of `row_stride` floats, each row's K codes).
// Bad input throws std::invalid_argument.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "mdllm/motion_context.hpp"
#include "mdllm/motion_tokenizer.hpp"
#include "mdllm/validity.hpp"

namespace mdllm {

struct FrameRepairParams {
  float max_z = 12.0f;               // bond or angle outlier (ValidityLimits.max_z)
  double break_nm = 0.2;             // chain break (ValidityLimits.break_A)
  double clash_overlap_nm = 0.07;    // ValidityLimits.clash_overlap_A
  double ca_min_nm = 0.30;           // ValidityLimits.ca_min_A
  int64_t min_separation = 2;        // ValidityLimits.min_separation
  double max_rama_fraction = 0.05;   // ValidityLimits.max_rama_outlier_fraction
  int64_t max_changes = 40;          // codes changed per frame at most
  int64_t candidates = 64;           // most likely codes tried per residue
  int64_t wide_candidates = 512;     // when none of those lowers the score: the codes ranked up to this
};

class FrameRepair {
 public:
  // tokenizer and decoder (null: codes placed on the key as they are) are not owned and must outlive this.
  FrameRepair(const MotionTokenizer& tokenizer, const MotionContextDecoder* decoder, const float* key, int64_t n_res,
              const int32_t* classes, const int32_t* decoder_classes, const int32_t* chain, const uint8_t* levels,
              int64_t n_bins, double bin_deg, const validity::IdealGeometry& ideal, const FrameRepairParams& params = {});

  int64_t residues() const { return l_; }
  int64_t codes() const { return tokenizer_.codebook_size(); }
  const FrameRepairParams& params() const { return p_; }

  struct Faults {
    std::vector<int64_t> rama;                       // residues that are Ramachandran outliers
    std::vector<std::pair<int64_t, int64_t>> geometry;  // first and last residue of each bad bond or angle
    std::vector<std::pair<int64_t, int64_t>> clashes;   // clashing residue pairs (i < j)
    int64_t defined = 0;                             // residues with phi and psi defined
    int64_t score() const { return static_cast<int64_t>(rama.size()) + 3 * static_cast<int64_t>(geometry.size() + clashes.size()); }
    bool valid(double max_rama_fraction) const;
  };

  // Frames with fine codes (mdllm.tokenizer.motion_fine): the tokenizer's own, loaded by
  // MotionTokenizer::load_fine; needs the context decoder. Then every call takes the frame's fine codes too
  // (-1: none), and a changed first code keeps its fine code, drops it, or gains the fine code nearest no
  // correction.
  void use_fine_codes();
  bool has_fine() const { return fine_; }

  // The frame as the user gets it: out[L*12] from codes[L] (and fine[L] with fine codes; decoded, then
  // projected).
  void decode(const int32_t* codes, float* out, const int32_t* fine = nullptr) const;
  // The faults of decoded coordinates xyz[L*12].
  Faults faults(const float* xyz) const;

  struct Outcome {
    int64_t changed = 0;    // codes changed
    int64_t judged = 0;     // candidate codes decoded and judged
    bool valid = false;     // the frame passes at the end
    bool was_valid = false; // it passed as drawn
  };
  // Repairs codes[L] (and fine[L], with fine codes attached) in place. Thread-safe (const).
  Outcome repair(int32_t* codes, const float* logits, int64_t row_stride, int32_t* fine = nullptr) const;

 private:
  const MotionTokenizer& tokenizer_;
  const MotionContextDecoder* decoder_;
  int64_t l_ = 0, n_bins_ = 0;
  double bin_deg_ = 0;
  FrameRepairParams p_;
  validity::IdealGeometry ideal_;
  std::vector<float> key_;
  std::vector<int32_t> classes_, decoder_classes_, chain_;
  std::vector<uint8_t> levels_;
  std::vector<uint8_t> chain_end_;  // (L) 1 at the last residue of a chain
  std::shared_ptr<const MotionContextDecoder::Layout> layout_;  // with a decoder
  bool fine_ = false;
  int32_t fine_default_ = 0;  // the fine code nearest no correction

  // Residues first .. last-1 of codes decoded (unprojected) into raw[L*12]; `extra`: null or the fine
  // codes' vectors (L*12).
  void decode_raw(const int32_t* codes, int64_t first, int64_t last, float* raw, const double* extra = nullptr) const;
  // The extra vectors (L*12) of fine[L]; checks them against codes[L].
  std::vector<double> fine_extra(const int32_t* codes, const int32_t* fine) const;
  // The residues whose decoded placement depends on residue r's code: [first, last).
  std::pair<int64_t, int64_t> seen_by(int64_t r) const;
};

}  // namespace mdllm
