// The syntax tree of a parsed template: expressions and statements, each with its source
// location. Built by parser.h, walked by interpreter.h.
// defines: Expr, ExprPtr, Stmt, StmtPtr, Body
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "src/template/value.h"

namespace ringtune::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,    // value
    Name,       // name
    ListLit,    // items
    TupleLit,   // items
    DictLit,    // keys (items) and values (values)
    GetAttr,    // object (a), name
    GetItem,    // object (a), index (b)
    Slice,      // object (a), start (items[0]), stop (items[1]), step (items[2]); null: omitted
    Call,       // callee (a), items (positional), kw_names + values (keyword)
    Filter,     // input (a, null in a filter block), name, items/kw_names/values: arguments
    Test,       // input (a), name, items: arguments, negated
    Unary,      // op ("-", "+", "not"), a
    Binary,     // op, a, b ("and"/"or" short-circuit; "not in"; "~")
    CondExpr,   // b if a else c (c null: undefined)
  };
  Kind kind;
  Location where;
  Value value;
  std::string name, op;
  bool negated = false;
  ExprPtr a, b, c;
  std::vector<ExprPtr> items, values;
  std::vector<std::string> kw_names;

  Expr(Kind k, Location w) : kind(k), where(w) {}
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    Text,        // text
    Output,      // expr
    If,          // conditions[i] -> bodies[i]; else_body
    For,         // targets in expr [if cond]: body, else_body
    Set,         // targets (names) or (attr_object, attr_name) = expr
    SetBlock,    // targets[0] = rendered body (through filter when set)
    Macro,       // name(params with defaults): body
    CallBlock,   // expr (the call), params (the caller's): body
    FilterBlock, // filter (a Filter chain with null innermost input): body
    Break,
    Continue,
    Generation,  // {% generation %}: body (marks assistant output, TRL's convention)
  };
  Kind kind;
  Location where;
  std::string text;
  ExprPtr expr, cond, filter;
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  Body body, else_body;
  std::vector<std::string> targets;
  std::string attr_object, attr_name;
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // name, default (may be null)
  // For: how the body uses `loop`: not at all, only its attributes loop_attrs, or as a whole
  // (then every attribute is built each iteration).
  enum class LoopUse { none, attrs, whole } loop_use = LoopUse::whole;
  std::vector<std::string> loop_attrs;

  Stmt(Kind k, Location w) : kind(k), where(w) {}
};

}  // namespace ringtune::jinja
