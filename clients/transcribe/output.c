/*
 * output.c - see output.h.
 *
 * Subtitle cues are cut from the word list greedily: a cue takes words until it holds
 * OUT_CUE_MAX_WORDS, until the next word would end more than OUT_CUE_MAX_SECONDS after the
 * cue's start, or after a word that ends a sentence. A word longer than the limit gets a cue
 * of its own. Cues shorter than OUT_CUE_MIN_SECONDS are stretched (never over the next cue) so
 * players do not drop them.
 */
#include "output.h"

#include <string.h>

#define OUT_CUE_MIN_SECONDS 0.3

int out_parse_format(const char *name, out_format *f)
{
    static const struct {
        const char *name;
        out_format fmt;
    } table[] = {{"text", OUT_TEXT}, {"json", OUT_JSON}, {"srt", OUT_SRT}, {"vtt", OUT_VTT}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(name, table[i].name) == 0) {
            *f = table[i].fmt;
            return 0;
        }
    }
    return -1;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there are not one. */
static int utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    int n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (c == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

void out_json_string(FILE *f, const char *str)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    fputc('"', f);
    while (*s) {
        unsigned char c = *s;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            s++;
        } else if (c < 0x20 || c == 0x7F) {
            switch (c) {
            case '\b': fputs("\\b", f); break;
            case '\f': fputs("\\f", f); break;
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            default: fprintf(f, "\\u%04x", c); break;
            }
            s++;
        } else if (c < 0x80) {
            fputc(c, f);
            s++;
        } else {
            int n = utf8_len(s);
            if (n == 0) {
                fputs("\\ufffd", f);
                s++;
            } else if (n == 3 && s[0] == 0xE2 && s[1] == 0x80 && (s[2] == 0xA8 || s[2] == 0xA9)) {
                /* U+2028, U+2029: valid JSON, but they end lines in JavaScript. */
                fprintf(f, "\\u%s", s[2] == 0xA8 ? "2028" : "2029");
                s += 3;
            } else {
                fwrite(s, 1, (size_t)n, f);
                s += n;
            }
        }
    }
    fputc('"', f);
}

/* A time or duration as a JSON number, in seconds to the millisecond. */
static void json_seconds(FILE *f, double t)
{
    if (!(t >= 0.0005)) /* negative, below a millisecond, NaN: no "-0.000", no "nan" */
        t = 0.0;
    else if (t > 1e12) /* no "inf" either */
        t = 1e12;
    fprintf(f, "%.3f", t);
}

void out_timestamp(char *buf, size_t len, double t, char sep)
{
    long long ms = 0;
    if (t > 0 && t < 1e12)
        ms = (long long)(t * 1000.0 + 0.5);
    long long h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60;
    snprintf(buf, len, "%02lld:%02lld:%02lld%c%03lld", h, m, s, sep, ms % 1000);
}

static void write_json(FILE *f, const out_result *r)
{
    fputs("{\"file\":", f);
    out_json_string(f, r->file);
    fputs(",\"text\":", f);
    out_json_string(f, r->text);
    fputs(",\"duration\":", f);
    json_seconds(f, r->duration);
    fputs(",\"words\":[", f);
    for (int i = 0; i < r->n_words; i++) {
        fputs(i ? ",{\"word\":" : "{\"word\":", f);
        out_json_string(f, r->words[i].word);
        fputs(",\"start\":", f);
        json_seconds(f, r->words[i].start);
        fputs(",\"end\":", f);
        json_seconds(f, r->words[i].end);
        fputc('}', f);
    }
    fputs("],\"model\":", f);
    out_json_string(f, r->model);
    fprintf(f, ",\"chunk_ms\":%d,\"decoder\":", r->chunk_ms);
    out_json_string(f, r->decoder);
    fputs("}\n", f);
}

static int ends_sentence(const char *w)
{
    size_t n = w ? strlen(w) : 0;
    return n > 0 && strchr(".?!", w[n - 1]) != NULL;
}

/* One word of cue text: line breaks become spaces; WebVTT also needs &, < and > escaped. */
static void cue_word(FILE *f, const char *w, int vtt)
{
    for (const char *p = w ? w : ""; *p; p++) {
        if (*p == '\n' || *p == '\r')
            fputc(' ', f);
        else if (vtt && *p == '&')
            fputs("&amp;", f);
        else if (vtt && *p == '<')
            fputs("&lt;", f);
        else if (vtt && *p == '>')
            fputs("&gt;", f);
        else
            fputc(*p, f);
    }
}

static void write_cues(FILE *f, const out_result *r, int vtt)
{
    char a[32], b[32];
    char sep = vtt ? '.' : ',';
    int cue = 0;

    if (vtt)
        fputs("WEBVTT\n\n", f);
    for (int i = 0; i < r->n_words;) {
        double start = r->words[i].start, end = r->words[i].end;
        int j = i + 1;
        if (!ends_sentence(r->words[i].word)) {
            while (j < r->n_words && j - i < OUT_CUE_MAX_WORDS &&
                   r->words[j].end - start <= OUT_CUE_MAX_SECONDS) {
                if (r->words[j].end > end)
                    end = r->words[j].end;
                j++;
                if (ends_sentence(r->words[j - 1].word))
                    break;
            }
        }
        if (end < start + OUT_CUE_MIN_SECONDS) {
            end = start + OUT_CUE_MIN_SECONDS;
            if (j < r->n_words && r->words[j].start > start && r->words[j].start < end)
                end = r->words[j].start;
        }
        out_timestamp(a, sizeof a, start, sep);
        out_timestamp(b, sizeof b, end, sep);
        if (!vtt)
            fprintf(f, "%d\n", ++cue);
        fprintf(f, "%s --> %s\n", a, b);
        for (int k = i; k < j; k++) {
            if (k > i)
                fputc(' ', f);
            cue_word(f, r->words[k].word, vtt);
        }
        fputs("\n\n", f);
        i = j;
    }
}

void out_write(FILE *f, out_format fmt, const out_result *r, int multi)
{
    switch (fmt) {
    case OUT_TEXT:
        if (multi)
            fprintf(f, "%s: ", r->file);
        fprintf(f, "%s\n", r->text ? r->text : "");
        break;
    case OUT_JSON:
        write_json(f, r);
        break;
    case OUT_SRT:
    case OUT_VTT:
        if (multi)
            fprintf(f, "==> %s <==\n", r->file);
        write_cues(f, r, fmt == OUT_VTT);
        break;
    }
}
