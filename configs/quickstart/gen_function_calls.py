#!/usr/bin/env python3
"""Generate ringtune's quickstart function-calling chat data (deterministic).

Each sample is one line of OpenAI-format chat JSON:
  {"messages": [{"role": "user", "content": "..."},
                {"role": "assistant", "content": "weather(location=\"Berlin\")"}]}
The assistant answer is exactly one call in the canonical form produced by
format_call(): name(k1=v1, k2=v2) with keyword arguments in the skill's fixed
order, strings double-quoted, ints bare, ", " between arguments.

Splits (written next to this script unless --out-dir is given):
  train.jsonl  train fillers x all templates x train values
  valid.jsonl  the same distribution, user texts not in train
  test.jsonl   held-out opening words x all templates x held-out values: every
               request is a phrasing never seen in training, with an argument
               value never seen in training (see README.md)
Train values come mostly from large generated pools (made-up names and words,
phrases of them, wide number ranges), so the model must learn to copy a value
from the request rather than recall one of a few; no held-out value is in any
train pool.

Python 3 standard library only. Re-running reproduces the files byte for byte.
Usage: python3 gen_function_calls.py [--out-dir DIR] [--quiet]
"""
import argparse
import json
import os
import random
import sys

SEED = 20261122
TRAIN_PER_SKILL = 1000
VALID_TOTAL = 100
TEST_PER_SKILL = 15

# Filler words wrapped around every template. Train requests open with many different words
# (so that a model learns to skip them); test requests open with words that no train or valid
# request has.
PREFIXES = ["", "", "", "hey, ", "ok, ", "um, ", "so, ", "hello, ", "please, ", "yo, ", "oh, ",
            "excuse me, ", "sorry, ", "listen, ", "now, ", "okay so, ", "hmm, ", "say, ",
            "one thing, ", "also, ", "next, ", "good morning, ", "assistant, ", "hey there, ",
            "just a sec, ", "uh, "]
SUFFIXES = ["", " please", ", thanks", " if you can"]
TEST_PREFIXES = ["alright, ", "hi, ", "quick one, ", "well, "]

CITIES = ["Berlin", "Paris", "London", "Madrid", "Rome", "Vienna", "Oslo",
          "Dublin", "Lisbon", "Prague", "Warsaw", "Athens",
          # held out for test:
          "Helsinki", "Zurich", "Budapest", "Amsterdam"]
TIMER_MINUTES = [1, 2, 3, 5, 10, 12, 15, 20, 25, 30, 45, 60,
                 # held out:
                 7, 18, 35, 55]
CONVERT_AMOUNTS = [10, 20, 25, 40, 50, 75, 100, 150, 200, 250, 300, 500,
                   # held out:
                   65, 90, 120, 400]
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD"]  # closed enum
PHRASES = ["good morning", "thank you", "see you soon", "where is the station",
           "how much is this", "I am hungry", "the bill please", "good night",
           "nice to meet you", "I need a taxi", "what time is it", "happy birthday",
           # held out:
           "the water is cold", "open the window", "I like this song", "call me later"]
LANGUAGES = ["French", "German", "Spanish", "Italian", "Dutch", "Swedish",
             "Polish", "Greek", "Turkish",
             # held out:
             "Japanese", "Portuguese", "Korean"]
TASKS = ["call mom", "buy milk", "water the plants", "pay rent", "walk the dog",
         "take my pills", "send the report", "book a table", "clean the kitchen",
         "pick up Anna", "feed the cat", "charge my phone",
         # held out:
         "return the books", "renew my passport", "bake bread", "check the mail"]
# Int pools are chosen so that no held-out int is a train value of any int
# argument. One pool of HH:MM times; alarm and reminder share the train/test split.
TIMES = ["06:00", "06:30", "07:00", "07:15", "08:00", "09:45", "12:00", "13:30",
         "17:00", "18:00", "20:15", "21:00",
         # held out:
         "05:45", "10:20", "16:40", "22:30"]
ARTISTS = ["Queen", "ABBA", "Adele", "Coldplay", "Madonna", "Shakira", "Metallica",
           "Beyonce", "Nirvana", "Radiohead", "Rihanna", "Eminem",
           # held out:
           "Oasis", "Bjork", "Sting", "Drake"]
OPERANDS = [2, 3, 4, 5, 6, 14, 8, 9, 10, 11, 12, 15, 16, 20, 24, 25, 30, 36, 48, 64, 100,
            # held out (every test expression uses two of these):
            13, 17, 19, 23, 27, 31, 42]
