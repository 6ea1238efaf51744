// The interface of a structure tokenizer that describes each frame on its own (the torsion-codebook
// kind, torsion_tokenizer.hpp), and load_tokenizer(directory), which reads one from its directory.
// The motion kind (motion_tokenizer.hpp) needs a key frame in every call, so it has its own class.
//
// Layouts (row-major): xyz (F, L, 4, 3) nanometres, atoms N, CA, C, O; tokens (F, L) int32.
// Bad files, bad shapes and out-of-range tokens throw std::invalid_argument.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace mdllm {

// Any structure tokenizer: frames of backbones to one token per residue in [0, codebook_size) and back.
class StructureTokenizer {
 public:
  virtual ~StructureTokenizer() = default;
  virtual int64_t codebook_size() const = 0;
  // tokens[F*L] from xyz[F*L*12]. Non-finite coordinates throw.
  virtual void encode(const float* xyz, int64_t n_frames, int64_t n_res, int32_t* tokens) const = 0;
  // xyz[F*L*12] from tokens[F*L]. Tokens outside [0, codebook_size) throw before any work.
  virtual void decode(const int32_t* tokens, int64_t n_frames, int64_t n_res, float* xyz) const = 0;

 protected:  // copies only through the concrete kinds, never sliced through the interface
  StructureTokenizer() = default;
  StructureTokenizer(const StructureTokenizer&) = default;
  StructureTokenizer(StructureTokenizer&&) = default;
  StructureTokenizer& operator=(const StructureTokenizer&) = default;
  StructureTokenizer& operator=(StructureTokenizer&&) = default;
};

// The tokenizer in `directory` (config.json + model.safetensors), of the kind its config names:
// "torsion" -> TorsionTokenizer. A motion tokenizer (see MotionTokenizer), the retired "transformer"
// kind (also a config without "kind") and unknown kinds throw std::invalid_argument.
std::unique_ptr<StructureTokenizer> load_tokenizer(const std::string& directory);

}  // namespace mdllm
