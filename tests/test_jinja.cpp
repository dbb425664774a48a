// The template engine (src/template/) against Python's jinja2 configured as transformers configures
// it (tests/golden/chat_templates/gen_jinja.py): one small template per construct
// (engine_cases.json), and 12 real models' chat templates x 8 conversations x both
// add_generation_prompt values (real_templates.json), byte for byte. Plus the origins of output
// bytes, errors with line:column, and the limits that stop hostile templates.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "src/template/template.h"
#include "test_util.h"

using namespace ringtune::jinja;
using namespace ringtune_test;
using ojson = nlohmann::ordered_json;

namespace {

Value from_json(const ojson& j, int32_t origin = kTemplateOrigin) {
  if (j.is_null()) return Value::none();
  if (j.is_boolean()) return Value(j.get<bool>());
  if (j.is_number_integer()) return Value(j.get<int64_t>());
  if (j.is_number_float()) return Value(j.get<double>());
  if (j.is_string()) return Value(TString(j.get<std::string>(), origin));
  if (j.is_array()) {
    List l;
    for (const auto& x : j) l.push_back(from_json(x, origin));
    return Value(std::move(l));
  }
  Dict d;
  for (const auto& [k, v] : j.items()) d.emplace_back(k, from_json(v, origin));
  return Value(std::move(d));
}

std::string render(const std::string& source, Dict context) {
  context.emplace_back("strftime_now", fixed_strftime_now());
  return Template::parse(source).render(context).text.str();
}

ojson load(const std::string& name) {
  return ojson::parse(read_file(golden_dir() + "/chat_templates/" + name));
}

}  // namespace

TEST(Jinja, EveryConstructMatchesJinja2) {
  const ojson golden = load("engine_cases.json");
  int matched = 0, total = 0;
  for (const auto& c : golden["cases"]) {
    ++total;
    const std::string name = c["name"], source = c["template"];
    const Dict ctx = from_json(c["context"]).as_dict();
    if (!c["output"].is_null()) {
      try {
        const std::string got = render(source, ctx);
        EXPECT_EQ(got, c["output"].get<std::string>()) << name << ": " << source;
        matched += got == c["output"].get<std::string>();
      } catch (const TemplateError& e) {
        ADD_FAILURE() << name << ": " << e.what() << " at " << e.where().line << ":" << e.where().column << " in "
                      << source;
      }
    } else {
      const std::string expected = c["error"];
      try {
        const std::string got = render(source, ctx);
        ADD_FAILURE() << name << ": jinja2 raised " << expected << ", ringtune rendered " << got;
      } catch (const TemplateRaised& e) {
        EXPECT_EQ("TemplateError: " + std::string(e.what()), expected) << name;
        ++matched;
      } catch (const TemplateError& e) {
        EXPECT_NE(expected.find("Error"), std::string::npos) << name;
        ++matched;
      }
    }
  }
  std::cout << "[ jinja2 constructs ] " << matched << "/" << total << " as jinja2 renders them\n";
}

TEST(Jinja, RealChatTemplatesMatchJinja2ByteForByte) {
  const ojson golden = load("real_templates.json");
  const ojson& conversations = golden["conversations"];
  int identical = 0, total = 0;
  for (const auto& t : golden["templates"]) {
    const std::string name = t["name"];
    Template tmpl;
    try {
      tmpl = Template::parse(t["chat_template"].get<std::string>());
    } catch (const TemplateError& e) {
      ADD_FAILURE() << name << ": " << e.what() << " at " << e.where().line << ":" << e.where().column;
      continue;
    }
    int ok = 0;
    for (const auto& c : t["cases"]) {
      ++total;
      List messages;
      int32_t k = 0;
      for (const auto& m : conversations[c["conversation"].get<std::string>()]) messages.push_back(from_json(m, k++));
      Dict ctx = {{"messages", Value(std::move(messages))}, {"tools", Value::none()}, {"documents", Value::none()},
                  {"add_generation_prompt", Value(c["add_generation_prompt"].get<bool>())},
                  {"strftime_now", fixed_strftime_now()}};
      for (const auto& [key, v] : t["special_tokens"].items()) ctx.emplace_back(key, from_json(v));
      const std::string what = name + " / " + c["conversation"].get<std::string>() +
                               (c["add_generation_prompt"].get<bool>() ? " / generation prompt" : "");
      try {
        const std::string got = tmpl.render(ctx).text.str();
        if (c["output"].is_null()) {
          ADD_FAILURE() << what << ": jinja2 raised " << c["error"] << ", ringtune rendered " << got;
        } else {
          EXPECT_EQ(got, c["output"].get<std::string>()) << what;
          ok += got == c["output"].get<std::string>();
        }
      } catch (const TemplateError& e) {
        if (c["output"].is_null()) ++ok;
        else ADD_FAILURE() << what << ": " << e.what() << " at " << e.where().line << ":" << e.where().column;
      }
    }
    identical += ok;
    std::cout << "[ " << name << " ] " << ok << "/" << t["cases"].size() << " identical (" << t["source"].get<std::string>()
              << ")\n";
  }
  std::cout << "[ real chat templates ] " << identical << "/" << total << " renderings byte-identical to jinja2\n";
  EXPECT_EQ(identical, total);
}

