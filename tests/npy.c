/*
 * npy.c - see npy.h. The header is a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (80, 446), }
 * which is parsed by a tiny tokenizer (keys in any order, either quote style, tuples with or
 * without a trailing comma) rather than by substring search, so that a malformed header fails
 * clearly instead of being half understood.
 */
#include "npy.h"
#include "slurp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int accept(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted string into out (at most outlen-1 chars). 0 or -1. */
static int parse_string(cursor *c, char *out, size_t outlen)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return -1;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= outlen)
            return -1;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return -1;
    c->p++;
    out[n] = '\0';
    return 0;
}

static int parse_word(cursor *c, const char *w)
{
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

/* (d0, d1, ...) with an optional trailing comma; () for a scalar. */
static int parse_shape(cursor *c, npy_array *a, char *err, size_t errlen)
{
    if (!accept(c, '(')) {
        set_err(err, errlen, "npy: header 'shape' is not a tuple");
        return -1;
    }
    a->ndim = 0;
    for (;;) {
        if (accept(c, ')'))
            return 0;
        skip_ws(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') {
            set_err(err, errlen, "npy: header 'shape' holds something other than non-negative integers");
            return -1;
        }
        size_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            size_t d = (size_t)(*c->p - '0');
            if (v > (SIZE_MAX - d) / 10) {
                set_err(err, errlen, "npy: a dimension in 'shape' is too large");
                return -1;
            }
            v = v * 10 + d;
            c->p++;
        }
        skip_ws(c);
        if (c->p < c->end && *c->p == 'L') /* Python 2 longs */
            c->p++;
        if (a->ndim >= NPY_MAX_DIMS) {
            set_err(err, errlen, "npy: more than %d dimensions", NPY_MAX_DIMS);
            return -1;
        }
        a->shape[a->ndim++] = v;
        if (accept(c, ','))
            continue;
        if (accept(c, ')'))
            return 0;
        set_err(err, errlen, "npy: header 'shape' is not a well-formed tuple");
        return -1;
    }
}

static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

int npy_parse(const void *bytes, size_t len, npy_array *a, char *err, size_t errlen)
{
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    const unsigned char *b = bytes;
    memset(a, 0, sizeof(*a));
    if (!b || len < 10 || memcmp(b, magic, 6) != 0) {
        set_err(err, errlen, "npy: not a .npy file (bad magic)");
        return -1;
    }
    int major = b[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) {
            set_err(err, errlen, "npy: truncated header");
            return -1;
        }
        hlen = le32(b + 8);
        hstart = 12;
    } else {
        set_err(err, errlen, "npy: unsupported format version %d.%d", major, b[7]);
        return -1;
    }
    if (hlen > len - hstart) {
        set_err(err, errlen, "npy: truncated header (%zu bytes announced, %zu present)", hlen, len - hstart);
        return -1;
    }

    cursor c = {(const char *)b + hstart, (const char *)b + hstart + hlen};
    char descr[32] = "";
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
    if (!accept(&c, '{')) {
        set_err(err, errlen, "npy: header is not a dict");
        return -1;
    }
    for (;;) {
        if (accept(&c, '}'))
            break;
        char key[32];
        if (parse_string(&c, key, sizeof(key)) != 0 || !accept(&c, ':')) {
            set_err(err, errlen, "npy: malformed header dict");
            return -1;
        }
        if (strcmp(key, "descr") == 0) {
            if (parse_string(&c, descr, sizeof(descr)) != 0) {
                set_err(err, errlen, "npy: header 'descr' is not a simple dtype string (structured arrays are not supported)");
                return -1;
            }
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (parse_word(&c, "True"))
                fortran = 1;
            else if (parse_word(&c, "False"))
                fortran = 0;
            else {
                set_err(err, errlen, "npy: header 'fortran_order' is neither True nor False");
                return -1;
            }
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            if (parse_shape(&c, a, err, errlen) != 0) {
                memset(a, 0, sizeof(*a));
                return -1;
            }
            have_shape = 1;
        } else {
            set_err(err, errlen, "npy: unknown header key '%s'", key);
            return -1;
        }
        if (accept(&c, ','))
            continue;
        if (accept(&c, '}'))
            break;
        set_err(err, errlen, "npy: malformed header dict");
        memset(a, 0, sizeof(*a));
        return -1;
    }
    if (!have_descr || !have_order || !have_shape) {
        set_err(err, errlen, "npy: header lacks %s", !have_descr ? "'descr'" : !have_order ? "'fortran_order'" : "'shape'");
        memset(a, 0, sizeof(*a));
        return -1;
    }
    if (fortran) {
        set_err(err, errlen, "npy: Fortran-order arrays are not supported (save with C order)");
        memset(a, 0, sizeof(*a));
        return -1;
    }
    if (strcmp(descr, "<f4") == 0)
        a->dtype = NPY_F32;
    else if (strcmp(descr, "<i4") == 0)
        a->dtype = NPY_I32;
    else {
        set_err(err, errlen, "npy: unsupported dtype '%s' (only '<f4' and '<i4')", descr);
        memset(a, 0, sizeof(*a));
        return -1;
    }

    size_t count = 1;
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] != 0 && count > SIZE_MAX / 4 / a->shape[i]) {
            set_err(err, errlen, "npy: array too large");
            memset(a, 0, sizeof(*a));
            return -1;
        }
        count *= a->shape[i];
    }
    size_t data_off = hstart + hlen, have = len - data_off;
    if (have != count * 4) {
        set_err(err, errlen, "npy: data is %zu bytes but the shape needs %zu (%s)", have, count * 4,
                have < count * 4 ? "truncated" : "trailing bytes");
        memset(a, 0, sizeof(*a));
        return -1;
    }
    a->count = count;
    a->data = NULL;
    if (count > 0) {
        uint32_t *d = malloc(count * 4);
        if (!d) {
            set_err(err, errlen, "npy: out of memory for %zu elements", count);
            memset(a, 0, sizeof(*a));
            return -1;
        }
        const unsigned char *src = b + data_off;
        for (size_t i = 0; i < count; i++)
            d[i] = le32(src + 4 * i); /* same bit pattern; float and int32_t share the size */
        a->data = d;
    }
    return 0;
}

int npy_load(const char *path, npy_array *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    char msg[256];
    size_t len = 0;
    unsigned char *buf = slurp(path, &len, msg, sizeof msg);
    if (!buf) {
        set_err(err, errlen, "%s", msg);
        return -1;
    }
    int rc = npy_parse(buf, len, a, msg, sizeof(msg));
    free(buf);
    if (rc != 0)
        set_err(err, errlen, "%s: %s", path, msg);
    return rc;
}

int npy_load_typed(const char *path, npy_dtype dtype, int ndim, npy_array *a, char *err, size_t errlen)
{
    if (npy_load(path, a, err, errlen) != 0)
        return -1;
    if (a->dtype != dtype) {
        set_err(err, errlen, "%s: dtype is %s, expected %s", path, a->dtype == NPY_F32 ? "<f4" : "<i4",
                dtype == NPY_F32 ? "<f4" : "<i4");
        npy_free(a);
        return -1;
    }
    if (ndim >= 0 && a->ndim != ndim) {
        set_err(err, errlen, "%s: %d dimensions, expected %d", path, a->ndim, ndim);
        npy_free(a);
        return -1;
    }
    return 0;
}

void npy_free(npy_array *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof(*a));
}
