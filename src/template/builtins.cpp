// Filters, tests, methods and operators of the template engine; see builtins.h.
#include "src/template/builtins.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>

#include "src/utf8.h"

namespace ringtune::jinja {

namespace {

[[noreturn]] void fail(const std::string& what, Location where) { throw TemplateError(what, where); }


void require_defined(const Value& v, Location where) {
  if (v.is_undefined())
    fail(v.undefined_name().empty() ? "a value is undefined" : "'" + v.undefined_name() + "' is undefined", where);
}

// ---------------------------------------------------------------------------------------------
// UTF-8 and Python's whitespace

struct CodePoint {
  size_t begin, size;
  uint32_t cp;
};

std::vector<CodePoint> code_points(const std::string& s) {
  std::vector<CodePoint> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    if (i + n > s.size()) n = 1;
    uint32_t cp = n == 1 ? c : c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out.push_back({i, n, cp});
    i += n;
  }
  return out;
}

// Python's str.isspace().
bool py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// The code point that starts at byte i, decoded as code_points() decodes it.
CodePoint code_point_at(const std::string& s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  if (i + n > s.size()) n = 1;
  uint32_t cp = n == 1 ? c : c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return {i, n, cp};
}

// Python's str.strip(chars) (chars null: whitespace) on code points, keeping byte origins.
TString py_strip(const TString& s, const std::string* chars, bool left, bool right) {
  const std::string& t = s.str();
  if (!chars && utf8::first_invalid(t) == std::string::npos) {
    // Whitespace of valid UTF-8: only the ends are decoded (templates trim every message).
    size_t b = 0, e = t.size();
    if (left)
      while (b < e) {
        const CodePoint c = code_point_at(t, b);
        if (!py_space(c.cp)) break;
        b += c.size;
      }
    if (right)
      while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<unsigned char>(t[start]) & 0xC0) == 0x80) --start;
        if (!py_space(code_point_at(t, start).cp)) break;
        e = start;
      }
    if (b == e) return TString();
    return b == 0 && e == t.size() ? s : s.substr(b, e - b);
  }
  const auto cps = code_points(t);
  std::vector<uint32_t> set;
  if (chars)
    for (const auto& c : code_points(*chars)) set.push_back(c.cp);
  const auto strip = [&](uint32_t cp) {
    return chars ? std::find(set.begin(), set.end(), cp) != set.end() : py_space(cp);
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip(cps[b].cp)) ++b;
  if (right)
    while (e > b && strip(cps[e - 1].cp)) --e;
  if (b == e) return TString();
  const size_t from = cps[b].begin, to = cps[e - 1].begin + cps[e - 1].size;
  return s.substr(from, to - from);
}

std::string ascii_lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::string ascii_upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return s;
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Python's str.title() on ASCII letters (other bytes are kept and count as uncased).
std::string py_title(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (char& c : out) {
    if (is_alpha(c)) {
      c = prev_cased ? ascii_lower(std::string(1, c))[0] : ascii_upper(std::string(1, c))[0];
      prev_cased = true;
    } else {
      prev_cased = false;
    }
  }
  return out;
}

std::string py_capitalize(const std::string& s) {
  std::string out = ascii_lower(s);
  if (!out.empty()) out[0] = ascii_upper(out.substr(0, 1))[0];
  return out;
}

// Python's str.split(sep, maxsplit) / rsplit, keeping byte origins.
List py_split(const TString& s, const Value* sep, int64_t maxsplit, bool from_right) {
  List out;
  const std::string& t = s.str();
  if (!sep || sep->is_none()) {
    // Runs of whitespace; leading/trailing ignored.
    std::vector<std::pair<size_t, size_t>> words;
    const auto cps = code_points(t);
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && py_space(cps[i].cp)) ++i;
      if (i >= cps.size()) break;
      size_t j = i;
      while (j < cps.size() && !py_space(cps[j].cp)) ++j;
      words.emplace_back(cps[i].begin, cps[j - 1].begin + cps[j - 1].size);
      i = j;
    }
    if (maxsplit >= 0 && static_cast<int64_t>(words.size()) > maxsplit + 1) {
      if (!from_right) {
        const size_t rest = words[static_cast<size_t>(maxsplit)].first;
        words.resize(static_cast<size_t>(maxsplit));
        TString tail = py_strip(s.substr(rest), nullptr, false, true);
        for (const auto& [b, e] : words) out.emplace_back(s.substr(b, e - b));
        out.emplace_back(tail);
        return out;
      }
      const size_t keep_from = words.size() - static_cast<size_t>(maxsplit);
      const size_t head_end = words[keep_from - 1].second;
      out.emplace_back(py_strip(s.substr(0, head_end), nullptr, true, false));
      for (size_t k = keep_from; k < words.size(); ++k) out.emplace_back(s.substr(words[k].first, words[k].second - words[k].first));
      return out;
    }
    for (const auto& [b, e] : words) out.emplace_back(s.substr(b, e - b));
    return out;
  }
  const std::string d = sep->as_string();
  if (d.empty()) throw TemplateError("empty separator");
  std::vector<size_t> cuts;
  if (!from_right) {
    for (size_t p = t.find(d); p != std::string::npos; p = t.find(d, p + d.size())) {
      if (maxsplit >= 0 && static_cast<int64_t>(cuts.size()) >= maxsplit) break;
      cuts.push_back(p);
    }
  } else {
    for (size_t p = t.rfind(d); p != std::string::npos;) {
      if (maxsplit >= 0 && static_cast<int64_t>(cuts.size()) >= maxsplit) break;
      cuts.push_back(p);
      if (p == 0) break;
      p = p >= d.size() ? t.rfind(d, p - d.size()) : std::string::npos;
    }
    std::reverse(cuts.begin(), cuts.end());
  }
  size_t start = 0;
  for (size_t c : cuts) {
    out.emplace_back(s.substr(start, c - start));
    start = c + d.size();
  }
  out.emplace_back(s.substr(start));
  return out;
}

