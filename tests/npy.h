/*
 * npy.h - a small reader for numpy .npy files (format versions 1, 2 and 3), for the tests.
 *
 * Supports what the golden cases hold: little-endian float32 ('<f4') and int32 ('<i4') arrays in
 * C order, any number of dimensions up to NPY_MAX_DIMS (0-d scalars included). Anything else
 * (other dtypes, big-endian, Fortran order, truncated or padded data, a malformed header) is
 * refused with a one-line message that says why. The data is copied into a malloc'd buffer in
 * host byte order, so the result does not depend on the file's alignment or the host's endianness.
 */
#ifndef EARSHOT_TESTS_NPY_H
#define EARSHOT_TESTS_NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8

typedef enum { NPY_F32 = 1, NPY_I32 = 2 } npy_dtype;

typedef struct {
    npy_dtype dtype;
    int ndim;                    /* 0 for a scalar */
    size_t shape[NPY_MAX_DIMS];  /* C order: the last index varies fastest */
    size_t count;                /* product of shape (1 for a scalar) */
    void *data;                  /* float * for NPY_F32, int32_t * for NPY_I32; NULL if count is 0 */
} npy_array;

/* Parse a whole .npy file held in memory. 0 on success; -1 with a message in err (if err is not
 * NULL) on failure, *a then being zeroed. */
int npy_parse(const void *bytes, size_t len, npy_array *a, char *err, size_t errlen);
/* Read and parse a file; the message names the path. */
int npy_load(const char *path, npy_array *a, char *err, size_t errlen);
/* Load and require a dtype (and, when ndim >= 0, that many dimensions). */
int npy_load_typed(const char *path, npy_dtype dtype, int ndim, npy_array *a, char *err, size_t errlen);
void npy_free(npy_array *a);

static inline const float *npy_f32(const npy_array *a) { return a->dtype == NPY_F32 ? (const float *)a->data : NULL; }
static inline const int32_t *npy_i32(const npy_array *a) { return a->dtype == NPY_I32 ? (const int32_t *)a->data : NULL; }

#endif
