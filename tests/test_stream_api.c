/*
 * test_stream_api.c - the public stream API at its edges: no audio at all, audio after the end,
 * slot exhaustion and reuse, invalid parameters, and a very long stream whose memory must stay
 * flat (30 minutes of audio through a small model, fed in 100 ms blocks like a live session).
 *
 *   test_stream_api MODEL.safetensors
 */
#include "earshot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int passed, failed;

static void check(int ok, const char *fmt, double a, double b)
{
    char what[256];
    snprintf(what, sizeof what, fmt, a, b);
    printf("  %-4s %s\n", ok ? "ok" : "FAIL", what);
    ok ? passed++ : failed++;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int drain(es_engine *e, es_stream *s)
{
    char err[256];
    while (es_stream_ready(s))
        if (es_engine_step(e, &s, 1, err, sizeof err) != 0) {
            printf("  step failed: %s\n", err);
            return -1;
        }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_stream_api MODEL.safetensors\n");
        return 2;
    }
    char err[256];
    es_engine_params ep = es_engine_default_params();
    ep.max_streams = 2;
    ep.n_threads = 1;
    es_engine *e = es_engine_create(argv[1], &ep, err, sizeof err);
    if (!e) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    es_stream_params sp = es_stream_default_params(e);

    /* a stream that gets no audio at all */
    es_stream *s = es_stream_create(e, &sp, err, sizeof err);
    es_stream_end_audio(s);
    drain(e, s);
    int n_tok = -1;
    es_stream_tokens(s, &n_tok);
    check(es_stream_done(s) && n_tok == 0, "no audio: the stream ends at once with no tokens (%g tokens)", n_tok, 0);
    check(es_stream_accept_audio(s, (const float[]){0.1f}, 1) == -1, "audio after the end is refused", 0, 0);
    char *text = es_stream_text(s);
    check(text && text[0] == '\0', "no audio: empty text", 0, 0);
    free(text);

    /* slots: two streams fit, a third is refused with a message, a freed slot is reused */
    es_stream *s2 = es_stream_create(e, &sp, err, sizeof err);
    es_stream *s3 = es_stream_create(e, &sp, err, sizeof err);
    check(s2 && !s3 && strstr(err, "slots") != NULL, "a full engine refuses a stream with a message", 0, 0);
    es_stream_free(s);
    s3 = es_stream_create(e, &sp, err, sizeof err);
    check(s3 != NULL && es_engine_streams_in_use(e) == 2, "a freed slot is reused (%g in use)",
          es_engine_streams_in_use(e), 0);
    es_stream_free(s2);
    es_stream_free(s3);

    /* bad parameters */
    es_stream_params bad = sp;
    bad.lookahead = 99;
    check(es_stream_create(e, &bad, err, sizeof err) == NULL && strstr(err, "look-ahead"), "unknown look-ahead refused",
          0, 0);

    /* 30 minutes in 100 ms blocks: memory must not grow with the stream */
    s = es_stream_create(e, &sp, err, sizeof err);
    int rate = es_engine_sample_rate(e), block = rate / 10;
    float *pcm = malloc(sizeof(float) * (size_t)block);
    unsigned seed = 12345;
    long rss_early = 0;
    double seconds = 30 * 60;
    int blocks = (int)(seconds * 10), ok = 1;
    for (int i = 0; i < blocks && ok; i++) {
        for (int k = 0; k < block; k++) {
            double t = (double)(i * block + k) / rate;
            seed = seed * 1103515245u + 12345u;
            pcm[k] = 0.3f * (float)sin(6.283185307179586 * (180 + 40 * sin(t)) * t) + 0.05f * ((seed >> 16) / 32768.0f - 1.0f);
        }
        ok = es_stream_accept_audio(s, pcm, (size_t)block) == 0 && drain(e, s) == 0;
        if (i == 600) /* after one minute: every buffer has reached its steady size */
            rss_early = rss_kb();
    }
    es_stream_end_audio(s);
    drain(e, s);
    long rss_late = rss_kb();
    int frames = es_stream_frames(s);
    double frame_s = es_engine_frame_seconds(e);
    check(ok && es_stream_done(s), "30 minutes streamed and finished", 0, 0);
    check(fabs(frames * frame_s - seconds) < 1.0, "%g s of encoder frames for %g s of audio", frames * frame_s, seconds);
    es_stream_tokens(s, &n_tok);
    /* tokens are the only thing that grows (8 bytes each); everything else must stay put */
    double growth_mb = (rss_late - rss_early) / 1024.0 - n_tok * 8.0 * 2 / 1048576.0;
#ifdef __SANITIZE_ADDRESS__
    /* AddressSanitizer keeps freed blocks in quarantine (up to 256 MB), so RSS says nothing
       here; LeakSanitizer checks this build for leaks instead. */
    printf("  skip memory check under AddressSanitizer (grew %.2f MB, quarantine included)\n", growth_mb);
#else
    check(growth_mb < 4.0, "memory after 1 min and after 30 min differ by %.2f MB besides tokens (limit %g MB)",
          growth_mb, 4.0);
#endif
    es_stream_free(s);
    free(pcm);
    es_engine_free(e);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
