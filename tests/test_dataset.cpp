// Datasets: the four JSONL formats, detection and enforcement, validation with one-line
// file:line errors (one distinct message per malformed input), skip mode counting by reason,
// blank lines, truncation, causal LM, streaming in bounded memory, and a mutation fuzz.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "data/fake_tokenizer.h"
#include "src/config/registry.h"
#include "src/data/data_pipeline.h"
#include "src/data/dataset.h"
#include "src/options/data_options.h"
#include "test_util.h"

namespace ringtune {
namespace {

namespace fs = std::filesystem;
using testing::FakeTokenizer;

// ---------------------------------------------------------------------------------------------
// Helpers

class TempDir {
 public:
  TempDir() {
    static int n = 0;
    path_ = fs::temp_directory_path() / ("ringtune_ds_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string write(const std::string& name, const std::string& content) const {
    const fs::path p = path_ / name;
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
  std::string write_lines(const std::string& name, const std::vector<std::string>& lines) const {
    std::string all;
    for (const auto& l : lines) all += l + "\n";
    return write(name, all);
  }

 private:
  fs::path path_;
};

const FakeTokenizer& fake() {
  static const FakeTokenizer tok(FakeTokenizer::all_specials(), "<s>", "</s>");
  return tok;
}

std::vector<EncodedSample> read_all(const std::vector<std::string>& paths, const DataOptions& o,
                                    const PromptFormat& f, DataReport* report = nullptr,
                                    bool keep_text = true) {
  DatasetReader reader(paths, o, f, fake());
  reader.set_keep_text(keep_text);
  std::vector<EncodedSample> out;
  EncodedSample s;
  while (reader.next(s)) out.push_back(s);
  if (report) *report = reader.report();
  return out;
}

std::string error_of(const std::vector<std::string>& paths, const DataOptions& o) {
  try {
    read_all(paths, o, prompt_format_preset("chatml"));
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

const std::string kOpenAI = R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]})";
const std::string kShareGPT = R"({"conversations":[{"from":"human","value":"hi"},{"from":"gpt","value":"hello"}]})";
const std::string kAlpaca = R"({"instruction":"say hi","input":"","output":"hi"})";
const std::string kText = R"({"text":"once upon a time"})";

std::string chatml(const std::string& user, const std::string& assistant) {
  return "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n" + assistant + "<|im_end|>\n";
}

// ---------------------------------------------------------------------------------------------
// Formats

TEST(DatasetFormats, EachFormatBecomesTheSameConversation) {
  TempDir d;
  const std::vector<std::string> paths = {d.write_lines("a.jsonl", {kOpenAI}), d.write_lines("b.jsonl", {kShareGPT}),
                                          d.write_lines("c.jsonl", {R"({"instruction":"hi","output":"hello"})"})};
  DataReport report;
  const auto samples = read_all(paths, DataOptions{}, prompt_format_preset("chatml"), &report);
  ASSERT_EQ(samples.size(), 3u);
  for (const auto& s : samples) {
    EXPECT_EQ(s.text, chatml("hi", "hello"));
    EXPECT_EQ(fake().decode(s.ids), s.text);
    EXPECT_EQ(s.line, 1);
  }
  EXPECT_EQ(samples[1].path, paths[1]);
  EXPECT_EQ(report.samples, 3);
  EXPECT_EQ(report.invalid_total(), 0);
}

TEST(DatasetFormats, ShareGPTRolesAndAlpacaInputAndSystem) {
  TempDir d;
  const std::string sg =
      R"({"conversations":[{"from":"system","value":"S"},{"from":"user","value":"U"},{"from":"assistant","value":"A"},)"
      R"({"from":"human","value":"U2"},{"from":"gpt","value":"A2"}],"id":"extra keys are ignored"})";
  const std::string al = R"({"instruction":"Translate.","input":"bonjour","output":"hello","system":"S"})";
  const auto samples = read_all({d.write_lines("sg.jsonl", {sg}), d.write_lines("al.jsonl", {al})},
                                DataOptions{}, prompt_format_preset("chatml"));
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].text, "<|im_start|>system\nS<|im_end|>\n" + chatml("U", "A") + chatml("U2", "A2"));
  EXPECT_EQ(samples[1].text, "<|im_start|>system\nS<|im_end|>\n" + chatml("Translate.\n\nbonjour", "hello"));
}

TEST(DatasetFormats, TextIsCausalWithTokenizerBosEos) {
  TempDir d;
  const auto samples = read_all({d.write_lines("t.jsonl", {kText})}, DataOptions{}, prompt_format_preset("chatml"));
  ASSERT_EQ(samples.size(), 1u);
  const auto& s = samples[0];
  ASSERT_EQ(s.ids.size(), 2 + std::string("once upon a time").size());
  EXPECT_EQ(s.ids.front(), fake().special_ids().bos);
  EXPECT_EQ(s.ids.back(), fake().special_ids().eos);
  EXPECT_EQ(s.loss_mask.front(), 0);
  for (size_t i = 1; i < s.loss_mask.size(); ++i) EXPECT_EQ(s.loss_mask[i], 1) << i;
}

TEST(DatasetFormats, CausalLmTaskOnMessages) {
  // llmforge's causal_lm example: concatenation format, content only in a user message.
  TempDir d;
  DataOptions o;
  o.task = Task::causal_lm;
  const auto samples = read_all({d.write_lines("c.jsonl", {R"({"messages":[{"role":"user","content":"Once upon a time ..."}]})"})},
                                o, prompt_format_preset("none"));
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(fake().decode(samples[0].ids), "<s>Once upon a time ...</s>");
  EXPECT_EQ(samples[0].loss_mask.front(), 0);
  EXPECT_EQ(std::count(samples[0].loss_mask.begin(), samples[0].loss_mask.end(), 1),
            static_cast<long>(samples[0].ids.size() - 1));
}

TEST(DatasetFormats, BlankLinesCrlfAndBomAreAccepted) {
  TempDir d;
  const std::string p = d.write("x.jsonl", "\xEF\xBB\xBF" + kOpenAI + "\r\n\r\n   \t\n" + kOpenAI + "\r\n\n");
  DataReport r;
  const auto samples = read_all({p}, DataOptions{}, prompt_format_preset("chatml"), &r);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[1].line, 4);
  EXPECT_EQ(r.lines, 5);
  EXPECT_EQ(r.blank_lines, 3);
  EXPECT_EQ(samples[0].text, chatml("hi", "hello"));
}

