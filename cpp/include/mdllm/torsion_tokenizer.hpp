// Torsion-codebook structure tokenizer ("kind": "torsion" in config.json), as specified in
// docs/torsion_tokenizer_spec.md and computed bit-for-bit like the PyTorch reference: a token is one
// (omega, phi, psi) triple of a K-entry codebook; decode builds the backbone by NeRF with the file's
// bond lengths and angles, encode finds the tokens by a closed-loop beam search (width B) that
// rebuilds the chain from the candidate tokens and scores it against the input expressed in the
// frame of its residue 0. All arithmetic is in double; frames run on all threads.
//
// Files: model.safetensors holds "codebook" F32 (K, 3) radians and "geometry" F32 (8,) (b_nca,
// b_cac, b_cn, b_co in Angstrom; a_ncac, a_cacn, a_cnca, a_caco in radians); config.json is
// {"kind": "torsion", "codebook_size": K, "beam_width": B, "version": 1} (keys starting with "_"
// are notes). Layouts (row-major): xyz (F, L, 4, 3) nanometres, atoms N, CA, C, O; tokens (F, L)
// int32. Decoded chains lie in the canonical frame (N of residue 0 at the origin, CA on +x, C in
// the xy plane). Bad files and configs, non-finite or degenerate coordinates and out-of-range tokens
// throw std::invalid_argument.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mdllm/tokenizer.hpp"

namespace mdllm {

namespace detail {
// One NeRF step's per-code offsets along the frame axes m and n (len sin(ang) cos t and
// len sin(ang) sin t), with the offset along bc shared by all codes (-len cos(ang)); kept as
// contiguous arrays so the search loop over codes vectorises.
struct TorsionStep {
  double along = 0;
  std::vector<double> m, n;
};
}  // namespace detail

class TorsionTokenizer : public StructureTokenizer {
 public:
  // weights_path: model.safetensors; config_json: the text of config.json.
  TorsionTokenizer(const std::string& weights_path, const std::string& config_json);
  // A directory holding config.json and model.safetensors.
  static TorsionTokenizer from_directory(const std::string& directory);

  int64_t codebook_size() const override { return k_; }
  int beam_width() const { return beam_; }

  // tokens[F*L] from xyz[F*L*12]; L >= 1. Non-finite coordinates, or a first residue whose N, CA, C
  // do not span a plane, throw before any work.
  void encode(const float* xyz, int64_t n_frames, int64_t n_res, int32_t* tokens) const override;
  // xyz[F*L*12] from tokens[F*L]; L >= 1. Tokens outside [0, codebook_size) throw before any work.
  void decode(const int32_t* tokens, int64_t n_frames, int64_t n_res, float* xyz) const override;

 private:
  int64_t k_ = 0;
  int beam_ = 1;
  detail::TorsionStep ca_, c_, o_, n_;  // CA by omega, C by phi, O by psi + pi, next N by psi
  double ca0_[3] = {}, c0_[3] = {};     // residue 0's CA and C (its N is the origin)

  void encode_frame(const float* xyz, int64_t n_res, int32_t* tokens, bool par) const;
  void decode_frame(const int32_t* tokens, int64_t n_res, float* xyz) const;
};

}  // namespace mdllm
