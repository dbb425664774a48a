// Values with Python's semantics; see value.h.
#include "src/template/value.h"

#include "src/template/builtins.h"  // defines: kMaxStringBytes

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace ringtune::jinja {

// ---------------------------------------------------------------------------------------------
// Construction and access

Value::Value(TString s) : type_(Type::String), s_(std::make_shared<const TString>(std::move(s))) {}
Value::Value(List l) : type_(Type::List), l_(std::make_shared<const List>(std::move(l))) {}
Value Value::tuple(List l) {
  Value v(std::move(l));
  v.tuple_ = true;
  return v;
}
Value::Value(Dict d) : type_(Type::Dict), d_(std::make_shared<const Dict>(std::move(d))) {}
Value::Value(Callable c) : type_(Type::Callable), c_(std::make_shared<const Callable>(std::move(c))) {}
Value::Value(std::shared_ptr<Namespace> ns) : type_(Type::Namespace), ns_(std::move(ns)) {}

const Value* Args::get(size_t index, const char* name) const {
  if (index < positional.size()) return &positional[index];
  for (const auto& [k, v] : keyword)
    if (k == name) return &v;
  return nullptr;
}

double Value::as_double() const {
  switch (type_) {
    case Type::Float: return f_;
    case Type::Int: return static_cast<double>(i_);
    case Type::Bool: return b_ ? 1.0 : 0.0;
    default: return 0.0;
  }
}

const Value* Value::find(const std::string& key) const {
  if (type_ == Type::Namespace) {
    for (const auto& [k, v] : ns_->attrs)
      if (k == key) return &v;
    return nullptr;
  }
  if (type_ != Type::Dict) return nullptr;
  for (const auto& [k, v] : *d_)
    if (k == key) return &v;
  return nullptr;
}

bool Value::truthy() const {
  switch (type_) {
    case Type::Undefined:
    case Type::None: return false;
    case Type::Bool: return b_;
    case Type::Int: return i_ != 0;
    case Type::Float: return f_ != 0.0;
    case Type::String: return !s_->empty();
    case Type::List: return !l_->empty();
    case Type::Dict: return !d_->empty();
    case Type::Callable:
    case Type::Namespace: return true;
  }
  return false;
}

std::string Value::type_name() const {
  switch (type_) {
    case Type::Undefined: return "undefined";
    case Type::None: return "NoneType";
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::String: return "str";
    case Type::List: return tuple_ ? "tuple" : "list";
    case Type::Dict: return "dict";
    case Type::Callable: return "function";
    case Type::Namespace: return "Namespace";
  }
  return "?";
}

namespace {

// Splits UTF-8 into code points (invalid bytes stand alone).
std::vector<std::pair<size_t, size_t>> code_points(const std::string& s) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
    if (i + n > s.size()) n = 1;
    out.emplace_back(i, n);
    i += n;
  }
  return out;
}

}  // namespace

List Value::iterate(Location where) const {
  switch (type_) {
    case Type::Undefined: return {};
    case Type::List: return *l_;
    case Type::Dict: {
      List keys;
      for (const auto& kv : *d_) keys.emplace_back(kv.first);
      return keys;
    }
    case Type::String: {
      List chars;
      for (const auto& [b, n] : code_points(s_->str())) chars.emplace_back(s_->substr(b, n));
      return chars;
    }
    default: throw TemplateError("'" + type_name() + "' object is not iterable", where);
  }
}

int64_t Value::length(Location where) const {
  switch (type_) {
    case Type::Undefined: return 0;
    case Type::String: return static_cast<int64_t>(code_points(s_->str()).size());
    case Type::List: return static_cast<int64_t>(l_->size());
    case Type::Dict: return static_cast<int64_t>(d_->size());
    case Type::Namespace: return static_cast<int64_t>(ns_->attrs.size());
    default: throw TemplateError("object of type '" + type_name() + "' has no len()", where);
  }
}

// ---------------------------------------------------------------------------------------------
// Python's repr and str

