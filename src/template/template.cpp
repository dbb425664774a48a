// The template interpreter; see template.h. Scopes follow jinja2: a for loop's body has its own
// scope (assignments in it are not seen after the loop; namespace() attributes are how templates
// carry values out), if blocks have none, a macro sees the render context and its arguments.
#include "src/template/template.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <optional>
#include <unordered_map>

#include "src/template/ast.h"
#include "src/template/builtins.h"
#include "src/template/lexer.h"
#include "src/template/parser.h"

namespace ringtune::jinja {

namespace {

// ---------------------------------------------------------------------------------------------
// Static checks: every filter and test a template names exists (as jinja2 checks when compiling).

void check_expr(const Expr* e);

void check_exprs(const std::vector<ExprPtr>& v) {
  for (const auto& e : v) check_expr(e.get());
}

void check_expr(const Expr* e) {
  if (!e) return;
  if (e->kind == Expr::Kind::Filter && !has_filter(e->name)) throw TemplateError("unknown filter \"" + e->name + "\"", e->where);
  if (e->kind == Expr::Kind::Test && !has_test(e->name)) throw TemplateError("unknown test \"" + e->name + "\"", e->where);
  check_expr(e->a.get());
  check_expr(e->b.get());
  check_expr(e->c.get());
  check_exprs(e->items);
  check_exprs(e->values);
}

// How expressions use the variable `loop`: attribute names read (loop.index) into attrs, any
// other use sets whole.
struct LoopUses {
  std::vector<std::string> attrs;
  bool whole = false;
};

void loop_uses(const Body& body, LoopUses& u);

void loop_uses(const Expr* e, LoopUses& u) {
  if (!e) return;
  if (e->kind == Expr::Kind::GetAttr && e->a && e->a->kind == Expr::Kind::Name && e->a->name == "loop") {
    if (std::find(u.attrs.begin(), u.attrs.end(), e->name) == u.attrs.end()) u.attrs.push_back(e->name);
    return;
  }
  if (e->kind == Expr::Kind::Name && e->name == "loop") u.whole = true;
  loop_uses(e->a.get(), u);
  loop_uses(e->b.get(), u);
  loop_uses(e->c.get(), u);
  for (const auto* v : {&e->items, &e->values})
    for (const auto& x : *v) loop_uses(x.get(), u);
}

void loop_uses(const Body& body, LoopUses& u) {
  for (const auto& s : body) {
    for (const Expr* e : {s->expr.get(), s->cond.get(), s->filter.get()}) loop_uses(e, u);
    for (const auto& c : s->conditions) loop_uses(c.get(), u);
    for (const auto& p : s->params) loop_uses(p.second.get(), u);
    for (const auto& b : s->bodies) loop_uses(b, u);
    loop_uses(s->body, u);
    loop_uses(s->else_body, u);
  }
}

// Checks filters and tests, notes which for loops use `loop`; true when the template has
// {% generation %} blocks.
bool check_body(Body& body) {
  bool generation = false;
  for (auto& s : body) {
    check_expr(s->expr.get());
    check_expr(s->cond.get());
    check_expr(s->filter.get());
    check_exprs(s->conditions);
    for (const auto& p : s->params) check_expr(p.second.get());
    for (auto& b : s->bodies) generation |= check_body(b);
    generation |= check_body(s->body);
    generation |= check_body(s->else_body);
    generation |= s->kind == Stmt::Kind::Generation;
    if (s->kind == Stmt::Kind::For) {
      LoopUses u;
      loop_uses(s->body, u);
      s->loop_use = u.whole ? Stmt::LoopUse::whole : u.attrs.empty() ? Stmt::LoopUse::none : Stmt::LoopUse::attrs;
      s->loop_attrs = std::move(u.attrs);
    }
  }
  return generation;
}

// ---------------------------------------------------------------------------------------------
// Interpreter

class Interp {
 public:
  Interp(const RenderLimits& limits, const Dict& context) : lim_(limits), context_(context) {
    frames_.emplace_back();
  }

  RenderResult run(const Body& body) {
    RenderResult r;
    main_ = &r.text;
    exec_body(body, r.text);
    r.generation = std::move(generation_);
    return r;
  }

 private:
  enum class Flow { Normal, Break, Continue };
  using Frame = std::unordered_map<std::string, Value>;

  // ---- scopes

