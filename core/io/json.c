/* json.c - a small strict JSON parser for exactly what safetensors headers
 * hold: objects, arrays, strings (escapes and UTF-8 checked, \u0000 refused)
 * and non-negative integers. Floats, negative numbers, true/false/null,
 * duplicate keys, trailing commas, nesting deeper than 16 and anything after
 * the top value are errors naming the byte offset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

#define MAX_DEPTH 16

typedef struct {
  const unsigned char *s;
  size_t n, i;
  const char *what;
} parser;

static int perr(parser *p, const char *msg) {
  return rn_err("%s: malformed JSON header: %s at byte %zu", p->what, msg, p->i);
}

bool rn_utf8_valid(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    size_t k;
    uint32_t cp;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xc2 && c <= 0xdf) { k = 1; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { k = 2; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 3; cp = c & 0x07; }
    else return false;
    if (n - i <= k) return false;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + j] & 0x3f);
    }
    if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += k + 1;
  }
  return true;
}

void rn_json_free(rn_json *j) {
  if (!j) return;
  for (int i = 0; i < j->n; i++) {
    if (j->keys) free(j->keys[i]);
    if (j->kids) rn_json_free(j->kids[i]);
  }
  free(j->keys);
  free(j->kids);
  free(j->str);
  free(j);
}

static void ws(parser *p) {
  while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
                         p->s[p->i] == '\r'))
    p->i++;
}

static int hex4(parser *p, uint32_t *v) {
  if (p->n - p->i < 4) return perr(p, "truncated \\u escape");
  *v = 0;
  for (int k = 0; k < 4; k++) {
    unsigned char c = p->s[p->i++];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return perr(p, "bad hex digit in \\u escape");
    *v = *v * 16 + (uint32_t)d;
  }
  return 0;
}

/* Parses a string at p->i (the opening quote) into a new buffer. */
static char *pstring(parser *p, size_t *len) {
  p->i++; /* '"' */
  size_t start = p->i;
  /* the decoded string is never longer than the raw text */
  size_t end = start;
  while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
  if (end >= p->n) { perr(p, "unterminated string"); return NULL; }
  char *out = malloc(end - start + 1);
  if (!out) { rn_err("%s: out of memory", p->what); return NULL; }
  size_t k = 0;
  while (p->s[p->i] != '"') {
    unsigned char c = p->s[p->i];
    if (c < 0x20) { perr(p, "control character in string"); free(out); return NULL; }
    if (c != '\\') { out[k++] = (char)c; p->i++; continue; }
    p->i++;
    unsigned char e = p->s[p->i++];
    switch (e) {
    case '"': out[k++] = '"'; break;
    case '\\': out[k++] = '\\'; break;
    case '/': out[k++] = '/'; break;
    case 'b': out[k++] = '\b'; break;
    case 'f': out[k++] = '\f'; break;
    case 'n': out[k++] = '\n'; break;
    case 'r': out[k++] = '\r'; break;
    case 't': out[k++] = '\t'; break;
    case 'u': {
      uint32_t cp;
      if (hex4(p, &cp) < 0) { free(out); return NULL; }
      if (cp >= 0xdc00 && cp <= 0xdfff) { perr(p, "lone low surrogate"); free(out); return NULL; }
      if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t lo;
        if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') {
          perr(p, "lone high surrogate");
          free(out);
          return NULL;
        }
        p->i += 2;
        if (hex4(p, &lo) < 0) { free(out); return NULL; }
        if (lo < 0xdc00 || lo > 0xdfff) { perr(p, "bad surrogate pair"); free(out); return NULL; }
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      }
      if (cp == 0) { perr(p, "\\u0000 in string"); free(out); return NULL; }
      /* UTF-8: at most 4 bytes, never longer than the 6- or 12-byte escape */
      if (cp < 0x80) out[k++] = (char)cp;
      else if (cp < 0x800) {
        out[k++] = (char)(0xc0 | (cp >> 6));
        out[k++] = (char)(0x80 | (cp & 0x3f));
      } else if (cp < 0x10000) {
        out[k++] = (char)(0xe0 | (cp >> 12));
        out[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[k++] = (char)(0x80 | (cp & 0x3f));
      } else {
        out[k++] = (char)(0xf0 | (cp >> 18));
        out[k++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[k++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[k++] = (char)(0x80 | (cp & 0x3f));
      }
      break;
    }
    default:
      p->i--;
      perr(p, "bad escape in string");
      free(out);
      return NULL;
    }
  }
  p->i++; /* closing quote */
  out[k] = 0;
  if (!rn_utf8_valid(out, k)) {
    rn_err("%s: malformed JSON header: string before byte %zu is not valid UTF-8", p->what, p->i);
    free(out);
    return NULL;
  }
  *len = k;
  return out;
}

static rn_json *newnode(parser *p, rn_jtype t) {
  rn_json *j = calloc(1, sizeof *j);
  if (!j) rn_err("%s: out of memory", p->what);
  else j->type = t;
  return j;
}

static int push_kid(parser *p, rn_json *j, char *key, rn_json *kid, int *cap) {
  if (j->n == *cap) {
    int nc = *cap ? *cap * 2 : 4;
    rn_json **k2 = realloc(j->kids, sizeof *k2 * (size_t)nc);
    if (!k2) return rn_err("%s: out of memory", p->what);
    j->kids = k2;
    if (j->type == RN_J_OBJ) {
      char **s2 = realloc(j->keys, sizeof *s2 * (size_t)nc);
      if (!s2) return rn_err("%s: out of memory", p->what);
      j->keys = s2;
    }
    *cap = nc;
  }
  if (j->type == RN_J_OBJ) j->keys[j->n] = key;
  j->kids[j->n++] = kid;
  return 0;
}

static int cmp_key(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static rn_json *value(parser *p, int depth);

static rn_json *container(parser *p, int depth, bool obj) {
  if (depth >= MAX_DEPTH) { perr(p, "nesting too deep"); return NULL; }
  rn_json *j = newnode(p, obj ? RN_J_OBJ : RN_J_ARR);
  if (!j) return NULL;
  int cap = 0;
  p->i++;
  ws(p);
  char close = obj ? '}' : ']';
  if (p->i < p->n && p->s[p->i] == close) { p->i++; return j; }
  for (;;) {
    char *key = NULL;
    ws(p);
    if (obj) {
      size_t kl;
      if (p->i >= p->n || p->s[p->i] != '"') { perr(p, "expected a string key"); goto fail; }
      key = pstring(p, &kl);
      if (!key) goto fail;
      ws(p);
      if (p->i >= p->n || p->s[p->i] != ':') { free(key); perr(p, "expected ':'"); goto fail; }
      p->i++;
    }
    rn_json *kid = value(p, depth + 1);
    if (!kid) { free(key); goto fail; }
    if (push_kid(p, j, key, kid, &cap) < 0) { free(key); rn_json_free(kid); goto fail; }
    ws(p);
    if (p->i >= p->n) { perr(p, obj ? "unterminated object" : "unterminated array"); goto fail; }
    if (p->s[p->i] == ',') { p->i++; continue; }
    if (p->s[p->i] == close) { p->i++; break; }
    perr(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    goto fail;
  }
  if (obj && j->n > 1) { /* duplicate keys */
    char **ks = malloc(sizeof *ks * (size_t)j->n);
    if (!ks) { rn_err("%s: out of memory", p->what); goto fail; }
    memcpy(ks, j->keys, sizeof *ks * (size_t)j->n);
    qsort(ks, (size_t)j->n, sizeof *ks, cmp_key);
    for (int i = 1; i < j->n; i++)
      if (strcmp(ks[i], ks[i - 1]) == 0) {
        rn_err("%s: malformed JSON header: duplicate key \"%.100s\" in the object ending at byte "
               "%zu", p->what, ks[i], p->i);
        free(ks);
        goto fail;
      }
    free(ks);
  }
  return j;
fail:
  rn_json_free(j);
  return NULL;
}

static rn_json *value(parser *p, int depth) {
  ws(p);
  if (p->i >= p->n) { perr(p, "unexpected end"); return NULL; }
  unsigned char c = p->s[p->i];
  if (c == '{' || c == '[') return container(p, depth, c == '{');
  if (c == '"') {
    rn_json *j = newnode(p, RN_J_STR);
    if (!j) return NULL;
    j->str = pstring(p, &j->len);
    if (!j->str) { free(j); return NULL; }
    return j;
  }
  if (c >= '0' && c <= '9') {
    uint64_t v = 0;
    size_t start = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
      unsigned d = (unsigned)(p->s[p->i] - '0');
      if (v > (UINT64_MAX - d) / 10 || v > ((uint64_t)1 << 62)) {
        perr(p, "integer too large");
        return NULL;
      }
      v = v * 10 + d;
      p->i++;
    }
    if (p->s[start] == '0' && p->i - start > 1) { p->i = start; perr(p, "leading zero"); return NULL; }
    if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
      perr(p, "only integers are allowed here");
      return NULL;
    }
    rn_json *j = newnode(p, RN_J_INT);
    if (j) j->num = v;
    return j;
  }
  if (c == '-') { perr(p, "negative number"); return NULL; }
  if (c == 't' || c == 'f' || c == 'n') { perr(p, "true/false/null are not allowed here"); return NULL; }
  perr(p, "unexpected character");
  return NULL;
}

rn_json *rn_json_parse(const char *text, size_t len, const char *what) {
  parser p = {(const unsigned char *)text, len, 0, what};
  rn_json *j = value(&p, 0);
  if (!j) return NULL;
  ws(&p);
  if (p.i != p.n) {
    perr(&p, "data after the top-level value");
    rn_json_free(j);
    return NULL;
  }
  return j;
}

const rn_json *rn_json_get(const rn_json *obj, const char *key) {
  if (!obj || obj->type != RN_J_OBJ) return NULL;
  for (int i = 0; i < obj->n; i++)
    if (strcmp(obj->keys[i], key) == 0) return obj->kids[i];
  return NULL;
}
