// FoldToken-style structure tokenizer, inference only: backbone frames -> one token per residue and
// tokens -> N, CA, C, O. It reads the model.safetensors + config.json written by the PyTorch trainer
// (python/mdllm/tokenizer) and computes the same network in float32, multi-threaded over frames (on CPUs
// with AMX tiles, the block products run there as split-bf16 products of float32-level accuracy).
//
// Layouts (row-major): xyz (F, L, 4, 3) nanometres, atoms N, CA, C, O; tokens (F, L) int32.
// Bad files, bad shapes and out-of-range tokens throw std::invalid_argument.
//
// StructureTokenizer is the interface shared with the torsion-codebook kind (torsion_tokenizer.hpp);
// load_tokenizer(directory) picks the kind named by config.json's "kind" key (missing: "transformer").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mdllm {

namespace detail {
struct PackedLinear;
}

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
// "transformer" (or no "kind" key) -> Tokenizer, "torsion" -> TorsionTokenizer.
std::unique_ptr<StructureTokenizer> load_tokenizer(const std::string& directory);

// The transformer kind's config.json; a "kind" key, when present, must be "transformer".
struct TokenizerConfig {
  std::vector<int> levels;
  int k_neighbours = 16, n_rbf = 16, max_seq_sep = 16;
  float rbf_max_nm = 2.0f;
  int dim = 128, heads = 4, ffn_dim = 256, encoder_layers = 2, decoder_layers = 4, max_rel_pos = 32;

  int64_t codebook_size() const;
  static TokenizerConfig from_json(const std::string& json_text);
};

// The transformer kind.
class Tokenizer : public StructureTokenizer {
 public:
  // weights_path: model.safetensors; config_json: the text of config.json.
  Tokenizer(const std::string& weights_path, const std::string& config_json);
  // A directory holding config.json and model.safetensors.
  static Tokenizer from_directory(const std::string& directory);

  const TokenizerConfig& config() const { return cfg_; }
  int64_t codebook_size() const override { return cfg_.codebook_size(); }

  // tokens[F*L] from xyz[F*L*12]. Non-finite coordinates throw.
  void encode(const float* xyz, int64_t n_frames, int64_t n_res, int32_t* tokens) const override;
  // Continuous quantizer digits before rounding (F, L, n_levels): for near-tie diagnostics.
  void encode_digits(const float* xyz, int64_t n_frames, int64_t n_res, float* digits) const;
  // xyz[F*L*12] from tokens[F*L]. Tokens outside [0, codebook_size) throw before any work.
  void decode(const int32_t* tokens, int64_t n_frames, int64_t n_res, float* xyz) const override;

 private:
  TokenizerConfig cfg_;
  std::map<std::string, std::vector<float>> w_;
  // block weights laid out for the CPU's matrix tile units, where it has them (AMX)
  std::map<std::string, std::shared_ptr<const detail::PackedLinear>> packed_;
  const float* get(const std::string& name) const;
  void dense(const std::string& name, const float* x, int64_t ldx, int64_t m, int64_t in, int64_t out, float* y,
             int64_t ldy) const;
  void encode_frame(const float* xyz, int64_t n_res, float* digits, bool par) const;
  void decode_frame(const int32_t* tokens, int64_t n_res, float* xyz, bool par) const;
  void block(const std::string& prefix, std::vector<float>& x, int64_t n, bool par) const;
};

}  // namespace mdllm
