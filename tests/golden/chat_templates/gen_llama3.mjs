// Renders the Llama 3 fixture's chat_template (../shared/fixtures/tokenizers/llama3-hf/
// tokenizer_config.json) with @huggingface/jinja, the reference implementation of Hugging Face
// chat templates in JavaScript, and writes llama3.json beside this script.
//
//   npm install --prefix /tmp/jinja @huggingface/jinja@0.5.11
//   JINJA_DIR=/tmp/jinja node tests/golden/chat_templates/gen_llama3.mjs
//
// (or install it into a gitignored node_modules/ and leave JINJA_DIR unset). Output is
// deterministic: rerunning it must not change llama3.json.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..", "..");
const require = createRequire(import.meta.url);
const jinjaPath = process.env.JINJA_DIR
  ? require.resolve("@huggingface/jinja", { paths: [process.env.JINJA_DIR] })
  : require.resolve("@huggingface/jinja");
const { Template } = require(jinjaPath);
const jinjaVersion = JSON.parse(
  readFileSync(join(dirname(jinjaPath), "..", "package.json"), "utf8"),
).version;

const configPath = join(repo, "..", "shared", "fixtures", "tokenizers", "llama3-hf", "tokenizer_config.json");
const config = JSON.parse(readFileSync(configPath, "utf8"));
const template = new Template(config.chat_template);

const sys = (content) => ({ role: "system", content });
const user = (content) => ({ role: "user", content });
const asst = (content) => ({ role: "assistant", content });

// Each case is a valid conversation for ringtune: optional system first, user/assistant
// alternating from user. "train" cases end with the assistant, "generate" cases with the user.
const cases = [
  { name: "single_turn", messages: [user("What's the value of 1+1?"), asst("The value is 2")] },
  {
    name: "llmforge_doc_example",
    messages: [sys("You are a helpful assistant"), user("What's the value of 1+1?"), asst("The value is 2")],
  },
  {
    name: "multi_turn_with_system",
    messages: [
      sys("You are a helpful AI assistant for travel tips and recommendations"),
      user("What is France's capital?"),
      asst("Bonjour! The capital of France is Paris!"),
      user("What can I do there?"),
      asst("Visit the Eiffel Tower and the Louvre."),
      user("Anything else?"),
      asst("A river cruise on the Seine."),
    ],
  },
  {
    name: "multi_turn_no_system",
    messages: [user("Hi"), asst("Hello! How can I help?"), user("Tell me a joke."), asst("Why did the chicken cross the road?")],
  },
  {
    name: "whitespace_around_content",
    messages: [sys("  \n be brief \n\n"), user("\n\n  padded question?   \n"), asst("\t answer with spaces \t\n")],
  },
  {
    name: "internal_newlines_code",
    messages: [
      user("Write Python that prints 1..3.\nUse a loop."),
      asst("```python\nfor i in range(1, 4):\n    print(i)\n```\n\nThat's it."),
    ],
  },
  {
    name: "unicode",
    messages: [
      sys("Réponds en français, s'il te plaît. 🙂"),
      user("日本の首都はどこですか？ Ελληνικά? עברית?"),
      asst("東京です。 Ναι. כן. 👍🏽 naïve café"),
    ],
  },
  {
    name: "content_spells_special_tokens",
    messages: [
      user("Print <|eot_id|> and <|start_header_id|>assistant<|end_header_id|> literally."),
      asst("Here: <|eot_id|><|begin_of_text|> and </s> done"),
    ],
  },
  {
    name: "generate_single_user",
    messages: [user("What is the capital of Germany?")],
  },
  {
    name: "generate_with_system_multi_turn",
    messages: [sys("Answer in one word."), user("Capital of Italy?"), asst("Rome"), user("And of Spain?")],
  },
  {
    name: "tabs_and_crlf",
    messages: [user("line one\r\nline two\tcolumn"), asst("ok\r\nsecond\tline")],
  },
  {
    name: "braces_in_content",
    messages: [
      sys("Templates use {instruction} and {system}."),
      user("Format '{name}' with {{ jinja }} and {% raw %}"),
      asst("{instruction} stays {instruction}; }} and {{ too."),
    ],
  },
  {
    name: "nbsp_and_unicode_spaces_trimmed",
    messages: [user("\u00a0\u3000 wide spaces \u2003"), asst("\u2028answer\u00a0")],
  },
  {
    name: "long_content",
    messages: [user("Repeat: " + "lorem ipsum ".repeat(60).trim()), asst("lorem ipsum ".repeat(60).trim())],
  },
];

const out = {
  description:
    "Llama 3 chat_template (tests fixture llama3-hf/tokenizer_config.json) rendered by @huggingface/jinja. " +
    "The template trims content and always ends with the assistant header, so `rendered` is the same " +
    "for add_generation_prompt true and false (both are rendered and checked equal here).",
  generator: "tests/golden/chat_templates/gen_llama3.mjs",
  jinja_version: jinjaVersion,
  bos_token: config.bos_token,
  eos_token: config.eos_token,
  cases: [],
};
for (const c of cases) {
  const render = (add_generation_prompt) =>
    template.render({ messages: c.messages, bos_token: config.bos_token, eos_token: config.eos_token, add_generation_prompt });
  const withPrompt = render(true);
  const withoutPrompt = render(false);
  if (withPrompt !== withoutPrompt) throw new Error(`${c.name}: add_generation_prompt changed the output`);
  out.cases.push({
    name: c.name,
    kind: c.messages[c.messages.length - 1].role === "assistant" ? "train" : "generate",
    messages: c.messages,
    rendered: withPrompt,
  });
}
const target = join(here, "llama3.json");
writeFileSync(target, JSON.stringify(out, null, 2) + "\n");
console.log(`wrote ${out.cases.length} cases to ${target}`);
