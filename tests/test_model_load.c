/*
 * test_model_load.c - the model loader against broken and hostile files.
 *
 *   test_model_load MODEL.safetensors TMPDIR
 *
 * Starting from a good converted model it writes damaged copies (truncated anywhere, a header
 * length pointing past the end, a header that is not JSON, a plain safetensors file without
 * Earshot metadata, configs outside the family, a tensor with the wrong shape or dtype, offsets
 * outside the file) and checks that each is refused with a message naming the problem, never
 * a crash (the suite also runs under ASan/UBSan). The good file must load.
 */
#include "model.h"
#include "slurp.h"

#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *what, const char *detail)
{
    printf("  %-4s %s%s%s\n", ok ? "ok" : "FAIL", what, detail ? ": " : "", detail ? detail : "");
    ok ? passed++ : failed++;
}

static void write_all(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b, 1, n, f);
        fclose(f);
    }
}

/* Loading must fail and the message must contain `expect`. */
static void expect_refused(const char *path, const char *what, const char *expect)
{
    char err[512] = "";
    es_model *m = es_model_load(path, err, sizeof err);
    int ok = m == NULL && err[0] != '\0' && (!expect || strstr(err, expect) != NULL);
    check(ok, what, err[0] ? err : "(no message)");
    es_model_free(m);
}

/* Rewrites the header of the good file with `edit` applied and the data kept. */
static void write_edited(const unsigned char *good, size_t n, const char *path,
                         void (*edit)(cJSON *hdr, cJSON *cfg))
{
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | good[i];
    cJSON *hdr = cJSON_ParseWithLength((const char *)good + 8, (size_t)hl);
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(hdr, "__metadata__");
    cJSON *cfg_item = cJSON_GetObjectItemCaseSensitive(meta, "earshot.config");
    cJSON *cfg = cJSON_Parse(cfg_item->valuestring);
    edit(hdr, cfg);
    char *cfg_text = cJSON_PrintUnformatted(cfg);
    cJSON_ReplaceItemInObjectCaseSensitive(meta, "earshot.config", cJSON_CreateString(cfg_text));
    char *text = cJSON_PrintUnformatted(hdr);
    size_t tl = strlen(text);
    /* keep the data where it was: the new header must fit in the old one's space */
    FILE *f = fopen(path, "wb");
    if (tl <= hl) {
        fwrite(good, 1, 8, f);
        fwrite(text, 1, tl, f);
        for (size_t i = tl; i < hl; i++)
            fputc(' ', f);
        fwrite(good + 8 + hl, 1, n - 8 - (size_t)hl, f);
    }
    fclose(f);
    free(cfg_text);
    free(text);
    cJSON_Delete(cfg);
    cJSON_Delete(hdr);
}

static cJSON *obj(cJSON *root, const char *a, const char *b)
{
    cJSON *x = cJSON_GetObjectItemCaseSensitive(root, a);
    return b ? cJSON_GetObjectItemCaseSensitive(x, b) : x;
}

static void set_str(cJSON *parent, const char *key, const char *value)
{
    cJSON_ReplaceItemInObjectCaseSensitive(parent, key, cJSON_CreateString(value));
}

static void edit_subsampling(cJSON *h, cJSON *c)
{
    (void)h;
    set_str(obj(c, "encoder", NULL), "subsampling", "vggnet");
}
static void edit_attention(cJSON *h, cJSON *c)
{
    (void)h;
    set_str(obj(c, "encoder", NULL), "self_attention_model", "abs_pos");
}
static void edit_normalize(cJSON *h, cJSON *c)
{
    (void)h;
    set_str(obj(c, "preprocessor", NULL), "normalize", "per_feature");
}
/* NeMo's fixed normalisation with a bad list; the parts of the config the engine never reads
 * are dropped so that the edited header still fits in the old one's space. */
