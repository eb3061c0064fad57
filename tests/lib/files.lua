-- files.lua - file helpers shared by the tests: whole-file reads and writes,
-- temporary files and folders, shell quoting.
local M = {}

--- read(path): the file's bytes; raises if it cannot be opened.
function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- try_read(path): the file's bytes, or nil when it cannot be opened.
function M.try_read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

--- write(path, bytes): writes the file whole; returns path.
function M.write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  return path
end

--- q(s): s quoted for a POSIX shell.
function M.q(s) return "'" .. (tostring(s):gsub("'", "'\\''")) .. "'" end

--- tmpdir(): a new empty folder under /tmp.
function M.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. M.q(d)))
  return d
end

--- tmpfile(content): a new temporary file holding content ("" by default).
function M.tmpfile(content)
  return M.write(os.tmpname(), content or "")
end

--- rmrf(path): removes a file or folder tree.
function M.rmrf(p) os.execute("rm -rf " .. M.q(p)) end

return M
