/* micoc rv32: input/output streams over semihosting; see mico_io.h. */
#include "mico_io.h"

#include "mico_sh.h"

static int32_t io_in_fd = -2;
static int32_t io_out_fd = -2;

static int32_t io_open(const char *key, uint32_t mode, int32_t console)
{
    char path[256];
    if (mico_sh_arg(key, path, sizeof path)) {
        return mico_sh_open(path, mode);
    }
    return console;
}

int32_t mico_io_read(void *dst, uint32_t bytes)
{
    if (io_in_fd == -2) {
        io_in_fd = io_open("in", MICO_SH_MODE_RB, -3);
        if (io_in_fd == -3) {
            io_in_fd = mico_sh_stdin();
        }
    }
    if (io_in_fd < 0) {
        return 0;
    }
    return (int32_t)mico_sh_read(io_in_fd, dst, bytes);
}

int32_t mico_io_write(const void *src, uint32_t bytes)
{
    if (io_out_fd == -2) {
        io_out_fd = io_open("out", MICO_SH_MODE_WB, -3);
        if (io_out_fd == -3) {
            io_out_fd = mico_sh_stdout();
        }
    }
    if (io_out_fd < 0) {
        return 0;
    }
    return (int32_t)mico_sh_write(io_out_fd, src, bytes);
}

void mico_io_puts(const char *s)
{
    mico_sh_puts(s);
}
