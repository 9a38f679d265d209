/*
 * audio_file.c - see audio_file.h.
 *
 * The pipeline per af_read: libsndfile decodes up to `chunk` interleaved frames into ibuf; they
 * are averaged into mono; libsamplerate (one stateful converter for the whole file) turns
 * mono[in_pos, in_len) into output samples until the caller's buffer is full. When the file
 * ends, the converter is called with end_of_input set and no input until it has nothing left,
 * so its filter tail is not lost. A file at the output rate skips the converter.
 *
 * The file is opened with open(2) and handed to libsndfile as a descriptor, so a missing file
 * or a directory is reported with the system's own words, and only real decoding problems
 * come back as libsndfile's messages.
 */
#include "audio_file.h"

#include <errno.h>
#include <fcntl.h>
#include <samplerate.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Input frames decoded per libsndfile call, and the most floats one call may need. */
#define AF_CHUNK_FRAMES 4096
#define AF_CHUNK_FLOATS (1 << 18)

struct af_reader {
    int fd;
    SNDFILE *snd;
    SF_INFO info;
    SRC_STATE *src; /* NULL when the file is already at the output rate */
    double ratio;   /* output rate / input rate */
    int out_rate;

    size_t chunk;   /* frames per libsndfile read */
    float *ibuf;    /* chunk * channels interleaved; aliases mono for one channel */
    float *mono;    /* chunk mono frames */
    size_t in_len;  /* valid frames in mono */
    size_t in_pos;  /* frames of mono already given to the converter */

    long long frames_in;   /* input frames decoded so far */
    long long samples_out; /* output samples delivered so far */
    int eof;     /* libsndfile has no more frames */
    int flushed; /* the converter has given out its tail */
    int failed;
};

static void set_err(char *err, size_t errlen, const char *fmt, const char *detail)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, detail);
}

/* libsndfile's messages end with a full stop; ours are embedded in a longer sentence. */
static void sf_message(char *dst, size_t dstlen, SNDFILE *snd)
{
    snprintf(dst, dstlen, "%s", sf_strerror(snd));
    size_t n = strlen(dst);
    while (n > 0 && (dst[n - 1] == '.' || dst[n - 1] == '\n' || dst[n - 1] == ' '))
        dst[--n] = '\0';
}

static int converter_type(af_quality q)
{
    switch (q) {
    case AF_QUALITY_MEDIUM:
        return SRC_SINC_MEDIUM_QUALITY;
    case AF_QUALITY_FAST:
        return SRC_SINC_FASTEST;
    case AF_QUALITY_BEST:
    default:
        return SRC_SINC_BEST_QUALITY;
    }
}

