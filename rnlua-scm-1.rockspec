-- rnlua-scm-1.rockspec - rn as a Lua 5.4 module through LuaRocks:
--   luarocks make                      (in a checkout; --local or --tree DIR)
-- runs `make module` then `make install-module` (mk/lib.mk): the C core is
-- compiled with -fPIC into build-pic/ and found with its libraries (oneDNN,
-- OpenBLAS, zlib; CUDA and cuDNN wherever nvcc and cudnn.h exist) exactly as
-- the Makefile builds ./rnlua. rn/*.lua go to the tree's share/lua/5.4/rn/,
-- rn/core.so to its lib/lua/5.4/rn/. doc/install.md.
rockspec_format = "3.0"
package = "rnlua"
version = "scm-1"
source = {
  -- `luarocks make` builds the checkout it runs in; this URL is only read
  -- by `luarocks install`/`pack`, which need the project's public git URL
  url = "git+https://example.invalid/rnlua.git",
}
description = {
  summary = "Deep-learning runtime with a C core: tensors, autograd, Keras-like layers",
  detailed = [[
rnlua: tensors, ops, autograd and a Keras-like layer library with a C core
(oneDNN and OpenBLAS on the CPU, CUDA and cuDNN on the GPU), used from Lua 5.4
as `local rn = require "rn"`.
]],
}
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = {
  DNNL = { header = "oneapi/dnnl/dnnl.h", library = "dnnl" },
  OPENBLAS = { library = "openblas" },
  ZLIB = { header = "zlib.h", library = "z" },
}
build = {
  type = "make",
  build_target = "module",
  install_target = "install-module",
  build_variables = {
    LUA_INC = "$(LUA_INCDIR)",
  },
  install_variables = {
    INSTALL_LMOD = "$(LUADIR)",
    INSTALL_CMOD = "$(LIBDIR)",
  },
}