TEST(Jinja, HostileTemplatesStopWithAClearError) {
  struct Case {
    std::string source, expected;
  };
  const std::vector<Case> cases = {
      {"{% for i in range(100000000) %}x{% endfor %}", "range() too large"},
      {"{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(10) %}{% endfor %}{% endfor %}{% endfor %}",
       "loop iterations"},
      {"{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "macro calls nested more than"},
      {"{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "output exceeds"},
      {"{{ 'x' * 1000000000 }}", "repetition too large"},
      // Intermediate strings (found by fuzzing: these allocated gigabytes, or looped for ever when
      // the repetition's size overflowed, before the output limit could see them).
      {"{{ 'ab' * 9223372036854775807 }}", "repetition too large"},
      {"{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
       "string too large"},
      {"{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "string too large"},
      {"{{ 'a\nb'|indent(1000000000) }}", "string too large"},
      {"{{ ('x' * 10000000)|replace('', 'yyyyyyyyyy') }}", "string too large"},
      {"{{ ('x' * 60000000)|replace('x', 'yy') }}", "string too large"},
      {"{{ ['x' * 40000000, 'y' * 40000000]|join }}", "string too large"},
      {"{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = '{0}{0}'.format(ns.s) %}{% endfor %}",
       "string too large"},
      {"{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = '%s%s' % (ns.s, ns.s) %}{% endfor %}",
       "string too large"},
      {"{{ ([('x' * 60000000)] * 100)|tojson }}", "string too large"},
      {"{{ ([('x' * 60000000)] * 100) ~ '' }}", "string too large"},
      {"{{ {'a': [1]}|tojson(indent=100000) }}", "tojson indent too large"},
      {"{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}", "nested too deeply"},
      {std::string(300 * 10, ' ') + [] {
         std::string s;
         for (int i = 0; i < 300; ++i) s += "{% if true %}";
         return s;
       }(),
       "nested too deeply"},
  };
  for (const auto& c : cases) {
    try {
      Template::parse(c.source).render({});
      ADD_FAILURE() << "rendered: " << c.source.substr(0, 80);
    } catch (const TemplateError& e) {
      EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos) << e.what() << " for " << c.source.substr(0, 80);
    }
  }
}

TEST(Jinja, OutputBytesKeepTheirOrigin) {
  // Message k's content keeps origin k through trim, slicing, concatenation, replace and tojson.
  Dict ctx = {{"a", Value(TString("  Hi there  ", 0))}, {"b", Value(TString("x\"y", 1))}};
  const RenderResult r = Template::parse("[{{ a | trim }}|{{ a[2:4] ~ '-' ~ b }}|{{ b | tojson }}|{{ a.replace('Hi', 'Yo') | trim }}]")
                             .render(ctx);
  const TString& t = r.text;
  EXPECT_EQ(t.str(), "[Hi there|Hi-x\"y|\"x\\\"y\"|Yo there]");
  std::string origins;
  for (size_t i = 0; i < t.size(); ++i) origins += t.origin_at(i) < 0 ? '.' : static_cast<char>('0' + t.origin_at(i));
  EXPECT_EQ(origins, ".00000000.00.111..1111....000000.") << t.str();
}
