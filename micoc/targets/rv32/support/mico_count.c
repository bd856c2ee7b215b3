/* micoc rv32: instruction-count records; see mico_count.h. */
#include "mico_count.h"

#include "mico_sh.h"

typedef struct {
    uint32_t id;
    uint32_t lo;
    uint32_t hi;
} mico_count_rec;

static mico_count_rec count_recs[MICO_COUNT_MAX];
static uint32_t count_n;
static uint32_t count_dropped;
static uint32_t count_overhead;
static int count_calibrated;

uint64_t mico_instret(void)
{
    uint32_t hi, lo, hi2;
    do {
        __asm__ volatile("csrr %0, minstreth" : "=r"(hi));
        __asm__ volatile("csrr %0, minstret" : "=r"(lo));
        __asm__ volatile("csrr %0, minstreth" : "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
}

/* noinline: every record must cost the same number of instructions so the
 * calibrated overhead is exact at every call site. */
__attribute__((noinline)) void mico_count_mark(uint32_t id)
{
    uint64_t t = mico_instret();
    if (count_n < MICO_COUNT_MAX) {
        count_recs[count_n].id = id;
        count_recs[count_n].lo = (uint32_t)t;
        count_recs[count_n].hi = (uint32_t)(t >> 32);
        count_n++;
    } else {
        count_dropped++;
    }
}

__attribute__((noinline)) void mico_count_calibrate(void)
{
    if (count_calibrated) {
        return;
    }
    /* Two back-to-back records: their distance is the cost of one record as
     * seen between two reads. Then forget them. */
    uint32_t n0 = count_n;
    uint32_t d0 = count_dropped;
    mico_count_mark(MICO_COUNT_ID_BEGIN);
    mico_count_mark(MICO_COUNT_ID_BEGIN);
    if (count_n == n0 + 2u) {
        count_overhead = count_recs[n0 + 1u].lo - count_recs[n0].lo;
    }
    count_n = n0;
    count_dropped = d0;
    count_calibrated = 1;
}

void mico_count_flush(void)
{
    char path[256];
    if (!mico_sh_arg("counts", path, sizeof path)) {
        return;
    }
    mico_count_mark(MICO_COUNT_ID_EXIT);
    int32_t fd = mico_sh_open(path, MICO_SH_MODE_WB);
    if (fd < 0) {
        return;
    }
    /* Header: magic, version, record count, dropped records, overhead;
     * then the records: id, instret low, instret high (little endian). */
    uint32_t head[5] = {0x544E434Du /* "MCNT" */, 1u, count_n, count_dropped, count_overhead};
    mico_sh_write(fd, head, sizeof head);
    mico_sh_write(fd, count_recs, count_n * (uint32_t)sizeof(mico_count_rec));
    mico_sh_close(fd);
}