// Replaces `old` by `repl` (count < 0: all), keeping the origins of both.
TString py_replace(const TString& s, const std::string& old, const TString& repl, int64_t count, Location where) {
  TString out;
  const std::string& t = s.str();
  if (old.empty()) {  // Python inserts repl between characters
    const auto cps = code_points(t);
    check_string_size(static_cast<long double>(t.size()) + static_cast<long double>(cps.size() + 1) * repl.size(), where);
    int64_t n = 0;
    for (const auto& c : cps) {
      if (count < 0 || n < count) {
        out.append(repl);
        ++n;
      }
      out.append(s.substr(c.begin, c.size));
    }
    if (count < 0 || n < count) out.append(repl);
    return out;
  }
  size_t start = 0;
  int64_t n = 0;
  for (size_t p = t.find(old); p != std::string::npos && (count < 0 || n < count); p = t.find(old, start)) {
    out.append(s.substr(start, p - start));
    check_string_size(static_cast<long double>(out.size()) + repl.size() + (t.size() - p), where);
    out.append(repl);
    start = p + old.size();
    ++n;
  }
  out.append(s.substr(start));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Numbers

int64_t checked(long double v, Location where) {
  if (v > static_cast<long double>(std::numeric_limits<int64_t>::max()) ||
      v < static_cast<long double>(std::numeric_limits<int64_t>::min()))
    fail("integer overflow", where);
  return static_cast<int64_t>(v);
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t py_mod(int64_t a, int64_t b) {
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

double py_fmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

// Python's printf-style `fmt % args` for %s %r %d %i %f %%.
TString percent_format(const TString& fmt, const Value& args, Location where) {
  List items = args.is_list() ? args.as_list() : List{args};
  TString out;
  const std::string& t = fmt.str();
  size_t k = 0, start = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] != '%') continue;
    out.append(fmt.substr(start, i - start));
    if (i + 1 >= t.size()) fail("incomplete format", where);
    const char c = t[++i];
    start = i + 1;
    if (c == '%') {
      out.append("%");
      continue;
    }
    if (k >= items.size()) fail("not enough arguments for format string", where);
    const Value& v = items[k++];
    check_string_size(static_cast<long double>(out.size()) + t.size(), where);
    if (c == 's') out.append(v.str());
    else if (c == 'r') out.append(v.repr());
    else if (c == 'd' || c == 'i') out.append(std::to_string(v.is_float() ? static_cast<int64_t>(v.as_double()) : v.as_int()));
    else if (c == 'f') {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%f", v.as_double());
      out.append(buf);
    } else {
      fail(std::string("unsupported format character '") + c + "'", where);
    }
  }
  out.append(fmt.substr(start));
  check_string_size(out.size(), where);
  if (k < items.size() && args.is_list()) fail("not all arguments converted during string formatting", where);
  return out;
}

// Python's str.format with {} {0} {name} (no format specs).
TString brace_format(const TString& fmt, const Args& args, Location where) {
  TString out;
  const std::string& t = fmt.str();
  size_t auto_index = 0, start = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '{' && i + 1 < t.size() && t[i + 1] == '{') {
      out.append(fmt.substr(start, i - start + 1));
      start = i + 2;
      ++i;
      continue;
    }
    if (t[i] == '}' && i + 1 < t.size() && t[i + 1] == '}') {
      out.append(fmt.substr(start, i - start + 1));
      start = i + 2;
      ++i;
      continue;
    }
    if (t[i] != '{') continue;
    const size_t close = t.find('}', i);
    if (close == std::string::npos) fail("Single '{' encountered in format string", where);
    out.append(fmt.substr(start, i - start));
    const std::string field = t.substr(i + 1, close - i - 1);
    const Value* v = nullptr;
    if (field.empty()) {
      v = auto_index < args.positional.size() ? &args.positional[auto_index] : nullptr;
      ++auto_index;
    } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
      const size_t n = static_cast<size_t>(std::atoi(field.c_str()));
      v = n < args.positional.size() ? &args.positional[n] : nullptr;
    } else {
      for (const auto& [k, val] : args.keyword)
        if (k == field) v = &val;
    }
    if (!v) fail("format: no argument for {" + field + "}", where);
    const TString value = v->str();
    check_string_size(static_cast<long double>(out.size()) + value.size() + t.size(), where);
    out.append(value);
    start = close + 1;
    i = close;
  }
  out.append(fmt.substr(start));
  return out;
}

int64_t arg_int(const Args& args, size_t i, const char* name, int64_t def, Location where) {
  const Value* v = args.get(i, name);
  if (!v || v->is_none()) return def;
  if (!v->is_int() && !v->is_bool()) fail(std::string(name) + " must be an integer", where);
  return v->as_int();
}

bool arg_bool(const Args& args, size_t i, const char* name, bool def) {
  const Value* v = args.get(i, name);
  return v ? v->truthy() : def;
}

// Python's int() of a value.
Value to_int(const Value& v, const Value& def, int base, Location where) {
  if (v.is_int()) return v;
  if (v.is_bool()) return Value(static_cast<int64_t>(v.as_bool()));
  if (v.is_float()) return std::isfinite(v.as_double()) ? Value(checked(std::trunc(v.as_double()), where)) : def;
  if (v.is_string()) {
    std::string s = py_strip(v.as_tstring(), nullptr, true, true).str();
    s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
    if (s.empty()) return def;
    char* end = nullptr;
    errno = 0;
    const long long r = std::strtoll(s.c_str(), &end, base);
    if (end && *end == '\0' && errno == 0) return Value(static_cast<int64_t>(r));
    // jinja2's int filter then tries float(s)
    const double f = std::strtod(s.c_str(), &end);
    if (end && *end == '\0' && std::isfinite(f)) return Value(checked(std::trunc(f), where));
    return def;
  }
  return def;
}

Value to_float(const Value& v, const Value& def) {
  if (v.is_number()) return Value(v.as_double());
  if (v.is_string()) {
    const std::string s = py_strip(v.as_tstring(), nullptr, true, true).str();
    char* end = nullptr;
    const double f = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0') return Value(f);
  }
  return def;
}

