# lmpack build. `make help` lists the targets.
#
# Layout: every .c file in a library folder goes into build/<variant>/liblmpack.a,
# except <folder>/lmpack-<cmd>.c, which becomes the program bin/lmpack-<cmd>.
# tools/lmpack.c is the git-style dispatcher bin/lmpack. Files named *_avx2.c
# are compiled with AVX2/FMA/F16C enabled, *_avx512.c with AVX-512
# F/BW/VL/VNNI on top; callers pick them at run time (common/cpu.h).
# Tests: tests/test_<name>.c defines `Suite *lmp_suite_<name>(void)`; the
# runner finds the suites from the file names. Fuzz targets: fuzz/fuzz_<name>.c.
#
# Variants (separate object folders, no `make clean` needed between them):
#   release -> bin/            test  -> build/test/bin  (-Werror)
#   asan    -> build/asan/bin  ubsan -> build/ubsan/bin

.DEFAULT_GOAL := all
VARIANT ?= release
PREFIX ?= /usr/local
CC ?= cc

# --- dependencies -----------------------------------------------------------
PKGS := libzstd libcjson libxxhash
NODEPS_GOALS := help clean distclean
ifeq ($(filter $(NODEPS_GOALS),$(MAKECMDGOALS)),)
ifneq ($(shell pkg-config --exists $(PKGS) check 2>/dev/null && echo ok),ok)
$(info lmpack: build dependencies missing, running tools/install-deps.sh)
DEPS_RC := $(shell sh tools/install-deps.sh >&2; echo $$?)
ifneq ($(DEPS_RC),0)
$(error dependency installation failed; run `sh tools/install-deps.sh` and read its output)
endif
endif
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

# --- flags per variant --------------------------------------------------------
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wvla -Wformat=2
# -ffp-contract=off: no compiler-chosen FMA contraction, so gcc and clang
# builds give byte-identical quantized files (tests/test_determinism.c).
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -I. $(WARN) -ffp-contract=off -pthread $(PKG_CFLAGS)
ifeq ($(VARIANT),release)
  OPT := -O2 -g
  B := build/release
  BINDIR := bin
else ifeq ($(VARIANT),test)
  OPT := -O2 -g -Werror
  B := build/test
else ifeq ($(VARIANT),asan)
  OPT := -O1 -g -fsanitize=address -fno-omit-frame-pointer -Werror
  B := build/asan
else ifeq ($(VARIANT),clang)
  CC := clang
  OPT := -O2 -g
  B := build/clang
else ifeq ($(VARIANT),fuzz)
  CC := clang
  OPT := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
  B := build/fuzz
else ifeq ($(VARIANT),ubsan)
  OPT := -O1 -g -fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -Werror
  B := build/ubsan
else
  $(error unknown VARIANT=$(VARIANT))
