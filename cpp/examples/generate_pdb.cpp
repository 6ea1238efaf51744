// Embedding mdllm in a C++ pipeline, no Python: read a start structure, encode it with the structure
// tokenizer, generate frames with a GGUF model through llama.cpp, decode them and write a PDB.
//
//   generate_pdb MODEL.gguf TOKENIZER_DIR START.pdb OUT.pdb [frames] [walkers] [window] [seed]
//                [--fold TORSION_DIR]
//
// The model's GGUF metadata says which tokens it reads (fold codes between the amino acids and the
// structure codes make a motion model), and a tokenizer of the other kind or size is refused (the
// Python API also compares the tokenizers' hashes):
// - torsion tokens (models/structure-lm with models/torsiontoken): each frame on its own.
// - motion tokens (models/motion-lm with models/motiontoken, the default model): each residue's
//   displacement from a key frame, the start's last frame. The prompt carries the key's fold as
//   codes of the torsion tokenizer TORSION_DIR (default: torsiontoken beside TOKENIZER_DIR, as
//   models/ ships them). Frames are decoded by the tokenizer's context decoder when its directory holds
//   one (mdllm/motion_context.hpp, each residue from its own and its neighbours' tokens) and projected
//   onto the key's local geometry (mdllm/projection.hpp), as Python decodes motion tokens. A model with
//   fine codes (GGUF key mdllm.fine_codebook_size) draws a fine token after each code that takes one and
//   needs the tokenizer's fine_codes.safetensors (mdllm.tokenizer.motion_fine).
//
// START.pdb: each MODEL is a frame (a file without MODEL records is one); the last `window` frames
// start the generation. OUT.pdb holds one MODEL per generated frame, walker after walker: with the
// same seed and the same default sampling temperature (0.8 for motion models, 1 for torsion models), the
// frames of the Python API's Generator.generate(..., guard=False, refine=False). For
// motion models Python's default also redraws frames its guard rejects and refines the frames
// (mdllm.geometry.refine: ideal bonds and angles, allowed Ramachandran regions); both rest on data and
// checks that live in Python (the Ramachandran grid, the global plausibility checks), so this example
// writes the decoded frames as they are; mdllm.geometry.refine.refine_backbones refines them later.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "mdllm/generate.hpp"
#include "mdllm/gguf_keys.hpp"
#include "mdllm/motion_context.hpp"
#include "mdllm/motion_tokenizer.hpp"
#include "mdllm/projection.hpp"
#include "mdllm/torsion_tokenizer.hpp"