// ---------------------------------------------------------------------------------------------
// Attribute lookup helpers for map/select/sort

// "a.b.0" as jinja2's make_attrgetter resolves it.
Value resolve_attribute(const Value& v, const std::string& path, Location where) {
  Value cur = v;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    cur = numeric ? get_item(cur, Value(static_cast<int64_t>(std::atoll(part.c_str()))), where)
                  : get_item(cur, Value(part), where);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

Args rest_args(const Args& args, size_t from) {
  Args out;
  for (size_t i = from; i < args.positional.size(); ++i) out.positional.push_back(args.positional[i]);
  out.keyword = args.keyword;
  return out;
}

// select/reject/selectattr/rejectattr.
Value select_items(const Value& input, const Args& args, bool by_attr, bool keep, Location where) {
  List out;
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (args.positional.empty()) fail("selectattr needs an attribute", where);
    attr = args.positional[0].as_string();
    next = 1;
  }
  const bool has_test = args.positional.size() > next;
  const std::string test = has_test ? args.positional[next].as_string() : "";
  const Args targs = rest_args(args, next + 1);
  for (const Value& item : input.iterate(where)) {
    const Value v = by_attr ? resolve_attribute(item, attr, where) : item;
    const bool ok = has_test ? call_test(test, v, targs, where) : v.truthy();
    if (ok == keep) out.push_back(item);
  }
  return Value(std::move(out));
}

