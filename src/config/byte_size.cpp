// Byte sizes; see byte_size.h.
#include "src/config/byte_size.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <stdexcept>

namespace ringtune {

int64_t parse_bytes(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) throw std::invalid_argument("\"" + text + "\" is not a size (e.g. 24GiB, 1.5GB, 800MiB)");
  double v = 0;
  try {
    v = std::stod(text.substr(0, i));
  } catch (const std::exception&) {
    throw std::invalid_argument("\"" + text + "\" is not a size (e.g. 24GiB, 1.5GB, 800MiB)");
  }
  std::string unit = text.substr(i);
  unit.erase(std::remove(unit.begin(), unit.end(), ' '), unit.end());
  for (auto& ch : unit) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  static const std::map<std::string, double> units = {
      {"", 1.0},        {"b", 1.0},        {"k", 1e3},          {"kb", 1e3},           {"kib", 1024.0},
      {"m", 1e6},       {"mb", 1e6},       {"mib", 1048576.0},  {"g", 1e9},            {"gb", 1e9},
      {"gib", 1073741824.0}, {"t", 1e12},  {"tb", 1e12},        {"tib", 1099511627776.0}};
  const auto it = units.find(unit);
  if (it == units.end())
    throw std::invalid_argument("\"" + text + "\": unknown unit \"" + unit + "\" (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
  const double bytes = v * it->second;
  if (!(bytes >= 1) || bytes > 9.0e18) throw std::invalid_argument("\"" + text + "\" is not a usable size");
  return static_cast<int64_t>(bytes);
}

std::string format_bytes(int64_t bytes) {
  char buf[32];
  if (bytes >= (int64_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (int64_t{1} << 30));
  else std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (int64_t{1} << 20));
  return buf;
}

}  // namespace ringtune