namespace {

namespace keys = mdllm::gguf_keys;

const std::map<std::string, char> kOneLetter = {
    {"ALA", 'A'}, {"ARG", 'R'}, {"ASN", 'N'}, {"ASP", 'D'}, {"CYS", 'C'}, {"GLN", 'Q'}, {"GLU", 'E'},
    {"GLY", 'G'}, {"HIS", 'H'}, {"ILE", 'I'}, {"LEU", 'L'}, {"LYS", 'K'}, {"MET", 'M'}, {"PHE", 'F'},
    {"PRO", 'P'}, {"SER", 'S'}, {"THR", 'T'}, {"TRP", 'W'}, {"TYR", 'Y'}, {"VAL", 'V'}};
const char* kAtoms[4] = {"N", "CA", "C", "O"};

struct Structure {
  std::string sequence;
  std::vector<std::string> residue_names;
  int64_t frames = 0;
  std::vector<float> xyz;  // (frames, L, 4, 3) nm
};

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// The backbone of every model of a PDB file (a file without MODEL records is one frame): standard
// residues with N, CA, C and O, the same residues in every model.
Structure read_pdb(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  using Residue = std::tuple<std::string, std::string, std::map<std::string, std::vector<float>>>;
  std::vector<std::vector<Residue>> models(1);
  std::string line, last_key;
  while (std::getline(in, line)) {
    if (line.rfind("MODEL ", 0) == 0 && !models.back().empty()) {
      models.emplace_back();
      last_key.clear();
    }
    if (line.rfind("ATOM", 0) != 0 || line.size() < 54) continue;
    const std::string atom = trim(line.substr(12, 4)), name = trim(line.substr(17, 3));
    const std::string key = line.substr(21, 6);  // chain, residue number, insertion code
    if (!kOneLetter.count(name)) continue;
    auto& residues = models.back();
    if (key != last_key) residues.emplace_back(key, name, std::map<std::string, std::vector<float>>{});
    last_key = key;
    std::get<2>(residues.back())[atom] = {std::stof(line.substr(30, 8)) / 10, std::stof(line.substr(38, 8)) / 10,
                                          std::stof(line.substr(46, 8)) / 10};
  }
  if (models.size() > 1 && models.back().empty()) models.pop_back();  // a MODEL record without residues
  Structure s;
  for (auto& residues : models) {
    std::vector<std::string> names;
    for (auto& [key, name, atoms] : residues) {
      for (const char* a : kAtoms)
        if (!atoms.count(a))
          throw std::runtime_error(path + ": residue " + name + trim(key) + " has no " + a + " atom");
      names.push_back(name);
      for (const char* a : kAtoms) s.xyz.insert(s.xyz.end(), atoms[a].begin(), atoms[a].end());
    }
    if (s.frames == 0) s.residue_names = names;
    if (names != s.residue_names)
      throw std::runtime_error(path + ": model " + std::to_string(s.frames + 1) +
                               " has other residues than model 1");
    ++s.frames;
  }
  if (s.residue_names.empty()) throw std::runtime_error(path + ": no protein residues");
  for (const auto& name : s.residue_names) s.sequence += kOneLetter.at(name);
  return s;
}

void write_pdb(const std::string& path, const std::vector<std::string>& names, const std::vector<float>& xyz,
               int64_t n_models) {
  std::ostringstream out;
  const int64_t n_res = static_cast<int64_t>(names.size());
  for (int64_t m = 0; m < n_models; ++m) {
    out << "MODEL     " << (m + 1) << "\n";
    int serial = 1;
    for (int64_t r = 0; r < n_res; ++r)
      for (int a = 0; a < 4; ++a) {
        const float* p = &xyz[((m * n_res + r) * 4 + a) * 3];
        char buf[96];
        std::snprintf(buf, sizeof buf, "ATOM  %5d  %-3s %3s A%4d    %8.3f%8.3f%8.3f  1.00  0.00           %c\n",
                      serial++, kAtoms[a], names[r].c_str(), static_cast<int>(r + 1), p[0] * 10, p[1] * 10,
                      p[2] * 10, kAtoms[a][0]);
        out << buf;
      }
    out << "ENDMDL\n";
  }
  out << "END\n";
  const std::string tmp = path + ".part";
  std::ofstream(tmp) << out.str();
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error(path + ": cannot write");
}

int32_t meta_int(const mdllm::generation::Model& model, const std::string& key) {
  const std::string v = model.metadata(key);
  if (v.empty()) throw std::runtime_error("model has no metadata key " + key + " (export it with mdllm export)");
  return std::stoi(v);
}

// A tokenizer of the kind and size the model reads (`what`), or a one-line error that says so.
template <class Tokenizer>
Tokenizer load_checked(const std::string& directory, const char* what, int64_t codebook_size) {
  std::optional<Tokenizer> tokenizer;
  try {
    tokenizer.emplace(Tokenizer::from_directory(directory));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(directory + ": not " + what + ": " + e.what());
  }
  if (tokenizer->codebook_size() != codebook_size)
    throw std::runtime_error(directory + ": " + std::to_string(tokenizer->codebook_size()) + " codes, not the " +
                             std::to_string(codebook_size) + " of " + what);
  return std::move(*tokenizer);
}

// Structure tokens of either kind for frames of L residues: torsion tokens describe each frame on its
// own; motion tokens are displacements from the key frame.
class Codec {
 public:
  explicit Codec(mdllm::TorsionTokenizer torsion) : torsion_(std::move(torsion)) {}
  // With a context decoder file beside the motion tokenizer, residues are decoded from their
  // neighbours' tokens too; `sequence` gives them their Ramachandran classes.
  // With `fine`, the tokenizer's fine codes are loaded (before the context decoder, which reads them).
  Codec(mdllm::MotionTokenizer motion, const float* key, const std::string& directory, const std::string& sequence,
        int64_t n_res, bool fine)
      : motion_(std::move(motion)), key_(key) {
    if (fine) {
      const std::string file = directory + "/fine_codes.safetensors";
      if (!std::filesystem::exists(file))
        throw std::runtime_error("the model draws fine codes; " + directory + " has no fine_codes.safetensors");
      motion_->load_fine(file);
    }
    const std::string context = directory + "/context_decoder.safetensors";
    if (!std::filesystem::exists(context)) return;
    context_.emplace(context, *motion_);
    classes_ = mdllm::MotionContextDecoder::residue_classes(sequence, key, n_res);
  }