OPS = [("times", "*"), ("plus", "+"), ("minus", "-"), ("divided by", "/")]  # closed enum
WORDS = ["serendipity", "ephemeral", "ubiquitous", "melancholy", "resilient",
         "eloquent", "candid", "frugal", "vivid", "nostalgia", "paradox", "whimsical",
         # held out:
         "benevolent", "tenacious", "gregarious", "meticulous"]
TOPICS = ["sports", "politics", "science", "business", "technology", "health",
          "travel", "music", "weather",
          # held out:
          "movies", "education", "space"]
ROOMS = ["kitchen", "bedroom", "living room", "bathroom", "hallway", "office",
         "garage", "dining room", "basement",
         # held out:
         "attic", "nursery", "porch"]
STATES = ["on", "off"]  # closed enum
VOLUMES = [0, 5, 10, 20, 25, 30, 40, 50, 60, 70, 80, 100,
           # held out:
           35, 65, 85, 90]
CONTACTS = ["Anna", "Tom", "Maria", "David", "Lucy", "Peter", "Sara", "James",
            "Emma", "Oliver", "Sophie", "Daniel",
            # held out:
            "Nora", "Victor", "Irene", "Hugo"]


def split_pool(pool, n_test):
    """Last n_test entries are held out for test."""
    return pool[:-n_test], pool[-n_test:]


# arg spec: (name, kind, pool, n_held_out)
#   kind "str"/"int": open argument, value copied from the user text; the last
#                     n_held_out pool entries appear only in test.
#   kind "enum":      closed set mapped from words; shared by all splits.
# Templates: the last quarter (2 of 8, 3 of 12) appear only in test.
SKILLS = [
    {"name": "weather",
     "args": [("location", "str", CITIES, 4)],
     "templates": [
         "what's the weather in {location}?",
         "weather {location}",
         "could you please tell me the weather in {location}?",
         "tell me the forecast for {location}.",
         "is it raining in {location} today?",
         "I want to know the weather in {location}.",
         "how cold is it in {location} right now?",
         "show me the weather for {location}.",
     ]},
    {"name": "timecheck",
     "args": [],
     "templates": [
         "what time is it?",
         "time",
         "could you please tell me the time?",
         "tell me the current time.",
         "do you know what time it is?",
         "check the clock.",
         "what's the time right now?",
         "I need to know the time.",
         "give me the time.",
         "how late is it?",
         "what does the clock say?",
         "show me the current time.",
     ]},
    {"name": "timer",
     "args": [("minutes", "int", TIMER_MINUTES, 4)],
     "templates": [
         "set a timer for {minutes} minutes.",
         "timer {minutes} minutes",
         "could you please start a {minutes} minute timer?",
         "start a timer for {minutes} minutes.",
         "can you time {minutes} minutes for me?",
         "I need a timer of {minutes} minutes.",
         "count down {minutes} minutes.",
         "remind me when {minutes} minutes are up.",
     ]},
    {"name": "convert",
     "args": [("amount", "int", CONVERT_AMOUNTS, 4),
              ("from", "enum", CURRENCIES, 0),
              ("to", "enum", CURRENCIES, 0)],
     "templates": [
         "convert {amount} {from} to {to}.",
         "{amount} {from} in {to}",
         "could you please convert {amount} {from} into {to}?",
         "how much is {amount} {from} in {to}?",
         "change {amount} {from} to {to}.",
         "I want to turn {amount} {from} into {to}.",
         "what are {amount} {from} worth in {to}?",
         "exchange {amount} {from} for {to}.",
     ]},
    {"name": "translate",
     "args": [("text", "str", PHRASES, 4),
              ("language", "str", LANGUAGES, 3)],
     "templates": [
         "translate \"{text}\" to {language}.",
         "{language}: {text}",
         "could you please translate \"{text}\" into {language}?",
         "how do you say \"{text}\" in {language}?",
         "say \"{text}\" in {language}.",
         "I need \"{text}\" in {language}.",
         "what is \"{text}\" in {language}?",
         "put \"{text}\" into {language}.",
     ]},
    {"name": "reminder",
     "args": [("task", "str", TASKS, 4),
              ("time", "str", TIMES, 4)],
     "templates": [
         "remind me to {task} at {time}.",
         "reminder {task} {time}",
         "could you please remind me to {task} at {time}?",
         "at {time} remind me to {task}.",
         "can you remind me at {time} to {task}?",
         "I need a reminder to {task} at {time}.",
         "don't let me forget to {task} at {time}.",
         "set a reminder at {time} to {task}.",
     ]},
    {"name": "play_music",
     "args": [("artist", "str", ARTISTS, 4)],
     "templates": [
         "play some {artist}.",
         "play {artist}",
         "could you please play music by {artist}?",
         "put on {artist}.",
         "can you play a song by {artist}?",
         "I want to hear {artist}.",
         "start playing {artist}.",
         "let me listen to {artist}.",
     ]},
    {"name": "calculate",
     "args": [("expression", "expr", OPERANDS, 7)],
     "templates": [
         "what is {a} {op} {b}?",
         "calc {a} {op} {b}",
         "could you please calculate {a} {op} {b}?",
         "work out {a} {op} {b}.",
         "how much is {a} {op} {b}?",
         "I need {a} {op} {b}.",
         "compute {a} {op} {b}.",
         "tell me {a} {op} {b}.",
     ]},
    {"name": "define",
     "args": [("word", "str", WORDS, 4)],
     "templates": [
         "define {word}.",
         "define {word}",
         "could you please define the word {word}?",
         "what does {word} mean?",
         "give me the meaning of {word}.",
         "I don't know the word {word}.",
         "explain the word {word}.",
         "look up {word}.",
     ]},
    {"name": "news",
     "args": [("topic", "str", TOPICS, 3)],
     "templates": [
         "show me the {topic} news.",
         "news {topic}",
         "could you please give me the latest {topic} news?",
         "what's new in {topic}?",
         "any {topic} headlines today?",
         "I want the {topic} news.",
         "read me the news about {topic}.",
         "catch me up on {topic}.",
     ]},
    {"name": "alarm",
     "args": [("time", "str", TIMES, 4)],
     "templates": [
         "set an alarm for {time}.",
         "alarm {time}",
         "could you please wake me up at {time}?",
         "wake me at {time}.",
         "can you set my alarm to {time}?",
         "I need an alarm at {time}.",
         "get me up at {time}.",
         "put an alarm on {time}.",
     ]},
    {"name": "lights",
     "args": [("room", "str", ROOMS, 3),
              ("state", "enum", STATES, 0)],
     "templates": [
         "turn {state} the lights in the {room}.",
         "{room} lights {state}",
         "could you please switch {state} the {room} lights?",
         "switch the {room} lights {state}.",
         "can you turn the {room} light {state}?",
         "I want the {room} lights {state}.",
         "lights {state} in the {room}.",
         "put the {room} lights {state}.",
     ]},
    {"name": "volume",
     "args": [("level", "int", VOLUMES, 4)],
     "templates": [
         "set the volume to {level}.",
         "volume {level}",
         "could you please change the volume to {level}?",
         "make the volume {level}.",
         "can you put the volume at {level}?",
         "I want the volume at {level}.",
         "turn the volume to {level}.",
         "adjust the sound to {level}.",
     ]},
    {"name": "call",
     "args": [("contact", "str", CONTACTS, 4)],
     "templates": [
         "call {contact}.",
         "call {contact}",
         "could you please phone {contact}?",
         "ring {contact}.",
         "can you call {contact} for me?",
         "I want to talk to {contact}.",
         "dial {contact}.",
         "get {contact} on the phone.",
     ]},
]


