// GGUF metadata keys of mdllm models, as written by `mdllm export`. Mirrors
// python/mdllm/lm/gguf_keys.py key for key (tests/test_gguf_keys.py checks that they agree): a key
// kFooBar here is FOO_BAR there.
#pragma once

namespace mdllm::gguf_keys {

inline constexpr const char* kPrefix = "mdllm.";

inline constexpr const char* kTokenizerHash = "mdllm.tokenizer_hash";
inline constexpr const char* kCodebookSize = "mdllm.codebook_size";
inline constexpr const char* kNConditioning = "mdllm.n_conditioning";
inline constexpr const char* kVocabOffset = "mdllm.vocab_offset";
inline constexpr const char* kFrameTokenId = "mdllm.frame_token_id";
inline constexpr const char* kSeqStartTokenId = "mdllm.seq_start_token_id";
inline constexpr const char* kSeqEndTokenId = "mdllm.seq_end_token_id";
inline constexpr const char* kConditioningOffset = "mdllm.conditioning_offset";
inline constexpr const char* kAminoAcidOffset = "mdllm.amino_acid_offset";
inline constexpr const char* kStructureOffset = "mdllm.structure_offset";
inline constexpr const char* kFrameRule = "mdllm.frame_rule";
inline constexpr const char* kNResidues = "mdllm.n_residues";
inline constexpr const char* kTrainSequences = "mdllm.train_sequences";
inline constexpr const char* kFrameSpan = "mdllm.frame_span";
inline constexpr const char* kFineCodebookSize = "mdllm.fine_codebook_size";
inline constexpr const char* kFineOffset = "mdllm.fine_offset";
inline constexpr const char* kFineHash = "mdllm.fine_hash";
inline constexpr const char* kConfig = "mdllm.config";

// llama.cpp's own key for the beginning-of-text token.
inline constexpr const char* kBosTokenId = "tokenizer.ggml.bos_token_id";

}  // namespace mdllm::gguf_keys
