// Jinja2 template source -> tokens, with the whitespace rules transformers renders chat templates
// with: trim_blocks (the first newline after a block or comment tag is dropped), lstrip_blocks
// (spaces and tabs before a block or comment tag at the start of a line are dropped), the manual
// controls `{%-` `-%}` `{{-` `-}}` `{#-` `-#}` (strip all whitespace on that side) and `{%+` `+%}`
// (keep it), comments, and `{% raw %}` blocks.
// defines: TokenType, Token, tokenize
#pragma once
#include <string>
#include <vector>

#include "src/template/value.h"  // defines: Location, TemplateError

namespace ringtune::jinja {

enum class TokenType {
  Text,        // template text (value: the text after whitespace control)
  VarBegin,    // {{
  VarEnd,      // }}
  BlockBegin,  // {%
  BlockEnd,    // %}
  Name,
  String,      // value: the decoded literal
  Integer,
  Float,
  Operator,    // + - * / // % ** ~ ( ) [ ] { } , . : | = == != < <= > >=
  End,
};

struct Token {
  TokenType type = TokenType::End;
  std::string value;
  Location where;
};

// TemplateError naming line:column for an unclosed tag, comment, string or raw block, or a
// character that is not part of Jinja's expression syntax.
std::vector<Token> tokenize(const std::string& source);

}  // namespace ringtune::jinja
