// Jinja2 grammar; see parser.h.
#include "src/template/parser.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace ringtune::jinja {

namespace {

constexpr int kMaxDepth = 200;  // nesting of expressions and blocks

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : t_(tokens) {}

  Body run() {
    std::string end;
    Body body = parse_body({}, &end);
    if (peek().type != TokenType::End) error("unexpected " + describe(peek()));
    return body;
  }

 private:
  // ---- tokens

  const Token& peek(size_t k = 0) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  const Token& next() { return t_[std::min(i_++, t_.size() - 1)]; }
  [[noreturn]] void error(const std::string& what) const { throw TemplateError(what, peek().where); }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case TokenType::End: return "end of template";
      case TokenType::Text: return "template text";
      case TokenType::VarEnd: return "'}}'";
      case TokenType::BlockEnd: return "'%}'";
      case TokenType::String: return "string";
      default: return "'" + t.value + "'";
    }
  }
  bool is_op(const char* op, size_t k = 0) const { return peek(k).type == TokenType::Operator && peek(k).value == op; }
  bool is_name(const char* name, size_t k = 0) const { return peek(k).type == TokenType::Name && peek(k).value == name; }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    ++i_;
    return true;
  }
  bool accept_name(const char* name) {
    if (!is_name(name)) return false;
    ++i_;
    return true;
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) error(std::string("expected '") + op + "', got " + describe(peek()));
  }
  std::string expect_name() {
    if (peek().type != TokenType::Name) error("expected a name, got " + describe(peek()));
    return next().value;
  }
  void expect_block_end() {
    if (peek().type != TokenType::BlockEnd) error("expected '%}', got " + describe(peek()));
    ++i_;
  }

  struct DepthGuard {
    explicit DepthGuard(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxDepth) p_.error("template nested too deeply (more than " + std::to_string(kMaxDepth) + " levels)");
    }
    ~DepthGuard() { --p_.depth_; }
    Parser& p_;
  };

  // ---- statements

  // Statements until a block tag whose keyword is in `ends` (consumed: the keyword, not the rest
  // of its tag; *found = the keyword) or the end of the template (*found empty).
  Body parse_body(const std::vector<std::string>& ends, std::string* found) {
    DepthGuard guard(*this);
    Body body;
    found->clear();
    while (true) {
      const Token& t = peek();
      if (t.type == TokenType::End) {
        if (!ends.empty()) error("unclosed block: expected {% " + ends.back() + " %} before the end of the template");
        return body;
      }
      if (t.type == TokenType::Text) {
        auto s = std::make_unique<Stmt>(Stmt::Kind::Text, t.where);
        s->text = t.value;
        body.push_back(std::move(s));
        ++i_;
        continue;
      }
      if (t.type == TokenType::VarBegin) {
        ++i_;
        auto s = std::make_unique<Stmt>(Stmt::Kind::Output, t.where);
        s->expr = parse_tuple(true);
        if (peek().type != TokenType::VarEnd) error("expected '}}', got " + describe(peek()));
        ++i_;
        body.push_back(std::move(s));
        continue;
      }
      if (t.type != TokenType::BlockBegin) error("unexpected " + describe(t));
      ++i_;
      const Token& kw = peek();
      if (kw.type != TokenType::Name) error("expected a tag name after '{%', got " + describe(kw));
      for (const auto& e : ends)
        if (kw.value == e) {
          ++i_;
          *found = e;
          return body;
        }
      body.push_back(statement());
    }
  }

  StmtPtr statement() {
    const Token kw = next();
    const std::string& k = kw.value;
    if (k == "if") return parse_if(kw.where);
    if (k == "for") return parse_for(kw.where);
    if (k == "set") return parse_set(kw.where);
    if (k == "macro") return parse_macro(kw.where);
    if (k == "call") return parse_call(kw.where);
    if (k == "filter") return parse_filter_block(kw.where);
    if (k == "generation") {
      auto s = std::make_unique<Stmt>(Stmt::Kind::Generation, kw.where);
      expect_block_end();
      std::string end;
      s->body = parse_body({"endgeneration"}, &end);
      expect_block_end();
      return s;
    }
    if (k == "break" || k == "continue") {
      if (loop_depth_ == 0) throw TemplateError("'" + k + "' outside a for loop", kw.where);
      expect_block_end();
      return std::make_unique<Stmt>(k == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue, kw.where);
    }
    if (k == "elif" || k == "else" || k.rfind("end", 0) == 0)
      throw TemplateError("unexpected {% " + k + " %} (no open block it belongs to)", kw.where);
    throw TemplateError("unknown tag \"" + k + "\"", kw.where);
  }

  StmtPtr parse_if(Location where) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::If, where);
    s->conditions.push_back(parse_tuple(true));
    expect_block_end();
    while (true) {
      std::string end;
      s->bodies.push_back(parse_body({"elif", "else", "endif"}, &end));
      if (end == "elif") {
        s->conditions.push_back(parse_tuple(true));
        expect_block_end();
        continue;
      }
      if (end == "else") {
        expect_block_end();
        s->else_body = parse_body({"endif"}, &end);
      }
      expect_block_end();
      return s;
    }
  }

  std::vector<std::string> assign_targets() {
    std::vector<std::string> names;
    const bool paren = accept_op("(");
    do {
      names.push_back(expect_name());
    } while (accept_op(",") && peek().type == TokenType::Name);
    if (paren) expect_op(")");
    return names;
  }

  StmtPtr parse_for(Location where) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::For, where);
    s->targets = assign_targets();
    if (!accept_name("in")) error("expected 'in' in a for loop, got " + describe(peek()));
    s->expr = parse_tuple(false);
    if (accept_name("if")) s->cond = parse_expression(true);
    if (is_name("recursive")) error("recursive for loops are not supported");
    expect_block_end();
    ++loop_depth_;
    std::string end;
    s->body = parse_body({"else", "endfor"}, &end);
    --loop_depth_;
    if (end == "else") {
      expect_block_end();
      s->else_body = parse_body({"endfor"}, &end);
    }
    expect_block_end();
    return s;
  }

  StmtPtr parse_set(Location where) {
    if (peek().type == TokenType::Name && is_op(".", 1)) {
      auto s = std::make_unique<Stmt>(Stmt::Kind::Set, where);
      s->attr_object = expect_name();
      expect_op(".");
      s->attr_name = expect_name();
      expect_op("=");
      s->expr = parse_tuple(true);
      expect_block_end();
      return s;
    }
    std::vector<std::string> targets = assign_targets();
    if (accept_op("=")) {
      auto s = std::make_unique<Stmt>(Stmt::Kind::Set, where);
      s->targets = std::move(targets);
      s->expr = parse_tuple(true);
      expect_block_end();
      return s;
    }
    if (targets.size() != 1) error("a block set takes one name");
    auto s = std::make_unique<Stmt>(Stmt::Kind::SetBlock, where);
    s->targets = std::move(targets);
    if (accept_op("|")) s->filter = parse_filter_chain(nullptr);
    expect_block_end();
    std::string end;
    s->body = parse_body({"endset"}, &end);
    expect_block_end();
    return s;
  }

  void parse_params(std::vector<std::pair<std::string, ExprPtr>>& params) {
    expect_op("(");
    while (!accept_op(")")) {
      if (!params.empty()) expect_op(",");
      if (accept_op(")")) break;
      std::string name = expect_name();
      ExprPtr def;
      if (accept_op("=")) def = parse_expression(true);
      params.emplace_back(std::move(name), std::move(def));
    }
  }

  StmtPtr parse_macro(Location where) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::Macro, where);
    s->name = expect_name();
    parse_params(s->params);
    expect_block_end();
    std::string end;
    const int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_body({"endmacro"}, &end);
    loop_depth_ = saved;
    if (peek().type == TokenType::Name) ++i_;  // {% endmacro name %}
    expect_block_end();
    return s;
  }

  StmtPtr parse_call(Location where) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::CallBlock, where);
    if (is_op("(")) parse_params(s->params);
    s->expr = parse_expression(true);
    if (s->expr->kind != Expr::Kind::Call) throw TemplateError("{% call %} needs a macro call", where);
    expect_block_end();
    std::string end;
    s->body = parse_body({"endcall"}, &end);
    expect_block_end();
    return s;
  }

  StmtPtr parse_filter_block(Location where) {
    auto s = std::make_unique<Stmt>(Stmt::Kind::FilterBlock, where);
    s->filter = parse_filter_chain(nullptr);
    expect_block_end();
    std::string end;
    s->body = parse_body({"endfilter"}, &end);
    expect_block_end();
    return s;
  }

  // ---- expressions

  ExprPtr make(Expr::Kind k, Location w) { return std::make_unique<Expr>(k, w); }

  // Expressions separated by commas: a tuple, unless one without a trailing comma.
  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens = false) {
    const Location where = peek().where;
    std::vector<ExprPtr> items;
    bool trailing_comma = false;
    const auto at_end = [&] {
      return peek().type == TokenType::VarEnd || peek().type == TokenType::BlockEnd || is_op(")") || is_op("]") ||
             peek().type == TokenType::End;
    };
    while (true) {
      if (!items.empty()) {
        if (!accept_op(",")) break;
        trailing_comma = true;
      }
      if (at_end()) break;
      items.push_back(parse_expression(with_condexpr));
      trailing_comma = false;
    }
    if (items.size() == 1 && !trailing_comma) return std::move(items[0]);
    if (items.empty() && !explicit_parens) error("expected an expression, got " + describe(peek()));
    auto e = make(Expr::Kind::TupleLit, where);
    e->items = std::move(items);
    return e;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard guard(*this);
    ExprPtr e = parse_or();
    if (!with_condexpr) return e;
    while (is_name("if")) {
      const Location where = next().where;
      auto c = make(Expr::Kind::CondExpr, where);
      c->b = std::move(e);
      c->a = parse_or();
      if (accept_name("else")) c->c = parse_expression(true);
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr a, ExprPtr b, Location where) {
    auto e = make(Expr::Kind::Binary, where);
    e->op = op;
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      const Location w = next().where;
      e = binary("or", std::move(e), parse_and(), w);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      const Location w = next().where;
      e = binary("and", std::move(e), parse_not(), w);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      auto e = make(Expr::Kind::Unary, next().where);
      e->op = "not";
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr e = parse_math1();
    while (true) {
      const Location w = peek().where;
      std::string op;
      if (peek().type == TokenType::Operator &&
          (peek().value == "==" || peek().value == "!=" || peek().value == "<" || peek().value == "<=" ||
           peek().value == ">" || peek().value == ">=")) {
        op = next().value;
      } else if (is_name("in")) {
        ++i_;
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        i_ += 2;
        op = "not in";
      } else {
        return e;
      }
      e = binary(op, std::move(e), parse_math1(), w);
    }
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      e = binary(t.value, std::move(e), parse_concat(), t.where);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const Location w = next().where;
      e = binary("~", std::move(e), parse_math2(), w);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      e = binary(t.value, std::move(e), parse_pow(), t.where);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const Location w = next().where;
      e = binary("**", std::move(e), parse_unary(true), w);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      e = make(Expr::Kind::Unary, t.where);
      e->op = t.value;
      e->a = parse_unary(false);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filters_and_tests(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.type) {
      case TokenType::Name: {
        ++i_;
        auto e = make(Expr::Kind::Literal, t.where);
        if (t.value == "true" || t.value == "True") e->value = Value(true);
        else if (t.value == "false" || t.value == "False") e->value = Value(false);
        else if (t.value == "none" || t.value == "None") e->value = Value::none();
        else {
          e->kind = Expr::Kind::Name;
          e->name = t.value;
        }
        return e;
      }
      case TokenType::String: {
        auto e = make(Expr::Kind::Literal, t.where);
        std::string s;
        while (peek().type == TokenType::String) s += next().value;  // adjacent literals join
        e->value = Value(std::move(s));
        return e;
      }
      case TokenType::Integer: {
        ++i_;
        auto e = make(Expr::Kind::Literal, t.where);
        errno = 0;
        const long long v = std::strtoll(t.value.c_str(), nullptr, 10);
        if (errno == ERANGE) throw TemplateError("integer literal too large", t.where);
        e->value = Value(static_cast<int64_t>(v));
        return e;
      }
      case TokenType::Float: {
        ++i_;
        auto e = make(Expr::Kind::Literal, t.where);
        e->value = Value(std::strtod(t.value.c_str(), nullptr));
        return e;
      }
      case TokenType::Operator:
        if (t.value == "(") {
          ++i_;
          ExprPtr e = parse_tuple(true, true);
          expect_op(")");
          return e;
        }
        if (t.value == "[") {
          ++i_;
          auto e = make(Expr::Kind::ListLit, t.where);
          while (!accept_op("]")) {
            if (!e->items.empty()) expect_op(",");
            if (accept_op("]")) break;
            e->items.push_back(parse_expression(true));
          }
          return e;
        }
        if (t.value == "{") {
          ++i_;
          auto e = make(Expr::Kind::DictLit, t.where);
          while (!accept_op("}")) {
            if (!e->items.empty()) expect_op(",");
            if (accept_op("}")) break;
            e->items.push_back(parse_expression(true));
            expect_op(":");
            e->values.push_back(parse_expression(true));
          }
          return e;
        }
        break;
      default:
        break;
    }
    error("unexpected " + describe(t));
  }

  void parse_call_args(Expr& e) {
    while (!accept_op(")")) {
      if (!e.items.empty() || !e.values.empty()) expect_op(",");
      if (accept_op(")")) break;
      if (peek().type == TokenType::Name && is_op("=", 1)) {
        e.kw_names.push_back(next().value);
        ++i_;
        e.values.push_back(parse_expression(true));
      } else {
        if (!e.values.empty()) error("positional argument after a keyword argument");
        e.items.push_back(parse_expression(true));
      }
    }
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        const Location w = next().where;
        auto g = make(Expr::Kind::GetAttr, w);
        if (peek().type == TokenType::Name) {
          g->name = next().value;
        } else if (peek().type == TokenType::Integer) {
          g->kind = Expr::Kind::GetItem;
          auto idx = make(Expr::Kind::Literal, peek().where);
          idx->value = Value(static_cast<int64_t>(std::strtoll(next().value.c_str(), nullptr, 10)));
          g->b = std::move(idx);
        } else {
          error("expected an attribute name after '.', got " + describe(peek()));
        }
        g->a = std::move(e);
        e = std::move(g);
      } else if (is_op("[")) {
        const Location w = next().where;
        ExprPtr parts[3];
        int colons = 0;
        for (int k = 0; k < 3; ++k) {
          if (!is_op(":") && !is_op("]")) parts[k] = parse_expression(true);
          if (k < 2 && accept_op(":")) {
            ++colons;
            continue;
          }
          break;
        }
        expect_op("]");
        if (colons == 0) {
          auto g = make(Expr::Kind::GetItem, w);
          g->a = std::move(e);
          g->b = std::move(parts[0]);
          if (!g->b) throw TemplateError("empty subscript", w);
          e = std::move(g);
        } else {
          auto g = make(Expr::Kind::Slice, w);
          g->a = std::move(e);
          for (auto& p : parts) g->items.push_back(std::move(p));
          e = std::move(g);
        }
      } else if (is_op("(")) {
        const Location w = next().where;
        auto c = make(Expr::Kind::Call, w);
        c->a = std::move(e);
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  std::string dotted_name() {
    std::string name = expect_name();
    while (is_op(".") && peek(1).type == TokenType::Name) {
      ++i_;
      name += "." + next().value;
    }
    return name;
  }

  // `|name(args)|name...` after the `|` already consumed; `input` null in filter blocks.
  ExprPtr parse_filter_chain(ExprPtr input) {
    while (true) {
      const Location w = peek().where;
      auto f = make(Expr::Kind::Filter, w);
      f->name = dotted_name();
      if (accept_op("(")) parse_call_args(*f);
      f->a = std::move(input);
      input = std::move(f);
      if (!accept_op("|")) return input;
    }
  }

  ExprPtr parse_filters_and_tests(ExprPtr e) {
    while (true) {
      if (accept_op("|")) {
        e = parse_filter_chain(std::move(e));
        e = parse_postfix(std::move(e));
      } else if (is_name("is")) {
        const Location w = next().where;
        auto t = make(Expr::Kind::Test, w);
        t->negated = accept_name("not");
        t->name = dotted_name();
        if (accept_op("(")) {
          parse_call_args(*t);
        } else if ((peek().type == TokenType::String || peek().type == TokenType::Integer ||
                    peek().type == TokenType::Float || is_op("[") || is_op("{") ||
                    (peek().type == TokenType::Name && !is_name("else") && !is_name("or") && !is_name("and") &&
                     !is_name("if") && !is_name("in") && !is_name("not") && !is_name("is")))) {
          t->items.push_back(parse_primary());
          t->items.back() = parse_postfix(std::move(t->items.back()));
        }
        t->a = std::move(e);
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  const std::vector<Token>& t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Body parse(const std::vector<Token>& tokens) { return Parser(tokens).run(); }

}  // namespace ringtune::jinja