  // Scopes innermost first, then the render context, then the built-in globals.
  Value lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    for (const auto& [k, v] : context_)
      if (k == name) return v;
    return global(name);
  }
  void assign(const std::string& name, Value v) { frames_.back()[name] = std::move(v); }

  // range, namespace, dict, raise_exception, strftime_now; undefined for other names.
  Value global(const std::string& name) const {
    if (name == "range") return Value(Callable{"range", [this](const Args& a) {
      int64_t start = 0, stop = 0, step = 1;
      if (a.positional.size() == 1) {
        stop = a.positional[0].as_int();
      } else if (a.positional.size() >= 2) {
        start = a.positional[0].as_int();
        stop = a.positional[1].as_int();
        if (a.positional.size() >= 3) step = a.positional[2].as_int();
      } else {
        throw TemplateError("range expected at least 1 argument");
      }
      if (step == 0) throw TemplateError("range() arg 3 must not be zero");
      const long double n = std::max<long double>(0, std::ceil((static_cast<long double>(stop) - start) / step));
      if (n > static_cast<long double>(lim_.max_loop_iterations))
        throw TemplateError("range() too large (more than " + std::to_string(lim_.max_loop_iterations) + " items)");
      List out;
      out.reserve(static_cast<size_t>(n));
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
      return Value(std::move(out));
    }});
    if (name == "namespace") return Value(Callable{"namespace", [](const Args& a) {
      auto ns = std::make_shared<Namespace>();
      for (const Value& p : a.positional)
        if (p.is_dict()) ns->attrs = p.as_dict();
      for (const auto& [k, v] : a.keyword) {
        bool replaced = false;
        for (auto& kv : ns->attrs)
          if (kv.first == k) {
            kv.second = v;
            replaced = true;
          }
        if (!replaced) ns->attrs.emplace_back(k, v);
      }
      return Value(ns);
    }});
    if (name == "dict") return Value(Callable{"dict", [](const Args& a) {
      Dict d;
      for (const Value& p : a.positional)
        if (p.is_dict()) d = p.as_dict();
      for (const auto& kv : a.keyword) d.push_back(kv);
      return Value(std::move(d));
    }});
    if (name == "raise_exception") return Value(Callable{"raise_exception", [](const Args& a) -> Value {
      throw TemplateRaised(a.positional.empty() ? "raise_exception() called" : a.positional[0].str().str(), {});
    }});
    if (name == "strftime_now") return Value(Callable{"strftime_now", [](const Args& a) {
      const std::string fmt = a.positional.empty() ? "%Y-%m-%d" : a.positional[0].str().str();
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      const size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
      return Value(std::string(buf, n));
    }});
    return Value::undefined(name);
  }

  // ---- output

  void emit(TString& out, const TString& s, Location where) {
    out.append(s);
    check_output(out, where);
  }
  void emit(TString& out, const std::string& template_text, Location where) {
    out.append(template_text);
    check_output(out, where);
  }
  void check_output(const TString& out, Location where) const {
    if (static_cast<int64_t>(out.size()) > lim_.max_output_bytes)
      throw TemplateError("the template's output exceeds " + std::to_string(lim_.max_output_bytes) + " bytes", where);
  }

  // ---- statements

