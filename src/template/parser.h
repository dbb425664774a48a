// Tokens -> syntax tree, with Jinja2's grammar and operator precedence (jinja2/parser.py): from
// loosest to tightest `x if c else y`, or, and, not, comparisons and `in`, + -, ~, * / // %, **,
// unary - +, then postfix `.name` `[index or slice]` `(call)`, filters `|f(args)` and tests
// `is [not] t`. Statements: if/elif/else, for (tuple targets, loop filter, else), set (plain,
// tuple, namespace attribute, block), macro, call, filter, break, continue, generation.
// defines: parse
#pragma once
#include <vector>

#include "src/template/ast.h"
#include "src/template/lexer.h"

namespace ringtune::jinja {

// TemplateError naming line:column for a syntax error, an unknown tag, an unclosed block, or
// nesting deeper than the parser's limit.
Body parse(const std::vector<Token>& tokens);

}  // namespace ringtune::jinja
