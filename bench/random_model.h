/*
 * random_model.h - writes a random-weights Earshot model of a chosen size, for benchmarks.
 */
#ifndef EARSHOT_RANDOM_MODEL_H
#define EARSHOT_RANDOM_MODEL_H

#include <stddef.h>

typedef struct {
    int n_layers;     /* 17 for NVIDIA's 114M streaming FastConformer */
    int d_model;      /* 512 */
    int n_heads;      /* 8 */
    int sub_channels; /* 256 */
    int vocab;        /* 1024 */
} es_random_model_params;

/* Returns 0, or -1 with a message in err. */
int es_write_random_model(const char *path, const es_random_model_params *p, char *err, size_t errlen);

#endif
