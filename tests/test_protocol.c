/*
 * test_protocol.c - the v1 protocol's parser and builders (server/protocol.c) on their own:
 * every valid client message and every kind of bad one (wrong types, out-of-range values,
 * unknown encodings, decoders and types, non-objects, malformed JSON, NUL bytes, deep nesting,
 * trailing junk), the builders' output parsed back with cJSON field by field, and a fuzz loop of
 * random bytes and mutated valid messages that must never crash (run it under ASan/UBSan).
 *
 *   test_protocol [ITERATIONS]
 *
 * The last line printed is "N passed, N failed"; the exit status is non-zero on any failure.
 */
#include "protocol.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static error_code parse(const char *s, client_message_type *t, start_params *p, char *why, size_t wl)
{
    return protocol_parse(s, strlen(s), t, p, why, wl);
}

/* A message that must be refused with `want`, with a sentence containing `needle`. */
static void expect_error(const char *msg, error_code want, const char *needle)
{
    client_message_type t = (client_message_type)-1;
    start_params p;
    char why[256] = "unchanged";
    error_code rc = parse(msg, &t, &p, why, sizeof why);
    CHECK(rc == want, "%s -> %s, want %s (%s)", msg, error_code_name(rc), error_code_name(want), why);
    if (want != ERR_NONE)
        CHECK(why[0] && strcmp(why, "unchanged") != 0, "%s: no sentence", msg);
    if (needle)
        CHECK(strstr(why, needle) != NULL, "%s: sentence \"%s\" lacks \"%s\"", msg, why, needle);
}

