# cuda.mk - the CUDA part of the build, included by the Makefile when nvcc
# and the cuDNN headers are found (never with NOCUDA=1).
#
# - kernels/*.cu: CUDA C++ kernels with extern "C" launchers, compiled by
#   nvcc into $(BUILD)/kernels/*.o for sm_80 and sm_90 machine code plus
#   compute_90 PTX (for newer GPUs);
# - core/cuda/*.c: the host side, compiled by the Makefile's C rule with
#   CFLAGS, to which CUDA_CFLAGS is added;
# - link: the CUDA runtime statically (libcudart_static; it loads the
#   driver's libcuda.so.1 itself). cuBLAS and cuDNN are NOT linked: they are
#   found and dlopen'ed at run time (core/cuda/dlib.c), so ./rnlua starts on
#   any machine and needs them only when it uses them.
# Defines only variables and one pattern rule, so the Makefile's default goal
# stays `all`.

NVCC_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
  -gencode arch=compute_90,code=compute_90
NVCCFLAGS ?= -O3 -std=c++17 $(NVCC_ARCH) -Xcompiler -fPIC,-Wall,-Werror -Ikernels

CUDA_SRCS = $(wildcard core/cuda/*.c)
CUDA_KERNELS = $(wildcard kernels/*.cu)
CUDA_OBJS = $(patsubst %.cu,$(BUILD)/%.o,$(CUDA_KERNELS))
CUDA_CFLAGS = -DRN_WITH_CUDA -I$(CUDA_HOME)/include
CUDA_LIBS = -L$(CUDA_HOME)/lib64 -lcudart_static -lrt -ldl -lpthread -lstdc++

$(BUILD)/kernels/%.o: kernels/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -MT $@ -MF $(@:.o=.d) -c $< -o $@
