// Tests of the configuration registry and loader (src/config): exact error messages for bad
// configs, suggestions, override precedence, lists, paths, prompt_format forms, the YAML dump
// round trip and the help text.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "src/config/registry.h"     // defines: load_config, Config, registry_help
#include "src/data/prompt_format.h"  // defines: prompt_format_preset_names
#include "src/error.h"               // defines: Error, InputError
#include "test_util.h"

namespace fs = std::filesystem;
using ringtune::Config;
using ringtune::InputError;
using ringtune::Origin;

namespace {

// ---------------------------------------------------------------------------------------------
// Helpers

// The two required keys, on lines 1 and 2; test text starts on line 3.
const std::string kBase = "initial_base_model_ckpt_path: /models/llama\ntrain_path: /data/train.jsonl\n";

Config load(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return ringtune::load_config_from_string(yaml, overrides, "cfg.yaml", "/base");
}

// The InputError message of loading `yaml`, or a note that it loaded.
std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    load(yaml, overrides);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(loaded without error)";
}

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("ringtune_test_config_" + std::to_string(::getpid()) + "_" + std::to_string(count_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  std::string write(const std::string& name, const std::string& text) const {
    fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

 private:
  static inline int count_ = 0;
  fs::path path_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Registry

TEST(ConfigRegistry, EveryKeyHasGroupHelpAndAFittingDefault) {
  const auto& reg = ringtune::default_registry();
  const std::vector<std::string> groups = {"model",      "data",        "training", "lora",
                                           "prompt",     "checkpoint", "distributed", "eval",
                                           "logging",    "compat"};
  EXPECT_EQ(reg.groups(), groups);
  for (const auto& k : reg.keys()) {
    EXPECT_FALSE(k.help.empty()) << k.name;
    EXPECT_FALSE(k.required && k.default_value) << k.name;
    if (!k.choices.empty() && k.default_value && k.type == ringtune::KeyType::String) {
      const auto& d = std::get<std::string>(*k.default_value);
      EXPECT_NE(std::find(k.choices.begin(), k.choices.end(), d), k.choices.end()) << k.name;
    }
  }
  for (const char* key :
       {"model_id", "initial_base_model_ckpt_path", "initial_adapter_model_ckpt_path",
        "tokenizer_path", "train_path", "valid_path", "test_path", "output_dir", "task",
        "dataset_format", "context_length", "train_on", "truncation", "on_invalid_sample",
        "allow_special_tokens_in_content", "packing", "num_epochs", "max_steps",
        "train_batch_size_per_device", "eval_batch_size_per_device", "global_batch_size",
        "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type", "num_warmup_steps",
        "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "seed",
        "gradient_checkpointing", "dtype", "lora_config.r", "lora_config.lora_alpha",
        "lora_config.lora_dropout", "lora_config.target_modules", "lora_config.use_rslora",
        "lora_config.bias", "lora_config.modules_to_save", "lora_config.init_lora_weights",
        "generation_config.prompt_format", "generation_config.prompt_format.system",
        "generation_config.prompt_format.user", "generation_config.prompt_format.assistant",
        "generation_config.prompt_format.trailing_assistant",
        "generation_config.prompt_format.bos", "generation_config.prompt_format.system_in_user",
        "generation_config.prompt_format.default_system_message", "eval_steps",
        "checkpoint_every_n_steps", "num_checkpoints_to_keep", "resume", "distributed.backend",
        "distributed.zero_stage", "distributed.timeout_s", "eval.generation", "eval.max_new_tokens", "logging.level",
        "logging.per_rank_files"}) {
    EXPECT_NE(reg.find(key), nullptr) << key;
  }
}

TEST(ConfigRegistry, DeclarationMistakesAreBugs) {
  ringtune::Registry reg;
  reg.declare("a.b", ringtune::KeyType::Int, "g", "help");
  EXPECT_THROW(reg.declare("a.b", ringtune::KeyType::Int, "g", "help"), ringtune::Error);
  EXPECT_THROW(reg.declare("a.b.c", ringtune::KeyType::Int, "g", "help"), ringtune::Error);
  EXPECT_THROW(reg.declare("a", ringtune::KeyType::Int, "g", "help"), ringtune::Error);
  EXPECT_THROW(reg.declare("x", ringtune::KeyType::Int, "g", "help").def("text"),
               ringtune::Error);
  EXPECT_THROW(reg.declare("y..z", ringtune::KeyType::Int, "g", "help"), ringtune::Error);
  EXPECT_TRUE(reg.is_section("a"));
  EXPECT_FALSE(reg.is_section("a.b"));
}

// ---------------------------------------------------------------------------------------------
// Loading and typed getters

TEST(ConfigLoad, DefaultsAndTypedGetters) {
  Config c = load(kBase);
  EXPECT_EQ(c.get_int("context_length"), 2048);
  EXPECT_DOUBLE_EQ(c.get_double("learning_rate"), 1e-4);
  EXPECT_EQ(c.get_string("lr_scheduler_type"), "cosine");
  EXPECT_TRUE(c.get_bool("packing"));
  EXPECT_EQ(c.get_strings("lora_config.target_modules"),
            (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_FALSE(c.is_set("valid_path"));
  EXPECT_FALSE(c.is_set("lora_config.r"));
  EXPECT_TRUE(c.is_set("learning_rate"));
  EXPECT_FALSE(c.is_explicit("learning_rate"));
  EXPECT_TRUE(c.is_explicit("train_path"));
  EXPECT_EQ(c.get_string("train_path"), "/data/train.jsonl");
  EXPECT_EQ(c.get_string("resume"), "auto");
}

TEST(ConfigLoad, ScalarsOfEveryType) {
  Config c = load(kBase +
                  "context_length: 512\n"
                  "learning_rate: 2e-5\n"
                  "weight_decay: 0\n"
                  "packing: no\n"
                  "gradient_checkpointing: True\n"
                  "model_id: 123\n"
                  "seed: -0\n");
  EXPECT_EQ(c.get_int("context_length"), 512);
  EXPECT_DOUBLE_EQ(c.get_double("learning_rate"), 2e-5);
  EXPECT_DOUBLE_EQ(c.get_double("weight_decay"), 0.0);
  EXPECT_FALSE(c.get_bool("packing"));
  EXPECT_TRUE(c.get_bool("gradient_checkpointing"));
  EXPECT_EQ(c.get_string("model_id"), "123");
  EXPECT_EQ(c.text("learning_rate"), "2e-5");
}

TEST(ConfigLoad, AllowedValuesIgnoreCase) {
  Config c = load(kBase +
                  "lr_scheduler_type: Cosine\n"
                  "resume: NONE\n"
                  "lora_config:\n"
                  "  r: 4\n"
                  "  init_lora_weights: True\n"
                  "  target_modules: [Q_PROJ]\n");
  EXPECT_EQ(c.get_string("lr_scheduler_type"), "cosine");
  EXPECT_EQ(c.get_string("resume"), "none");
  EXPECT_EQ(c.get_string("lora_config.init_lora_weights"), "true");
  EXPECT_EQ(c.get_strings("lora_config.target_modules"), std::vector<std::string>{"q_proj"});
}

TEST(ConfigLoad, GettingUndeclaredWrongTypeOrUnsetKeyIsABug) {
  Config c = load(kBase);
  try {
    c.get_int("learnig_rate");
    FAIL() << "no throw";
  } catch (const InputError&) {
    FAIL() << "an undeclared key is a bug, not bad input";
  } catch (const ringtune::Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "config key \"learnig_rate\" is not declared (a bug: declare it in "
              "src/config/keys.cpp)");
  }
  EXPECT_THROW(c.is_set("nope"), ringtune::Error);
  EXPECT_THROW(c.get_string("context_length"), ringtune::Error);
  EXPECT_THROW(c.get_double("context_length"), ringtune::Error);
  try {
    c.get_string("valid_path");
    FAIL() << "no throw";
  } catch (const ringtune::Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "config key \"valid_path\" is unset; check is_set() first (a bug)");
  }
}

TEST(ConfigLoad, NestedAndDottedKeysAndLineNumbers) {
  Config c = load(kBase +
                  "# a comment\n"           // 3
                  "lora_config:\n"          // 4
                  "  r: 16\n"               // 5
                  "  lora_alpha: 32\n"      // 6
                  "\n"                      // 7
                  "eval.max_new_tokens: 64\n"  // 8
                  "logging:\n"              // 9
                  "  level: debug\n");      // 10
  EXPECT_EQ(c.get_int("lora_config.r"), 16);
  EXPECT_DOUBLE_EQ(c.get_double("lora_config.lora_alpha"), 32.0);
  EXPECT_EQ(c.get_int("eval.max_new_tokens"), 64);
  EXPECT_EQ(c.get_string("logging.level"), "debug");
  EXPECT_EQ(c.origin("lora_config.r").line, 5);
  EXPECT_EQ(c.origin("lora_config.lora_alpha").describe(), "cfg.yaml:6");
  EXPECT_EQ(c.origin("eval.max_new_tokens").describe(), "cfg.yaml:8");
  EXPECT_EQ(c.origin("logging.level").describe(), "cfg.yaml:10");
  EXPECT_EQ(c.origin("learning_rate").kind, Origin::Kind::Default);
}

TEST(ConfigLoad, EmptySectionAndEmptyFileUseDefaults) {
  Config c = load(kBase + "lora_config:\n");
  EXPECT_FALSE(c.is_set("lora_config.r"));
  EXPECT_EQ(error_of(""),
            "cfg.yaml: missing required key \"initial_base_model_ckpt_path\": Local Hugging Face "
            "model directory (config.json, *.safetensors, tokenizer files) to fine-tune.");
}

TEST(ConfigLoad, FromFileWithRealNameAndLines) {
  TempDir dir;
  std::string path = dir.write("cfg.yaml", kBase + "learning_rate: 3e-4\nlearnig_rate: 1\n");
  try {
    ringtune::load_config(path);
    FAIL() << "no throw";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              path + ":4: unknown key \"learnig_rate\" (did you mean \"learning_rate\"?)");
  }
  std::string good = dir.write("good.yaml", kBase + "learning_rate: 3e-4\n");
  Config c = ringtune::load_config(good);
  EXPECT_EQ(c.origin("learning_rate").describe(), good + ":3");
  EXPECT_EQ(c.source_name(), good);
}

// ---------------------------------------------------------------------------------------------
// Bad configs: every message exactly

TEST(ConfigErrors, UnknownKeySuggestsByFullName) {
  EXPECT_EQ(error_of(kBase + "learnig_rate: 1e-4\n"),
            "cfg.yaml:3: unknown key \"learnig_rate\" (did you mean \"learning_rate\"?)");
  EXPECT_EQ(error_of(kBase + "lora_config:\n  r: 8\n  lora_alpah: 16\n"),
            "cfg.yaml:5: unknown key \"lora_config.lora_alpah\" (did you mean "
            "\"lora_config.lora_alpha\"?)");
}

TEST(ConfigErrors, UnknownKeySuggestsByLastComponent) {
  // A key in the wrong section, or at the top level.
  EXPECT_EQ(error_of(kBase + "r: 8\n"),
            "cfg.yaml:3: unknown key \"r\" (did you mean \"lora_config.r\"?)");
  EXPECT_EQ(error_of(kBase + "lora_config:\n  learning_rate: 1e-4\n"),
            "cfg.yaml:4: unknown key \"lora_config.learning_rate\" (did you mean "
            "\"learning_rate\"?)");
  EXPECT_EQ(error_of(kBase + "backend: nccl\n"),
            "cfg.yaml:3: unknown key \"backend\" (did you mean \"distributed.backend\"?)");
}

TEST(ConfigErrors, UnknownSectionAndPartialNames) {
  EXPECT_EQ(error_of(kBase + "lora_confg:\n  r: 8\n"),
            "cfg.yaml:3: unknown key \"lora_confg\" (did you mean \"lora_config\"?)");
  EXPECT_EQ(error_of(kBase + "epochs: 3\n"),
            "cfg.yaml:3: unknown key \"epochs\" (did you mean \"num_epochs\"?)");
  EXPECT_EQ(error_of(kBase + "warmup_steps: 10\n"),
            "cfg.yaml:3: unknown key \"warmup_steps\" (did you mean \"num_warmup_steps\"?)");
  EXPECT_EQ(error_of(kBase + "zzzqqqxx: 1\n"), "cfg.yaml:3: unknown key \"zzzqqqxx\"");
}

TEST(ConfigErrors, TypeErrors) {
  EXPECT_EQ(error_of(kBase + "\n\n\n\ncontext_length: abc\n"),
            "cfg.yaml:7: key \"context_length\": expected int, got \"abc\"");
  EXPECT_EQ(error_of(kBase + "num_epochs: 1.5\n"),
            "cfg.yaml:3: key \"num_epochs\": expected int, got \"1.5\"");
  EXPECT_EQ(error_of(kBase + "learning_rate: fast\n"),
            "cfg.yaml:3: key \"learning_rate\": expected float, got \"fast\"");
  EXPECT_EQ(error_of(kBase + "learning_rate: .nan\n"),
            "cfg.yaml:3: key \"learning_rate\": expected float, got \".nan\"");
  EXPECT_EQ(error_of(kBase + "packing: maybe\n"),
            "cfg.yaml:3: key \"packing\": expected bool, got \"maybe\"");
  EXPECT_EQ(error_of(kBase + "context_length: 99999999999999999999\n"),
            "cfg.yaml:3: key \"context_length\": expected int, got \"99999999999999999999\"");
}

TEST(ConfigErrors, ShapeErrors) {
  EXPECT_EQ(error_of(kBase + "context_length: [1, 2]\n"),
            "cfg.yaml:3: key \"context_length\": expected int, got a list");
  EXPECT_EQ(error_of(kBase + "learning_rate:\n  peak: 1\n"),
            "cfg.yaml:3: key \"learning_rate\": expected float, got a map");
  EXPECT_EQ(error_of(kBase + "lora_config: 8\n"),
            "cfg.yaml:3: key \"lora_config\": expected a map, got \"8\"");
  EXPECT_EQ(error_of(kBase + "lora_config:\n  r: 8\n  target_modules: [q_proj, [v_proj]]\n"),
            "cfg.yaml:5: key \"lora_config.target_modules\": expected list of strings, "
            "element 2 is a list");
  EXPECT_EQ(error_of("- a\n- b\n"),
            "cfg.yaml:1: expected a map of `key: value` pairs at the top level");
  EXPECT_EQ(error_of(kBase + "valid_path: \"\"\n"),
            "cfg.yaml:3: key \"valid_path\": expected path, got an empty string");
}

TEST(ConfigErrors, EnumErrorsListAllowedValues) {
  EXPECT_EQ(error_of(kBase + "lr_scheduler_type: cosin\n"),
            "cfg.yaml:3: key \"lr_scheduler_type\": \"cosin\" is not one of constant, linear, "
            "cosine (did you mean \"cosine\"?)");
  EXPECT_EQ(error_of(kBase + "dtype: fp8\n"),
            "cfg.yaml:3: key \"dtype\": \"fp8\" is not one of float32, bfloat16, float16");
  // A bad list element is reported on its own line.
  EXPECT_EQ(error_of(kBase +
                     "lora_config:\n"
                     "  r: 8\n"
                     "  target_modules:\n"
                     "    - q_proj\n"
                     "    - v_prj\n"),
            "cfg.yaml:7: key \"lora_config.target_modules\": \"v_prj\" is not one of q_proj, "
            "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, embed_tokens, lm_head, all-linear (did you mean "
            "\"v_proj\"?)");
}

TEST(ConfigErrors, DuplicateKeys) {
  EXPECT_EQ(error_of(kBase + "learning_rate: 1\nseed: 1\nlearning_rate: 2\n"),
            "cfg.yaml:5: key \"learning_rate\" is set twice, to different values (first at line 3)");
  EXPECT_EQ(error_of(kBase + "lora_config:\n  r: 8\nlora_config.r: 4\n"),
            "cfg.yaml:5: key \"lora_config.r\" is set twice, to different values (first at line 4)");
  // The same value twice (published llmforge configs repeat keys): accepted, with one warning.
  const ringtune::Config c = ringtune::load_config_from_string(kBase + "learning_rate: 1e-4\nseed: 3\nlearning_rate: 1e-4\n"
                                                   "lora_config:\n  r: 8\n  target_modules: [q_proj, v_proj]\n"
                                                   "lora_config.target_modules: [q_proj, v_proj]\n",
                                           {}, "cfg.yaml");
  EXPECT_DOUBLE_EQ(c.get_double("learning_rate"), 1e-4);
  EXPECT_EQ(c.origin("learning_rate").line, 3);
  EXPECT_EQ(c.warnings(), (std::vector<std::string>{
                              "cfg.yaml:5: key \"learning_rate\" is set twice with the same value (first at line 3); "
                              "the repetition is ignored",
                              "cfg.yaml:9: key \"lora_config.target_modules\" is set twice with the same value (first "
                              "at line 8); the repetition is ignored"}));
}

// The warning of a repeated key reaches the console once, also with several ranks.
TEST(ConfigErrors, RepeatedKeyWarnsOnce) {
  ringtune_test::TempDir dir("ringtune-config");
  const std::string cfg = dir.file("cfg.yaml");
  ringtune_test::write_file(cfg, kBase + "seed: 3\nseed: 3\n");
  const std::string expected = cfg + ":4: key \"seed\" is set twice with the same value (first at line 3)";
  for (int np : {1, 2}) {
    const auto r = np == 1 ? ringtune_test::run_ringtune("train " + cfg + " --dump-config")
                           : ringtune_test::run_ringtune_mpi(np, "train " + cfg + " --dump-config");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    size_t count = 0;
    for (size_t at = r.err.find(expected); at != std::string::npos; at = r.err.find(expected, at + 1)) ++count;
    EXPECT_EQ(count, 1u) << "np " << np << "\n" << r.err;
  }
}

TEST(ConfigErrors, BadYamlSyntaxNamesTheLine) {
  // yaml-cpp notices an unclosed flow list where the input ends (line 6), not where it opens.
  EXPECT_EQ(error_of(kBase + "lora_config:\n  target_modules: [q_proj,\n  r: 8\n"),
            "cfg.yaml:6: invalid YAML: end of sequence flow not found");
  EXPECT_EQ(error_of(kBase + "seed: 1\n  context_length: 2\n"),
            "cfg.yaml:4: invalid YAML: illegal map value");
  EXPECT_EQ(error_of(kBase + "---\nseed: 1\n"),
            "cfg.yaml: holds 2 YAML documents (separated by ---); expected one");
}

TEST(ConfigErrors, MissingFileAndDirectory) {
  TempDir dir;
  std::string missing = (dir.path() / "nope.yaml").string();
  try {
    ringtune::load_config(missing);
    FAIL() << "no throw";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              missing + ": cannot read config file (No such file or directory)");
  }
  try {
    ringtune::load_config(dir.path().string());
    FAIL() << "no throw";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              dir.path().string() + ": is a directory, expected a YAML config file");
  }
}

