// Embedding mdllm in a C++ pipeline, no Python: read a start structure, encode it with the structure
// tokenizer, generate frames with a GGUF model through llama.cpp, decode them and write a PDB.
//
//   generate_pdb MODEL.gguf TOKENIZER_DIR START.pdb OUT.pdb [frames] [walkers] [window] [seed]
//
// OUT.pdb holds one MODEL per generated frame, walker after walker.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "mdllm/generate.hpp"
#include "mdllm/gguf_keys.hpp"
#include "mdllm/tokenizer.hpp"

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
  std::vector<float> xyz;  // (L, 4, 3) nm
};

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// The backbone of the first model of a PDB file: standard residues with N, CA, C and O.
Structure read_pdb(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<std::tuple<std::string, std::string, std::map<std::string, std::vector<float>>>> residues;
  std::string line, last_key;
  while (std::getline(in, line)) {
    if (line.rfind("ENDMDL", 0) == 0) break;
    if (line.rfind("ATOM", 0) != 0 || line.size() < 54) continue;
    const std::string atom = trim(line.substr(12, 4)), name = trim(line.substr(17, 3));
    const std::string key = line.substr(21, 6);  // chain, residue number, insertion code
    if (!kOneLetter.count(name)) continue;
    if (key != last_key) residues.emplace_back(key, name, std::map<std::string, std::vector<float>>{});
    last_key = key;
    std::get<2>(residues.back())[atom] = {std::stof(line.substr(30, 8)) / 10, std::stof(line.substr(38, 8)) / 10,
                                          std::stof(line.substr(46, 8)) / 10};
  }
  Structure s;
  for (auto& [key, name, atoms] : residues) {
    for (const char* a : kAtoms)
      if (!atoms.count(a)) throw std::runtime_error(path + ": residue " + name + trim(key) + " has no " + a + " atom");
    s.sequence += kOneLetter.at(name);
    s.residue_names.push_back(name);
    for (const char* a : kAtoms) s.xyz.insert(s.xyz.end(), atoms[a].begin(), atoms[a].end());
  }
  if (s.sequence.empty()) throw std::runtime_error(path + ": no protein residues");
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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL.gguf TOKENIZER_DIR START.pdb OUT.pdb [frames] [walkers] [window] [seed]\n", argv[0]);
    return 2;
  }
  try {
    const int64_t frames = argc > 5 ? std::stoll(argv[5]) : 10, walkers = argc > 6 ? std::stoll(argv[6]) : 1;
    const int64_t window = argc > 7 ? std::stoll(argv[7]) : 4;
    const uint64_t seed = argc > 8 ? std::stoull(argv[8]) : 0;

    const Structure start = read_pdb(argv[3]);
    const auto L = static_cast<int64_t>(start.sequence.size());
    const auto loaded = mdllm::load_tokenizer(argv[2]);  // either kind, as its config.json says
    const mdllm::StructureTokenizer& tokenizer = *loaded;
    std::vector<int32_t> codes(L);
    tokenizer.encode(start.xyz.data(), 1, L, codes.data());

    mdllm::generation::Model model(argv[1]);
    if (meta_int(model, keys::kCodebookSize) != tokenizer.codebook_size())
      throw std::runtime_error("tokenizer codebook size differs from the model's");
    const int32_t structure = meta_int(model, keys::kStructureOffset);
    const int32_t amino = meta_int(model, keys::kAminoAcidOffset);
    const std::string alphabet = "ACDEFGHIKLMNPQRSTVWY";
    std::vector<int32_t> prefix = {meta_int(model, keys::kBosTokenId),
                                   meta_int(model, keys::kSeqStartTokenId)};
    for (char c : start.sequence) {
      const auto i = alphabet.find(c);
      prefix.push_back(amino + static_cast<int32_t>(i == std::string::npos ? alphabet.size() : i));
    }
    prefix.push_back(meta_int(model, keys::kSeqEndTokenId));
    for (auto& c : codes) c += structure;

    const mdllm::generation::FrameLayout layout{structure, structure + static_cast<int32_t>(tokenizer.codebook_size()),
                                                meta_int(model, keys::kFrameTokenId), L};
    mdllm::generation::Options options;
    options.frames = frames;
    options.walkers = walkers;
    options.window = window;
    options.seed = seed;
    const auto result = model.generate(prefix, codes, layout, options);

    std::vector<int32_t> generated(result.tokens);
    for (auto& t : generated) t -= structure;
    std::vector<float> xyz(generated.size() * 12);
    tokenizer.decode(generated.data(), walkers * result.frames, L, xyz.data());
    for (float v : xyz)
      if (!std::isfinite(v)) throw std::runtime_error("decoded a non-finite coordinate");
    write_pdb(argv[4], start.residue_names, xyz, walkers * result.frames);
    std::printf("%lld walkers x %lld frames of %lld residues in %.3f s; wrote %s\n", static_cast<long long>(walkers),
                static_cast<long long>(result.frames), static_cast<long long>(L), result.generate_seconds, argv[4]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
