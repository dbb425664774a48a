// `ringtune report OUTPUT_DIR`: a self-contained OUTPUT_DIR/report.html (inline SVG, no script,
// nothing fetched) from OUTPUT_DIR/metrics.jsonl: loss and validation loss, learning rate,
// tokens/s and MFU, the step-time breakdown (stacked), and memory, over optimizer steps; plus a
// table of the run's figures.
//
// Every chart is an <svg class="chart"> whose plot area is the <rect class="plot"> and whose
// axes span data-x0..data-x1 and data-y0..data-y1 (attributes of the <svg>); each series is a
// <polyline class="series" data-name="NAME"> (or, stacked, a <polygon class="band">) with one
// point per step, so a reader can map points back to values: x = x0 + (px - left) / width *
// (x1 - x0), y = y0 + (bottom - py) / height * (y1 - y0).
// defines: write_report, report_html
#pragma once
#include <string>

namespace ringtune {

// The HTML of metrics.jsonl's text (`title` heads the page). InputError naming `source` and the
// line for a line that is not a JSON object with a numeric "step" (a torn last line is skipped).
std::string report_html(const std::string& metrics_jsonl, const std::string& source, const std::string& title);

// Reads OUTPUT_DIR/metrics.jsonl, writes OUTPUT_DIR/report.html atomically; returns its path.
std::string write_report(const std::string& output_dir);

}  // namespace ringtune
