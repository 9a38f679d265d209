/*
 * url.h - split a ws:// or wss:// URL into what libwebsockets' client and a plain HTTP GET
 * need: TLS or not, host, port, and the path with its query.
 *
 *     ws://127.0.0.1:8080/v1/listen?token=x  -> tls 0, "127.0.0.1", 8080, "/v1/listen?token=x"
 *     wss://asr.example.com                  -> tls 1, "asr.example.com", 443, "/v1/listen"
 *
 * http:// and https:// are taken as ws:// and wss:// (the same server answers both). IPv6
 * hosts go in brackets: ws://[::1]:8080/v1/listen.
 */
#ifndef EARSHOT_URL_H
#define EARSHOT_URL_H

#include <stddef.h>

typedef struct {
    int tls;
    char host[256];
    int port;
    char path[1024]; /* begins with '/'; holds the query too */
} ws_url;

/* 0, or -1 with one sentence in err. default_path is used when the URL has none. */
int ws_url_parse(const char *url, const char *default_path, ws_url *u, char *err, size_t errlen);

/* "ws://host:port" + path into buf (for messages). */
void ws_url_format(const ws_url *u, const char *path, char *buf, size_t len);

#endif
