/* micoc rv32: count each inference of an emitted model without touching the
 * portable harness. Linked with -Wl,--wrap=mico_model_run, so main.c's calls
 * to mico_model_run land here: one begin/end region per sample, covering
 * input quantization, every layer and output dequantization. */
#include "mico_count.h"

int __real_mico_model_run(const float *input, float *output);
int __wrap_mico_model_run(const float *input, float *output);

int __wrap_mico_model_run(const float *input, float *output)
{
    mico_count_begin();
    int r = __real_mico_model_run(input, output);
    mico_count_end();
    return r;
}
