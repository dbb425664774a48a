// Subcommand option parsing and help text.
#include "src/cli/args.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <sstream>

#include "distributed/process_info.h"
#include "src/error.h"

namespace ringtune {

bool another_rank_leaves_it_to_rank0(const std::string& command) {
  const ProcessInfo proc = detect_process_info();
  if (proc.world_size <= 1 || proc.rank == 0) return false;
  spdlog::info("rank {} of {}: `ringtune {}` runs on rank 0 only; nothing to do here", proc.rank, proc.world_size, command);
  return true;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::optional<std::string> closest_match(const std::string& word,
                                         const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

ArgParser::ArgParser(std::string command, std::string usage, std::string summary,
                     std::vector<OptionSpec> options)
    : command_(std::move(command)),
      usage_(std::move(usage)),
      summary_(std::move(summary)),
      options_(std::move(options)) {}

const OptionSpec* ArgParser::find(const std::string& name) const {
  for (const auto& o : options_)
    if (o.name == name) return &o;
  return nullptr;
}

bool ArgParser::parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::cout << help();
      return false;
    }
    if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    const auto eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const OptionSpec* spec = find(name);
    if (!spec) {
      std::vector<std::string> names;
      for (const auto& o : options_) names.push_back(o.name);
      auto near = closest_match(name, names);
      throw InputError("ringtune " + command_ + ": unknown option --" + name +
                       (near ? " (did you mean --" + *near + "?)" : "") + "; see --help");
    }
    if (spec->value_name.empty()) {
      if (inline_value) throw InputError("ringtune " + command_ + ": --" + name + " takes no value");
      values_[name] = "true";
    } else {
      if (!inline_value) {
        if (i + 1 >= args.size())
          throw InputError("ringtune " + command_ + ": --" + name + " needs a value (" +
                           spec->value_name + ")");
        value = args[++i];
      }
      values_[name] = value;
    }
  }
  return true;
}

bool ArgParser::has(const std::string& name) const {
  if (values_.count(name)) return true;
  const OptionSpec* s = find(name);
  return s && !s->default_value.empty();
}

std::string ArgParser::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it != values_.end()) return it->second;
  const OptionSpec* s = find(name);
  if (s && !s->default_value.empty()) return s->default_value;
  throw InputError("ringtune " + command_ + ": missing --" + name + "; see --help");
}

int64_t ArgParser::get_int(const std::string& name) const {
  const std::string v = get(name);
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used == v.size()) return x;
  } catch (...) {
  }
  throw InputError("ringtune " + command_ + ": --" + name + " expects an integer, got \"" + v + "\"");
}

double ArgParser::get_double(const std::string& name) const {
  const std::string v = get(name);
  try {
    size_t used = 0;
    const double x = std::stod(v, &used);
    if (used == v.size() && std::isfinite(x)) return x;
  } catch (...) {
  }
  throw InputError("ringtune " + command_ + ": --" + name + " expects a finite number, got \"" + v + "\"");
}

bool ArgParser::flag(const std::string& name) const { return values_.count(name) != 0; }

std::string ArgParser::help() const {
  std::ostringstream out;
  out << "usage: ringtune " << command_ << " " << usage_ << "\n\n" << summary_ << "\n";
  if (!options_.empty()) out << "\noptions:\n";
  for (const auto& o : options_) {
    std::string left = "  --" + o.name + (o.value_name.empty() ? "" : " " + o.value_name);
    if (left.size() < 30) left.resize(30, ' ');
    else left += "\n" + std::string(30, ' ');
    out << left << o.help;
    if (!o.default_value.empty()) out << " (default: " << o.default_value << ")";
    out << "\n";
  }
  out << "  --help                      this text\n";
  return out.str();
}

}  // namespace ringtune
