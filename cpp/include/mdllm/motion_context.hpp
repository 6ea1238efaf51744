// The context decoder of motion tokens (context_decoder.safetensors beside a motion tokenizer), as
// computed by the numpy reference python/mdllm/tokenizer/motion_context.py: each residue's
// displacement is its code plus what a small network predicts from the codes of the residues from
// `window` before it to `ahead` after it in its chain segment (and of its `spatial` nearest residues in
// the key beyond that; ahead 0: a causal decoder, residue i final once codes 0..i are known),
// rotated into its key frame, the key's geometry around it and its Ramachandran class. Decoded frames
// are then placed on the key as MotionTokenizer::decode places codes; project them onto the key's
// geometry (mdllm/projection.hpp) as Python does.
//
// File: safetensors with metadata "window" (and "spatial", default 0; "ahead", default window) and F32
// tensors w0 (H, D), b0 (H), w1 (H, H), b1 (H), w2 (12, H), b2 (12), mean (D), scale (D); D as
// feature_size(). Layouts as MotionTokenizer's; classes (L) int32 in 0..3 (general, glycine, proline,
// pre-proline), or null for all general. Bad files, shapes and out-of-range tokens or classes throw std::invalid_argument.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mdllm/motion_tokenizer.hpp"

namespace mdllm {

class MotionContextDecoder {
 public:
  // weights_path: context_decoder.safetensors; codes come from the tokenizer it belongs to.
  MotionContextDecoder(const std::string& weights_path, const MotionTokenizer& tokenizer);

  int window() const { return window_; }
  int spatial() const { return spatial_; }
  int ahead() const { return ahead_; }
  int64_t codes() const { return tokenizer_.codebook_size(); }
  static int64_t feature_size(int window, int spatial, int ahead);

  // Ramachandran classes of a one-letter sequence (L), chains split where the key's consecutive CAs
  // are 0.45 nm or more apart, as mdllm.geometry.ramachandran.residue_classes.
  static std::vector<int32_t> residue_classes(const std::string& sequence, const float* key, int64_t n_res);

  // xyz[F*L*12] from tokens[F*L], key[L*12] and classes[L] (or null); `fine` (null, or F*L fine codes,
  // -1 where none; the tokenizer had its fine codes loaded when this decoder was built) adds each
  // residue's fine code to its code vector; they must stand exactly where the tokens take one
  // (MotionTokenizer::check_fine).
  void decode(const int32_t* tokens, int64_t n_frames, int64_t n_res, const float* key, const int32_t* classes,
              float* xyz, const int32_t* fine = nullptr) const;

  // What one key frame and its classes fix (neighbours, rotations, key geometry around each residue):
  // built once for decoding one residue at a time, as constrained decoding does.
  struct Layout;
  std::shared_ptr<const Layout> layout(const float* key, int64_t n_res, const int32_t* classes) const;
  // Residue i decoded and placed: out[12] nm (N, CA, C, O) from one frame's tokens[L] (only the tokens
  // the decoder sees are read, so a causal decoder needs tokens 0..i alone). Tokens are not range-checked.
  // `extra` (null, or L*12 nm): added to each residue's code vector, as a fine code adds to its first
  // code (mdllm.tokenizer.motion_fine: the decoder reads c1 + c2 wherever a residue has both).
  void decode_residue(const Layout& layout, int64_t i, const int32_t* tokens, double* out,
                      const double* extra = nullptr) const;

 private:
  int window_ = 0, spatial_ = 0, ahead_ = 0;
  int64_t hidden_ = 0, inputs_ = 0;
  MotionTokenizer tokenizer_;  // its codes and fine codes (as loaded when this decoder was built)
  std::vector<double> w0t_, b0_, w1t_, b1_, w2_, b2_, mean_, scale_;  // w0, w1 input-major (transposed)
};

}  // namespace mdllm
