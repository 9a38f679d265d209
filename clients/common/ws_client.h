/*
 * ws_client.h - many WebSocket client connections on one libwebsockets context, one thread.
 *
 * Shared by earshot-loadtest (thousands of sessions) and earshot-transcribe --server (one).
 * lws wants writes made from its WRITEABLE callback; this module hides that: wsc_send queues a
 * copy of the message and asks for writability, and each writable moment sends one queued
 * message. When a connection's queue runs empty on a writable socket, on_writable tells the
 * owner, who may queue the next message (so a sender that refills only there never holds more
 * than one message in flight: it follows the socket's pace). Received messages are reassembled
 * from their fragments and handed over whole.
 *
 * A connection ends exactly once with on_close(code, why): the server's close code (1000,
 * 1008, 1013, ...), 1006 when the TCP connection went away without a close frame, or 0 when no
 * WebSocket was ever opened (refused, unreachable, HTTP 401, ...), with a sentence in why. The
 * wsc_conn is freed right after on_close returns.
 */
#ifndef EARSHOT_WS_CLIENT_H
#define EARSHOT_WS_CLIENT_H

#include "url.h"

#include <stddef.h>

struct lws_context;
typedef struct wsc_client wsc_client;
typedef struct wsc_conn wsc_conn;

typedef struct {
    void (*on_open)(wsc_conn *c, void *user);
    /* A whole text message, NUL-terminated (binary messages are ignored). */
    void (*on_text)(wsc_conn *c, void *user, const char *msg, size_t len);
    /* The send queue is empty and the socket can take more. */
    void (*on_writable)(wsc_conn *c, void *user);
    /* code: see above. http_status: the answer to the upgrade when it was not 101, else 0. */
    void (*on_close)(wsc_conn *c, void *user, int code, int http_status, const char *why);
} wsc_handlers;

/* One lws context for up to max_conns connections. tls: set up TLS (wss://); insecure: accept
   self-signed certificates and other host names. NULL with err on failure. */
wsc_client *wsc_client_create(int max_conns, int tls, int insecure, char *err, size_t errlen);
/* Closes every connection (their on_close runs) and frees the context. */
void wsc_client_free(wsc_client *cl);
struct lws_context *wsc_client_context(wsc_client *cl);
/* Runs the event loop once (lws_service); < 0 when the context is broken. */
int wsc_client_service(wsc_client *cl);
/* Makes lws_service return soon (from a timer or another place in the loop). */
void wsc_client_wake(wsc_client *cl);

/* Starts connecting to u (its path and query); token: sent as "Authorization: Bearer" when not
   NULL. Handlers run from wsc_client_service. NULL with err when the attempt cannot even begin
   (then no handler runs). */
wsc_conn *wsc_connect(wsc_client *cl, const ws_url *u, const char *token, const wsc_handlers *h, void *user,
                      char *err, size_t errlen);

/* Queues a copy of a text (binary = 0) or binary message. 0, or -1 (out of memory, closing). */
int wsc_send(wsc_conn *c, int binary, const void *data, size_t len);
/* Bytes waiting in the send queue. */
size_t wsc_queued_bytes(const wsc_conn *c);
/* Sends a close frame with code (after what is queued) and drops the connection; on_close
   follows with that code. */
void wsc_close(wsc_conn *c, int code);

#endif
