/*
 * wav16.c - see wav16.h.
 */
#include "wav16.h"
#include "slurp.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
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

static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static unsigned le16(const unsigned char *b)
{
    return (unsigned)b[0] | (unsigned)b[1] << 8;
}

int wav16_parse(const void *bytes, size_t len, wav16 *w, char *err, size_t errlen)
{
    const unsigned char *b = bytes;
    memset(w, 0, sizeof(*w));
    if (!b || len < 12 || memcmp(b, "RIFF", 4) != 0 || memcmp(b + 8, "WAVE", 4) != 0) {
        set_err(err, errlen, "wav: not a RIFF/WAVE file");
        return -1;
    }
    const unsigned char *fmt = NULL, *data = NULL;
    size_t fmt_len = 0, data_len = 0;
    size_t pos = 12;
    while (pos < len) {
        if (len - pos < 8) {
            set_err(err, errlen, "wav: truncated chunk header at byte %zu", pos);
            return -1;
        }
        size_t size = le32(b + pos + 4);
        if (size > len - pos - 8) {
            set_err(err, errlen, "wav: chunk '%.4s' at byte %zu claims %zu bytes, only %zu left", (const char *)b + pos,
                    pos, size, len - pos - 8);
            return -1;
        }
        if (memcmp(b + pos, "fmt ", 4) == 0 && !fmt) {
            fmt = b + pos + 8;
            fmt_len = size;
        } else if (memcmp(b + pos, "data", 4) == 0 && !data) {
            data = b + pos + 8;
            data_len = size;
        }
        pos += 8 + size + (size & 1);
    }
    if (!fmt) {
        set_err(err, errlen, "wav: no 'fmt ' chunk");
        return -1;
    }
    if (!data) {
        set_err(err, errlen, "wav: no 'data' chunk");
        return -1;
    }
    if (fmt_len < 16) {
        set_err(err, errlen, "wav: 'fmt ' chunk is %zu bytes, need 16", fmt_len);
        return -1;
    }
    unsigned tag = le16(fmt), channels = le16(fmt + 2), align = le16(fmt + 12), bits = le16(fmt + 14);
    uint32_t rate = le32(fmt + 4);
    if (tag == 0xFFFE) { /* WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the format tag */
        if (fmt_len < 40 || le16(fmt + 24) != 1) {
            set_err(err, errlen, "wav: extensible format whose sub-format is not PCM");
            return -1;
        }
    } else if (tag != 1) {
        set_err(err, errlen, "wav: format tag %u is not PCM (1)", tag);
        return -1;
    }
    if (channels != 1) {
        set_err(err, errlen, "wav: %u channels, only mono is supported", channels);
        return -1;
    }
    if (bits != 16 || align != 2) {
        set_err(err, errlen, "wav: %u bits per sample (block align %u), only 16-bit is supported", bits, align);
        return -1;
    }
    if (rate == 0 || rate > 1000000) {
        set_err(err, errlen, "wav: implausible sample rate %u", (unsigned)rate);
        return -1;
    }
    if (data_len & 1) {
        set_err(err, errlen, "wav: 'data' chunk has an odd size (%zu bytes)", data_len);
        return -1;
    }
    size_t n = data_len / 2;
    float *s = NULL;
    if (n > 0) {
        s = malloc(sizeof(float) * n);
        if (!s) {
            set_err(err, errlen, "wav: out of memory for %zu samples", n);
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned u = le16(data + 2 * i);
            int v = u >= 0x8000 ? (int)u - 0x10000 : (int)u;
            s[i] = (float)v / 32768.0f;
        }
    }
    w->sample_rate = (int)rate;
    w->n_samples = n;
    w->samples = s;
    return 0;
}

int wav16_load(const char *path, wav16 *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    char msg[256];
    size_t len = 0;
    unsigned char *buf = slurp(path, &len, msg, sizeof msg);
    if (!buf) {
        set_err(err, errlen, "%s", msg);
        return -1;
    }
    int rc = wav16_parse(buf, len, w, msg, sizeof(msg));
    free(buf);
    if (rc != 0)
        set_err(err, errlen, "%s: %s", path, msg);
    return rc;
}

void wav16_free(wav16 *w)
{
    if (!w)
        return;
    free(w->samples);
    memset(w, 0, sizeof(*w));
}
