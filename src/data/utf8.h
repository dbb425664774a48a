// UTF-8 helpers for the data path: validation of raw input bytes, whitespace trimming that matches
// the reference chat templates, and quoting of user text for one-line error messages.
// defines: first_invalid_utf8, trim_whitespace, is_blank, quote_for_error
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace ringtune {

// Byte offset of the first byte that does not start or continue a well-formed UTF-8 sequence
// (overlong forms, surrogates U+D800..U+DFFF and code points above U+10FFFF are ill-formed), or
// -1 when the whole text is valid.
int64_t first_invalid_utf8(std::string_view text);

// Removes leading and trailing whitespace as JavaScript's String.prototype.trim does (the `trim`
// filter of @huggingface/jinja, used by the Llama 3 chat template): ASCII \t \n \v \f \r and space,
// U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 and U+FEFF.
// Python's str.strip() (llmforge's strip_whitespace) differs only on U+001C..U+001F and U+0085,
// which it strips too, and on U+FEFF, which it keeps. `text` must be valid UTF-8.
std::string_view trim_whitespace(std::string_view text);

// True when the text is empty or only the whitespace trim_whitespace removes.
bool is_blank(std::string_view text);

// `text` as a JSON string literal (quotes, escapes, control characters as \uXXXX) cut to about
// `max_bytes` bytes with "..." appended, so user data can be named in a one-line error message.
std::string quote_for_error(std::string_view text, size_t max_bytes = 40);

}  // namespace ringtune
