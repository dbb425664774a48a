#!/usr/bin/env python3
"""Generate corpus.txt for ringtune's quickstart (deterministic).

Plain English lines from hand-written templates about weather, time, cities,
music, cooking, numbers, money, languages, home, news and everyday errands.
It is the text the quickstart trains its SentencePiece tokenizer on and the
text of stage-1 full fine-tuning, so it uses the vocabulary and the symbols
( ) = " _ * + - / : of the function-calling data (gen_function_calls.py).

Leak guard: the corpus never uses the user phrasing templates of
gen_function_calls.py, and the lines that show the call syntax
name(k="v") use TRAIN argument values only. Held-out test values appear only
in ordinary sentences (so the tokenizer knows the words), never in a call.

Python 3 standard library only. Re-running reproduces corpus.txt byte for byte.
Usage: python3 gen_corpus.py [--out PATH] [--bytes N]
"""
import argparse
import json
import os
import random
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_function_calls as fc  # noqa: E402

SEED = 1122
TARGET_BYTES = 230000

CITIES = fc.CITIES
LANGS = fc.LANGUAGES
ARTISTS = fc.ARTISTS
WORDS = fc.WORDS
TOPICS = fc.TOPICS
ROOMS = fc.ROOMS
CONTACTS = fc.CONTACTS
TASKS = fc.TASKS
TIMES = fc.TIMES
PHRASES = fc.PHRASES
CURRENCIES = fc.CURRENCIES

CONDITIONS = ["sunny", "cloudy", "rainy", "windy", "foggy", "snowy", "warm", "cold",
              "mild", "stormy", "dry", "humid"]