TEST(DatasetFormats, OptionNames) {
  EXPECT_EQ(parse_dataset_format("sharegpt"), DatasetFormat::sharegpt);
  EXPECT_EQ(parse_truncation("truncate_left"), Truncation::truncate_left);
  EXPECT_EQ(parse_on_invalid_sample("skip"), OnInvalidSample::skip);
  EXPECT_EQ(parse_task("causal_lm"), Task::causal_lm);
  try {
    parse_truncation("cut");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(), "truncation: \"cut\" is not one of drop, truncate_left, truncate_right");
  }
  EXPECT_THROW(parse_dataset_format("jsonl"), InputError);
  EXPECT_THROW(parse_on_invalid_sample("ignore"), InputError);
  EXPECT_THROW(parse_task("sft"), InputError);
}

TEST(DatasetFormats, MissingFileIsAnInputError) {
  EXPECT_EQ(error_of({"/nonexistent/train.jsonl"}, DataOptions{}),
            "/nonexistent/train.jsonl: cannot open the file (No such file or directory)");
}

// ---------------------------------------------------------------------------------------------
// Malformed inputs: each its own one-line error naming file:line

struct BadCase {
  std::string name;
  std::vector<std::string> lines;  // the last line is the bad one
  std::string message;             // expected reason after "<file>:<line>: "
  std::string reason;              // skip-mode count key
  std::string format = "auto";
  size_t max_line_bytes = size_t{64} << 20;
};

std::string msgs(const std::string& body) { return R"({"messages":[)" + body + "]}"; }
std::string sg(const std::string& body) { return R"({"conversations":[)" + body + "]}"; }
const std::string U = R"({"role":"user","content":"hi"})";
const std::string A = R"({"role":"assistant","content":"hello"})";
const std::string S = R"({"role":"system","content":"be nice"})";