  // fine: null, or the fine codes (-1: none) with fine codes loaded.
  void encode(const float* xyz, int64_t n_frames, int64_t n_res, int32_t* tokens, int32_t* fine) const {
    if (fine) return motion_->encode_fine(xyz, n_frames, n_res, key_, tokens, fine);
    if (motion_) return motion_->encode(xyz, n_frames, n_res, key_, tokens);
    torsion_->encode(xyz, n_frames, n_res, tokens);
  }
  void decode(const int32_t* tokens, int64_t n_frames, int64_t n_res, float* xyz, const int32_t* fine) const {
    if (!motion_) return torsion_->decode(tokens, n_frames, n_res, xyz);
    if (context_)
      context_->decode(tokens, n_frames, n_res, key_, classes_.data(), xyz, fine);
    else
      motion_->decode(tokens, n_frames, n_res, key_, xyz, fine);
    // each residue is placed on its own; restore the key's bonds between them, as Python's decode does
    mdllm::projection::project_to_key_geometry(xyz, n_frames, n_res, key_, xyz);
  }

 private:
  std::optional<mdllm::TorsionTokenizer> torsion_;
  std::optional<mdllm::MotionTokenizer> motion_;
  std::optional<mdllm::MotionContextDecoder> context_;
  std::vector<int32_t> classes_;
  const float* key_ = nullptr;

