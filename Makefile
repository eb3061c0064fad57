# Makefile - builds ./rnlua (Lua 5.4 linked statically; OpenBLAS, zlib,
# readline dynamically), the CUDA parts whenever nvcc and cuDNN are found,
# and runs the suite. `make run` and `make test` work on a fresh Debian
# machine: both install missing packages first (`make deps`).
#
#   make            build ./rnlua (with CUDA parts if nvcc + cudnn.h exist)
#   make deps       install missing Debian packages (prints the line if not root)
#   make test       deps + build + the whole suite ("N passed, N failed")
#   make test-isa   the suite again with oneDNN and our own feature detection
#                   capped at AVX2, then the conv/model tests capped at SSE4.1:
#                   the code paths of older CPUs on any machine
#   make test-asan  the suite under ASan+UBSan (separate build dir)
#   make test-valgrind  binding tests under valgrind
#   make test-mutants  tests of the tests: planted bugs the suite must catch
#   make run        deps + build + the main job on the default data
#   make bench      rnlua against PyTorch (CPU, then GPU where there is one)
#   make bench-dist data-parallel training on 1, 2, 4 ranks (mpirun; doc/distributed.md)
#   make bench-dnnl oneDNN's convolution algorithms on the seed's shapes
#   make bench-arch the example architectures' training step against PyTorch
#   make install PREFIX=/usr/local   the program, the Lua module, librnlua.so
#                   with rnlua.h and rnlua.pc (mk/lib.mk, doc/install.md)
#   make module / lib / test-lua     the module and library alone, and their
#                   tests under Debian's lua5.4 and LuaRocks (mk/lib.mk)

PREFIX ?= /usr/local
BUILD ?= build
CC ?= gcc
LUA_INC ?= /usr/include/lua5.4
LUA_A ?= /usr/lib/x86_64-linux-gnu/liblua5.4.a
OPT ?= -O2
SAN ?=
MUTANTS ?=

CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -fopenmp -fno-strict-aliasing \
  -I$(LUA_INC) -Icore $(OPT) $(SAN) $(if $(MUTANTS),-DRN_MUTANTS)
LIBS = $(LUA_A) -ldnnl -lopenblas -lreadline -lz -lm -ldl -lpthread

# ---- CUDA (compiled and linked wherever nvcc and cuDNN headers exist) -------
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc; })
HAVE_CUDNN := $(shell test -f $(CUDA_HOME)/include/cudnn.h -o -f /usr/include/cudnn.h && echo yes)
ifeq ($(NOCUDA),1)
  NVCC :=
endif
ifneq ($(and $(NVCC),$(HAVE_CUDNN)),)
  WITH_CUDA = 1
  include mk/cuda.mk
endif

# ---- MPI (rn.distributed; compiled and linked wherever mpicc is found) ------
MPICC ?= $(shell command -v mpicc 2>/dev/null)
ifeq ($(NOMPI),1)
  MPICC :=
endif
ifneq ($(MPICC),)
  WITH_MPI = 1
  include mk/mpi.mk
endif

CFLAGS = $(CFLAGS_BASE) $(CUDA_CFLAGS)

