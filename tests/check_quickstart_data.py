#!/usr/bin/env python3
"""ctest quickstart_data: the committed quickstart data is what its generators make, and the
held-out split is held out.

1. gen_corpus.py and gen_function_calls.py, run into a scratch directory, reproduce
   corpus.txt, stage1.jsonl, train.jsonl, valid.jsonl and test.jsonl byte for byte.
2. Every test request opens with a test-only opener that no train or valid request uses, and no
   test request text occurs in train or valid.
3. Every open argument value of a test call is a test-only value of the generator, and none of
   them occurs as a value in any train or valid call or as a word sequence in any train or valid
   request; the stage-1 drills contain none of them.

Usage: check_quickstart_data.py SOURCE_DIR   (exit 0 ok, 1 with a message per failure)
"""
import filecmp
import json
import os
import re
import subprocess
import sys
import tempfile

CALL_VALUE = re.compile(r'([a-z_]+)=("([^"]*)"|-?\d+)')


def read_chats(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            msgs = json.loads(line)["messages"]
            out.append((msgs[0]["content"], msgs[1]["content"]))
    return out


def call_values(call):
    """(key, value text) of every argument of a canonical call."""
    return [(k, s if q.startswith('"') else q) for k, q, s in CALL_VALUE.findall(call)]


def contains_words(text, value):
    """value occurs in text as whole words (a number not as part of a time such as 13:30)."""
    return re.search(r"(?<![A-Za-z0-9:])" + re.escape(value) + r"(?![A-Za-z0-9:])", text) is not None


def main(argv):
    src = os.path.join(argv[1], "configs", "quickstart")
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        subprocess.run([sys.executable, os.path.join(src, "gen_corpus.py"),
                        "--out", os.path.join(tmp, "corpus.txt"),
                        "--jsonl", os.path.join(tmp, "stage1.jsonl")],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, os.path.join(src, "gen_function_calls.py"),
                        "--out-dir", tmp, "--quiet"], check=True, env=env)
        for name in ("corpus.txt", "stage1.jsonl", "train.jsonl", "valid.jsonl", "test.jsonl"):
            if not filecmp.cmp(os.path.join(src, name), os.path.join(tmp, name), shallow=False):
                failures.append("%s differs from what the generator makes now" % name)

    sys.path.insert(0, src)
    sys.dont_write_bytecode = True
    import gen_function_calls as fc

    train = read_chats(os.path.join(src, "train.jsonl"))
    valid = read_chats(os.path.join(src, "valid.jsonl"))
    test = read_chats(os.path.join(src, "test.jsonl"))
    seen = train + valid
    held = fc.held_out_strings()

    seen_texts = {u for u, _ in seen}
    for u, _ in test:
        if not any(u.startswith(p) for p in fc.TEST_PREFIXES):
            failures.append("test request without a test-only opener: %r" % u)
        if u in seen_texts:
            failures.append("test request also in train/valid: %r" % u)
    for u, _ in seen:
        if any(u.startswith(p) for p in fc.TEST_PREFIXES):
            failures.append("train/valid request with a test-only opener: %r" % u)

    enums = {v for s in fc.SKILLS for _, kind, pool, _ in s["args"] if kind == "enum" for v in pool}
    test_values = set()
    for u, call in test:
        for key, v in call_values(call):
            if key == "expression":
                operands = re.findall(r"\d+", v)
                if not all(o in held for o in operands):
                    failures.append("test expression with a train operand: %s" % call)
                test_values.update(operands)
            elif v not in enums:
                if v not in held:
                    failures.append("test value %r is not a test-only value (%s)" % (v, call))
                test_values.add(v)
    words_of_seen = " \n ".join(u for u, _ in seen)
    seen_call_values = {v for _, call in seen for _, v in call_values(call)}
    for v in sorted(test_values):
        if v in seen_call_values:
            failures.append("test value %r is a train/valid call value" % v)
        if contains_words(words_of_seen, v):
            failures.append("test value %r occurs in a train/valid request" % v)
    with open(os.path.join(src, "corpus.txt"), encoding="utf-8") as f:
        n_corpus = sum(1 for _ in f)
    with open(os.path.join(src, "stage1.jsonl"), encoding="utf-8") as f:
        drills = [json.loads(line)["text"] for line in f][n_corpus:]
    drill_text = " \n ".join(drills)
    for v in sorted(test_values):
        if contains_words(drill_text, v):
            failures.append("test value %r occurs in a stage-1 copy drill" % v)

    for msg in failures[:20]:
        print("quickstart_data: " + msg)
    if failures:
        print("quickstart_data: %d failure(s)" % len(failures))
        return 1
    print("quickstart_data: generators reproduce the 5 files; %d test samples, %d test-only values "
          "checked against %d train/valid samples and %d drills"
          % (len(test), len(test_values), len(seen), len(drills)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