PARTS_OF_DAY = ["morning", "afternoon", "evening"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
INGREDIENTS = ["flour", "sugar", "butter", "rice", "salt", "onions", "garlic", "tomatoes",
               "carrots", "potatoes", "cheese", "eggs", "milk", "pepper", "beans", "lemon"]
DISHES = ["soup", "bread", "cake", "pasta", "stew", "salad", "curry", "pie", "omelette",
          "pancakes", "risotto", "porridge"]
PEOPLE = ["my brother", "my sister", "our neighbor", "the teacher", "my friend",
          "the old man", "a young woman", "the driver", "my aunt", "the doctor"]
OBJECTS = ["umbrella", "coat", "ticket", "phone", "key", "book", "lamp", "cup", "bag",
           "map", "radio", "window", "door", "clock", "song"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                "nine", "ten", "eleven", "twelve"]
WORD_KINDS = ["a noun", "an adjective", "an old word", "a long word", "a useful word",
              "a rare word"]
FEELINGS = ["happy", "tired", "calm", "busy", "curious", "hungry", "glad", "sleepy"]

# Everyday lines that cover the request vocabulary of the function-calling data
# (could, please, thanks, forecast, remind, exchange, headlines, dial, ...)
# without using its request templates.
EVERYDAY = [
    "Could {p} open the {o} for a moment? Thanks, that is kind.",
    "Please keep the {o} near the door so nobody can forget it.",
    "Hey, {p} said it was fine, so we went out.",
    "Um, I think {p} is late again, but that is ok.",
    "Ok, so the plan is simple: we leave at {t}.",
    "The forecast said it would be {c} all {d} in {city}.",
    "It kept raining in {city}, and right now the streets are still wet.",
    "The old clock in the hallway says {t}, but it is often wrong.",
    "How late is the shop open? Until {t}, I believe.",
    "Do you know if the bus is on time today?",
    "The race will start at {t} and the crowd will count down from ten.",
    "A timer on the oven rings when the time is over.",
    "{contact} wanted to remind everyone to {task} before {t}.",
    "At the bank you can exchange money, and the rate shows what it is worth.",
    "{p} wanted to change some coins into notes at the station.",
    "I will turn the page and say the word out loud.",
    "Put the {o} on the table and let me see it.",
    "Don't forget the {o} when you go out.",
    "Wake up early, get up slowly, and drink some water.",
    "I want to hear a new song, so I turn on the radio.",
    "What's the meaning of this sign? What does it mean? I want to know.",
    "To work out a sum, you can calculate it on paper or compute it with a machine.",
    "Look up the word in the dictionary and explain it to the class.",
    "Sit down, listen to the rain, and rest.",
    "The headlines this {d} were about {topic}, and people wanted to catch up.",
    "Read the latest news to me while I make breakfast.",
    "Switch the lamp off when you leave the {room}.",
    "Adjust the sound so the music is not too loud.",
    "Make the room quiet and the light soft.",
    "Phone {contact} and ring the bell twice, then dial the office.",
    "I want to talk to {contact} about the trip to {city}.",
    "Give me a minute; I need to check something.",
    "Show me the way to the station, if you can.",
    "Tell me a story about {city} in {month}.",
    "What does the sign say? It says the gate opens at {t}.",
    "Any news from {contact}? None yet.",
    "Is it {c} outside? Yes, very {c}.",
    "Can you play the piano? I can play a little.",
    "Start the car, and then set the radio to a quiet station.",
    "Let me know the time when you arrive.",
    "The current in the river was strong in {month}.",
    "Some of the music we were playing was old, and some was new.",
    "On a calculator, the short word calc means calculate.",
    "What's the plan for {d}? It's a quiet day.",
    "We used the word \"{word}\" in our story.",
    "Get the {o} for me, and take it to the {room}.",
    "Thank you for the help; I am {f} now.",
    "Where is the {o}? I need it in the {room}.",
    "I like this place; the view is lovely and the air is {c}.",
    "What is the time in {city} when it is noon here?",
    "Set the table for {n} people and light the candles.",
    "Turn left at the corner, then turn right at the school.",
]

SENTENCES = [
    # weather
    "The weather in {city} is {c} this {pd}.",
    "On {d}, {city} will be {c} with a light wind.",
    "It was {c} in {city} last {d}, so we stayed inside.",
    "In {month} the weather in {city} is often {c}.",
    "{p} says that {city} is {c} and grey in {month}.",
    "Take an umbrella if it is rainy in {city}.",
    "The temperature in {city} fell to {n} degrees at {t}.",
    # time
    "It is {t} in {city} now.",
    "The train to {city} leaves at {t} on {d}.",
    "We meet every {d} at {t} near the market.",
    "The shop opens at {t} and closes in the evening.",
    "{p} woke up at {t} and felt {f}.",
    "The meeting took {n} minutes, which was too long.",
    "{nw} minutes later the kettle was hot.",
    "My alarm rang at {t}, and I got up at once.",
    # cities and travel
    "{city} is a busy city with old streets and a big river.",
    "We flew from {city} to {city2} on a {c} {d}.",
    "{p} lived in {city} for {n} years.",
    "The bus from {city} to {city2} takes about {n} hours.",
    "In {city}, many people speak {lang} and English.",
    "The museum in {city} is closed on {d}.",
    # music
    "{artist} played a long concert in {city}.",
    "{p} listens to {artist} every {d} {pd}.",
    "The new album by {artist} is {c2}.",
    "We heard a song by {artist} on the radio.",
    "Everyone in the {room} was singing along to {artist}.",
    "My favorite band is {artist}, but my friend prefers {artist2}.",
    # cooking
    "Add {n} grams of {ing} to the {dish}.",
    "Bake the {dish} for {n} minutes until it is golden.",
    "{p} cooked {dish} with {ing} and {ing2}.",
    "Stir the {dish} slowly and add a little {ing}.",
    "For the {dish} you need {ing}, {ing2} and some salt.",
    "Let the {dish} rest for {nw} minutes before you serve it.",
    "The kitchen smelled of {ing} and fresh {dish}.",
    # numbers and arithmetic (with symbols)
    "{a} times {b} is {mul}.",
    "{a} plus {b} equals {add}.",
    "{a} minus {b} leaves {sub}.",
    "If you divide {ab} by {b} you get {a}.",
    "We can write {a} times {b} as {a}*{b}, and {a}*{b} = {mul}.",
    "The sum {a}+{b} = {add}, and the difference {a}-{b} = {sub}.",
    "{ab}/{b} = {a} is a simple division.",
    "Count from {nw} to {nw2} and then stop.",
    "The box holds {n} eggs, and we need {n2} more.",
    # money
    "The ticket cost {amount} {cur} at the station.",
    "{p} changed {amount} {cur} into {cur2} at the bank.",
    "The price in {cur} was higher than the price in {cur2}.",
    "A coffee in {city} costs about {n} {cur}.",
    "We saved {amount} {cur} for the trip.",
    # languages and phrases
    "In class we learned to say \"{phrase}\" in {lang}.",
    "She said \"{phrase}\" and smiled at us.",
    "The sign in {lang} meant \"{phrase}\".",
    "{p} is learning {lang} and can read simple books.",
    "\"{phrase},\" he said, and everyone laughed.",
    "My friend from {city} speaks {lang} at home.",
    # words and meanings
    "The word \"{word}\" is {wk}.",
    "The teacher wrote the word {word} on the board.",
    "A {word} moment can change a whole day.",
    "I looked up the meaning of {word} in the dictionary.",
    "Her story was {word2} and very clear.",
    # news
    "The {topic} news was short today.",
    "{p} reads about {topic} every {pd}.",
    "The radio had a long report on {topic}.",
    "There was good news in {topic} this {d}.",
    "The paper has a page for {topic} and a page for {topic2}.",
    # home and lights
    "The light in the {room} is {state}.",
    "{p} turned {state} the lamp in the {room}.",
    "We painted the {room} in {month}.",
    "The {room} is warm, but the {room2} is cold.",
    "Leave the lights {state} in the {room} at night.",
    "The cat sleeps in the {room} all {pd}.",
    # errands and reminders
    "Tomorrow I have to {task}.",
    "Do not forget to {task} before {t}.",
    "{contact} promised to {task} on {d}.",
    "After work I will {task} and then rest.",
    "My list says: {task}, {task2}, and sleep early.",
    # people and calls
    "{contact} called me at {t} to talk about {topic}.",
    "{contact} and {contact2} met in {city} last {month}.",
    "I sent a message to {contact} this {pd}.",
    "{contact} has a new phone and a new number.",
    "We visited {contact} in {city} on {d}.",
    # volume
    "The volume was at {vol}, which was too loud for the baby.",
    "Keep the music at {vol} so we can talk.",
]

# Lines that show the call syntax, with TRAIN values only.
CALL_LINES = [
    "An assistant can answer with one call, for example {call}.",
    "The call {call} is written with keyword arguments.",
    "A function call looks like this: {call}",
    "The helper wrote {call} and nothing else.",
    "Each answer is a single call such as {call}.",
]

FUNCTION_NOTES = [
    "The name play_music has an underscore in the middle.",
    "A call has a name, then ( and the arguments, then ).",
    "Strings go inside double quotes, like \"Berlin\", and numbers stay bare, like 5.",
    "Arguments are written as key=value and separated by a comma and a space.",
    "The function timecheck() takes no arguments at all.",
    "In a call, x=5 means the argument x has the value 5.",
    "A time is written as hours and minutes, like 07:30 or 18:00.",
    "The symbols * + - / stand for times, plus, minus and divided by.",
]


def train_values(pool, n_held):
    return pool[:-n_held] if n_held else pool


def example_call(rng):
    """A call with train argument values only."""
    skill = rng.choice(fc.SKILLS)
    kwargs = []
    chosen = {}
    for name, kind, pool, n_held in skill["args"]:
        if kind == "enum":
            options = [c for c in pool if c != chosen.get("from")] if name == "to" else pool
            v = rng.choice(options)
        elif kind == "expr":
            p = train_values(pool, n_held)
            v = "%d%s%d" % (rng.choice(p), rng.choice(fc.OPS)[1], rng.choice(p))
        else:
            v = rng.choice(train_values(pool, n_held))
        chosen[name] = v
        kwargs.append((name, v))
    return fc.format_call(skill["name"], kwargs)


def fill(template, rng):
    a = rng.randint(2, 20)
    b = rng.randint(2, 12)
    two = rng.sample
    c1, c2 = two(CITIES, 2)
    ar1, ar2 = two(ARTISTS, 2)
    i1, i2 = two(INGREDIENTS, 2)
    t1, t2 = two(TOPICS, 2)
    r1, r2 = two(ROOMS, 2)
    k1, k2 = two(CONTACTS, 2)
    s1, s2 = two(TASKS, 2)
    w1, w2 = two(WORDS, 2)
    cu1, cu2 = two(CURRENCIES, 2)
    nw1, nw2 = sorted(two(range(len(NUMBER_WORDS)), 2))
    fields = {
        "city": c1, "city2": c2, "c": rng.choice(CONDITIONS),
        "c2": rng.choice(["loud", "quiet", "slow", "fast", "sad", "bright"]),
        "pd": rng.choice(PARTS_OF_DAY), "d": rng.choice(DAYS), "month": rng.choice(MONTHS),
        "p": rng.choice(PEOPLE), "o": rng.choice(OBJECTS), "f": rng.choice(FEELINGS),
        "n": rng.randint(2, 60), "n2": rng.randint(2, 12),
        "nw": NUMBER_WORDS[nw1], "nw2": NUMBER_WORDS[nw2],
        "t": rng.choice(TIMES), "lang": rng.choice(LANGS),
        "artist": ar1, "artist2": ar2, "ing": i1, "ing2": i2, "dish": rng.choice(DISHES),
        "a": a, "b": b, "mul": a * b, "add": a + b, "sub": a - b, "ab": a * b,
        "amount": rng.choice(fc.CONVERT_AMOUNTS), "cur": cu1, "cur2": cu2,
        "phrase": rng.choice(PHRASES), "word": w1, "word2": w2, "wk": rng.choice(WORD_KINDS),
        "topic": t1, "topic2": t2, "room": r1, "room2": r2, "state": rng.choice(fc.STATES),
        "task": s1, "task2": s2, "contact": k1, "contact2": k2,
        "vol": rng.choice(fc.VOLUMES),
    }
    line = template.format(**fields)
    return line[0].upper() + line[1:]


def generate(target_bytes):
    rng = random.Random(SEED)
    lines = []
    seen = set()
    size = 0
    # The fixed notes first, once each.
    for note in FUNCTION_NOTES:
        lines.append(note)
        seen.add(note)
        size += len(note.encode("utf-8")) + 1
    misses = 0
    while size < target_bytes:
        r = rng.random()
        if r < 0.08:
            line = rng.choice(CALL_LINES).format(call=example_call(rng))
        elif r < 0.25:
            line = fill(rng.choice(EVERYDAY), rng)
        else:
            line = fill(rng.choice(SENTENCES), rng)
        if line in seen:
            misses += 1
            if misses > 100000:
                raise SystemExit("template space exhausted")
            continue
        seen.add(line)
        lines.append(line)
        size += len(line.encode("utf-8")) + 1
    return lines


# ---------------------------------------------------------------------------------------------
# Copy drills: extra lines for stage 1 only (stage1.jsonl), never in corpus.txt.
#
# A function call copies its argument values from the request (`dial Nora` -> `call(contact=
# "Nora")`), and the held-out test values never occur in a training call, so the fine-tuned model
# must have learned to *copy* a span from its context, not to pick one of the train values it has
# memorised. These drills give stage 1 that skill on hundreds of generic words and numbers: a
# value appears once in running text and once after `="` or `=`, the way it does in a call.
# They never contain a held-out test value (single words, phrases, ints, times: see
# held_out_values()), use no request template, and no function name.
DRILL_SEED = 1123
DRILL_LINES = 10000
DRILL_KEYS = ["name", "value", "item", "label", "note", "entry", "field", "tag", "text", "key"]
DRILL_TEMPLATES = [
    "Copy {v} into the form as {k}=\"{v}\".",
    "She said {v}, so the card reads {k}=\"{v}\".",
    "The box says {v}; in the file it is {k}=\"{v}\".",
    "Write {v} with quotes: \"{v}\".",
    "First {v} and then {w}, stored as {k}=\"{v}\" and {k2}=\"{w}\".",
    "He typed {v} and the record shows {k}=\"{v}\", {k2}=\"{w}\" after {w}.",
    "If the note says {v}, then {k}=\"{v}\".",
    "From {v} to {w}: {k}=\"{v}\", {k2}=\"{w}\".",
    "{v}: {k}=\"{v}\". {w}: {k2}=\"{w}\". {v}: {k}=\"{v}\".",
    "Say {v} twice: {v}, {v}. Then {w}: {k}=\"{w}\".",
    "List {v}, {w} as {k}=\"{v}\", {k2}=\"{w}\", then again {v} and {w}.",
]
DRILL_NUM_TEMPLATES = [
    "The number {n} is kept as {k}={n}.",
    "Count {n} and write {k}={n}.",
    "We had {n} and {m}, so {k}={n} and {k2}={m}.",
    "At {t} the log says {k}=\"{t}\".",
    "The sum {n}{op}{m} is written {k}=\"{n}{op}{m}\".",
    "{n} and {m} and {t}: {k}={n}, {k2}={m}, time=\"{t}\".",
    "Take {n} {op} {m}, that is {k}=\"{n}{op}{m}\", or {n}{op}{m}.",
]


def held_out_values():
    """Every test-only argument value of gen_function_calls.py, as strings."""
    out = set()
    for skill in fc.SKILLS:
        for name, kind, pool, n_held in skill["args"]:
            if kind != "enum" and n_held:
                out.update(str(v) for v in pool[-n_held:])
    return out


def drill_lines(corpus_lines, n):
    rng = random.Random(DRILL_SEED)
    held = held_out_values()
    words = sorted({w for line in corpus_lines for w in re.findall(r"[A-Za-z]+", line)} - held)
    held_ints = {int(v) for v in held if v.isdigit()}
    nums = [i for i in range(0, 1000) if i not in held_ints]
    times = ["%02d:%02d" % (h, m) for h in range(24) for m in range(0, 60, 5)]
    times = [t for t in times if t not in held]

    made_up = [w for w in fc.made_up_words(rng, 4000, False) if w not in held]

    def one_word():
        r = rng.random()
        if r < 0.45:
            return rng.choice(words)
        w = rng.choice(made_up)
        return w.capitalize() if r < 0.65 else w

    def value():
        return " ".join(one_word() for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])))

    def leaks(line):
        return any(re.search(r"(?<![A-Za-z0-9])" + re.escape(h) + r"(?![A-Za-z0-9])", line)
                   for h in held)

    out, seen = [], set()
    while len(out) < n:
        k, k2 = rng.sample(DRILL_KEYS, 2)
        if rng.random() < 0.3:
            line = rng.choice(DRILL_NUM_TEMPLATES).format(
                n=rng.choice(nums), m=rng.choice(nums), t=rng.choice(times),
                op=rng.choice("*+-/"), k=k, k2=k2)
        else:
            line = rng.choice(DRILL_TEMPLATES).format(v=value(), w=value(), k=k, k2=k2)
        if line in seen or leaks(line):
            continue
        seen.add(line)
        out.append(line)
    return out


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(here, "corpus.txt"))
    ap.add_argument("--jsonl", default=os.path.join(here, "stage1.jsonl"),
                    help="stage-1 training data: corpus lines, then copy drills, as {\"text\": ...}")
    ap.add_argument("--bytes", type=int, default=TARGET_BYTES)
    ap.add_argument("--drills", type=int, default=DRILL_LINES)
    args = ap.parse_args(argv)
    lines = generate(args.bytes)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    print("%s: %d lines, %d bytes" % (args.out, len(lines),
                                      sum(len(x.encode("utf-8")) + 1 for x in lines)))
    drills = drill_lines(lines, args.drills)
    with open(args.jsonl, "w", encoding="utf-8", newline="\n") as f:
        for line in lines + drills:
            f.write(json.dumps({"text": line}, ensure_ascii=False) + "\n")
    print("%s: %d corpus lines + %d copy drills" % (args.jsonl, len(lines), len(drills)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