// A config may come through a pipe (`train <(envsubst < cfg.yaml)`, /dev/stdin): read once, like
// a file. A device that never ends (/dev/zero) stops at 16 MiB instead of filling memory.
TEST(ConfigErrors, APipeIsReadAndAnEndlessDeviceIsRefused) {
  TempDir dir;
  const std::string fifo = (dir.path() / "cfg.fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  std::thread writer([&] {
    std::ofstream out(fifo);
    out << "train_path: /data/t.jsonl\ninitial_base_model_ckpt_path: /m\nlearning_rate: 0.003\nvalid_path: v.jsonl\n";
  });
  const Config c = ringtune::load_config(fifo);
  writer.join();
  EXPECT_EQ(c.get_double("learning_rate"), 0.003);
  EXPECT_EQ(c.get_string("train_path"), "/data/t.jsonl");
  // Relative to the working directory: a pipe's own directory (/dev/fd, /proc/self/fd) means nothing.
  EXPECT_EQ(c.get_string("valid_path"), (std::filesystem::current_path() / "v.jsonl").string());
  try {
    ringtune::load_config("/dev/zero");
    FAIL() << "no throw";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), "/dev/zero: more than 16 MiB; expected a YAML config file");
  }
}

TEST(ConfigErrors, MissingRequiredKey) {
  EXPECT_EQ(error_of("initial_base_model_ckpt_path: /m\n"),
            "cfg.yaml: missing required key \"train_path\": Training data: JSONL, one sample "
            "per line (OpenAI messages, ShareGPT, Alpaca or {\"text\": ...}).");
  // Putting a required key back to null is the same as not setting it.
  EXPECT_EQ(error_of(kBase, {"train_path=null"}).substr(0, 47),
            "cfg.yaml: missing required key \"train_path\": Tr");
}

