/*
 * fuzz_audio_file.c - libFuzzer target: any bytes as an uploaded or command-line audio file
 * (af_open + af_read: libsndfile decoding, downmix, libsamplerate to 16 kHz).
 *
 * The bytes are written to a memory file and read as earshot-transcribe and the server's file
 * jobs read files. Reading must end (samples, end or a clear error) with every sample finite and
 * in [-1, 1].
 */
#define _GNU_SOURCE /* memfd_create */
#include "audio_file.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-audio", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64], err[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    af_reader *r = af_open(path, 16000, AF_QUALITY_FAST, err, sizeof err);
    if (r) {
        float buf[4096];
        long n, total = 0;
        /* a hostile header can claim hours of audio: a bounded read is enough to exercise it */
        while ((n = af_read(r, buf, 4096, err, sizeof err)) > 0 && total < 16000 * 30) {
            for (long i = 0; i < n; i++)
                if (!isfinite(buf[i]) || buf[i] < -1.0f || buf[i] > 1.0f)
                    abort();
            total += n;
        }
        af_close(r);
    }
    close(fd);
    return 0;
}
