// Entry points of the subcommands. Each takes the arguments after its name, returns the exit code
// on success, and throws ringtune::InputError (exit 2) or another exception (exit 1) on failure.
#pragma once
#include <string>
#include <vector>

namespace ringtune {

using Args = std::vector<std::string>;

int cmd_logits(const Args& args);
int cmd_generate(const Args& args);
int cmd_inspect(const Args& args);
int cmd_tokenize(const Args& args);
int cmd_render(const Args& args);
int cmd_prepare(const Args& args);
int cmd_train(const Args& args);
int cmd_init_model(const Args& args);
int cmd_export(const Args& args);
int cmd_eval(const Args& args);
int cmd_report(const Args& args);
int cmd_estimate(const Args& args);

}  // namespace ringtune
