// Added tokens (special tokens such as <|eot_id|> or </s>, and user-added words): finding their
// spellings in text before the rest of the pipeline runs, with leftmost-longest matching as the
// reference does. Special tokens match only inside allow_special segments; non-special added
// tokens match everywhere, as in the reference (JS port and Rust library alike).
// defines: AddedToken, TextSection, AddedVocab, join_segments
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "src/tokenizer/normalized_text.h"
#include "src/tokenizer/tokenizer.h"

namespace ringtune {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;  // whitespace before the token is dropped
  bool rstrip = false;  // whitespace after the token is dropped
  // Read but, as in the reference, not acted on: tokens match anywhere, on the raw text.
  bool single_word = false;
  bool normalized = false;
};

// A piece of the input: either an added token (`added_id` >= 0) or text for the model.
struct TextSection {
  size_t begin = 0, end = 0;
  int32_t added_id = -1;
};

// Concatenates the segments into `text` and returns the byte ranges of the allow_special ones
// (adjacent ranges merged), the `allowed` argument of AddedVocab::split.
std::vector<TextSpan> join_segments(const std::vector<TextSegment>& segments, std::string& text);

class AddedVocab {
 public:
  // Adds a token or replaces the one with the same content.
  void add(const AddedToken& token);

  // Cuts text into sections. `allowed` lists, in order and without overlap, the byte ranges
  // where special tokens may match. lstrip/rstrip trim whitespace off neighbouring text sections
  // (which may then be empty).
  std::vector<TextSection> split(std::string_view text, const std::vector<TextSpan>& allowed) const;

  // The token with this id / content, or nullptr.
  const AddedToken* by_id(int32_t id) const;
  const AddedToken* by_content(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  int32_t max_id() const { return max_id_; }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // byte -> node
    int32_t token = -1;                                 // index into tokens_
  };
  int32_t child(int32_t node, uint8_t byte) const;
  void insert_into_trie(size_t index);

  std::vector<AddedToken> tokens_;
  std::unordered_map<std::string, size_t> by_content_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::vector<Node> trie_;  // node 0 is the root once a token is added
  bool starts_[256] = {};
  int32_t max_id_ = -1;
};

}  // namespace ringtune
