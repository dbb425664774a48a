// Building, validating and loading prepared (tokenized) datasets; see prepared_dataset.h.
#include "src/io/prepared_dataset.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "distributed/progress.h"
#include "src/error.h"
#include "src/file_kind.h"  // defines: data_file_problem
#include "src/io/h5.h"
#include "src/stop_signal.h"
#include "src/test_hooks.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

constexpr int64_t kFormatVersion = 1;
constexpr const char* kKind = "ringtune-prepared-dataset";

int64_t percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t i = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ";") + x;
  return s;
}

// Why an existing cache cannot be used for these inputs; empty if it can.
std::string cache_mismatch(const std::string& path, const std::string& data_hash,
                           const std::string& tok_hash, const std::string& fmt_hash,
                           const std::string& sources) {
  try {
    H5File f = H5File::open(path);
    if (!f.has_attr("kind") || f.attr_string("kind") != kKind) return "not a prepared dataset";
    if (f.attr_int("format_version") != kFormatVersion) return "older cache format";
    if (f.attr_string("sources") != sources) return "different data files";
    if (f.attr_string("data_hash") != data_hash) return "data changed";
    if (f.attr_string("tokenizer_hash") != tok_hash) return "tokenizer changed";
    if (f.attr_string("format_hash") != fmt_hash) return "prompt format or data options changed";
    return "";
  } catch (const InputError& e) {
    return std::string("unreadable cache (") + e.what() + ")";
  }
}

// The statistics attributes (cheap: no arrays are read).
PreparedStats read_stats(const H5File& f) {
  PreparedStats st;
  st.samples = f.attr_int("samples");
  st.tokens = f.attr_int("tokens");
  st.supervised_tokens = f.attr_int("supervised_tokens");
  st.length_min = f.attr_int("length_min");
  st.length_p50 = f.attr_int("length_p50");
  st.length_p90 = f.attr_int("length_p90");
  st.length_p99 = f.attr_int("length_p99");
  st.length_max = f.attr_int("length_max");
  return st;
}

}  // namespace

namespace {
// Samples the data held but training will not see (dropped as too long, skipped as invalid) or
// sees cut (truncated): one warning line from the preparation's report, also when the cache is
// reused, since `train` prepares without printing the report as `prepare` does.
void warn_of_left_out(const std::string& sources, std::string report) {
  if (report.find("dropped") == std::string::npos && report.find("skipped") == std::string::npos &&
      report.find("truncated") == std::string::npos)
    return;
  for (size_t at; (at = report.find("\n  ")) != std::string::npos;) report.replace(at, 3, " ");
  spdlog::warn("{}: {}", sources, report);
}
}  // namespace

std::string prepared_dataset_path(const std::string& output_dir, const std::string& split) {
  return (fs::path(output_dir) / "prepared" / (split + ".h5")).string();
}

std::string PreparedStats::describe() const {
  std::ostringstream o;
  o << samples << " samples, " << tokens << " tokens (" << supervised_tokens
    << " supervised), length min/p50/p90/p99/max " << length_min << "/" << length_p50 << "/"
    << length_p90 << "/" << length_p99 << "/" << length_max;
  return o.str();
}