std::vector<BadCase> bad_cases() {
  const std::string too_long = R"({"text":")" + std::string(300, 'x') + R"("})";
  return {
      {"truncated_json", {R"({"messages": [)"},
       "invalid JSON at byte 15: syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal",
       "invalid_json"},
      {"trailing_garbage", {R"({"text":"a"} x)"},
       "invalid JSON at byte 14: syntax error while parsing value - invalid literal; last read: '\"a\"} x'; expected end of input",
       "invalid_json"},
      {"lone_surrogate", {R"({"text":"\ud800"})"},
       "invalid JSON at byte 16: syntax error while parsing value - invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF; last read: '\"\\ud800\"'",
       "invalid_json"},
      {"raw_tab_in_string", {"{\"text\":\"a\tb\"}"},
       "invalid JSON at byte 11: syntax error while parsing value - invalid string: control character U+0009 (HT) must be escaped to \\u0009 or \\t; last read: '\"a<U+0009>'",
       "invalid_json"},
      {"array_line", {"[1, 2]"}, "expected a JSON object (one sample), got array", "not_object"},
      {"string_line", {R"("hello")"}, "expected a JSON object (one sample), got string", "not_object"},
      {"number_line", {"42"}, "expected a JSON object (one sample), got number", "not_object"},
      {"null_line", {"null"}, "expected a JSON object (one sample), got null", "not_object"},
      {"bool_line", {"true"}, "expected a JSON object (one sample), got boolean", "not_object"},
      {"invalid_utf8_byte", {"{\"text\":\"a\xff" "b\"}"}, "invalid UTF-8 at byte 10", "invalid_utf8"},
      {"overlong_utf8", {"{\"text\":\"\xc0\xaf\"}"}, "invalid UTF-8 at byte 9", "invalid_utf8"},
      {"surrogate_utf8", {kText, "{\"text\":\"xy\xed\xa0\x80\"}"}, "invalid UTF-8 at byte 11", "invalid_utf8"},
      {"unknown_format", {R"({"question":"a","answer":"b"})"},
       "cannot tell the dataset format: no \"messages\", \"conversations\", \"instruction\"/\"output\", \"text\" or \"prompt\"/\"completion\" key (or set dataset_format)",
       "unknown_format"},
      {"ambiguous_format", {R"({"messages":[],"text":"x"})"},
       "cannot tell the dataset format: the object has keys of openai (\"messages\") and text (\"text\"); set dataset_format",
       "ambiguous_format"},
      {"format_changes_midfile", {kOpenAI, kShareGPT},
       "this sample is sharegpt (\"conversations\"), but the file is openai, detected at line 1", "format_mismatch"},
      {"key_missing_midfile", {kOpenAI, R"({"foo": 1})"},
       "missing key \"messages\" (the file is openai, detected at line 1)", "missing_key"},
      {"wrong_format_for_option", {kOpenAI}, "this sample is openai (\"messages\"), but dataset_format: text",
       "format_mismatch", "text"},
      {"option_key_missing", {R"({"foo": 1})"}, "missing key \"conversations\" (dataset_format: sharegpt)",
       "missing_key", "sharegpt"},
      {"alpaca_without_output", {R"({"instruction":"x"})"}, "missing key \"output\"", "missing_key", "alpaca"},
      {"messages_not_array", {R"({"messages": {"role":"user"}})"}, "\"messages\" must be an array, got object", "wrong_type"},
      {"messages_empty", {R"({"messages": []})"}, "\"messages\" is an empty array", "empty_array"},
      {"message_not_object", {msgs(R"("hi")")}, "messages[0] must be an object, got string", "message_not_object"},
      {"missing_role", {msgs(R"({"content":"hi"})")}, "messages[0] has no \"role\"", "missing_role"},
      {"role_not_string", {msgs(R"({"role":1,"content":"hi"})")}, "messages[0].role must be a string, got number",
       "role_not_string"},
      {"unknown_role", {msgs(U + R"(,{"role":"function","content":"x"})")},
       "messages[1].role \"function\" is not one of system, user, assistant, tool", "unknown_role"},
      {"tool_after_user", {msgs(U + R"(,{"role":"tool","content":"x"},)" + A)},
       "messages[1]: a tool message must follow an assistant message (its tool call) or another tool message, not user",
       "tool_without_call"},
      {"tool_first", {msgs(R"({"role":"tool","content":"x"},)" + U + "," + A)},
       "messages[0]: the conversation must start with a user message, not tool", "tool_without_call"},
      {"user_after_tool", {msgs(U + "," + A + R"(,{"role":"tool","content":"x"},)" + U + "," + A)},
       "messages[3]: a user message right after a tool message (the assistant answers the tool's result first)",
       "not_alternating"},
      {"ends_with_tool", {msgs(U + "," + A + R"(,{"role":"tool","content":"x"})")},
       "messages[2]: the last message must be from the assistant for training, not tool", "ends_with_user"},
      {"missing_content", {msgs(U + R"(,{"role":"assistant"})")}, "messages[1] has no \"content\"", "missing_content"},
      {"null_content", {msgs(U + R"(,{"role":"assistant","content":null})")}, "messages[1].content must be a string, got null",
       "content_not_string"},
      {"tool_calls", {msgs(U + R"(,{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function"}]})")},
       "messages[1] has tool_calls, which ringtune does not render yet (they would be left out of the text); write the "
       "call into \"content\" as the model should produce it, or leave the sample out",
       "tool_calls"},
      {"tools", {R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}],"tools":[{"type":"function"}]})"},
       "\"tools\" is given, which ringtune does not pass to the template yet (the tool list would be left out of the "
       "text); leave the sample out",
       "tool_calls"},
      {"weight_two", {msgs(U + R"(,{"role":"assistant","content":"x","weight":2})")},
       "messages[1].weight must be 0 or 1, got 2", "weight"},
      {"weight_on_user", {msgs(R"({"role":"user","content":"hi","weight":0},)" + A)},
       "messages[0].weight is only for assistant messages (the loss is on them)", "weight"},
      {"content_parts", {msgs(R"({"role":"user","content":[{"type":"text","text":"x"}]})" + std::string(",") + A)},
       "messages[0].content must be a string, got array", "content_not_string"},
      {"empty_content", {msgs(U + R"(,{"role":"assistant","content":""})")}, "messages[1]: content is empty", "empty_content"},
      {"blank_content", {msgs(R"({"role":"user","content":" \n\t "})" + std::string(",") + A)},
       "messages[0]: content is only whitespace", "blank_content"},
      {"no_user", {msgs(S + "," + A)}, "the conversation has no user message", "no_user"},
      {"no_assistant", {msgs(S + "," + U)}, "the conversation has no assistant message (nothing to train on)", "no_assistant"},
      {"system_not_first", {msgs(U + "," + S + "," + A)}, "messages[1]: the system message must come first", "system_not_first"},
      {"two_systems", {msgs(S + "," + S + "," + U + "," + A)}, "messages[1]: a second system message (only one is allowed)",
       "multiple_system"},
      {"starts_with_assistant", {msgs(S + "," + A + "," + U + "," + A)},
       "messages[1]: the conversation must start with a user message, not assistant", "starts_with_assistant"},
      {"two_users", {msgs(U + "," + U + "," + A)}, "messages[1]: two user messages in a row (user and assistant must alternate)",
       "not_alternating"},
      {"two_assistants", {msgs(U + "," + A + "," + A)},
       "messages[2]: two assistant messages in a row (user and assistant must alternate)", "not_alternating"},
      {"ends_with_user", {msgs(U + "," + A + "," + U)},
       "messages[2]: the last message must be from the assistant for training, not user", "ends_with_user"},
      {"sharegpt_missing_from", {sg(R"({"value":"hi"})")}, "conversations[0] has no \"from\"", "missing_role"},
      {"sharegpt_from_not_string", {sg(R"({"from":true,"value":"hi"})")}, "conversations[0].from must be a string, got boolean",
       "role_not_string"},
      {"sharegpt_unknown_from", {sg(R"({"from":"human","value":"hi"},{"from":"bot","value":"x"})")},
       "conversations[1].from \"bot\" is not one of system, human, gpt, user, assistant, tool, function_call, "
       "observation", "unknown_role"},
      {"sharegpt_missing_value", {sg(R"({"from":"human","value":"hi"},{"from":"gpt"})")}, "conversations[1] has no \"value\"",
       "missing_content"},
      {"sharegpt_value_not_string", {sg(R"({"from":"human","value":7})")}, "conversations[0].value must be a string, got number",
       "content_not_string"},
      {"sharegpt_starts_with_gpt", {sg(R"({"from":"gpt","value":"a"},{"from":"human","value":"b"},{"from":"gpt","value":"c"})")},
       "conversations[0]: the conversation must start with a user message, not assistant", "starts_with_assistant"},
      {"alpaca_instruction_not_string", {R"({"instruction":5,"output":"x"})"}, "\"instruction\" must be a string, got number",
       "wrong_type"},
      {"alpaca_empty_output", {R"({"instruction":"x","output":""})"}, "\"output\" is empty", "empty_content"},
      {"alpaca_input_not_string", {R"({"instruction":"a","input":["x"],"output":"b"})"}, "\"input\" must be a string, got array",
       "wrong_type"},
      {"alpaca_blank_instruction", {R"({"instruction":"\n  ","output":"b"})"}, "\"instruction\" is only whitespace",
       "blank_content"},
      {"text_not_string", {R"({"text":{"a":1}})"}, "\"text\" must be a string, got object", "wrong_type"},
      {"text_empty", {R"({"text":""})"}, "\"text\" is empty", "empty_content"},
      {"line_too_long", {too_long}, "the line is longer than 200 bytes", "line_too_long", "auto", 200},
  };
}

DataOptions options_for(const BadCase& c, OnInvalidSample mode) {
  DataOptions o;
  o.dataset_format = parse_dataset_format(c.format);
  o.max_line_bytes = c.max_line_bytes;
  o.on_invalid_sample = mode;
  return o;
}

