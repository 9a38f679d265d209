/*
 * url.c - see url.h. Only the URL forms a WebSocket client meets; no user:password@, no
 * percent-decoding (the path goes to the server as written).
 */
#include "url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *url, const char *why)
{
    snprintf(err, errlen, "bad URL '%s': %s", url, why);
    return -1;
}

int ws_url_parse(const char *url, const char *default_path, ws_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    if (!url || !*url)
        return fail(err, errlen, "", "empty");
    const char *p;
    if (strncmp(url, "ws://", 5) == 0 || strncmp(url, "http://", 7) == 0) {
        p = strstr(url, "://") + 3;
        u->port = 80;
    } else if (strncmp(url, "wss://", 6) == 0 || strncmp(url, "https://", 8) == 0) {
        p = strstr(url, "://") + 3;
        u->tls = 1;
        u->port = 443;
    } else {
        return fail(err, errlen, url, "it must begin with ws:// or wss://");
    }

    /* host: up to ':', '/', '?' or the end; [v6] in brackets */
    const char *h = p, *he;
    if (*p == '[') {
        he = strchr(p, ']');
        if (!he)
            return fail(err, errlen, url, "no ']' after an IPv6 address");
        h = p + 1;
        p = he + 1;
    } else {
        he = p + strcspn(p, ":/?#");
        p = he;
    }
    size_t hl = (size_t)(he - h);
    if (hl == 0)
        return fail(err, errlen, url, "no host");
    if (hl >= sizeof u->host)
        return fail(err, errlen, url, "host name too long");
    for (size_t i = 0; i < hl; i++)
        if (h[i] <= ' ' || h[i] == '@' || (unsigned char)h[i] >= 0x7F)
            return fail(err, errlen, url, "bad character in the host name");
    memcpy(u->host, h, hl);

    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535 || (*end && !strchr("/?#", *end)))
            return fail(err, errlen, url, "the port must be a number from 1 to 65535");
        u->port = (int)port;
        p = end;
    }
    if (*p && !strchr("/?#", *p))
        return fail(err, errlen, url, "unexpected characters after the host");

    const char *path = *p == '/' ? p : default_path;
    size_t pl = strcspn(path, "#");
    if (*p == '?') /* a query without a path: the default path, then the query */
        pl = 0;
    if (pl + 1 + strlen(p) >= sizeof u->path)
        return fail(err, errlen, url, "path too long");
    memcpy(u->path, path, pl);
    if (*p == '?')
        snprintf(u->path, sizeof u->path, "%s%.*s", default_path, (int)strcspn(p, "#"), p);
    for (const char *c = u->path; *c; c++)
        if (*c <= ' ' || *c == 0x7F)
            return fail(err, errlen, url, "the path has spaces or control characters");
    if (u->path[0] != '/')
        return fail(err, errlen, url, "no path");
    return 0;
}

void ws_url_format(const ws_url *u, const char *path, char *buf, size_t len)
{
    int v6 = strchr(u->host, ':') != NULL;
    snprintf(buf, len, "%s://%s%s%s:%d%s", u->tls ? "wss" : "ws", v6 ? "[" : "", u->host, v6 ? "]" : "",
             u->port, path ? path : u->path);
}
