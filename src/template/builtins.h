// The built-ins of the template engine, following jinja2 (filters.py, tests.py, its sandbox) and
// Python's str/list/dict methods:
//   filters  abs attr batch capitalize count default/d dictsort e/escape first float format indent
//            int items join last length list lower map max min reject rejectattr replace reverse
//            round safe select selectattr sort string sum title tojson trim unique upper wordcount
//   tests    boolean callable defined divisibleby eq/equalto/== escaped even false float ge/>=
//            gt/greaterthan/> in integer iterable le/<= lower lt/lessthan/< mapping ne/!= none
//            number odd sameas sequence string true undefined upper
//   methods  str: capitalize count endswith find format isalnum isalpha isdigit islower isspace
//            isupper join lower lstrip replace rfind rsplit rstrip split splitlines startswith strip
//            title upper; dict: get items keys values; list: count index
//   operators + - * / // % ** ~ == != < <= > >= in, attribute and item access, slices
// tojson is transformers' (ensure_ascii=False, indent, separators, sort_keys).
// defines: call_filter, has_filter, call_test, has_test, get_attribute, get_item, slice_value,
//          binary_op, unary_minus, kMaxStringBytes, check_string_size
#pragma once
#include <cstdint>
#include <string>

#include "src/template/value.h"

namespace ringtune::jinja {

bool has_filter(const std::string& name);
Value call_filter(const std::string& name, const Value& input, const Args& args, Location where);
bool has_test(const std::string& name);
bool call_test(const std::string& name, const Value& input, const Args& args, Location where);

// obj.name: a dict's method, else its item; a string's or list's method; a namespace's attribute.
// Missing: undefined. TemplateError when obj is undefined.
Value get_attribute(const Value& obj, const std::string& name, Location where);
// obj[key]: item first, then attribute (jinja2's order).
Value get_item(const Value& obj, const Value& key, Location where);
// obj[start:stop:step] of a list or string (Python semantics; null: omitted).
Value slice_value(const Value& obj, const Value* start, const Value* stop, const Value* step, Location where);
// Arithmetic, ~, comparisons and `in` (not `and`/`or`, which short-circuit in the interpreter).
Value binary_op(const std::string& op, const Value& a, const Value& b, Location where);
Value unary_minus(const Value& v, Location where);

// The longest string a render may build, output or intermediate (a value doubled in a loop, a
// huge indent): 64 MiB, the output's own default limit. check_string_size throws TemplateError
// "string too large" for more; callers check before they allocate.
constexpr int64_t kMaxStringBytes = int64_t{1} << 26;
void check_string_size(long double bytes, Location where);

}  // namespace ringtune::jinja
