// Reading a PEFT LoRA adapter_config.json (as PEFT saves it and export.h writes it) into
// LoraOptions, for adapter_io.cpp's PEFT adapter directories.
// defines: read_peft_config
#pragma once
#include <string>

namespace ringtune {

struct LoraOptions;  // model/lora.h

// The adapter's options (rank, alpha, rsLoRA, targets, modules_to_save, bias, dropout). A missing
// or mistyped field, or a PEFT feature ringtune does not support (DoRA, rank_pattern, ...), is an
// InputError "FILE: KEY: reason".
LoraOptions read_peft_config(const std::string& file);

}  // namespace ringtune
