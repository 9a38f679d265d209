/*
 * main.c - earshot-eval: word and character error rates of a model on a labelled test set,
 * per latency mode, through the same streaming path as the server.
 *
 *   earshot-eval --model M --manifest FILE [--chunk-ms N[,N...]] [--decoder ctc|rnnt] [--json OUT]
 *
 * The manifest is NeMo's JSON lines ({"audio_filepath", "duration", "text"} per line) or a
 * TSV with a header naming the columns `file` and `reference` (as ../shared/eval-real's
 * manifest.tsv); relative audio paths are taken from the manifest's folder. Texts are compared
 * after the usual normalisation (lower case, punctuation stripped from the ends of words; see
 * clients/loadtest/wer.h); CER counts characters of the normalised words joined by spaces.
 * Prints one line per utterance and a summary per mode: WER, CER, real-time factor.
 */
#include "audio_file.h"
#include "earshot.h"
#include "wer.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char *audio, *reference;
} utterance;

typedef struct {
    utterance *u;
    int n, cap;
} manifest;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static char *dup_path(const char *dir, const char *file)
{
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s%s", file[0] == '/' ? "" : dir, file[0] == '/' ? "" : "/", file);
    return p;
}

static void manifest_free(manifest *m)
{
    for (int i = 0; i < m->n; i++) {
        free(m->u[i].audio);
        free(m->u[i].reference);
    }
    free(m->u);
    memset(m, 0, sizeof *m);
}

static int add(manifest *m, const char *dir, const char *audio, const char *ref)
{
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 64;
        utterance *u = realloc(m->u, cap * sizeof *u);
        if (!u)
            return -1;
        m->u = u;
        m->cap = cap;
    }
    m->u[m->n].audio = dup_path(dir, audio);
    m->u[m->n].reference = strdup(ref);
    m->n++; /* counted even when half made, so manifest_free frees it */
    return m->u[m->n - 1].audio && m->u[m->n - 1].reference ? 0 : -1;
}

/* Column index of name in a tab-separated header line, or -1. */
static int column(char *header, const char *name)
{
    int i = 0;
    for (char *save = NULL, *f = strtok_r(header, "\t\r\n", &save); f; f = strtok_r(NULL, "\t\r\n", &save), i++)
        if (strcmp(f, name) == 0)
            return i;
    return -1;
}

/* The i-th tab-separated field of line (modified in place), or NULL. */
static char *field(char *line, int i)
{
    char *f = line;
    for (int k = 0; k < i; k++) {
        f = strchr(f, '\t');
        if (!f)
            return NULL;
        f++;
    }
    f[strcspn(f, "\t\r\n")] = 0;
    return f;
}

static int read_manifest(const char *path, manifest *m, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open manifest %s", path);
        return -1;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, col_file = -1, col_ref = -1, tsv = 0, rc = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        if (line[strspn(line, " \t\r\n")] == 0)
            continue;
        if (lineno == 1 && line[0] != '{') { /* a TSV header */
            char *h = strdup(line), *h2 = strdup(line);
            col_file = h ? column(h, "file") : -1;
            col_ref = h2 ? column(h2, "reference") : -1;
            free(h);
            free(h2);
            if (col_file < 0 || col_ref < 0) {
                snprintf(err, errlen, "%s: a TSV manifest needs columns 'file' and 'reference'", path);
                rc = -1;
                break;
            }
            tsv = 1;
            continue;
        }
        if (tsv) {
            char *copy = strdup(line);
            char *a = copy ? field(copy, col_file) : NULL;
            char *b = NULL;
            char *copy2 = strdup(line);
            b = copy2 ? field(copy2, col_ref) : NULL;
            int ok = a && b && add(m, dir, a, b) == 0;
            free(copy);
            free(copy2);
            if (!ok) {
                snprintf(err, errlen, "%s:%d: a row without its file or reference", path, lineno);
                rc = -1;
                break;
            }
            continue;
        }
        cJSON *o = cJSON_Parse(line);
        const char *a = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "audio_filepath"));
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "text"));
        int ok = a && t && add(m, dir, a, t) == 0;
        cJSON_Delete(o);
        if (!ok) {
            snprintf(err, errlen, "%s:%d: not a JSON object with audio_filepath and text", path, lineno);
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    if (rc == 0 && m->n == 0) {
        snprintf(err, errlen, "%s holds no utterances", path);
        rc = -1;
    }
    return rc;
}