TEST(ConfigErrors, OverrideErrorsNameTheOverride) {
  EXPECT_EQ(error_of(kBase, {"learnig_rate=1e-4"}),
            "command line: override \"learnig_rate=1e-4\": unknown key \"learnig_rate\" (did "
            "you mean \"learning_rate\"?)");
  EXPECT_EQ(error_of(kBase, {"context_length=abc"}),
            "command line: override \"context_length=abc\": key \"context_length\": expected "
            "int, got \"abc\"");
  EXPECT_EQ(error_of(kBase, {"packing"}), "command line: override \"packing\": expected key=value");
  EXPECT_EQ(error_of(kBase, {"=3"}), "command line: override \"=3\": expected key=value");
  EXPECT_EQ(error_of(kBase, {"lora_config.target_modules=[q_proj,"}),
            "command line: override \"lora_config.target_modules=[q_proj,\": invalid YAML "
            "value: end of sequence flow not found");
  EXPECT_EQ(error_of(kBase, {"truncation=left"}),
            "command line: override \"truncation=left\": key \"truncation\": \"left\" is not "
            "one of drop, truncate_left, truncate_right (did you mean \"truncate_left\"?)");
}

// ---------------------------------------------------------------------------------------------
// Cross-key validation

TEST(ConfigValidate, RangeChecksNameKeyValueAndLine) {
  EXPECT_EQ(error_of(kBase + "lora_config:\n  r: 0\n"),
            "cfg.yaml:4: key \"lora_config.r\": must be > 0, got 0");
  EXPECT_EQ(error_of(kBase + "learning_rate: -1e-4\n"),
            "cfg.yaml:3: key \"learning_rate\": must be > 0, got -1e-4");
  EXPECT_EQ(error_of(kBase + "num_epochs: 0\n"),
            "cfg.yaml:3: key \"num_epochs\": must be >= 1 when max_steps is unset, got 0");
  EXPECT_EQ(error_of(kBase + "lora_config:\n  r: 8\n  lora_dropout: 1.0\n"),
            "cfg.yaml:5: key \"lora_config.lora_dropout\": must be in [0, 1), got 1.0");
  EXPECT_EQ(error_of(kBase, {"context_length=0"}),
            "command line: override \"context_length=0\": key \"context_length\": must be > 0, "
            "got 0");
  EXPECT_EQ(error_of(kBase + "max_steps: 0\n"),
            "cfg.yaml:3: key \"max_steps\": must be > 0, got 0");
  EXPECT_EQ(error_of(kBase + "distributed:\n  zero_stage: 3\n"),
            "cfg.yaml:4: key \"distributed.zero_stage\": must be 0 or 1, got 3");
  EXPECT_EQ(error_of(kBase + "distributed:\n  timeout_s: -5\n"),
            "cfg.yaml:4: key \"distributed.timeout_s\": must be >= 0 seconds (0: no watchdog), got -5");
  EXPECT_EQ(error_of(kBase + "distributed:\n  timeout_s: soon\n")
                .rfind("cfg.yaml:4: key \"distributed.timeout_s\": expected float, got ", 0),
            0u);
  EXPECT_EQ(error_of(kBase + "adam_beta2: 1\n"),
            "cfg.yaml:3: key \"adam_beta2\": must be in [0, 1), got 1");
  // max_steps replaces num_epochs.
  Config c = load(kBase + "num_epochs: 0\nmax_steps: 100\n");
  EXPECT_EQ(c.get_int("max_steps"), 100);
}