static void test_valid(void)
{
    client_message_type t;
    start_params p;
    char why[256];

    /* defaults */
    CHECK(parse("{\"type\":\"start\"}", &t, &p, why, sizeof why) == ERR_NONE && t == MSG_START, "bare start");
    CHECK(p.sample_rate == 16000 && p.encoding == AUDIO_PCM_S16LE && p.channels == 1 && p.chunk_ms == 0 &&
              p.decoder[0] == '\0' && p.interim_results == 1 && p.word_timestamps == 1 && p.endpointing_ms == 800,
          "start defaults");

    /* everything given */
    const char *full = "{\"type\":\"start\",\"sample_rate\":48000,\"encoding\":\"opus\",\"channels\":2,"
                       "\"chunk_ms\":160,\"decoder\":\"ctc\",\"interim_results\":false,\"word_timestamps\":false,"
                       "\"endpointing_ms\":0}";
    CHECK(parse(full, &t, &p, why, sizeof why) == ERR_NONE && t == MSG_START, "full start: %s", why);
    CHECK(p.sample_rate == 48000 && p.encoding == AUDIO_OPUS && p.channels == 2 && p.chunk_ms == 160 &&
              !strcmp(p.decoder, "ctc") && p.interim_results == 0 && p.word_timestamps == 0 && p.endpointing_ms == 0,
          "full start fields");

    CHECK(parse("{\"type\":\"start\",\"encoding\":\"pcm_f32le\",\"decoder\":\"rnnt\",\"sample_rate\":44100}", &t,
                &p, why, sizeof why) == ERR_NONE &&
              p.encoding == AUDIO_PCM_F32LE && !strcmp(p.decoder, "rnnt") && p.sample_rate == 44100,
          "f32 rnnt 44.1k");
    CHECK(parse("{\"type\":\"start\",\"encoding\":\"pcm_s16le\"}", &t, &p, why, sizeof why) == ERR_NONE &&
              p.encoding == AUDIO_PCM_S16LE,
          "s16 explicit");

    /* range edges */
    CHECK(parse("{\"type\":\"start\",\"sample_rate\":8000,\"chunk_ms\":10000,\"endpointing_ms\":60000}", &t, &p, why,
                sizeof why) == ERR_NONE &&
              p.sample_rate == 8000 && p.chunk_ms == 10000 && p.endpointing_ms == 60000,
          "upper/lower edges: %s", why);
    CHECK(parse("{\"type\":\"start\",\"sample_rate\":16000.0}", &t, &p, why, sizeof why) == ERR_NONE &&
              p.sample_rate == 16000,
          "16000.0 is a whole number");
    CHECK(parse("{\"type\":\"start\",\"sample_rate\":1.6e4}", &t, &p, why, sizeof why) == ERR_NONE &&
              p.sample_rate == 16000,
          "1.6e4");
    /* each Opus rate */
    int opus_rates[] = {8000, 12000, 16000, 24000, 48000};
    for (int i = 0; i < 5; i++) {
        char m[128];
        snprintf(m, sizeof m, "{\"type\":\"start\",\"encoding\":\"opus\",\"sample_rate\":%d}", opus_rates[i]);
        CHECK(parse(m, &t, &p, why, sizeof why) == ERR_NONE && p.sample_rate == opus_rates[i], "%s", m);
    }

    /* null counts as absent; unknown fields are ignored (forward compatibility) */
    CHECK(parse("{\"type\":\"start\",\"sample_rate\":null,\"decoder\":null}", &t, &p, why, sizeof why) == ERR_NONE &&
              p.sample_rate == 16000 && p.decoder[0] == '\0',
          "nulls take defaults");
    CHECK(parse("{\"type\":\"start\",\"future_option\":{\"a\":[1,2,3]},\"language\":\"en\",\"channels\":2}", &t, &p,
                why, sizeof why) == ERR_NONE &&
              p.channels == 2,
          "unknown fields ignored: %s", why);
    CHECK(parse("  {\"channels\":1, \"type\":\"start\"}\n\t ", &t, &p, why, sizeof why) == ERR_NONE && t == MSG_START,
          "whitespace around, type not first");

    /* control messages, also with extra fields; their start_params may be NULL */
    CHECK(parse("{\"type\":\"finalize\"}", &t, NULL, why, sizeof why) == ERR_NONE && t == MSG_FINALIZE, "finalize");
    CHECK(parse("{\"type\":\"keepalive\"}", &t, NULL, why, sizeof why) == ERR_NONE && t == MSG_KEEPALIVE,
          "keepalive");
    CHECK(parse("{\"type\":\"end\"}", &t, NULL, why, sizeof why) == ERR_NONE && t == MSG_END, "end");
    CHECK(parse("{\"type\":\"end\",\"reason\":\"bye\"}", &t, NULL, why, sizeof why) == ERR_NONE && t == MSG_END,
          "end with an extra field");
    /* a control message does not validate start fields it does not have */
    CHECK(parse("{\"type\":\"keepalive\",\"sample_rate\":\"x\"}", &t, NULL, why, sizeof why) == ERR_NONE,
          "keepalive ignores start fields");
    /* start with start_params NULL: validated, nothing written */
    CHECK(parse("{\"type\":\"start\"}", &t, NULL, why, sizeof why) == ERR_NONE, "start, NULL params");
    /* a length shorter than the string: only the prefix counts */
    CHECK(protocol_parse("{\"type\":\"end\"}garbage", 14, &t, NULL, why, sizeof why) == ERR_NONE && t == MSG_END,
          "length honoured");
}

