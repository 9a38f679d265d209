/*
 * http.c - plain HTTP on the server's port (see http.h).
 *
 * Each request is answered from LWS_CALLBACK_HTTP: the headers are written at once and the
 * body, built in memory, when the connection is writeable (the minimal-http-server-dynamic
 * pattern). Files of the web page are streamed by lws_serve_http_file. With --auth-token the API
 * (/v1/..., the WebSocket upgrade, checked in LWS_CALLBACK_HTTP_CONFIRM_UPGRADE) and /metrics
 * need the token as "Authorization: Bearer TOKEN" or "?token=TOKEN"; /healthz and the web
 * page's files do not.
 */
#include "http.h"

#include "file_job.h"
#include "metrics.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One response in the making. Headers are written in one writeable callback and the body in
   pieces of WRITE_PIECE bytes in the following ones, so a large transcript never makes lws
   buffer it all again. */
typedef struct {
    unsigned char *body; /* LWS_PRE bytes of headroom, then the body */
    size_t len, sent;
    unsigned status;
    const char *ctype;
    int headers_pending; /* the headers are still to be written */
    int close_after;     /* hang up after the response (the request body was not read) */
    int hold_until_body_end; /* an upload refused mid-body: answer once the body is read */
    file_job *job;       /* POST /v1/audio/transcriptions */
} http_pss;

#define WRITE_PIECE 16384

size_t http_pss_size(void) { return sizeof(http_pss); }

static const char placeholder[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Earshot</title></head>\n"
    "<body><h1>Earshot</h1><p>Streaming speech recognition. Connect a WebSocket to <code>/v1/listen</code> "
    "(see docs/protocol.md); <a href=\"/v1/models\">/v1/models</a>, <a href=\"/metrics\">/metrics</a>, "
    "<a href=\"/healthz\">/healthz</a>.</p></body></html>\n";

/* Compares without stopping at the first difference, so timing does not reveal the token. */
static int same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

int http_authorized(const server *srv, struct lws *wsi)
{
    const char *token = srv->opts->auth_token;
    if (!token || !token[0])
        return 1;
    char buf[512];
    if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_AUTHORIZATION) > 0 && strncmp(buf, "Bearer ", 7) == 0 &&
        same_secret(buf + 7, token))
        return 1;
    const char *v = lws_get_urlarg_by_name(wsi, "token=", buf, sizeof buf);
    return v && same_secret(v, token);
}

/* Keeps a copy of the response to be written when the connection is writeable. */
static int respond(struct lws *wsi, http_pss *p, unsigned status, const char *ctype, const char *body, size_t len)
{
    free(p->body);
    p->body = malloc(LWS_PRE + len + 1);
    if (!p->body)
        return -1;
    memcpy(p->body + LWS_PRE, body, len);
    p->len = len;
    p->sent = 0;
    p->status = status;
    p->ctype = ctype;
    p->headers_pending = 1;
    if (!p->hold_until_body_end)
        lws_callback_on_writable(wsi);
    return 0;
}

void http_respond_later(struct lws *wsi, unsigned status, const char *ctype, char *body, size_t len)
{
    http_pss *p = lws_wsi_user(wsi);
    if (!p || respond(wsi, p, status, ctype, body ? body : "", body ? len : 0) != 0)
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC); /* out of memory: hang up */
    free(body);
}

static int write_headers(struct lws *wsi, http_pss *p)
{
    unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *pp = start, *end = hdr + sizeof hdr - 1;
    if (lws_add_http_common_headers(wsi, p->status, p->ctype, p->len, &pp, end))
        return -1;
    if (p->status == HTTP_STATUS_UNAUTHORIZED &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"www-authenticate:", (const unsigned char *)"Bearer",
                                    6, &pp, end))
        return -1;
    if (p->status == HTTP_STATUS_SERVICE_UNAVAILABLE &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:", (const unsigned char *)"5", 1, &pp,
                                    end))
        return -1;
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:", (const unsigned char *)"no-store", 8,
                                    &pp, end))
        return -1;
    return lws_finalize_write_http_header(wsi, start, &pp, end) ? -1 : 0;
}