/* Streams one file through a fresh stream; returns its text (malloc'd) or NULL. */
static char *transcribe(es_engine *e, const es_stream_params *sp, const char *path, double *seconds, char *err,
                        size_t errlen)
{
    af_reader *r = af_open(path, es_engine_sample_rate(e), AF_QUALITY_BEST, err, errlen);
    if (!r)
        return NULL;
    es_stream *s = es_stream_create(e, sp, err, errlen);
    char *text = NULL;
    float buf[16000];
    long n;
    int failed = !s;
    while (!failed && (n = af_read(r, buf, 16000, err, errlen)) > 0) {
        failed = es_stream_accept_audio(s, buf, (size_t)n) != 0;
        while (!failed && es_stream_ready(s))
            failed = es_engine_step(e, &s, 1, err, errlen) != 0;
    }
    if (!failed && n == 0 && es_stream_end_audio(s) == 0) {
        while (!failed && es_stream_ready(s))
            failed = es_engine_step(e, &s, 1, err, errlen) != 0;
        if (!failed)
            text = es_stream_text(s);
    }
    *seconds = af_seconds_read(r);
    es_stream_free(s);
    af_close(r);
    return text;
}

/* Character edits between the normalised word lists joined by single spaces. */
static long char_edits(char **ref, int nr, char **hyp, int nh, long *ref_chars)
{
    char *a[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    char **w[2] = {ref, hyp};
    int nw[2] = {nr, nh};
    for (int k = 0; k < 2; k++) {
        size_t total = 1;
        for (int i = 0; i < nw[k]; i++)
            total += strlen(w[k][i]) + 1;
        a[k] = malloc(total);
        if (!a[k]) {
            free(a[0]);
            return -1;
        }
        a[k][0] = 0;
        for (int i = 0; i < nw[k]; i++) {
            if (i)
                strcat(a[k], " ");
            strcat(a[k], w[k][i]);
        }
        len[k] = strlen(a[k]);
    }
    long *row = malloc((len[1] + 1) * sizeof *row);
    long d = -1;
    if (row) {
        for (size_t j = 0; j <= len[1]; j++)
            row[j] = (long)j;
        for (size_t i = 1; i <= len[0]; i++) {
            long diag = row[0];
            row[0] = (long)i;
            for (size_t j = 1; j <= len[1]; j++) {
                long up = row[j], best = diag + (a[0][i - 1] != a[1][j - 1]);
                if (up + 1 < best)
                    best = up + 1;
                if (row[j - 1] + 1 < best)
                    best = row[j - 1] + 1;
                diag = up;
                row[j] = best;
            }
        }
        d = row[len[1]];
    }
    *ref_chars = (long)len[0];
    free(row);
    free(a[0]);
    free(a[1]);
    return d;
}

static void usage(FILE *f)
{
    es_engine_params d = es_engine_default_params();
    fprintf(f, "Usage: earshot-eval --model MODEL --manifest FILE [options]\n"
               "Word and character error rates of a model on a labelled set, per latency mode.\n\n"
               "  --model PATH          Earshot model file (from earshot-convert)\n"
               "  --manifest FILE       NeMo JSON lines (audio_filepath, text) or a TSV with file, reference\n"
               "  --chunk-ms N[,N...]   latency modes to evaluate (default: every mode of the model)\n"
               "  --decoder ctc|rnnt    decoder of a hybrid model (default: rnnt when present)\n"
               "  --lm FILE             word n-gram LM (ARPA, may be .gz): CTC beam search instead of greedy\n"
               "                        (default: MODEL.arpa.gz beside the model, if there is one)\n"
               "  --no-lm               greedy CTC even when the model has an LM beside it\n"
               "  --lm-weight A         the LM's weight (default %.2f)\n"
               "  --lm-bonus B          score added per word (default %.2f)\n"
               "  --beam N              hypotheses kept by the search (default %d)\n"
               "  --lm-max-delay-ms N   the longest the search may wait to settle a word (default %d)\n"
               "  --json OUT            write every figure, per mode and utterance, to OUT\n"
               "  --quiet               no per-utterance lines\n"
               "  --help                this text\n\n"
               "Exit status: 0 done, 1 an utterance could not be read, 2 wrong command line, 3 model.\n",
            (double)d.lm_weight, (double)d.lm_word_bonus, d.lm_beam, d.lm_max_delay_ms);
}

int main(int argc, char **argv)
{
    es_prefer_passive_threads(argv);
    const char *model = NULL, *man_path = NULL, *json_path = NULL, *chunks = NULL, *decoder = NULL;
    int quiet = 0, no_lm = 0;
    es_engine_params ep = es_engine_default_params();
    ep.max_streams = 1;
    char *end;
    static const struct option opts[] = {{"lm", required_argument, 0, 'L'}, {"lm-weight", required_argument, 0, 'A'},
                                         {"lm-bonus", required_argument, 0, 'B'}, {"beam", required_argument, 0, 'W'},
                                         {"no-lm", no_argument, 0, 'N'},
                                         {"lm-max-delay-ms", required_argument, 0, 'D'},{"model", required_argument, 0, 'm'},  {"manifest", required_argument, 0, 'f'},
                                         {"chunk-ms", required_argument, 0, 'c'}, {"decoder", required_argument, 0, 'd'},
                                         {"json", required_argument, 0, 'j'},   {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "m:f:c:d:j:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'f': man_path = optarg; break;
        case 'c': chunks = optarg; break;
        case 'd': decoder = optarg; break;
        case 'j': json_path = optarg; break;
        case 'q': quiet = 1; break;
        case 'L': ep.lm_path = optarg; break;
        case 'N': no_lm = 1; break;
        case 'A':
        case 'B': {
            float v = strtof(optarg, &end);
            if (end == optarg || *end) {
                fprintf(stderr, "earshot-eval: --%s needs a number, not '%s'\n", c == 'A' ? "lm-weight" : "lm-bonus",
                        optarg);
                return 2;
            }
            *(c == 'A' ? &ep.lm_weight : &ep.lm_word_bonus) = v;
            break;
        }
        case 'W':
        case 'D': {
            int v = (int)strtol(optarg, &end, 10);
            if (end == optarg || *end) {
                fprintf(stderr, "earshot-eval: --%s needs a whole number, not '%s'\n",
                        c == 'W' ? "beam" : "lm-max-delay-ms", optarg);
                return 2;
            }
            *(c == 'W' ? &ep.lm_beam : &ep.lm_max_delay_ms) = v;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!model || !man_path || optind != argc) {
        fprintf(stderr, "earshot-eval: --model and --manifest are required\n");
        usage(stderr);
        return 2;
    }
    if (ep.lm_path && no_lm) {
        fprintf(stderr, "earshot-eval: --lm and --no-lm contradict each other\n");
        return 2;
    }
    static char lm_beside[4096];
    if (!ep.lm_path && !no_lm && es_lm_beside_model(model, lm_beside, sizeof lm_beside))
        ep.lm_path = lm_beside;
    char err[512] = "";
    manifest m = {0};
    if (read_manifest(man_path, &m, err, sizeof err) != 0) {
        fprintf(stderr, "earshot-eval: %s\n", err);
        manifest_free(&m);
        return 2;
    }
    es_engine *e = es_engine_create(model, &ep, err, sizeof err);
    if (!e) {
        fprintf(stderr, "earshot-eval: %s\n", err);
        manifest_free(&m);
        return 3;
    }
    es_stream_params sp = es_stream_default_params(e);
    if (decoder) {
        es_decoder_kind k = strcmp(decoder, "ctc") == 0 ? ES_DECODER_CTC : ES_DECODER_RNNT;
        if ((strcmp(decoder, "ctc") && strcmp(decoder, "rnnt")) || !es_engine_has_decoder(e, k)) {
            fprintf(stderr, "earshot-eval: the model has no decoder '%s'\n", decoder);
            es_engine_free(e);
            manifest_free(&m);
            return 2;
        }
        sp.decoder = k;
    }
    int modes[64], n_modes = 0;
    if (chunks) {
        for (const char *p = chunks; *p && n_modes < 64;) {
            modes[n_modes++] = es_engine_pick_lookahead(e, atoi(p));
            p += strcspn(p, ",");
            p += *p == ',';
        }
    } else {
        for (int i = 0; i < es_engine_lookahead_count(e) && i < 64; i++)
            modes[n_modes++] = i;
    }

    int uses_lm = ep.lm_path && sp.decoder == ES_DECODER_CTC;
    if (uses_lm)
        printf("decoder: CTC beam search (beam %d) with the LM %s (%.1f MB in memory), weight %.2f, word bonus %.2f\n",
               ep.lm_beam, ep.lm_path, es_engine_lm_bytes(e) / 1048576.0, (double)ep.lm_weight,
               (double)ep.lm_word_bonus);
    else
        printf("decoder: %s greedy\n", sp.decoder == ES_DECODER_CTC ? "CTC" : "RNNT");
    cJSON *root = cJSON_CreateObject(), *jmodes = cJSON_AddArrayToObject(root, "modes");
    cJSON_AddItemToObject(root, "lm", uses_lm ? cJSON_CreateString(ep.lm_path) : cJSON_CreateNull());
    cJSON_AddStringToObject(root, "model", es_engine_model_name(e));
    cJSON_AddStringToObject(root, "manifest", man_path);
    int failures = 0;
    for (int mi = 0; mi < n_modes; mi++) {
        sp.lookahead = modes[mi];
        es_lookahead_info la = es_engine_lookahead(e, modes[mi]);
        long words = 0, word_edits = 0, chars = 0, char_edit_total = 0;
        double audio = 0, compute = 0;
        cJSON *jm = cJSON_CreateObject(), *ju = cJSON_AddArrayToObject(jm, "utterances");
        for (int i = 0; i < m.n; i++) {
            double sec = 0, t0 = now_s();
            char *hyp = transcribe(e, &sp, m.u[i].audio, &sec, err, sizeof err);
            compute += now_s() - t0;
            if (!hyp) {
                fprintf(stderr, "earshot-eval: %s: %s\n", m.u[i].audio, err);
                failures++;
                continue;
            }
            audio += sec;
            char **rw = NULL, **hw = NULL;
            int nr = 0, nh = 0, cr = 0, ch = 0;
            wer_add_words(m.u[i].reference, &rw, &nr, &cr);
            wer_add_words(hyp, &hw, &nh, &ch);
            long we = wer_edits(rw, nr, hw, nh), rc_chars = 0, ce = char_edits(rw, nr, hw, nh, &rc_chars);
            words += nr;
            word_edits += we;
            chars += rc_chars;
            char_edit_total += ce;
            if (!quiet)
                printf("%4d ms  %-40.40s  WER %6.1f%%  ref: %s\n%50s hyp: %s\n", la.chunk_ms, m.u[i].audio,
                       nr ? 100.0 * we / nr : 0.0, m.u[i].reference, "", hyp);
            cJSON *u = cJSON_CreateObject();
            cJSON_AddStringToObject(u, "audio", m.u[i].audio);
            cJSON_AddStringToObject(u, "reference", m.u[i].reference);
            cJSON_AddStringToObject(u, "hypothesis", hyp);
            cJSON_AddNumberToObject(u, "words", nr);
            cJSON_AddNumberToObject(u, "word_edits", (double)we);
            cJSON_AddItemToArray(ju, u);
            wer_free_words(rw, nr);
            wer_free_words(hw, nh);
            free(hyp);
        }
        double wer = words ? 100.0 * word_edits / words : 0, cer = chars ? 100.0 * char_edit_total / chars : 0;
        printf("mode %4d ms [%d,%d]: WER %.2f%% (%ld edits / %ld words), CER %.2f%%, %d utterances, %.1f s of audio, "
               "RTF %.3f\n",
               la.chunk_ms, la.att_context[0], la.att_context[1], wer, word_edits, words, cer, m.n - failures, audio,
               audio > 0 ? compute / audio : 0);
        cJSON_AddNumberToObject(jm, "chunk_ms", la.chunk_ms);
        cJSON_AddNumberToObject(jm, "wer", wer);
        cJSON_AddNumberToObject(jm, "cer", cer);
        cJSON_AddNumberToObject(jm, "words", (double)words);
        cJSON_AddNumberToObject(jm, "word_edits", (double)word_edits);
        cJSON_AddNumberToObject(jm, "audio_s", audio);
        cJSON_AddNumberToObject(jm, "rtf", audio > 0 ? compute / audio : 0);
        cJSON_AddItemToArray(jmodes, jm);
    }
    if (json_path) {
        char *s = cJSON_Print(root);
        FILE *f = fopen(json_path, "w");
        if (!s || !f || fputs(s, f) < 0) {
            fprintf(stderr, "earshot-eval: cannot write %s\n", json_path);
            failures++;
        }
        if (f)
            fclose(f);
        free(s);
    }
    cJSON_Delete(root);
    manifest_free(&m);
    es_engine_free(e);
    return failures ? 1 : 0;
}
