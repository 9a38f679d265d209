/*
 * file_job.h - POST /v1/audio/transcriptions: a whole file transcribed through the same engine
 * as the live sessions, at lower priority (a "file job" of scheduler.h, priority 1).
 *
 * The multipart upload (as in OpenAI's API: file, response_format, timestamp_granularities[],
 * plus Earshot's chunk_ms and decoder) is parsed as it arrives and the file part is spooled to
 * a temporary file, so an upload costs disk, not memory. When the body is complete a decoder
 * thread reads the file with libsndfile and libsamplerate (clients/transcribe/audio_file.h) and
 * feeds the engine worker, never more than FILE_JOB_AHEAD_S seconds ahead of what it has
 * encoded, so a ten-hour file holds as little memory as a ten-second one. The worker's finals
 * come back through the event loop (file_job_deliver); at the end the response is written in
 * the format asked for.
 *
 * All functions run on the event loop thread.
 */
#ifndef EARSHOT_FILE_JOB_H
#define EARSHOT_FILE_JOB_H

#include "scheduler.h"
#include "session.h"

#include <libwebsockets.h>
#include <stddef.h>

#define FILE_JOB_AHEAD_S 30.0

typedef struct file_job file_job;

/* The request's headers have arrived. Returns the job, or NULL with an HTTP status and a
   reason when it is refused at once (too many jobs, draining, body too large, not multipart). */
file_job *file_job_begin(server *srv, struct lws *wsi, unsigned *status, const char **code, char *why,
                         size_t why_len);

/* A piece of the body. 0, or -1 when the upload is refused (its status, code and reason are
   then in the out parameters). */
int file_job_body(file_job *j, const void *in, size_t len, unsigned *status, const char **code, char *why,
                  size_t why_len);

/* The body is complete: checks the fields and starts decoding, or refuses as above. */
int file_job_body_done(file_job *j, unsigned *status, const char **code, char *why, size_t why_len);

/* The HTTP connection is gone (or its response is written): the job stops and is freed as soon
   as its decoder thread has returned. */
void file_job_detach(file_job *j);

/* A result from the worker. Returns 1 when it belonged to a file job (and was consumed). */
int file_job_deliver(server *srv, out_msg *m);

/* Joins decoder threads that have finished, answers jobs that failed, frees detached jobs.
   Called whenever the event loop is woken for results. */
void file_job_poll(server *srv);

/* Jobs not yet freed (a draining server waits for them). */
int file_jobs_open(const server *srv);

/* SIGTERM: stop everything at once (the server is about to exit). Joins every decoder thread. */
void file_jobs_cancel_all(server *srv);

#endif
