/* io.h - file formats of the rnlua core: a capped plain/gzip input stream, a
 * streaming tar reader, the MNIST IDX and CIFAR-10 dataset readers, the
 * RNCKPT01 checkpoint format and safetensors import/export.
 *
 * Conventions (as in rn.h): functions return 0 / a new reference on success
 * and -1 / NULL with rn_err() set on failure; every message names the file and
 * what is wrong. Nothing here exits, aborts, executes file content or creates
 * any file other than the target of a save (through a temp file beside it).
 * Every size read from a file is checked against the file before anything of
 * that size is allocated. */
#ifndef RN_IO_H
#define RN_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../rn.h"

/* ---- input stream (stream.c): plain or gzip, detected by magic ----------- */
typedef struct rn_in rn_in;
/* Opens path for reading without ever blocking on it: anything but a regular
 * file (a FIFO, a device, a socket, a folder) is refused before any read.
 * Returns the fd (its size in *size) or -1 with "file X: ..." set. */
int rn_open_regular(const char *path, uint64_t *size);
rn_in *rn_in_open(const char *path);
void rn_in_close(rn_in *in); /* NULL is fine */
bool rn_in_is_gz(const rn_in *in);
uint64_t rn_in_file_size(const rn_in *in); /* bytes on disk (compressed) */
uint64_t rn_in_pos(const rn_in *in);       /* bytes of content produced so far */
const char *rn_in_path(const rn_in *in);
/* Content beyond cap bytes is an error "file X: decompresses past N bytes"
 * (gzip) or "file X: is larger than N bytes" (plain). 0 = no cap. */
void rn_in_set_cap(rn_in *in, uint64_t cap);
/* Reads up to n bytes; *got < n only at the end of the content. */
int rn_in_read(rn_in *in, void *buf, size_t n, size_t *got);
/* Reads and discards n bytes: 0, 1 if the content ends first (*got says
 * where; no message set), -1 on an error (message set). */
int rn_in_skip(rn_in *in, uint64_t n, uint64_t *got);
/* The most content bytes the file can hold: its size if plain, and for gzip
 * its size times deflate's largest ratio (1032:1) plus slack. */
uint64_t rn_in_max_content(const rn_in *in);
/* The absolute cap on the bytes one tensor read from a file may claim in a
 * header (IDX dims, a checkpoint or safetensors entry's shape), whatever the
 * file's size: a small compressed file cannot make a reader allocate more.
 * Default RN_IO_DEFAULT_LIMIT; rn.io_limit(bytes) raises it. */
#define RN_IO_DEFAULT_LIMIT ((uint64_t)2 << 30)
uint64_t rn_io_limit(void);
void rn_io_set_limit(uint64_t bytes);
/* -1 + "file: what claims N bytes, more than the N-byte limit ..." above it */
int rn_io_check_limit(uint64_t bytes, const char *file, const char *what);

/* ---- tar (tar.c): ustar, GNU long names, pax path records ---------------- */
typedef struct rn_tar rn_tar;
typedef struct {
  char path[4096]; /* member path as stored (long names resolved) */
  uint64_t size;   /* data bytes */
  char type;       /* '0' regular file, '5' directory, '2' symlink, ... */
  uint64_t header_offset;
} rn_tar_member;
rn_tar *rn_tar_open(rn_in *in); /* borrows in */
void rn_tar_close(rn_tar *t);
/* Next member header (skipping what is left of the previous member's data);
 * returns 1, 0 at the end of the archive, -1 on error (also past
 * RN_TAR_MAX_MEMBERS headers, so that a stream of empty headers stops early). */
#define RN_TAR_MAX_MEMBERS 100000
int rn_tar_next(rn_tar *t, rn_tar_member *m);
/* Reads exactly n bytes of the current member's data. */
int rn_tar_read(rn_tar *t, void *buf, size_t n);
/* "name" of "a/b/name"; NULL-safe. */
const char *rn_path_base(const char *path);
/* True if path is absolute or has a ".." component. */
bool rn_path_unsafe(const char *path);

/* ---- datasets (idx.c, cifar.c) ------------------------------------------- */
/* MNIST IDX, plain or gzip: labels (magic 0x801) -> uint8 (N); images (magic
 * 0x803) -> uint8 (N,H,W). classes > 0 checks labels are in 0..classes-1. */
rn_tensor *rn_read_idx(const char *path, int64_t classes);
/* CIFAR-10 binary: path is cifar-10-binary.tar.gz (or .tar), the extracted
 * folder (or its parent), or one .bin batch file. train: data_batch_1..5,
 * else test_batch. images uint8 (N,32,32,3) NHWC, labels uint8 (N). */