TEST(ConfigValidate, CrossKeyChecks) {
  EXPECT_EQ(error_of(kBase + "lora_config:\n  lora_alpha: 32\n"),
            "cfg.yaml:4: key \"lora_config.lora_alpha\": only used when lora_config.r is set "
            "(set lora_config.r to train a LoRA adapter; without it all weights are trained)");
  EXPECT_EQ(error_of(kBase + "global_batch_size: 64\ngradient_accumulation_steps: 4\n"),
            "cfg.yaml:4: key \"gradient_accumulation_steps\": set either global_batch_size "
            "(accumulation is derived from it) or gradient_accumulation_steps, not both");
  EXPECT_EQ(error_of(kBase + "task: causal_lm\ndataset_format: openai\n"),
            "cfg.yaml:4: key \"dataset_format\": task causal_lm reads plain text (auto or "
            "text), got openai");
  EXPECT_EQ(error_of(kBase + "eval:\n  generation: exact_match\n"),
            "cfg.yaml:4: key \"eval.generation\": exact_match needs reference replies: set "
            "valid_path or test_path");
}

// ---------------------------------------------------------------------------------------------
// Overrides and precedence

TEST(ConfigOverrides, PrecedenceDefaultsFileOverrides) {
  const std::string yaml = kBase + "learning_rate: 3e-4\ncontext_length: 512\n";
  Config file_only = load(yaml);
  EXPECT_DOUBLE_EQ(file_only.get_double("learning_rate"), 3e-4);
  EXPECT_EQ(file_only.get_int("seed"), 42);  // default

  Config c = load(yaml, {"learning_rate=1e-5", "seed=7", "learning_rate=2e-5"});
  EXPECT_DOUBLE_EQ(c.get_double("learning_rate"), 2e-5);  // the later override wins
  EXPECT_EQ(c.get_int("seed"), 7);
  EXPECT_EQ(c.get_int("context_length"), 512);  // file, not overridden
  EXPECT_EQ(c.origin("learning_rate").kind, Origin::Kind::Override);
  EXPECT_EQ(c.origin("learning_rate").describe(),
            "command line: override \"learning_rate=2e-5\"");
}