def format_value(v):
    if isinstance(v, int):
        return str(v)
    assert '"' not in v and "\\" not in v, v
    return '"' + v + '"'


def format_call(name, kwargs):
    """Canonical call text; kwargs is a list of (key, value) in fixed order."""
    return name + "(" + ", ".join(k + "=" + format_value(v) for k, v in kwargs) + ")"


def held_out_strings():
    """Every held-out value as text (open arguments only)."""
    out = set()
    for skill in SKILLS:
        for name, kind, pool, n_held in skill["args"]:
            if kind != "enum" and n_held:
                out.update(str(v) for v in split_pool(pool, n_held)[1])
    return out


# Sound inventory of the made-up words: every letter of the alphabet and the common English
# letter groups, so that train values use the same letters and letter groups (and so the same
# tokenizer pieces) as real words: a model that has only ever copied "Bamolus"-like values copies
# "Hugo" as "Cugo" and "meticulous" as "meticulke".
ONSETS = (list("bcdfghjklmnprstvwyz") +
          ["bl", "br", "ch", "cl", "cr", "dr", "fl", "fr", "gl", "gr", "kn", "ph", "pl", "pr",
           "qu", "sc", "sh", "sk", "sl", "sm", "sn", "sp", "st", "str", "sw", "th", "tr", "wh", ""])
VOWELS = (list("aeiouy") + ["ai", "au", "ea", "ee", "ei", "eu", "ie", "io", "oa", "oi", "oo",
                             "ou", "ue", "ew", "ay", "ey", "ow"])