static void test_invalid(void)
{
    /* malformed JSON */
    expect_error("", ERR_BAD_JSON, "JSON");
    expect_error("   ", ERR_BAD_JSON, "JSON");
    expect_error("{", ERR_BAD_JSON, "JSON");
    expect_error("{\"type\":\"start\"", ERR_BAD_JSON, "JSON");
    expect_error("{'type':'start'}", ERR_BAD_JSON, "JSON");
    expect_error("{\"type\":\"start\",}", ERR_BAD_JSON, "JSON");
    expect_error("{\"type\":\"end\"} {\"type\":\"end\"}", ERR_BAD_JSON, "after");
    expect_error("{\"type\":\"end\"}x", ERR_BAD_JSON, "after");
    expect_error("hello", ERR_BAD_JSON, "JSON");
    expect_error("\xff\xfe{}", ERR_BAD_JSON, "JSON");

    /* NUL byte */
    {
        const char m[] = "{\"type\":\"end\"}\0{}";
        char why[128];
        client_message_type t;
        error_code rc = protocol_parse(m, sizeof m - 1, &t, NULL, why, sizeof why);
        CHECK(rc == ERR_BAD_JSON && strstr(why, "NUL"), "NUL after a valid message -> %s", error_code_name(rc));
        const char m2[] = "{\"type\":\"e\0nd\"}";
        rc = protocol_parse(m2, sizeof m2 - 1, &t, NULL, why, sizeof why);
        CHECK(rc == ERR_BAD_JSON, "NUL inside a string -> %s", error_code_name(rc));
    }
    /* NULL text */
    {
        char why[128];
        CHECK(protocol_parse(NULL, 0, NULL, NULL, why, sizeof why) == ERR_BAD_JSON, "NULL text");
    }

    /* not an object */
    expect_error("[]", ERR_BAD_MESSAGE, "object");
    expect_error("[{\"type\":\"start\"}]", ERR_BAD_MESSAGE, "object");
    expect_error("\"start\"", ERR_BAD_MESSAGE, "object");
    expect_error("42", ERR_BAD_MESSAGE, "object");
    expect_error("null", ERR_BAD_MESSAGE, "object");
    expect_error("true", ERR_BAD_MESSAGE, "object");

    /* type */
    expect_error("{}", ERR_BAD_MESSAGE, "type");
    expect_error("{\"sample_rate\":16000}", ERR_BAD_MESSAGE, "type");
    expect_error("{\"type\":1}", ERR_BAD_MESSAGE, "type");
    expect_error("{\"type\":null}", ERR_BAD_MESSAGE, "type");
    expect_error("{\"type\":[\"start\"]}", ERR_BAD_MESSAGE, "type");
    expect_error("{\"type\":\"Start\"}", ERR_BAD_MESSAGE, "Start");
    expect_error("{\"type\":\"stop\"}", ERR_BAD_MESSAGE, "stop");
    expect_error("{\"type\":\"\"}", ERR_BAD_MESSAGE, "type");
    expect_error("{\"Type\":\"start\"}", ERR_BAD_MESSAGE, "type");

    /* wrong types of start fields */
    expect_error("{\"type\":\"start\",\"sample_rate\":\"16000\"}", ERR_BAD_MESSAGE, "sample_rate");
    expect_error("{\"type\":\"start\",\"sample_rate\":true}", ERR_BAD_MESSAGE, "sample_rate");
    expect_error("{\"type\":\"start\",\"sample_rate\":16000.5}", ERR_BAD_MESSAGE, "sample_rate");
    expect_error("{\"type\":\"start\",\"sample_rate\":[16000]}", ERR_BAD_MESSAGE, "sample_rate");
    expect_error("{\"type\":\"start\",\"channels\":\"1\"}", ERR_BAD_MESSAGE, "channels");
    expect_error("{\"type\":\"start\",\"channels\":1.5}", ERR_BAD_MESSAGE, "channels");
    expect_error("{\"type\":\"start\",\"chunk_ms\":{}}", ERR_BAD_MESSAGE, "chunk_ms");
    expect_error("{\"type\":\"start\",\"endpointing_ms\":false}", ERR_BAD_MESSAGE, "endpointing_ms");
    expect_error("{\"type\":\"start\",\"interim_results\":1}", ERR_BAD_MESSAGE, "interim_results");
    expect_error("{\"type\":\"start\",\"interim_results\":\"true\"}", ERR_BAD_MESSAGE, "interim_results");
    expect_error("{\"type\":\"start\",\"word_timestamps\":0}", ERR_BAD_MESSAGE, "word_timestamps");
    expect_error("{\"type\":\"start\",\"encoding\":1}", ERR_BAD_MESSAGE, "encoding");
    expect_error("{\"type\":\"start\",\"decoder\":[\"ctc\"]}", ERR_BAD_MESSAGE, "decoder");

    /* out of range */
    expect_error("{\"type\":\"start\",\"sample_rate\":7999}", ERR_UNSUPPORTED, "sample_rate");
    expect_error("{\"type\":\"start\",\"sample_rate\":48001}", ERR_UNSUPPORTED, "48001");
    expect_error("{\"type\":\"start\",\"sample_rate\":0}", ERR_UNSUPPORTED, "sample_rate");
    expect_error("{\"type\":\"start\",\"sample_rate\":-16000}", ERR_UNSUPPORTED, "sample_rate");
    expect_error("{\"type\":\"start\",\"sample_rate\":1e300}", ERR_UNSUPPORTED, "sample_rate");
    expect_error("{\"type\":\"start\",\"channels\":0}", ERR_UNSUPPORTED, "channels");
    expect_error("{\"type\":\"start\",\"channels\":3}", ERR_UNSUPPORTED, "channels");
    expect_error("{\"type\":\"start\",\"chunk_ms\":-1}", ERR_BAD_MESSAGE, "chunk_ms");
    expect_error("{\"type\":\"start\",\"chunk_ms\":10001}", ERR_BAD_MESSAGE, "chunk_ms");
    expect_error("{\"type\":\"start\",\"endpointing_ms\":-1}", ERR_BAD_MESSAGE, "endpointing_ms");
    expect_error("{\"type\":\"start\",\"endpointing_ms\":60001}", ERR_BAD_MESSAGE, "endpointing_ms");
    expect_error("{\"type\":\"start\",\"endpointing_ms\":1e10}", ERR_BAD_MESSAGE, "endpointing_ms");

    /* unknown encodings and decoders, Opus at a rate Opus has not */
    expect_error("{\"type\":\"start\",\"encoding\":\"mp3\"}", ERR_UNSUPPORTED, "\"encoding\" \"mp3\"");
    expect_error("{\"type\":\"start\",\"encoding\":\"PCM_S16LE\"}", ERR_UNSUPPORTED, "PCM_S16LE");
    expect_error("{\"type\":\"start\",\"encoding\":\"\"}", ERR_UNSUPPORTED, "encoding");
    expect_error("{\"type\":\"start\",\"decoder\":\"beam\"}", ERR_UNSUPPORTED, "\"decoder\" \"beam\"");
    expect_error("{\"type\":\"start\",\"decoder\":\"\"}", ERR_UNSUPPORTED, "decoder");
    expect_error("{\"type\":\"start\",\"encoding\":\"opus\",\"sample_rate\":44100}", ERR_UNSUPPORTED, "44100");
    expect_error("{\"type\":\"start\",\"encoding\":\"opus\"}", ERR_NONE, NULL); /* 16 kHz default: fine */

    /* what is echoed back is short and printable */
    {
        char big[4096];
        int n = snprintf(big, sizeof big, "{\"type\":\"start\",\"encoding\":\"");
        for (int i = 0; i < 3000; i++)
            big[n++] = (i % 7) ? 'a' : '\x01';
        snprintf(big + n, sizeof big - n, "\"}");
        char why[512];
        error_code rc = parse(big, NULL, NULL, why, sizeof why);
        int printable = 1;
        for (const char *c = why; *c; c++)
            if (*c < 0x20 || *c >= 0x7f)
                printable = 0;
        CHECK(rc == ERR_UNSUPPORTED && strlen(why) < 200 && printable, "long junk value quoted short: %zu bytes",
              strlen(why));
        rc = parse("{\"type\":\"\xc3\xa9\xff\"}", NULL, NULL, why, sizeof why);
        printable = 1;
        for (const char *c = why; *c; c++)
            if (*c < 0x20 || *c >= 0x7f)
                printable = 0;
        CHECK(rc == ERR_BAD_MESSAGE && printable, "non-ASCII type quoted as ASCII: %s", why);
        /* a tiny or absent why buffer */
        char w1[1];
        CHECK(parse("{\"type\":\"x\"}", NULL, NULL, w1, sizeof w1) == ERR_BAD_MESSAGE && w1[0] == '\0', "why of 1");
        CHECK(parse("{\"type\":\"x\"}", NULL, NULL, NULL, 0) == ERR_BAD_MESSAGE, "no why");
    }

    /* deeply nested junk: cJSON's nesting limit, no stack overflow */
    {
        size_t n = 200000;
        char *m = malloc(2 * n + 64);
        size_t k = 0;
        k += (size_t)sprintf(m, "{\"type\":\"start\",\"x\":");
        for (size_t i = 0; i < n; i++)
            m[k++] = '[';
        for (size_t i = 0; i < n; i++)
            m[k++] = ']';
        m[k++] = '}';
        char why[128];
        error_code rc = protocol_parse(m, k, NULL, NULL, why, sizeof why);
        CHECK(rc == ERR_BAD_JSON, "200000 nested arrays -> %s", error_code_name(rc));
        /* nesting within the limit in an ignored field is fine */
        k = (size_t)sprintf(m, "{\"type\":\"keepalive\",\"x\":");
        for (size_t i = 0; i < 100; i++)
            m[k++] = '[';
        for (size_t i = 0; i < 100; i++)
            m[k++] = ']';
        m[k++] = '}';
        rc = protocol_parse(m, k, NULL, NULL, why, sizeof why);
        CHECK(rc == ERR_NONE, "100 nested arrays in an unknown field -> %s", error_code_name(rc));
        free(m);
    }
}