  Flow exec_body(const Body& body, TString& out) {
    for (const auto& s : body) {
      const Flow f = exec(*s, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec(const Stmt& s, TString& out) {
    switch (s.kind) {
      case Stmt::Kind::Text: emit(out, s.text, s.where); return Flow::Normal;
      case Stmt::Kind::Output: emit(out, eval(*s.expr).str(), s.where); return Flow::Normal;
      case Stmt::Kind::If:
        for (size_t i = 0; i < s.conditions.size(); ++i)
          if (eval(*s.conditions[i]).truthy()) return exec_body(s.bodies[i], out);
        return exec_body(s.else_body, out);
      case Stmt::Kind::For: return exec_for(s, out);
      case Stmt::Kind::Set: {
        Value v = eval(*s.expr);
        if (!s.attr_object.empty()) {
          Value ns = lookup(s.attr_object);
          if (!ns.is_namespace())
            throw TemplateError("cannot assign attribute on '" + s.attr_object + "' (not a namespace)", s.where);
          auto& attrs = ns.as_namespace().attrs;
          for (auto& kv : attrs)
            if (kv.first == s.attr_name) {
              kv.second = std::move(v);
              return Flow::Normal;
            }
          attrs.emplace_back(s.attr_name, std::move(v));
          return Flow::Normal;
        }
        bind(s.targets, v, s.where);
        return Flow::Normal;
      }
      case Stmt::Kind::SetBlock: {
        TString buf;
        exec_body(s.body, buf);
        Value v(std::move(buf));
        if (s.filter) v = apply_filter_chain(*s.filter, v);
        assign(s.targets[0], std::move(v));
        return Flow::Normal;
      }
      case Stmt::Kind::Macro: assign(s.name, make_macro(s)); return Flow::Normal;
      case Stmt::Kind::CallBlock: {
        const Expr& call = *s.expr;
        Value callee = eval(*call.a);
        if (!callee.is_callable()) throw TemplateError("{% call %} of something that is not a macro", s.where);
        Args args = eval_args(call);
        args.keyword.emplace_back("caller", Value(Callable{"caller", [this, &s](const Args& a) {
          Frame frame;
          for (size_t i = 0; i < s.params.size(); ++i) {
            const Value* v = a.get(i, s.params[i].first.c_str());
            frame[s.params[i].first] = v ? *v : s.params[i].second ? eval(*s.params[i].second) : Value::undefined(s.params[i].first);
          }
          frames_.push_back(std::move(frame));
          TString buf;
          exec_body(s.body, buf);
          frames_.pop_back();
          return Value(std::move(buf));
        }}));
        emit(out, call_value(callee, args, s.where).str(), s.where);
        return Flow::Normal;
      }
      case Stmt::Kind::FilterBlock: {
        TString buf;
        exec_body(s.body, buf);
        emit(out, apply_filter_chain(*s.filter, Value(std::move(buf))).str(), s.where);
        return Flow::Normal;
      }
      case Stmt::Kind::Break: return Flow::Break;
      case Stmt::Kind::Continue: return Flow::Continue;
      case Stmt::Kind::Generation: {
        const size_t begin = out.size();
        const Flow f = exec_body(s.body, out);
        if (&out == main_) generation_.emplace_back(begin, out.size());
        return f;
      }
    }
    return Flow::Normal;
  }

  void bind(const std::vector<std::string>& targets, const Value& v, Location where) {
    if (targets.size() == 1) {
      assign(targets[0], v);
      return;
    }
    const List items = v.iterate(where);
    if (items.size() != targets.size())
      throw TemplateError("cannot unpack " + std::to_string(items.size()) + " values into " +
                              std::to_string(targets.size()) + " names",
                          where);
    for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], items[i]);
  }

  Flow exec_for(const Stmt& s, TString& out) {
    const List all = eval(*s.expr).iterate(s.where);
    frames_.emplace_back();
    List items;
    if (s.cond) {
      for (const Value& item : all) {
        bind(s.targets, item, s.where);
        if (eval(*s.cond).truthy()) items.push_back(item);
      }
    } else {
      items = all;
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      if (++iterations_ > lim_.max_loop_iterations)
        throw TemplateError("more than " + std::to_string(lim_.max_loop_iterations) + " loop iterations", s.where);
      bind(s.targets, items[static_cast<size_t>(i)], s.where);
      if (s.loop_use != Stmt::LoopUse::none) assign("loop", loop_value(s, items, i));
      if (exec_body(s.body, out) == Flow::Break) break;
    }
    frames_.pop_back();
    if (n == 0) exec_body(s.else_body, out);
    return Flow::Normal;
  }

  // jinja2's loop object for item i: every attribute, or only those the body reads.
  static Value loop_value(const Stmt& s, const List& items, int64_t i) {
    const int64_t n = static_cast<int64_t>(items.size());
    const bool all = s.loop_use == Stmt::LoopUse::whole;
    const auto wanted = [&](const char* name) {
      return all || std::find(s.loop_attrs.begin(), s.loop_attrs.end(), name) != s.loop_attrs.end();
    };
    Dict d;
    const auto add = [&](const char* name, auto make) {
      if (wanted(name)) d.emplace_back(name, make());
    };
    add("index", [&] { return Value(i + 1); });
    add("index0", [&] { return Value(i); });
    add("revindex", [&] { return Value(n - i); });
    add("revindex0", [&] { return Value(n - i - 1); });
    add("first", [&] { return Value(i == 0); });
    add("last", [&] { return Value(i == n - 1); });
    add("length", [&] { return Value(n); });
    add("depth", [&] { return Value(static_cast<int64_t>(1)); });
    add("depth0", [&] { return Value(static_cast<int64_t>(0)); });
    add("previtem", [&] { return i > 0 ? items[static_cast<size_t>(i - 1)] : Value::undefined("loop.previtem"); });
    add("nextitem", [&] { return i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value::undefined("loop.nextitem"); });
    add("cycle", [&] {
      return Value(Callable{"cycle", [i](const Args& a) {
        if (a.positional.empty()) throw TemplateError("no items for cycling given");
        return a.positional[static_cast<size_t>(i) % a.positional.size()];
      }});
    });
    return Value(std::move(d));
  }

  Value make_macro(const Stmt& s) {
    return Value(Callable{s.name, [this, &s](const Args& a) {
      if (++depth_ > lim_.max_call_depth)
        throw TemplateError("macro calls nested more than " + std::to_string(lim_.max_call_depth) + " deep", s.where);
      // The macro sees the render context (the outermost frame) and its own arguments.
      std::vector<Frame> saved;
      saved.swap(frames_);
      frames_.push_back(saved.front());
      frames_.emplace_back();
      struct Restore {
        std::vector<Frame>& frames;
        std::vector<Frame>& saved;
        int& depth;
        ~Restore() {
          frames.swap(saved);
          --depth;
        }
      } restore{frames_, saved, depth_};
      size_t used = 0;
      for (size_t i = 0; i < s.params.size(); ++i) {
        const std::string& name = s.params[i].first;
        const Value* v = a.get(i, name.c_str());
        if (i < a.positional.size()) ++used;
        assign(name, v ? *v : s.params[i].second ? eval(*s.params[i].second) : Value::undefined(name));
      }
      List varargs(a.positional.begin() + static_cast<std::ptrdiff_t>(std::min(used, a.positional.size())), a.positional.end());
      assign("varargs", Value(std::move(varargs)));
      Dict kwargs;
      for (const auto& [k, v] : a.keyword) {
        bool param = false;
        for (const auto& p : s.params) param |= p.first == k;
        if (k == "caller") assign("caller", v);
        else if (!param) kwargs.emplace_back(k, v);
      }
      assign("kwargs", Value(std::move(kwargs)));
      TString buf;
      exec_body(s.body, buf);
      return Value(std::move(buf));
    }});
  }

  // ---- expressions

  Args eval_args(const Expr& e) {
    Args a;
    for (const auto& p : e.items) a.positional.push_back(eval(*p));
    for (size_t i = 0; i < e.kw_names.size(); ++i) a.keyword.emplace_back(e.kw_names[i], eval(*e.values[i]));
    return a;
  }

  Value call_value(const Value& callee, const Args& args, Location where) {
    if (callee.is_undefined())
      throw TemplateError((callee.undefined_name().empty() ? "a value" : "'" + callee.undefined_name() + "'") +
                              " is undefined and cannot be called",
                          where);
    if (!callee.is_callable()) throw TemplateError("'" + callee.type_name() + "' object is not callable", where);
    try {
      return callee.as_callable().fn(args);
    } catch (const TemplateRaised& e) {
      if (e.where().line) throw;
      throw TemplateRaised(e.what(), where);
    } catch (const TemplateError& e) {
      if (e.where().line) throw;
      throw TemplateError(e.what(), where);
    }
  }

  Value apply_filter_chain(const Expr& f, const Value& input) {
    const Value in = f.a ? apply_filter_chain(*f.a, input) : input;
    return call_filter(f.name, in, eval_args(f), f.where);
  }

  Value eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::Literal: return e.value;
      case Expr::Kind::Name: return lookup(e.name);
      case Expr::Kind::ListLit:
      case Expr::Kind::TupleLit: {
        List l;
        for (const auto& x : e.items) l.push_back(eval(*x));
        return e.kind == Expr::Kind::TupleLit ? Value::tuple(std::move(l)) : Value(std::move(l));
      }
      case Expr::Kind::DictLit: {
        Dict d;
        for (size_t i = 0; i < e.items.size(); ++i) {
          const Value k = eval(*e.items[i]);
          if (!k.is_string()) throw TemplateError("dict keys must be strings here, got " + k.type_name(), e.where);
          Value v = eval(*e.values[i]);
          bool replaced = false;
          for (auto& kv : d)
            if (kv.first == k.as_string()) {
              kv.second = v;
              replaced = true;
            }
          if (!replaced) d.emplace_back(k.as_string(), std::move(v));
        }
        return Value(std::move(d));
      }
      case Expr::Kind::GetAttr: return get_attribute(eval(*e.a), e.name, e.where);
      case Expr::Kind::GetItem: return get_item(eval(*e.a), eval(*e.b), e.where);
      case Expr::Kind::Slice: {
        const Value obj = eval(*e.a);
        Value parts[3];
        const Value* ptr[3] = {nullptr, nullptr, nullptr};
        for (int k = 0; k < 3; ++k)
          if (e.items[static_cast<size_t>(k)]) {
            parts[k] = eval(*e.items[static_cast<size_t>(k)]);
            ptr[k] = &parts[k];
          }
        return slice_value(obj, ptr[0], ptr[1], ptr[2], e.where);
      }
      case Expr::Kind::Call: return call_value(eval(*e.a), eval_args(e), e.where);
      case Expr::Kind::Filter: return call_filter(e.name, eval(*e.a), eval_args(e), e.where);
      case Expr::Kind::Test: {
        const bool r = call_test(e.name, eval(*e.a), eval_args(e), e.where);
        return Value(e.negated ? !r : r);
      }
      case Expr::Kind::Unary: {
        const Value v = eval(*e.a);
        if (e.op == "not") return Value(!v.truthy());
        if (e.op == "-") return unary_minus(v, e.where);
        if (!v.is_number()) throw TemplateError("bad operand type for unary +: '" + v.type_name() + "'", e.where);
        return v;
      }
      case Expr::Kind::Binary: {
        if (e.op == "and") {
          Value a = eval(*e.a);
          return a.truthy() ? eval(*e.b) : a;
        }
        if (e.op == "or") {
          Value a = eval(*e.a);
          return a.truthy() ? a : eval(*e.b);
        }
        if (e.op == "+" || e.op == "~") return concat(e);
        return binary_op(e.op, eval(*e.a), eval(*e.b), e.where);
      }
      case Expr::Kind::CondExpr:
        if (eval(*e.a).truthy()) return eval(*e.b);
        return e.c ? eval(*e.c) : Value::undefined("the conditional expression");
    }
    return Value();
  }