CODAS = ["", "", "", "b", "c", "ck", "d", "f", "ff", "g", "k", "ks", "l", "ll", "m", "n", "nd",
         "ng", "nk", "nt", "p", "r", "rd", "rk", "rn", "rs", "rt", "s", "sh", "ss", "st", "t",
         "th", "tch", "ts", "x", "z", "ght", "ous", "ion", "er", "ry", "ly", "ed", "ing"]


def distinct_words(n, make, capitalized, max_len):
    """n distinct strings of 2 to max_len letters drawn with make(), capitalised or not."""
    out = []
    seen = set()
    while len(out) < n:
        w = make()
        if capitalized:
            w = w.capitalize()
        if 2 <= len(w) <= max_len and w not in seen:
            seen.add(w)
            out.append(w)
    return out


def made_up_words(rng, n, capitalized):
    """n distinct pronounceable made-up words of 1 to 3 syllables and 2 to 10 letters."""
    def make():
        return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
                       for _ in range(rng.choice((1, 2, 2, 3))))
    return distinct_words(n, make, capitalized, 10)


def scrambled_words(rng, n, capitalized):
    """n distinct strings of 2 to 10 letters made of 2 to 5 letter groups of the sound inventory
    in random order: unpredictable letter by letter, so that a model can only get them right by
    copying them from the request, yet made of the letter groups of real words."""
    groups = sorted({g for g in ONSETS + VOWELS + CODAS if g})
    return distinct_words(
        n, lambda: "".join(rng.choice(groups) for _ in range(rng.choice((2, 3, 3, 4, 5)))),
        capitalized, 10)


def corpus_words():
    """The words of the quickstart corpus (gen_corpus.py, generated in memory), minus every word
    of a held-out value."""
    import re
    import gen_corpus  # imports this module; only its generator is used here
    held = {w.lower() for v in held_out_strings() for w in v.split()}
    words = {w for line in gen_corpus.generate(gen_corpus.TARGET_BYTES)
             for w in re.findall(r"[A-Za-z]+", line)}
    return sorted(w for w in words if w.lower() not in held)


def fragment_words(rng, n, capitalized, source):
    """n distinct strings of 2 to 12 letters glued from 2 to 4 random pieces (2 to 4 letters) of
    random source words: unpredictable letter by letter, so that a model can only get them right
    by copying them from the request, yet made of the letter groups of real words, so that every
    tokenizer piece of the corpus occurs in some train value."""
    def piece():
        w = rng.choice(source).lower()
        k = min(len(w), rng.choice((2, 3, 3, 4)))
        i = rng.randrange(len(w) - k + 1)
        return w[i:i + k]
    return distinct_words(
        n, lambda: "".join(piece() for _ in range(rng.choice((2, 2, 3, 4)))), capitalized, 12)


# Large train-only pools for the open arguments: made-up strings (capitalised for names, places,
# artists and languages), phrases of 2 to 4 corpus or made-up words, wide int ranges and every
# 5-minute time, minus every held-out value (and no word of a held-out value is a corpus word
# here). Built once, from their own seed.
def extended_pools():
    rng = random.Random(SEED + 1)
    held = held_out_strings()
    held_ints = {int(v) for v in held if v.isdigit()}
    source = corpus_words()
    names = scrambled_words(rng, 1500, True) + fragment_words(rng, 1500, True, source)
    lower = scrambled_words(rng, 1500, False) + fragment_words(rng, 1500, False, source)

    plain = [w.lower() for w in source if len(w) <= 8]

    def phrases():  # words of the corpus (short common ones too: "a", "to", "at") and made-up ones
        return [" ".join(rng.choice(plain) if rng.random() < 0.5 else rng.choice(lower)
                         for _ in range(rng.choice((2, 3, 4))))
                for _ in range(3000)]

    def ints(lo, hi):
        return [i for i in range(lo, hi + 1) if i not in held_ints]

    pools = {
        "location": names, "contact": names, "artist": names, "language": names,
        "word": lower, "topic": lower, "room": lower,
        "text": phrases(), "task": phrases(),
        "minutes": ints(1, 999), "amount": ints(1, 9999), "level": ints(0, 100),
        "expression": ints(2, 999),
        "time": ["%02d:%02d" % (h, m) for h in range(24) for m in range(0, 60, 5)],
    }
    for k in pools:
        pools[k] = [v for v in pools[k] if str(v) not in held]
    return pools


EXTENDED = None


def apply_fillers(body, prefix, suffix):
    if "please" in body and "please" in suffix:
        suffix = ""
    end = ""
    if body and body[-1] in ".?!":
        body, end = body[:-1], body[-1]
    return prefix + body + suffix + end


