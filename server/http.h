/*
 * http.h - the HTTP side of the port: GET /healthz, /metrics, /v1/models, the web page at /,
 * POST /v1/audio/transcriptions, and the checks made before a WebSocket upgrade (path, auth).
 */
#ifndef EARSHOT_HTTP_H
#define EARSHOT_HTTP_H

#include "session.h"

#include <libwebsockets.h>

/* The protocol callback for plain HTTP (protocols[0] of the vhost). */
int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);
size_t http_pss_size(void);

/* Answers a request whose response was deferred (a file job): status, content type and body
   (malloc'd, taken; may be NULL for an empty body), written when the connection is writeable. */
void http_respond_later(struct lws *wsi, unsigned status, const char *ctype, char *body, size_t len);

/* Whether the request carries the token (always true without --auth-token). */
int http_authorized(const server *srv, struct lws *wsi);

/* Before a WebSocket upgrade (LWS_CALLBACK_HTTP_CONFIRM_UPGRADE, or FILTER_PROTOCOL_CONNECTION):
   0 to go on; -1 after answering 404 (not /v1/listen) or 401 (no token). */
int http_confirm_upgrade(server *srv, struct lws *wsi);

#endif
