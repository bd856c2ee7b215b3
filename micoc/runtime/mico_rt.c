/*
 * mico_rt.c -- kernels of the micoc C runtime (see mico_rt.h).
 *
 * Every optimized kernel has a plain reference loop (mico_conv2d_ref and
 * the element-wise loops) that reads codes one by one through mico_get;
 * the optimized conv/linear paths are chosen per bit pair (by the weight
 * format the compiler lays out) for a CPU without SIMD (rv32im): bit-serial
 * AND + popcount over bit-planes when both operands have at most 2 bits, else
 * an unpacked patch against 8-bit weights read as bytes or against two output
 * channels per multiply in 16-bit lanes (fewer bits never cost more
 * instructions: bench/c_rv32_kernels.py).
 */
#include "mico_rt.h"

/* ------------------------------------------------------------------ memory */

void *mico_memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    while (n--) *d++ = *s++;
    return dst;
}

void *mico_memset(void *dst, int v, size_t n)
{
    unsigned char *d = (unsigned char *)dst;
    while (n--) *d++ = (unsigned char)v;
    return dst;
}

static void words_zero(uint32_t *p, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; i++) p[i] = 0;
}

/* ---------------------------------------------------------- element access */

static int32_t decode(uint32_t f, uint8_t cbits, uint8_t kind)
{
    if (kind == MICO_BINARY) return f ? 1 : -1;
    if (kind == MICO_SIGNED) {
        uint32_t sb = 1u << (cbits - 1); /* sign-extend from the container width */
        return (int32_t)(f ^ sb) - (int32_t)sb;
    }
    return (int32_t)f;
}

static uint32_t encode(int32_t v, uint8_t cbits, uint8_t kind)
{
    if (kind == MICO_BINARY) return v > 0 ? 1u : 0u;
    return (uint32_t)v & ((cbits == 32) ? 0xFFFFFFFFu : ((1u << cbits) - 1u));
}

int32_t mico_get(const mico_tensor *t, int32_t c, int32_t pix)
{
    uint32_t word = t->data[pix * t->wpp + (c >> (5 - t->lb))];
    uint32_t sh = ((uint32_t)c & ((32u >> t->lb) - 1u)) << t->lb;
    uint32_t f = (word >> sh) & ((1u << t->cbits) - 1u);
    return decode(f, t->cbits, t->kind);
}

void mico_set(const mico_tensor *t, int32_t c, int32_t pix, int32_t v)
{
    uint32_t *word = &t->data[pix * t->wpp + (c >> (5 - t->lb))];
    uint32_t sh = ((uint32_t)c & ((32u >> t->lb) - 1u)) << t->lb;
    uint32_t mask = ((1u << t->cbits) - 1u) << sh;
    *word = (*word & ~mask) | (encode(v, t->cbits, t->kind) << sh);
}

void mico_clear(const mico_tensor *t)
{
    words_zero(t->data, t->h * t->w * t->wpp);
}

/* A streaming writer of one pixel's channels: whole words, no read-modify-write. */
typedef struct {
    uint32_t *p;
    uint32_t cur, sh;
    uint8_t cbits, kind;
} writer;

static void wr_begin(writer *wr, const mico_tensor *t, int32_t pix)
{
    wr->p = &t->data[pix * t->wpp];
    wr->cur = 0;
    wr->sh = 0;
    wr->cbits = t->cbits;
    wr->kind = t->kind;
}

static inline void wr_put(writer *wr, int32_t v)
{
    wr->cur |= encode(v, wr->cbits, wr->kind) << wr->sh;
    wr->sh += wr->cbits;
    if (wr->sh == 32) {
        *wr->p++ = wr->cur;
        wr->cur = 0;
        wr->sh = 0;
    }
}

static void wr_end(writer *wr)
{
    if (wr->sh) *wr->p = wr->cur;
}

/* ---------------------------------------------------------------- numerics */

/* Branch-free helpers: the sign as a mask (0 or all ones), |v| and its
 * restoration by xor/subtract, and clamps written as selects (cmov on x86;
 * the host's time then does not depend on the data: no sign or clamp branch
 * to mispredict). */
