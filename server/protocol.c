/*
 * protocol.c - parsing and validating the v1 live protocol's client messages, and building the
 * server's messages (see protocol.h and docs/protocol.md).
 *
 * Parsing is strict about what it knows and lenient about what it does not: a field the server
 * understands must have the right JSON type and a value in range, but fields it does not know
 * are ignored, so a newer client can send options an older server lacks (forward compatibility).
 * A field given as JSON null counts as absent and takes its default, because many client
 * libraries serialise an unset option as null.
 *
 * Every input is untrusted: the parser never crashes, and what it echoes back in its sentence
 * (a client's value) is cut short and reduced to printable ASCII, so an error message can never
 * carry a megabyte of junk or invalid UTF-8 back to the client.
 *
 * Builders emit exactly the fields of the protocol, in that order, times with three
 * decimals (milliseconds: finer figures would only be noise). Strings from the engine are made
 * valid UTF-8 first: a byte-fallback token can leave half a character in a segment, and a
 * WebSocket text frame with invalid UTF-8 makes browsers drop the connection.
 */
#include "protocol.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *error_code_name(error_code c)
{
    switch (c) {
    case ERR_NONE: return "none";
    case ERR_BAD_JSON: return "bad_json";
    case ERR_BAD_MESSAGE: return "bad_message";
    case ERR_NOT_STARTED: return "not_started";
    case ERR_ALREADY_STARTED: return "already_started";
    case ERR_UNSUPPORTED: return "unsupported";
    case ERR_BAD_AUDIO: return "bad_audio";
    case ERR_TOO_BIG: return "message_too_big";
    case ERR_OVER_CAPACITY: return "over_capacity";
    case ERR_UNAUTHORIZED: return "unauthorized";
    case ERR_TIMEOUT: return "idle_timeout";
    case ERR_SLOW_READER: return "slow_reader";
    case ERR_INTERNAL: return "internal";
    }
    return "internal"; /* an out-of-range value is a bug on our side */
}

int error_close_code(error_code c)
{
    switch (c) {
    case ERR_NONE: return 1000;
    case ERR_TOO_BIG: return 1009;
    case ERR_OVER_CAPACITY: return 1013;
    case ERR_INTERNAL: return 1011;
    case ERR_BAD_JSON:
    case ERR_BAD_MESSAGE:
    case ERR_NOT_STARTED:
    case ERR_ALREADY_STARTED:
    case ERR_UNSUPPORTED:
    case ERR_BAD_AUDIO:
    case ERR_UNAUTHORIZED:
    case ERR_TIMEOUT:
    case ERR_SLOW_READER: return 1008;
    }
    return 1011;
}

/* ---- parsing ---- */

static error_code fail(error_code c, char *why, size_t why_len, const char *fmt, ...)
{
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return c;
}

/* A client's string made safe to quote in a sentence: printable ASCII only, at most 32
   characters (then "..."). */
