/* AVX2 read kernel of lt_membw_xor: 128 bytes per iteration in four
 * independent accumulators, so the loads, not the XOR chain, set the pace. */
#if defined(__x86_64__) || defined(__i386__) /* the whole file: x86 only */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

uint64_t lt_membw_xor_words_avx2(const unsigned char *p, size_t n_words);

uint64_t lt_membw_xor_words_avx2(const unsigned char *p, size_t n_words) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n_words; i += 16) {
        const unsigned char *q = p + i * 8;
        a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const __m256i *)q));
        a1 = _mm256_xor_si256(a1, _mm256_loadu_si256((const __m256i *)(q + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_loadu_si256((const __m256i *)(q + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_loadu_si256((const __m256i *)(q + 96)));
    }
    __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    __m128i h = _mm_xor_si128(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    uint64_t x = (uint64_t)_mm_cvtsi128_si64(h) ^ (uint64_t)_mm_extract_epi64(h, 1);
    for (; i < n_words; i++) {
        uint64_t w;
        __builtin_memcpy(&w, p + i * 8, 8);
        x ^= w;
    }
    return x;
}
#endif
