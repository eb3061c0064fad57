# mpi.mk - the MPI part of the build (rn.distributed), included by the
# Makefile when mpicc is found (never with NOMPI=1). Only core/dist/*.c see
# mpi.h and -DRN_WITH_MPI (their objects are rebuilt when these flags
# change, through $(BUILD)/mpi.stamp); the binary links libmpi (Open MPI:
# libopenmpi-dev + openmpi-bin on Debian). Open MPI and MPICH are not ABI
# compatible, so MPI is linked at build time, not dlopen'ed.
# Defines only variables and rules, so the Makefile's default goal stays `all`.

MPI_CFLAGS = -DRN_WITH_MPI $(patsubst -I%,-isystem %,$(shell $(MPICC) --showme:compile 2>/dev/null || $(MPICC) -compile-info | cut -d' ' -f2-))
MPI_LIBS = $(shell $(MPICC) --showme:link 2>/dev/null || $(MPICC) -link-info | cut -d' ' -f2-)