def draw_sample(skill, split, rng):
    """Return (user_text, call_text) drawn from the given split's pools."""
    global EXTENDED
    if EXTENDED is None:
        EXTENDED = extended_pools()
    template = rng.choice(skill["templates"])
    fields = {}
    kwargs = []
    for name, kind, pool, n_held in skill["args"]:
        if kind == "enum":
            if name == "to":  # convert: target currency differs from source
                value = rng.choice([c for c in pool if c != fields["from"]])
            else:
                value = rng.choice(pool)
            fields[name] = value
            kwargs.append((name, value))
        elif kind == "expr":
            train_p, test_p = split_pool(pool, n_held)
            p = test_p if split == "test" else train_p
            if split != "test" and rng.random() < 0.8:
                p = EXTENDED[name]
            a, b = rng.choice(p), rng.choice(p)
            word, sym = rng.choice(OPS)
            fields.update(a=a, b=b, op=word)
            kwargs.append((name, "%d%s%d" % (a, sym, b)))
        else:
            train_p, test_p = split_pool(pool, n_held)
            p = test_p if split == "test" else train_p
            if split != "test" and rng.random() < 0.8:
                p = EXTENDED[name]
            value = rng.choice(p)
            fields[name] = value
            kwargs.append((name, value))
    body = template.format(**fields)
    prefixes = TEST_PREFIXES if split == "test" else PREFIXES
    text = apply_fillers(body, rng.choice(prefixes), rng.choice(SUFFIXES))
    return text, format_call(skill["name"], kwargs)


def draw_unique(skill, split, n, rng, seen):
    out = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200000:
            raise SystemExit("cannot draw %d unique %s samples for %s" % (n, split, skill["name"]))
        text, call = draw_sample(skill, split, rng)
        if text in seen:
            continue
        seen.add(text)
        out.append((text, call))
    return out


def draw_train(skill, n, rng, seen):
    """n train samples whose texts are not in `seen` (valid); unique while the
    skill has enough distinct texts (one without arguments has a few hundred),
    repeating train texts after that."""
    out = []
    own = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        text, call = draw_sample(skill, "train", rng)
        if text in seen and text not in own:
            continue
        if text in own and attempts < 20 * n:
            continue
        own.add(text)
        out.append((text, call))
    seen.update(own)
    return out


def to_line(text, call):
    msg = {"messages": [{"role": "user", "content": text},
                        {"role": "assistant", "content": call}]}
    return json.dumps(msg, ensure_ascii=False, separators=(", ", ": "))


def generate():
    # The test split has its own random stream: changing the train pools or fillers does not
    # change the test samples. (Test texts cannot collide with train or valid texts: only test
    # requests open with TEST_PREFIXES.)
    rng = random.Random(SEED)
    test_rng = random.Random(SEED + 2)
    n_skills = len(SKILLS)
    valid_counts = [VALID_TOTAL // n_skills + (1 if i < VALID_TOTAL % n_skills else 0)
                    for i in range(n_skills)]
    splits = {"train": [], "valid": [], "test": []}
    per_skill = []
    for skill, n_valid in zip(SKILLS, valid_counts):
        seen = set()
        valid = draw_unique(skill, "train", n_valid, rng, seen)
        train = draw_train(skill, TRAIN_PER_SKILL, rng, seen)
        test = draw_unique(skill, "test", TEST_PER_SKILL, test_rng, seen)
        splits["train"] += [(skill["name"],) + s for s in train]
        splits["valid"] += [(skill["name"],) + s for s in valid]
        splits["test"] += [(skill["name"],) + s for s in test]
        per_skill.append((skill["name"], TRAIN_PER_SKILL, n_valid, TEST_PER_SKILL))
    rng.shuffle(splits["train"])
    rng.shuffle(splits["valid"])
    test_rng.shuffle(splits["test"])
    return splits, per_skill


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    splits, per_skill = generate()
    os.makedirs(args.out_dir, exist_ok=True)
    for name in ("train", "valid", "test"):
        path = os.path.join(args.out_dir, name + ".jsonl")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for _, text, call in splits[name]:
                f.write(to_line(text, call) + "\n")
    if not args.quiet:
        print("%-12s %6s %6s %6s" % ("skill", "train", "valid", "test"))
        for name, a, b, c in per_skill:
            print("%-12s %6d %6d %6d" % (name, a, b, c))
        print("%-12s %6d %6d %6d" % ("total", len(splits["train"]),
                                     len(splits["valid"]), len(splits["test"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
