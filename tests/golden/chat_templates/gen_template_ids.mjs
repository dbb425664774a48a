// Token ids of real chat templates' renderings (real_templates.json, made by gen_jinja.py with
// Python's jinja2) as the reference tokenizer gives them: the JS port of Hugging Face tokenizers
// (@lenml/tokenizers), encode(text, {add_special_tokens: false}) — what transformers'
// apply_chat_template(tokenize=True) does with the rendered text. Templates are paired with the
// fixture tokenizer of their family (Llama 3 templates with llama3-hf, Mistral's with mistral-hf).
// None of the conversations spells a special token, so the reference's special-token parsing of
// the whole text equals ringtune's (template text parsed, message content not).
//
//   npm install --no-save --no-package-lock --prefix tests/golden @lenml/tokenizers@3.7.2
//   node tests/golden/chat_templates/gen_template_ids.mjs
import { TokenizerLoader } from "@lenml/tokenizers";
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = process.env.RINGTUNE_FIXTURES ?? path.resolve(here, "../../../../shared/fixtures");
const pairs = { llama3: "llama3-hf", llama3_1: "llama3-hf", llama3_2: "llama3-hf", mistral_nemo: "mistral-hf" };

function load(name) {
  const dir = path.join(fixtures, "tokenizers", name);
  return TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
  });
}

const golden = JSON.parse(fs.readFileSync(path.join(here, "real_templates.json"), "utf8"));
const out = [];
for (const t of golden.templates) {
  if (!(t.name in pairs)) continue;
  const tok = load(pairs[t.name]);
  for (const c of t.cases) {
    if (c.output === null) continue;
    out.push({ template: t.name, tokenizer: pairs[t.name], conversation: c.conversation,
               add_generation_prompt: c.add_generation_prompt,
               ids: tok.encode(c.output, { add_special_tokens: false }) });
  }
}
const lines = out.map((c) => "  " + JSON.stringify(c));
fs.writeFileSync(path.join(here, "template_ids.json"),
  '{"generator": "tests/golden/chat_templates/gen_template_ids.mjs", "reference": "@lenml/tokenizers 3.7.2", "cases": [\n' +
  lines.join(",\n") + "\n ]}\n");
console.log(`wrote template_ids.json: ${out.length} cases`);