// Sort key comparison for sort/dictsort (case-insensitive strings unless case_sensitive).
bool sort_less(const Value& a, const Value& b, bool case_sensitive, Location where) {
  if (!case_sensitive && a.is_string() && b.is_string()) return ascii_lower(a.as_string()) < ascii_lower(b.as_string());
  return less(a, b, where);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Filters

using FilterFn = std::function<Value(const Value&, const Args&, Location)>;

const std::map<std::string, FilterFn>& filters() {
  static const std::map<std::string, FilterFn> table = [] {
    std::map<std::string, FilterFn> f;
    f["abs"] = [](const Value& v, const Args&, Location w) -> Value {
      if (v.is_float()) return Value(std::fabs(v.as_double()));
      if (v.is_number()) return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
      fail("bad operand type for abs(): '" + v.type_name() + "'", w);
    };
    f["attr"] = [](const Value& v, const Args& a, Location w) {
      const Value* name = a.get(0, "name");
      if (!name || !name->is_string()) fail("attr needs a name", w);
      return get_attribute(v, name->as_string(), w);
    };
    f["batch"] = [](const Value& v, const Args& a, Location w) {
      const int64_t n = arg_int(a, 0, "linecount", 1, w);
      if (n < 1) fail("batch size must be >= 1", w);
      const Value* fill = a.get(1, "fill_with");
      List out, cur;
      for (const Value& x : v.iterate(w)) {
        cur.push_back(x);
        if (static_cast<int64_t>(cur.size()) == n) {
          out.emplace_back(std::move(cur));
          cur.clear();
        }
      }
      if (!cur.empty()) {
        if (fill)
          while (static_cast<int64_t>(cur.size()) < n) cur.push_back(*fill);
        out.emplace_back(std::move(cur));
      }
      return Value(std::move(out));
    };
    f["capitalize"] = [](const Value& v, const Args&, Location) { return Value(v.str().with_text(py_capitalize(v.str().str()))); };
    f["count"] = f["length"] = [](const Value& v, const Args&, Location w) { return Value(v.length(w)); };
    f["default"] = f["d"] = [](const Value& v, const Args& a, Location) {
      const Value* def = a.get(0, "default_value");
      const bool boolean = arg_bool(a, 1, "boolean", false);
      if (v.is_undefined() || (boolean && !v.truthy())) return def ? *def : Value(std::string());
      return v;
    };
    f["dictsort"] = [](const Value& v, const Args& a, Location w) {
      if (!v.is_dict()) fail("dictsort needs a dict", w);
      const bool cs = arg_bool(a, 0, "case_sensitive", false);
      const Value* by = a.get(1, "by");
      const bool by_value = by && by->is_string() && by->as_string() == "value";
      const bool rev = arg_bool(a, 2, "reverse", false);
      Dict d = v.as_dict();
      std::stable_sort(d.begin(), d.end(), [&](const auto& x, const auto& y) {
        return by_value ? sort_less(x.second, y.second, cs, w) : sort_less(Value(x.first), Value(y.first), cs, w);
      });
      if (rev) std::reverse(d.begin(), d.end());
      List out;
      for (auto& [k, val] : d) out.push_back(Value::tuple(List{Value(k), val}));
      return Value(std::move(out));
    };
    f["escape"] = f["e"] = [](const Value& v, const Args&, Location) { return Value(v.str().derived(html_escape(v.str().str()))); };
    f["first"] = [](const Value& v, const Args&, Location w) {
      const List items = v.iterate(w);
      return items.empty() ? Value::undefined("first of an empty sequence") : items.front();
    };
    f["last"] = [](const Value& v, const Args&, Location w) {
      const List items = v.iterate(w);
      return items.empty() ? Value::undefined("last of an empty sequence") : items.back();
    };
    f["float"] = [](const Value& v, const Args& a, Location) {
      const Value* def = a.get(0, "default");
      return to_float(v, def ? *def : Value(0.0));
    };
    f["int"] = [](const Value& v, const Args& a, Location w) {
      const Value* def = a.get(0, "default");
      return to_int(v, def ? *def : Value(static_cast<int64_t>(0)), static_cast<int>(arg_int(a, 1, "base", 10, w)), w);
    };
    f["format"] = [](const Value& v, const Args& a, Location w) {
      return Value(percent_format(v.str(), a.positional.size() == 1 ? a.positional[0] : Value(a.positional), w));
    };
    f["indent"] = [](const Value& v, const Args& a, Location w) {
      const Value* width_v = a.get(0, "width");
      const int64_t width = width_v && width_v->is_string() ? 0 : std::max<int64_t>(0, arg_int(a, 0, "width", 4, w));
      const TString s = v.str();
      const long double lines = 1 + std::count(s.str().begin(), s.str().end(), '\n');
      check_string_size(s.size() + lines * (width_v && width_v->is_string() ? width_v->as_string().size() : width), w);
      const std::string pad = width_v && width_v->is_string() ? width_v->as_string() : std::string(static_cast<size_t>(width), ' ');
      const bool first = arg_bool(a, 1, "first", false), blank = arg_bool(a, 2, "blank", false);
      TString out;
      const std::string& t = s.str();
      size_t start = 0;
      bool first_line = true;
      while (start <= t.size()) {
        const size_t nl = t.find('\n', start);
        const size_t end = nl == std::string::npos ? t.size() : nl;
        const bool empty_line = end == start;
        if ((first_line ? first : true) && (blank || !empty_line)) out.append(pad);
        out.append(s.substr(start, end - start));
        if (nl == std::string::npos) break;
        out.append(s.substr(nl, 1));
        start = nl + 1;
        first_line = false;
      }
      return Value(std::move(out));
    };
    f["items"] = [](const Value& v, const Args&, Location w) {
      if (v.is_undefined()) return Value(List{});
      if (!v.is_dict()) fail("items needs a mapping", w);
      List out;
      for (const auto& [k, val] : v.as_dict()) out.push_back(Value::tuple(List{Value(k), val}));
      return Value(std::move(out));
    };
    f["join"] = [](const Value& v, const Args& a, Location w) {
      const Value* sep = a.get(0, "d");
      const Value* attr = a.get(1, "attribute");
      TString out;
      bool first = true;
      for (const Value& x : v.iterate(w)) {
        if (!first && sep) out.append(sep->str());
        first = false;
        const TString item = (attr ? resolve_attribute(x, attr->as_string(), w) : x).str();
        check_string_size(static_cast<long double>(out.size()) + item.size(), w);
        out.append(item);
      }
      return Value(std::move(out));
    };
    f["list"] = [](const Value& v, const Args&, Location w) { return Value(v.iterate(w)); };  // tuples become lists
    f["lower"] = [](const Value& v, const Args&, Location) { return Value(v.str().with_text(ascii_lower(v.str().str()))); };
    f["upper"] = [](const Value& v, const Args&, Location) { return Value(v.str().with_text(ascii_upper(v.str().str()))); };
    f["title"] = [](const Value& v, const Args&, Location) {
      // jinja2's do_title: words begin after whitespace, '-', '(', '{', '[' or '<'.
      std::string s = v.str().str();
      bool begin = true;
      for (char& c : s) {
        if (begin && is_alpha(c)) c = ascii_upper(std::string(1, c))[0];
        else if (is_alpha(c)) c = ascii_lower(std::string(1, c))[0];
        begin = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
      }
      return Value(v.str().with_text(s));
    };
    f["map"] = [](const Value& v, const Args& a, Location w) {
      List out;
      const Value* attr = a.get(99, "attribute");
      if (attr) {
        const Value* def = a.get(99, "default");
        for (const Value& x : v.iterate(w)) {
          Value r = resolve_attribute(x, attr->as_string(), w);
          out.push_back(r.is_undefined() && def ? *def : r);
        }
        return Value(std::move(out));
      }
      if (a.positional.empty()) fail("map needs a filter name or attribute=", w);
      const std::string name = a.positional[0].as_string();
      const Args fargs = rest_args(a, 1);
      for (const Value& x : v.iterate(w)) out.push_back(call_filter(name, x, fargs, w));
      return Value(std::move(out));
    };
    f["replace"] = [](const Value& v, const Args& a, Location w) {
      const Value* old = a.get(0, "old");
      const Value* repl = a.get(1, "new");
      if (!old || !repl) fail("replace needs old and new", w);
      return Value(py_replace(v.str(), old->str().str(), repl->str(), arg_int(a, 2, "count", -1, w), w));
    };
    f["reverse"] = [](const Value& v, const Args&, Location w) {
      if (v.is_string()) {
        const auto cps = code_points(v.as_string());
        std::vector<size_t> pos;
        for (auto it = cps.rbegin(); it != cps.rend(); ++it)
          for (size_t k = 0; k < it->size; ++k) pos.push_back(it->begin + k);
        return Value(v.as_tstring().pick(pos));
      }
      List items = v.iterate(w);
      std::reverse(items.begin(), items.end());
      return Value(std::move(items));
    };
    f["round"] = [](const Value& v, const Args& a, Location w) {
      const int64_t precision = arg_int(a, 0, "precision", 0, w);
      const Value* method_v = a.get(1, "method");
      const std::string method = method_v ? method_v->as_string() : "common";
      const double scale = std::pow(10.0, static_cast<double>(precision));
      const double x = v.as_double() * scale;
      double r;
      if (method == "common") r = std::nearbyint(x);  // Python's round(): halves to even
      else if (method == "ceil") r = std::ceil(x);
      else if (method == "floor") r = std::floor(x);
      else fail("round: method must be common, ceil or floor", w);
      return Value(r / scale);
    };
    f["safe"] = [](const Value& v, const Args&, Location) { return v; };
    f["select"] = [](const Value& v, const Args& a, Location w) { return select_items(v, a, false, true, w); };
    f["reject"] = [](const Value& v, const Args& a, Location w) { return select_items(v, a, false, false, w); };
    f["selectattr"] = [](const Value& v, const Args& a, Location w) { return select_items(v, a, true, true, w); };
    f["rejectattr"] = [](const Value& v, const Args& a, Location w) { return select_items(v, a, true, false, w); };
    f["sort"] = [](const Value& v, const Args& a, Location w) {
      const bool rev = arg_bool(a, 0, "reverse", false), cs = arg_bool(a, 1, "case_sensitive", false);
      const Value* attr = a.get(2, "attribute");
      List items = v.iterate(w);
      std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        return attr ? sort_less(resolve_attribute(x, attr->as_string(), w), resolve_attribute(y, attr->as_string(), w), cs, w)
                    : sort_less(x, y, cs, w);
      });
      if (rev) std::reverse(items.begin(), items.end());
      return Value(std::move(items));
    };
    f["string"] = [](const Value& v, const Args&, Location) { return Value(v.str()); };
    f["sum"] = [](const Value& v, const Args& a, Location w) {
      const Value* attr = a.get(0, "attribute");
      const Value* start = a.get(1, "start");
      Value acc = start ? *start : Value(static_cast<int64_t>(0));
      for (const Value& x : v.iterate(w)) acc = binary_op("+", acc, attr ? resolve_attribute(x, attr->as_string(), w) : x, w);
      return acc;
    };
    f["tojson"] = [](const Value& v, const Args& a, Location w) {
      const Value* indent = a.get(0, "indent");
      const Value* seps = a.get(99, "separators");
      const bool sort_keys = arg_bool(a, 99, "sort_keys", false);
      std::string item_sep, key_sep;
      if (seps && seps->is_list() && seps->as_list().size() == 2) {
        item_sep = seps->as_list()[0].as_string();
        key_sep = seps->as_list()[1].as_string();
      }
      if (v.is_undefined()) fail("Object of type Undefined is not JSON serializable", w);
      const int64_t width = indent && !indent->is_none() ? indent->as_int() : -1;
      if (width > 1024) fail("tojson indent too large (more than 1024)", w);  // indent x depth per line
      try {
        const TString out = v.to_json(static_cast<int>(std::max<int64_t>(width, -1)), item_sep, key_sep, sort_keys);
        check_string_size(out.size(), w);
        return Value(out);
      } catch (const TemplateError& e) {
        fail(e.what(), w);
      }
    };
    f["trim"] = [](const Value& v, const Args& a, Location) {
      const Value* chars = a.get(0, "chars");
      const std::string c = chars && !chars->is_none() ? chars->as_string() : std::string();
      return Value(py_strip(v.str(), chars && !chars->is_none() ? &c : nullptr, true, true));
    };
    f["unique"] = [](const Value& v, const Args& a, Location w) {
      const bool cs = arg_bool(a, 0, "case_sensitive", false);
      const Value* attr = a.get(1, "attribute");
      List out, keys;
      for (const Value& x : v.iterate(w)) {
        Value k = attr ? resolve_attribute(x, attr->as_string(), w) : x;
        if (!cs && k.is_string()) k = Value(ascii_lower(k.as_string()));
        if (std::none_of(keys.begin(), keys.end(), [&](const Value& y) { return equal(y, k); })) {
          keys.push_back(k);
          out.push_back(x);
        }
      }
      return Value(std::move(out));
    };
    f["wordcount"] = [](const Value& v, const Args&, Location) {
      return Value(static_cast<int64_t>(py_split(v.str(), nullptr, -1, false).size()));
    };
    for (const char* name : {"max", "min"}) {
      const bool is_max = std::string(name) == "max";
      f[name] = [is_max](const Value& v, const Args& a, Location w) {
        const bool cs = arg_bool(a, 0, "case_sensitive", false);
        const Value* attr = a.get(1, "attribute");
        const List items = v.iterate(w);
        if (items.empty()) return Value::undefined("no items");
        Value best = items[0];
        for (const Value& x : items) {
          const Value kx = attr ? resolve_attribute(x, attr->as_string(), w) : x;
          const Value kb = attr ? resolve_attribute(best, attr->as_string(), w) : best;
          if (is_max ? sort_less(kb, kx, cs, w) : sort_less(kx, kb, cs, w)) best = x;
        }
        return best;
      };
    }
    return f;
  }();
  return table;
}

