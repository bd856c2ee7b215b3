/* micoc rv32: semihosting calls; see mico_sh.h. */
#include "mico_sh.h"

#include "mico_count.h"

int32_t mico_sh_call(uint32_t op, void *args)
{
    register uint32_t a0 __asm__("a0") = op;
    register void *a1 __asm__("a1") = args;
    /* The magic sequence must be uncompressed and in one page: QEMU looks at
     * the words before and after the ebreak. "memory": the host reads and
     * writes guest buffers. */
    __asm__ volatile(
        ".option push\n"
        ".option norvc\n"
        ".balign 16\n"
        "slli x0, x0, 0x1f\n"
        "ebreak\n"
        "srai x0, x0, 7\n"
        ".option pop\n"
        : "+r"(a0)
        : "r"(a1)
        : "memory");
    return (int32_t)a0;
}

static uint32_t sh_strlen(const char *s)
{
    uint32_t n = 0;
    while (s[n] != '\0') {
        n++;
    }
    return n;
}

int32_t mico_sh_open(const char *path, uint32_t mode)
{
    uint32_t args[3] = {(uint32_t)(uintptr_t)path, mode, sh_strlen(path)};
    return mico_sh_call(MICO_SH_OPEN, args);
}

int32_t mico_sh_close(int32_t fd)
{
    uint32_t args[1] = {(uint32_t)fd};
    return mico_sh_call(MICO_SH_CLOSE, args);
}

uint32_t mico_sh_write(int32_t fd, const void *buf, uint32_t len)
{
    const uint8_t *p = (const uint8_t *)buf;
    uint32_t done = 0;
    while (done < len) {
        uint32_t args[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)(p + done), len - done};
        int32_t left = mico_sh_call(MICO_SH_WRITE, args); /* bytes NOT written */
        if (left < 0 || (uint32_t)left >= len - done) {
            break; /* error, or no progress */
        }
        done = len - (uint32_t)left;
    }
    return done;
}

uint32_t mico_sh_read(int32_t fd, void *buf, uint32_t len)
{
    uint8_t *p = (uint8_t *)buf;
    uint32_t done = 0;
    while (done < len) {
        uint32_t args[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)(p + done), len - done};
        int32_t left = mico_sh_call(MICO_SH_READ, args); /* bytes NOT read */
        if (left < 0 || (uint32_t)left >= len - done) {
            break; /* error or EOF */
        }
        done = len - (uint32_t)left;
    }
    return done;
}

int32_t mico_sh_flen(int32_t fd)
{
    uint32_t args[1] = {(uint32_t)fd};
    return mico_sh_call(MICO_SH_FLEN, args);
}

static int32_t sh_stdin_fd = -2;
static int32_t sh_stdout_fd = -2;

int32_t mico_sh_stdin(void)
{
    if (sh_stdin_fd == -2) {
        sh_stdin_fd = mico_sh_open(":tt", 0); /* mode "r": the console input */
    }
    return sh_stdin_fd;
}

int32_t mico_sh_stdout(void)
{
    if (sh_stdout_fd == -2) {
        sh_stdout_fd = mico_sh_open(":tt", 4); /* mode "w": the console output */
    }
    return sh_stdout_fd;
}

void mico_sh_puts(const char *s)
{
    mico_sh_write(mico_sh_stdout(), s, sh_strlen(s));
}

void mico_sh_put_u64(uint64_t v)
{
    char buf[21];
    int i = 20;
    buf[i] = '\0';
    do {
        /* uint64 division: __udivdi3 from libgcc (only used for diagnostics). */
        uint64_t q = v / 10u;
        buf[--i] = (char)('0' + (int)(v - q * 10u));
        v = q;
    } while (v != 0u && i > 0);
    mico_sh_puts(&buf[i]);
}

void mico_sh_put_i32(int32_t v)
{
    if (v < 0) {
        mico_sh_puts("-");
        mico_sh_put_u64((uint64_t)(-(int64_t)v));
    } else {
        mico_sh_put_u64((uint64_t)v);
    }
}

static char sh_cmdline[512];
static int sh_cmdline_done;

const char *mico_sh_cmdline(void)
{
    if (!sh_cmdline_done) {
        uint32_t args[2] = {(uint32_t)(uintptr_t)sh_cmdline, sizeof sh_cmdline};
        if (mico_sh_call(MICO_SH_GET_CMDLINE, args) != 0) {
            sh_cmdline[0] = '\0';
        }
        sh_cmdline[sizeof sh_cmdline - 1] = '\0';
        sh_cmdline_done = 1;
    }
    return sh_cmdline;
}

int mico_sh_arg(const char *key, char *buf, uint32_t cap)
{
    const char *s = mico_sh_cmdline();
    uint32_t klen = sh_strlen(key);
    while (*s != '\0') {
        while (*s == ' ') {
            s++;
        }
        const char *w = s;
        while (*s != '\0' && *s != ' ') {
            s++;
        }
        uint32_t wlen = (uint32_t)(s - w);
        uint32_t i = 0;
        while (i < klen && i < wlen && w[i] == key[i]) {
            i++;
        }
        if (i == klen && wlen > klen && w[klen] == '=') {
            uint32_t vlen = wlen - klen - 1;
            if (vlen + 1 > cap) {
                return 0;
            }
            for (uint32_t j = 0; j < vlen; j++) {
                buf[j] = w[klen + 1 + j];
            }
            buf[vlen] = '\0';
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv);

/* Split the command line into words in place (at most 32) and run main. */
void mico_start(void) __attribute__((noreturn));
void mico_start(void)
{
    static char *argv[33];
    static char words[sizeof sh_cmdline];
    int argc = 0;
    const char *line = mico_sh_cmdline();
    uint32_t i = 0;
    for (; line[i] != '\0'; i++) {
        words[i] = line[i]; /* a copy: mico_sh_arg keeps reading the original */
    }
    words[i] = '\0';
    char *s = words;
    mico_count_calibrate(); /* once, before any record */
    while (*s != '\0' && argc < 32) {
        while (*s == ' ') {
            s++;
        }
        if (*s == '\0') {
            break;
        }
        argv[argc++] = s;
        while (*s != '\0' && *s != ' ') {
            s++;
        }
        if (*s == ' ') {
            *s++ = '\0';
        }
    }
    argv[argc] = 0;
    mico_sh_exit(main(argc, argv));
}

void mico_sh_exit(int32_t code)
{
    mico_count_flush();
    /* SYS_EXIT_EXTENDED: on RV32 plain SYS_EXIT can only say 0 or 1. */
    uint32_t args[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
    mico_sh_call(MICO_SH_EXIT_EXTENDED, args);
    for (;;) {
    }
}

/* Called from crt0's trap vector: a trap is always a program bug here. */
void mico_trap_report(uint32_t mcause, uint32_t mepc, uint32_t mtval) __attribute__((noreturn));
void mico_trap_report(uint32_t mcause, uint32_t mepc, uint32_t mtval)
{
    mico_sh_puts("\nmicoc rv32: trap mcause=");
    mico_sh_put_u64(mcause);
    mico_sh_puts(" mepc=");
    mico_sh_put_u64(mepc);
    mico_sh_puts(" mtval=");
    mico_sh_put_u64(mtval);
    mico_sh_puts("\n");
    uint32_t args[2] = {0x20026u, 99u};
    mico_sh_call(MICO_SH_EXIT_EXTENDED, args);
    for (;;) {
    }
}