#define SGN32(v) ((uint32_t)((int32_t)(v) >> 31))
#define SGN64(v) ((uint64_t)((int64_t)(v) >> 63))
static inline int32_t clamp32(int32_t v, int32_t lo, int32_t hi)
{
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* round_half_away(p / 2^s): magnitude, add half, shift, restore the sign. */
int64_t mico_round_shift(int64_t p, int32_t s)
{
    uint64_t sg = SGN64(p), u = ((uint64_t)p ^ sg) - sg;
    u = (u + (((uint64_t)1 << s) >> 1)) >> s;
    return (int64_t)((u ^ sg) - sg);
}

/* clamp(round_half_away(acc * m / 2^s), lo, hi), exact, one rounding step
 * (numerics.requantize). |acc| <= 2^31: the int64 product is exact. Larger
 * (int64 accumulators): the product is formed in 32-bit limbs. */
int32_t mico_requant(int64_t acc, int32_t m, int32_t s, int32_t lo, int32_t hi, int binary)
{
    uint64_t sg = SGN64(acc), u = ((uint64_t)acc ^ sg) - sg, r, bias;
    int64_t v;
    if (binary) return 1 - 2 * (int32_t)(sg & (uint64_t)(m != 0)); /* acc >= 0 or m == 0: +1 */
    bias = ((uint64_t)1 << s) >> 1;
    if (u <= 0x80000000u) {
        r = (u * (uint64_t)(uint32_t)m + bias) >> s;
    } else {
        uint64_t u1 = u >> 32, u0 = u & 0xFFFFFFFFu, mu = (uint64_t)(uint32_t)m;
        uint64_t a = u1 * mu, b = u0 * mu + bias, c = a + (b >> 32), bl = b & 0xFFFFFFFFu;
        if (s >= 32) {
            r = c >> (s - 32);
        } else {
            uint64_t cs = c < ((uint64_t)1 << 31) ? c : ((uint64_t)1 << 31);
            r = (cs << (32 - s)) | (bl >> s);
        }
        r = r < ((uint64_t)1 << 62) ? r : (uint64_t)1 << 62;
    }
    v = (int64_t)((r ^ sg) - sg);
    v = v < lo ? lo : v;
    return (int32_t)(v > hi ? hi : v);
}

/* mico_requant for |acc| <= 2^31 (the kernels' hot path): the same single
 * rounding of acc * m / 2^s (0 <= m < 2^31, 0 <= s <= 62), branch-free in the
 * data (no branch on the sign, clamps as selects: cmov on x86, so host time
 * does not depend on the data). 64-bit hosts: the magnitude's product in one
 * 64-bit shift. 32-bit targets (MICO_REQUANT_HALVES forces it): the signed
 * product t in two words, round half away as (t + 2^(s-1) - [t < 0]) >> s
 * (arithmetic), branching only on s (the channel's constant shift) and on
 * an int32 overflow (saturated: it clamps the same). */
#if UINTPTR_MAX > 0xFFFFFFFFu && !defined(MICO_REQUANT_HALVES)
static inline int32_t requant32(int32_t acc, int32_t m, int32_t s, int32_t lo, int32_t hi, int binary)
{
    uint32_t sg = SGN32(acc), u = ((uint32_t)acc ^ sg) - sg, r, lim;
    uint64_t t;
    if (binary) return 1 - 2 * (int32_t)(sg & (uint32_t)(m != 0)); /* acc >= 0 or m == 0: +1 */
    t = (uint64_t)u * (uint32_t)m;
    t = (t + (((uint64_t)1 << s) >> 1)) >> s; /* t < 2^62: no overflow */
    lim = 0x7FFFFFFFu - sg;                   /* |v| <= 2^31 - 1, or 2^31 for a negative acc */
    r = (uint32_t)(t < lim ? t : lim);
    return clamp32((int32_t)((r ^ sg) - sg), lo, hi);
}
#else
static inline int32_t requant32(int32_t acc, int32_t m, int32_t s, int32_t lo, int32_t hi, int binary)
{
    int64_t t = (int64_t)acc * m;
    int32_t th = (int32_t)(t >> 32), r;
    uint32_t tl = (uint32_t)t, sg = SGN32(acc);
    if (binary) return 1 - 2 * (int32_t)(sg & (uint32_t)(m != 0)); /* acc >= 0 or m == 0: +1 */
    if (s >= 33) {
        th -= (int32_t)(sg & (uint32_t)(tl == 0)); /* the -1 borrows from th only when tl == 0 */
        r = (th + (1 << (s - 33))) >> (s - 32);  /* |th| <= 2^30: no overflow */
    } else if (s == 32) {
        uint32_t b = 0x80000000u + sg;
        r = th + (int32_t)(tl + b < b);
    } else if (s == 0) {
        r = th == ((int32_t)tl >> 31) ? (int32_t)tl : (int32_t)(0x7FFFFFFFu ^ sg);
    } else {
        uint32_t b = (1u << (s - 1)) + sg, l = tl + b;
        int32_t h = th + (int32_t)(l < b), hs = h >> (s - 1);
        r = hs == (hs >> 31) ? (int32_t)((l >> s) | ((uint32_t)h << (32 - s))) : (int32_t)(0x7FFFFFFFu ^ sg);
    }
    return clamp32(r, lo, hi);
}
#endif

int32_t mico_avg_divide(int64_t total, int32_t count)
{
    uint64_t sg = SGN64(total), u = ((uint64_t)total ^ sg) - sg;
    u = (u + (uint64_t)(count / 2)) / (uint64_t)count;
    return (int32_t)(((uint32_t)u ^ (uint32_t)sg) - (uint32_t)sg);
}

/* -------------------------------------------------------- conv: reference */

#define MASK(B) ((1u << (B)) - 1u)
#define SX(f, sb) ((int32_t)((f) ^ (sb)) - (int32_t)(sb))

static int32_t wget(const mico_conv *p, int32_t co, int32_t tap, int32_t ci)
{
    uint32_t k = (uint32_t)(tap * p->cin_g + ci); /* row of co: K = kh*kw*cin_g codes */
    if (p->fmt == MICO_WF_PLANES) {
        const uint32_t *w = p->w + co * p->wbits * p->wpt + (int32_t)(k >> 5);
        int32_t q, v = 0;
        if (p->wkind == MICO_BINARY) return ((w[0] >> (k & 31)) & 1u) ? 1 : -1;
        for (q = 0; q < p->wbits; q++) {
            int32_t bit = (int32_t)((w[q * p->wpt] >> (k & 31)) & 1u);
            v += (q == p->wbits - 1 && p->wkind == MICO_SIGNED) ? -(bit << q) : (bit << q);
        }
        return v;
    } else if (p->fmt == MICO_WF_PAIRS) {
        uint32_t n = 16u / p->wcbits;
        uint32_t word = p->w[(co >> 1) * p->wpt + (int32_t)(k / n)];
        int32_t u = (int32_t)((word >> (16u * ((uint32_t)co & 1u) + (k % n) * p->wcbits)) & MASK(p->wcbits));
        return p->wkind == MICO_BINARY ? 2 * u - 1 : u - (1 << (p->wcbits - 1));
    } else {
        uint8_t lb = p->wcbits == 1 ? 0 : p->wcbits == 2 ? 1 : p->wcbits == 4 ? 2 : 3;
        uint32_t word = p->w[co * p->wpt + (int32_t)(k >> (5 - lb))];
        uint32_t sh = (k & ((32u >> lb) - 1u)) << lb;
        return decode((word >> sh) & ((1u << p->wcbits) - 1u), p->wcbits, p->wkind);
    }
}

static int64_t conv_acc_ref(const mico_tensor *x, const mico_conv *p, int32_t co, int32_t oy, int32_t ox)
{
    int32_t g = co / (p->cout / p->groups), i, j, ci;
    int64_t acc = p->bias ? p->bias[co] : 0;
    for (i = 0; i < p->kh; i++) {
        int32_t iy = oy * p->sh - p->pt + i * p->dh;
        if (iy < 0 || iy >= x->h) continue; /* padded taps contribute exactly zero */
        for (j = 0; j < p->kw; j++) {
            int32_t ix = ox * p->sw - p->pl + j * p->dw, pix = iy * x->w + ix;
            if (ix < 0 || ix >= x->w) continue;
            for (ci = 0; ci < p->cin_g; ci++)
                acc += (int64_t)mico_get(x, g * p->cin_g + ci, pix) * wget(p, co, i * p->kw + j, ci);
        }
    }
    return acc;
}

void mico_conv2d_ref(const mico_tensor *x, const mico_tensor *y, const mico_conv *p)
{
    int32_t oy, ox, co;
    for (oy = 0; oy < y->h; oy++)
        for (ox = 0; ox < y->w; ox++) {
            writer wr;
            wr_begin(&wr, y, oy * y->w + ox);
            for (co = 0; co < p->cout; co++) {
                int64_t acc = conv_acc_ref(x, p, co, oy, ox);
                wr_put(&wr, mico_requant(acc, p->mult[co], p->shift[co], p->lo, p->hi, p->out_binary));
            }
            wr_end(&wr);
        }
}

/* ----------------------------------------------------- conv: patch kernels */

/* The inner dot loops stay out of line: inlined into the pixel loops they
 * lose registers to them (measured on rv32im). */
#if defined(__GNUC__) && !defined(__clang__)
#define MICO_NOINLINE __attribute__((noinline))
#define MICO_HOT __attribute__((noinline, optimize("sched-pressure")))
#else
#define MICO_NOINLINE
#define MICO_HOT
#endif

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mico_rt: the weight blob holds little-endian words (8-bit weights are read as bytes)"
#endif

/* n packed codes (rounded up to 4) -> int32, per container and kind: whole
 * words unrolled, then four codes per step. */
#define UNP4(k, C, S) d[k] = S(v, 0, C); d[(k) + 1] = S(v, 1, C); d[(k) + 2] = S(v, 2, C); \
                      d[(k) + 3] = S(v, 3, C); v >>= 4 * (C);
#define UNPACK_FN(NAME, C, S)                                                   \
    static void NAME(const uint32_t *src, int32_t *d, int32_t n)               \
    {                                                                           \
        const int32_t *e = d + n;                                               \
        while (e - d >= 32 / (C)) {                                             \
            uint32_t v = *src++;                                                \
            int32_t h;                                                          \
            for (h = 0; h < 32 / (C); h += (C) < 4 ? 16 : 8) { /* 8 or 16 per step */ \
                UNP4(h, C, S) UNP4(h + 4, C, S)                                 \
                if ((C) < 4) { UNP4(h + 8, C, S) UNP4(h + 12, C, S) }           \
            }                                                                   \
            d += 32 / (C);                                                      \
        }                                                                       \
        if (d < e) {                                                            \
            uint32_t v = *src;                                                  \
            int32_t q;                                                          \
            for (q = 0; q < 8 / (C) && d < e; q++, d += 4, v >>= 4 * (C)) {     \
                d[0] = S(v, 0, C);                                              \
                d[1] = S(v, 1, C);                                              \
                d[2] = S(v, 2, C);                                              \
                d[3] = S(v, 3, C);                                              \
            }                                                                   \
        }                                                                       \
    }
#define UX_S(v, e, C) ((int32_t)((v) << (32 - (C) * ((e) + 1))) >> (32 - (C)))
#define UX_U(v, e, C) ((int32_t)(((v) >> ((C) * (e))) & MASK(C)))
UNPACK_FN(unpack_s4, 4, UX_S)
UNPACK_FN(unpack_u4, 4, UX_U)
UNPACK_FN(unpack_s2, 2, UX_S)
UNPACK_FN(unpack_u2, 2, UX_U)
UNPACK_FN(unpack_u1, 1, UX_U)
/* Binary: a nibble's four values {-1, +1} from a table (4 words per nibble,
 * cheaper than mapping each bit). */
static const int32_t bin_nibble[16][4] = {
    {-1, -1, -1, -1}, {1, -1, -1, -1}, {-1, 1, -1, -1}, {1, 1, -1, -1},
    {-1, -1, 1, -1},  {1, -1, 1, -1},  {-1, 1, 1, -1},  {1, 1, 1, -1},
    {-1, -1, -1, 1},  {1, -1, -1, 1},  {-1, 1, -1, 1},  {1, 1, -1, 1},
    {-1, -1, 1, 1},   {1, -1, 1, 1},   {-1, 1, 1, 1},   {1, 1, 1, 1}};
#define BIN4(k)                                        \
    {                                                  \
        const int32_t *t_ = bin_nibble[(v >> (k)) & 15u]; \
        d[k] = t_[0];                                  \
        d[(k) + 1] = t_[1];                            \
        d[(k) + 2] = t_[2];                            \
        d[(k) + 3] = t_[3];                            \
    }
static void unpack_b1(const uint32_t *src, int32_t *d, int32_t n)
{
    const int32_t *e = d + n;
    for (; e - d >= 16; d += 16) { /* half words */
        uint32_t v = *src;
        if (e - d >= 32) {
            src++;
            BIN4(0) BIN4(4) BIN4(8) BIN4(12)
            d += 16;
            v >>= 16;
            BIN4(0) BIN4(4) BIN4(8) BIN4(12)
        } else {
            BIN4(0) BIN4(4) BIN4(8) BIN4(12)
            d += 16;
            v >>= 16;
            for (; d < e; d += 4, v >>= 4) BIN4(0)
            return;
        }
    }
    if (d < e) {
        uint32_t v = *src;
        for (; d < e; d += 4, v >>= 4) BIN4(0)
    }
}

static void unpack_s8(const uint32_t *src, int32_t *d, int32_t n)
{
    const int8_t *b = (const int8_t *)src;
    int32_t k;
    for (k = 0; k < n; k++) d[k] = b[k];
}

static void unpack_u8(const uint32_t *src, int32_t *d, int32_t n)
{
    const uint8_t *b = (const uint8_t *)src;
    int32_t k;
    for (k = 0; k < n; k++) d[k] = b[k];
}

/* build_*: the patch of one output pixel: the input codes of channels [c0, c0 + cin_g)
 * of every tap, as int32, in the weights' (kh, kw, cin) order, then zeros up
 * to `cap` (the weight row's capacity); a padded tap is all zeros, so it adds
 * exactly 0 against any weight, binary {-1,+1} included. Built once per pixel
 * (and group), reused by every output channel: the unpacking and the tap
 * bookkeeping are amortized over cout. With `sum`, it returns the sum of the
 * patch (the pair kernels need it), from whole words when the tap is the
 * whole pixel (its padding fields are code 0), a field-parallel add per word. */
static int32_t wsum_u4(uint32_t v)
{
    v = (v & 0x0F0F0F0Fu) + ((v >> 4) & 0x0F0F0F0Fu);
    return (int32_t)((v * 0x01010101u) >> 24);
}
static int32_t wsum_u2(uint32_t v)
{
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    return wsum_u4(v);
}
static int32_t wsum_u8(uint32_t v)
{
    v = (v & 0x00FF00FFu) + ((v >> 8) & 0x00FF00FFu);
    return (int32_t)((v + (v >> 16)) & 0xFFFFu);
}
/* sum of the codes in nw words (signed: biased to unsigned, the bias removed per field) */
#define WSUM_FN(NAME, EXPR)                                  \
    static int32_t NAME(const uint32_t *src, int32_t n)      \
    {                                                        \
        int32_t s = 0, i, nw = (n * (int32_t)WSUM_C + 31) >> 5; \
        for (i = 0; i < nw; i++) {                           \
            uint32_t v = src[i];                             \
            s += EXPR;                                       \
        }                                                    \
        return s;                                            \
    }
#define WSUM_C 4
WSUM_FN(sum_u4, wsum_u4(v))
WSUM_FN(sum_s4, wsum_u4(v ^ 0x88888888u) - 64)
#undef WSUM_C
#define WSUM_C 2
WSUM_FN(sum_u2, wsum_u2(v))
WSUM_FN(sum_s2, wsum_u2(v ^ 0xAAAAAAAAu) - 32)
#undef WSUM_C
#define WSUM_C 8
WSUM_FN(sum_u8, wsum_u8(v))
WSUM_FN(sum_s8, wsum_u8(v ^ 0x80808080u) - 512)
#undef WSUM_C
#define WSUM_C 1
WSUM_FN(sum_u1, wsum_u2(v - ((v >> 1) & 0x55555555u)))
static int32_t sum_b1(const uint32_t *src, int32_t n)
{
    return 2 * sum_u1(src, n) - n; /* padding bits are 0: they never count */
}
#undef WSUM_C

/* One build_patch per activation container and kind (the unpacking inlined). */
#define BUILD_FN(NAME, UNPACK, SUM)                                                                 \
    static int32_t NAME(const mico_tensor *x, const mico_conv *p, int32_t oy, int32_t ox, int32_t c0, \
                        int32_t cap, int32_t *patch, int sum)                                       \
    {                                                                                               \
        int32_t i, j, k, n = p->cin_g, tot = 0;                                                     \
        for (i = 0; i < p->kh; i++) {                                                               \
            int32_t iy = oy * p->sh - p->pt + i * p->dh;                                            \
            for (j = 0; j < p->kw; j++) {                                                           \
                int32_t ix = ox * p->sw - p->pl + j * p->dw;                                        \
                int32_t *dst = patch + (i * p->kw + j) * n;                                         \
                if (iy < 0 || iy >= x->h || ix < 0 || ix >= x->w) {                                 \
                    for (k = 0; k < n; k++) dst[k] = 0;                                             \
                } else if (c0 == 0) {                                                               \
                    /* word at a time (the pixel starts on a word); up to 3 codes past the     \
                     * tap: rewritten by the next taps, or past K (zeroed below, or slack) */  \
                    const uint32_t *src = x->data + (iy * x->w + ix) * x->wpp;                      \
                    UNPACK(src, dst, n);                                                            \
                    if (sum) {                                                                      \
                        if (n == x->c)                                                              \
                            tot += SUM(src, n);                                                     \
                        else                                                                        \
                            for (k = 0; k < n; k++) tot += dst[k];                                  \
                    }                                                                               \
                } else {                                                                            \
                    for (k = 0; k < n; k++) tot += dst[k] = mico_get(x, c0 + k, iy * x->w + ix);   \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
        for (k = p->kh * p->kw * n; k < cap; k++) patch[k] = 0;                                     \
        return tot;                                                                                 \
    }
BUILD_FN(build_b1, unpack_b1, sum_b1)
BUILD_FN(build_u1, unpack_u1, sum_u1)
BUILD_FN(build_s2, unpack_s2, sum_s2)
BUILD_FN(build_u2, unpack_u2, sum_u2)
BUILD_FN(build_s4, unpack_s4, sum_s4)
BUILD_FN(build_u4, unpack_u4, sum_u4)
BUILD_FN(build_s8, unpack_s8, sum_s8)
BUILD_FN(build_u8, unpack_u8, sum_u8)

typedef int32_t (*build_fn)(const mico_tensor *, const mico_conv *, int32_t, int32_t, int32_t, int32_t, int32_t *,
                            int);

static build_fn patch_builder(const mico_tensor *x)
{
    int s = x->kind == MICO_SIGNED;
    if (x->kind == MICO_BINARY) return build_b1;
    if (x->cbits == 1) return build_u1;
    if (x->cbits == 2) return s ? build_s2 : build_u2;
    if (x->cbits == 4) return s ? build_s4 : build_u4;
    return s ? build_s8 : build_u8;
}

/* 8-bit weights (PACKED): a row's codes are its bytes, one signed byte load
 * each; four output channels per pass share every activation load. n (the
 * patch capacity) is a multiple of 4. Wrapping uint32 sums: the final value
 * fits int32 (the quantize pass widens the accumulator otherwise). */
#define W8(e) v = (uint32_t)x[e]; a0 += v * (uint32_t)r0[e]; a1 += v * (uint32_t)r1[e]; \
              a2 += v * (uint32_t)r2[e]; a3 += v * (uint32_t)r3[e]
MICO_NOINLINE static void dot_w8x4(const int32_t *x, const int8_t *r0, int32_t rs, int32_t n, uint32_t *out)
{
    const int8_t *r1 = r0 + rs, *r2 = r1 + rs, *r3 = r2 + rs;
    uint32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, v;
    int32_t k;
    for (k = 0; k < n; k += 4, x += 4, r0 += 4, r1 += 4, r2 += 4, r3 += 4) {
        W8(0); W8(1); W8(2); W8(3);
    }
    out[0] = a0; out[1] = a1; out[2] = a2; out[3] = a3;
}

static uint32_t dot_w8(const int32_t *x, const int8_t *r, int32_t n)
{
    uint32_t a = 0;
    int32_t k;
    for (k = 0; k < n; k += 4, x += 4, r += 4)
        a += (uint32_t)x[0] * (uint32_t)r[0] + (uint32_t)x[1] * (uint32_t)r[1]
           + (uint32_t)x[2] * (uint32_t)r[2] + (uint32_t)x[3] * (uint32_t)r[3];
    return a;
}

/* 1-, 2-, 4-bit weights (PAIRS): a word holds 16/c codes u = w + 2^(c-1) of
 * two output channels in 16-bit lanes, so one multiply x * (lane-masked word)
 * adds x u to both channels. Two pairs (4 outputs) per pass. A lane holds
 * sum x u exactly while |sum| < 2^15: the lanes are flushed every kbw words
 * (the caller derives kbw from the operand ranges). out[i] = sum x u. */
#define LANES(t, s0, s1)                                  \
    {                                                     \
        int32_t lo_ = (int32_t)((t) << 16) >> 16;         \
        s0 += (uint32_t)lo_;                              \
        s1 += (uint32_t)((int32_t)((t) - (uint32_t)lo_) >> 16); \
    }
/* Four codes per step, the words shifted in place (a short dependency chain
 * keeps the scheduler from hoisting every load: no spills on rv32). */
#define PS4(C)                                                                          \
    xv = (uint32_t)x[0]; t0 += xv * (v0 & m); t1 += xv * (v1 & m); v0 >>= (C); v1 >>= (C); \
    xv = (uint32_t)x[1]; t0 += xv * (v0 & m); t1 += xv * (v1 & m); v0 >>= (C); v1 >>= (C); \
    xv = (uint32_t)x[2]; t0 += xv * (v0 & m); t1 += xv * (v1 & m); v0 >>= (C); v1 >>= (C); \
    xv = (uint32_t)x[3]; t0 += xv * (v0 & m); t1 += xv * (v1 & m); v0 >>= (C); v1 >>= (C); \
    x += 4;
#define PS2(C)                                                                          \
    xv = (uint32_t)x[0]; t0 += xv * (v0 & m); t1 += xv * (v1 & m); v0 >>= (C); v1 >>= (C); \
    xv = (uint32_t)x[1]; t0 += xv * (v0 & m); t1 += xv * (v1 & m);                       \
    x += 2;
#define PAIRS_FN(NAME, C)                                                                          \
    MICO_HOT static void NAME(const int32_t *x, const uint32_t *w0, const uint32_t *w1, int32_t nw,       \
                     int32_t kbw, uint32_t *out)                                                  \
    {                                                                                             \
        const uint32_t m = MASK(C) * 0x00010001u;                                                 \
        uint32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                                  \
        int32_t j = 0;                                                                            \
        while (j < nw) {                                                                          \
            int32_t end = nw - j > kbw ? j + kbw : nw;                                            \
            uint32_t t0 = 0, t1 = 0;                                                              \
            for (; j < end; j++) {                                                                \
                uint32_t v0 = w0[j], v1 = w1[j], xv;                                              \
                const int32_t *xe = x + 16 / (C);                                                 \
                do {                                                                              \
                    if ((C) == 8) { PS2(C) } else { PS4(C) }                                      \
                    if ((C) < 4) { PS4(C) }                                                       \
                    if ((C) < 2) { PS4(C) PS4(C) }                                                \
                } while (x != xe);                                                                \
            }                                                                                     \
            LANES(t0, s0, s1);                                                                    \
            LANES(t1, s2, s3);                                                                    \
        }                                                                                         \
        out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3;                                       \
    }
PAIRS_FN(dot_pairs_c8, 8)
PAIRS_FN(dot_pairs_c4, 4)
PAIRS_FN(dot_pairs_c2, 2)
PAIRS_FN(dot_pairs_c1, 1)

typedef void (*pairs_fn)(const int32_t *, const uint32_t *, const uint32_t *, int32_t, int32_t, uint32_t *);

/* Words of a pair row whose lane sums stay below 2^15 in magnitude: 16/c codes
 * per word, |x u| <= xabs (2^c - 1). 0: the pair kernel can't run this layer. */
static int32_t pairs_block(const mico_tensor *x, const mico_conv *p)
{
    int32_t xabs = x->kind == MICO_BINARY ? 1 : x->kind == MICO_SIGNED ? 1 << (x->bits - 1) : (1 << x->bits) - 1;
    return 32767 / ((16 / p->wcbits) * xabs * (int32_t)MASK(p->wcbits));
}

int32_t mico_conv_patch_words(const mico_conv *p)
{
    return p->wpt * (p->fmt == MICO_WF_PAIRS ? 16 / p->wcbits : 32 / p->wcbits);
}

/* Any groups (format PACKED with 8-bit containers, or PAIRS), int32 accumulators. */
static void conv_patch(const mico_tensor *x, const mico_tensor *y, const mico_conv *p, int32_t *patch)
{
    int32_t oy, ox, co, g, og = p->cout / p->groups, pairs = p->fmt == MICO_WF_PAIRS;
    int32_t cap = mico_conv_patch_words(p), kbw = 1, ubias = 0;
    pairs_fn dot = p->wcbits == 8 ? dot_pairs_c8 : p->wcbits == 4 ? dot_pairs_c4
                 : p->wcbits == 2 ? dot_pairs_c2 : dot_pairs_c1;
    uint32_t wmul = p->wkind == MICO_BINARY ? 2u : 1u, r[4];
    build_fn build = patch_builder(x);
    if (pairs) {
        kbw = pairs_block(x, p);
        ubias = p->wkind == MICO_BINARY ? 1 : 1 << (p->wcbits - 1);     /* w = wmul u - ubias */
    }
    for (oy = 0; oy < y->h; oy++)
        for (ox = 0; ox < y->w; ox++) {
            writer wr;
            wr_begin(&wr, y, oy * y->w + ox);
            for (g = 0; g < p->groups; g++) {
                int32_t c1 = (g + 1) * og, nr, i;
                uint32_t base = 0u - (uint32_t)ubias * (uint32_t)build(x, p, oy, ox, g * p->cin_g, cap, patch, pairs);
                for (co = g * og; co < c1; co += nr) {
                    if (!pairs) {
                        const int8_t *row = (const int8_t *)(p->w + co * p->wpt);
                        if (c1 - co >= 4) {
                            dot_w8x4(patch, row, p->wpt * 4, cap, r);
                            nr = 4;
                        } else {
                            r[0] = dot_w8(patch, row, cap);
                            nr = 1;
                        }
                    } else {
                        const uint32_t *w0 = p->w + (co >> 1) * p->wpt;
                        if (!(co & 1) && c1 - co >= 4) {
                            dot(patch, w0, w0 + p->wpt, p->wpt, kbw, r);
                            nr = 4;
                        } else {
                            dot(patch, w0, w0, p->wpt, kbw, r); /* one pair: lanes of co & ~1, co | 1 */
                            if (co & 1) r[0] = r[1];
                            nr = (!(co & 1) && c1 - co >= 2) ? 2 : 1;
                        }
                        for (i = 0; i < nr; i++) r[i] = wmul * r[i] + base;
                    }
                    for (i = 0; i < nr; i++) {
                        int32_t acc = (int32_t)((p->bias ? (uint32_t)p->bias[co + i] : 0u) + r[i]);
                        wr_put(&wr, requant32(acc, p->mult[co + i], p->shift[co + i], p->lo, p->hi, p->out_binary));
                    }
                }
            }
            wr_end(&wr);
        }
}

/* ------------------------------------------------ conv: bit-serial kernel */

/* Popcount into byte lanes (each <= 8): 31 words fit a byte accumulator,
 * reduced once per block by hsum (rv32im has no cpop). */
#define POP8(v) ((v) = (v) - (((v) >> 1) & 0x55555555u), \
                 (v) = ((v) & 0x33333333u) + (((v) >> 2) & 0x33333333u), ((v) + ((v) >> 4)) & 0x0F0F0F0Fu)
static uint32_t hsum(uint32_t t)
{
    t = (t & 0x00FF00FFu) + ((t >> 8) & 0x00FF00FFu);
    return (t + (t >> 16)) & 0xFFFFu;
}

static uint32_t popc(uint32_t v)
{
    return hsum(POP8(v));
}

/* Planes of the layer input: per pixel, `bits` planes of ppw words, bit c of
 * plane q = bit q of channel c's code (two's complement; binary: the code bit). */
static uint32_t even_bits(uint32_t v) /* bits 0, 2, .., 30 of v -> bits 0..15 */
{
    v &= 0x55555555u;
    v = (v | (v >> 1)) & 0x33333333u;
    v = (v | (v >> 2)) & 0x0F0F0F0Fu;
    v = (v | (v >> 4)) & 0x00FF00FFu;
    return (v | (v >> 8)) & 0x0000FFFFu;
}

static void to_planes(const mico_tensor *x, uint32_t *planes, int32_t ppw)
{
    int32_t npix = x->h * x->w, pix, c, q, i;
    words_zero(planes, npix * x->bits * ppw);
    for (pix = 0; pix < npix; pix++) {
        uint32_t *pp = planes + pix * x->bits * ppw;
        const uint32_t *src = x->data + pix * x->wpp;
        uint32_t per = 32u >> x->lb, mask = MASK(x->cbits);
        if (x->cbits == 2 && x->bits == 2) { /* 16 codes per word: two bit compressions */
            for (i = 0; i < x->wpp; i++) {
                uint32_t v = src[i], sh = 16u * ((uint32_t)i & 1u);
                pp[i >> 1] |= even_bits(v) << sh;
                pp[ppw + (i >> 1)] |= even_bits(v >> 1) << sh;
            }
            continue;
        }
        for (c = 0; c < x->c; c++) {
            uint32_t f = (src[(uint32_t)c / per] >> (((uint32_t)c % per) << x->lb)) & mask;
            for (q = 0; q < x->bits; q++)
                pp[q * ppw + (c >> 5)] |= ((f >> q) & 1u) << (c & 31);
        }
    }
}

/* One plane of an output pixel's patch: the taps' cin bits in (kh, kw, cin)
 * order (plane words at `src` + pixel * xstride, zero above cin; src NULL:
 * the valid mask), padded taps 0, written as a stream of whole words. */
static void plane_patch(const uint32_t *src, int32_t xstride, const mico_tensor *x, const mico_conv *p, int32_t oy,
                        int32_t ox, uint32_t *out)
{
    int32_t i, j, cin = p->cin_g, fill = 0;
    uint32_t cur = 0;
    for (i = 0; i < p->kh; i++) {
        int32_t iy = oy * p->sh - p->pt + i * p->dh;
        for (j = 0; j < p->kw; j++) {
            int32_t ix = ox * p->sw - p->pl + j * p->dw, left, k;
            int valid = iy >= 0 && iy < x->h && ix >= 0 && ix < x->w;
            const uint32_t *s = valid && src ? src + (iy * x->w + ix) * xstride : 0;
            for (left = cin, k = 0; left > 0; left -= 32, k++) {
                int32_t nb = left < 32 ? left : 32;
                uint32_t b = !valid ? 0u : s ? s[k] : nb == 32 ? 0xFFFFFFFFu : MASK(nb);
                cur |= b << fill;
                fill += nb;
                if (fill >= 32) {
                    fill -= 32;
                    *out++ = cur;
                    cur = fill ? b >> (nb - fill) : 0u; /* the bits that did not fit */
                }
            }
        }
    }
    if (fill) *out = cur;
}

/* Weight of plane q among `bits` planes of kind `kind`. */
static int32_t plane_coef(int32_t q, int32_t bits, uint8_t kind)
{
    if (kind == MICO_BINARY) return 2; /* x = 2 b - 1 */
    if (kind == MICO_SIGNED && q == bits - 1) return -(1 << q);
    return 1 << q;
}

/* Popcount in two halves: S2 leaves nibble counts (<= 4), so two words add
 * before S3 folds nibbles into bytes (<= 16 per word pair); 30 words fit the
 * byte accumulators, reduced once per block by hsum (rv32im has no cpop). */
#define S2(v) ((v) = (v) - (((v) >> 1) & m1), ((v) & m2) + (((v) >> 2) & m2))
#define S3(t) (((t) + ((t) >> 4)) & m4)
#define BS_MASKS const uint32_t m1 = 0x55555555u, m2 = 0x33333333u, m4 = 0x0F0F0F0Fu

/* out[r] = sum_pq coef[p * wb + q] popcount(X_p & W_q) over nw words for
 * `rows` weight rows; x planes at stride xs, w planes at stride nw, rows at
 * stride wb * nw. One function per plane count (1 or 2 each), unrolled; the
 * word pairs [j, j + 1] share the S3 fold, an odd last word goes alone. */
/* rows of at most 7 words: the byte lanes sum below 256, one multiply folds them */
#define HSUM(t) (nw <= 7 ? ((t) * 0x01010101u) >> 24 : hsum(t))
#define BS_FN(NAME, AB, WB, PAIR, ONE)                                                          \
    static void NAME(const uint32_t *xp, int32_t xs, const uint32_t *wp, int32_t nw,            \
                     const int32_t *coef, int32_t rows, uint32_t *out)                          \
    {                                                                                           \
        BS_MASKS;                                                                               \
        const uint32_t *y1 = xp + xs;                                                           \
        uint32_t k0 = (uint32_t)coef[0], k1 = (uint32_t)coef[1], k2 = (uint32_t)coef[2];        \
        uint32_t k3 = (uint32_t)coef[3];                                                        \
        int32_t row;                                                                            \
        (void)y1;                                                                               \
        for (row = 0; row < rows; row++, wp += (WB) * nw) {                                     \
            const uint32_t *w1 = wp + nw;                                                       \
            int32_t j = 0;                                                                      \
            uint32_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;                                            \
            (void)w1;                                                                           \
            while (j < nw) {                                                                    \
                int32_t end = nw - j > 30 ? j + 30 : nw;                                        \
                uint32_t t0 = 0, t1 = 0, t2 = 0, t3 = 0;                                        \
                for (; j + 1 < end; j += 2) {                                                   \
                    PAIR                                                                        \
                }                                                                               \
                if (j < end) {                                                                  \
                    ONE                                                                         \
                    j++;                                                                        \
                }                                                                               \
                c0 += HSUM(t0);                                                 \
                if ((AB) * (WB) > 1) c1 += HSUM(t1);                            \
                if ((AB) * (WB) > 2) {                                                          \
                    c2 += HSUM(t2);                                             \
                    c3 += HSUM(t3);                                             \
                }                                                                               \
            }                                                                                   \
            out[row] = c0 * k0 + c1 * k1 + c2 * k2 + c3 * k3;                                   \
        }                                                                                       \
    }
/* t += S3(S2(a & b) + S2(c & d)) */
#define BS_PAIR(t, a, b, c, d)          \
    {                                   \
        uint32_t u_ = (a) & (b), v_ = (c) & (d); \
        u_ = S2(u_) + S2(v_);           \
        t += S3(u_);                    \
    }
#define BS_ONE(t, a, b)                 \
    {                                   \
        uint32_t u_ = (a) & (b);        \
        u_ = S2(u_);                    \
        t += S3(u_);                    \
    }
BS_FN(bs_11, 1, 1, BS_PAIR(t0, xp[j], wp[j], xp[j + 1], wp[j + 1]), BS_ONE(t0, xp[j], wp[j]))
BS_FN(bs_12, 1, 2,
      BS_PAIR(t0, xp[j], wp[j], xp[j + 1], wp[j + 1]) BS_PAIR(t1, xp[j], w1[j], xp[j + 1], w1[j + 1]),
      BS_ONE(t0, xp[j], wp[j]) BS_ONE(t1, xp[j], w1[j]))
BS_FN(bs_21, 2, 1,
      BS_PAIR(t0, xp[j], wp[j], xp[j + 1], wp[j + 1]) BS_PAIR(t1, y1[j], wp[j], y1[j + 1], wp[j + 1]),
      BS_ONE(t0, xp[j], wp[j]) BS_ONE(t1, y1[j], wp[j]))
BS_FN(bs_22, 2, 2,
      BS_PAIR(t0, xp[j], wp[j], xp[j + 1], wp[j + 1]) BS_PAIR(t1, xp[j], w1[j], xp[j + 1], w1[j + 1])
      BS_PAIR(t2, y1[j], wp[j], y1[j + 1], wp[j + 1]) BS_PAIR(t3, y1[j], w1[j], y1[j + 1], w1[j + 1]),
      BS_ONE(t0, xp[j], wp[j]) BS_ONE(t1, xp[j], w1[j]) BS_ONE(t2, y1[j], wp[j]) BS_ONE(t3, y1[j], w1[j]))

/* Any plane counts (not emitted by the compiler today; kept exact). */
static void bs_any(const uint32_t *xp, int32_t xs, int32_t ab, const uint32_t *wp, int32_t wb, int32_t nw,
                   const int32_t *coef, int32_t rows, uint32_t *out)
{
    int32_t row, pq, k;
    for (row = 0; row < rows; row++, wp += wb * nw) {
        uint32_t acc = 0;
        for (pq = 0; pq < ab * wb; pq++) {
            const uint32_t *a = xp + (pq / wb) * xs, *b = wp + (pq % wb) * nw;
            for (k = 0; k < nw; k++) acc += (uint32_t)coef[pq] * popc(a[k] & b[k]);
        }
        out[row] = acc;
    }
}

/* out[r] = popcount((X ^ W_r) & V) over nw words for `rows` weight rows at
 * stride nw, four at a time (V == NULL: all valid). */
static void bs_xnor(const uint32_t *xp, const uint32_t *vp, const uint32_t *wp, int32_t nw, int32_t rows, uint32_t *out)
{
    BS_MASKS;
    int32_t row, no;
    for (row = 0; row < rows; row += no, wp += no * nw, out += no) {
        int32_t j = 0;
        uint32_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;
        no = rows - row >= 4 ? 4 : 1;
        while (j < nw) {
            int32_t end = nw - j > 30 ? j + 30 : nw;
            uint32_t t0 = 0, t1 = 0, t2 = 0, t3 = 0;
            if (no == 4) {
                const uint32_t *w1 = wp + nw, *w2 = w1 + nw, *w3 = w2 + nw;
                for (; j < end; j++) {
                    uint32_t x = xp[j], a = x ^ wp[j], b = x ^ w1[j], c = x ^ w2[j], d = x ^ w3[j];
                    if (vp) {
                        uint32_t v = vp[j];
                        a &= v;
                        b &= v;
                        c &= v;
                        d &= v;
                    }
                    a = S2(a);
                    b = S2(b);
                    c = S2(c);
                    d = S2(d);
                    if (j + 1 < end) {
                        uint32_t e, f, g, h;
                        j++;
                        x = xp[j];
                        e = x ^ wp[j];
                        f = x ^ w1[j];
                        g = x ^ w2[j];
                        h = x ^ w3[j];
                        if (vp) {
                            uint32_t v = vp[j];
                            e &= v;
                            f &= v;
                            g &= v;
                            h &= v;
                        }
                        a += S2(e);
                        b += S2(f);
                        c += S2(g);
                        d += S2(h);
                    }
                    t0 += S3(a);
                    t1 += S3(b);
                    t2 += S3(c);
                    t3 += S3(d);
                }
            } else {
                for (; j < end; j++) {
                    uint32_t a = xp[j] ^ wp[j];
                    if (vp) a &= vp[j];
                    a = S2(a);
                    if (j + 1 < end) {
                        uint32_t b;
                        j++;
                        b = xp[j] ^ wp[j];
                        if (vp) b &= vp[j];
                        a += S2(b);
                    }
                    t0 += S3(a);
                }
            }
            c0 += hsum(t0);
            c1 += hsum(t1);
            c2 += hsum(t2);
            c3 += hsum(t3);
        }
        out[0] = c0;
        if (no == 4) {
            out[1] = c1;
            out[2] = c2;
            out[3] = c3;
        }
    }
}

int32_t mico_conv_scratch_words(const mico_tensor *x, const mico_conv *p)
{
    if (p->fmt != MICO_WF_PLANES) return mico_conv_patch_words(p) + 4; /* + unpack slack */
    return (x->cbits == 1 ? 0 : x->h * x->w * x->bits * ((x->c + 31) >> 5)) + (x->bits + 2) * (p->wpt + 1) + p->cout;
}

/* Bit-serial path (format PLANES, groups == 1, operands of at most 8 bits).
 * The input is repacked into bit-planes once per layer; per output pixel the
 * planes of its patch are built once (the taps' channel bits concatenated in
 * (kh, kw, cin) order, padded taps 0, and the valid positions V), so every
 * output channel reads K bits per plane in whole words whatever cin is.
 * x = sum_p a_p X_p (a binary x: planes P = X and N = V & ~X, a = +1, -1),
 * w = sum_q b_q W_q + dw (dw = -1 for binary weights, b = 2, else 0):
 *   dot = sum_pq a_p b_q pc(X_p & W_q) + dw sum_p a_p pc(X_p);
 * both binary: pc(V) - 2 pc((X ^ W) & V). Padding bits are 0 in every plane. */
static void conv_planes(const mico_tensor *x, const mico_tensor *y, const mico_conv *p, uint32_t *scratch)
{
    int32_t oy, ox, co, i, j, q, k, ab = x->bits, wb = p->wbits, nw = p->wpt, ps = nw + 1, xpl;
    int32_t ppw = (x->c + 31) >> 5, xstride = ab * ppw, cin = p->cin_g;
    int xbin = x->kind == MICO_BINARY, wbin = p->wkind == MICO_BINARY;
    const uint32_t *xs = x->data;
    uint32_t *pp, *vp, r[16];
    int32_t coef[64], coefi[4] = {0, 0, 0, 0}, *ws = 0;
    if (x->cbits != 1) {
        to_planes(x, scratch, ppw);
        xs = scratch;
        scratch += x->h * x->w * xstride;
    }
    pp = scratch;
    xpl = xbin ? 2 : ab; /* planes of the patch: X_p, or P, N */
    vp = pp + xpl * ps;
    for (k = 0; k < 64; k++) coef[k] = 0;
    for (k = 0; k < xpl * wb; k++)
        coef[k] = (xbin ? (k / wb ? -1 : 1) : plane_coef(k / wb, ab, x->kind)) * plane_coef(k % wb, wb, p->wkind);
    if (xbin && !wbin && wb <= 2 && y->h * y->w > 1) {
        /* binary x on a pixel without padded taps: 2 sum_q b_q pc(X & W_q) - ws,
         * ws = sum_q b_q pc(W_q) of the row (half the popcounts of P, N) */
        ws = (int32_t *)(vp + ps);
        for (q = 0; q < wb; q++) coefi[q] = 2 * plane_coef(q, wb, p->wkind);
        for (co = 0; co < p->cout; co++) {
            const uint32_t *wc = p->w + co * wb * nw;
            ws[co] = 0;
            for (q = 0; q < wb; q++)
                for (k = 0; k < nw; k++) ws[co] += plane_coef(q, wb, p->wkind) * (int32_t)popc(wc[q * nw + k]);
        }
    }
    for (oy = 0; oy < y->h; oy++)
        for (ox = 0; ox < y->w; ox++) {
            writer wr;
            int32_t nvalid = 0, off = p->kh * p->kw * cin, sxp = 0;
            for (i = 0; i < p->kh; i++) {
                int32_t iy = oy * p->sh - p->pt + i * p->dh, nx = 0;
                if (iy < 0 || iy >= x->h) continue;
                for (j = 0; j < p->kw; j++) {
                    int32_t ix = ox * p->sw - p->pl + j * p->dw;
                    nx += ix >= 0 && ix < x->w;
                }
                nvalid += nx * cin;
            }
            for (q = 0; q < ab; q++) plane_patch(xs + q * ppw, xstride, x, p, oy, ox, pp + q * ps);
            if (xbin && nvalid != off) {
                plane_patch(0, 0, x, p, oy, ox, vp);
                for (k = 0; k < nw; k++) pp[ps + k] = vp[k] & ~pp[k]; /* N = V & ~X */
            }
            if (wbin && !xbin)
                for (q = 0; q < ab; q++)
                    for (k = 0; k < nw; k++) sxp += plane_coef(q, ab, x->kind) * (int32_t)popc(pp[q * ps + k]);
            wr_begin(&wr, y, oy * y->w + ox);
            for (co = 0; co < p->cout; co += k) {
                const uint32_t *wc = p->w + co * wb * nw;
                k = p->cout - co >= 16 ? 16 : p->cout - co;
                if (xbin && wbin) {
                    bs_xnor(pp, nvalid == off ? 0 : vp, wc, nw, k, r);
                    for (i = 0; i < k; i++) r[i] = (uint32_t)nvalid - 2u * r[i];
                } else if (ws && nvalid == off) {
                    (wb == 1 ? bs_11 : bs_12)(pp, ps, wc, nw, coefi, k, r);
                    for (i = 0; i < k; i++) r[i] -= (uint32_t)ws[co + i];
                } else {
                    if (xpl > 2 || wb > 2)
                        bs_any(pp, ps, xpl, wc, wb, nw, coef, k, r);
                    else
                        (xpl == 1 ? (wb == 1 ? bs_11 : bs_12) : (wb == 1 ? bs_21 : bs_22))(pp, ps, wc, nw, coef, k, r);
                    if (wbin)
                        for (i = 0; i < k; i++) r[i] -= (uint32_t)sxp;
                }
                for (i = 0; i < k; i++) {
                    uint32_t acc = (p->bias ? (uint32_t)p->bias[co + i] : 0u) + r[i];
                    wr_put(&wr, requant32((int32_t)acc, p->mult[co + i], p->shift[co + i], p->lo, p->hi, p->out_binary));
                }
            }
            wr_end(&wr);
        }
}

void mico_conv2d_opt(const mico_tensor *x, const mico_tensor *y, const mico_conv *p, uint32_t *scratch)
{
    if (p->acc64 || (p->fmt == MICO_WF_PACKED && p->wcbits != 8) || (p->fmt == MICO_WF_PAIRS && pairs_block(x, p) < 1)
        || (p->fmt == MICO_WF_PLANES && (p->groups != 1 || x->bits * p->wbits > 64))) {
        mico_conv2d_ref(x, y, p); /* int64 accumulators (or a layout no fast kernel reads): the plain loop */
    } else if (p->fmt == MICO_WF_PLANES) {
        conv_planes(x, y, p, scratch);
    } else {
        conv_patch(x, y, p, (int32_t *)scratch); /* int32_t and uint32_t may alias */
    }
}

void mico_conv2d(const mico_tensor *x, const mico_tensor *y, const mico_conv *p, uint32_t *scratch)
{
#ifdef MICO_REFERENCE
    (void)scratch;
    mico_conv2d_ref(x, y, p);
#else
    mico_conv2d_opt(x, y, p, scratch);
#endif
}

/* ------------------------------------------------------------ element-wise */

void mico_add(const mico_tensor *a, int32_t ma, const mico_tensor *b, int32_t mb, int32_t sign,
              int32_t s, const mico_tensor *y, int32_t lo, int32_t hi)
{
    int32_t pix, c, npix = y->h * y->w;
    for (pix = 0; pix < npix; pix++) {
        writer wr;
        wr_begin(&wr, y, pix);
        for (c = 0; c < y->c; c++) {
            int64_t t = (int64_t)mico_get(a, c, pix) * ma + (int64_t)sign * mico_get(b, c, pix) * mb;
            int32_t v;
            if (y->kind == MICO_BINARY) {
                v = t >= 0 ? 1 : -1; /* the sign of the exact sum */
            } else {
                int64_t r = mico_round_shift(t, s);
                r = r < lo ? lo : r;
                v = (int32_t)(r > hi ? hi : r);
            }
            wr_put(&wr, v);
        }
        wr_end(&wr);
    }
}

void mico_clamp(const mico_tensor *x, const mico_tensor *y, int32_t lo, int32_t hi)
{
    int32_t pix, c, npix = y->h * y->w;
    for (pix = 0; pix < npix; pix++) {
        writer wr;
        wr_begin(&wr, y, pix);
        for (c = 0; c < y->c; c++) {
            int32_t v = mico_get(x, c, pix);
            wr_put(&wr, clamp32(v, lo, hi));
        }
        wr_end(&wr);
    }
}

void mico_requantize(const mico_tensor *x, const mico_tensor *y, int32_t m, int32_t s, int32_t lo, int32_t hi)
{
    int32_t pix, c, npix = y->h * y->w;
    for (pix = 0; pix < npix; pix++) {
        writer wr;
        wr_begin(&wr, y, pix);
        for (c = 0; c < y->c; c++)
            wr_put(&wr, mico_requant(mico_get(x, c, pix), m, s, lo, hi, y->kind == MICO_BINARY));
        wr_end(&wr);
    }
}

void mico_concat_part(const mico_tensor *x, const mico_tensor *y, int32_t c0, int32_t m, int32_t s,
                      int32_t lo, int32_t hi)
{
    int32_t pix, c, npix = y->h * y->w;
    for (pix = 0; pix < npix; pix++)
        for (c = 0; c < x->c; c++) {
            int32_t v = mico_get(x, c, pix);
            if (m) v = mico_requant(v, m, s, lo, hi, y->kind == MICO_BINARY);
            mico_set(y, c0 + c, pix, v);
        }
}

void mico_lut(const mico_tensor *x, const mico_tensor *y, const int32_t *table, int32_t lo)
{
    int32_t pix, c, npix = y->h * y->w;
    for (pix = 0; pix < npix; pix++) {
        writer wr;
        wr_begin(&wr, y, pix);
        for (c = 0; c < y->c; c++) wr_put(&wr, table[mico_get(x, c, pix) - lo]);
        wr_end(&wr);
    }
}

/* ----------------------------------------------------------------- pooling */

void mico_maxpool(const mico_tensor *x, const mico_tensor *y, const mico_pool *p, int32_t dh, int32_t dw)
{
    int32_t oy, ox, c, i, j;
    for (oy = 0; oy < y->h; oy++)
        for (ox = 0; ox < y->w; ox++) {
            writer wr;
            wr_begin(&wr, y, oy * y->w + ox);
            for (c = 0; c < y->c; c++) {
                int32_t best = INT32_MIN; /* padding never wins the max */
                for (i = 0; i < p->kh; i++) {
                    int32_t iy = oy * p->sh - p->pt + i * dh;
                    if (iy < 0 || iy >= x->h) continue;
                    for (j = 0; j < p->kw; j++) {
                        int32_t ix = ox * p->sw - p->pl + j * dw, v;
                        if (ix < 0 || ix >= x->w) continue;
                        v = mico_get(x, c, iy * x->w + ix);
                        if (v > best) best = v;
                    }
                }
                wr_put(&wr, best);
            }
            wr_end(&wr);
        }
}

void mico_avgpool(const mico_tensor *x, const mico_tensor *y, const mico_pool *p)
{
    int32_t oy, ox, c, i, j;
    for (oy = 0; oy < y->h; oy++)
        for (ox = 0; ox < y->w; ox++) {
            writer wr;
            int32_t count = 0;
            /* the divisor: valid cells, or with include_pad the cells inside the
             * explicitly padded grid (never the ceil-mode overhang) */
            for (i = 0; i < p->kh; i++)
                for (j = 0; j < p->kw; j++) {
                    int32_t iy = oy * p->sh - p->pt + i, ix = ox * p->sw - p->pl + j;
                    if (p->include_pad ? (iy >= -p->pt && iy < x->h + p->pb && ix >= -p->pl && ix < x->w + p->pr)
                                       : (iy >= 0 && iy < x->h && ix >= 0 && ix < x->w))
                        count++;
                }
            wr_begin(&wr, y, oy * y->w + ox);
            for (c = 0; c < y->c; c++) {
                int64_t total = 0;
                for (i = 0; i < p->kh; i++) {
                    int32_t iy = oy * p->sh - p->pt + i;
                    if (iy < 0 || iy >= x->h) continue;
                    for (j = 0; j < p->kw; j++) {
                        int32_t ix = ox * p->sw - p->pl + j;
                        if (ix < 0 || ix >= x->w) continue;
                        total += mico_get(x, c, iy * x->w + ix);
                    }
                }
                wr_put(&wr, mico_avg_divide(total, count));
            }
            wr_end(&wr);
        }
}

void mico_global_avgpool(const mico_tensor *x, const mico_tensor *y)
{
    int32_t c, pix, npix = x->h * x->w;
    writer wr;
    wr_begin(&wr, y, 0);
    for (c = 0; c < y->c; c++) {
        int64_t total = 0;
        for (pix = 0; pix < npix; pix++) total += mico_get(x, c, pix);
        wr_put(&wr, mico_avg_divide(total, npix));
    }
    wr_end(&wr);
}

/* ------------------------------------------------------------------ repack */

void mico_gather(const mico_tensor *x, const mico_tensor *y, const uint32_t *table)
{
    int32_t pix, c, npix = y->h * y->w;
    for (pix = 0; pix < npix; pix++) {
        writer wr;
        wr_begin(&wr, y, pix);
        for (c = 0; c < y->c; c++) {
            uint32_t k = table[pix * y->c + c];
            wr_put(&wr, mico_get(x, (int32_t)(k % (uint32_t)x->c), (int32_t)(k / (uint32_t)x->c)));
        }
        wr_end(&wr);
    }
}

void mico_copy(const mico_tensor *x, const mico_tensor *y)
{
    if (x->data != y->data) mico_memcpy(y->data, x->data, (size_t)(x->h * x->w * x->wpp) * 4u);
}

/* --------------------------------------------------- float at the boundary */

void mico_quantize(const float *x, const mico_tensor *y, float inv_s, int32_t lo, int32_t hi)
{
    int32_t c, pix, npix = y->h * y->w;
    for (pix = 0; pix < npix; pix++) {
        writer wr;
        wr_begin(&wr, y, pix);
        for (c = 0; c < y->c; c++) {
            float v = x[c * npix + pix];
            int32_t q;
            if (y->kind == MICO_BINARY) {
                q = v >= 0.0f ? 1 : -1;
            } else {
                float t, frac;
                v = v * inv_s; /* one float32 multiply (no FMA: -ffp-contract=off) */
                if (v != v) v = 0.0f; /* NaN -> zero point */
                /* rounding is monotone, so clamping just outside the range first
                 * gives the same code and keeps the int conversion defined */
                if (v < (float)lo - 1.0f) v = (float)lo - 1.0f;
                if (v > (float)hi + 1.0f) v = (float)hi + 1.0f;
                t = (float)(int32_t)v; /* trunc, exact here */
                frac = v - t;          /* exact */
                if (frac >= 0.5f) t += 1.0f;
                else if (frac <= -0.5f) t -= 1.0f;
                q = (int32_t)t;
                q = q < lo ? lo : q > hi ? hi : q;
            }
            wr_put(&wr, q);
        }
        wr_end(&wr);
    }
}

void mico_quantize_codes(const int32_t *q, const mico_tensor *y)
{
    int32_t c, pix, npix = y->h * y->w;
    for (pix = 0; pix < npix; pix++) {
        writer wr;
        wr_begin(&wr, y, pix);
        for (c = 0; c < y->c; c++) wr_put(&wr, q[c * npix + pix]);
        wr_end(&wr);
    }
}

void mico_dequantize(const mico_tensor *x, float s, float *out)
{
    int32_t c, pix, npix = x->h * x->w;
    for (c = 0; c < x->c; c++)
        for (pix = 0; pix < npix; pix++) out[c * npix + pix] = (float)mico_get(x, c, pix) * s;
}

void mico_dequantize_codes(const mico_tensor *x, int32_t *out)
{
    int32_t c, pix, npix = x->h * x->w;
    for (c = 0; c < x->c; c++)
        for (pix = 0; pix < npix; pix++) out[c * npix + pix] = mico_get(x, c, pix);
}
