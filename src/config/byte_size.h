// Sizes in bytes as users write them ("24GiB", "1.5 GB", "800MiB", "123456") and as ringtune prints
// them ("1.23 GiB", "456.0 MiB").
// defines: parse_bytes, format_bytes
#pragma once
#include <cstdint>
#include <string>

namespace ringtune {

// Decimal (KB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB) units, case-insensitive, B or none for
// bytes; std::invalid_argument naming the text otherwise.
int64_t parse_bytes(const std::string& text);
std::string format_bytes(int64_t bytes);

}  // namespace ringtune