TEST(ConfigOverrides, NullResetsToDefaultOrUnset) {
  Config c = load(kBase + "context_length: 512\nvalid_path: v.jsonl\n",
                  {"context_length=", "valid_path=null"});
  EXPECT_EQ(c.get_int("context_length"), 2048);
  EXPECT_FALSE(c.is_explicit("context_length"));
  EXPECT_FALSE(c.is_set("valid_path"));
}

TEST(ConfigOverrides, ListsInFileAndOnCommandLine) {
  const std::string lora = kBase + "lora_config:\n  r: 8\n";
  Config block = load(lora + "  target_modules:\n    - q_proj\n    - k_proj\n");
  EXPECT_EQ(block.get_strings("lora_config.target_modules"),
            (std::vector<std::string>{"q_proj", "k_proj"}));
  Config flow = load(lora + "  target_modules: [o_proj, up_proj, down_proj]\n");
  EXPECT_EQ(flow.get_strings("lora_config.target_modules"),
            (std::vector<std::string>{"o_proj", "up_proj", "down_proj"}));
  Config single = load(lora + "  target_modules: all-linear\n");
  EXPECT_EQ(single.get_strings("lora_config.target_modules"),
            (std::vector<std::string>{"all-linear"}));
  Config over = load(lora, {"lora_config.target_modules=[q_proj,v_proj,gate_proj]",
                            "lora_config.modules_to_save=[lm_head]"});
  EXPECT_EQ(over.get_strings("lora_config.target_modules"),
            (std::vector<std::string>{"q_proj", "v_proj", "gate_proj"}));
  EXPECT_EQ(over.get_strings("lora_config.modules_to_save"),
            (std::vector<std::string>{"lm_head"}));
  Config empty = load(lora + "  modules_to_save: []\n");
  EXPECT_TRUE(empty.get_strings("lora_config.modules_to_save").empty());
}

