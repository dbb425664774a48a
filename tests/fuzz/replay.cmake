# Corpus replay of the fuzz targets, in the main build (include()d by tests/CMakeLists.txt): every
# tests/fuzz/fuzz_<name>.cpp in one binary, ringtune_fuzz_replay (gcc, no sanitizer, linked with
# ringtune_core; each target's LLVMFuzzerTestOneInput renamed rt_fuzz_<name>), and one ctest per
# target, fuzz_replay_<name>, that feeds it every file of tests/fuzz/corpus/<name>: the committed
# corpus (seeds, and the inputs of fixed findings) keeps loading without a crash or an exception of
# the wrong type. The fuzzers themselves: tests/fuzz/run.sh (clang, libFuzzer, ASan + UBSan).
set(RT_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
set(RT_FUZZ_TARGETS safetensors tokenizer jinja tokenizer_config samples config adapter_config h5)
set(RT_FUZZ_SOURCES ${RT_FUZZ_DIR}/replay_main.cpp)
set_source_files_properties(${RT_FUZZ_DIR}/replay_main.cpp PROPERTIES COMPILE_DEFINITIONS RT_FUZZ_REPLAY_ALL)
foreach(name ${RT_FUZZ_TARGETS})
  list(APPEND RT_FUZZ_SOURCES ${RT_FUZZ_DIR}/fuzz_${name}.cpp)
  set_source_files_properties(${RT_FUZZ_DIR}/fuzz_${name}.cpp PROPERTIES
    COMPILE_DEFINITIONS LLVMFuzzerTestOneInput=rt_fuzz_${name})
endforeach()
add_executable(ringtune_fuzz_replay ${RT_FUZZ_SOURCES})
target_link_libraries(ringtune_fuzz_replay PRIVATE ringtune_core)
target_precompile_headers(ringtune_fuzz_replay REUSE_FROM ringtune_core)
set_target_properties(ringtune_fuzz_replay PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
foreach(name ${RT_FUZZ_TARGETS})
  add_test(NAME fuzz_replay_${name} COMMAND ringtune_fuzz_replay ${name} ${RT_FUZZ_DIR}/corpus/${name})
  set_tests_properties(fuzz_replay_${name} PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=1" TIMEOUT 300)
endforeach()
