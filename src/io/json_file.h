// Reading a whole JSON file, with errors (InputError) that name the file.
// defines: read_json_file
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <string>

namespace ringtune {

// The parsed contents of `path`. InputError "PATH: cannot open ..." or "PATH: invalid JSON: ...".
nlohmann::json read_json_file(const std::string& path);

}  // namespace ringtune