static void set_fixed_normalize(cJSON *c, int n_mean, int n_std, double std_value)
{
    const char *unused[] = {"optim", "train_ds", "validation_ds", "test_ds", "spec_augment", "labels"};
    for (size_t i = 0; i < sizeof unused / sizeof unused[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(c, unused[i]);
    cJSON *stats = cJSON_CreateObject(), *mean = cJSON_AddArrayToObject(stats, "fixed_mean"),
          *std = cJSON_AddArrayToObject(stats, "fixed_std");
    for (int i = 0; i < n_mean; i++)
        cJSON_AddItemToArray(mean, cJSON_CreateNumber(-10));
    for (int i = 0; i < n_std; i++)
        cJSON_AddItemToArray(std, cJSON_CreateNumber(i == 1 ? std_value : 3));
    cJSON_ReplaceItemInObjectCaseSensitive(obj(c, "preprocessor", NULL), "normalize", stats);
}
static void edit_fixed_short(cJSON *h, cJSON *c)
{
    (void)h;
    set_fixed_normalize(c, 2, 2, 3);
}
static void edit_fixed_zero_std(cJSON *h, cJSON *c)
{
    (void)h;
    int n_mels = cJSON_GetObjectItemCaseSensitive(obj(c, "preprocessor", NULL), "features")->valueint;
    set_fixed_normalize(c, n_mels, n_mels, 0);
}
static void edit_layers(cJSON *h, cJSON *c)
{
    (void)h;
    cJSON_ReplaceItemInObjectCaseSensitive(obj(c, "encoder", NULL), "n_layers", cJSON_CreateNumber(40));
}
static void edit_context(cJSON *h, cJSON *c)
{
    (void)h;
    int bad[2] = {-1, 3};
    cJSON_ReplaceItemInObjectCaseSensitive(obj(c, "encoder", NULL), "att_context_size", cJSON_CreateIntArray(bad, 2));
}
static void edit_shape(cJSON *h, cJSON *c)
{
    (void)c;
    cJSON *shape = obj(h, "encoder.layers.0.norm_out.weight", "shape");
    cJSON_ReplaceItemInArray(shape, 0, cJSON_CreateNumber(7));
}
static void edit_dtype(cJSON *h, cJSON *c)
{
    (void)c;
    set_str(obj(h, "encoder.layers.0.norm_out.weight", NULL), "dtype", "F16");
}
static void edit_offsets(cJSON *h, cJSON *c)
{
    (void)c;
    cJSON *off = obj(h, "encoder.layers.0.norm_out.weight", "data_offsets");
    cJSON_ReplaceItemInArray(off, 0, cJSON_CreateNumber(1e12));
    cJSON_ReplaceItemInArray(off, 1, cJSON_CreateNumber(1e12 + 256));
}
static void edit_missing(cJSON *h, cJSON *c)
{
    (void)c;
    cJSON_DeleteItemFromObjectCaseSensitive(h, "encoder.layers.0.self_attn.linear_q.weight");
}
static void edit_decoder(cJSON *h, cJSON *c)
{
    (void)h;
    set_str(obj(c, "decoder", NULL), "_target_", "nemo.collections.asr.modules.TransformerDecoder");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_model_load MODEL.safetensors TMPDIR\n");
        return 2;
    }
    size_t n = 0;
    char path[1024], err[512];
    unsigned char *good = slurp(argv[1], &n, err, sizeof err);
    if (!good || n < 64) {
        fprintf(stderr, "cannot read %s: %s\n", argv[1], good ? "too short" : err);
        free(good);
        return 2;
    }
    es_model *m = es_model_load(argv[1], err, sizeof err);
    check(m != NULL, "the good model loads", m ? NULL : err);
    es_model_free(m);

    snprintf(path, sizeof path, "%s/missing.safetensors", argv[2]);
    remove(path);
    expect_refused(path, "missing file", "cannot open");
    snprintf(path, sizeof path, "%s/empty.safetensors", argv[2]);
    write_all(path, "", 0);
    expect_refused(path, "empty file", "too short");
    expect_refused(argv[2], "a directory", "not a regular file");

    /* truncation at many places: inside the length, the header and the data */
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | good[i];
    size_t cuts[] = {4, 9, 8 + (size_t)hl / 2, 8 + (size_t)hl, 8 + (size_t)hl + 100, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(path, sizeof path, "%s/truncated.safetensors", argv[2]);
        write_all(path, good, cuts[i]);
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", cuts[i], n);
        expect_refused(path, what, NULL);
    }

    unsigned char *copy = malloc(n);
    memcpy(copy, good, n);
    copy[0] = 0xff, copy[7] = 0x7f; /* header length far past the end */
    snprintf(path, sizeof path, "%s/badlen.safetensors", argv[2]);
    write_all(path, copy, n);
    expect_refused(path, "header length past the end of the file", "header length");
    memcpy(copy, good, n);
    memset(copy + 8, '!', 16);
    snprintf(path, sizeof path, "%s/notjson.safetensors", argv[2]);
    write_all(path, copy, n);
    expect_refused(path, "header that is not JSON", "corrupt safetensors header");
    const char plain[] = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    unsigned char small[8 + sizeof plain - 1 + 4] = {sizeof plain - 1};
    memcpy(small + 8, plain, sizeof plain - 1);
    snprintf(path, sizeof path, "%s/plain.safetensors", argv[2]);
    write_all(path, small, sizeof small);
    expect_refused(path, "safetensors without Earshot metadata", "not an Earshot model");
    free(copy);

    struct {
        void (*edit)(cJSON *, cJSON *);
        const char *what, *expect;
    } edits[] = {
        {edit_subsampling, "subsampling vggnet", "encoder.subsampling = 'vggnet'"},
        {edit_attention, "absolute positional attention", "encoder.self_attention_model = 'abs_pos'"},
        {edit_normalize, "per-feature normalisation", "preprocessor.normalize = 'per_feature'"},
        {edit_fixed_short, "fixed normalisation with 2 values", "normalize.fixed_mean must be a list of"},
        {edit_fixed_zero_std, "fixed normalisation with a zero std", "normalize.fixed_std[1] is not a positive"},
        {edit_layers, "config says more layers than the file has", "encoder.layers.2"},
        {edit_context, "unlimited left context", "att_context_size"},
        {edit_shape, "a tensor with the wrong shape", "has shape [7]"},
        {edit_dtype, "a tensor with the wrong dtype", "dtype F16"},
        {edit_offsets, "tensor offsets outside the file", "outside the file"},
        {edit_missing, "a missing tensor", "lacks tensor encoder.layers.0.self_attn.linear_q.weight"},
        {edit_decoder, "an unsupported decoder", "decoder._target_"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        snprintf(path, sizeof path, "%s/edited.safetensors", argv[2]);
        write_edited(good, n, path, edits[i].edit);
        expect_refused(path, edits[i].what, edits[i].expect);
    }
    free(good);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