// ---------------------------------------------------------------------------------------------
// Tests

using TestFn = std::function<bool(const Value&, const Args&, Location)>;

const std::map<std::string, TestFn>& tests() {
  static const std::map<std::string, TestFn> table = [] {
    std::map<std::string, TestFn> t;
    const auto arg = [](const Args& a, Location w) -> const Value& {
      if (a.positional.empty()) fail("the test needs an argument", w);
      return a.positional[0];
    };
    t["defined"] = [](const Value& v, const Args&, Location) { return !v.is_undefined(); };
    t["undefined"] = [](const Value& v, const Args&, Location) { return v.is_undefined(); };
    t["none"] = [](const Value& v, const Args&, Location) { return v.is_none(); };
    t["boolean"] = [](const Value& v, const Args&, Location) { return v.is_bool(); };
    t["true"] = [](const Value& v, const Args&, Location) { return v.is_bool() && v.as_bool(); };
    t["false"] = [](const Value& v, const Args&, Location) { return v.is_bool() && !v.as_bool(); };
    t["integer"] = [](const Value& v, const Args&, Location) { return v.is_int(); };
    t["float"] = [](const Value& v, const Args&, Location) { return v.is_float(); };
    t["number"] = [](const Value& v, const Args&, Location) { return v.is_number(); };
    t["string"] = [](const Value& v, const Args&, Location) { return v.is_string(); };
    t["mapping"] = [](const Value& v, const Args&, Location) { return v.is_dict(); };
    t["iterable"] = [](const Value& v, const Args&, Location) {
      return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
    };
    t["sequence"] = [](const Value& v, const Args&, Location) { return v.is_string() || v.is_list() || v.is_dict(); };
    t["callable"] = [](const Value& v, const Args&, Location) { return v.is_callable(); };
    t["escaped"] = [](const Value&, const Args&, Location) { return false; };
    t["lower"] = [](const Value& v, const Args&, Location) { return v.is_string() && ascii_lower(v.as_string()) == v.as_string(); };
    t["upper"] = [](const Value& v, const Args&, Location) { return v.is_string() && ascii_upper(v.as_string()) == v.as_string(); };
    t["odd"] = [](const Value& v, const Args&, Location) { return v.is_number() && py_mod(v.as_int(), 2) == 1; };
    t["even"] = [](const Value& v, const Args&, Location) { return v.is_number() && py_mod(v.as_int(), 2) == 0; };
    t["divisibleby"] = [arg](const Value& v, const Args& a, Location w) {
      const int64_t d = arg(a, w).as_int();
      if (d == 0) fail("integer division or modulo by zero", w);
      return py_mod(v.as_int(), d) == 0;
    };
    t["sameas"] = [arg](const Value& v, const Args& a, Location w) {
      const Value& o = arg(a, w);
      if (v.is_none() || o.is_none() || v.is_bool() || o.is_bool()) return v.type() == o.type() && equal(v, o);
      return &v == &o;
    };
    t["in"] = [arg](const Value& v, const Args& a, Location w) { return binary_op("in", v, arg(a, w), w).as_bool(); };
    const std::vector<std::pair<std::vector<std::string>, std::string>> cmp = {
        {{"eq", "equalto", "=="}, "=="}, {{"ne", "!="}, "!="}, {{"lt", "lessthan", "<"}, "<"},
        {{"le", "<="}, "<="}, {{"gt", "greaterthan", ">"}, ">"}, {{"ge", ">="}, ">="}};
    for (const auto& [names, op] : cmp)
      for (const auto& n : names) {
        const std::string o = op;
        t[n] = [arg, o](const Value& v, const Args& a, Location w) { return binary_op(o, v, arg(a, w), w).as_bool(); };
      }
    return t;
  }();
  return table;
}