// A valid line of the format a case's file has, appended for skip mode.
std::string good_line_for(const BadCase& c) {
  if (c.format == "text") return kText;
  if (c.format == "alpaca") return kAlpaca;
  if (c.format == "sharegpt") return kShareGPT;
  for (const auto& l : c.lines)
    if (l == kText) return kText;
  if (c.name.rfind("sharegpt", 0) == 0) return kShareGPT;
  if (c.name.rfind("alpaca", 0) == 0) return kAlpaca;
  return kOpenAI;
}

TEST(DatasetErrors, EachMalformedInputHasItsOwnOneLineError) {
  const auto cases = bad_cases();
  ASSERT_GE(cases.size(), 32u);
  TempDir d;
  std::set<std::string> seen;
  for (const BadCase& c : cases) {
    const std::string path = d.write_lines(c.name + ".jsonl", c.lines);
    const std::string got = error_of({path}, options_for(c, OnInvalidSample::error));
    EXPECT_EQ(got, path + ":" + std::to_string(c.lines.size()) + ": " + c.message) << c.name;
    EXPECT_EQ(got.find('\n'), std::string::npos) << c.name;
    EXPECT_TRUE(seen.insert(c.message).second) << "duplicate message: " << c.message;
  }
}

TEST(DatasetErrors, SkipModeCountsEachReason) {
  const auto cases = bad_cases();
  TempDir d;
  std::map<std::string, int64_t> want_auto;
  std::vector<std::string> auto_paths;
  int64_t auto_good = 0;
  for (const BadCase& c : cases) {
    std::vector<std::string> lines = c.lines;
    lines.push_back(good_line_for(c));
    const std::string path = d.write_lines(c.name + ".jsonl", lines);
    DataReport r;
    const auto samples = read_all({path}, options_for(c, OnInvalidSample::skip), prompt_format_preset("chatml"), &r);
    const int64_t good = static_cast<int64_t>(lines.size()) - 1;
    EXPECT_EQ(static_cast<int64_t>(samples.size()), good) << c.name;
    EXPECT_EQ(r.invalid, (std::map<std::string, int64_t>{{c.reason, 1}})) << c.name;
    EXPECT_EQ(r.first_invalid.at(c.reason), path + ":" + std::to_string(c.lines.size()) + ": " + c.message) << c.name;
    if (c.format == "auto" && c.max_line_bytes == cases[0].max_line_bytes) {
      auto_paths.push_back(path);
      ++want_auto[c.reason];
      auto_good += good;
    }
  }
  // All auto-format files through one reader: counts add up by reason.
  DataOptions o;
  o.on_invalid_sample = OnInvalidSample::skip;
  DataReport r;
  const auto samples = read_all(auto_paths, o, prompt_format_preset("chatml"), &r);
  EXPECT_EQ(r.invalid, want_auto);
  EXPECT_EQ(static_cast<int64_t>(samples.size()), auto_good);
  EXPECT_EQ(r.samples, auto_good);
  EXPECT_NE(r.summary().find("invalid samples skipped"), std::string::npos);
}

TEST(DatasetErrors, GenerationUseWantsALastUserMessage) {
  try {
    validate_conversation({{Role::user, "a"}, {Role::assistant, "b"}}, ConversationUse::generation,
                          [](size_t i) { return "messages[" + std::to_string(i) + "]"; });
    FAIL();
  } catch (const InvalidSample& e) {
    EXPECT_EQ(e.reason(), "ends_with_assistant");
  }
  EXPECT_NO_THROW(validate_conversation({{Role::system, "s"}, {Role::user, "a"}}, ConversationUse::generation,
                                        [](size_t i) { return std::to_string(i); }));
}

TEST(DatasetErrors, FormatIsDetectedFromTheFirstValidLine) {
  TempDir d;
  DataOptions o;
  o.on_invalid_sample = OnInvalidSample::skip;
  // An invalid openai line first does not fix the format: the file is sharegpt.
  DataReport r;
  const auto samples =
      read_all({d.write_lines("x.jsonl", {msgs(U), kShareGPT, kShareGPT})}, o, prompt_format_preset("chatml"), &r);
  EXPECT_EQ(samples.size(), 2u);
  EXPECT_EQ(r.invalid, (std::map<std::string, int64_t>{{"no_assistant", 1}}));
}

// ---------------------------------------------------------------------------------------------
// Over-length samples

