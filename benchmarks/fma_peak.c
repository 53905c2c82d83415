/* The CPU's float32 peak: fused multiply-adds on registers only, no memory, one thread.

   Issue 14's model-pass goal asks for 1.5x PyTorch's model calls; this is the rate no float32 engine can pass on
   this CPU (benchmarks/EVALUATE_RESULTS.md compares it with numpy's matmul, ONNX Runtime and PyTorch).
   Twelve independent accumulators hide the FMA latency; each starts from its own value so that the compiler keeps
   all twelve chains. Run one copy per core at once for the all-core rate (a lower clock under load shows there):

     gcc -O2 -march=native -o /tmp/fma_peak benchmarks/fma_peak.c      (or benchmark_cpu_rates.py --fma-peak)
     /tmp/fma_peak                                  # one core
     for i in $(seq "$(nproc)"); do /tmp/fma_peak & done; wait    # every core at once: add the lines up
*/
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define CHAINS 12
#define ITERATIONS 100000000L
#define REPEATS 5

static double seconds_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec * 1e-9;
}

/* GFLOP/s of ITERATIONS x CHAINS fused multiply-adds of `lanes` floats each (2 flops per lane). */
#define FMA_RATE(vector, set1, fmadd, lanes, result)                                       \
    do {                                                                                   \
        volatile float start[CHAINS] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};            \
        vector acc[CHAINS];                                                                \
        for (int c = 0; c < CHAINS; c++) acc[c] = set1(start[c]);                          \
        vector scale = set1(0.999999f), shift = set1(1e-7f);                               \
        double began = seconds_now();                                                      \
        for (long i = 0; i < ITERATIONS; i++) {                                            \
            _Pragma("GCC unroll 12")  /* all chains in registers */                        \
            for (int c = 0; c < CHAINS; c++) acc[c] = fmadd(acc[c], scale, shift);         \
        }                                                                                  \
        double elapsed = seconds_now() - began;                                            \
        float sink[lanes];                                                                 \
        for (int c = 1; c < CHAINS; c++) acc[0] = acc[0] + acc[c];                         \
        __builtin_memcpy(sink, &acc[0], sizeof(sink));                                     \
        if (sink[0] == 0.0f) printf(" ");  /* keeps the result live */                     \
        result = ITERATIONS * (double)CHAINS * lanes * 2 / elapsed / 1e9;                  \
    } while (0)

int main(void) {
    double best256 = 0, best512 = 0, rate;
    for (int repeat = 0; repeat < REPEATS; repeat++) {
        FMA_RATE(__m256, _mm256_set1_ps, _mm256_fmadd_ps, 8, rate);
        best256 = rate > best256 ? rate : best256;
#ifdef __AVX512F__
        FMA_RATE(__m512, _mm512_set1_ps, _mm512_fmadd_ps, 16, rate);
        best512 = rate > best512 ? rate : best512;
#endif
    }
    printf("float32 FMA peak, one thread: %.1f GFLOP/s (256-bit)", best256);
    if (best512 > 0) printf(", %.1f GFLOP/s (512-bit)", best512);
    printf("\n");
    return 0;
}
