// Conversation rules: non-empty content, known roles, at most one system message and only first,
// user/assistant alternating from user (tool results after an assistant turn), at least one user
// and one assistant message, and the right last speaker.
#include "src/data/conversation.h"

#include "src/data/utf8.h"

namespace ringtune {

const char* role_name(Role role) {
  switch (role) {
    case Role::system: return "system";
    case Role::user: return "user";
    case Role::assistant: return "assistant";
    case Role::tool: return "tool";
  }
  return "?";
}

void validate_conversation(const Conversation& conversation, ConversationUse use,
                           const std::function<std::string(size_t)>& label) {
  // Content first: llmforge requires every entry to be non-empty.
  for (size_t i = 0; i < conversation.size(); ++i) {
    const std::string& content = conversation[i].content;
    if (content.empty()) throw InvalidSample("empty_content", label(i) + ": content is empty");
    if (is_blank(content))
      throw InvalidSample("blank_content", label(i) + ": content is only whitespace");
  }
  if (conversation.empty()) throw InvalidSample("no_messages", "the conversation has no messages");
  if (use == ConversationUse::causal_lm) return;

  bool has_user = false, has_assistant = false;
  for (const Message& m : conversation) {
    has_user |= m.role == Role::user;
    has_assistant |= m.role == Role::assistant;
  }
  if (!has_user) throw InvalidSample("no_user", "the conversation has no user message");
  if (!has_assistant && use == ConversationUse::training)
    throw InvalidSample("no_assistant", "the conversation has no assistant message (nothing to train on)");

  // Order: [system] user assistant user assistant ... (training ends with assistant); tool
  // results come right after an assistant turn (its tool call) or another tool result, and the
  // assistant speaks after them.
  size_t i = 0;
  if (conversation[0].role == Role::system) i = 1;
  const size_t first = i;
  for (; i < conversation.size(); ++i) {
    const Role role = conversation[i].role;
    if (role == Role::system) {
      if (conversation[0].role == Role::system)
        throw InvalidSample("multiple_system", label(i) + ": a second system message (only one is allowed)");
      throw InvalidSample("system_not_first", label(i) + ": the system message must come first");
    }
    if (i == first) {
      if (role != Role::user)
        throw InvalidSample(role == Role::tool ? "tool_without_call" : "starts_with_assistant",
                            label(i) + ": the conversation must start with a user message, not " + role_name(role));
      continue;
    }
    const Role prev = conversation[i - 1].role;
    if (role == Role::tool && prev != Role::assistant && prev != Role::tool)
      throw InvalidSample("tool_without_call", label(i) + ": a tool message must follow an assistant message (its "
                                                          "tool call) or another tool message, not " + role_name(prev));
    if (prev == Role::tool && role == Role::user)
      throw InvalidSample("not_alternating", label(i) + ": a user message right after a tool message (the "
                                                        "assistant answers the tool's result first)");
    if (role == prev && role != Role::tool)
      throw InvalidSample("not_alternating", label(i) + ": two " + role_name(role) +
                                                 " messages in a row (user and assistant must alternate)");
  }
  const Role last = conversation.back().role;
  if (use == ConversationUse::training && last != Role::assistant)
    throw InvalidSample("ends_with_user", label(conversation.size() - 1) +
                                              ": the last message must be from the assistant for training, not " +
                                              role_name(last));
  if (use == ConversationUse::generation && last == Role::assistant)
    throw InvalidSample("ends_with_assistant", label(conversation.size() - 1) +
                                                   ": the last message must be from the user (or a tool) for generation");
}

}  // namespace ringtune