endif
BINDIR ?= $(B)/bin
CFLAGS_ALL := $(BASE_CFLAGS) $(OPT) $(CFLAGS)
LDFLAGS_ALL := $(filter-out -fsanitize=fuzzer-no-link%,$(filter -fsanitize=%,$(OPT))) -pthread $(LDFLAGS)
LIBS_ALL := $(PKG_LIBS) -lm $(LIBS)
SIMD_FLAGS := -mavx2 -mfma -mf16c
SIMD512_FLAGS := $(SIMD_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512vnni

# --- sources ----------------------------------------------------------------
LIBDIRS := common formats tokenizer quantize convert split manifest verify runtime
ALL_C := $(sort $(wildcard $(addsuffix /*.c,$(LIBDIRS))))
PROG_C := $(filter $(addsuffix /lmpack-%.c,$(LIBDIRS)),$(ALL_C)) $(sort $(wildcard tools/lmpack-*.c))
LIB_C := $(filter-out $(PROG_C),$(ALL_C))
LIB_O := $(LIB_C:%.c=$(B)/obj/%.o)
LIB_A := $(B)/liblmpack.a
PROGS := $(BINDIR)/lmpack $(addprefix $(BINDIR)/,$(basename $(notdir $(PROG_C))))

TEST_C := $(sort $(wildcard tests/test_*.c))
TEST_SUPPORT_C := $(filter-out tests/test_%.c,$(wildcard tests/*.c))
TEST_O := $(TEST_C:%.c=$(B)/obj/%.o) $(TEST_SUPPORT_C:%.c=$(B)/obj/%.o)
TEST_BIN := $(B)/lmpack-tests
FUZZ_C := $(sort $(wildcard fuzz/fuzz_*.c))
REPLAYS := $(patsubst fuzz/fuzz_%.c,$(B)/fuzz/replay_%,$(FUZZ_C))
BENCH_C := $(sort $(wildcard bench/bench_*.c))
BENCHES := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_C))

DEPFLAGS = -MMD -MP
# keep objects make would treat as intermediate (avoids needless relinks)
.SECONDARY:

# --- rules ------------------------------------------------------------------
.PHONY: all test asan ubsan check-run fuzz fuzz-run bench bench-llamacpp demo install clean help deps wasm test-web
all: $(PROGS)

$(B)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(@D)
	@echo "  CC    $@"
	@$(CC) $(CFLAGS_ALL) $(SIMD_FLAGS) $(DEPFLAGS) -c $< -o $@

$(B)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(@D)
	@echo "  CC    $@"
	@$(CC) $(CFLAGS_ALL) $(SIMD512_FLAGS) $(DEPFLAGS) -c $< -o $@

$(B)/obj/tests/%.o: tests/%.c $(B)/suites.h
	@mkdir -p $(@D)
	@echo "  CC    $@"
	@$(CC) $(CFLAGS_ALL) $(CHECK_CFLAGS) -I$(B) -DLMP_SRC_DIR='"$(CURDIR)"' \
	  -DLMP_BIN_DIR='"$(abspath $(BINDIR))"' -DLMP_BUILD_DIR='"$(abspath $(B))"' \
	  $(DEPFLAGS) -c $< -o $@

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC    $@"
	@$(CC) $(CFLAGS_ALL) $(DEPFLAGS) -c $< -o $@

$(LIB_A): $(LIB_O)
	@mkdir -p $(@D)
	@rm -f $@
	@ar rcs $@ $^

$(BINDIR)/lmpack: $(B)/obj/tools/lmpack.o $(LIB_A)
	@mkdir -p $(@D)
	@echo "  CC    $@"
	@$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)

$(BINDIR)/lmpack-%: $(B)/obj/tools/lmpack-%.o $(LIB_A)
	@mkdir -p $(@D)
	@echo "  CC    $@"
	@$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS_ALL)

define prog_rule
$(BINDIR)/$(basename $(notdir $(1))): $(B)/obj/$(1:.c=.o) $(LIB_A)
	@mkdir -p $$(@D)
	@echo "  LD    $$@"
	@$$(CC) $$(LDFLAGS_ALL) -o $$@ $$^ $$(LIBS_ALL)
endef
$(foreach p,$(filter-out tools/%,$(PROG_C)),$(eval $(call prog_rule,$(p))))

$(B)/suites.h: $(TEST_C)
	@mkdir -p $(@D)
	@for f in $(TEST_C); do n=$${f#tests/test_}; echo "LMP_SUITE($${n%.c})"; done > $@.tmp && mv $@.tmp $@

$(TEST_BIN): $(TEST_O) $(LIB_A)
	@echo "  CC    $@"
	@$(CC) $(LDFLAGS_ALL) -o $@ $^ $(CHECK_LIBS) $(LIBS_ALL)

$(B)/fuzz/replay_%: fuzz/fuzz_%.c fuzz/replay_main.c $(LIB_A)
	@mkdir -p $(@D)
	@echo "  CC    $@"
	@$(CC) $(CFLAGS_ALL) -o $@ $< fuzz/replay_main.c $(LIB_A) $(LDFLAGS_ALL) $(LIBS_ALL)

$(B)/bench/%: bench/%.c $(LIB_A)
	@mkdir -p $(@D)
	@echo "  CC    $@"
	@$(CC) $(CFLAGS_ALL) -o $@ $< $(LIB_A) $(LDFLAGS_ALL) $(LIBS_ALL)

# check-run: build this variant's programs, tests and fuzz replays, run them.
check-run: $(PROGS) $(TEST_BIN) $(REPLAYS)
	$(TEST_BIN)

# When clang is installed, a clang build of the programs is made first so the
# suite can check that gcc and clang builds write byte-identical files.
HAVE_CLANG := $(shell command -v clang >/dev/null 2>&1 && echo yes)
test:
ifeq ($(HAVE_CLANG),yes)
	@$(MAKE) --no-print-directory VARIANT=clang all
endif
	@$(MAKE) --no-print-directory VARIANT=test check-run
asan:
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 CK_TIMEOUT_MULTIPLIER=4 $(MAKE) --no-print-directory VARIANT=asan check-run
ubsan:
	@UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 CK_TIMEOUT_MULTIPLIER=4 $(MAKE) --no-print-directory VARIANT=ubsan check-run

# libFuzzer builds with clang (VARIANT=fuzz library): one binary per parser,
# a short run each over a scratch corpus seeded from fuzz/corpus/<name>/.
FUZZ_SECONDS ?= 20
FUZZERS := $(patsubst fuzz/fuzz_%.c,$(B)/fuzz/fuzz_%,$(FUZZ_C))
$(B)/fuzz/fuzz_%: fuzz/fuzz_%.c $(LIB_A)
	@mkdir -p $(@D)
	@echo "  CC    $@"
	@$(CC) $(CFLAGS_ALL) -fsanitize=fuzzer -o $@ $< $(LIB_A) $(LDFLAGS_ALL) $(LIBS_ALL)
fuzz-run: $(FUZZERS)
	@set -e; for f in $(FUZZERS); do n=$${f##*/fuzz_}; mkdir -p $(B)/corpus_$$n; \
	  echo "fuzz $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 $(B)/corpus_$$n fuzz/corpus/$$n; done
fuzz:
	@$(MAKE) --no-print-directory VARIANT=fuzz fuzz-run

# Benchmark programs: bench/bench_<name>.c -> build/release/bench/bench_<name>;
# bench/run.sh runs every bench/*.sh part and prints the table.
bench: all $(BENCHES)
	@LMP_BENCH_BIN=$(abspath $(B)/bench) LMP_BIN=$(abspath $(BINDIR)) sh bench/run.sh

# llama.cpp Q4_0 on this machine, same model and workload as bench/80-perf.sh
# (prebuilt binaries from npm's node-llama-cpp; see bench/llamacpp/run.sh).
bench-llamacpp: all $(BENCHES)
	@LMP_BIN=$(abspath $(BINDIR)) sh bench/llamacpp/run.sh

demo: all
	@sh tools/demo.sh

deps:
	@sh tools/install-deps.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin

clean:
	rm -rf build bin dist

help:
	@echo "make            build every program into bin/"
	@echo "make demo       build, verify and run the bundled stories260k model"
	@echo "make test       run the whole Check suite (-Werror build)"
	@echo "make asan|ubsan run the whole suite under AddressSanitizer / UBSan"
	@echo "make fuzz       libFuzzer run of every parser (FUZZ_SECONDS=$(FUZZ_SECONDS) each)"
	@echo "make bench      benchmarks on a SmolLM-360M-shaped random model (prints a table)"
	@echo "make bench-llamacpp  llama.cpp Q4_0 on the same model and machine (npm's prebuilt)"
	@echo "make install    install programs into PREFIX (default /usr/local)"
	@echo "make deps       install missing Debian build dependencies"
	@echo "make clean      remove build/, bin/, dist/"

# every object's header dependencies (library, programs, tests)
-include $(shell find $(B)/obj -name "*.d" 2>/dev/null)
include web/wasm.mk
