// load_tokenizer: the structure tokenizer of the kind a directory's config.json names.
#include "mdllm/tokenizer.hpp"

#include <memory>
#include <stdexcept>
#include <string>

#include "json.hpp"
#include "mdllm/torsion_tokenizer.hpp"

namespace mdllm {

std::unique_ptr<StructureTokenizer> load_tokenizer(const std::string& directory) {
  const std::string path = directory + "/config.json";
  const std::string config = detail::read_text_file(path);
  const detail::Json root = detail::parse_json(config);
  const detail::Json* kind = root.is_object() ? root.find("kind") : nullptr;
  const std::string name = !kind ? "transformer" : kind->is_string() ? kind->string : "";
  if (name == "torsion") return std::make_unique<TorsionTokenizer>(directory + "/model.safetensors", config);
  if (name == "transformer")
    throw std::invalid_argument(path + ": the transformer tokenizer kind was retired in mdllm 0.1; use motion or torsion");
  if (name == "motion")
    throw std::invalid_argument(path + ": a motion tokenizer needs a key frame; load it with MotionTokenizer");
  throw std::invalid_argument(path + ": unknown tokenizer kind (expected \"torsion\")");
}

}  // namespace mdllm
