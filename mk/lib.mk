# mk/lib.mk - rnlua outside its own program (included by the Makefile;
# doc/install.md): the same C core compiled with -fPIC into build-pic/ and
# linked twice, while ./rnlua stays one static binary as before:
#
# - build-pic/rn/core.so: the Lua C module rn.core, for a stock Lua 5.4
#   (`require "rn"`). It does NOT link Lua: the interpreter that loads it
#   supplies the Lua API (two copies of the Lua core in a process break).
#   Exports only luaopen_rn_core (mk/rn_core.map).
# - build-pic/librnlua.so: for C programs that embed rnlua (include/rnlua.h):
#   the core, the embedding API (core/embed/) and the shared liblua5.4.so,
#   which the program links too. Exports rnlua_* and luaopen_rn_core.
#
# The CUDA kernels are the program's own objects (build/kernels/*.o: nvcc
# compiles them with -fPIC already); only the C files are compiled twice.
#
#   make module | lib | pic   build-pic/rn/core.so | librnlua.so | both
#   make install-module       the module into INSTALL_LMOD / INSTALL_CMOD
#                             (Lua's layout; what rnlua-scm-1.rockspec runs)
#   make install-lib          librnlua.so, rnlua.h, rnlua.pc (part of install)
#   make test-lua             the module under Debian's lua5.4 (part of the
#                             suite, then as LuaRocks installs it)

PIC_BUILD ?= build-pic
LUA_VERSION ?= 5.4
LUA_SO ?= -llua$(LUA_VERSION)
INSTALL_LMOD ?= $(PREFIX)/share/lua/$(LUA_VERSION)
INSTALL_CMOD ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LIB_DEB_PKGS = lua$(LUA_VERSION) luarocks pkg-config valgrind
# the program's libraries less the Lua core and readline (the program's REPL)
MOD_LIBS = $(filter-out $(LUA_A) -lreadline,$(LIBS))

.PHONY: module lib pic install-module install-lib test-lua

ifneq ($(RN_PIC),1)

PIC_MAKE = $(MAKE) --no-print-directory RN_PIC=1 BUILD=$(PIC_BUILD) MAIN_BUILD=$(BUILD)

module: $(CUDA_OBJS)
	+@$(PIC_MAKE) $(PIC_BUILD)/rn/core.so
lib: $(CUDA_OBJS)
	+@$(PIC_MAKE) $(PIC_BUILD)/librnlua.so
pic: $(CUDA_OBJS)
	+@$(PIC_MAKE) $(PIC_BUILD)/rn/core.so $(PIC_BUILD)/librnlua.so

else # ---- inside the build-pic make ------------------------------------------

CFLAGS += -fPIC
PIC_OBJS = $(filter-out $(BUILD)/core/rnlua.o $(BUILD)/core/repl.o $(CUDA_OBJS),$(OBJS)) \
  $(patsubst $(BUILD)/%,$(MAIN_BUILD)/%,$(CUDA_OBJS))

$(BUILD)/rn/core.so: $(PIC_OBJS) mk/rn_core.map
	@mkdir -p $(dir $@)
	@echo "  LINK $@"
	@$(CC) $(CFLAGS) -shared -Wl,--version-script=mk/rn_core.map -o $@ $(PIC_OBJS) \
	  $(MOD_LIBS) $(CUDA_LIBS) $(MPI_LIBS)

$(BUILD)/librnlua.so: $(PIC_OBJS) $(BUILD)/core/embed/embed.o mk/librnlua.map
	@echo "  LINK $@"
	@$(CC) $(CFLAGS) -shared -Wl,-soname,librnlua.so.0 -Wl,--no-undefined \
	  -Wl,--version-script=mk/librnlua.map -o $@ $(PIC_OBJS) $(BUILD)/core/embed/embed.o \
	  $(LUA_SO) $(MOD_LIBS) $(CUDA_LIBS) $(MPI_LIBS)
	@ln -sf librnlua.so $(BUILD)/librnlua.so.0 # the soname, for programs run from the build tree

-include $(BUILD)/core/embed/embed.d

endif

install-module: module
	install -d $(DESTDIR)$(INSTALL_LMOD)/rn $(DESTDIR)$(INSTALL_CMOD)/rn
	cp -r lua/rn/. $(DESTDIR)$(INSTALL_LMOD)/rn/
	install -m 755 $(PIC_BUILD)/rn/core.so $(DESTDIR)$(INSTALL_CMOD)/rn/core.so

# librnlua.so finds rn's Lua files at <libdir>/../share/rnlua/lua, the
# program's copy (installed by the Makefile's install).
install-lib: lib
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/share/rnlua/lua
	install -m 755 $(PIC_BUILD)/librnlua.so $(DESTDIR)$(PREFIX)/lib/librnlua.so.0
	ln -sf librnlua.so.0 $(DESTDIR)$(PREFIX)/lib/librnlua.so
	install -m 644 include/rnlua.h $(DESTDIR)$(PREFIX)/include/rnlua.h
	cp -r lua/. $(DESTDIR)$(PREFIX)/share/rnlua/lua/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/^\#define RNLUA_VERSION "\(.*\)"/\1/p' include/rnlua.h)|' \
	  -e 's|@LUA_INC@|$(LUA_INC)|' -e 's|@LUA_SO@|$(LUA_SO)|' mk/rnlua.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/rnlua.pc

install: install-lib install-module

# A representative part of the suite under Debian's lua5.4 with the module
# from build-pic/, then `luarocks make` of the rockspec into a temporary tree
# and a few files again with what LuaRocks installed; last, the embedding
# API's test program under valgrind (no invalid access, no definite leak).
LUA54_TESTS = tests/test_tensor.lua tests/test_autograd.lua tests/test_elementwise.lua \
  tests/test_nn.lua tests/test_layers.lua tests/test_binding.lua tests/test_embed.lua
LUAROCKS_TESTS = tests/test_tensor.lua tests/test_embed.lua
test-lua: deps
	@sh scripts/deps.sh $(LIB_DEB_PKGS)
	$(MAKE) all pic
	LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(PIC_BUILD)/?.so;;' \
	  lua$(LUA_VERSION) tests/run.lua $(LUA54_TESTS)
	@rm -rf $(PIC_BUILD)/rocks-tree
	luarocks --lua-version $(LUA_VERSION) make --tree $(PIC_BUILD)/rocks-tree rnlua-scm-1.rockspec
	eval "$$(luarocks --lua-version $(LUA_VERSION) path --tree $(PIC_BUILD)/rocks-tree)" && \
	  RN_EXPECT_ROCK=$(CURDIR)/$(PIC_BUILD)/rocks-tree lua$(LUA_VERSION) tests/run.lua $(LUAROCKS_TESTS)
	$(CC) -std=c11 -g -Wall -Wextra -Werror tests/embed/embed_api.c -Iinclude -I$(LUA_INC) \
	  -L$(PIC_BUILD) -Wl,-rpath,$(CURDIR)/$(PIC_BUILD) -lrnlua $(LUA_SO) -o $(PIC_BUILD)/embed_api
	RN_CPU_CACHE_BYTES=0 valgrind -q --error-exitcode=99 --leak-check=full \
	  --errors-for-leak-kinds=definite $(PIC_BUILD)/embed_api > $(PIC_BUILD)/embed_api.out
