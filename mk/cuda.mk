# cuda.mk - the CUDA part of the build (included by the Makefile when nvcc and
# cuDNN headers are found). Being written: empty until the CUDA backend lands.
CUDA_SRCS =
CUDA_OBJS =
CUDA_CFLAGS =
CUDA_LIBS =