TEST(DatasetTruncation, DropTruncateRightTruncateLeft) {
  TempDir d;
  const std::string long_user = std::string(100, 'u');
  const std::string line = msgs(R"({"role":"user","content":")" + long_user + R"("},{"role":"assistant","content":"ok"})");
  const std::string path = d.write_lines("long.jsonl", {line, kOpenAI});
  const PromptFormat f = prompt_format_preset("chatml");
  const std::string full = chatml(long_user, "ok");
  DataOptions unlimited;
  unlimited.context_length = 0;
  const auto whole = read_all({path}, unlimited, f);
  ASSERT_EQ(whole.size(), 2u);
  ASSERT_EQ(whole[0].text, full);
  ASSERT_GT(whole[0].ids.size(), 100u);

  DataOptions o;
  o.context_length = 60;
  DataReport r;
  auto samples = read_all({path}, o, f, &r);
  EXPECT_EQ(samples.size(), 1u);  // only the short one
  EXPECT_EQ(r.dropped_too_long, 1);

  o.truncation = Truncation::truncate_right;  // keeps the user's text only: nothing to train on
  samples = read_all({path}, o, f, &r);
  EXPECT_EQ(samples.size(), 1u);
  EXPECT_EQ(r.dropped_no_supervised, 1);
  EXPECT_EQ(r.truncated, 0);

  o.truncation = Truncation::truncate_left;  // keeps the tail with the answer
  samples = read_all({path}, o, f, &r, false);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(r.truncated, 1);
  EXPECT_EQ(samples[0].ids.size(), 60u);
  EXPECT_EQ(samples[0].ids, std::vector<int32_t>(whole[0].ids.end() - 60, whole[0].ids.end()));
  EXPECT_EQ(fake().decode(samples[0].ids).substr(0, 10), std::string(10, 'u'));
  std::vector<int32_t> masked;
  for (size_t i = 0; i < samples[0].ids.size(); ++i)
    if (samples[0].loss_mask[i]) masked.push_back(samples[0].ids[i]);
  EXPECT_EQ(fake().decode(masked), "ok<|im_end|>\n");
  EXPECT_NE(r.summary().find("1 truncated"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Streaming and robustness

TEST(DatasetStreaming, ManyLinesAndAHugeLine) {
  TempDir d;
  std::string path;
  {
    path = d.write("big.jsonl", "");
    std::ofstream out(path, std::ios::binary);
    out << R"({"text":")" << std::string(3 << 20, 'z') << "\"}\n";  // 3 MiB line
    for (int i = 0; i < 20000; ++i) out << R"({"text":"line )" << i << "\"}\n";
  }
  DataOptions o;
  o.on_invalid_sample = OnInvalidSample::skip;
  o.max_line_bytes = 1 << 20;
  DatasetReader reader({path}, o, prompt_format_preset("none"), fake());
  EncodedSample s;
  int64_t n = 0;
  while (reader.next(s)) ++n;
  EXPECT_EQ(n, 20000);
  EXPECT_EQ(reader.report().invalid.at("line_too_long"), 1);
  EXPECT_EQ(s.line, 20001);
  EXPECT_EQ(fake().decode(s.ids), "<s>line 19999</s>");
}

TEST(DatasetStreaming, LastLineWithoutNewlineAndChunkBoundaries) {
  TempDir d;
  // Lines around the reader's 64 KiB chunk size, the last one without "\n".
  std::string content;
  // Each line is exactly sizes[i] bytes: {"text":"<body>"} is the body plus 11.
  std::vector<size_t> sizes = {65534, 65535, 65536, 65537, 131071, 131072, 20};
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::string body = std::string(sizes[i] - 11, 'a');
    content += R"({"text":")" + body + "\"}";
    if (i + 1 < sizes.size()) content += "\n";
  }
  DataOptions o;
  o.context_length = 0;  // no limit
  DataReport r;
  const auto samples = read_all({d.write("edge.jsonl", content)}, o, prompt_format_preset("none"), &r, false);
  ASSERT_EQ(samples.size(), sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) EXPECT_EQ(samples[i].ids.size(), sizes[i] - 11 + 2) << i;
}

TEST(DatasetStreaming, MutatedLinesNeverCrash) {
  // Random byte edits of valid lines: each line is a sample or a counted invalid one.
  std::mt19937 rng(1234);
  const std::vector<std::string> seeds = {kOpenAI, kShareGPT, kAlpaca, kText,
                                          msgs(S + "," + U + "," + A + "," + U + "," + A)};
  const std::string alphabet = "{}[]\":,\\ \tnul0123truefalse\xff\xc3\xa9";
  std::vector<std::string> lines;
  for (int i = 0; i < 3000; ++i) {
    std::string l = seeds[static_cast<size_t>(i) % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !l.empty(); ++e) {
      const size_t pos = rng() % l.size();
      switch (rng() % 3) {
        case 0: l.erase(pos, 1 + rng() % 3); break;
        case 1: l.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
        default: l[pos] = alphabet[rng() % alphabet.size()]; break;
      }
    }
    lines.push_back(l);
  }
  TempDir d;
  std::vector<std::string> paths;
  for (int f = 0; f < 5; ++f)
    paths.push_back(d.write_lines("fuzz" + std::to_string(f) + ".jsonl",
                                  std::vector<std::string>(lines.begin() + f * 600, lines.begin() + (f + 1) * 600)));
  DataOptions o;
  o.on_invalid_sample = OnInvalidSample::skip;
  DataReport r;
  const auto samples = read_all(paths, o, prompt_format_preset("llama3"), &r, false);
  EXPECT_EQ(r.lines, 3000);
  EXPECT_EQ(r.samples + r.invalid_total() + r.blank_lines + r.dropped_no_supervised + r.dropped_too_long, 3000);
  EXPECT_GT(r.samples, 0);
  EXPECT_GT(r.invalid_total(), 0);
  for (const auto& s : samples) EXPECT_EQ(s.ids.size(), s.loss_mask.size());
}

// The same malformed inputs through the binary: `ringtune prepare` exits 2 with exactly one
// stderr line "error: <file>:<line>: <reason>" and leaves no prepared file behind.
TEST(DatasetErrors, CliExitsTwoWithTheSameOneLineError) {
  TempDir d;
  const std::string cfg = d.write("cfg.yaml", "context_length: 4096\n");
  int checked = 0;
  for (const BadCase& c : bad_cases()) {
    if (c.max_line_bytes != (size_t{64} << 20)) continue;  // not a config key
    const std::string path = d.write_lines(c.name + ".jsonl", c.lines);
    const std::string out_dir = (fs::path(path).parent_path() / ("out_" + c.name)).string();
    auto r = ringtune_test::run_ringtune(
        // A model directory holding only the tokenizer: prepare reads no weights.
        "prepare " + cfg + " initial_base_model_ckpt_path=" + ringtune_test::fixtures_dir() + "/tokenizers/llama2-sp" +
        " tokenizer_path=" + ringtune_test::fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model" +
        " generation_config.prompt_format=llama2 train_path=" + path + " output_dir=" + out_dir +
        " dataset_format=" + c.format + (c.format == "text" ? " task=causal_lm" : ""));
    EXPECT_EQ(r.exit_code, 2) << c.name << ": " << r.err;
    EXPECT_EQ(r.err, "error: " + path + ":" + std::to_string(c.lines.size()) + ": " + c.message + "\n") << c.name;
    EXPECT_FALSE(fs::exists(out_dir + "/prepared/train.h5")) << c.name;
    EXPECT_FALSE(fs::exists(out_dir + "/prepared/train.h5.tmp")) << c.name;
    ++checked;
  }
  EXPECT_GE(checked, 45);
}

// ---------------------------------------------------------------------------------------------
// JSON array files and conversation columns (torchtune's / Hugging Face's json loader)

std::string dialogue(const std::string& user, const std::string& reply) {
  return R"({"dialogue":[{"from":"human","value":")" + user + R"("},{"from":"gpt","value":")" + reply + R"("}]})";
}