 public:
  const std::vector<uint8_t>& fine_follows() const {
    static const std::vector<uint8_t> none;
    return motion_ ? motion_->fine_follows() : none;
  }
};

// The shipped models/ directory keeps the fold tokenizer beside the motion tokenizer.
std::string fold_beside(std::string tokenizer_dir) {
  while (tokenizer_dir.size() > 1 && tokenizer_dir.back() == '/') tokenizer_dir.pop_back();
  return (std::filesystem::path(tokenizer_dir).parent_path() / "torsiontoken").string();
}

const char* kTorsionWhat = "the torsion tokenizer this model reads";
const char* kMotionWhat = "the motion tokenizer this model reads";
const char* kFoldWhat = "the torsion tokenizer of the key frame's fold (--fold TORSION_DIR) this model reads";

int usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s MODEL.gguf TOKENIZER_DIR START.pdb OUT.pdb [frames] [walkers] [window] [seed] "
               "[--fold TORSION_DIR]\n",
               program);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args;
  std::string fold_dir;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--fold" && i + 1 < argc)
      fold_dir = argv[++i];
    else if (arg.rfind("--", 0) == 0)
      return usage(argv[0]);
    else
      args.push_back(arg);
  }
  if (args.size() < 4 || args.size() > 8) return usage(argv[0]);
  try {
    const std::string &model_path = args[0], &tokenizer_dir = args[1], &out_path = args[3];
    const int64_t frames = args.size() > 4 ? std::stoll(args[4]) : 10;
    const int64_t walkers = args.size() > 5 ? std::stoll(args[5]) : 1;
    const int64_t window = args.size() > 6 ? std::stoll(args[6]) : 4;
    const uint64_t seed = args.size() > 7 ? std::stoull(args[7]) : 0;
    if (frames < 1 || walkers < 1 || window < 1)
      throw std::runtime_error("frames, walkers and window must be at least 1");

    const Structure start = read_pdb(args[2]);
    const auto L = static_cast<int64_t>(start.sequence.size());
    const int64_t n_start = std::min(window, start.frames);  // the last `window` frames
    const float* start_xyz = start.xyz.data() + (start.frames - n_start) * L * 12;
    const float* key = start.xyz.data() + (start.frames - 1) * L * 12;  // motion tokens: the last frame

    mdllm::generation::Model model(model_path);
    const int32_t structure = meta_int(model, keys::kStructureOffset);
    const int32_t amino = meta_int(model, keys::kAminoAcidOffset);
    const int32_t codebook = meta_int(model, keys::kCodebookSize);
    const std::string alphabet = "ACDEFGHIKLMNPQRSTVWY";  // then X, any other residue
    const int32_t fold_offset = amino + static_cast<int32_t>(alphabet.size()) + 1;
    const int32_t fold_codebook = structure - fold_offset;  // the key's fold codes lie between (motion models)
    const std::string fine_size = model.metadata(keys::kFineCodebookSize);  // absent: no fine codes
    const int32_t fine_codebook = fine_size.empty() ? 0 : std::stoi(fine_size);
    const int32_t fine_offset = fine_codebook ? meta_int(model, keys::kFineOffset) : 0;
    const std::string trained = model.metadata(keys::kNResidues);  // 0: trained on several lengths
    if (!trained.empty() && std::stoll(trained) != 0 && std::stoll(trained) != L)
      throw std::runtime_error(model_path + ": model was trained on proteins of " + trained +
                               " residues, the start structure has " + std::to_string(L));

    // <s> <seq> residues </seq> [key fold codes], as mdllm.lm.text.Vocabulary.prefix
    std::vector<int32_t> prefix = {meta_int(model, keys::kBosTokenId), meta_int(model, keys::kSeqStartTokenId)};
    for (char c : start.sequence)  // a residue not among the 20 is X
      prefix.push_back(amino + static_cast<int32_t>(std::min(alphabet.find(c), alphabet.size())));
    prefix.push_back(meta_int(model, keys::kSeqEndTokenId));

    std::optional<Codec> codec;
    if (fold_codebook > 0) {
      if (fold_dir.empty()) fold_dir = fold_beside(tokenizer_dir);
      const auto fold = load_checked<mdllm::TorsionTokenizer>(fold_dir, kFoldWhat, fold_codebook);
      std::vector<int32_t> fold_codes(L);
      fold.encode(key, 1, L, fold_codes.data());
      for (int32_t c : fold_codes) prefix.push_back(fold_offset + c);
      codec.emplace(load_checked<mdllm::MotionTokenizer>(tokenizer_dir, kMotionWhat, codebook), key, tokenizer_dir,
                    start.sequence, L, fine_codebook > 0);
    } else {
      codec.emplace(load_checked<mdllm::TorsionTokenizer>(tokenizer_dir, kTorsionWhat, codebook));
    }

    std::vector<int32_t> codes(n_start * L), fine(fine_codebook ? n_start * L : 0);
    codec->encode(start_xyz, n_start, L, codes.data(), fine_codebook ? fine.data() : nullptr);
    for (auto& c : codes) c += structure;
    for (auto& c : fine) c = c >= 0 ? c + fine_offset : -1;
    const int32_t separator = meta_int(model, keys::kFrameTokenId);
    mdllm::generation::FrameLayout layout{structure, structure + codebook, separator, L};
    if (fine_codebook) {
      if (codec->fine_follows().size() != static_cast<size_t>(codebook))
        throw std::runtime_error(tokenizer_dir + ": its fine codes do not fit this model's");
      layout.fine_begin = fine_offset, layout.fine_end = fine_offset + fine_codebook;
      layout.fine_after = codec->fine_follows();
    }
    mdllm::generation::Options options;
    options.frames = frames;
    options.walkers = walkers;
    options.window = window;
    options.seed = seed;
    if (fold_codebook > 0) options.sampling.temperature = mdllm::generation::kMotionSamplingTemperature;
    const auto result = model.generate(prefix, codes, layout, options, {}, {}, fine);

    std::vector<int32_t> generated(result.tokens), generated_fine(result.fine);
    for (auto& t : generated) t -= structure;
    for (auto& t : generated_fine) t = t >= 0 ? t - fine_offset : -1;
    const int64_t n_out = walkers * result.frames;
    std::vector<float> xyz(generated.size() * 12);
    codec->decode(generated.data(), n_out, L, xyz.data(), fine_codebook ? generated_fine.data() : nullptr);
    for (float v : xyz)
      if (!std::isfinite(v)) throw std::runtime_error("decoded a non-finite coordinate");
    write_pdb(out_path, start.residue_names, xyz, n_out);
    std::printf("%lld walkers x %lld frames of %lld residues (%s tokens) in %.3f s; wrote %s\n",
                static_cast<long long>(walkers), static_cast<long long>(result.frames), static_cast<long long>(L),
                fold_codebook > 0 ? "motion" : "torsion", result.generate_seconds, out_path.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
