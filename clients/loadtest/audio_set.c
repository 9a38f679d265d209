/*
 * audio_set.c - see audio_set.h.
 */
#include "audio_set.h"

#include "audio_file.h"
#include "wer.h"

#include <dirent.h>
#include <opus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define OPUS_BITRATE 32000 /* wideband speech at a typical VoIP rate */

static void free_file(as_file *f)
{
    free(f->path);
    free(f->pcm);
    for (long k = 0; f->pkt && k < f->n_pkt; k++)
        free(f->pkt[k]);
    free(f->pkt);
    free(f->pkt_len);
    if (f->ref)
        wer_free_words(f->ref, f->n_ref);
    memset(f, 0, sizeof *f);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int read_reference(as_file *f)
{
    const char *slash = strrchr(f->path, '/'), *dot = strrchr(f->path, '.');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - f->path) : strlen(f->path);
    char *txt = malloc(stem + 5);
    if (!txt)
        return -1;
    memcpy(txt, f->path, stem);
    memcpy(txt + stem, ".txt", 5);
    FILE *fp = fopen(txt, "rb");
    free(txt);
    if (!fp)
        return 0; /* no reference: no WER for this file */
    char *text = NULL;
    size_t len = 0;
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0) {
        char *nt = realloc(text, len + got + 1);
        if (!nt) {
            free(text);
            fclose(fp);
            return -1;
        }
        text = nt;
        memcpy(text + len, chunk, got);
        len += got;
    }
    fclose(fp);
    int cap = 0;
    f->ref = NULL;
    f->n_ref = 0;
    int rc = wer_add_words(text ? (text[len] = '\0', text) : "", &f->ref, &f->n_ref, &cap);
    free(text);
    if (!f->ref) { /* an empty reference still counts as one: the right answer is silence */
        f->ref = malloc(sizeof(char *));
        if (!f->ref)
            return -1;
    }
    return rc;
}

static int encode_opus(as_file *f, const float *x, long n, int frame, char *err, size_t errlen)
{
    int oe = 0;
    OpusEncoder *enc = opus_encoder_create(AS_RATE, 1, OPUS_APPLICATION_VOIP, &oe);
    if (!enc) {
        snprintf(err, errlen, "cannot create an Opus encoder: %s", opus_strerror(oe));
        return -1;
    }
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(OPUS_BITRATE));
    f->n_pkt = (n + frame - 1) / frame;
    f->pkt = calloc((size_t)(f->n_pkt ? f->n_pkt : 1), sizeof *f->pkt);
    f->pkt_len = calloc((size_t)(f->n_pkt ? f->n_pkt : 1), sizeof *f->pkt_len);
    float *pad = calloc((size_t)frame, sizeof *pad);
    unsigned char out[4000];
    int rc = f->pkt && f->pkt_len && pad ? 0 : -1;
    if (rc)
        snprintf(err, errlen, "out of memory");
    for (long k = 0; k < f->n_pkt && rc == 0; k++) {
        long have = n - k * frame < frame ? n - k * frame : frame;
        memset(pad, 0, sizeof(float) * (size_t)frame);
        memcpy(pad, x + k * frame, sizeof(float) * (size_t)have);
        int len = opus_encode_float(enc, pad, frame, out, (opus_int32)sizeof out);
        if (len < 0) {
            snprintf(err, errlen, "%s: Opus encoding failed: %s", f->path, opus_strerror(len));
            rc = -1;
            break;
        }
        f->pkt[k] = malloc((size_t)len);
        if (!f->pkt[k]) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        memcpy(f->pkt[k], out, (size_t)len);
        f->pkt_len[k] = len;
    }
    free(pad);
    opus_encoder_destroy(enc);
    f->n = f->n_pkt * frame;
    return rc;
}