TEST(DatasetFiles, AJsonArrayReadsAsItsLinesWould) {
  TempDir d;
  // Pretty-printed over several lines, with a byte-order mark and a string holding , ] } and \".
  const std::string tricky = R"({"messages":[{"role":"user","content":"a, ]} \"b\" ["},{"role":"assistant","content":"c"}]})";
  const std::string array = d.write("a.json", "\xEF\xBB\xBF\n [\n  " + kOpenAI + ",\n  " + kShareGPT + "\n  ,\n" +
                                                  kOpenAI + ",\n" + tricky + "\n]\n");
  DataOptions o;
  o.dataset_format = DatasetFormat::auto_detect;
  EXPECT_EQ(error_of({array}, o), array + "[1] (line 4): this sample is sharegpt (\"conversations\"), but the file "
                                          "is openai, detected at line 3");
  const std::string mixed = d.write("m.json", "[" + kShareGPT + "," + kShareGPT + "]");
  DataReport report;
  const auto from_array = read_all({mixed}, o, prompt_format_preset("chatml"), &report);
  const auto from_lines = read_all({d.write_lines("m.jsonl", {kShareGPT, kShareGPT})}, o, prompt_format_preset("chatml"));
  ASSERT_EQ(from_array.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(from_array[i].ids, from_lines[i].ids);
    EXPECT_EQ(from_array[i].loss_mask, from_lines[i].loss_mask);
  }
  const std::string openai = d.write("o.json", "[\n" + kOpenAI + ",\n\n" + tricky + "]");
  const auto samples = read_all({openai}, o, prompt_format_preset("chatml"));
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[1].line, 4);  // the line its record starts on
  EXPECT_EQ(samples[1].text, chatml("a, ]} \"b\" [", "c"));
  EXPECT_TRUE(read_all({d.write("e.json", " [ ]\n")}, o, prompt_format_preset("chatml")).empty());
}

TEST(DatasetFiles, ConversationColumnInEitherStyle) {
  TempDir d;
  DataOptions o;
  o.conversation_column = "dialogue";
  const std::string sharegpt = d.write("s.json", "[" + dialogue("hi", "hello") + "]");
  const std::string openai = d.write_lines(
      "o.jsonl", {R"({"dialogue":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]})"});
  for (const auto& path : {sharegpt, openai}) {
    const auto samples = read_all({path}, o, prompt_format_preset("chatml"));
    ASSERT_EQ(samples.size(), 1u) << path;
    EXPECT_EQ(samples[0].text, chatml("hi", "hello")) << path;
  }
  // A forced style is enforced; without the column the sample has no conversation.
  o.conversation_style = DatasetFormat::openai;
  EXPECT_EQ(error_of({sharegpt}, o), sharegpt + "[0] (line 1): dialogue[0] has no \"role\"");
  o.conversation_style = DatasetFormat::auto_detect;
  const std::string plain = d.write_lines("k.jsonl", {kOpenAI});
  EXPECT_EQ(error_of({plain}, o),
            plain + ":1: cannot tell the dataset format: no \"dialogue\" (conversation_column), \"instruction\"/\"output\", "
                "\"text\" or \"prompt\"/\"completion\" key (or set dataset_format)");
}

TEST(DatasetFiles, MalformedJsonArraysNameFileIndexAndLine) {
  TempDir d;
  const std::string ok = dialogue("hi", "hello");
  struct Case {
    std::string name, content, message;  // message after "<file>"
  };
  const std::vector<Case> cases = {
      {"missing_comma", "[" + ok + " " + ok + "]", "[0] (line 1): expected ',' or ']' after this record, got '{'"},
      {"unclosed_array", "[" + ok + ",\n", "[1] (line 2): the file ends inside the JSON array (no closing ']')"},
      {"unclosed_after_record", "[\n" + ok + "\n", "[0] (line 3): the file ends inside the JSON array (no closing ']')"},
      {"unclosed_record", "[" + ok + ",\n{\"dialogue\": [", "[1] (line 2): the file ends inside this record (the JSON array is not closed)"},
      {"unclosed_string", "[{\"dialogue\": \"abc]", "[0] (line 1): the file ends inside this record (the JSON array is not closed)"},
      {"text_after_array", "[" + ok + "]\nmore", " (line 2): text after the JSON array's closing ']'"},
      {"empty_record", "[,]", "[0] (line 1): expected a record, got ','"},
      {"trailing_comma", "[" + ok + ",]", "[1] (line 1): expected a record, got ']'"},
      {"scalar_record", "[" + ok + ",\n 7]", "[1] (line 2): expected a JSON object (one sample), got number"},
      {"bad_json_in_record", "[{\"dialogue\": tru}]", "[0] (line 1): invalid JSON at byte 17: syntax error while parsing value - invalid literal; last read: '\"dialogue\": tru}'"},
      {"bad_role_in_record", "[\n" + ok + ",\n" + dialogue("a", "b").replace(dialogue("a", "b").find("gpt"), 3, "robot") + "\n]",
       "[1] (line 3): dialogue[1].from \"robot\" is not one of system, human, gpt, user, assistant, tool, "
       "function_call, observation"},
      {"column_not_array", R"([{"dialogue": "hi"}])", "[0] (line 1): \"dialogue\" must be an array, got string"},
      {"column_empty", R"([{"dialogue": []}])", "[0] (line 1): \"dialogue\" is an empty array"},
      {"record_too_long", "[" + dialogue(std::string(400, 'x'), "y") + "]", "[0] (line 1): the record is longer than 300 bytes"},
      {"invalid_utf8_in_record", "[" + dialogue("caf\xE9", "y") + "]", "[0] (line 1): invalid UTF-8 at byte 41"},
  };
  DataOptions o;
  o.conversation_column = "dialogue";
  o.max_line_bytes = 300;
  std::set<std::string> seen;
  for (const Case& c : cases) {
    const std::string path = d.write(c.name + ".json", c.content);
    const std::string got = error_of({path}, o);
    EXPECT_EQ(got, path + c.message) << c.name;
    EXPECT_EQ(got.find('\n'), std::string::npos) << c.name;
    EXPECT_TRUE(seen.insert(c.message).second) << c.name;
  }
  // Invalid records are skipped and counted like invalid lines; the valid ones are read.
  o.on_invalid_sample = OnInvalidSample::skip;
  DataReport report;
  const auto samples = read_all({d.write("mixed.json", "[" + ok + ",\n7,\n" + ok + "]")}, o, prompt_format_preset("chatml"), &report);
  EXPECT_EQ(samples.size(), 2u);
  EXPECT_EQ(report.invalid.at("not_object"), 1);
}

