/*
 * fuzz_protocol.c - libFuzzer target: any bytes as a client's text message (protocol_parse).
 *
 * Whatever the bytes, parsing must return a known error code or success, write a reason that is
 * a terminated string, and on success leave start parameters inside the documented ranges.
 */
#include "protocol.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    client_message_type type;
    start_params p;
    char why[256];
    memset(why, 'x', sizeof why);
    why[0] = 0;
    error_code ec = protocol_parse((const char *)data, size, &type, &p, why, sizeof why);
    if (memchr(why, 0, sizeof why) == NULL)
        abort(); /* the reason must be a terminated string */
    if (ec == ERR_NONE && type == MSG_START) {
        if (p.sample_rate < 8000 || p.sample_rate > 48000 || (p.channels != 1 && p.channels != 2) ||
            p.endpointing_ms < 0 || p.chunk_ms < 0)
            abort();
    }
    (void)error_code_name(ec);
    (void)error_close_code(ec);
    return 0;
}