std::string float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // The shortest %e form that reads back to v.
  char buf[64];
  int prec = 0;
  for (prec = 0; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*e", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  // buf: [-]d.ddde[+-]xx -> digits and decimal exponent.
  std::string s(buf);
  const bool neg = s[0] == '-';
  if (neg) s.erase(0, 1);
  const size_t e = s.find('e');
  const int exp = std::atoi(s.c_str() + e + 1);
  std::string digits = s.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out;
  if (exp >= -5 && exp < 16) {  // Python's repr: fixed notation for 1e-4 <= |v| < 1e16
    if (exp < -4) {
      // falls through to scientific below
    } else if (exp < 0) {
      out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp + 1) {
      out = digits + std::string(static_cast<size_t>(exp + 1 - static_cast<int>(digits.size())), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<size_t>(exp + 1)) + "." + digits.substr(static_cast<size_t>(exp + 1));
    }
  }
  if (out.empty()) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  }
  return neg ? "-" + out : out;
}

namespace {

// Code points Python's str.isprintable() rejects, among those templates may meet: controls,
// separators other than the space, format characters.
bool python_unprintable(uint32_t cp) {
  if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) return true;
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F)) return true;
  if ((cp >= 0x205F && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206F) || cp == 0x3000) return true;
  if (cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) || (cp >= 0xD800 && cp <= 0xDFFF)) return true;
  return false;
}

uint32_t decode_cp(const std::string& s, size_t b, size_t n) {
  const unsigned char c0 = static_cast<unsigned char>(s[b]);
  if (n == 1) return c0;
  uint32_t cp = c0 & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[b + k]) & 0x3F);
  return cp;
}

}  // namespace

std::string string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  const char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  for (const auto& [b, n] : code_points(s)) {
    const uint32_t cp = decode_cp(s, b, n);
    if (cp == static_cast<uint32_t>(q) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (python_unprintable(cp)) {
      char buf[16];
      if (cp <= 0xFF) std::snprintf(buf, sizeof buf, "\\x%02x", cp);
      else std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      out += buf;
    } else {
      out.append(s, b, n);
    }
  }
  return out + q;
}

namespace {
// A list's or dict's text (repr, JSON) grows item by item: it stops at the engine's string bound
// (a list of a million references to one long string would otherwise be written out whole).
void check_text_size(size_t bytes) {
  if (static_cast<int64_t>(bytes) > kMaxStringBytes)
    throw TemplateError("string too large (more than " + std::to_string(kMaxStringBytes) + " bytes)");
}
}  // namespace

std::string Value::repr() const {
  switch (type_) {
    case Type::Undefined: return "Undefined";
    case Type::None: return "None";
    case Type::Bool: return b_ ? "True" : "False";
    case Type::Int: return std::to_string(i_);
    case Type::Float: return float_repr(f_);
    case Type::String: return string_repr(s_->str());
    case Type::List: {
      std::string out = tuple_ ? "(" : "[";
      for (size_t i = 0; i < l_->size(); ++i) {
        out += (i ? ", " : "") + (*l_)[i].repr();
        check_text_size(out.size());
      }
      if (tuple_ && l_->size() == 1) out += ",";
      return out + (tuple_ ? ")" : "]");
    }
    case Type::Dict: {
      std::string out = "{";
      for (size_t i = 0; i < d_->size(); ++i) {
        out += (i ? ", " : "") + string_repr((*d_)[i].first) + ": " + (*d_)[i].second.repr();
        check_text_size(out.size());
      }
      return out + "}";
    }
    case Type::Callable: return "<function " + c_->name + ">";
    case Type::Namespace: {
      std::string out = "<Namespace {";
      for (size_t i = 0; i < ns_->attrs.size(); ++i) {
        out += (i ? ", " : "") + string_repr(ns_->attrs[i].first) + ": " + ns_->attrs[i].second.repr();
        check_text_size(out.size());
      }
      return out + "}>";
    }
  }
  return "?";
}

TString Value::str() const {
  switch (type_) {
    case Type::Undefined: return TString();
    case Type::String: return *s_;
    default: return TString(repr());
  }
}

// ---------------------------------------------------------------------------------------------
// JSON

