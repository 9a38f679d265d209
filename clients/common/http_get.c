/*
 * http_get.c - see http_get.h. getaddrinfo, a non-blocking connect bounded by poll, then the
 * request and a read to the end, all within one deadline.
 */
#include "http_get.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RESPONSE (16u << 20)

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to be ready for events until deadline; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -1 : r;
    }
}

static int connect_to(const char *host, int port, long long deadline, char *err, size_t errlen)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gr = getaddrinfo(host, service, &hints, &res);
    if (gr != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gr));
        return -1;
    }
    int fd = -1, last_errno = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        int r = connect(fd, a->ai_addr, a->ai_addrlen);
        if (r != 0 && errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, deadline);
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                r = 0;
            else
                errno = w == 0 ? ETIMEDOUT : (soerr ? soerr : errno);
        }
        if (r != 0) {
            last_errno = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "cannot connect to %s port %d: %s", host, port, strerror(last_errno));
    return fd;
}

int http_get(const char *host, int port, const char *path, const char *token, int timeout_ms, char **body,
             char *err, size_t errlen)
{
    *body = NULL;
    long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 5000);
    int fd = connect_to(host, port, deadline, err, errlen);
    if (fd < 0)
        return -1;

    char req[2048];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n%s%s%s\r\n", path,
                     host, port, token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req) {
        snprintf(err, errlen, "request too long");
        close(fd);
        return -1;
    }
    for (int off = 0; off < n;) {
        if (wait_fd(fd, POLLOUT, deadline) != 1) {
            snprintf(err, errlen, "timed out sending to %s port %d", host, port);
            close(fd);
            return -1;
        }
        ssize_t w = send(fd, req + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w <= 0) {
            snprintf(err, errlen, "cannot send to %s port %d: %s", host, port, strerror(errno));
            close(fd);
            return -1;
        }
        off += (int)w;
    }

    size_t len = 0, cap = 8192;
    char *buf = malloc(cap);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        return -1;
    }
    for (;;) {
        if (len + 1 >= cap) {
            char *nb = cap < MAX_RESPONSE ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                snprintf(err, errlen, "response too large");
                free(buf);
                close(fd);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        int w = wait_fd(fd, POLLIN, deadline);
        if (w != 1) {
            snprintf(err, errlen, "no answer from %s port %d within %d ms", host, port, timeout_ms);
            free(buf);
            close(fd);
            return -1;
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r < 0) {
            snprintf(err, errlen, "cannot read from %s port %d: %s", host, port, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';

    int status = 0;
    char *head_end = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1 || !head_end) {
        snprintf(err, errlen, "%s port %d did not answer HTTP", host, port);
        free(buf);
        return -1;
    }
    head_end += 4;
    memmove(buf, head_end, len - (size_t)(head_end - buf) + 1);
    *body = buf;
    return status;
}
