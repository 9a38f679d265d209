/*
 * protocol.h - the v1 live protocol's messages (docs/protocol.md): parsing and validating what
 * clients send, and building what the server sends. Pure functions, no sockets: the session
 * code calls them, and tests and fuzzers call them directly.
 */
#ifndef EARSHOT_PROTOCOL_H
#define EARSHOT_PROTOCOL_H

#include <stddef.h>

typedef enum { AUDIO_PCM_S16LE, AUDIO_PCM_F32LE, AUDIO_OPUS } audio_encoding;

/* The client's start message, with defaults filled in. */
typedef struct {
    int sample_rate;          /* 8000..48000; default 16000 */
    audio_encoding encoding;  /* default pcm_s16le */
    int channels;             /* 1 or 2; default 1 */
    int chunk_ms;             /* requested latency mode; 0 = the model's default */
    char decoder[8];          /* "rnnt", "ctc" or "" (the model's default) */
    int interim_results;      /* default 1 */
    int word_timestamps;      /* default 1 */
    int endpointing_ms;       /* default 800; 0 turns endpointing off */
} start_params;

typedef enum { MSG_START, MSG_FINALIZE, MSG_KEEPALIVE, MSG_END } client_message_type;

/* Stable error codes sent in {"type":"error","code":...}; each has its close code. */
typedef enum {
    ERR_NONE = 0,
    ERR_BAD_JSON,          /* "bad_json", 1008 */
    ERR_BAD_MESSAGE,       /* "bad_message", 1008: unknown type, wrong field types/values */
    ERR_NOT_STARTED,       /* "not_started", 1008: audio or control before start */
    ERR_ALREADY_STARTED,   /* "already_started", 1008 */
    ERR_UNSUPPORTED,       /* "unsupported", 1008: encoding, rate, channels, decoder */
    ERR_BAD_AUDIO,         /* "bad_audio", 1008: odd PCM length, undecodable Opus */
    ERR_TOO_BIG,           /* "message_too_big", 1009 */
    ERR_OVER_CAPACITY,     /* "over_capacity", 1013 */
    ERR_UNAUTHORIZED,      /* "unauthorized", 1008 (HTTP 401 before the upgrade) */
    ERR_TIMEOUT,           /* "idle_timeout", 1008 */
    ERR_SLOW_READER,       /* "slow_reader", 1008: the client lets the server's messages pile up */
    ERR_INTERNAL           /* "internal", 1011 */
} error_code;

const char *error_code_name(error_code c);
int error_close_code(error_code c);

/* Parses one text message. On success returns 0, sets *type and, for start, fills *start
   (either may be NULL). On failure returns the error code and writes a human sentence (naming
   the field, and the value where it helps) to why. Fields it does not know are ignored, so
   newer clients work with older servers; a known field given as null takes its default.
   Malformed JSON, trailing text after the value and NUL bytes are ERR_BAD_JSON; a non-object,
   a missing or unknown type, a wrong field type or a bad chunk_ms / endpointing_ms is
   ERR_BAD_MESSAGE; an unknown encoding or decoder, a rate outside 8000..48000 (or not an Opus
   rate with Opus) or channels other than 1 or 2 is ERR_UNSUPPORTED. */
error_code protocol_parse(const char *text, size_t len, client_message_type *type, start_params *start, char *why,
                          size_t why_len);

/* Server messages, as malloc'd JSON strings (NULL when out of memory). Times are printed with
   three decimals; strings are made valid UTF-8 (invalid bytes become U+FFFD). */
typedef struct {
    const char *word;
    double start, end;
} protocol_word;

char *protocol_ready(const char *session_id, const char *model, int sample_rate, int chunk_ms, int att_left,
                     int att_right, const char *decoder);
char *protocol_partial(int segment, const char *text, double start, double end);
char *protocol_final(int segment, const char *text, double start, double end, const protocol_word *words, int n_words,
                     const char *reason);
char *protocol_error(error_code code, const char *message);
/* {"type":"warning","code":"behind_realtime","message","behind_s"}: the session's received
   audio waits longer than it should to be transcribed (the server is overloaded, or the client
   sends faster than real time). Informational: the session goes on. */
char *protocol_behind(double behind_s);

#endif