// ---------------------------------------------------------------------------------------------
// Methods

Value bound(const std::string& name, std::function<Value(const Args&)> fn) { return Value(Callable{name, std::move(fn)}); }

Value string_method(const Value& self, const std::string& name, Location w) {
  const TString s = self.as_tstring();
  const auto str_arg = [w](const Args& a, size_t i, const char* n) -> std::string {
    const Value* v = a.get(i, n);
    if (!v || !v->is_string()) fail(std::string("str method needs a string argument '") + n + "'", w);
    return v->as_string();
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const bool l = name != "rstrip", r = name != "lstrip";
    return bound(name, [s, l, r](const Args& a) {
      const Value* c = a.get(0, "chars");
      if (!c || c->is_none()) return Value(py_strip(s, nullptr, l, r));
      const std::string chars = c->as_string();
      return Value(py_strip(s, &chars, l, r));
    });
  }
  if (name == "split" || name == "rsplit") {
    const bool right = name == "rsplit";
    return bound(name, [s, right, w](const Args& a) {
      return Value(py_split(s, a.get(0, "sep"), arg_int(a, 1, "maxsplit", -1, w), right));
    });
  }
  if (name == "startswith" || name == "endswith") {
    const bool start = name == "startswith";
    return bound(name, [s, start, w](const Args& a) {
      const Value* p = a.get(0, "prefix");
      if (!p) fail("startswith/endswith needs an argument", w);
      List options = p->is_list() ? p->as_list() : List{*p};
      for (const Value& o : options) {
        const std::string& x = o.as_string();
        const std::string& t = s.str();
        if (x.size() <= t.size() && (start ? t.compare(0, x.size(), x) == 0 : t.compare(t.size() - x.size(), x.size(), x) == 0))
          return Value(true);
      }
      return Value(false);
    });
  }
  if (name == "upper") return bound(name, [s](const Args&) { return Value(s.with_text(ascii_upper(s.str()))); });
  if (name == "lower") return bound(name, [s](const Args&) { return Value(s.with_text(ascii_lower(s.str()))); });
  if (name == "title") return bound(name, [s](const Args&) { return Value(s.with_text(py_title(s.str()))); });
  if (name == "capitalize") return bound(name, [s](const Args&) { return Value(s.with_text(py_capitalize(s.str()))); });
  if (name == "replace")
    return bound(name, [s, str_arg, w](const Args& a) {
      const Value* repl = a.get(1, "new");
      if (!repl) fail("replace needs two arguments", w);
      return Value(py_replace(s, str_arg(a, 0, "old"), repl->as_tstring(), arg_int(a, 2, "count", -1, w), w));
    });
  if (name == "format") return bound(name, [s, w](const Args& a) { return Value(brace_format(s, a, w)); });
  if (name == "find" || name == "rfind" || name == "index" || name == "count") {
    return bound(name, [s, name, str_arg, w](const Args& a) {
      const std::string sub = str_arg(a, 0, "sub");
      const std::string& t = s.str();
      if (name == "count") {
        if (sub.empty()) return Value(static_cast<int64_t>(code_points(t).size() + 1));
        int64_t n = 0;
        for (size_t p = t.find(sub); p != std::string::npos; p = t.find(sub, p + sub.size())) ++n;
        return Value(n);
      }
      const size_t p = name == "rfind" ? t.rfind(sub) : t.find(sub);
      if (p == std::string::npos) {
        if (name == "index") fail("substring not found", w);
        return Value(static_cast<int64_t>(-1));
      }
      // Python counts code points.
      return Value(static_cast<int64_t>(code_points(t.substr(0, p)).size()));
    });
  }
  if (name == "join")
    return bound(name, [s, w](const Args& a) {
      const Value* items = a.get(0, "iterable");
      if (!items) fail("join needs an iterable", w);
      TString out;
      bool first = true;
      for (const Value& x : items->iterate(w)) {
        if (!x.is_string()) fail("sequence item: expected str instance, " + x.type_name() + " found", w);
        if (!first) out.append(s);
        first = false;
        out.append(x.as_tstring());
      }
      return Value(std::move(out));
    });
  if (name == "splitlines")
    return bound(name, [s](const Args&) {
      List out;
      const std::string& t = s.str();
      size_t start = 0;
      for (size_t i = 0; i < t.size(); ++i) {
        if (t[i] == '\n' || t[i] == '\r') {
          out.emplace_back(s.substr(start, i - start));
          if (t[i] == '\r' && i + 1 < t.size() && t[i + 1] == '\n') ++i;
          start = i + 1;
        }
      }
      if (start < t.size()) out.emplace_back(s.substr(start));
      return Value(std::move(out));
    });
  const auto predicate = [&](const char* n, std::function<bool(char)> ok) {
    return bound(n, [s, ok](const Args&) {
      const std::string& t = s.str();
      return Value(!t.empty() && std::all_of(t.begin(), t.end(), ok));
    });
  };
  if (name == "isdigit") return predicate("isdigit", [](char c) { return c >= '0' && c <= '9'; });
  if (name == "isalpha") return predicate("isalpha", [](char c) { return is_alpha(c); });
  if (name == "isalnum") return predicate("isalnum", [](char c) { return is_alpha(c) || (c >= '0' && c <= '9'); });
  if (name == "isspace") return predicate("isspace", [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); });
  if (name == "islower")
    return bound(name, [s](const Args&) {
      const std::string& t = s.str();
      return Value(ascii_lower(t) == t && ascii_upper(t) != t);
    });
  if (name == "isupper")
    return bound(name, [s](const Args&) {
      const std::string& t = s.str();
      return Value(ascii_upper(t) == t && ascii_lower(t) != t);
    });
  return Value::undefined("str object has no attribute '" + name + "'");
}

