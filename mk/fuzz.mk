# mk/fuzz.mk - the reliability builds (included by the Makefile): libFuzzer
# targets for every reader of outside bytes (clang, ASan and UBSan, into
# build-fuzz/) and the allocation-failure sweep (make test-allocfail, at the
# end). See doc/reliability.md.
#
#   make fuzz                  build, then run each target FUZZ_SECONDS (60)
#   make fuzz FUZZ_SECONDS=10  shorter; `make -j2 fuzz` runs two at a time
#   make fuzz-build            only build build-fuzz/fuzz_<target>
#   make fuzz-corpus           regenerate the committed seed corpora
#
# Each run starts from tests/fuzz/corpus/<target>/ (committed, read only) and
# adds what it finds to build-fuzz/corpus/<target>/; a crash, leak, timeout
# or OOM fails the target and leaves build-fuzz/crash-<target>-* to replay:
#   build-fuzz/fuzz_<target> build-fuzz/crash-<target>-...

FUZZ_CC ?= clang
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = ckpt safetensors idx cifar tensor
FUZZ_DEB_PKGS = clang libclang-rt-14-dev libomp-14-dev
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -fopenmp -fno-strict-aliasing \
  -I$(LUA_INC) -Icore $(FUZZ_SAN)
# The harnesses are held to -Werror; the library, whose warnings the gcc build
# already enforces, is compiled quietly (clang flags gcc-only attributes and
# the failed `omp simd` hints).
FUZZ_WARN = -Wall -Wextra -Werror
# the CPU library code, without main() (rnlua.c) and the interactive loop
FUZZ_LIB_SRCS = $(filter-out core/rnlua.c core/repl.c,$(wildcard core/*.c core/ops/*.c \
  core/cpu/*.c core/io/*.c core/data/*.c core/dist/*.c core/lua/*.c))
FUZZ_LIB_OBJS = $(patsubst %.c,$(FUZZ_BUILD)/%.o,$(FUZZ_LIB_SRCS))
FUZZ_LIBS = $(LUA_A) -ldnnl -lopenblas -lz -lm -ldl -lpthread
FUZZ_BINS = $(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZ_TARGETS))
# per-target run options
FUZZ_OPTS = -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20 -print_final_stats=1
FUZZ_OPTS_cifar = -max_len=16384

.PHONY: fuzz fuzz-deps fuzz-build fuzz-corpus $(addprefix fuzz-run-,$(FUZZ_TARGETS))

fuzz-deps:
	@sh scripts/deps.sh $(FUZZ_DEB_PKGS)

fuzz-build: fuzz-deps
	$(MAKE) $(FUZZ_BINS)

fuzz: fuzz-build
	$(MAKE) $(addprefix fuzz-run-,$(FUZZ_TARGETS))

$(addprefix fuzz-run-,$(FUZZ_TARGETS)): fuzz-run-%: $(FUZZ_BUILD)/fuzz_%
	@mkdir -p $(FUZZ_BUILD)/corpus/$*
	@echo "  FUZZ $* for $(FUZZ_SECONDS)s"
	@OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(FUZZ_BUILD)/fuzz_$* $(FUZZ_OPTS) $(FUZZ_OPTS_$*) -max_total_time=$(FUZZ_SECONDS) \
	  -artifact_prefix=$(FUZZ_BUILD)/crash-$*- \
	  $(FUZZ_BUILD)/corpus/$* tests/fuzz/corpus/$* > $(FUZZ_BUILD)/fuzz-$*.log 2>&1 || \
	  { tail -n 60 $(FUZZ_BUILD)/fuzz-$*.log; echo "FUZZ $*: FAILED (log: $(FUZZ_BUILD)/fuzz-$*.log)"; exit 1; }
	@grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" $(FUZZ_BUILD)/fuzz-$*.log | tail -n 2 | \
	  sed 's/^/  FUZZ $*: /'

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FUZZ_LIB_OBJS)
	@echo "  LINK $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_WARN) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJS) $(FUZZ_LIBS)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC   $< (fuzz)"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -w -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

-include $(FUZZ_LIB_OBJS:.o=.d)
.SECONDARY: $(FUZZ_LIB_OBJS)

fuzz-corpus: all
	./rnlua tests/fuzz/make_corpus.lua

# ---- allocation failure (tests/alloc_sweep.lua) ----------------------------
# build-allocfail/rnlua: ASan + UBSan and -DRN_ALLOC_FAIL, where
# RN_FAIL_ALLOC_AT=n fails the n-th CPU tensor allocation and
# RN_FAIL_LUA_ALLOC_AT=n the n-th allocation of Lua's allocator.
# The default (ALLOCFAIL_ONLY empty) sweeps both; ALLOCFAIL_ONLY=tensor or
# ALLOCFAIL_ONLY=lua sweeps one.
ALLOCFAIL_ONLY ?=
ALLOCFAIL_SAN = -DRN_ALLOC_FAIL -fsanitize=address,undefined -fno-omit-frame-pointer \
  -fno-sanitize-recover=undefined
.PHONY: test-allocfail
test-allocfail: deps
	$(MAKE) BUILD=build-allocfail OPT=-O1 NOCUDA=1 SAN="$(ALLOCFAIL_SAN)" build-allocfail/rnlua
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 RNLUA_BIN=build-allocfail/rnlua \
	  RN_SWEEP_ONLY=$(ALLOCFAIL_ONLY) \
	  build-allocfail/rnlua tests/alloc_sweep.lua

.PHONY: fuzz-clean
clean: fuzz-clean
fuzz-clean:
	rm -rf $(FUZZ_BUILD) build-allocfail
