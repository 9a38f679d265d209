/*
 * ws_client.c - see ws_client.h.
 *
 * Each wsc_conn is the lws "user data" of its wsi (passed as connect_info.userdata), so the one
 * protocol callback finds it from any event. It is freed at LWS_CALLBACK_WSI_DESTROY, the last
 * event a wsi gets, whichever way it ended; on_close has run by then (from CONNECTION_ERROR or
 * CLIENT_CLOSED, or at the latest from WSI_DESTROY itself).
 */
#include "ws_client.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RX_MESSAGE (8u << 20) /* a text message above this is dropped (the server's are small) */

typedef struct msg {
    struct msg *next;
    size_t len;
    int binary;
    unsigned char data[]; /* LWS_PRE bytes of headroom, then the payload */
} msg;

struct wsc_client {
    struct lws_context *ctx;
    wsc_conn *connecting; /* the conn inside lws_client_connect_via_info, if any */
    int connecting_freed; /* ... and whether lws destroyed it there */
    char connecting_why[300]; /* ... and why it failed there, if it did */
    int insecure;
};

struct wsc_conn {
    wsc_client *cl;
    struct lws *wsi;
    wsc_handlers h;
    void *user;
    char auth[1100]; /* "Bearer TOKEN", or empty */
    msg *head, *tail;
    size_t queued;
    char *rx;
    size_t rx_len, rx_cap;
    int rx_binary, rx_skip;
    int peer_code; /* close code the server sent, 0 if none yet */
    int closing;   /* close code we want to send, 0 if none */
    int opened, reported;
};

static void drop_queue(wsc_conn *c)
{
    while (c->head) {
        msg *m = c->head;
        c->head = m->next;
        free(m);
    }
    c->tail = NULL;
    c->queued = 0;
}

/* Tells the owner once that the connection is over. */
static void report(wsc_conn *c, int code, int http_status, const char *why)
{
    if (c->reported)
        return;
    c->reported = 1;
    drop_queue(c);
    if (c->h.on_close)
        c->h.on_close(c, c->user, code, http_status, why ? why : "");
}

/* The sentence for a connection that never became a WebSocket. */
static void connect_failure(wsc_conn *c, struct lws *wsi, const char *lws_why)
{
    char why[300];
    int status = wsi ? (int)lws_http_client_http_response(wsi) : 0;
    if (status == 401)
        snprintf(why, sizeof why, "HTTP 401: the server wants a token (--token) or refused the one given");
    else if (status > 0 && status != 101)
        snprintf(why, sizeof why, "HTTP %d: the server refused the WebSocket upgrade", status);
    else if (lws_why && (strstr(lws_why, "SSL") || strstr(lws_why, "TLS") || strstr(lws_why, "tls")))
        snprintf(why, sizeof why, "the TLS handshake failed (a self-signed certificate? --insecure accepts it): %.150s",
                 lws_why);
    else if (lws_why && (strstr(lws_why, "refused") || strstr(lws_why, "Unable to connect")))
        snprintf(why, sizeof why, "connection refused or host unreachable (is the server running, on this port?)");
    else
        snprintf(why, sizeof why, "%s", lws_why && *lws_why ? lws_why : "cannot connect");
    if (c->cl->connecting == c && !c->cl->connecting_why[0]) /* failed inside wsc_connect */
        memcpy(c->cl->connecting_why, why, sizeof why);
    report(c, 0, status != 101 ? status : 0, why);
}

static void on_receive(wsc_conn *c, struct lws *wsi, const char *in, size_t len)
{
    if (lws_is_first_fragment(wsi)) {
        c->rx_len = 0;
        c->rx_binary = lws_frame_is_binary(wsi);
        c->rx_skip = c->rx_binary;
    }
    if (!c->rx_skip) {
        if (c->rx_len + len + 1 > MAX_RX_MESSAGE) {
            c->rx_skip = 1;
        } else if (c->rx_len + len + 1 > c->rx_cap) {
            size_t cap = c->rx_cap ? c->rx_cap : 4096;
            while (cap < c->rx_len + len + 1)
                cap *= 2;
            char *p = realloc(c->rx, cap);
            if (!p)
                c->rx_skip = 1;
            else {
                c->rx = p;
                c->rx_cap = cap;
            }
        }
        if (!c->rx_skip) {
            memcpy(c->rx + c->rx_len, in, len);
            c->rx_len += len;
        }
    }
    if (lws_is_final_fragment(wsi)) {
        if (!c->rx_skip && c->h.on_text) {
            c->rx[c->rx_len] = '\0';
            c->h.on_text(c, c->user, c->rx, c->rx_len);
        }
        c->rx_len = 0;
        if (c->rx_cap > 65536) { /* a big message once need not cost memory for ever */
            free(c->rx);
            c->rx = NULL;
            c->rx_cap = 0;
        }
    }
}