Value dict_method(const Value& self, const std::string& name) {
  if (name == "items")
    return bound(name, [self](const Args&) {
      List out;
      for (const auto& [k, v] : self.as_dict()) out.push_back(Value::tuple(List{Value(k), v}));
      return Value(std::move(out));
    });
  if (name == "keys")
    return bound(name, [self](const Args&) {
      List out;
      for (const auto& kv : self.as_dict()) out.emplace_back(kv.first);
      return Value(std::move(out));
    });
  if (name == "values")
    return bound(name, [self](const Args&) {
      List out;
      for (const auto& kv : self.as_dict()) out.push_back(kv.second);
      return Value(std::move(out));
    });
  if (name == "get")
    return bound(name, [self](const Args& a) {
      const Value* key = a.get(0, "key");
      const Value* def = a.get(1, "default");
      if (key && key->is_string())
        if (const Value* v = self.find(key->as_string())) return *v;
      return def ? *def : Value::none();
    });
  return Value();  // not a method: the caller looks up the key
}

Value list_method(const Value& self, const std::string& name, Location w) {
  if (name == "count")
    return bound(name, [self](const Args& a) {
      int64_t n = 0;
      if (const Value* x = a.get(0, "value"))
        for (const Value& y : self.as_list()) n += equal(*x, y);
      return Value(n);
    });
  if (name == "index")
    return bound(name, [self, w](const Args& a) {
      const Value* x = a.get(0, "value");
      const List& l = self.as_list();
      for (size_t i = 0; i < l.size(); ++i)
        if (x && equal(*x, l[i])) return Value(static_cast<int64_t>(i));
      fail("value is not in list", w);
    });
  if (name == "append" || name == "extend" || name == "pop" || name == "insert" || name == "remove" || name == "clear" ||
      name == "sort" || name == "reverse")
    fail("access to attribute '" + name + "' of 'list' object is unsafe (lists are immutable in chat templates)", w);
  return Value::undefined("list object has no attribute '" + name + "'");
}

// Python's index normalisation for a sequence of n items.
int64_t norm_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public

bool has_filter(const std::string& name) { return filters().count(name) > 0; }

Value call_filter(const std::string& name, const Value& input, const Args& args, Location where) {
  auto it = filters().find(name);
  if (it == filters().end()) fail("unknown filter \"" + name + "\"", where);
  return it->second(input, args, where);
}

bool has_test(const std::string& name) { return tests().count(name) > 0; }

bool call_test(const std::string& name, const Value& input, const Args& args, Location where) {
  auto it = tests().find(name);
  if (it == tests().end()) fail("unknown test \"" + name + "\"", where);
  return it->second(input, args, where);
}

Value get_attribute(const Value& obj, const std::string& name, Location where) {
  require_defined(obj, where);
  switch (obj.type()) {
    case Value::Type::Dict: {
      Value m = dict_method(obj, name);
      if (!m.is_undefined()) return m;
      if (const Value* v = obj.find(name)) return *v;
      return Value::undefined("'dict object' has no attribute '" + name + "'");
    }
    case Value::Type::Namespace:
      if (const Value* v = obj.find(name)) return *v;
      return Value::undefined("namespace has no attribute '" + name + "'");
    case Value::Type::String: return string_method(obj, name, where);
    case Value::Type::List: return list_method(obj, name, where);
    default: return Value::undefined("'" + obj.type_name() + "' object has no attribute '" + name + "'");
  }
}

Value get_item(const Value& obj, const Value& key, Location where) {
  require_defined(obj, where);
  if (obj.is_dict() || obj.is_namespace()) {
    if (key.is_string()) {
      if (const Value* v = obj.find(key.as_string())) return *v;
      return obj.is_dict() ? get_attribute(obj, key.as_string(), where) : Value::undefined(key.as_string());
    }
    return Value::undefined("dict key " + key.repr());
  }
  if (obj.is_list() || obj.is_string()) {
    if (key.is_string()) return get_attribute(obj, key.as_string(), where);
    if (!key.is_int() && !key.is_bool()) fail("indices must be integers, not " + key.type_name(), where);
    if (obj.is_list()) {
      const List& l = obj.as_list();
      const int64_t i = norm_index(key.as_int(), static_cast<int64_t>(l.size()));
      if (i < 0 || i >= static_cast<int64_t>(l.size())) return Value::undefined("list index out of range");
      return l[static_cast<size_t>(i)];
    }
    const auto cps = code_points(obj.as_string());
    const int64_t i = norm_index(key.as_int(), static_cast<int64_t>(cps.size()));
    if (i < 0 || i >= static_cast<int64_t>(cps.size())) return Value::undefined("string index out of range");
    return Value(obj.as_tstring().substr(cps[static_cast<size_t>(i)].begin, cps[static_cast<size_t>(i)].size));
  }
  return Value::undefined("'" + obj.type_name() + "' object is not subscriptable");
}