static void quote_value(const char *s, char *out, size_t out_len)
{
    size_t n = 0, i = 0;
    for (; s[i] && n + 4 < out_len && i < 32; i++)
        out[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i] && n + 4 <= out_len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* What a JSON value is, for "must be a number, not a string". */
static const char *json_kind(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}

/* Reads an optional integer field into *out (left alone when absent or null). Whole numbers
   only: 16000.5 samples per second is a client bug worth reporting, not rounding away. The
   range check comes with its own error code: a rate the server cannot take is "unsupported",
   a nonsense latency is a "bad_message". */
static error_code get_int(const cJSON *obj, const char *name, int lo, int hi, error_code range_err, int *out,
                          char *why, size_t why_len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return ERR_NONE;
    if (!cJSON_IsNumber(v))
        return fail(ERR_BAD_MESSAGE, why, why_len, "\"%s\" must be a number, not %s.", name, json_kind(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return fail(ERR_BAD_MESSAGE, why, why_len, "\"%s\" must be a whole number, not %g.", name, d);
    if (d < lo || d > hi)
        return fail(range_err, why, why_len, "\"%s\" %s %.0f: it must be between %d and %d.", name,
                    range_err == ERR_UNSUPPORTED ? "is not supported at" : "is out of range at", d, lo, hi);
    *out = (int)d;
    return ERR_NONE;
}

static error_code get_bool(const cJSON *obj, const char *name, int *out, char *why, size_t why_len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return ERR_NONE;
    if (!cJSON_IsBool(v))
        return fail(ERR_BAD_MESSAGE, why, why_len, "\"%s\" must be true or false, not %s.", name, json_kind(v));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return ERR_NONE;
}

/* An optional string field; *out is NULL when absent or null. */
static error_code get_string(const cJSON *obj, const char *name, const char **out, char *why, size_t why_len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return ERR_NONE;
    if (!cJSON_IsString(v) || !v->valuestring)
        return fail(ERR_BAD_MESSAGE, why, why_len, "\"%s\" must be a string, not %s.", name, json_kind(v));
    *out = v->valuestring;
    return ERR_NONE;
}

static int is_opus_rate(int r)
{
    return r == 8000 || r == 12000 || r == 16000 || r == 24000 || r == 48000;
}

static error_code parse_start(const cJSON *obj, start_params *p, char *why, size_t why_len)
{
    start_params d = {.sample_rate = 16000,
                      .encoding = AUDIO_PCM_S16LE,
                      .channels = 1,
                      .chunk_ms = 0,
                      .decoder = "",
                      .interim_results = 1,
                      .word_timestamps = 1,
                      .endpointing_ms = 800};
    error_code rc;
    const char *s;
    char q[40];

    if ((rc = get_int(obj, "sample_rate", 8000, 48000, ERR_UNSUPPORTED, &d.sample_rate, why, why_len)))
        return rc;
    if ((rc = get_int(obj, "channels", 1, 2, ERR_UNSUPPORTED, &d.channels, why, why_len)))
        return rc;
    if ((rc = get_int(obj, "chunk_ms", 0, 10000, ERR_BAD_MESSAGE, &d.chunk_ms, why, why_len)))
        return rc;
    if ((rc = get_int(obj, "endpointing_ms", 0, 60000, ERR_BAD_MESSAGE, &d.endpointing_ms, why, why_len)))
        return rc;
    if ((rc = get_bool(obj, "interim_results", &d.interim_results, why, why_len)))
        return rc;
    if ((rc = get_bool(obj, "word_timestamps", &d.word_timestamps, why, why_len)))
        return rc;

    if ((rc = get_string(obj, "encoding", &s, why, why_len)))
        return rc;
    if (s) {
        if (!strcmp(s, "pcm_s16le"))
            d.encoding = AUDIO_PCM_S16LE;
        else if (!strcmp(s, "pcm_f32le"))
            d.encoding = AUDIO_PCM_F32LE;
        else if (!strcmp(s, "opus"))
            d.encoding = AUDIO_OPUS;
        else {
            quote_value(s, q, sizeof q);
            return fail(ERR_UNSUPPORTED, why, why_len,
                        "\"encoding\" \"%s\" is not supported: use \"pcm_s16le\", \"pcm_f32le\" or \"opus\".", q);
        }
    }
    if ((rc = get_string(obj, "decoder", &s, why, why_len)))
        return rc;
    if (s) {
        if (strcmp(s, "rnnt") && strcmp(s, "ctc")) {
            quote_value(s, q, sizeof q);
            return fail(ERR_UNSUPPORTED, why, why_len, "\"decoder\" \"%s\" is not supported: use \"rnnt\" or \"ctc\".",
                        q);
        }
        snprintf(d.decoder, sizeof d.decoder, "%s", s);
    }
    /* Opus has five internal rates; checking here reports it before any audio arrives. */
    if (d.encoding == AUDIO_OPUS && !is_opus_rate(d.sample_rate))
        return fail(ERR_UNSUPPORTED, why, why_len,
                    "\"sample_rate\" %d is not supported with Opus: use 8000, 12000, 16000, 24000 or 48000.",
                    d.sample_rate);
    if (p)
        *p = d;
    return ERR_NONE;
}

error_code protocol_parse(const char *text, size_t len, client_message_type *type, start_params *start, char *why,
                          size_t why_len)
{
    if (why && why_len)
        why[0] = '\0';
    if (!text)
        return fail(ERR_BAD_JSON, why, why_len, "The message is empty.");
    /* cJSON would stop at a NUL and take the prefix for the message; a text frame with a NUL in
       it is not something a well-behaved client sends, so say so instead. */
    if (memchr(text, '\0', len))
        return fail(ERR_BAD_JSON, why, why_len, "The message contains a NUL byte.");

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root)
        return fail(ERR_BAD_JSON, why, why_len, "The message is not valid JSON.");
    /* One JSON value per message: trailing junk after it is malformed, not ignorable. */
    if (end)
        for (const char *p = end; p < text + len; p++)
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
                cJSON_Delete(root);
                return fail(ERR_BAD_JSON, why, why_len, "The message has text after its JSON value.");
            }

    error_code rc = ERR_NONE;
    if (!cJSON_IsObject(root)) {
        rc = fail(ERR_BAD_MESSAGE, why, why_len, "The message must be a JSON object, not %s.", json_kind(root));
        goto done;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (!t) {
        rc = fail(ERR_BAD_MESSAGE, why, why_len, "The message has no \"type\".");
        goto done;
    }
    if (!cJSON_IsString(t) || !t->valuestring) {
        rc = fail(ERR_BAD_MESSAGE, why, why_len, "\"type\" must be a string, not %s.", json_kind(t));
        goto done;
    }
    client_message_type mt;
    if (!strcmp(t->valuestring, "start"))
        mt = MSG_START;
    else if (!strcmp(t->valuestring, "finalize"))
        mt = MSG_FINALIZE;
    else if (!strcmp(t->valuestring, "keepalive"))
        mt = MSG_KEEPALIVE;
    else if (!strcmp(t->valuestring, "end"))
        mt = MSG_END;
    else {
        char q[40];
        quote_value(t->valuestring, q, sizeof q);
        rc = fail(ERR_BAD_MESSAGE, why, why_len,
                  "\"type\" \"%s\" is unknown: use \"start\", \"finalize\", \"keepalive\" or \"end\".", q);
        goto done;
    }
    if (mt == MSG_START && (rc = parse_start(root, start, why, why_len)) != ERR_NONE)
        goto done;
    if (type)
        *type = mt;
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- building ---- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it is not one. Rejects
   overlong forms, surrogates and code points above U+10FFFF, as RFC 3629 says. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min, cp;
    if ((c & 0xE0) == 0xC0) len = 2, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000, cp = c & 0x07;
    else return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* A malloc'd copy of s with every invalid UTF-8 byte replaced by U+FFFD; NULL s reads "". */
static char *utf8_clean(const char *s)
{
    if (!s)
        s = "";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1); /* each bad byte becomes 3 bytes */
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

static int add_string(cJSON *obj, const char *name, const char *value)
{
    char *clean = utf8_clean(value);
    if (!clean)
        return -1;
    cJSON *v = cJSON_AddStringToObject(obj, name, clean);
    free(clean);
    return v ? 0 : -1;
}

/* A time in seconds with exactly three decimals. cJSON would print 1.2 as 1.2 and 0.1+0.2 as
   0.30000000000000004; a raw value keeps the wire format fixed. Non-finite values (never
   expected) become 0 so the JSON stays valid. */
static cJSON *time_value(double t)
{
    char buf[40];
    if (!isfinite(t))
        t = 0;
    snprintf(buf, sizeof buf, "%.3f", t);
    if (!strcmp(buf, "-0.000"))
        snprintf(buf, sizeof buf, "0.000");
    return cJSON_CreateRaw(buf);
}

static int add_time(cJSON *obj, const char *name, double t)
{
    cJSON *v = time_value(t);
    if (!v)
        return -1;
    if (!cJSON_AddItemToObject(obj, name, v)) {
        cJSON_Delete(v);
        return -1;
    }
    return 0;
}

static char *finish(cJSON *obj, int failed)
{
    char *s = failed ? NULL : cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return s;
}

char *protocol_ready(const char *session_id, const char *model, int sample_rate, int chunk_ms, int att_left,
                     int att_right, const char *decoder)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int bad = add_string(o, "type", "ready") || add_string(o, "session_id", session_id) ||
              add_string(o, "model", model) || !cJSON_AddNumberToObject(o, "sample_rate", sample_rate) ||
              !cJSON_AddNumberToObject(o, "chunk_ms", chunk_ms);
    if (!bad) {
        int ctx[2] = {att_left, att_right};
        cJSON *a = cJSON_CreateIntArray(ctx, 2);
        if (!a || !cJSON_AddItemToObject(o, "att_context_size", a)) {
            cJSON_Delete(a);
            bad = 1;
        }
    }
    bad = bad || add_string(o, "decoder", decoder);
    return finish(o, bad);
}

char *protocol_partial(int segment, const char *text, double start, double end)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int bad = add_string(o, "type", "partial") || !cJSON_AddNumberToObject(o, "segment", segment) ||
              add_string(o, "text", text) || add_time(o, "start", start) || add_time(o, "end", end);
    return finish(o, bad);
}

char *protocol_final(int segment, const char *text, double start, double end, const protocol_word *words, int n_words,
                     const char *reason)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int bad = add_string(o, "type", "final") || !cJSON_AddNumberToObject(o, "segment", segment) ||
              add_string(o, "text", text) || add_time(o, "start", start) || add_time(o, "end", end);
    cJSON *arr = bad ? NULL : cJSON_AddArrayToObject(o, "words");
    bad = bad || !arr;
    for (int i = 0; !bad && words && i < n_words; i++) {
        cJSON *w = cJSON_CreateObject();
        if (!w || !cJSON_AddItemToArray(arr, w)) {
            cJSON_Delete(w);
            bad = 1;
            break;
        }
        bad = add_string(w, "word", words[i].word) || add_time(w, "start", words[i].start) ||
              add_time(w, "end", words[i].end);
    }
    bad = bad || add_string(o, "reason", reason);
    return finish(o, bad);
}

char *protocol_behind(double behind_s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int bad = add_string(o, "type", "warning") || add_string(o, "code", "behind_realtime") ||
              add_string(o, "message", "audio is waiting to be transcribed: the session is behind real time") ||
              add_time(o, "behind_s", behind_s);
    return finish(o, bad);
}

char *protocol_error(error_code code, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int bad = add_string(o, "type", "error") || add_string(o, "code", error_code_name(code)) ||
              add_string(o, "message", message);
    return finish(o, bad);
}