TEST(DatasetFiles, ConversationColumnThroughTheBinary) {
  TempDir d;
  const std::string data = d.write("chats.json", "[\n" + dialogue("hi", "hello") + ",\n" + dialogue("yo", "hey") + "\n]\n");
  const std::string cfg = d.write("cfg.yaml", "context_length: 256\nconversation_column: dialogue\n");
  const std::string base = "render " + cfg + " initial_base_model_ckpt_path=" + ringtune_test::fixtures_dir() +
                           "/tokenizers/llama2-sp tokenizer_path=" + ringtune_test::fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model" +
                           " generation_config.prompt_format=llama2 train_path=" + data;
  auto r = ringtune_test::run_ringtune(base + " --n 5");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("=== sample 1 (" + data + ":3,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[INST] yo [/INST][[ hey </s>]]"), std::string::npos) << r.out;
  for (const auto& [extra, message] : std::vector<std::pair<std::string, std::string>>{
           {" conversation_column=dialogue dataset_format=alpaca", "conversation_column"},
           {" conversation_style=chatml", "conversation_style"}}) {
    auto bad = ringtune_test::run_ringtune(base + extra);
    EXPECT_EQ(bad.exit_code, 2) << extra << bad.err;
    EXPECT_NE(bad.err.find(message), std::string::npos) << extra << bad.err;
    EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  }
}

// TRL's prompt/completion records: the loss on the completion only.
TEST(DatasetFiles, PromptCompletionPlainAndConversational) {
  TempDir d;
  DataOptions o;
  const std::string plain = d.write_lines("p.jsonl", {R"({"prompt":"The capital of France is","completion":" Paris."})"});
  auto samples = read_all({plain}, o, prompt_format_preset("chatml"));
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].text, "The capital of France is Paris.");
  EXPECT_EQ(ringtune_test::supervised_runs(fake(), TokenizedSample{samples[0].ids, samples[0].loss_mask}),
            std::vector<std::string>{" Paris.</s>"});
  o.task = Task::causal_lm;
  o.dataset_format = DatasetFormat::auto_detect;
  samples = read_all({plain}, o, prompt_format_preset("chatml"));
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(ringtune_test::supervised_runs(fake(), TokenizedSample{samples[0].ids, samples[0].loss_mask}),
            std::vector<std::string>{"The capital of France is Paris.</s>"});

  // Conversational: earlier assistant turns of the prompt carry no loss, even with train_on assistant.
  o = DataOptions{};
  const std::string conv = d.write(
      "c.json", R"([{"prompt":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},)"
                R"({"role":"user","content":"c"}],"completion":[{"role":"assistant","content":"d"}]}])");
  samples = read_all({conv}, o, prompt_format_preset("chatml"));
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].text, chatml("a", "b") + "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\nd<|im_end|>\n");
  EXPECT_EQ(ringtune_test::supervised_runs(fake(), TokenizedSample{samples[0].ids, samples[0].loss_mask}),
            std::vector<std::string>{"d<|im_end|>\n"});
  // A record with "prompt" beside "messages" (UltraChat) stays OpenAI.
  const std::string ultra = d.write_lines("u.jsonl", {R"({"prompt":"hi","prompt_id":"x","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]})"});
  samples = read_all({ultra}, o, prompt_format_preset("chatml"));
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].text, chatml("hi", "hello"));

  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"prompt":"a","completion":["b"]})", "\"completion\" must be a string like \"prompt\", got array"},
      {R"({"prompt":"a","completion":"  "})", "\"completion\" is only whitespace"},
      {R"({"prompt":7,"completion":"b"})", "\"prompt\" must be a string or a list of messages, got number"},
      {R"({"prompt":[{"role":"user","content":"a"}],"completion":"b"})",
       "\"completion\" must be a list of messages like \"prompt\", got string"},
      {R"({"prompt":[{"role":"user","content":"a"}],"completion":[]})", "\"completion\" must hold one assistant message, got 0"},
      {R"({"prompt":[{"role":"user","content":"a"}],"completion":[{"role":"user","content":"b"}]})",
       "completion[0].role must be assistant"},
      {R"({"prompt":[{"role":"user","content":"a"}],"completion":[{"role":"assistant"}]})", "completion[0] has no \"content\""},
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    const std::string path = d.write_lines("bad" + std::to_string(i) + ".jsonl", {bad[i].first});
    EXPECT_EQ(error_of({path}, o), path + ":1: " + bad[i].second) << bad[i].first;
  }
}

TEST(DatasetFiles, ResponseTemplateKeepsLossAfterItsLastOccurrence) {
  // TRL's DataCollatorForCompletionOnlyLM: the template's ids are searched in the sample's ids, the
  // last occurrence wins, and everything up to its end carries no loss.
  TempDir d;
  DataOptions o;
  o.task = Task::causal_lm;
  o.response_template_text = " ### Answer:";
  o.response_template = response_template_ids(fake(), o.response_template_text, {}, "cfg.yaml:3: key \"response_template\"");
  ASSERT_EQ(o.response_template.size(), std::string(" ### Answer:").size());  // no bos in the template
  const std::string path = d.write_lines(
      "t.jsonl", {R"({"text":"Q: 2+2 ### Answer: 4"})", R"({"text":"### Answer: x, and then ### Answer: y"})",
                  R"({"text":"no template here"})"});
  DataReport report;
  o.on_invalid_sample = OnInvalidSample::skip;
  auto samples = read_all({path}, o, prompt_format_preset("chatml"), &report);
  ASSERT_EQ(samples.size(), 2u);
  auto runs = [&](const EncodedSample& s) {
    return ringtune_test::supervised_runs(fake(), TokenizedSample{s.ids, s.loss_mask});
  };
  EXPECT_EQ(runs(samples[0]), std::vector<std::string>{" 4</s>"});
  EXPECT_EQ(runs(samples[1]), std::vector<std::string>{" y</s>"});
  EXPECT_EQ(report.invalid.at("response_template_missing"), 1);
  // The first line's template starts at the start of the text: "### Answer:" without the space
  // is not " ### Answer:".
  o.on_invalid_sample = OnInvalidSample::error;
  const std::string first = d.write_lines("f.jsonl", {R"({"text":"### Answer: only at the start"})"});
  const std::string err = error_of({first}, o);
  EXPECT_EQ(err.rfind(first + ":1: the response template \" ### Answer:\" (ids [", 0), 0u) << err;
  EXPECT_NE(err.find("list of the ids it has in context"), std::string::npos) << err;

  // Given as ids: the same ids give the same masks.
  DataOptions by_ids = o;
  by_ids.response_template_text.clear();
  by_ids.on_invalid_sample = OnInvalidSample::skip;
  auto again = read_all({path}, by_ids, prompt_format_preset("chatml"));
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].loss_mask, samples[0].loss_mask);
  EXPECT_EQ(again[1].loss_mask, samples[1].loss_mask);
  // Ids outside the vocabulary and a template of no tokens are config errors.
  EXPECT_THROW(response_template_ids(fake(), "", {fake().vocab_size()}, "k"), InputError);
  EXPECT_THROW(response_template_ids(fake(), "", {-1}, "k"), InputError);
}

