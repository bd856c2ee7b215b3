/*
 * mico_rt.c -- kernels of the micoc C runtime (see mico_rt.h).
 *
 * Every optimized kernel has a plain reference loop (mico_conv2d_ref and
 * the element-wise loops) that reads codes one by one through mico_get;
 * the optimized conv/linear paths are chosen per bit pair for a CPU without
 * SIMD (rv32im): word-wide unpacking when a*w > 8, bit-serial AND + popcount
 * over bit-planes otherwise (fewer bits cost fewer instructions).
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

static void wr_put(writer *wr, int32_t v)
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

/* round_half_away(p / 2^s): magnitude, add half, shift, restore the sign. */
int64_t mico_round_shift(int64_t p, int32_t s)
{
    uint64_t u = p < 0 ? (uint64_t)0 - (uint64_t)p : (uint64_t)p;
    u = (u + (((uint64_t)1 << s) >> 1)) >> s;
    return p < 0 ? -(int64_t)u : (int64_t)u;
}

/* clamp(round_half_away(acc * m / 2^s), lo, hi), exact, one rounding step
 * (numerics.requantize). |acc| <= 2^31: the int64 product is exact. Larger
 * (int64 accumulators): the product is formed in 32-bit limbs. */
int32_t mico_requant(int64_t acc, int32_t m, int32_t s, int32_t lo, int32_t hi, int binary)
{
    uint64_t u, r, bias;
    int64_t v;
    if (binary) return (acc >= 0 || m == 0) ? 1 : -1;
    u = acc < 0 ? (uint64_t)0 - (uint64_t)acc : (uint64_t)acc;
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
        if (r > ((uint64_t)1 << 62)) r = (uint64_t)1 << 62;
    }
    v = acc < 0 ? -(int64_t)r : (int64_t)r;
    if (v < lo) return lo;
    if (v > hi) return hi;
    return (int32_t)v;
}

int32_t mico_avg_divide(int64_t total, int32_t count)
{
    uint64_t u = total < 0 ? (uint64_t)0 - (uint64_t)total : (uint64_t)total;
    u = (u + (uint64_t)(count / 2)) / (uint64_t)count;
    return total < 0 ? -(int32_t)u : (int32_t)u;
}

/* -------------------------------------------------------- conv: reference */