SRCS = $(wildcard core/*.c core/ops/*.c core/cpu/*.c core/io/*.c core/data/*.c core/dist/*.c core/lua/*.c) $(CUDA_SRCS)
OBJS = $(patsubst %.c,$(BUILD)/%.o,$(SRCS)) $(CUDA_OBJS)
DEPS = $(OBJS:.o=.d)

.PHONY: all deps test test-isa test-asan test-valgrind test-mutants run install clean bench bench-dnnl bench-dist bench-arch check-deps

all: rnlua

rnlua: $(BUILD)/rnlua
	@cp $< $@.tmp && mv -f $@.tmp $@  # rename: works while ./rnlua is running

$(BUILD)/rnlua: $(OBJS)
	@echo "  LINK $@"
	@$(CC) $(CFLAGS) -o $@ $(OBJS) $(LIBS) $(CUDA_LIBS) $(MPI_LIBS)

# Objects depend on the flags they were built with: a change of flags (CUDA
# found or not, NOCUDA=1, sanitizers) rebuilds them instead of mixing.
$(BUILD)/flags.stamp: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CFLAGS) $(CUDA_LIBS)' | cmp -s - $@ || echo '$(CFLAGS) $(CUDA_LIBS)' > $@

FORCE:

# core/dist/*.c alone see MPI's flags, and are rebuilt when they change
$(BUILD)/mpi.stamp: FORCE
	@mkdir -p $(BUILD)
	@echo '$(MPI_CFLAGS) $(MPI_LIBS)' | cmp -s - $@ || echo '$(MPI_CFLAGS) $(MPI_LIBS)' > $@
$(BUILD)/core/dist/%.o: CFLAGS += $(MPI_CFLAGS)
$(BUILD)/core/dist/%.o: $(BUILD)/mpi.stamp
$(BUILD)/rnlua: $(BUILD)/mpi.stamp

$(BUILD)/%.o: %.c $(BUILD)/flags.stamp
	@mkdir -p $(dir $@)
	@echo "  CC   $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(DEPS)

# The per-ISA kernels alone are compiled for their instruction sets (the rest
# of the binary stays baseline x86-64); wino.c calls them only when the
# capped CPU features say so (core/cpu/wino.c).
$(BUILD)/core/cpu/wino_avx2.o: CFLAGS += -mavx2 -mfma
$(BUILD)/core/cpu/wino_avx512.o: CFLAGS += -mavx512f -mfma

# ---- packages ---------------------------------------------------------------
DEB_PKGS = liblua5.4-dev libdnnl-dev libopenblas-dev libreadline-dev zlib1g-dev dataset-fashion-mnist \
  libopenmpi-dev openmpi-bin
deps:
	@sh scripts/deps.sh $(DEB_PKGS)

# ---- tests ------------------------------------------------------------------
test: deps
	$(MAKE) all
	./rnlua tests/run.lua

# The ISA cap (ONEDNN_MAX_CPU_ISA) is honoured by oneDNN and by rnlua's own
# feature detection (core/precision.c), so an AVX-512 or AMX machine runs
# the kernels and the skips of an AVX2-only (then an SSE4.1) CPU.
ISA_SHORT_TESTS = tests/test_cpu_fast.lua tests/test_conv.lua tests/test_conv_torch.lua \
  tests/test_compare.lua tests/test_infer_fusion.lua tests/test_nn.lua tests/test_model.lua \
  tests/test_resnet.lua
test-isa: deps
	$(MAKE) all
	ONEDNN_MAX_CPU_ISA=AVX2 ./rnlua tests/run.lua
	ONEDNN_MAX_CPU_ISA=SSE41 ./rnlua tests/run.lua $(ISA_SHORT_TESTS)

test-asan: deps
	$(MAKE) BUILD=build-asan OPT=-O1 NOCUDA=1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  build-asan/rnlua
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  RNLUA_BIN=build-asan/rnlua RN_TEST_LIGHT=1 build-asan/rnlua tests/run.lua

test-valgrind: deps
	$(MAKE) all
	RN_TEST_LIGHT=1 RN_VALGRIND=1 RN_CPU_CACHE_BYTES=0 valgrind -q --error-exitcode=99 --leak-check=full \
	  --errors-for-leak-kinds=definite ./rnlua tests/run.lua tests/test_tensor.lua tests/test_binding.lua

# Tests of the tests: one build (build-mutants/) with every planted bug of
# core/mutant.h compiled in; tests/mutants.lua switches them on one at a time
# and fails if the test files do not catch one (doc/reliability.md).
test-mutants: deps
	$(MAKE) BUILD=build-mutants NOCUDA=1 MUTANTS=1 build-mutants/rnlua
	build-mutants/rnlua tests/mutants.lua $(MUTANT_ARGS)

run: deps
	$(MAKE) all
	@mkdir -p runs
	./rnlua scripts/resnet_cifar.lua $(RUN_ARGS)

# The main job's default: 2 epochs of 30,000 Fashion-MNIST images, fitted
# into about 2.5 minutes on this machine (--time-budget measures the speed
# first and cuts the images where the CPU is slower than the project's
# AVX-512 machine, which runs it whole: ~86% test accuracy, doc/results.md).
RUN_ARGS ?= --epochs 2 --train-limit 30000 --time-budget 150 --log runs/run.csv --plot runs/run.png

# Benchmarks against PyTorch: the CPU one first (scripts/bench_cpu.sh, the
# seed ResNet in rnlua and in torch, same threads; BENCH_ARGS="--reps 3" etc.),
# then the GPU one (needs a CUDA device and python3 with torch).
bench: all
	scripts/bench_cpu.sh $(BENCH_ARGS)
	@if ./rnlua -e 'os.exit(require("rn").cuda.is_available() and 0 or 1)'; then \
	  ./rnlua scripts/bench_gpu.lua && python3 scripts/bench_gpu_torch.py; \
	else echo "bench: no CUDA device here ($$(./rnlua -e 'print(require("rn").cuda.why_unavailable())')); GPU benchmark skipped"; fi

# One training step of each example architecture (scripts/architectures.lua)
# against the same model in PyTorch, same run (issue 17's speed figures).
bench-arch: all
	scripts/bench_arch.sh $(BENCH_ARGS)

# oneDNN alone on the seed ResNet's 3x3 shapes: direct NHWC (what rnlua
# runs), direct nChw16c and Winograd (doc/perf.md). DNNL_ARGS="--batch 512".
# Data-parallel figures: images/s of the seed ResNet on 1, 2 and 4 ranks of
# this machine (oversubscribed past its cores), communication time and how
# much of it backward hides, allreduce time against size (doc/distributed.md).
BENCH_DIST_NP ?= 1 2 4
bench-dist: all
	@command -v mpirun >/dev/null || { echo "bench-dist: mpirun not found (make deps installs openmpi-bin)"; exit 1; }
	@for np in $(BENCH_DIST_NP); do \
	  mpirun --allow-run-as-root --oversubscribe --timeout 900 --mca mpi_yield_when_idle 1 --bind-to none \
	    -np $$np ./rnlua scripts/bench_dist.lua $(BENCH_DIST_ARGS) || exit 1; done

bench-dnnl:
	@mkdir -p $(BUILD)
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -o $(BUILD)/dnnl_conv_algos scripts/dnnl_conv_algos.c -ldnnl
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$$(nproc)} $(BUILD)/dnnl_conv_algos $(DNNL_ARGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/rnlua/lua/rn
	install -m 755 rnlua $(DESTDIR)$(PREFIX)/bin/rnlua
	cp -r lua/. $(DESTDIR)$(PREFIX)/share/rnlua/lua/

clean:
	rm -rf build build-asan build-mutants rnlua
-include mk/fuzz.mk
# ---- rn as a Lua module and an embeddable library (issue #22) ---------------
include mk/lib.mk
.PHONY: clean-pic
clean: clean-pic
clean-pic:
	rm -rf $(PIC_BUILD)
