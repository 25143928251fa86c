/* GPT-2's bytes_to_unicode: byte-level BPE vocabularies spell every byte as
 * one printable code point. Printable Latin-1 bytes (! .. ~, ¡ .. ¬, ® .. ÿ)
 * stand for themselves; the other 68 bytes, in increasing order, become
 * U+0100, U+0101, ... (so ' ' is U+0120 "Ġ" and '\n' is U+010A "Ċ"). */
#include "tokenize/tok_internal.h"

static bool printable(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

static uint32_t byte_cp(int b) {
    if (printable(b)) return (uint32_t)b;
    uint32_t n = 0;
    for (int i = 0; i < b; i++)
        if (!printable(i)) n++;
    return 256 + n;
}

void gpt2_byte_table(unsigned char enc[256][2], uint8_t len[256]) {
    for (int b = 0; b < 256; b++) {
        unsigned char tmp[4];
        int k = utf8_encode(byte_cp(b), tmp);
        enc[b][0] = tmp[0];
        enc[b][1] = tmp[1];
        len[b] = (uint8_t)k; /* always 1 or 2: code points stay below U+0800 */
    }
}

void gpt2_byte_inverse(int16_t inv[GPT2_N_CP]) {
    for (int i = 0; i < GPT2_N_CP; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) inv[byte_cp(b)] = (int16_t)b;
}
