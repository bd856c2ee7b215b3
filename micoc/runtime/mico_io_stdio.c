/* mico_io_stdio.c -- mico_io over stdio for the host build (the only libc user). */
#include <stdio.h>
#include <string.h>

#include "mico_io.h"

static FILE *io_in;
static FILE *io_out;

int mico_io_args(int argc, char **argv)
{
    int i;
    for (i = 1; i < argc; i++) {
        if (strncmp(argv[i], "in=", 3) == 0) {
            io_in = fopen(argv[i] + 3, "rb");
            if (!io_in) return 1;
        } else if (strncmp(argv[i], "out=", 4) == 0) {
            io_out = fopen(argv[i] + 4, "wb");
            if (!io_out) return 1;
        }
    }
    return 0;
}

int32_t mico_io_read(void *dst, uint32_t bytes)
{
    return (int32_t)fread(dst, 1, bytes, io_in ? io_in : stdin);
}

int32_t mico_io_write(const void *src, uint32_t bytes)
{
    FILE *f = io_out ? io_out : stdout;
    int32_t n = (int32_t)fwrite(src, 1, bytes, f);
    fflush(f);
    return n;
}

void mico_io_puts(const char *s)
{
    fputs(s, stderr);
}