TEST(ConfigOverrides, TextKeysTakeTemplatesVerbatim) {
  Config c = load(kBase, {"generation_config.prompt_format.system=<<SYS>> {instruction}",
                          "generation_config.prompt_format.user=[INST] {instruction} [/INST]",
                          "generation_config.prompt_format.assistant=Reply: {instruction}",
                          "model_id=meta-llama/Llama-2-7b-hf"});
  EXPECT_EQ(c.get_string("generation_config.prompt_format.user"), "[INST] {instruction} [/INST]");
  EXPECT_EQ(c.get_string("generation_config.prompt_format.assistant"), "Reply: {instruction}");
  EXPECT_EQ(c.get_string("model_id"), "meta-llama/Llama-2-7b-hf");
}

// ---------------------------------------------------------------------------------------------
// Paths

TEST(ConfigPaths, RelativePathsResolveAgainstTheFilesDirectory) {
  TempDir dir;
  std::string path = dir.write("configs/run.yaml",
                               "initial_base_model_ckpt_path: ../models/llama\n"
                               "train_path: data/train.jsonl\n"
                               "valid_path: /abs/valid.jsonl\n"
                               "output_dir: ./out/\n"
                               "resume: none\n");
  Config c = ringtune::load_config(path);
  const fs::path d = fs::absolute(dir.path());
  EXPECT_EQ(c.get_string("initial_base_model_ckpt_path"), (d / "models/llama").string());
  EXPECT_EQ(c.get_string("train_path"), (d / "configs/data/train.jsonl").string());
  EXPECT_EQ(c.get_string("valid_path"), "/abs/valid.jsonl");
  EXPECT_EQ(c.get_string("output_dir"), (d / "configs/out").string());
  EXPECT_EQ(c.get_string("resume"), "none");  // a keyword, not a path
  EXPECT_EQ(c.get_string("dtype"), "bfloat16");
}

TEST(ConfigPaths, OverridesAndDefaultsResolveAgainstWorkingDirectory) {
  TempDir dir;
  std::string path = dir.write("sub/run.yaml", kBase + "resume: ckpt/step_100.h5\n");
  Config c = ringtune::load_config(path, {"valid_path=v.jsonl"});
  const fs::path cwd = fs::current_path();
  EXPECT_EQ(c.get_string("valid_path"), (cwd / "v.jsonl").string());
  EXPECT_EQ(c.get_string("output_dir"), (cwd / "runs/ringtune").string());
  EXPECT_EQ(c.get_string("resume"),
            (fs::absolute(dir.path()) / "sub/ckpt/step_100.h5").string());
  const char* home = std::getenv("HOME");
  if (home) {
    Config h = load(kBase, {"test_path=~/data/test.jsonl"});
    EXPECT_EQ(h.get_string("test_path"), (fs::path(home) / "data/test.jsonl").string());
  }
}