TEST(DatasetFiles, ResponseTemplateThroughTheConfig) {
  // Text and id lists from YAML, the task check, and the data fingerprint.
  TempDir d;
  const std::string tok = ringtune_test::fixtures_dir() + "/tokenizers/llama2-sp";
  auto spec = [&](const std::string& extra) {
    return data_spec_from_config(load_config_from_string(
        "initial_base_model_ckpt_path: " + tok + "\ntrain_path: t.jsonl\ntask: causal_lm\n" + extra, {}, "cfg.yaml", d.write("x", "")));
  };
  EXPECT_EQ(spec("response_template: \" ### Answer:\"\n").options.response_template_text, " ### Answer:");
  EXPECT_EQ(spec("response_template: \"123\"\n").options.response_template_text, "123");
  EXPECT_EQ(spec("response_template: [835, 673, 29901]\n").response_template_ids, (std::vector<int32_t>{835, 673, 29901}));
  EXPECT_EQ(spec("response_template: [7]\n").response_template_ids, (std::vector<int32_t>{7}));
  try {
    load_config_from_string("train_path: t.jsonl\ninitial_base_model_ckpt_path: m\nresponse_template: x\n", {}, "cfg.yaml");
    ADD_FAILURE() << "chat task accepted a response_template";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), "cfg.yaml:3: key \"response_template\": is for task causal_lm (plain text); chat "
                                     "samples get their loss from train_on");
  }
  const DataPipeline a = make_data_pipeline(spec("response_template: \" ### Answer:\"\n"));
  const DataPipeline b = make_data_pipeline(spec(""));
  const DataPipeline c = make_data_pipeline(spec("response_template: \" ### Answer\"\n"));
  EXPECT_FALSE(a.options.response_template.empty());
  EXPECT_NE(a.format_hash(), b.format_hash());
  EXPECT_NE(a.format_hash(), c.format_hash());

  // TRL's documented pitfall on a SentencePiece tokenizer: alone, the template gets the dummy-prefix
  // space token; in context it does not. The ids it has in context, given as a list, match.
  const Tokenizer& t = *a.tokenizer;
  const std::string text = "Question: 2+2 ### Answer: 4";
  TokenizedSample sample = tokenize_causal_text(t, text);
  EXPECT_THROW(apply_response_template(sample, a.options.response_template, " ### Answer:"), InvalidSample);
  // Alone: "\u2581" "\u2581###" "Answer" ":"; in context the first piece is not there.
  const std::vector<int32_t> alone = t.encode(" ### Answer:");
  ASSERT_EQ(alone, a.options.response_template);
  ASSERT_GT(alone.size(), 1u);
  const std::vector<int32_t> ids(alone.begin() + 1, alone.end());
  ASSERT_NE(std::search(sample.ids.begin(), sample.ids.end(), ids.begin(), ids.end()), sample.ids.end());
  apply_response_template(sample, ids, "");
  EXPECT_EQ(ringtune_test::supervised_runs(t, sample).size(), 1u);
  EXPECT_EQ(t.decode(std::vector<int32_t>(sample.ids.end() - 3, sample.ids.end() - 1)), "4");
}

TEST(DatasetFiles, ColumnMapRenamesAlpacaColumnsAndToolRolesAreMapped) {
  TempDir d;
  DataOptions o;
  o.alpaca_columns.instruction = "question";
  o.alpaca_columns.input = "context";
  o.alpaca_columns.output = "answer";
  const std::string renamed = d.write_lines("r.jsonl", {R"({"question":"say hi","context":"politely","answer":"hi"})"});
  const std::string plain = d.write_lines("p.jsonl", {R"({"instruction":"say hi","input":"politely","output":"hi"})"});
  auto a = read_all({renamed}, o, prompt_format_preset("chatml"));
  auto b = read_all({plain}, DataOptions{}, prompt_format_preset("chatml"));
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0].text, b[0].text);
  EXPECT_EQ(a[0].ids, b[0].ids);
  const std::string missing = d.write_lines("m.jsonl", {R"({"question":"x","output":"y"})"});
  o.dataset_format = DatasetFormat::alpaca;
  EXPECT_EQ(error_of({missing}, o), missing + ":1: missing key \"answer\"");

  // Tool results (OpenAI "tool", ShareGPT "tool" / "observation" with "function_call") reach a chat
  // template as role "tool"; a preset cannot render them.
  const std::string tools = d.write_lines(
      "t.jsonl", {R"x({"conversations":[{"from":"human","value":"weather?"},{"from":"function_call","value":"get()"},)x"
                  R"x({"from":"observation","value":"sunny"},{"from":"gpt","value":"It is sunny."}]})x"});
  const std::string err = error_of({tools}, DataOptions{});
  EXPECT_NE(err.find(tools + ":1: message 2 is a tool result, which a prompt format of system, user and assistant "
                             "templates cannot render"),
            std::string::npos)
      << err;
}

}  // namespace
}  // namespace ringtune
