/*
 * fuzz_model_header.c - libFuzzer target: a hostile safetensors header in front of a real
 * model's weights (es_model_load: header JSON, metadata, config validation, tensor table).
 *
 * Mutating a whole 1 MB model would spend nearly every try on weight bytes the loader only
 * maps, so the fuzzer mutates the header alone and the file is rebuilt as
 * [8-byte length][header][the seed model's data section]. The seed model comes from
 * $EARSHOT_FUZZ_MODEL (a converted golden model). Loading must succeed or fail with a
 * one-line reason, never crash or leak.
 */
#define _GNU_SOURCE /* memfd_create */
#include "model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint8_t *seed_data;
static size_t seed_data_size;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *path = getenv("EARSHOT_FUZZ_MODEL");
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) {
        fprintf(stderr, "fuzz_model_header: set EARSHOT_FUZZ_MODEL to a converted model\n");
        exit(2);
    }
    uint8_t len8[8];
    uint64_t n = 0;
    if (fread(len8, 1, 8, f) != 8) {
        fprintf(stderr, "fuzz_model_header: %s is too short\n", path);
        exit(2);
    }
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | len8[i];
    fseek(f, 0, SEEK_END);
    long total = ftell(f);
    if (total < 0 || (uint64_t)total < 8 + n) {
        fprintf(stderr, "fuzz_model_header: %s is not a safetensors file\n", path);
        exit(2);
    }
    seed_data_size = (size_t)total - 8 - n;
    seed_data = malloc(seed_data_size ? seed_data_size : 1);
    fseek(f, (long)(8 + n), SEEK_SET);
    if (!seed_data || fread(seed_data, 1, seed_data_size, f) != seed_data_size) {
        fprintf(stderr, "fuzz_model_header: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-model", 0);
    if (fd < 0)
        return 0;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)size >> (8 * i));
    if (write(fd, len8, 8) != 8 || write(fd, data, size) != (ssize_t)size ||
        write(fd, seed_data, seed_data_size) != (ssize_t)seed_data_size) {
        close(fd);
        return 0;
    }
    char path[64], err[512];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    es_model *m = es_model_load(path, err, sizeof err);
    if (!m && !err[0])
        abort(); /* a refusal must say why */
    es_model_free(m);
    close(fd);
    return 0;
}
