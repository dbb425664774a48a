// Conversations as the data path sees them after parsing: roles, messages, and the rules a
// conversation must follow before it is rendered (llmforge's rules plus role order).
// defines: Role, Message, Conversation, InvalidSample, ConversationUse, validate_conversation
#pragma once
#include <functional>
#include <utility>
#include <string>
#include <vector>

#include "src/error.h"

namespace ringtune {

enum class Role { system, user, assistant, tool };  // tool: a tool's result, after an assistant turn

const char* role_name(Role role);

struct Message {
  Role role = Role::user;
  std::string content;
  // OpenAI's per-message "weight" (assistant messages): false (weight 0) keeps the message in the
  // context but puts no loss on it.
  bool trained = true;
};

using Conversation = std::vector<Message>;

// A sample that breaks a rule. `reason` is a short stable code used to count skipped samples
// (e.g. "empty_content"); what() is the one-line reason without the file:line prefix, which the
// dataset reader adds.
class InvalidSample : public InputError {
 public:
  InvalidSample(std::string reason, const std::string& message)
      : InputError(message), reason_(std::move(reason)) {}
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
};

enum class ConversationUse {
  training,    // optional system, then user/assistant alternating from user, ending with assistant
  generation,  // the same, but ending with user (the model writes the next assistant turn)
  causal_lm,   // any order of known roles; every message non-empty; at least one message
};

// Throws InvalidSample for the first broken rule. `label(i)` names message i in messages, for
// example "messages[2]" or "conversations[2]", so the reason points at the input's own keys.
void validate_conversation(const Conversation& conversation, ConversationUse use,
                           const std::function<std::string(size_t)>& label);

}  // namespace ringtune