static int load_file(audio_set *a, as_file *f, char *err, size_t errlen)
{
    float *x = NULL;
    long n = af_read_all(f->path, AS_RATE, AF_QUALITY_MEDIUM, &x, err, errlen);
    if (n < 0)
        return -1;
    if (n == 0) {
        snprintf(err, errlen, "%s: no samples", f->path);
        free(x);
        return -1;
    }
    int rc = 0;
    if (a->opus) {
        rc = encode_opus(f, x, n, a->frame, err, errlen);
    } else {
        f->pcm = malloc(sizeof(int16_t) * (size_t)n);
        if (!f->pcm) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        } else {
            for (long i = 0; i < n; i++) {
                float v = x[i] * 32768.0f;
                f->pcm[i] = (int16_t)(v >= 32767.0f ? 32767 : v <= -32768.0f ? -32768 : (v < 0 ? v - 0.5f : v + 0.5f));
            }
            f->n = n;
        }
    }
    free(x);
    if (rc == 0 && read_reference(f) != 0) {
        snprintf(err, errlen, "out of memory reading the reference of %s", f->path);
        rc = -1;
    }
    if (rc == 0)
        a->seconds += (double)f->n / AS_RATE;
    return rc;
}

/* Names of the folder's files that are not references, sorted. */
static int list_dir(const char *dir, char ***names, int *n, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot open folder %s", dir);
        return -1;
    }
    int cap = 0;
    struct dirent *de;
    *names = NULL;
    *n = 0;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name, *dot = strrchr(nm, '.');
        if (nm[0] == '.' || (dot && strcmp(dot, ".txt") == 0))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(*names, sizeof(char *) * (size_t)cap);
            if (!nn)
                break;
            *names = nn;
        }
        size_t len = strlen(dir) + strlen(nm) + 2;
        char *p = malloc(len);
        if (!p)
            break;
        snprintf(p, len, "%s/%s", dir, nm);
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(p);
            continue;
        }
        (*names)[(*n)++] = p;
    }
    closedir(d);
    if (*n > 1)
        qsort(*names, (size_t)*n, sizeof(char *), cmp_str);
    return 0;
}

int audio_set_load(audio_set *a, const char *path, int opus, int frame, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    a->opus = opus;
    a->frame = frame;
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "%s: no such file or folder", path);
        return -1;
    }
    char **names = NULL;
    int n = 0;
    if (S_ISDIR(st.st_mode)) {
        if (list_dir(path, &names, &n, err, errlen) != 0)
            return -1;
    } else {
        names = malloc(sizeof(char *));
        if (names && (names[0] = strdup(path)) != NULL)
            n = 1;
    }
    if (n == 0) {
        snprintf(err, errlen, "%s: no audio files", path);
        free(names);
        return -1;
    }
    a->f = calloc((size_t)n, sizeof *a->f);
    if (!a->f) {
        snprintf(err, errlen, "out of memory");
        for (int i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return -1;
    }
    /* In a folder, files libsndfile cannot read are skipped (a README beside the WAVs). */
    int dir = S_ISDIR(st.st_mode);
    for (int i = 0; i < n; i++) {
        as_file *f = &a->f[a->n];
        f->path = names[i];
        char e[512] = "";
        if (load_file(a, f, e, sizeof e) == 0) {
            a->n++;
            continue;
        }
        int fatal = !dir || strstr(e, "out of memory") != NULL;
        free_file(f);
        if (fatal) {
            snprintf(err, errlen, "%s", e);
            for (int j = i + 1; j < n; j++)
                free(names[j]);
            free(names);
            audio_set_free(a);
            return -1;
        }
    }
    free(names);
    if (a->n == 0) {
        snprintf(err, errlen, "%s: no file there is audio libsndfile can read", path);
        audio_set_free(a);
        return -1;
    }
    return 0;
}

void audio_set_free(audio_set *a)
{
    if (!a->f)
        return;
    for (int i = 0; i < a->n; i++)
        free_file(&a->f[i]);
    free(a->f);
    a->f = NULL;
    a->n = 0;
}
