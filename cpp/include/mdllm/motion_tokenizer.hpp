// Motion tokenizer anchored to a key frame ("kind": "motion" in config.json), as specified in
// docs/motion_tokenizer_spec.md and computed like the numpy reference python/mdllm/tokenizer/motion.py:
// a token is one of K per-residue displacements of N, CA, C, O written in the key residue's rigid
// frame. Encode superposes each frame on the key by its CA atoms (Horn's quaternion, a proper
// rotation), takes each residue's displacement from the key in the key residue's frame and picks the
// nearest code (sum of squared differences over the 12 components in order, ties to the smaller
// index); decode adds the code's displacement to the key, residue by residue. All arithmetic is in
// double; frames (or, for few frames, residues) run on all threads.
//
// Files: model.safetensors holds "codebook" F32 (K, 12) nanometres (N, CA, C, O; x y z each, in the
// residue's local frame); config.json is {"kind": "motion", "codebook_size": K, "version": 1} (keys
// starting with "_" are notes). Layouts (row-major): xyz (F, L, 4, 3) nanometres, atoms N, CA, C, O;
// key (L, 4, 3) nanometres with the same residues in the same order; tokens (F, L) int32. Decoded
// frames lie in the key's coordinates.
//
// Not a StructureTokenizer: every call needs the key frame. Bad files and configs, non-finite
// coordinates (frames or key), a key residue whose N, CA, C are degenerate (|C - CA| or the part of
// N - CA normal to it below 1e-6 nm) and out-of-range tokens throw std::invalid_argument with a
// one-line message before any work. The frames and the key share n_res, so a residue-count mismatch
// can only be caught by the caller that knows both shapes (the Python binding checks it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mdllm {

class MotionTokenizer {
 public:
  static constexpr int kComponents = 12;  // N, CA, C, O; x y z each

  // weights_path: model.safetensors; config_json: the text of config.json.
  MotionTokenizer(const std::string& weights_path, const std::string& config_json);
  // A directory holding config.json and model.safetensors.
  static MotionTokenizer from_directory(const std::string& directory);

  int64_t codebook_size() const { return k_; }
  const std::vector<double>& codes() const { return codes_; }  // (K, 12) row-major, nanometres

  // tokens[F*L] from xyz[F*L*12] and key[L*12]; L >= 1, F >= 0.
  void encode(const float* xyz, int64_t n_frames, int64_t n_res, const float* key, int32_t* tokens) const;
  // xyz[F*L*12] from tokens[F*L] and key[L*12]; L >= 1, F >= 0. With fine codes loaded, `fine` (null, or
  // F*L fine codes, -1 where none) adds each residue's fine code to its code.
  void decode(const int32_t* tokens, int64_t n_frames, int64_t n_res, const float* key, float* xyz,
              const int32_t* fine = nullptr) const;

  // Fine codes (mdllm.tokenizer.motion_fine; fine_codes.safetensors beside the tokenizer): "codebook" F32
  // (K2, 12) nanometres and "follows" F32 (K,) with 1 where a first code takes a fine code. A residue whose
  // first code takes one gets the fine code nearest to what its first code leaves (d - c1; same
  // arithmetic as encode). The file's tie to this codebook (its first-stage token hash) is checked in
  // Python; here only its shapes.
  void load_fine(const std::string& path);
  bool has_fine() const { return k2_ > 0; }
  int64_t fine_size() const { return k2_; }
  const std::vector<double>& fine_codes() const { return fine_codes_; }  // (K2, 12) row-major, nanometres
  const std::vector<uint8_t>& fine_follows() const { return follows_; }  // (K)
  // Throws std::invalid_argument unless fine[n] has a fine code (in 0..K2-1) exactly where tokens[n] take one
  // and -1 elsewhere; needs fine codes loaded. Tokens must be in range.
  void check_fine(const int32_t* tokens, const int32_t* fine, int64_t n) const;
  // tokens[F*L] and fine[F*L] (-1 where none) from xyz[F*L*12] and key[L*12]; needs fine codes loaded.
  void encode_fine(const float* xyz, int64_t n_frames, int64_t n_res, const float* key, int32_t* tokens,
                   int32_t* fine) const;

 private:
  int64_t k_ = 0;
  int64_t k_padded_ = 0;           // K rounded up to the search's vector width
  std::vector<double> codes_;      // (K, 12) row-major, for decode
  std::vector<double> columns_;    // (12, k_padded_): component j of every code, contiguous; the
                                   // padding holds +inf so it is never the nearest
  int64_t k2_ = 0, k2_padded_ = 0;  // fine codes (0: none)
  std::vector<double> fine_codes_, fine_columns_;
  std::vector<uint8_t> follows_;

  // The nearest code to the local displacement d[12].
  int32_t nearest(const double* d) const;
  void encode_impl(const float* xyz, int64_t n_frames, int64_t n_res, const float* key, int32_t* tokens,
                   int32_t* fine) const;
};

}  // namespace mdllm
