/* micoc rv32: exact executed-instruction counts from the minstret CSR.
 *
 * Under QEMU with -icount shift=0, minstret is the exact number of guest
 * instructions retired so far (deterministic: same ELF + same input, same
 * numbers). Each call below appends one record (id, minstret) to a static
 * table; at exit (mico_sh_exit) the table is written to the host file named
 * by the semihosting argument counts=PATH, where micoc's run_elf reads it.
 *
 * Measurement overhead: one record costs a constant number of instructions
 * (the call, the CSR reads, the store), calibrated at start-up and
 * subtracted by the host, so a region's count is the instructions of the
 * code between its two records only.
 *
 * A layer is counted from its packed input activations to its requantized
 * packed output: call mico_count_layer_begin(i) right before the layer's
 * kernel and mico_count_layer_end(i) right after it. */
#ifndef MICO_COUNT_H
#define MICO_COUNT_H

#include <stdint.h>

#define MICO_COUNT_MAX 4096u           /* records kept; more are dropped (counted) */
#define MICO_COUNT_ID_BEGIN 0xFFFFFFF0u /* start of one inference */
#define MICO_COUNT_ID_END 0xFFFFFFF1u   /* end of one inference */
#define MICO_COUNT_ID_EXIT 0xFFFFFFF2u  /* program exit (written by the flush) */

/* minstret as 64 bits (reads minstreth twice to survive a carry). */
uint64_t mico_instret(void);

/* A record; ids >= 0xFFFFFF00 are reserved. Layer i uses ids 2i (begin)
 * and 2i+1 (end). Out of line (noinline) so every record costs the same. */
void mico_count_mark(uint32_t id);
/* Measure the cost of one record (once, by the start-up code before main;
 * later calls do nothing). */
void mico_count_calibrate(void);

/* The wrappers are inline so that each call site is exactly
 * "li a0, id; call mico_count_mark", like the calibration. */

/* Start of an inference. */
static inline void mico_count_begin(void)
{
    mico_count_mark(MICO_COUNT_ID_BEGIN);
}
/* End of an inference. */
static inline void mico_count_end(void)
{
    mico_count_mark(MICO_COUNT_ID_END);
}
/* Layer `layer` (0-based, a compile-time constant at the call site) begins / ends. */
static inline void mico_count_layer_begin(uint32_t layer)
{
    mico_count_mark(2u * layer);
}
static inline void mico_count_layer_end(uint32_t layer)
{
    mico_count_mark(2u * layer + 1u);
}

/* Write the records to the counts=PATH file (called by mico_sh_exit). */
void mico_count_flush(void);

#endif
