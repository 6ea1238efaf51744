"""Every GGUF metadata key of mdllm's own, in one place: the exporter (:mod:`mdllm.lm.export`) writes
them, generation (:mod:`mdllm.generate`) reads them. ``cpp/include/mdllm/gguf_keys.hpp`` mirrors this
module for C++ programs (``cpp/examples/generate_pdb.cpp``); tests/test_gguf_keys.py checks that the
two agree. Numpy only, so that generation imports it without PyTorch.
"""

PREFIX = "mdllm."

TOKENIZER_HASH = "mdllm.tokenizer_hash"  # string: hash of the structure tokenizer the model reads
CODEBOOK_SIZE = "mdllm.codebook_size"  # uint32: structure codes per residue
N_CONDITIONING = "mdllm.n_conditioning"  # uint32: conditioning tokens of the vocabulary
VOCAB_OFFSET = "mdllm.vocab_offset"  # uint32: ids below it belong to a base vocabulary
FRAME_TOKEN_ID = "mdllm.frame_token_id"  # uint32: the frame separator
SEQ_START_TOKEN_ID = "mdllm.seq_start_token_id"  # uint32: opens the amino-acid sequence
SEQ_END_TOKEN_ID = "mdllm.seq_end_token_id"  # uint32: closes it
CONDITIONING_OFFSET = "mdllm.conditioning_offset"  # uint32: first conditioning token
AMINO_ACID_OFFSET = "mdllm.amino_acid_offset"  # uint32: first amino-acid token (ACDEFGHIKLMNPQRSTVWY, X)
STRUCTURE_OFFSET = "mdllm.structure_offset"  # uint32: structure code 0
FRAME_RULE = "mdllm.frame_rule"  # string: how a frame is laid out in text
N_RESIDUES = "mdllm.n_residues"  # uint32: residues of a single-protein model, 0 for several lengths
TRAIN_SEQUENCES = "mdllm.train_sequences"  # string array: the proteins the model was last trained on
FRAME_SPAN = "mdllm.frame_span"  # uint32: rotary positions per frame (ModelConfig.frame_span); absent: 0
FINE_CODEBOOK_SIZE = "mdllm.fine_codebook_size"  # uint32: fine motion codes (absent: none); <f_none> follows them
FINE_OFFSET = "mdllm.fine_offset"  # uint32: fine code 0 (with FINE_CODEBOOK_SIZE)
FINE_HASH = "mdllm.fine_hash"  # string: hash of the fine stage (with FINE_CODEBOOK_SIZE)
CONFIG = "mdllm.config"  # string: JSON of the model config, vocabulary, merged LoRA and training record

# llama.cpp's own key (written by gguf.GGUFWriter.add_bos_token_id), read by C++ programs.
BOS_TOKEN_ID = "tokenizer.ggml.bos_token_id"