static int on_writeable(wsc_conn *c, struct lws *wsi)
{
    if (c->reported)
        return -1;
    if (c->head) {
        msg *m = c->head;
        int n = lws_write(wsi, m->data + LWS_PRE, m->len, m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        if (n < 0 || (size_t)n < m->len)
            return -1; /* lws closes the connection; CLIENT_CLOSED follows */
        c->head = m->next;
        if (!c->head)
            c->tail = NULL;
        c->queued -= m->len;
        free(m);
    } else if (c->closing) {
        lws_close_reason(wsi, (enum lws_close_status)c->closing, NULL, 0);
        return -1;
    }
    if (c->head || c->closing)
        lws_callback_on_writable(wsi);
    else if (c->h.on_writable)
        c->h.on_writable(c, c->user);
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    wsc_conn *c = (wsc_conn *)user;
    if (!c)
        return 0;
    if (!c->wsi)
        c->wsi = wsi;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        if (c->auth[0]) {
            unsigned char **p = (unsigned char **)in, *end = *p + len;
            if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, (unsigned char *)c->auth,
                                             (int)strlen(c->auth), p, end))
                return -1;
        }
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        c->wsi = wsi;
        c->opened = 1;
        if (c->closing) {
            lws_callback_on_writable(wsi);
            break;
        }
        if (c->h.on_open)
            c->h.on_open(c, c->user);
        if (c->head)
            lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        connect_failure(c, wsi, (const char *)in);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c->reported)
            on_receive(c, wsi, (const char *)in, len);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return on_writeable(c, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        const unsigned char *b = (const unsigned char *)in;
        c->peer_code = len >= 2 ? (b[0] << 8 | b[1]) : 1005;
        break;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c->peer_code)
            report(c, c->peer_code, 0, "");
        else if (c->closing)
            report(c, c->closing, 0, "closed by the client");
        else
            report(c, 1006, 0, "the connection was cut without a close frame");
        break;
    case LWS_CALLBACK_WSI_DESTROY:
        if (!c->opened)
            connect_failure(c, wsi, "cannot connect");
        else
            report(c, c->peer_code ? c->peer_code : 1006, 0, "");
        drop_queue(c);
        free(c->rx);
        if (c->cl->connecting == c)
            c->cl->connecting_freed = 1;
        free(c);
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"earshot-client", callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

wsc_client *wsc_client_create(int max_conns, int tls, int insecure, char *err, size_t errlen)
{
    (void)max_conns; /* lws sizes its tables from the process's file limit */
    wsc_client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cl->insecure = insecure;
    lws_set_log_level(getenv("EARSHOT_LWS_DEBUG") ? LLL_ERR | LLL_WARN | LLL_NOTICE : 0, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    info.timeout_secs = 10; /* connect and upgrade */
    if (tls)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    cl->ctx = lws_create_context(&info);
    if (!cl->ctx) {
        snprintf(err, errlen, "cannot create the libwebsockets context");
        free(cl);
        return NULL;
    }
    return cl;
}

void wsc_client_free(wsc_client *cl)
{
    if (!cl)
        return;
    lws_context_destroy(cl->ctx);
    free(cl);
}

struct lws_context *wsc_client_context(wsc_client *cl) { return cl->ctx; }

int wsc_client_service(wsc_client *cl) { return lws_service(cl->ctx, 0); }

void wsc_client_wake(wsc_client *cl) { lws_cancel_service(cl->ctx); }

wsc_conn *wsc_connect(wsc_client *cl, const ws_url *u, const char *token, const wsc_handlers *h, void *user,
                      char *err, size_t errlen)
{
    wsc_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->cl = cl;
    c->h = *h;
    c->user = user;
    if (token && *token) {
        if (strlen(token) + 8 >= sizeof c->auth) {
            snprintf(err, errlen, "token too long");
            free(c);
            return NULL;
        }
        snprintf(c->auth, sizeof c->auth, "Bearer %s", token);
    }
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = cl->ctx;
    ci.address = u->host;
    ci.port = u->port;
    ci.path = u->path;
    ci.host = u->host;
    ci.origin = u->host;
    ci.protocol = NULL; /* the server's default protocol: no Sec-WebSocket-Protocol */
    ci.local_protocol_name = protocols[0].name;
    ci.userdata = c;
    if (u->tls)
        ci.ssl_connection = LCCSCF_USE_SSL | (cl->insecure ? LCCSCF_ALLOW_SELFSIGNED |
                                              LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK | LCCSCF_ALLOW_EXPIRED : 0);
    /* A failure inside the call may reach the callback (on_close runs, WSI_DESTROY frees c)
       before NULL comes back; no handler may run for a call that returns NULL, so on_close is
       silenced for the call's duration and c freed here if lws did not. */
    cl->connecting = c;
    cl->connecting_freed = 0;
    cl->connecting_why[0] = '\0';
    c->reported = 1; /* no on_close from inside the call */
    struct lws *wsi = lws_client_connect_via_info(&ci);
    cl->connecting = NULL;
    if (!wsi) {
        snprintf(err, errlen, "cannot connect to %s port %d: %s", u->host, u->port,
                 cl->connecting_why[0] ? cl->connecting_why : "the host name does not resolve, or no socket");
        if (!cl->connecting_freed) {
            drop_queue(c);
            free(c);
        }
        return NULL;
    }
    c->reported = 0;
    c->wsi = wsi;
    return c;
}

int wsc_send(wsc_conn *c, int binary, const void *data, size_t len)
{
    if (c->reported || c->closing)
        return -1;
    msg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m)
        return -1;
    m->next = NULL;
    m->len = len;
    m->binary = binary;
    if (len)
        memcpy(m->data + LWS_PRE, data, len);
    if (c->tail)
        c->tail->next = m;
    else
        c->head = m;
    c->tail = m;
    c->queued += len;
    if (c->opened && c->wsi)
        lws_callback_on_writable(c->wsi);
    return 0;
}

size_t wsc_queued_bytes(const wsc_conn *c) { return c->queued; }

void wsc_close(wsc_conn *c, int code)
{
    if (c->reported || c->closing)
        return;
    c->closing = code > 0 ? code : 1000;
    if (c->opened && c->wsi)
        lws_callback_on_writable(c->wsi);
    else if (c->wsi)
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_AWAITING_PROXY_RESPONSE, LWS_TO_KILL_ASYNC);
}
