/* micoc rv32: the byte streams the emitted main.c harness reads its inputs
 * from and writes its outputs to (raw little-endian float32 samples).
 *
 * Input: the host file named by the semihosting argument in=PATH if given
 * (how micoc's run_elf passes it), else the console (QEMU's stdin; QEMU 7.2
 * loses bytes of large binary console input and reports no EOF, so only for
 * small interactive use). Output: the file out=PATH if given, else the
 * console (QEMU's stdout: redirect it to a file, not a pipe, or QEMU drops
 * output when the pipe is full). */
#ifndef MICO_IO_H
#define MICO_IO_H

#include <stdint.h>

/* Read exactly `bytes` bytes into dst. Returns the number of bytes read:
 * less than `bytes` means end of input (or an I/O error). */
int32_t mico_io_read(void *dst, uint32_t bytes);
/* Write `bytes` bytes from src. Returns the number of bytes written. */
int32_t mico_io_write(const void *src, uint32_t bytes);
/* Text to the console (diagnostics; independent of out=). */
void mico_io_puts(const char *s);

#endif
