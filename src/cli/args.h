// Command-line options of one subcommand: declared once (name, value or flag, help), parsed with
// errors that name the option and suggest the closest known one, and printed by --help.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ringtune {

struct OptionSpec {
  std::string name;        // without leading dashes, e.g. "max-new-tokens"
  std::string value_name;  // empty: a flag without a value
  std::string help;
  std::string default_value;  // shown in --help; used when the option is absent
};

class ArgParser {
 public:
  ArgParser(std::string command, std::string usage, std::string summary,
            std::vector<OptionSpec> options);
  // Parses argv after the subcommand. Returns false if --help was given (help was printed).
  // Throws InputError for unknown options or missing values.
  bool parse(const std::vector<std::string>& args);

  bool has(const std::string& name) const;  // given on the command line (or has a default)
  std::string get(const std::string& name) const;  // InputError "missing --name" if absent
  int64_t get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  bool flag(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }
  std::string help() const;

 private:
  const OptionSpec* find(const std::string& name) const;
  std::string command_, usage_, summary_;
  std::vector<OptionSpec> options_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// Levenshtein distance, and the closest candidate within a sensible distance (or nullopt).
// Commands that one process does for all (prepare, eval): launched by mpirun or srun on several
// ranks, the ranks other than 0 log that and return true (the caller ends with exit 0), so that
// they neither race rank 0 for the same files nor repeat its work.
bool another_rank_leaves_it_to_rank0(const std::string& command);

size_t edit_distance(const std::string& a, const std::string& b);
std::optional<std::string> closest_match(const std::string& word,
                                         const std::vector<std::string>& candidates);

}  // namespace ringtune
