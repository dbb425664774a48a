// Writes the golden token ids of the two tokenizer.json fixtures (llama3-hf, mistral-hf) for every
// string of strings.json, using the reference JS port of Hugging Face tokenizers
// (@lenml/tokenizers), plus NFC/NFD forms of the strings (String.prototype.normalize) for the
// Unicode normalizer test. See tests/golden/README.md for how to run it.
//
// Per string: ids         encode(text, {add_special_tokens: false}) — special-token spellings
//                         become their ids (the reference's only mode);
//             ids_plain   the same with the tokenizer's added_tokens removed, i.e. the text encoded
//                         as ordinary text (what ringtune does outside allow_special segments);
//             decoded     decode(ids, {skip_special_tokens: false,
//                         clean_up_tokenization_spaces: false});
//             decoded_plain  decode(ids_plain, ...) with the plain tokenizer.
import { TokenizerLoader } from "@lenml/tokenizers";
import fs from "fs";
import path from "path";
import { createRequire } from "module";
import { fileURLToPath } from "url";

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures =
  process.env.RINGTUNE_FIXTURES ?? path.resolve(here, "../../../../shared/fixtures");
const require = createRequire(import.meta.url);
// The package does not export its package.json: find it above the resolved entry point.
let pkgDir = path.dirname(require.resolve("@lenml/tokenizers"));
while (!fs.existsSync(path.join(pkgDir, "package.json"))) pkgDir = path.dirname(pkgDir);
const version = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8")).version;
const strings = JSON.parse(fs.readFileSync(path.join(here, "strings.json"), "utf8"));

function load(name, plain) {
  const dir = path.join(fixtures, "tokenizers", name);
  const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const tokenizerConfig = JSON.parse(
    fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")
  );
  if (plain) tokenizerJSON.added_tokens = [];
  return TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
}

function decode(tok, ids) {
  if (ids.length === 0) return "";  // the reference refuses an empty list
  return tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
}

// One case per line keeps the golden files diffable.
function write(file, header, cases) {
  const lines = cases.map((c) => "  " + JSON.stringify(c));
  const head = JSON.stringify(header).slice(0, -1);
  fs.writeFileSync(file, head + ',\n "cases": [\n' + lines.join(",\n") + "\n ]}\n");
  console.log(`wrote ${file}: ${cases.length} cases`);
}

for (const name of ["llama3-hf", "mistral-hf"]) {
  const tok = load(name, false);
  const plain = load(name, true);
  const cases = strings.map((text) => {
    const ids = tok.encode(text, { add_special_tokens: false });
    const ids_plain = plain.encode(text, { add_special_tokens: false });
    return {
      text,
      ids,
      ids_plain,
      decoded: decode(tok, ids),
      decoded_plain: decode(plain, ids_plain),
    };
  });
  write(
    path.join(here, `${name}.json`),
    {
      tokenizer: name,
      reference: `@lenml/tokenizers ${version}, node ${process.version}`,
      generator: "tests/golden/tokenizers/gen_hf.mjs",
    },
    cases
  );
}

// Variants of the fixtures that exercise components the fixtures lack; test_tokenizer.cpp makes
// the same edits (TokenizerGolden.Variants). Only settings where the reference follows HF
// tokenizers' semantics are used (the JS Metaspace ignores "split", so split stays false).
const METASPACE = {
  type: "Metaspace", replacement: "\u2581", add_prefix_space: true, split: false,
};
const variants = {
  // GPT-2 style: ByteLevel with its own regex and a prefix space, over Llama 3's vocabulary.
  "llama3-hf+bytelevel_regex": ["llama3-hf", (j) => {
    j.pre_tokenizer = {
      type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true,
    };
  }],
  // Llama-2-style tokenizer.json: Metaspace pre-tokenizer and decoder instead of the normalizer.
  "mistral-hf+metaspace_always": ["mistral-hf", (j) => {
    j.normalizer = null;
    j.pre_tokenizer = { ...METASPACE, prepend_scheme: "always" };
    j.decoder = { type: "Sequence", decoders: [
      { ...METASPACE, prepend_scheme: "always" }, { type: "ByteFallback" }, { type: "Fuse" }] };
  }],
  "mistral-hf+metaspace_first": ["mistral-hf", (j) => {
    j.normalizer = null;
    j.pre_tokenizer = { ...METASPACE, prepend_scheme: "first" };
    j.decoder = { type: "Sequence", decoders: [
      { ...METASPACE, prepend_scheme: "first" }, { type: "ByteFallback" }, { type: "Fuse" }] };
  }],
};
const variantCases = [];
for (const [variant, [base, edit]] of Object.entries(variants)) {
  const dir = path.join(fixtures, "tokenizers", base);
  const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const tokenizerConfig = JSON.parse(
    fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")
  );
  edit(tokenizerJSON);
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
  for (const text of strings) {
    const ids = tok.encode(text, { add_special_tokens: false });
    variantCases.push({ variant, text, ids, decoded: decode(tok, ids) });
  }
}
write(
  path.join(here, "variants.json"),
  {
    reference: `@lenml/tokenizers ${version}, node ${process.version}`,
    generator: "tests/golden/tokenizers/gen_hf.mjs",
  },
  variantCases
);

write(
  path.join(here, "unicode_norm.json"),
  {
    reference:
      `String.prototype.normalize, node ${process.version} ` +
      `(ICU ${process.versions.icu}, Unicode ${process.versions.unicode})`,
    generator: "tests/golden/tokenizers/gen_hf.mjs",
  },
  strings.map((text) => ({ text, nfc: text.normalize("NFC"), nfd: text.normalize("NFD") }))
);