static void test_codes(void)
{
    struct {
        error_code c;
        const char *name;
        int close;
    } want[] = {{ERR_BAD_JSON, "bad_json", 1008},
                {ERR_BAD_MESSAGE, "bad_message", 1008},
                {ERR_NOT_STARTED, "not_started", 1008},
                {ERR_ALREADY_STARTED, "already_started", 1008},
                {ERR_UNSUPPORTED, "unsupported", 1008},
                {ERR_BAD_AUDIO, "bad_audio", 1008},
                {ERR_TOO_BIG, "message_too_big", 1009},
                {ERR_OVER_CAPACITY, "over_capacity", 1013},
                {ERR_UNAUTHORIZED, "unauthorized", 1008},
                {ERR_TIMEOUT, "idle_timeout", 1008},
                {ERR_SLOW_READER, "slow_reader", 1008},
                {ERR_INTERNAL, "internal", 1011}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK(!strcmp(error_code_name(want[i].c), want[i].name), "name of %d: %s", (int)want[i].c,
              error_code_name(want[i].c));
        CHECK(error_close_code(want[i].c) == want[i].close, "close code of %s: %d", want[i].name,
              error_close_code(want[i].c));
    }
    CHECK(error_close_code(ERR_NONE) == 1000, "ERR_NONE closes normally");
}