// ---------------------------------------------------------------------------------------------
// prompt_format: a preset name or a map

TEST(ConfigPromptFormat, PresetsMatchTheDataLayer) {
  std::vector<std::string> names = {"auto"};
  for (const auto& n : ringtune::prompt_format_preset_names()) names.push_back(n);
  EXPECT_EQ(ringtune::default_registry().at("generation_config.prompt_format").choices, names);
  Config c = load(kBase);
  EXPECT_EQ(c.get_string("generation_config.prompt_format"), "auto");
}

TEST(ConfigPromptFormat, PresetOrMap) {
  Config preset = load(kBase + "generation_config:\n  prompt_format: llama3\n");
  EXPECT_EQ(preset.get_string("generation_config.prompt_format"), "llama3");
  EXPECT_FALSE(preset.is_set("generation_config.prompt_format.user"));

  Config map = load(kBase +
                    "generation_config:\n"
                    "  prompt_format:\n"
                    "    system: \"<<SYS>>\\n{instruction}\\n<</SYS>>\\n\\n\"\n"
                    "    user: \"[INST] {instruction} [/INST]\"\n"
                    "    assistant: \" {instruction} </s>\"\n"
                    "    trailing_assistant: \"\"\n"
                    "    bos: \"<s>\"\n"
                    "    system_in_user: true\n"
                    "    default_system_message: \"\"\n");
  EXPECT_FALSE(map.is_set("generation_config.prompt_format"));
  EXPECT_EQ(map.get_string("generation_config.prompt_format.system"),
            "<<SYS>>\n{instruction}\n<</SYS>>\n\n");
  EXPECT_EQ(map.get_string("generation_config.prompt_format.assistant"), " {instruction} </s>");
  EXPECT_EQ(map.get_string("generation_config.prompt_format.trailing_assistant"), "");
  EXPECT_TRUE(map.get_bool("generation_config.prompt_format.system_in_user"));
  EXPECT_EQ(map.origin("generation_config.prompt_format.bos").line, 9);
}

TEST(ConfigPromptFormat, ALaterLayerReplacesTheOtherForm) {
  const std::string map_yaml = kBase +
                               "generation_config:\n"
                               "  prompt_format:\n"
                               "    system: \"S {instruction}\"\n"
                               "    user: \"U {instruction}\"\n"
                               "    assistant: \"A {instruction}\"\n";
  Config to_preset = load(map_yaml, {"generation_config.prompt_format=chatml"});
  EXPECT_EQ(to_preset.get_string("generation_config.prompt_format"), "chatml");
  EXPECT_FALSE(to_preset.is_set("generation_config.prompt_format.user"));

  Config to_map = load(kBase + "generation_config:\n  prompt_format: llama3\n",
                       {"generation_config.prompt_format={system: \"S {instruction}\", "
                        "user: \"Q {instruction}\", assistant: \"R {instruction}\"}"});
  EXPECT_FALSE(to_map.is_set("generation_config.prompt_format"));
  EXPECT_EQ(to_map.get_string("generation_config.prompt_format.user"), "Q {instruction}");

  // Null puts the preset back to its default and drops the map.
  Config back = load(map_yaml, {"generation_config.prompt_format=null"});
  EXPECT_EQ(back.get_string("generation_config.prompt_format"), "auto");
  EXPECT_FALSE(back.is_set("generation_config.prompt_format.user"));
}

// Found by the config fuzz target: `prompt_format:` left empty in one place and given as a map in
// another place of the same file set the name (its default) and the map together, and the dump
// stopped on that as on a bug. The sub-keys given in the same file win, wherever the empty one is.
TEST(ConfigPromptFormat, AnEmptyParentAndItsSubKeysInOneFileGiveTheMap) {
  const std::string map = "generation_config:\n  prompt_format:\n    system: \"S {instruction}\"\n"
                          "    user: \"U {instruction}\"\n    assistant: \"A {instruction}\"\n";
  for (const std::string& text : {kBase + "generation_config:\n  prompt_format:\n" + map,
                                  kBase + map + "generation_config:\n  prompt_format:\n"}) {
    Config c = load(text);
    EXPECT_FALSE(c.is_set("generation_config.prompt_format")) << text;
    EXPECT_EQ(c.get_string("generation_config.prompt_format.user"), "U {instruction}");
    const std::string dumped = c.dump_yaml();
    EXPECT_EQ(load(dumped).dump_yaml(), dumped);
  }
}

