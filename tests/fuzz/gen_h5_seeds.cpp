// Writes the seed inputs of the h5 fuzz target with ringtune's own writers: a small prepared
// dataset (the layout of prepare_dataset) and a small training checkpoint (save_checkpoint).
//   gen_h5_seeds OUT_DIR   (built by tests/fuzz/CMakeLists.txt; the seeds are committed in
//                           tests/fuzz/corpus/h5, so this is only needed to make them again)
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "src/io/checkpoint.h"
#include "src/io/h5.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  namespace fs = std::filesystem;
  const fs::path out(argv[1]);
  fs::create_directories(out);
  {
    ringtune::H5File f = ringtune::H5File::create((out / "prepared.h5").string());
    const std::vector<int32_t> ids = {1, 5, 9, 2, 1, 7, 2};
    const std::vector<uint8_t> mask = {0, 1, 1, 1, 0, 1, 1};
    f.write("ids", ids);
    f.write("loss_mask", mask);
    f.write("offsets", std::vector<int64_t>{0, 4, 7});
    f.write("source_line", std::vector<int64_t>{1, 3});
    f.set_attr("kind", std::string("ringtune-prepared-dataset"));
    f.set_attr("format_version", int64_t{1});
    f.set_attr("sources", std::string("data.jsonl"));
    f.set_attr("data_hash", std::string("d0"));
    f.set_attr("tokenizer_hash", std::string("t0"));
    f.set_attr("format_hash", std::string("f0"));
    for (const char* k : {"samples"}) f.set_attr(k, int64_t{2});
    f.set_attr("tokens", int64_t{7});
    f.set_attr("supervised_tokens", int64_t{5});
    for (const char* k : {"length_min", "length_p50"}) f.set_attr(k, int64_t{3});
    for (const char* k : {"length_p90", "length_p99", "length_max"}) f.set_attr(k, int64_t{4});
    f.set_attr("report", std::string("2 samples"));
    f.commit();
  }
  ringtune::CheckpointState st;
  st.step = 3;
  st.epoch = 1;
  st.total_steps = 10;
  st.adam_step = 3;
  st.config_yaml = "learning_rate: 0.001\n";
  st.base_hash = "b";
  st.tokenizer_hash = "t";
  st.data_hash = "d";
  st.valid_loss = 1.5;
  st.trainable = {{"model.layers.0.self_attn.q_proj.lora_A.weight", torch::arange(8, torch::kFloat32).reshape({2, 4})},
                  {"model.norm.weight", torch::ones({4})}};
  st.optimizer = {{"model.norm.weight.exp_avg", torch::zeros({4})}, {"model.norm.weight.exp_avg_sq", torch::zeros({4})}};
  st.rng = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::string ckpt = ringtune::save_checkpoint((out / "run").string(), st);
  fs::copy_file(ckpt, out / "checkpoint.h5", fs::copy_options::overwrite_existing);
  fs::remove_all(out / "run");
  std::printf("wrote %s and %s\n", (out / "prepared.h5").c_str(), (out / "checkpoint.h5").c_str());
  return 0;
}
