/*
 * random_model.h - writes a random-weights Earshot model of a chosen size, for benchmarks.
 */
#ifndef EARSHOT_RANDOM_MODEL_H
#define EARSHOT_RANDOM_MODEL_H

#include <stddef.h>

/* The defaults in brackets are NVIDIA's 114M streaming FastConformer (FastConformer-L); its XL
   size is 24 layers x d_model 1024, ff 4096, the rest the same. */
typedef struct {
    int n_layers;     /* [17] */
    int d_model;      /* [512] */
    int n_heads;      /* [8] */
    int ff_dim;       /* [2048] feed-forward width, a multiple of d_model (NeMo's ff_expansion_factor);
                         0 = 4 x d_model */
    int conv_kernel;  /* [9] depthwise convolution kernel, odd; 0 = 9 */
    int sub_channels; /* [256] dw_striding subsampling channels */
    int vocab;        /* [1024] */
} es_random_model_params;

/* Returns 0, or -1 with a message in err (also for a shape NeMo could not build). */
int es_write_random_model(const char *path, const es_random_model_params *p, char *err, size_t errlen);

#endif