Value slice_value(const Value& obj, const Value* start_v, const Value* stop_v, const Value* step_v, Location where) {
  require_defined(obj, where);
  if (!obj.is_list() && !obj.is_string()) fail("'" + obj.type_name() + "' object is not sliceable", where);
  const std::vector<CodePoint> cps = obj.is_string() ? code_points(obj.as_string()) : std::vector<CodePoint>{};
  const int64_t n = obj.is_list() ? static_cast<int64_t>(obj.as_list().size()) : static_cast<int64_t>(cps.size());
  const auto opt = [](const Value* v) { return v && !v->is_none() && !v->is_undefined(); };
  const int64_t step = opt(step_v) ? step_v->as_int() : 1;
  if (step == 0) fail("slice step cannot be zero", where);
  const auto clamp_index = [&](const Value* v, int64_t def) {
    if (!opt(v)) return def;
    int64_t i = v->as_int();
    if (i < 0) i += n;
    if (step > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t start = clamp_index(start_v, step > 0 ? 0 : n - 1);
  const int64_t stop = clamp_index(stop_v, step > 0 ? n : -1);
  std::vector<int64_t> idx;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) idx.push_back(i);
  if (obj.is_list()) {
    List out;
    for (int64_t i : idx) out.push_back(obj.as_list()[static_cast<size_t>(i)]);
    return Value(std::move(out));
  }
  if (step == 1) {
    if (idx.empty()) return Value(TString());
    const size_t b = cps[static_cast<size_t>(idx.front())].begin;
    const auto& last = cps[static_cast<size_t>(idx.back())];
    return Value(obj.as_tstring().substr(b, last.begin + last.size - b));
  }
  std::vector<size_t> bytes;
  for (int64_t i : idx)
    for (size_t k = 0; k < cps[static_cast<size_t>(i)].size; ++k) bytes.push_back(cps[static_cast<size_t>(i)].begin + k);
  return Value(obj.as_tstring().pick(bytes));
}

Value unary_minus(const Value& v, Location where) {
  require_defined(v, where);
  if (v.is_float()) return Value(-v.as_double());
  if (v.is_number()) return Value(-v.as_int());
  fail("bad operand type for unary -: '" + v.type_name() + "'", where);
}

Value binary_op(const std::string& op, const Value& a, const Value& b, Location where) {
  if (op == "==") return Value(equal(a, b));
  if (op == "!=") return Value(!equal(a, b));
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.is_string()) {
      if (!a.is_string()) fail("'in <string>' requires string as left operand, not " + a.type_name(), where);
      found = b.as_string().find(a.as_string()) != std::string::npos;
    } else if (b.is_dict() || b.is_namespace()) {
      found = a.is_string() && b.find(a.as_string()) != nullptr;
    } else if (b.is_list()) {
      found = std::any_of(b.as_list().begin(), b.as_list().end(), [&](const Value& x) { return equal(a, x); });
    } else if (!b.is_undefined()) {
      fail("argument of type '" + b.type_name() + "' is not iterable", where);
    }
    return Value(op == "in" ? found : !found);
  }
  if (op == "~") {
    TString s = a.str();
    const TString t = b.str();
    check_string_size(static_cast<long double>(s.size()) + t.size(), where);
    s.append(t);
    return Value(std::move(s));
  }
  require_defined(a, where);
  require_defined(b, where);
  if (op == "<") return Value(less(a, b, where));
  if (op == ">") return Value(less(b, a, where));
  if (op == "<=") return Value(!less(b, a, where));
  if (op == ">=") return Value(!less(a, b, where));
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      check_string_size(static_cast<long double>(a.as_tstring().size()) + b.as_tstring().size(), where);
      TString s = a.as_tstring();
      s.append(b.as_tstring());
      return Value(std::move(s));
    }
    if (a.is_list() && b.is_list()) {
      List l = a.as_list();
      l.insert(l.end(), b.as_list().begin(), b.as_list().end());
      return Value(std::move(l));
    }
  }
  if (op == "*" && ((a.is_string() || a.is_list()) && b.is_int())) {
    const int64_t n = std::max<int64_t>(0, b.as_int());
    if (static_cast<long double>(n) * (a.is_string() ? a.as_string().size() : a.as_list().size()) > kMaxStringBytes)
      fail("repetition too large", where);
    if (a.is_string()) {
      TString s;
      for (int64_t i = 0; i < n; ++i) s.append(a.as_tstring());
      return Value(std::move(s));
    }
    List l;
    for (int64_t i = 0; i < n; ++i) l.insert(l.end(), a.as_list().begin(), a.as_list().end());
    return Value(std::move(l));
  }
  if (op == "%" && a.is_string()) return Value(percent_format(a.as_tstring(), b, where));
  if (!a.is_number() || !b.is_number())
    fail("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'", where);
  const bool fl = a.is_float() || b.is_float();
  if (op == "/") {
    if (b.as_double() == 0) fail("division by zero", where);
    return Value(a.as_double() / b.as_double());
  }
  if (op == "**") {
    if (!fl && b.as_int() >= 0) return Value(checked(std::pow(static_cast<long double>(a.as_int()), b.as_int()), where));
    return Value(std::pow(a.as_double(), b.as_double()));
  }
  if (fl) {
    const double x = a.as_double(), y = b.as_double();
    if (op == "+") return Value(x + y);
    if (op == "-") return Value(x - y);
    if (op == "*") return Value(x * y);
    if (y == 0) fail("float division by zero", where);
    if (op == "//") return Value(std::floor(x / y));
    if (op == "%") return Value(py_fmod(x, y));
  } else {
    const int64_t x = a.as_int(), y = b.as_int();
    if (op == "+") return Value(checked(static_cast<long double>(x) + y, where));
    if (op == "-") return Value(checked(static_cast<long double>(x) - y, where));
    if (op == "*") return Value(checked(static_cast<long double>(x) * y, where));
    if (y == 0) fail("integer division or modulo by zero", where);
    if (op == "//") return Value(floor_div(x, y));
    if (op == "%") return Value(py_mod(x, y));
  }
  fail("unknown operator " + op, where);
}

void check_string_size(long double bytes, Location where) {
  if (bytes > static_cast<long double>(kMaxStringBytes))
    fail("string too large (more than " + std::to_string(kMaxStringBytes) + " bytes)", where);
}

}  // namespace ringtune::jinja