PrepareResult prepare_dataset(const DataPipeline& pipeline, const std::vector<std::string>& inputs,
                              const std::string& out_path, bool force) {
  PrepareResult result;
  result.path = out_path;
  std::vector<std::string> abs_inputs;
  for (const auto& in : inputs) {
    const std::string problem = data_file_problem(in);
    if (!problem.empty()) throw InputError(in + ": " + problem);
    abs_inputs.push_back(fs::absolute(in).lexically_normal().string());
  }
  const std::string sources = join(abs_inputs);
  const std::string data_hash = file_fingerprint(abs_inputs);
  const std::string tok_hash = pipeline.tokenizer_hash();
  const std::string fmt_hash = pipeline.format_hash();

  result.created = !fs::exists(out_path);
  if (!result.created && !force) {
    result.reason = cache_mismatch(out_path, data_hash, tok_hash, fmt_hash, sources);
    if (result.reason.empty()) {
      result.reused = true;
      H5File f = H5File::open(out_path);
      result.stats = read_stats(f);
      spdlog::info("prepared data {} is up to date: {}", out_path, result.stats.describe());
      if (f.has_attr("report")) warn_of_left_out(sources, f.attr_string("report"));
      return result;
    }
    spdlog::info("rebuilding {}: {}", out_path, result.reason);
  } else {
    result.reason = force ? "forced" : "new";
  }

  DatasetReader reader(abs_inputs, pipeline.options, pipeline.renderer, *pipeline.tokenizer);
  // A failed preparation leaves nothing behind: its temporary file goes with `file`, and the
  // directories it created (prepared/, and output_dir when that is new) go with this guard
  // (destroyed after `file`) when they hold no file.
  struct CreatedDir {
    fs::path dir;  // the outermost directory this call creates; empty if none
    bool kept = false;
    ~CreatedDir() {
      std::error_code ec;
      if (dir.empty() || kept) return;
      for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec))
        if (!it->is_directory()) return;
      if (!ec) fs::remove_all(dir, ec);
    }
  } created_dir;
  for (fs::path d = fs::absolute(out_path).parent_path(); !d.empty() && !fs::exists(d); d = d.parent_path()) {
    created_dir.dir = d;
    if (d == d.parent_path()) break;
  }
  H5File file = H5File::create(out_path);
  std::vector<int64_t> offsets{0}, lines, lengths;
  int64_t supervised = 0;
  {
    H5Appender<int32_t> ids(file, "ids");
    H5Appender<uint8_t> mask(file, "loss_mask");
    EncodedSample s;
    while (reader.next(s)) {
      ids.append(s.ids.data(), s.ids.size());
      mask.append(s.loss_mask.data(), s.loss_mask.size());
      for (uint8_t m : s.loss_mask) supervised += m;
      offsets.push_back(offsets.back() + static_cast<int64_t>(s.ids.size()));
      lines.push_back(s.line);
      lengths.push_back(static_cast<int64_t>(s.ids.size()));
      test_hooks::sample_prepared(static_cast<int64_t>(lengths.size()));
      note_progress();  // rank 0 prepares while the other ranks wait (distributed/watchdog.h)
      if (stop_signalled())
        throw_if_stop_signalled("preparing " + out_path + " (" + std::to_string(lengths.size()) + " samples of " + sources +
                                  " done)",
                              "nothing was written; run again to prepare it");
    }
  }
  if (lengths.empty()) {  // nothing to train on: refused here rather than as an empty cache
    std::string why = "the file holds no sample";
    const DataReport& rep = reader.report();
    if (rep.samples > 0 || rep.invalid_total() > 0 || rep.dropped_too_long > 0 || rep.dropped_no_supervised > 0) {
      why = "every sample was skipped: " + rep.summary();  // the report, on one line
      for (size_t at; (at = why.find("\n  ")) != std::string::npos;) why.replace(at, 3, " ");
    }
    throw InputError(join(inputs) + ": no usable samples (" + why + ")");
  }
  file.write("offsets", offsets);
  file.write("source_line", lines);
  std::sort(lengths.begin(), lengths.end());
  PreparedStats& st = result.stats;
  st.samples = static_cast<int64_t>(lengths.size());
  st.tokens = offsets.back();
  st.supervised_tokens = supervised;
  st.length_min = lengths.empty() ? 0 : lengths.front();
  st.length_p50 = percentile(lengths, 0.5);
  st.length_p90 = percentile(lengths, 0.9);
  st.length_p99 = percentile(lengths, 0.99);
  st.length_max = lengths.empty() ? 0 : lengths.back();
  file.set_attr("kind", std::string(kKind));
  file.set_attr("format_version", kFormatVersion);
  file.set_attr("sources", sources);
  file.set_attr("data_hash", data_hash);
  file.set_attr("tokenizer_hash", tok_hash);
  file.set_attr("format_hash", fmt_hash);
  file.set_attr("samples", st.samples);
  file.set_attr("tokens", st.tokens);
  file.set_attr("supervised_tokens", st.supervised_tokens);
  file.set_attr("length_min", st.length_min);
  file.set_attr("length_p50", st.length_p50);
  file.set_attr("length_p90", st.length_p90);
  file.set_attr("length_p99", st.length_p99);
  file.set_attr("length_max", st.length_max);
  result.report = reader.report();
  file.set_attr("report", result.report.summary());
  file.commit();
  created_dir.kept = true;
  spdlog::info("prepared {}: {}", out_path, st.describe());
  warn_of_left_out(sources, result.report.summary());
  return result;
}

PreparedDataset PreparedDataset::load(const std::string& path) {
  H5File f = H5File::open(path);
  if (!f.has_attr("kind") || f.attr_string("kind") != kKind)
    throw InputError(path + ": not a ringtune prepared dataset");
  if (f.attr_int("format_version") != kFormatVersion)
    throw InputError(path + ": prepared dataset format_version " +
                     std::to_string(f.attr_int("format_version")) + " is not supported (expected " +
                     std::to_string(kFormatVersion) + "); run `ringtune prepare` again");
  PreparedDataset d;
  d.ids = f.read<int32_t>("ids");
  d.loss_mask = f.read<uint8_t>("loss_mask");
  d.offsets = f.read<int64_t>("offsets");
  d.source_line = f.read<int64_t>("source_line");
  const int64_t n = static_cast<int64_t>(d.ids.size());
  bool ok = d.loss_mask.size() == d.ids.size() && !d.offsets.empty() && d.offsets.front() == 0 &&
            d.offsets.back() == n && d.source_line.size() + 1 == d.offsets.size();
  for (size_t i = 1; ok && i < d.offsets.size(); ++i) ok = d.offsets[i] >= d.offsets[i - 1];
  if (!ok) throw InputError(path + ": inconsistent ids/loss_mask/offsets (corrupted prepared dataset)");
  d.stats = read_stats(f);
  d.data_hash = f.attr_string("data_hash");
  d.tokenizer_hash = f.attr_string("tokenizer_hash");
  d.format_hash = f.attr_string("format_hash");
  d.sources = f.attr_string("sources");
  if (d.stats.samples != d.size() || d.stats.tokens != n)
    throw InputError(path + ": statistics disagree with the stored arrays (corrupted prepared dataset)");
  return d;
}

}  // namespace ringtune
