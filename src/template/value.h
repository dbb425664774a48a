// Values of the template engine with Python's and Jinja2's semantics: undefined, none, bool, int,
// float, string (TString, with byte origins), list, dict (insertion-ordered, string keys),
// callables (built-ins, bound methods, macros) and namespaces (the one mutable object, as
// jinja2's namespace()). Lists and dicts are immutable, as in transformers' sandboxed environment.
// Conversions follow Python: str() (what `{{ x }}` prints: 'None', 'True', repr of lists and
// dicts, shortest float repr), repr(), JSON as json.dumps, truthiness, ==, <.
// defines: Value, List, Dict, Callable, Namespace, Args, TemplateError, Location
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "src/template/tstring.h"

namespace ringtune::jinja {

// Where in the template source a construct starts (1-based).
struct Location {
  int line = 0, column = 0;
};

// Any failure of lexing, parsing or rendering: the message names the location when known.
class TemplateError : public std::runtime_error {
 public:
  TemplateError(const std::string& what, Location where = {}) : std::runtime_error(what), where_(where) {}
  Location where() const { return where_; }

 private:
  Location where_;
};

class Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;

// Call arguments: positional, then keyword.
struct Args {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  const Value* get(size_t index, const char* name) const;  // positional index or keyword name
};

struct Callable {
  std::string name;
  std::function<Value(const Args&)> fn;
};

struct Namespace {
  Dict attrs;
};

class Value {
 public:
  enum class Type { Undefined, None, Bool, Int, Float, String, List, Dict, Callable, Namespace };

  Value() = default;  // undefined
  static Value undefined(std::string name = "") {
    Value v;
    v.undefined_name_ = std::move(name);
    return v;
  }
  static Value none() { return Value(Type::None); }
  Value(bool b) : type_(Type::Bool), b_(b) {}                     // NOLINT
  Value(int v) : type_(Type::Int), i_(v) {}                        // NOLINT
  Value(int64_t v) : type_(Type::Int), i_(v) {}                    // NOLINT
  Value(double v) : type_(Type::Float), f_(v) {}                   // NOLINT
  Value(TString s);                                                 // NOLINT
  Value(std::string s) : Value(TString(std::move(s))) {}           // NOLINT
  Value(const char* s) : Value(TString(std::string(s))) {}         // NOLINT
  Value(List l);                                                    // NOLINT
  static Value tuple(List l);  // a list that prints and compares as a Python tuple
  Value(Dict d);                                                    // NOLINT
  Value(Callable c);                                                // NOLINT
  Value(std::shared_ptr<Namespace> ns);                             // NOLINT

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::Undefined; }
  bool is_none() const { return type_ == Type::None; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_int() const { return type_ == Type::Int; }
  bool is_float() const { return type_ == Type::Float; }
  bool is_number() const { return type_ == Type::Int || type_ == Type::Float || type_ == Type::Bool; }
  bool is_string() const { return type_ == Type::String; }
  bool is_list() const { return type_ == Type::List; }  // lists and tuples
  bool is_tuple() const { return type_ == Type::List && tuple_; }
  bool is_dict() const { return type_ == Type::Dict; }
  bool is_callable() const { return type_ == Type::Callable; }
  bool is_namespace() const { return type_ == Type::Namespace; }
  const std::string& undefined_name() const { return undefined_name_; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return type_ == Type::Bool ? (b_ ? 1 : 0) : i_; }
  double as_double() const;  // int, float or bool
  // TemplateError "expected a string, got int" (without a location) when the value is of another
  // type: a template may pass anything where a builtin wants a string or a list.
  const TString& as_tstring() const { return *held(s_, "a string"); }
  const std::string& as_string() const { return held(s_, "a string")->str(); }
  const List& as_list() const { return *held(l_, "a list"); }
  const Dict& as_dict() const { return *held(d_, "a dict"); }
  const Callable& as_callable() const { return *held(c_, "a callable"); }
  Namespace& as_namespace() const { return *held(ns_, "a namespace"); }

  // Python's bool(x); an undefined value is false.
  bool truthy() const;
  // Python's str(x) (what {{ x }} prints; undefined prints nothing), keeping string origins.
  TString str() const;
  // Python's repr(x): strings quoted as Python quotes them.
  std::string repr() const;
  // json.dumps(x, ensure_ascii=False, indent, separators, sort_keys); indent < 0: none.
  TString to_json(int indent = -1, const std::string& item_sep = "", const std::string& key_sep = "",
                  bool sort_keys = false) const;
  // Python's type name, for messages ("str", "list", "dict", "NoneType", "undefined").
  std::string type_name() const;
  // Dict lookup (nullptr when absent or not a dict).
  const Value* find(const std::string& key) const;
  // Items to iterate: a list's elements, a dict's keys, a string's characters (UTF-8 code
  // points); an undefined value iterates as empty. TemplateError for anything else.
  List iterate(Location where) const;
  // Python's len(); TemplateError when it has none.
  int64_t length(Location where) const;

 private:
  explicit Value(Type t) : type_(t) {}
  template <typename P>
  const P& held(const P& p, const char* expected) const {
    if (!p) throw TemplateError(std::string("expected ") + expected + ", got " + type_name());
    return p;
  }
  Type type_ = Type::Undefined;
  bool b_ = false;
  bool tuple_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const TString> s_;
  std::shared_ptr<const List> l_;
  std::shared_ptr<const Dict> d_;
  std::shared_ptr<const Callable> c_;
  std::shared_ptr<Namespace> ns_;
  std::string undefined_name_;
};

// Python's ==.
bool equal(const Value& a, const Value& b);
// Python's a < b; TemplateError for types Python cannot order.
bool less(const Value& a, const Value& b, Location where);
// Python's repr of a float ('1.0', '0.1', '1e+16', 'inf').
std::string float_repr(double v);
// Python's repr of a str.
std::string string_repr(const std::string& s);

}  // namespace ringtune::jinja