TEST(ConfigPromptFormat, Errors) {
  EXPECT_EQ(error_of(kBase +
                     "generation_config:\n"
                     "  prompt_format: llama3\n"
                     "generation_config.prompt_format.user: \"U {instruction}\"\n"),
            "cfg.yaml:5: key \"generation_config.prompt_format.user\": "
            "\"generation_config.prompt_format\" is already set to a name (first at line 4); "
            "use either a name or a map");
  EXPECT_EQ(error_of(kBase +
                     "generation_config:\n"
                     "  prompt_format:\n"
                     "    system: \"S {instruction}\"\n"
                     "    user: \"U {instruction}\"\n"),
            "cfg.yaml:5: key \"generation_config.prompt_format.system\": a prompt_format map "
            "needs system, user and assistant templates; "
            "generation_config.prompt_format.assistant is missing");
  EXPECT_EQ(error_of(kBase +
                     "generation_config:\n"
                     "  prompt_format:\n"
                     "    system: \"S {instruction}\"\n"
                     "    user: \"U {instruction}\"\n"
                     "    assistant: \"A\"\n"),
            "cfg.yaml:7: key \"generation_config.prompt_format.assistant\": template must "
            "contain {instruction}, got \"A\"");
  EXPECT_EQ(error_of(kBase + "generation_config:\n  prompt_format: llama4\n"),
            "cfg.yaml:4: key \"generation_config.prompt_format\": \"llama4\" is not one of "
            "auto, llama3, llama2, mistral, chatml, none (did you mean \"llama3\"?)");
  EXPECT_EQ(error_of(kBase + "generation_config:\n  prompt_formt: llama3\n"),
            "cfg.yaml:4: unknown key \"generation_config.prompt_formt\" (did you mean "
            "\"generation_config.prompt_format\"?)");
}

// ---------------------------------------------------------------------------------------------
// Dump

TEST(ConfigDump, NestedYamlThatLoadsToTheSameConfig) {
  const std::string yaml = kBase +
                           "valid_path: /data/valid.jsonl\n"
                           "model_id: \"meta-llama/Llama-2-7b-hf\"\n"
                           "learning_rate: 3.0e-4\n"
                           "adam_epsilon: 1e-10\n"
                           "max_steps: 1000\n"
                           "lora_config:\n"
                           "  r: 8\n"
                           "  target_modules: [q_proj, k_proj, v_proj, o_proj]\n"
                           "  modules_to_save: []\n"
                           "generation_config:\n"
                           "  prompt_format:\n"
                           "    system: \"<<SYS>>\\n{instruction}\\n<</SYS>>\\n\\n\"\n"
                           "    user: \"[INST] \\\"{instruction}\\\" [/INST]\"\n"
                           "    assistant: \" {instruction} </s>\"\n"
                           "    bos: \"null\"\n"
                           "    default_system_message: \"\"\n";
  Config a = load(yaml, {"seed=7"});
  std::string dumped = a.dump_yaml();
  EXPECT_NE(dumped.find("lora_config:\n  r: 8\n"), std::string::npos) << dumped;
  EXPECT_NE(dumped.find("learning_rate: 0.0003\n"), std::string::npos) << dumped;
  EXPECT_NE(dumped.find("seed: 7\n"), std::string::npos) << dumped;
  EXPECT_EQ(dumped.find("test_path"), std::string::npos) << dumped;  // unset: left out

  Config b = load(dumped);
  EXPECT_EQ(b.dump_yaml(), dumped);
  for (const auto& k : ringtune::default_registry().keys()) {
    ASSERT_EQ(a.is_set(k.name), b.is_set(k.name)) << k.name;
    if (!a.is_set(k.name)) continue;
    switch (k.type) {
      case ringtune::KeyType::Bool: EXPECT_EQ(a.get_bool(k.name), b.get_bool(k.name)); break;
      case ringtune::KeyType::Int: EXPECT_EQ(a.get_int(k.name), b.get_int(k.name)); break;
      case ringtune::KeyType::Float:
        EXPECT_EQ(a.get_double(k.name), b.get_double(k.name)) << k.name;
        break;
      case ringtune::KeyType::StringList:
        EXPECT_EQ(a.get_strings(k.name), b.get_strings(k.name));
        break;
      default: EXPECT_EQ(a.get_string(k.name), b.get_string(k.name)) << k.name;
    }
  }
}

TEST(ConfigDump, FullFineTuningLeavesLoraKeysOut) {
  Config a = load(kBase + "generation_config:\n  prompt_format: llama3\n");
  std::string dumped = a.dump_yaml();
  EXPECT_EQ(dumped.find("lora_config"), std::string::npos) << dumped;
  EXPECT_NE(dumped.find("generation_config:\n  prompt_format: \"llama3\"\n"), std::string::npos)
      << dumped;
  EXPECT_EQ(load(dumped).dump_yaml(), dumped);
}

// ---------------------------------------------------------------------------------------------
// Help

TEST(ConfigHelp, GroupedAndFiltered) {
  std::string all = ringtune::registry_help();
  EXPECT_EQ(all.rfind("model:\n", 0), 0u);
  EXPECT_NE(all.find("\ntraining:\n"), std::string::npos);
  EXPECT_NE(all.find("  lr_scheduler_type  (constant|linear|cosine, default: cosine)\n"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("  train_path  (path, required)\n"), std::string::npos);
  EXPECT_NE(all.find("  max_steps  (int, unset, at most 1000000000000)\n"), std::string::npos);
  EXPECT_NE(all.find("  context_length  (int, default: 2048, at most 1048576)\n"), std::string::npos);

  std::string lora = ringtune::registry_help("lora");
  EXPECT_EQ(lora.rfind("lora:\n  lora_config.r  (int, unset, at most 65536)\n", 0), 0u) << lora;
  EXPECT_EQ(lora.find("learning_rate"), std::string::npos);
  try {
    ringtune::registry_help("lr");
    FAIL() << "no throw";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "unknown config group \"lr\" (groups: model, data, training, lora, prompt, "
              "checkpoint, distributed, eval, logging, compat)");
  }
}
