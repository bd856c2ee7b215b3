/*
 * mico_rt.h -- the micoc C runtime: integer kernels for quantized networks.
 *
 * C99, freestanding: only <stdint.h> and <stddef.h>; no malloc, no libc
 * (mico_memcpy/mico_memset below), no floating point in integer kernels.
 * The numeric contract is docs/semantics.md; the memory layout is the
 * section "Memory layout of the C runtime" there.
 *
 * Activations: a tensor is viewed as [C, H, W] (batch 1; a [1, K] tensor is
 * C = K, H = W = 1). Pixels are stored in row-major (h, w) order; each pixel
 * holds its C channels packed LSB first in `cbits`-bit containers, padded
 * with zero bits to a whole 32-bit word ("HWC, pixel padded to a word").
 *
 * Build with -DMICO_REFERENCE to run every layer through the plain reference
 * loops (the oracle the optimized kernels are tested against).
 */
#ifndef MICO_RT_H
#define MICO_RT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element kinds: unsigned [0, 2^b-1]; signed two's complement; binary {-1,+1} (bit 1 = +1). */
enum { MICO_UNSIGNED = 0, MICO_SIGNED = 1, MICO_BINARY = 2 };

/* Conv/linear weight formats in the blob. */
enum {
    MICO_WF_PACKED = 0, /* [cout][wpt words]: the row's kh*kw*cin_g codes, (kh, kw, cin) order, wcbits each */
    MICO_WF_PLANES = 1, /* [cout][wbits planes][wpt words]: bit q of each of the row's codes, (kh, kw, cin) order */
    MICO_WF_PAIRS = 2   /* [cout/2][wpt words]: 16-bit lanes of channels 2m (low), 2m+1 (high), 16/wcbits
                           codes u = w + 2^(wcbits-1) each (binary: u = bit), (kh, kw, cin) order */
};

typedef struct {
    uint32_t *data; /* word aligned, h * w * wpp words */
    int32_t c, h, w;
    int32_t wpp;    /* words per pixel = ceil(c * cbits / 32) */
    uint8_t cbits;  /* container bits: 1, 2, 4 or 8 */
    uint8_t lb;     /* log2(cbits) */
    uint8_t bits;   /* value bits 1..8 */
    uint8_t kind;   /* MICO_UNSIGNED / MICO_SIGNED / MICO_BINARY */
} mico_tensor;

typedef struct {
    int32_t cout, cin_g, kh, kw, sh, sw, dh, dw, pt, pl, groups;
    int32_t lo, hi;            /* output clamp (type range narrowed by the fused activation) */
    int32_t wpt;               /* words per row (PACKED), per plane (PLANES) or per channel pair (PAIRS) */
    uint8_t wbits, wcbits, wkind, fmt;
    uint8_t acc64;             /* accumulate in int64 (the quantize pass said so) */
    uint8_t out_binary;        /* qi1 result: sign of the accumulator */
    const uint32_t *w;
    const int32_t *bias;       /* NULL when the layer has none */
    const int32_t *mult;       /* per output channel */
    const int32_t *shift;
} mico_conv;

typedef struct {
    int32_t kh, kw, sh, sw, pt, pl, pb, pr;
    uint8_t include_pad;
} mico_pool;

/* ---- memory ---- */
void *mico_memcpy(void *dst, const void *src, size_t n);
void *mico_memset(void *dst, int v, size_t n);

/* ---- element access (reference paths, repacks) ---- */
int32_t mico_get(const mico_tensor *t, int32_t c, int32_t pix);
void mico_set(const mico_tensor *t, int32_t c, int32_t pix, int32_t v);
void mico_clear(const mico_tensor *t);

/* ---- numerics (docs/semantics.md §6-8, §10) ---- */
int32_t mico_requant(int64_t acc, int32_t m, int32_t s, int32_t lo, int32_t hi, int binary);
int64_t mico_round_shift(int64_t p, int32_t s);
int32_t mico_avg_divide(int64_t total, int32_t count);

/* ---- layers ---- */
/* scratch: at least mico_conv_scratch_words() words (bit-planes of the input, or one output
 * pixel's unpacked patch). */
int32_t mico_conv_scratch_words(const mico_tensor *x, const mico_conv *p);
int32_t mico_conv_patch_words(const mico_conv *p);
void mico_conv2d(const mico_tensor *x, const mico_tensor *y, const mico_conv *p, uint32_t *scratch);
void mico_conv2d_ref(const mico_tensor *x, const mico_tensor *y, const mico_conv *p);
void mico_conv2d_opt(const mico_tensor *x, const mico_tensor *y, const mico_conv *p, uint32_t *scratch);

/* y = clamp(round((a * ma +- b * mb) / 2^s)); sign = +1 add, -1 sub. */
void mico_add(const mico_tensor *a, int32_t ma, const mico_tensor *b, int32_t mb, int32_t sign,
              int32_t s, const mico_tensor *y, int32_t lo, int32_t hi);
/* y[c] = clamp(x[c]) element-wise: relu (lo = 0), clip. */
void mico_clamp(const mico_tensor *x, const mico_tensor *y, int32_t lo, int32_t hi);
/* y = requantize(x) with one multiplier (requantize op, concat operands). */
void mico_requantize(const mico_tensor *x, const mico_tensor *y, int32_t m, int32_t s, int32_t lo, int32_t hi);
/* channels [c0, c0 + x->c) of y from x (concat along channels), requantized when m != 0. */
void mico_concat_part(const mico_tensor *x, const mico_tensor *y, int32_t c0, int32_t m, int32_t s,
                      int32_t lo, int32_t hi);
void mico_lut(const mico_tensor *x, const mico_tensor *y, const int32_t *table, int32_t lo);
void mico_maxpool(const mico_tensor *x, const mico_tensor *y, const mico_pool *p, int32_t dh, int32_t dw);
void mico_avgpool(const mico_tensor *x, const mico_tensor *y, const mico_pool *p);
void mico_global_avgpool(const mico_tensor *x, const mico_tensor *y);
/* y element k = x element table[k], both in (c + C * pix) numbering (reshape/transpose/slice). */
void mico_gather(const mico_tensor *x, const mico_tensor *y, const uint32_t *table);
void mico_copy(const mico_tensor *x, const mico_tensor *y);

/* ---- graph boundary (the only float code) ---- */
/* x in logical [C, H, W] order; codes = clamp(round_half_away(x * inv_s)). */
void mico_quantize(const float *x, const mico_tensor *y, float inv_s, int32_t lo, int32_t hi);
void mico_quantize_codes(const int32_t *q, const mico_tensor *y);
void mico_dequantize(const mico_tensor *x, float s, float *out);
void mico_dequantize_codes(const mico_tensor *x, int32_t *out);

#ifdef __cplusplus
}
#endif
#endif /* MICO_RT_H */