/* Writes the headers or the next piece of the body. Returns -1 to close the connection. */
static int write_response(struct lws *wsi, http_pss *p)
{
    if (p->headers_pending) {
        if (write_headers(wsi, p))
            return -1;
        p->headers_pending = 0;
        if (p->len > 0) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    } else {
        size_t n = p->len - p->sent < WRITE_PIECE ? p->len - p->sent : WRITE_PIECE;
        int last = p->sent + n == p->len;
        /* the bytes before this piece (already sent, or the headroom) serve as its LWS_PRE */
        if (lws_write(wsi, p->body + LWS_PRE + p->sent, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)n)
            return -1;
        p->sent += n;
        if (!last) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    }
    free(p->body);
    p->body = NULL;
    if (p->job) { /* its answer is written: the job can go */
        file_job_detach(p->job);
        p->job = NULL;
    }
    if (p->close_after || lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

static int respond_json_error(struct lws *wsi, http_pss *p, unsigned status, const char *code, const char *msg)
{
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    char *body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!body)
        return -1;
    int rc = respond(wsi, p, status, "application/json", body, strlen(body));
    free(body);
    return rc;
}

static char *models_json(const server *srv)
{
    const model_info *mi = &srv->model;
    cJSON *root = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(root, "data");
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToArray(data, m);
    cJSON_AddStringToObject(m, "id", mi->name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddStringToObject(m, "owned_by", "earshot");
    cJSON_AddNumberToObject(m, "sample_rate", mi->sample_rate);
    cJSON *las = cJSON_AddArrayToObject(m, "lookaheads");
    for (int i = 0; i < mi->n_lookaheads; i++) {
        cJSON *la = cJSON_CreateObject();
        cJSON_AddNumberToObject(la, "chunk_ms", mi->lookahead[i].chunk_ms);
        int ctx[2] = {mi->lookahead[i].att_context[0], mi->lookahead[i].att_context[1]};
        cJSON_AddItemToObject(la, "att_context_size", cJSON_CreateIntArray(ctx, 2));
        cJSON_AddItemToArray(las, la);
    }
    cJSON *decs = cJSON_AddArrayToObject(m, "decoders");
    if (mi->has_rnnt)
        cJSON_AddItemToArray(decs, cJSON_CreateString("rnnt"));
    if (mi->has_ctc)
        cJSON_AddItemToArray(decs, cJSON_CreateString("ctc"));
    cJSON_AddStringToObject(m, "default_decoder", mi->has_rnnt ? "rnnt" : "ctc");
    cJSON_AddNumberToObject(m, "max_sessions", srv->opts->max_sessions);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static const char *mime_of(const char *path)
{
    static const char *const map[][2] = {{".html", "text/html; charset=utf-8"}, {".js", "text/javascript"},
                                         {".mjs", "text/javascript"},           {".css", "text/css"},
                                         {".json", "application/json"},         {".svg", "image/svg+xml"},
                                         {".png", "image/png"},                 {".ico", "image/x-icon"},
                                         {".wasm", "application/wasm"},         {".wav", "audio/wav"}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(dot, map[i][0]) == 0)
            return map[i][1];
    return "application/octet-stream";
}

/* GET of anything else: a file under --web-root, or the placeholder page at /. */
static int serve_static(const server *srv, struct lws *wsi, http_pss *p, const char *uri)
{
    const char *root = srv->opts->web_root;
    struct stat st;
    if (!root || stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (strcmp(uri, "/") == 0 || strcmp(uri, "/index.html") == 0)
            return respond(wsi, p, HTTP_STATUS_OK, "text/html; charset=utf-8", placeholder, sizeof placeholder - 1);
        return respond_json_error(wsi, p, HTTP_STATUS_NOT_FOUND, "not_found", "no such page");
    }
    char path[1024];
    if (uri[0] != '/' || strstr(uri, "..") || strchr(uri, '\\'))
        return respond_json_error(wsi, p, HTTP_STATUS_NOT_FOUND, "not_found", "no such page");
    int n = snprintf(path, sizeof path, "%s%s%s", root, uri, uri[strlen(uri) - 1] == '/' ? "index.html" : "");
    if (n <= 0 || (size_t)n >= sizeof path || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return respond_json_error(wsi, p, HTTP_STATUS_NOT_FOUND, "not_found", "no such page");
    n = lws_serve_http_file(wsi, path, mime_of(path), NULL, 0);
    if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi)))
        return -1;
    return 0;
}

static int on_request(server *srv, struct lws *wsi, http_pss *p, const char *uri)
{
    int post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    if (strcmp(uri, "/healthz") == 0) {
        const char *body = srv->draining ? "draining\n" : server_full(srv) ? "full\n" : "ok\n";
        return respond(wsi, p, server_full(srv) ? HTTP_STATUS_SERVICE_UNAVAILABLE : HTTP_STATUS_OK,
                       "text/plain; charset=utf-8", body, strlen(body));
    }
    /* The web page's files hold no secrets, and a browser fetches them (scripts, the audio
       worklet) without the token: only the API and the metrics need it. */
    if (!post && strcmp(uri, "/metrics") != 0 && strncmp(uri, "/v1/", 4) != 0)
        return serve_static(srv, wsi, p, uri);
    if (!http_authorized(srv, wsi)) {
        metrics_error("unauthorized");
        return respond_json_error(wsi, p, HTTP_STATUS_UNAUTHORIZED, "unauthorized",
                                  "send Authorization: Bearer TOKEN or ?token=TOKEN");
    }
    if (strcmp(uri, "/v1/audio/transcriptions") == 0) {
        if (!post) {
            p->close_after = 1;
            return respond_json_error(wsi, p, HTTP_STATUS_METHOD_NOT_ALLOWED, "method_not_allowed", "use POST");
        }
        unsigned status = 0;
        const char *code = "internal";
        char why[256] = "";
        p->job = file_job_begin(srv, wsi, &status, &code, why, sizeof why);
        if (!p->job) {
            p->close_after = 1; /* the body is not read */
            metrics_error(code);
            return respond_json_error(wsi, p, status, code, why);
        }
        return 0; /* the body follows (LWS_CALLBACK_HTTP_BODY) */
    }
    if (post) {
        p->close_after = 1;
        return respond_json_error(wsi, p, HTTP_STATUS_METHOD_NOT_ALLOWED, "method_not_allowed", "use GET");
    }
    if (strcmp(uri, "/metrics") == 0) {
        char *body = metrics_render(srv->n_sessions, srv->opts->max_sessions, srv->draining,
                                    session_queued_bytes(srv));
        if (!body)
            return -1;
        int rc = respond(wsi, p, HTTP_STATUS_OK, "text/plain; version=0.0.4; charset=utf-8", body, strlen(body));
        free(body);
        return rc;
    }
    if (strcmp(uri, "/v1/models") == 0) {
        char *body = models_json(srv);
        if (!body)
            return -1;
        int rc = respond(wsi, p, HTTP_STATUS_OK, "application/json", body, strlen(body));
        free(body);
        return rc;
    }
    if (strcmp(uri, "/v1/listen") == 0)
        return respond_json_error(wsi, p, HTTP_STATUS_BAD_REQUEST, "bad_request", "open a WebSocket here");
    return serve_static(srv, wsi, p, uri);
}

/* Before a WebSocket upgrade: only /v1/listen, and only with the token. Refusals answer HTTP
   and hang up (returning -1: the connection is not reused). */
int http_confirm_upgrade(server *srv, struct lws *wsi)
{
    char uri[256];
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/v1/listen") != 0) {
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
        return -1;
    }
    if (!http_authorized(srv, wsi)) {
        metrics_error("unauthorized");
        lws_return_http_status(wsi, HTTP_STATUS_UNAUTHORIZED, NULL);
        return -1;
    }
    return 0;
}

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    server *srv = lws_context_user(lws_get_context(wsi));
    http_pss *p = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return http_confirm_upgrade(srv, wsi);
    case LWS_CALLBACK_HTTP:
        return on_request(srv, wsi, p, (const char *)in) ? -1 : 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!p || !p->body)
            break;
        return write_response(wsi, p);
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
        if (p && reason == LWS_CALLBACK_HTTP_BODY_COMPLETION && p->hold_until_body_end) {
            p->hold_until_body_end = 0;
            lws_callback_on_writable(wsi);
            return 0;
        }
        if (!p || !p->job)
            return 0; /* bodies of other requests are read and dropped */
        unsigned status = 0;
        const char *code = "internal";
        char why[256] = "";
        int rc = reason == LWS_CALLBACK_HTTP_BODY
                     ? file_job_body(p->job, in, len, &status, &code, why, sizeof why)
                     : file_job_body_done(p->job, &status, &code, why, sizeof why);
        if (rc != 0) {
            /* Answered once the body is read, so that the client, still sending, sees the
               answer rather than a reset connection. The rest of the body is dropped. */
            file_job_detach(p->job);
            p->job = NULL;
            p->hold_until_body_end = reason == LWS_CALLBACK_HTTP_BODY;
            metrics_error(code);
            return respond_json_error(wsi, p, status, code, why) ? -1 : 0;
        }
        return 0;
    }
    case LWS_CALLBACK_CLOSED_HTTP:
        if (p) {
            free(p->body);
            p->body = NULL;
            if (p->job) {
                file_job_detach(p->job);
                p->job = NULL;
            }
        }
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}
