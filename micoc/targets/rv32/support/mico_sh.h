/* micoc rv32: RISC-V semihosting (the ARM semihosting protocol over the
 * slli/ebreak/srai sequence) for bare-metal programs under QEMU
 * (-semihosting-config enable=on,target=native). File handles are host
 * files; ":tt" is the console (QEMU's chardev: the host's stdin/stdout). */
#ifndef MICO_SH_H
#define MICO_SH_H

#include <stdint.h>

/* Semihosting operation numbers. */
#define MICO_SH_OPEN 0x01
#define MICO_SH_CLOSE 0x02
#define MICO_SH_WRITE0 0x04
#define MICO_SH_WRITE 0x05
#define MICO_SH_READ 0x06
#define MICO_SH_FLEN 0x0C
#define MICO_SH_GET_CMDLINE 0x15
#define MICO_SH_EXIT_EXTENDED 0x20

/* SYS_OPEN modes (fopen: "r" "rb" "r+" "r+b" "w" "wb" ...). */
#define MICO_SH_MODE_RB 1
#define MICO_SH_MODE_WB 5

/* The raw call: op in a0, pointer to the argument block in a1. */
int32_t mico_sh_call(uint32_t op, void *args);

/* Open a host file (mode MICO_SH_MODE_*); -1 on failure. */
int32_t mico_sh_open(const char *path, uint32_t mode);
int32_t mico_sh_close(int32_t fd);
/* Write/read exactly len bytes; return the number of bytes transferred. A
 * console read returns what is available, so read loops until len or EOF. */
uint32_t mico_sh_write(int32_t fd, const void *buf, uint32_t len);
uint32_t mico_sh_read(int32_t fd, void *buf, uint32_t len);
/* Length of an open file in bytes, -1 if unknown. */
int32_t mico_sh_flen(int32_t fd);

/* Console handles (opened on first use). */
int32_t mico_sh_stdin(void);
int32_t mico_sh_stdout(void);

/* Write a NUL-terminated string / a decimal number to the console. */
void mico_sh_puts(const char *s);
void mico_sh_put_u64(uint64_t v);
void mico_sh_put_i32(int32_t v);

/* The command line (-semihosting-config ...,arg=prog,arg=key=value...),
 * copied into a static buffer; "" if none. */
const char *mico_sh_cmdline(void);
/* Value of `key=value` among the command-line words, copied into buf
 * (NUL-terminated); 0 if absent or too long. */
int mico_sh_arg(const char *key, char *buf, uint32_t cap);

/* Leave QEMU with this process exit code (0..255 reach the host). Flushes
 * instruction-count records first (see mico_count.h). */
void mico_sh_exit(int32_t code) __attribute__((noreturn));

#endif
