// report.html from metrics.jsonl; see report.h.
#include "src/train/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "src/error.h"
#include "src/io/atomic_file.h"  // defines: atomic_write

namespace fs = std::filesystem;

namespace ringtune {

namespace {

struct Row {
  double step = 0;
  std::map<std::string, double> v;  // loss, valid_loss, lr, ..., ms.data, ...
};

std::string num(double x, const char* f = "%.4g") {
  char b[64];
  std::snprintf(b, sizeof(b), f, x);
  return b;
}

std::string px(double x) { return num(x, "%.2f"); }

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

// A tick spacing of 1, 2 or 5 times a power of ten giving about `n` intervals over `range`.
double nice_step(double range, int n) {
  const double raw = range / n, p = std::pow(10.0, std::floor(std::log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

struct Series {
  std::string name, color;
  std::vector<std::pair<double, double>> pts;  // (step, value)
};

constexpr double kW = 760, kH = 250, kLeft = 70, kRight = 170, kTop = 34, kBottom = 40;

struct Frame {
  double x0, x1, y0, y1;
  double left = kLeft, right = kW - kRight, top = kTop, bottom = kH - kBottom;
  double X(double x) const { return left + (x - x0) / (x1 - x0) * (right - left); }
  double Y(double y) const { return bottom - (y - y0) / (y1 - y0) * (bottom - top); }
};

Frame frame_for(double x0, double x1, double y0, double y1, bool from_zero) {
  if (from_zero) y0 = std::min(0.0, y0);
  if (!(y1 > y0)) {
    const double pad = std::abs(y0) > 0 ? std::abs(y0) * 0.05 : 1.0;
    y0 -= pad;
    y1 += pad;
  } else if (!from_zero) {
    const double pad = (y1 - y0) * 0.05;
    y0 -= pad;
    y1 += pad;
  } else {
    y1 += (y1 - y0) * 0.05;
  }
  if (!(x1 > x0)) x1 = x0 + 1;
  return {x0, x1, y0, y1};
}

// The <svg> element's opening, axes, ticks, grid and title.
std::string open_chart(const std::string& id, const std::string& title, const std::string& ylabel, const Frame& f) {
  std::ostringstream o;
  o << "<svg class=\"chart\" id=\"" << id << "\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\""
    << kH << "\" viewBox=\"0 0 " << kW << " " << kH << "\" data-x0=\"" << num(f.x0, "%.17g") << "\" data-x1=\""
    << num(f.x1, "%.17g") << "\" data-y0=\"" << num(f.y0, "%.17g") << "\" data-y1=\"" << num(f.y1, "%.17g")
    << "\">\n";
  o << "<text x=\"" << px(f.left) << "\" y=\"20\" class=\"title\">" << esc(title) << "</text>\n";
  o << "<rect class=\"plot\" x=\"" << px(f.left) << "\" y=\"" << px(f.top) << "\" width=\"" << px(f.right - f.left)
    << "\" height=\"" << px(f.bottom - f.top) << "\"/>\n";
  const double ys = nice_step(f.y1 - f.y0, 5);
  for (double y = std::ceil(f.y0 / ys) * ys; y <= f.y1 + 1e-12 * std::abs(f.y1); y += ys) {
    o << "<line class=\"grid\" x1=\"" << px(f.left) << "\" x2=\"" << px(f.right) << "\" y1=\"" << px(f.Y(y))
      << "\" y2=\"" << px(f.Y(y)) << "\"/><text class=\"tick\" x=\"" << px(f.left - 6) << "\" y=\"" << px(f.Y(y) + 4)
      << "\" text-anchor=\"end\">" << num(std::abs(y) < ys * 1e-9 ? 0 : y) << "</text>\n";
  }
  const double xs = std::max(1.0, nice_step(f.x1 - f.x0, 8));
  for (double x = std::ceil(f.x0 / xs) * xs; x <= f.x1 + 1e-9; x += xs)
    o << "<text class=\"tick\" x=\"" << px(f.X(x)) << "\" y=\"" << px(f.bottom + 16) << "\" text-anchor=\"middle\">"
      << num(x, "%.0f") << "</text>\n";
  o << "<text class=\"axis\" x=\"" << px((f.left + f.right) / 2) << "\" y=\"" << px(kH - 6)
    << "\" text-anchor=\"middle\">step</text>\n";
  o << "<text class=\"axis\" transform=\"translate(14," << px((f.top + f.bottom) / 2) << ") rotate(-90)\" "
    << "text-anchor=\"middle\">" << esc(ylabel) << "</text>\n";
  return o.str();
}

std::string legend(const std::vector<std::pair<std::string, std::string>>& items, const Frame& f) {
  std::ostringstream o;
  double y = f.top + 8;
  for (const auto& [name, color] : items) {
    o << "<rect x=\"" << px(f.right + 12) << "\" y=\"" << px(y - 8) << "\" width=\"12\" height=\"10\" fill=\"" << color
      << "\"/><text class=\"legend\" x=\"" << px(f.right + 30) << "\" y=\"" << px(y + 1) << "\">" << esc(name)
      << "</text>\n";
    y += 16;
  }
  return o.str();
}

std::string line_chart(const std::string& id, const std::string& title, const std::string& ylabel,
                       const std::vector<Series>& all, bool from_zero = false) {
  std::vector<Series> series;
  for (const auto& s : all)
    if (!s.pts.empty()) series.push_back(s);
  if (series.empty()) return "";
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& s : series)
    for (const auto& [x, y] : s.pts) {
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  const Frame f = frame_for(x0, x1, y0, y1, from_zero);
  std::ostringstream o;
  o << open_chart(id, title, ylabel, f);
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& s : series) {
    o << "<polyline class=\"series\" data-name=\"" << esc(s.name) << "\" fill=\"none\" stroke=\"" << s.color
      << "\" stroke-width=\"1.5\" points=\"";
    for (size_t i = 0; i < s.pts.size(); ++i)
      o << (i ? " " : "") << px(f.X(s.pts[i].first)) << "," << px(f.Y(s.pts[i].second));
    o << "\"/>\n";
    if (s.pts.size() <= 60)  // few points (validation): mark them
      for (const auto& [x, y] : s.pts)
        o << "<circle cx=\"" << px(f.X(x)) << "\" cy=\"" << px(f.Y(y)) << "\" r=\"2.5\" fill=\"" << s.color << "\"/>\n";
    items.emplace_back(s.name, s.color);
  }
  o << legend(items, f) << "</svg>\n";
  return o.str();
}

// Components stacked from zero, one band per component (its lower and upper edges).
std::string stacked_chart(const std::string& id, const std::string& title, const std::string& ylabel,
                          const std::vector<double>& steps, const std::vector<Series>& parts) {
  if (steps.empty()) return "";
  std::vector<double> top(steps.size(), 0.0);
  for (const auto& p : parts)
    for (size_t i = 0; i < steps.size(); ++i) top[i] += p.pts[i].second;
  const Frame f = frame_for(steps.front(), steps.back(), 0, *std::max_element(top.begin(), top.end()), true);
  std::ostringstream o;
  o << open_chart(id, title, ylabel, f);
  std::vector<double> low(steps.size(), 0.0);
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& p : parts) {
    std::vector<double> high(low);
    for (size_t i = 0; i < steps.size(); ++i) high[i] += p.pts[i].second;
    o << "<polygon class=\"band\" data-name=\"" << esc(p.name) << "\" fill=\"" << p.color
      << "\" fill-opacity=\"0.85\" points=\"";
    for (size_t i = 0; i < steps.size(); ++i) o << (i ? " " : "") << px(f.X(steps[i])) << "," << px(f.Y(high[i]));
    for (size_t i = steps.size(); i-- > 0;) o << " " << px(f.X(steps[i])) << "," << px(f.Y(low[i]));
    o << "\"/>\n";
    items.emplace_back(p.name, p.color);
    low = high;
  }
  std::reverse(items.begin(), items.end());  // legend top to bottom as the bands
  o << legend(items, f) << "</svg>\n";
  return o.str();
}

std::vector<Row> parse(const std::string& text, const std::string& source) {
  std::vector<Row> rows;
  std::istringstream in(text);
  std::string line;
  int64_t n = 0;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  for (const auto& l : lines) {
    ++n;
    if (l.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(l);
    } catch (const nlohmann::json::exception&) {
      if (n == static_cast<int64_t>(lines.size())) break;  // a torn last line (the run was killed mid-write)
      throw InputError(source + ":" + std::to_string(n) + ": not a JSON line");
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number())
      throw InputError(source + ":" + std::to_string(n) + ": not a metrics line (no numeric \"step\")");
    Row r;
    r.step = j["step"].get<double>();
    for (const auto& [k, v] : j.items()) {
      if (v.is_number()) r.v[k] = v.get<double>();
      if (k == "ms" && v.is_object())
        for (const auto& [mk, mv] : v.items())
          if (mv.is_number()) r.v["ms." + mk] = mv.get<double>();
    }
    rows.push_back(std::move(r));
  }
  if (rows.empty()) throw InputError(source + ": no metrics lines (has the run made a step?)");
  return rows;
}

Series series(const std::vector<Row>& rows, const std::string& key, const std::string& name, const std::string& color,
              double scale = 1) {
  Series s{name, color, {}};
  for (const auto& r : rows) {
    const auto it = r.v.find(key);
    if (it != r.v.end() && std::isfinite(it->second)) s.pts.emplace_back(r.step, it->second * scale);
  }
  return s;
}

double mean_of(const Series& s) {
  double t = 0;
  for (const auto& p : s.pts) t += p.second;
  return s.pts.empty() ? NAN : t / static_cast<double>(s.pts.size());
}

}  // namespace

std::string report_html(const std::string& metrics_jsonl, const std::string& source, const std::string& title) {
  const std::vector<Row> rows = parse(metrics_jsonl, source);
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" << esc(title) << "</title>\n<style>\n"
    << "body{font-family:sans-serif;margin:24px;color:#222}h1{font-size:20px}table{border-collapse:collapse}"
    << "td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}td.n{text-align:right}"
    << "svg.chart{display:block;margin:18px 0}rect.plot{fill:none;stroke:#999}line.grid{stroke:#eee}"
    << "text{font-size:11px;fill:#333}text.title{font-size:14px;font-weight:bold}\n</style></head><body>\n";
  o << "<h1>" << esc(title) << "</h1>\n";

  const Series loss = series(rows, "loss", "train loss", "#1f77b4"), valid = series(rows, "valid_loss", "validation loss", "#d62728");
  const Series tps = series(rows, "tokens_per_s", "tokens/s", "#2ca02c"), mfu = series(rows, "mfu", "MFU (%)", "#9467bd", 100);
  const Series rss = series(rows, "rss_mib", "resident", "#8c564b"), peak = series(rows, "peak_rss_mib", "peak", "#e377c2");
  const Series step_ms = series(rows, "ms.step", "step", "#333");
  // The summary table.
  o << "<table>\n";
  auto row = [&o](const std::string& k, const std::string& v) {
    o << "<tr><th>" << esc(k) << "</th><td class=\"n\">" << esc(v) << "</td></tr>\n";
  };
  row("steps", num(rows.front().step, "%.0f") + " to " + num(rows.back().step, "%.0f") + " (" +
                   std::to_string(rows.size()) + " lines)");
  if (!loss.pts.empty()) row("train loss", num(loss.pts.front().second) + " → " + num(loss.pts.back().second));
  if (!valid.pts.empty()) {
    double best = valid.pts.front().second;
    for (const auto& p : valid.pts) best = std::min(best, p.second);
    row("validation loss", "last " + num(valid.pts.back().second) + ", best " + num(best));
  }
  if (!tps.pts.empty()) row("tokens/s (mean)", num(mean_of(tps), "%.0f"));
  if (!mfu.pts.empty()) row("MFU (mean)", num(mean_of(mfu), "%.3g") + "%");
  if (!step_ms.pts.empty()) row("step time (mean)", num(mean_of(step_ms), "%.1f") + " ms");
  if (!peak.pts.empty()) row("peak resident memory (rank 0)", num(peak.pts.back().second, "%.0f") + " MiB");
  if (rows.back().v.count("elapsed_s")) row("elapsed", num(rows.back().v.at("elapsed_s"), "%.1f") + " s");
  o << "</table>\n";

  o << line_chart("loss", "Loss", "loss", {loss, valid});
  o << line_chart("lr", "Learning rate", "lr", {series(rows, "lr", "learning rate", "#ff7f0e")}, true);
  o << line_chart("grad_norm", "Gradient norm", "norm", {series(rows, "grad_norm", "gradient norm", "#17becf")}, true);
  o << line_chart("throughput", "Throughput", "tokens/s", {tps}, true);
  o << line_chart("mfu", "Model FLOPs utilisation", "MFU (%)", {mfu}, true);
  // Step-time breakdown: only with every part on every line (runs from before the breakdown have none).
  const char* parts[][2] = {{"data", "#7f7f7f"},     {"forward", "#1f77b4"}, {"backward", "#ff7f0e"},
                            {"comm", "#2ca02c"},     {"optimizer", "#d62728"}, {"eval", "#9467bd"},
                            {"checkpoint", "#8c564b"}};
  std::vector<Series> bands;
  std::vector<double> steps;
  bool complete = true;
  for (const auto& r : rows) complete = complete && r.v.count("ms.step");
  if (complete) {
    for (const auto& r : rows) steps.push_back(r.step);
    for (const auto& p : parts) bands.push_back(series(rows, std::string("ms.") + p[0], p[0], p[1]));
    Series other{"other", "#bcbd22", {}};
    for (size_t i = 0; i < rows.size(); ++i) {
      double sum = 0;
      for (const auto& b : bands) sum += b.pts.size() == rows.size() ? b.pts[i].second : 0;
      other.pts.emplace_back(rows[i].step, std::max(0.0, rows[i].v.at("ms.step") - sum));
    }
    bands.erase(std::remove_if(bands.begin(), bands.end(), [&](const Series& b) { return b.pts.size() != rows.size(); }),
                bands.end());
    bands.push_back(other);
    o << stacked_chart("breakdown", "Step time (rank 0)", "ms", steps, bands);
  }
  o << line_chart("memory", "Memory (rank 0)", "MiB", {rss, peak}, true);
  o << "<p>From " << esc(source) << ". Charts are inline SVG; nothing is fetched.</p>\n</body></html>\n";
  return o.str();
}

std::string write_report(const std::string& output_dir) {
  const fs::path metrics = fs::path(output_dir) / "metrics.jsonl";
  std::ifstream in(metrics, std::ios::binary);
  if (!in) throw InputError(metrics.string() + ": cannot read (is " + output_dir + " a training output_dir?)");
  std::ostringstream text;
  text << in.rdbuf();
  const std::string html = report_html(text.str(), metrics.string(), "ringtune run " + output_dir);
  const std::string out = (fs::path(output_dir) / "report.html").string();
  atomic_write(out, html);
  return out;
}

}  // namespace ringtune