af_reader *af_open(const char *path, int out_rate, af_quality quality, char *err, size_t errlen)
{
    char msg[200];

    if (out_rate <= 0) {
        set_err(err, errlen, "%s", "invalid output sample rate");
        return NULL;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        set_err(err, errlen, "%s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_err(err, errlen, "%s", strerror(errno));
        close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        set_err(err, errlen, "%s", strerror(EISDIR));
        close(fd);
        return NULL;
    }
    if (S_ISREG(st.st_mode) && st.st_size == 0) {
        set_err(err, errlen, "%s", "not an audio file (the file is empty)");
        close(fd);
        return NULL;
    }

    af_reader *r = calloc(1, sizeof *r);
    if (!r) {
        set_err(err, errlen, "%s", "out of memory");
        close(fd);
        return NULL;
    }
    r->fd = fd;
    r->out_rate = out_rate;
    /* We keep the descriptor (close_desc 0) and close it ourselves in every case. */
    r->snd = sf_open_fd(fd, SFM_READ, &r->info, 0);
    if (!r->snd) {
        sf_message(msg, sizeof msg, NULL);
        set_err(err, errlen, "not an audio file in a format libsndfile reads (%s)", msg);
        af_close(r);
        return NULL;
    }
    if (r->info.channels < 1) {
        set_err(err, errlen, "%s", "the file has no audio channels");
        af_close(r);
        return NULL;
    }
    if (r->info.samplerate <= 0) {
        set_err(err, errlen, "%s", "the file has no valid sample rate");
        af_close(r);
        return NULL;
    }

    r->ratio = (double)out_rate / (double)r->info.samplerate;
    if (r->info.samplerate != out_rate) {
        if (!src_is_valid_ratio(r->ratio)) {
            snprintf(msg, sizeof msg, "%d Hz", r->info.samplerate);
            set_err(err, errlen, "unsupported sample rate %s (too far from the model's rate)", msg);
            af_close(r);
            return NULL;
        }
        int e = 0;
        r->src = src_new(converter_type(quality), 1, &e);
        if (!r->src) {
            set_err(err, errlen, "cannot start the resampler (%s)", src_strerror(e));
            af_close(r);
            return NULL;
        }
    }

    size_t ch = (size_t)r->info.channels;
    r->chunk = AF_CHUNK_FRAMES;
    if (r->chunk * ch > AF_CHUNK_FLOATS)
        r->chunk = AF_CHUNK_FLOATS / ch > 0 ? AF_CHUNK_FLOATS / ch : 1;
    r->mono = malloc(r->chunk * sizeof(float));
    r->ibuf = ch == 1 ? r->mono : malloc(r->chunk * ch * sizeof(float));
    if (!r->mono || !r->ibuf) {
        set_err(err, errlen, "%s", "out of memory");
        af_close(r);
        return NULL;
    }
    return r;
}

/* Decodes the next chunk into mono. Returns 0 (r->eof set at the end) or -1. */
static int fill(af_reader *r, char *err, size_t errlen)
{
    sf_count_t got = sf_readf_float(r->snd, r->ibuf, (sf_count_t)r->chunk);
    if (got <= 0) {
        if (sf_error(r->snd) != SF_ERR_NO_ERROR) {
            char msg[200];
            sf_message(msg, sizeof msg, r->snd);
            set_err(err, errlen, "decoding failed (%s)", msg);
            return -1;
        }
        r->eof = 1;
        r->in_len = r->in_pos = 0;
        return 0;
    }
    size_t n = (size_t)got, ch = (size_t)r->info.channels;
    if (ch > 1) {
        float scale = 1.0f / (float)ch;
        for (size_t i = 0; i < n; i++) {
            const float *f = r->ibuf + i * ch;
            float sum = 0.0f;
            for (size_t c = 0; c < ch; c++)
                sum += f[c];
            r->mono[i] = sum * scale;
        }
    }
    r->in_len = n;
    r->in_pos = 0;
    r->frames_in += (long long)n;
    return 0;
}

long af_read(af_reader *r, float *out, size_t max, char *err, size_t errlen)
{
    if (r->failed) {
        set_err(err, errlen, "%s", "decoding failed earlier");
        return -1;
    }
    if (max > (size_t)0x7fffffff)
        max = 0x7fffffff; /* the return type and libsamplerate's frame counts are long */
    size_t produced = 0;
    while (produced < max) {
        if (r->in_pos == r->in_len && !r->eof && fill(r, err, errlen) < 0) {
            r->failed = 1;
            return -1;
        }
        size_t avail = r->in_len - r->in_pos;
        if (!r->src) {
            if (avail == 0)
                break; /* end of file */
            size_t n = avail < max - produced ? avail : max - produced;
            memcpy(out + produced, r->mono + r->in_pos, n * sizeof(float));
            r->in_pos += n;
            produced += n;
            continue;
        }
        if (r->flushed)
            break;
        SRC_DATA d;
        memset(&d, 0, sizeof d);
        d.data_in = r->mono + r->in_pos;
        d.input_frames = (long)avail;
        d.data_out = out + produced;
        d.output_frames = (long)(max - produced);
        d.end_of_input = r->eof;
        d.src_ratio = r->ratio;
        int e = src_process(r->src, &d);
        if (e) {
            set_err(err, errlen, "resampling failed (%s)", src_strerror(e));
            r->failed = 1;
            return -1;
        }
        r->in_pos += (size_t)d.input_frames_used;
        produced += (size_t)d.output_frames_gen;
        if (r->eof && d.input_frames_used == 0 && d.output_frames_gen == 0)
            r->flushed = 1;
    }
    /* Keep the engine's contract: finite samples in [-1, 1]. Resampling can overshoot a
       little near full scale, and float files may hold anything. */
    for (size_t i = 0; i < produced; i++) {
        float v = out[i];
        if (v != v)
            out[i] = 0.0f;
        else if (v > 1.0f)
            out[i] = 1.0f;
        else if (v < -1.0f)
            out[i] = -1.0f;
    }
    r->samples_out += (long long)produced;
    return (long)produced;
}

int af_source_rate(const af_reader *r)
{
    return r->info.samplerate;
}

int af_source_channels(const af_reader *r)
{
    return r->info.channels;
}

double af_total_seconds(const af_reader *r)
{
    if (r->info.frames < 0 || r->info.frames >= SF_COUNT_MAX)
        return -1.0;
    return (double)r->info.frames / (double)r->info.samplerate;
}

double af_seconds_read(const af_reader *r)
{
    return (double)r->frames_in / (double)r->info.samplerate;
}

long long af_samples_out(const af_reader *r)
{
    return r->samples_out;
}

void af_close(af_reader *r)
{
    if (!r)
        return;
    if (r->src)
        src_delete(r->src);
    if (r->snd)
        sf_close(r->snd);
    if (r->fd >= 0)
        close(r->fd);
    if (r->ibuf != r->mono)
        free(r->ibuf);
    free(r->mono);
    free(r);
}

long af_read_all(const char *path, int out_rate, af_quality quality, float **out, char *err, size_t errlen)
{
    *out = NULL;
    af_reader *r = af_open(path, out_rate, quality, err, errlen);
    if (!r)
        return -1;
    size_t cap = (size_t)out_rate * 4, n = 0;
    float *buf = malloc(sizeof *buf * cap);
    long got = 0;
    while (buf) {
        if (n == cap) {
            float *more = realloc(buf, sizeof *buf * cap * 2);
            if (!more) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = more;
            cap *= 2;
        }
        got = af_read(r, buf + n, cap - n, err, errlen);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    af_close(r);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    if (got < 0) { /* af_read's message is in err */
        free(buf);
        return -1;
    }
    *out = buf;
    return (long)n;
}
