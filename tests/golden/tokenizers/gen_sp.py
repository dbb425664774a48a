#!/usr/bin/python3
"""Writes llama2-sp.json: golden token ids of the Llama 2 SentencePiece model for every string of
strings.json, from sentencepiece's own Python binding (Debian's python3-sentencepiece).
See tests/golden/README.md for how to run it.

Per string:
  ids_plain      sp.encode(text) — the reference: no BOS/EOS, control-piece spellings are text;
  ids            text cut at the spellings of control/unknown pieces (<s>, </s>, <unk>), which
                 become their ids, and every piece between encoded with sp.encode (what ringtune
                 does inside allow_special segments);
  decoded_plain  sp.decode(ids_plain).
"""
import json
import os
import re
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.environ.get("RINGTUNE_FIXTURES",
                          os.path.normpath(os.path.join(HERE, "../../../../shared/fixtures")))


def main():
    model = os.path.join(FIXTURES, "tokenizers", "llama2-sp", "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=model)
    specials = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())
                if sp.is_control(i) or sp.is_unknown(i)}
    # Longest spelling first, so that the leftmost match is also the longest.
    pattern = re.compile("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)))
    strings = json.load(open(os.path.join(HERE, "strings.json"), encoding="utf-8"))
    cases = []
    for text in strings:
        ids_plain = sp.encode(text)
        ids = []
        pos = 0
        for m in pattern.finditer(text):
            if m.start() > pos:
                ids.extend(sp.encode(text[pos:m.start()]))
            ids.append(specials[m.group(0)])
            pos = m.end()
        if pos < len(text):
            ids.extend(sp.encode(text[pos:]))
        cases.append({"text": text, "ids": ids, "ids_plain": ids_plain,
                      "decoded_plain": sp.decode(ids_plain)})
    header = {"tokenizer": "llama2-sp",
              "reference": "sentencepiece %s (Python binding), Python %s" % (
                  spm.__version__, sys.version.split()[0]),
              "generator": "tests/golden/tokenizers/gen_sp.py"}
    out = os.path.join(HERE, "llama2-sp.json")
    with open(out, "w", encoding="utf-8") as f:
        f.write(json.dumps(header)[:-1] + ',\n "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c) for c in cases))
        f.write("\n ]}\n")
    print("wrote %s: %d cases" % (out, len(cases)))


if __name__ == "__main__":
    main()
