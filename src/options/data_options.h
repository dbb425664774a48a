// The data path's options from a Config: tokenizer, prompt format (preset, auto, or an llmforge
// map) and DataOptions, as a DataSpec (src/data/data_pipeline.h builds the pipeline from it).
// defines: data_spec_from_config, make_data_pipeline (from a Config)
#pragma once
#include "src/data/data_pipeline.h"  // defines: DataSpec, DataPipeline

namespace ringtune {

class Config;  // src/config/registry.h

// InputError naming the key (and file:line) for an unusable value, e.g. a prompt_format map
// without {instruction}.
DataSpec data_spec_from_config(const Config& config);

// make_data_pipeline(data_spec_from_config(config)).
DataPipeline make_data_pipeline(const Config& config);

}  // namespace ringtune
