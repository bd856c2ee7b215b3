/* mico_io.h -- the byte streams the harness (main.c) reads inputs from and
 * writes outputs to: raw little-endian float32 samples. The host build maps
 * them onto stdio (mico_io_stdio.c); the rv32 target onto semihosting. */
#ifndef MICO_IO_H
#define MICO_IO_H

#include <stdint.h>

/* Read exactly `bytes` bytes into dst; fewer returned means end of input. */
int32_t mico_io_read(void *dst, uint32_t bytes);
/* Write `bytes` bytes; returns the number written. */
int32_t mico_io_write(const void *src, uint32_t bytes);
/* Text to the console (diagnostics). */
void mico_io_puts(const char *s);

#ifdef MICO_IO_ARGS
/* Host only: in=PATH / out=PATH arguments instead of stdin / stdout. Returns 0 on success. */
int mico_io_args(int argc, char **argv);
#endif

#endif /* MICO_IO_H */