namespace {

void json_string(const TString& s, TString& out) {
  out.append("\"");
  const std::string& t = s.str();
  for (size_t i = 0; i < t.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(t[i]);
    const int32_t origin = s.origin_at(i);
    switch (c) {
      case '"': out.append("\\\"", origin); break;
      case '\\': out.append("\\\\", origin); break;
      case '\n': out.append("\\n", origin); break;
      case '\r': out.append("\\r", origin); break;
      case '\t': out.append("\\t", origin); break;
      case '\b': out.append("\\b", origin); break;
      case '\f': out.append("\\f", origin); break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out.append(buf, origin);
        } else {
          out.append(std::string_view(t).substr(i, 1), origin);
        }
    }
  }
  out.append("\"");
}

void json_value(const Value& v, int indent, int depth, const std::string& item_sep, const std::string& key_sep,
                bool sort_keys, TString& out) {
  const auto newline = [&](int d) {
    if (indent >= 0) out.append("\n" + std::string(static_cast<size_t>(indent * d), ' '));
  };
  switch (v.type()) {
    case Value::Type::None: out.append("null"); return;
    case Value::Type::Bool: out.append(v.as_bool() ? "true" : "false"); return;
    case Value::Type::Int: out.append(std::to_string(v.as_int())); return;
    case Value::Type::Float: {
      const double f = v.as_double();
      out.append(std::isnan(f) ? "NaN" : std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity") : float_repr(f));
      return;
    }
    case Value::Type::String: json_string(v.as_tstring(), out); return;
    case Value::Type::List: {
      const List& l = v.as_list();
      if (l.empty()) {
        out.append("[]");
        return;
      }
      out.append("[");
      for (size_t i = 0; i < l.size(); ++i) {
        if (i) out.append(item_sep);
        newline(depth + 1);
        json_value(l[i], indent, depth + 1, item_sep, key_sep, sort_keys, out);
        check_text_size(out.size());
      }
      newline(depth);
      out.append("]");
      return;
    }
    case Value::Type::Dict:
    case Value::Type::Namespace: {
      Dict d = v.is_dict() ? v.as_dict() : v.as_namespace().attrs;
      if (d.empty()) {
        out.append("{}");
        return;
      }
      if (sort_keys) std::stable_sort(d.begin(), d.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      out.append("{");
      for (size_t i = 0; i < d.size(); ++i) {
        if (i) out.append(item_sep);
        newline(depth + 1);
        json_string(TString(d[i].first), out);
        out.append(key_sep);
        json_value(d[i].second, indent, depth + 1, item_sep, key_sep, sort_keys, out);
        check_text_size(out.size());
      }
      newline(depth);
      out.append("}");
      return;
    }
    default: throw TemplateError("Object of type " + v.type_name() + " is not JSON serializable");
  }
}

}  // namespace

TString Value::to_json(int indent, const std::string& item_sep, const std::string& key_sep, bool sort_keys) const {
  TString out;
  const std::string is = !item_sep.empty() ? item_sep : indent >= 0 ? "," : ", ";
  const std::string ks = !key_sep.empty() ? key_sep : ": ";
  json_value(*this, indent, 0, is, ks, sort_keys, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Comparison

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.type() != b.type() || a.is_tuple() != b.is_tuple()) return false;
  switch (a.type()) {
    case Value::Type::Undefined:
    case Value::Type::None: return true;
    case Value::Type::String: return a.as_string() == b.as_string();
    case Value::Type::List: {
      const List &x = a.as_list(), &y = b.as_list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equal(x[i], y[i])) return false;
      return true;
    }
    case Value::Type::Dict: {
      const Dict &x = a.as_dict(), &y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x) {
        const Value* w = b.find(k);
        if (!w || !equal(v, *w)) return false;
      }
      return true;
    }
    case Value::Type::Namespace: return &a.as_namespace() == &b.as_namespace();
    case Value::Type::Callable: return &a.as_callable() == &b.as_callable();
    default: return false;
  }
}

bool less(const Value& a, const Value& b, Location where) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (a.is_list() && b.is_list()) {
    const List &x = a.as_list(), &y = b.as_list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (less(x[i], y[i], where)) return true;
      if (less(y[i], x[i], where)) return false;
    }
    return x.size() < y.size();
  }
  throw TemplateError("'<' not supported between instances of '" + a.type_name() + "' and '" + b.type_name() + "'",
                      where);
}

}  // namespace ringtune::jinja
