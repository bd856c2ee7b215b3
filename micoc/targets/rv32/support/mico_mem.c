/* micoc rv32: memcpy/memset/memmove/memcmp for freestanding builds. gcc may
 * emit calls to them (struct copies, loop idioms) even with -ffreestanding.
 * Weak, so a runtime that brings its own wins without a clash. The loops are
 * compiled without loop-idiom recognition, or gcc would turn memset's body
 * into a call to memset. */
#include <stddef.h>
#include <stdint.h>

#define MICO_MEM_ATTR __attribute__((weak, optimize("no-tree-loop-distribute-patterns")))

/* Word copies through a may_alias type: the bytes may belong to any object. */
typedef uint32_t __attribute__((may_alias)) mico_word;

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

MICO_MEM_ATTR void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    if ((((uintptr_t)d | (uintptr_t)s) & 3u) == 0u) {
        while (n >= 4u) {
            *(mico_word *)(void *)d = *(const mico_word *)(const void *)s;
            d += 4;
            s += 4;
            n -= 4u;
        }
    }
    while (n-- > 0u) {
        *d++ = *s++;
    }
    return dst;
}

MICO_MEM_ATTR void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    if (d < s) {
        while (n-- > 0u) {
            *d++ = *s++;
        }
    } else if (d > s) {
        while (n-- > 0u) {
            d[n] = s[n];
        }
    }
    return dst;
}

MICO_MEM_ATTR void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    while (n-- > 0u) {
        *d++ = (uint8_t)c;
    }
    return dst;
}

MICO_MEM_ATTR int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = (const uint8_t *)a;
    const uint8_t *y = (const uint8_t *)b;
    for (size_t i = 0; i < n; i++) {
        if (x[i] != y[i]) {
            return x[i] < y[i] ? -1 : 1;
        }
    }
    return 0;
}
