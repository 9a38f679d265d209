/*
 * test_client_units.c - the clients' pure pieces on their own: URL parsing (clients/common/url.c),
 * word normalisation and edit distance (clients/loadtest/wer.c), latency percentiles
 * (clients/loadtest/stats.c). Malformed input must give an error, never a crash.
 */
#include "stats.h"
#include "url.h"
#include "wer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int passed, failed;

static void check(const char *name, int ok)
{
    if (ok)
        passed++;
    else
        failed++;
    printf("%s  %s\n", ok ? "ok  " : "FAIL", name);
}

static long edits(const char *ref, const char *hyp)
{
    char **r = NULL, **h = NULL;
    int nr = 0, nh = 0, cr = 0, ch = 0;
    wer_add_words(ref, &r, &nr, &cr);
    wer_add_words(hyp, &h, &nh, &ch);
    long e = wer_edits(r, nr, h, nh);
    wer_free_words(r, nr);
    wer_free_words(h, nh);
    return e;
}

int main(void)
{
    ws_url u;
    char err[256];
    check("url: ws://127.0.0.1:8080/v1/listen",
          ws_url_parse("ws://127.0.0.1:8080/v1/listen", "/d", &u, err, sizeof err) == 0 && !u.tls &&
              strcmp(u.host, "127.0.0.1") == 0 && u.port == 8080 && strcmp(u.path, "/v1/listen") == 0);
    check("url: wss://host, default port and path",
          ws_url_parse("wss://asr.example.com", "/v1/listen", &u, err, sizeof err) == 0 && u.tls && u.port == 443 &&
              strcmp(u.path, "/v1/listen") == 0);
    check("url: a query without a path keeps the default path",
          ws_url_parse("ws://h:1?token=x", "/v1/listen", &u, err, sizeof err) == 0 &&
              strcmp(u.path, "/v1/listen?token=x") == 0);
    check("url: IPv6 in brackets",
          ws_url_parse("ws://[::1]:9/p", "/d", &u, err, sizeof err) == 0 && strcmp(u.host, "::1") == 0 && u.port == 9);
    check("url: a fragment is dropped",
          ws_url_parse("ws://h/p#frag", "/d", &u, err, sizeof err) == 0 && strcmp(u.path, "/p") == 0);
    const char *bad[] = {"", "http//x", "ftp://x", "ws://", "ws://:80/", "ws://h:0/", "ws://h:65536/", "ws://h:12x/",
                         "ws://h:/", "ws://[::1/", "ws://h/a b", "ws://a@b/", "ws://h\x01/"};
    int all_bad = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (ws_url_parse(bad[i], "/d", &u, err, sizeof err) == 0 || strstr(err, "bad URL") == NULL) {
            printf("      accepted or unexplained: '%s'\n", bad[i]);
            all_bad = 0;
        }
    check("url: malformed URLs refused with a sentence", all_bad);
    char longurl[3000];
    memset(longurl, 'a', sizeof longurl);
    memcpy(longurl, "ws://", 5);
    longurl[sizeof longurl - 1] = '\0';
    check("url: a host too long is refused", ws_url_parse(longurl, "/d", &u, err, sizeof err) != 0);
    memcpy(longurl, "ws://h/", 7);
    check("url: a path too long is refused", ws_url_parse(longurl, "/d", &u, err, sizeof err) != 0);

    check("wer: identical", edits("the cat sat", "the cat sat") == 0);
    check("wer: case and punctuation do not count", edits("The cat, sat.", "the CAT sat") == 0);
    check("wer: apostrophes inside words stay", edits("don't", "dont") == 1);
    check("wer: one substitution, one deletion, one insertion",
          edits("a b c d", "a x c") == 2 && edits("a b", "a b c") == 1);
    check("wer: empty reference counts the insertions", edits("", "a b") == 2 && edits("a b", "") == 2);
    check("wer: UTF-8 words compare exactly", edits("ent \xe2\x81\x87 ab", "ent \xe2\x81\x87 ab") == 0);
    check("wer: white space of any kind", edits("a\tb\n c", "a b c") == 0);

    stats s;
    stats_reset(&s);
    for (int i = 1; i <= 1000; i++)
        stats_add(&s, i);
    double p50 = stats_quantile(&s, 0.5), p99 = stats_quantile(&s, 0.99);
    check("stats: p50 and p99 of 1..1000 within 2%", fabs(p50 - 500) < 11 && fabs(p99 - 990) < 21);
    check("stats: min, max and mean exact", s.min == 1 && s.max == 1000 && fabs(stats_mean(&s) - 500.5) < 1e-9);
    stats_add(&s, nan(""));        /* NaN is ignored */
    stats_add(&s, 1e12);             /* far out: the last bucket, max exact */
    check("stats: NaN ignored, huge values kept", s.count == 1001 && s.max == 1e12);
    stats e;
    stats_reset(&e);
    check("stats: empty gives 0", stats_quantile(&e, 0.5) == 0 && stats_mean(&e) == 0);

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
