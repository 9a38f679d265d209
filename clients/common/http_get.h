/*
 * http_get.h - one blocking plain-HTTP GET, for the few requests the clients make beside their
 * WebSockets: /metrics before and after a load test, /v1/models for the model's sample rate,
 * /healthz to tell "server down" from "session refused" before a run starts.
 *
 * Blocking is fine there: nothing else runs at those moments. No TLS (a wss:// server's HTTP
 * side is not reachable this way; callers then do without), no redirects, no chunked bodies
 * beyond reading to the close (the request says "Connection: close").
 */
#ifndef EARSHOT_HTTP_GET_H
#define EARSHOT_HTTP_GET_H

#include <stddef.h>

/* GETs path from host:port within timeout_ms, with "Authorization: Bearer token" when token
   is not NULL. Returns the HTTP status and sets *body (malloc'd, NUL-terminated; free it), or
   -1 with one sentence in err (connection refused, timeout, not HTTP). */
int http_get(const char *host, int port, const char *path, const char *token, int timeout_ms, char **body,
             char *err, size_t errlen);

#endif
