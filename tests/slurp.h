/*
 * slurp.h - reads a whole file into memory, for the test tools' small inputs.
 */
#ifndef EARSHOT_SLURP_H
#define EARSHOT_SLURP_H

#include <stddef.h>

/* Returns a malloc'd buffer with the file's bytes followed by one '\0' (so text can be used as
   a string), and its length in *len; NULL with a message naming the path on failure. */
unsigned char *slurp(const char *path, size_t *len, char *err, size_t errlen);

#endif
