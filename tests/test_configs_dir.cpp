// Every example config shipped in configs/ (and the quickstart's in configs/quickstart/) loads
// and validates against the key registry, so the examples cannot drift from the keys ringtune
// accepts.
#include <gtest/gtest.h>

#include <filesystem>

#include "src/config/registry.h"
#include "test_util.h"

TEST(ConfigsDir, EveryShippedConfigValidates) {
  int n = 0;
  for (const char* dir : {"/configs", "/configs/quickstart"}) {
    for (const auto& e : std::filesystem::directory_iterator(ringtune_test::source_dir() + dir)) {
      if (e.path().extension() != ".yaml") continue;
      EXPECT_NO_THROW(ringtune::load_config(e.path().string())) << e.path();
      ++n;
    }
  }
  EXPECT_GE(n, 4);
}