/* The object's keys, in order, joined by commas. */
static void keys_of(const cJSON *o, char *out, size_t n)
{
    out[0] = '\0';
    for (const cJSON *c = o->child; c; c = c->next) {
        strncat(out, c->string, n - strlen(out) - 1);
        if (c->next)
            strncat(out, ",", n - strlen(out) - 1);
    }
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void test_builders(void)
{
    char keys[256];

    char *s = protocol_ready("abc-123", "model.nemo", 48000, 160, 70, 1, "rnnt");
    cJSON *o = s ? cJSON_Parse(s) : NULL;
    CHECK(o != NULL, "ready parses: %s", s ? s : "(null)");
    if (o) {
        keys_of(o, keys, sizeof keys);
        CHECK(!strcmp(keys, "type,session_id,model,sample_rate,chunk_ms,att_context_size,decoder"), "ready keys: %s",
              keys);
        CHECK(!strcmp(str(o, "type"), "ready") && !strcmp(str(o, "session_id"), "abc-123") &&
                  !strcmp(str(o, "model"), "model.nemo") && num(o, "sample_rate") == 48000 &&
                  num(o, "chunk_ms") == 160 && !strcmp(str(o, "decoder"), "rnnt"),
              "ready fields: %s", s);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "att_context_size");
        CHECK(cJSON_IsArray(a) && cJSON_GetArraySize(a) == 2 && cJSON_GetArrayItem(a, 0)->valuedouble == 70 &&
                  cJSON_GetArrayItem(a, 1)->valuedouble == 1,
              "att_context_size [70,1]");
    }
    cJSON_Delete(o);
    free(s);

    s = protocol_partial(3, "hello wor\"ld\"\n", 1.2, 2.0004);
    o = s ? cJSON_Parse(s) : NULL;
    CHECK(o != NULL, "partial parses: %s", s ? s : "(null)");
    if (o) {
        keys_of(o, keys, sizeof keys);
        CHECK(!strcmp(keys, "type,segment,text,start,end"), "partial keys: %s", keys);
        CHECK(!strcmp(str(o, "type"), "partial") && num(o, "segment") == 3 &&
                  !strcmp(str(o, "text"), "hello wor\"ld\"\n") && num(o, "start") == 1.2 && num(o, "end") == 2.0,
              "partial fields: %s", s);
        CHECK(strstr(s, "\"start\":1.200") && strstr(s, "\"end\":2.000"), "three decimals: %s", s);
    }
    cJSON_Delete(o);
    free(s);

    protocol_word w[] = {{"hello", 0.08, 0.4}, {"w\xc3\xb6rld", 0.48, 1.0 / 3}};
    s = protocol_final(0, "hello w\xc3\xb6rld", 0.08, 1.0 / 3, w, 2, "endpoint");
    o = s ? cJSON_Parse(s) : NULL;
    CHECK(o != NULL, "final parses: %s", s ? s : "(null)");
    if (o) {
        keys_of(o, keys, sizeof keys);
        CHECK(!strcmp(keys, "type,segment,text,start,end,words,reason"), "final keys: %s", keys);
        CHECK(!strcmp(str(o, "type"), "final") && num(o, "segment") == 0 &&
                  !strcmp(str(o, "text"), "hello w\xc3\xb6rld") && num(o, "start") == 0.08 &&
                  num(o, "end") == 0.333 && !strcmp(str(o, "reason"), "endpoint"),
              "final fields: %s", s);
        const cJSON *ws = cJSON_GetObjectItemCaseSensitive(o, "words");
        CHECK(cJSON_IsArray(ws) && cJSON_GetArraySize(ws) == 2, "two words");
        if (cJSON_GetArraySize(ws) == 2) {
            const cJSON *w1 = cJSON_GetArrayItem(ws, 1);
            keys_of(w1, keys, sizeof keys);
            CHECK(!strcmp(keys, "word,start,end"), "word keys: %s", keys);
            CHECK(!strcmp(str(w1, "word"), "w\xc3\xb6rld") && num(w1, "start") == 0.48 && num(w1, "end") == 0.333,
                  "word fields");
        }
        CHECK(strstr(s, "\"end\":0.333,") != NULL, "end 0.333: %s", s);
    }
    cJSON_Delete(o);
    free(s);

    /* no words (word_timestamps off, or nothing) still gives an empty array */
    s = protocol_final(7, "", 0, 0, NULL, 0, "end");
    o = s ? cJSON_Parse(s) : NULL;
    CHECK(o && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "words")) &&
              cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "words")) == 0 &&
              !strcmp(str(o, "reason"), "end") && strstr(s, "\"start\":0.000"),
          "final without words: %s", s ? s : "(null)");
    cJSON_Delete(o);
    free(s);

    /* invalid UTF-8 from the engine (half a character from byte-fallback) is repaired; odd times
       stay valid JSON */
    s = protocol_partial(1, "ab\xe2\x96", NAN, -0.0001);
    o = s ? cJSON_Parse(s) : NULL;
    CHECK(o && !strcmp(str(o, "text"), "ab\xef\xbf\xbd\xef\xbf\xbd") && num(o, "start") == 0 &&
              strstr(s, "\"end\":0.000"),
          "bad UTF-8 and NaN time: %s", s ? s : "(null)");
    cJSON_Delete(o);
    free(s);

    s = protocol_error(ERR_UNSUPPORTED, "\"encoding\" \"mp3\" is not supported.");
    o = s ? cJSON_Parse(s) : NULL;
    CHECK(o != NULL, "error parses");
    if (o) {
        keys_of(o, keys, sizeof keys);
        CHECK(!strcmp(keys, "type,code,message"), "error keys: %s", keys);
        CHECK(!strcmp(str(o, "type"), "error") && !strcmp(str(o, "code"), "unsupported") &&
                  !strcmp(str(o, "message"), "\"encoding\" \"mp3\" is not supported."),
              "error fields: %s", s);
    }
    cJSON_Delete(o);
    free(s);
    s = protocol_error(ERR_INTERNAL, NULL);
    o = s ? cJSON_Parse(s) : NULL;
    CHECK(o && !strcmp(str(o, "code"), "internal") && !strcmp(str(o, "message"), ""), "error with NULL message");
    cJSON_Delete(o);
    free(s);
}