static int32_t wget(const mico_conv *p, int32_t co, int32_t tap, int32_t ci)
{
    if (p->fmt == MICO_WF_PLANES) {
        const uint32_t *w = p->w + ((co * p->kh * p->kw + tap) * p->wbits) * p->wpt + (ci >> 5);
        int32_t q, v = 0;
        if (p->wkind == MICO_BINARY) return ((w[0] >> (ci & 31)) & 1u) ? 1 : -1;
        for (q = 0; q < p->wbits; q++) {
            int32_t bit = (int32_t)((w[q * p->wpt] >> (ci & 31)) & 1u);
            v += (q == p->wbits - 1 && p->wkind == MICO_SIGNED) ? -(bit << q) : (bit << q);
        }
        return v;
    } else {
        uint8_t lb = p->wcbits == 1 ? 0 : p->wcbits == 2 ? 1 : p->wcbits == 4 ? 2 : 3;
        uint32_t k = (uint32_t)(tap * p->cin_g + ci); /* row of co: K = kh*kw*cin_g codes */
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

/* Software popcount: rv32im has no cpop. */
static uint32_t popc(uint32_t v)
{
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0Fu;
    return (v * 0x01010101u) >> 24;
}

#define MASK(B) ((1u << (B)) - 1u)
#define SX(f, sb) ((int32_t)((f) ^ (sb)) - (int32_t)(sb))

/* The patch of one output pixel: the input codes of channels [c0, c0 + cin_g)
 * of every tap, as int32, in the weights' (kh, kw, cin) order, then zeros up
 * to `cap` (the weight row's capacity); a padded tap is all zeros, so it adds
 * exactly 0 against any weight, binary {-1,+1} included. Built once per pixel
 * (and group), reused by every output channel: the unpacking and the tap
 * bookkeeping are amortized over cout. */
static void build_patch(const mico_tensor *x, const mico_conv *p, int32_t oy, int32_t ox, int32_t c0,
                        int32_t cap, int32_t *patch)
{
    int32_t i, j, k, n = p->cin_g;
    uint32_t per = 32u >> x->lb, mask = MASK(x->cbits);
    uint32_t sb = x->kind == MICO_SIGNED ? 1u << (x->cbits - 1) : 0u;
    for (i = 0; i < p->kh; i++) {
        int32_t iy = oy * p->sh - p->pt + i * p->dh;
        for (j = 0; j < p->kw; j++) {
            int32_t ix = ox * p->sw - p->pl + j * p->dw;
            int32_t *dst = patch + (i * p->kw + j) * n;
            if (iy < 0 || iy >= x->h || ix < 0 || ix >= x->w) {
                for (k = 0; k < n; k++) dst[k] = 0;
            } else if (c0 == 0) {
                /* word at a time: the pixel starts on a word */
                const uint32_t *src = x->data + (iy * x->w + ix) * x->wpp;
                int32_t e;
                if (x->kind == MICO_BINARY) {
                    for (k = 0; k < n;) {
                        uint32_t v = *src++;
                        for (e = 0; e < 32 && k < n; e++, k++, v >>= 1) dst[k] = 2 * (int32_t)(v & 1u) - 1;
                    }
                } else {
                    for (k = 0; k < n;) {
                        uint32_t v = *src++;
                        for (e = 0; e < (int32_t)per && k < n; e++, k++, v >>= x->cbits) dst[k] = SX(v & mask, sb);
                    }
                }
            } else {
                for (k = 0; k < n; k++) dst[k] = mico_get(x, c0 + k, iy * x->w + ix);
            }
        }
    }
    for (k = p->kh * p->kw * n; k < cap; k++) patch[k] = 0;
}

/* sum_k patch[k] * w[k] over nw weight words, per weight container. Weight
 * padding fields are 0 (or -1 for binary) but meet patch zeros. */
static int32_t dot_patch_w8(const int32_t *x, const uint32_t *w, int32_t nw)
{
    int32_t acc = 0, k;
    for (k = 0; k < nw; k++, x += 4) {
        uint32_t v = w[k];
        acc += x[0] * ((int32_t)(v << 24) >> 24);
        acc += x[1] * ((int32_t)(v << 16) >> 24);
        acc += x[2] * ((int32_t)(v << 8) >> 24);
        acc += x[3] * ((int32_t)v >> 24);
    }
    return acc;
}

static int32_t dot_patch_w4(const int32_t *x, const uint32_t *w, int32_t nw)
{
    int32_t acc = 0, k;
    for (k = 0; k < nw; k++, x += 8) {
        uint32_t v = w[k];
        acc += x[0] * ((int32_t)(v << 28) >> 28);
        acc += x[1] * ((int32_t)(v << 24) >> 28);
        acc += x[2] * ((int32_t)(v << 20) >> 28);
        acc += x[3] * ((int32_t)(v << 16) >> 28);
        acc += x[4] * ((int32_t)(v << 12) >> 28);
        acc += x[5] * ((int32_t)(v << 8) >> 28);
        acc += x[6] * ((int32_t)(v << 4) >> 28);
        acc += x[7] * ((int32_t)v >> 28);
    }
    return acc;
}

#define W2(e) acc += x[e] * ((int32_t)(v << (30 - 2 * (e))) >> 30)
static int32_t dot_patch_w2(const int32_t *x, const uint32_t *w, int32_t nw)
{
    int32_t acc = 0, k;
    for (k = 0; k < nw; k++, x += 16) {
        uint32_t v = w[k];
        W2(0); W2(1); W2(2); W2(3); W2(4); W2(5); W2(6); W2(7);
        W2(8); W2(9); W2(10); W2(11); W2(12); W2(13); W2(14); W2(15);
    }
    return acc;
}

/* Binary weights: sum (2b - 1) x = 2 sum_{b=1} x - sum x; conv_patch adds
 * the - sum x (one per patch, shared by every output channel). */
#define W1(e) on += x[e] & ((int32_t)(v << (31 - (e))) >> 31)
static int32_t dot_patch_w1(const int32_t *x, const uint32_t *w, int32_t nw)
{
    int32_t on = 0, k;
    for (k = 0; k < nw; k++, x += 32) {
        uint32_t v = w[k];
        W1(0); W1(1); W1(2); W1(3); W1(4); W1(5); W1(6); W1(7);
        W1(8); W1(9); W1(10); W1(11); W1(12); W1(13); W1(14); W1(15);
        W1(16); W1(17); W1(18); W1(19); W1(20); W1(21); W1(22); W1(23);
        W1(24); W1(25); W1(26); W1(27); W1(28); W1(29); W1(30); W1(31);
    }
    return 2 * on;
}

typedef int32_t (*patch_dot_fn)(const int32_t *, const uint32_t *, int32_t);

int32_t mico_conv_patch_words(const mico_conv *p)
{
    return p->wpt * (32 / p->wcbits);
}

/* Any groups, any bit pair (format PACKED), int32 accumulators. */
static void conv_patch(const mico_tensor *x, const mico_tensor *y, const mico_conv *p, int32_t *patch)
{
    int32_t oy, ox, co, g, cap = p->wpt * (32 / p->wcbits), og = p->cout / p->groups;
    patch_dot_fn dot = p->wcbits == 8 ? dot_patch_w8 : p->wcbits == 4 ? dot_patch_w4
                     : p->wcbits == 2 ? dot_patch_w2 : dot_patch_w1;
    for (oy = 0; oy < y->h; oy++)
        for (ox = 0; ox < y->w; ox++) {
            writer wr;
            wr_begin(&wr, y, oy * y->w + ox);
            for (g = 0; g < p->groups; g++) {
                int32_t base = 0, k;
                build_patch(x, p, oy, ox, g * p->cin_g, cap, patch);
                if (p->wcbits == 1)
                    for (k = 0; k < cap; k++) base -= patch[k];
                for (co = g * og; co < (g + 1) * og; co++) {
                    int32_t acc = (p->bias ? p->bias[co] : 0) + base + dot(patch, p->w + co * p->wpt, p->wpt);
                    wr_put(&wr, mico_requant(acc, p->mult[co], p->shift[co], p->lo, p->hi, p->out_binary));
                }
            }
            wr_end(&wr);
        }
}

/* ------------------------------------------------ conv: bit-serial kernel */

/* Planes of the layer input: per pixel, `bits` planes of ppw words, bit c of
 * plane q = bit q of channel c's code (two's complement; binary: the code bit). */
static void to_planes(const mico_tensor *x, uint32_t *planes, int32_t ppw)
{
    int32_t npix = x->h * x->w, pix, c, q;
    words_zero(planes, npix * x->bits * ppw);
    for (pix = 0; pix < npix; pix++) {
        uint32_t *pp = planes + pix * x->bits * ppw;
        const uint32_t *src = x->data + pix * x->wpp;
        uint32_t per = 32u >> x->lb, mask = MASK(x->cbits);
        for (c = 0; c < x->c; c++) {
            uint32_t f = (src[(uint32_t)c / per] >> (((uint32_t)c % per) << x->lb)) & mask;
            for (q = 0; q < x->bits; q++)
                pp[q * ppw + (c >> 5)] |= ((f >> q) & 1u) << (c & 31);
        }
    }
}

/* Weight of plane q among `bits` planes of kind `kind`. */
static int32_t plane_coef(int32_t q, int32_t bits, uint8_t kind)
{
    if (kind == MICO_BINARY) return 2; /* x = 2 b - 1 */
    if (kind == MICO_SIGNED && q == bits - 1) return -(1 << q);
    return 1 << q;
}

/* sum_c x_c w_c over one tap (n channels, nw words per plane):
 * x = sum_p a_p X_p + dx, w = sum_q b_q W_q + dw (dx, dw = -1 for binary, else 0):
 * dot = sum_pq a_p b_q pc(X_p & W_q) + dw sum_p a_p pc(X_p) + dx sum_q b_q pc(W_q) + n dx dw.
 * Padding bits are zero in every plane, so only the real channels count. */
static int32_t dot_planes(const uint32_t *xp, int32_t xbits, uint8_t xkind, const uint32_t *wp,
                          int32_t wbits, uint8_t wkind, int32_t nw, int32_t n)
{
    int32_t acc = 0, p, q, k;
    if (xkind == MICO_BINARY && wkind == MICO_BINARY) {
        /* XNOR: agreements - disagreements = n - 2 pc(X ^ W); padding bits
         * are 0 in both, so they never disagree */
        uint32_t s = 0;
        for (k = 0; k < nw; k++) s += popc(xp[k] ^ wp[k]);
        return n - 2 * (int32_t)s;
    }
    for (p = 0; p < xbits; p++) {
        int32_t ap = plane_coef(p, xbits, xkind);
        for (q = 0; q < wbits; q++) {
            uint32_t s = 0;
            for (k = 0; k < nw; k++) s += popc(xp[p * nw + k] & wp[q * nw + k]);
            acc += ap * plane_coef(q, wbits, wkind) * (int32_t)s;
        }
    }
    if (wkind == MICO_BINARY)
        for (p = 0; p < xbits; p++) {
            uint32_t s = 0;
            for (k = 0; k < nw; k++) s += popc(xp[p * nw + k]);
            acc -= plane_coef(p, xbits, xkind) * (int32_t)s;
        }
    if (xkind == MICO_BINARY) {
        for (q = 0; q < wbits; q++) {
            uint32_t s = 0;
            for (k = 0; k < nw; k++) s += popc(wp[q * nw + k]);
            acc -= plane_coef(q, wbits, wkind) * (int32_t)s;
        }
        if (wkind == MICO_BINARY) acc += n;
    }
    return acc;
}

static int use_planes(const mico_conv *p)
{
    return p->fmt == MICO_WF_PLANES && p->groups == 1;
}

int32_t mico_conv_scratch_words(const mico_tensor *x, const mico_conv *p)
{
    if (!use_planes(p)) return mico_conv_patch_words(p);
    if (x->cbits == 1) return 0; /* a 1-bit input already is its plane */
    return x->h * x->w * x->bits * ((x->c + 31) >> 5);
}

/* Bit-serial path (format PLANES, groups == 1): each valid tap is a
 * word-aligned run of bit-planes (HWC, pixel padded to a word), one
 * dot_planes per tap; padded taps are skipped. */
static void conv_planes(const mico_tensor *x, const mico_tensor *y, const mico_conv *p, uint32_t *scratch)
{
    int32_t oy, ox, co, i, j, ntap = p->kh * p->kw;
    const uint32_t *xs = x->data;
    int32_t ppw = (x->c + 31) >> 5, xstride = x->bits * ppw;
    if (x->cbits != 1) {
        to_planes(x, scratch, ppw);
        xs = scratch;
    }
    for (oy = 0; oy < y->h; oy++)
        for (ox = 0; ox < y->w; ox++) {
            writer wr;
            wr_begin(&wr, y, oy * y->w + ox);
            for (co = 0; co < p->cout; co++) {
                int32_t acc = p->bias ? p->bias[co] : 0;
                const uint32_t *wc = p->w + co * ntap * p->wbits * p->wpt;
                for (i = 0; i < p->kh; i++) {
                    int32_t iy = oy * p->sh - p->pt + i * p->dh;
                    if (iy < 0 || iy >= x->h) continue;
                    for (j = 0; j < p->kw; j++) {
                        int32_t ix = ox * p->sw - p->pl + j * p->dw, tap = i * p->kw + j;
                        if (ix < 0 || ix >= x->w) continue;
                        acc += dot_planes(xs + (iy * x->w + ix) * xstride, x->bits, x->kind,
                                          wc + tap * p->wbits * p->wpt, p->wbits, p->wkind, ppw, p->cin_g);
                    }
                }
                wr_put(&wr, mico_requant(acc, p->mult[co], p->shift[co], p->lo, p->hi, p->out_binary));
            }
            wr_end(&wr);
        }
}

void mico_conv2d_opt(const mico_tensor *x, const mico_tensor *y, const mico_conv *p, uint32_t *scratch)
{
    if (p->acc64) {
        mico_conv2d_ref(x, y, p); /* int64 accumulators: the plain loop */
    } else if (use_planes(p)) {
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
                v = (int32_t)(r < lo ? lo : r > hi ? hi : r);
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
            wr_put(&wr, v < lo ? lo : v > hi ? hi : v);
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