  // A chain a + b + c ... (or ~), evaluated left to right as Python does: while the result is a
  // string it grows in place instead of being copied at every step; other operands go through
  // binary_op.
  Value concat(const Expr& e) {
    const bool tilde = e.op == "~";
    std::vector<const Expr*> chain;
    const Expr* x = &e;
    for (; x->kind == Expr::Kind::Binary && x->op == e.op; x = x->a.get()) chain.push_back(x);
    std::reverse(chain.begin(), chain.end());  // the leftmost step first
    Value acc = eval(*x);
    std::optional<TString> text;  // the result so far, while it is a string being built
    for (const Expr* step : chain) {
      const Value b = eval(*step->b);
      if (tilde || (b.is_string() && (text || acc.is_string()))) {
        if (!text) text = tilde ? acc.str() : acc.as_tstring();
        const TString add = tilde ? b.str() : b.as_tstring();
        check_string_size(static_cast<long double>(text->size()) + add.size(), step->where);
        text->append(add);
        continue;
      }
      if (text) {
        acc = Value(std::move(*text));
        text.reset();
      }
      acc = binary_op(e.op, acc, b, step->where);
    }
    return text ? Value(std::move(*text)) : acc;
  }

  const RenderLimits& lim_;
  const Dict& context_;
  std::vector<Frame> frames_;
  int64_t iterations_ = 0;
  int depth_ = 0;
  TString* main_ = nullptr;
  std::vector<std::pair<size_t, size_t>> generation_;
};

}  // namespace

Template Template::parse(const std::string& source) {
  auto body = std::make_shared<Body>(jinja::parse(tokenize(source)));
  Template t;
  t.has_generation_ = check_body(*body);
  t.body_ = std::move(body);
  return t;
}

RenderResult Template::render(const Dict& context, const RenderLimits& limits) const {
  return Interp(limits, context).run(*body_);
}

}  // namespace ringtune::jinja