/* xorshift: a fixed seed, so a crash reproduces */
static unsigned long long rng = 88172645463325252ULL;
static unsigned rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng >> 11);
}

static void test_fuzz(int iterations)
{
    static const char *seeds[] = {
        "{\"type\":\"start\",\"sample_rate\":48000,\"encoding\":\"opus\",\"channels\":2,\"chunk_ms\":160,"
        "\"decoder\":\"rnnt\",\"interim_results\":true,\"word_timestamps\":true,\"endpointing_ms\":800}",
        "{\"type\":\"start\",\"encoding\":\"pcm_f32le\",\"sample_rate\":44100}",
        "{\"type\":\"finalize\"}",
        "{\"type\":\"keepalive\"}",
        "{\"type\":\"end\"}",
    };
    static const char *tokens[] = {"{", "}", "[", "]", ",", ":", "\"", "null", "true", "1e999", "-0", "\\u0000",
                                   "\\ud800", "\xff", "\0", "\"type\"", "\"start\"", "9999999999999999999"};
    int ok_count = 0, counts[ERR_INTERNAL + 1] = {0};
    char buf[1024];
    for (int it = 0; it < iterations; it++) {
        size_t len;
        if (it % 3 == 0) { /* random bytes */
            len = rnd() % 200;
            for (size_t i = 0; i < len; i++)
                buf[i] = (char)rnd();
        } else { /* a valid message with a few random mutations */
            const char *seed = seeds[rnd() % 5];
            len = strlen(seed);
            memcpy(buf, seed, len);
            int muts = 1 + rnd() % 4;
            for (int m = 0; m < muts; m++) {
                size_t at = len ? rnd() % len : 0;
                switch (rnd() % 5) {
                case 0: /* flip a byte */
                    if (len)
                        buf[at] = (char)rnd();
                    break;
                case 1: /* delete a run */
                    if (len) {
                        size_t k = 1 + rnd() % 8;
                        if (at + k > len)
                            k = len - at;
                        memmove(buf + at, buf + at + k, len - at - k);
                        len -= k;
                    }
                    break;
                case 2: { /* insert a token */
                    const char *tk = tokens[rnd() % (sizeof tokens / sizeof tokens[0])];
                    size_t k = strlen(tk) ? strlen(tk) : 1;
                    if (len + k < sizeof buf) {
                        memmove(buf + at + k, buf + at, len - at);
                        memcpy(buf + at, tk, k);
                        len += k;
                    }
                    break;
                }
                case 3: /* truncate */
                    len = at;
                    break;
                default: /* duplicate a piece */
                    if (len && len * 2 < sizeof buf) {
                        size_t k = 1 + rnd() % (len - at);
                        memmove(buf + at + k, buf + at, len - at);
                        len += k;
                    }
                    break;
                }
            }
        }
        /* an exactly sized heap copy, so ASan sees any read past the end */
        char *m = malloc(len ? len : 1);
        memcpy(m, buf, len);
        client_message_type t;
        start_params p;
        char why[128];
        error_code rc = protocol_parse(m, len, &t, &p, why, sizeof why);
        if (rc < ERR_NONE || rc > ERR_INTERNAL) {
            CHECK(0, "fuzz %d: code %d out of range", it, (int)rc);
        } else {
            counts[rc]++;
            if (rc == ERR_NONE)
                ok_count++;
            else if (!why[0])
                CHECK(0, "fuzz %d: error %s without a sentence", it, error_code_name(rc));
            /* whatever it says must itself build into a valid error message */
            if (rc != ERR_NONE) {
                char *e = protocol_error(rc, why);
                cJSON *o = e ? cJSON_Parse(e) : NULL;
                if (!o)
                    CHECK(0, "fuzz %d: error message does not parse", it);
                cJSON_Delete(o);
                free(e);
            } else if (t == MSG_START) {
                if (p.sample_rate < 8000 || p.sample_rate > 48000 || p.channels < 1 || p.channels > 2 ||
                    p.chunk_ms < 0 || p.chunk_ms > 10000 || p.endpointing_ms < 0 || p.endpointing_ms > 60000)
                    CHECK(0, "fuzz %d: accepted out-of-range start", it);
            }
        }
        free(m);
    }
    CHECK(1, "fuzz");
    printf("  fuzz: %d iterations, %d accepted, %d bad_json, %d bad_message, %d unsupported\n", iterations, ok_count,
           counts[ERR_BAD_JSON], counts[ERR_BAD_MESSAGE], counts[ERR_UNSUPPORTED]);
}

int main(int argc, char **argv)
{
    int iterations = argc > 1 ? atoi(argv[1]) : 5000;
    test_valid();
    test_invalid();
    test_codes();
    test_builders();
    test_fuzz(iterations);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
