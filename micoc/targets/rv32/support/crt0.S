/* micoc rv32 bare-metal start-up: QEMU virt (-bios none) jumps here in
 * M-mode at 0x80000000. Set up gp/sp, clear .bss, install a trap vector,
 * then mico_start (mico_sh.c) calls main(argc, argv) with the semihosting
 * command line and exits through semihosting with main's return value. */

    .section .text.init, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    .option push
    .option norelax            /* gp is not set yet: no gp-relative relaxation here */
    la      gp, __global_pointer$
    .option pop
    la      sp, _stack_top
    la      t0, mico_trap_entry
    csrw    mtvec, t0

    /* Clear .bss (word aligned by the linker script). */
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sw      zero, 0(t0)
    addi    t0, t0, 4
    j       1b
2:
    call    mico_start         /* argv from semihosting, main(), exit: never returns */
3:  j       3b
    .size _start, . - _start

/* Any trap (illegal instruction, misaligned access, ...) is a bug in the
 * program: report mcause/mepc/mtval and exit with code 99, instead of
 * spinning forever until the host's timeout. The stack is still usable:
 * traps only come from program code. */
    .balign 4
    .globl mico_trap_entry
    .type mico_trap_entry, @function
mico_trap_entry:
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    andi    sp, sp, -16
    call    mico_trap_report   /* never returns */
4:  j       4b
    .size mico_trap_entry, . - mico_trap_entry
