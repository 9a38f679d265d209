/*
 * remote.h - earshot-transcribe --server: the same transcripts as local mode, computed by an
 * Earshot server over the live protocol (docs/protocol.md).
 *
 * Each file is one session. The file is decoded and resampled here exactly as local mode does
 * it (audio_file.h, to the model's rate, which /v1/models tells), and sent as pcm_f32le, so the
 * server's engine sees the very samples the local engine would; the start message turns
 * endpointing off, so the text is the stream's one-segment text, which local mode prints.
 */
#ifndef EARSHOT_REMOTE_H
#define EARSHOT_REMOTE_H

#include "output.h"

typedef struct {
    const char *url;
    const char *token;   /* NULL: none */
    int realtime;        /* pace the audio at real time; else as fast as the server takes it */
    int insecure;        /* wss://: accept a self-signed or mismatched certificate */
    int chunk_ms;        /* 0: the server's default latency mode */
    const char *decoder; /* "ctc", "rnnt" or NULL */
    out_format format;
    int quiet;
} remote_options;

/* Transcribes the files through the server and prints them as local mode does. Returns the
   exit status: 0 all went well, 1 some file failed, 2 the URL is wrong, 3 the server cannot
   be reached or refuses the connection. */
int remote_transcribe(const remote_options *o, const char **files, int n_files);

#endif
