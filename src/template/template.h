// A Jinja2 template engine for Hugging Face chat templates, written for ringtune: parse once,
// render with a context of variables. Semantics are jinja2's as transformers configures it for
// apply_chat_template (trim_blocks, lstrip_blocks, loop controls, an immutable sandbox: lists and
// dicts cannot be modified), with the filters, tests, methods and globals chat templates use
// (builtins.h lists them). Rendering is bounded: output size, loop iterations and call depth
// have limits, each failing with a clear error instead of hanging or overflowing the stack.
// defines: Template, RenderLimits, RenderResult, TemplateRaised
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "src/template/value.h"

namespace ringtune::jinja {

struct Stmt;

// raise_exception(message) was called by the template (e.g. "roles must alternate").
class TemplateRaised : public TemplateError {
 public:
  TemplateRaised(const std::string& message, Location where) : TemplateError(message, where) {}
};

struct RenderLimits {
  int64_t max_output_bytes = int64_t{64} << 20;
  int64_t max_loop_iterations = 1'000'000;  // all loops of one render together (and range() sizes)
  int max_call_depth = 64;                   // nested macro calls
};

struct RenderResult {
  TString text;
  // Byte ranges of text written inside {% generation %} blocks, in order.
  std::vector<std::pair<size_t, size_t>> generation;
};

class Template {
 public:
  // TemplateError (with line:column) for a syntax error.
  static Template parse(const std::string& source);

  // `context`: the template's variables. Built-ins are added: range, namespace, dict,
  // raise_exception (throws TemplateRaised), strftime_now (the local time, strftime format).
  // TemplateError (with line:column) for a runtime error or an exceeded limit.
  RenderResult render(const Dict& context, const RenderLimits& limits = {}) const;

  bool uses_generation_blocks() const { return has_generation_; }

 private:
  std::shared_ptr<const std::vector<std::unique_ptr<Stmt>>> body_;
  bool has_generation_ = false;
};

}  // namespace ringtune::jinja
