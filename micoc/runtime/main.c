/* main.c -- the micoc harness: read raw float32 input samples until end of
 * input, run each through the model, write raw float32 outputs.
 * With the argument -c each sample's output is followed by its int32 output
 * codes (the integers behind the floats, for bit-exact tests). Portable: all
 * I/O goes through mico_io_read / mico_io_write. */
#include "mico_io.h"
#include "model.h"

static float in_buf[MICO_MODEL_INPUT_SIZE];
static float out_buf[MICO_MODEL_OUTPUT_SIZE];
static int32_t codes_buf[MICO_MODEL_OUTPUT_SIZE];

int main(int argc, char **argv)
{
    int codes = 0, i;
    for (i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] == 'c' && argv[i][2] == 0) codes = 1;
#ifdef MICO_IO_ARGS
    if (mico_io_args(argc, argv)) {
        mico_io_puts("mico: cannot open the in=/out= file\n");
        return 2;
    }
#endif
    for (;;) {
        int32_t got = mico_io_read(in_buf, (uint32_t)sizeof in_buf);
        if (got == 0) break;
        if (got != (int32_t)sizeof in_buf) {
            mico_io_puts("mico: truncated input sample\n");
            return 2;
        }
        mico_model_run(in_buf, out_buf);
        if (mico_io_write(out_buf, (uint32_t)sizeof out_buf) != (int32_t)sizeof out_buf) return 3;
        if (codes) {
            mico_model_output_codes(codes_buf);
            if (mico_io_write(codes_buf, (uint32_t)sizeof codes_buf) != (int32_t)sizeof codes_buf) return 3;
        }
    }
    return 0;
}
