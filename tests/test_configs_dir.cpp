// Every example config shipped in configs/ (and the quickstart's in configs/quickstart/) loads
// and validates against the key registry, so the examples cannot drift from the keys ringtune
// accepts.
#include <gtest/gtest.h>

#include <filesystem>

#include "src/config/registry.h"
#include "test_util.h"

using namespace ringtune_test;

TEST(ConfigsDir, EveryShippedConfigValidates) {
  int n = 0;
  for (const char* dir : {"/configs", "/configs/quickstart", "/configs/torchtune_chat"}) {
    for (const auto& e : std::filesystem::directory_iterator(ringtune_test::source_dir() + dir)) {
      if (e.path().extension() != ".yaml") continue;
      EXPECT_NO_THROW(ringtune::load_config(e.path().string())) << e.path();
      ++n;
    }
  }
  EXPECT_GE(n, 4);
}

TEST(ConfigsDir, TorchtuneChatExampleTrainsAsWritten) {
  // configs/torchtune_chat: torchtune's chat tutorial (a JSON array, a "dialogue" column in
  // ShareGPT style, Llama 3 Instruct's template). Only the model path (a tiny random model with
  // Llama 3's tokenizer and chat template), the output directory and the step count change, and
  // context_length, which the tiny model's 512 positions cap.
  TempDir d("ringtune-torchtune");
  write_tiny_llama(d.file("llama3"), 128256, 32, 2, 3, fixtures_dir() + "/tokenizers/llama3-hf");
  const std::string cfg = source_dir() + "/configs/torchtune_chat/chat.yaml";
  auto r = run_ringtune("train " + cfg + " initial_base_model_ckpt_path=" + d.file("llama3") +
                        " output_dir=" + d.file("out") + " max_steps=2 context_length=512");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("prompt format: the chat template of"), std::string::npos) << r.err;
  EXPECT_EQ(metrics_losses(d.file("out")).size(), 2u);
  // The rendered first sample is Llama 3's layout, the system turn included, loss on the replies.
  r = run_ringtune("render " + cfg + " initial_base_model_ckpt_path=" + d.file("llama3") + " context_length=512 --n 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("<|start_header_id|>system<|end_header_id|>\n\nYou are the support assistant"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("<|start_header_id|>user<|end_header_id|>\n\nHow do I reset my password?<|eot_id|>"),
            std::string::npos)
      << r.out;
}