int rn_read_cifar10(const char *path, bool train, rn_tensor **images, rn_tensor **labels);
#define RN_CIFAR_RECORD 3073
#define RN_CIFAR_MAX_FILE ((uint64_t)1 << 30) /* per batch file */

/* ---- named tensor sets (tset.c): what the loaders return ----------------- */
typedef struct {
  int n;
  char **names;
  rn_tensor **ts;    /* an entry may be set to NULL once its owner took it */
  char *meta;        /* checkpoint metadata blob (NUL-terminated too) */
  size_t meta_len;
  int nmeta;         /* safetensors __metadata__ */
  char **mkeys, **mvals;
} rn_tset;
void rn_tset_free(rn_tset *s); /* frees contents, not s; zeroes it */
/* CPU contiguous copies of the tensors to save (grad mode off meanwhile). */
int rn_io_host_copies(int n, rn_tensor *const *ts, rn_tensor **out);

/* ---- atomic writes (atomic.c) -------------------------------------------- */
typedef struct {
  char *path, *tmp;
  int fd;
} rn_atomic;
/* Creates "<path>.tmp.<pid>" beside path. */
int rn_atomic_begin(rn_atomic *a, const char *path);
int rn_atomic_write(rn_atomic *a, const void *buf, size_t n);
int rn_atomic_pwrite(rn_atomic *a, const void *buf, size_t n, uint64_t off);
/* fsync, close, rename over path, fsync the folder. On failure removes the
 * temp file (the old target stays). Frees a either way. */
int rn_atomic_commit(rn_atomic *a);
void rn_atomic_abort(rn_atomic *a); /* removes the temp file, frees a */

/* ---- little-endian helpers (bytes.c) ------------------------------------- */
void rn_le_put32(unsigned char *p, uint32_t v);
void rn_le_put64(unsigned char *p, uint64_t v);
uint32_t rn_le_get32(const unsigned char *p);
uint64_t rn_le_get64(const unsigned char *p);
uint32_t rn_be_get32(const unsigned char *p);
/* Reads exactly n bytes at off; -1 with "file X: ..." if short. */
int rn_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path);

/* ---- checkpoints (checkpoint.c): see doc/checkpoint_format.md ------------ */
#define RN_CKPT_MAGIC "RNCKPT01"
#define RN_CKPT_VERSION 1
#define RN_CKPT_MAX_ENTRIES 100000
#define RN_CKPT_MAX_NAME 255
#define RN_CKPT_MAX_META ((uint64_t)64 << 20)
#define RN_CKPT_MAX_TABLE ((uint64_t)64 << 20)
/* level: zlib level 0..9 (-1: default 1). names must be unique. */
int rn_ckpt_save(const char *path, int n, const char *const *names, rn_tensor *const *ts,
                 const char *meta, size_t meta_len, int level);
int rn_ckpt_load(const char *path, rn_tset *out);
/* dtype <-> file codes shared by both formats */
int rn_io_dtype_code(rn_dtype dt);          /* checkpoint code */
int rn_io_dtype_from_code(int code, rn_dtype *dt);
bool rn_io_name_ok(const char *name, size_t len); /* printable ASCII, 1..255 */

/* ---- safetensors (safetensors.c, json.c) --------------------------------- */
#define RN_ST_MAX_HEADER ((uint64_t)100000000) /* as the safetensors crate */
int rn_st_save(const char *path, int n, const char *const *names, rn_tensor *const *ts,
               int nmeta, const char *const *mkeys, const char *const *mvals);
int rn_st_load(const char *path, rn_tset *out);

/* Strict JSON (the subset safetensors headers use): objects, arrays, strings,
 * non-negative integers; no floats, true/false/null. Duplicate keys rejected. */
typedef enum { RN_J_OBJ, RN_J_ARR, RN_J_STR, RN_J_INT } rn_jtype;
typedef struct rn_json {
  rn_jtype type;
  char *str;          /* STR: NUL-terminated UTF-8; keys of OBJ members */
  size_t len;
  uint64_t num;       /* INT */
  int n;              /* OBJ/ARR: children */
  char **keys;        /* OBJ, NUL-terminated (a key holding \u0000 is refused) */
  struct rn_json **kids;
} rn_json;
/* Parses text[0..len); on error returns NULL with "what: message at byte N". */
rn_json *rn_json_parse(const char *text, size_t len, const char *what);
void rn_json_free(rn_json *j);
const rn_json *rn_json_get(const rn_json *obj, const char *key);
bool rn_utf8_valid(const char *s, size_t n);

#endif
