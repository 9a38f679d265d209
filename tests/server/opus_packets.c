/*
 * opus_packets.c - test helper: encodes a 16 kHz mono WAV into 20 ms Opus packets and also
 * decodes them again, so the server test can stream the packets (encoding "opus") and, in a
 * second session, the exact float samples a fresh Opus decoder makes of them (encoding
 * "pcm_f32le"). Both sessions must then give the same transcript: that proves the server's
 * Opus path decodes every packet, in order, with nothing lost or added.
 *
 *   opus_packets IN.wav PACKETS.bin DECODED.f32
 *
 * PACKETS.bin is a sequence of (u16 little-endian length, packet bytes); DECODED.f32 is raw
 * little-endian float samples at 16 kHz.
 */
#include "wav16.h"

#include <opus.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: opus_packets IN.wav PACKETS.bin DECODED.f32\n");
        return 2;
    }
    wav16 w;
    char err[256];
    if (wav16_load(argv[1], &w, err, sizeof err) != 0 || w.sample_rate != 16000) {
        fprintf(stderr, "opus_packets: %s\n", err);
        return 1;
    }
    int rc = 0;
    OpusEncoder *enc = opus_encoder_create(16000, 1, OPUS_APPLICATION_VOIP, &rc);
    OpusDecoder *dec = rc == OPUS_OK ? opus_decoder_create(16000, 1, &rc) : NULL;
    FILE *pk = fopen(argv[2], "wb"), *pcm = fopen(argv[3], "wb");
    if (!enc || !dec || !pk || !pcm) {
        fprintf(stderr, "opus_packets: cannot set up (%s)\n", opus_strerror(rc));
        return 1;
    }
    enum { FRAME = 320 }; /* 20 ms */
    float in[FRAME], out[FRAME * 6];
    unsigned char packet[4000];
    int n_packets = 0;
    for (size_t at = 0; at + FRAME <= w.n_samples; at += FRAME) {
        for (int i = 0; i < FRAME; i++)
            in[i] = w.samples[at + (size_t)i];
        int len = opus_encode_float(enc, in, FRAME, packet, (opus_int32)sizeof packet);
        int got = len > 0 ? opus_decode_float(dec, packet, len, out, FRAME * 6, 0) : -1;
        if (len <= 0 || got <= 0) {
            fprintf(stderr, "opus_packets: codec error at sample %zu\n", at);
            return 1;
        }
        unsigned char hdr[2] = {(unsigned char)(len & 0xff), (unsigned char)(len >> 8)};
        fwrite(hdr, 1, 2, pk);
        fwrite(packet, 1, (size_t)len, pk);
        fwrite(out, sizeof(float), (size_t)got, pcm);
        n_packets++;
    }
    int bad = ferror(pk) || ferror(pcm);
    bad |= fclose(pk) != 0;
    bad |= fclose(pcm) != 0;
    opus_encoder_destroy(enc);
    opus_decoder_destroy(dec);
    wav16_free(&w);
    printf("%d packets\n", n_packets);
    return bad;
}
