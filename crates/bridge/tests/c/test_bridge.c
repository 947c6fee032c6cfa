// test_bridge.c — exercises every function of ane_bridge.h on one device.
//
// Usage: test_bridge DEVICE          set the device with ane_bridge_set_device(DEVICE)
//        test_bridge DEVICE env      leave the choice to ANE_BRIDGE_DEVICE (must equal DEVICE)
//        test_bridge bad-env         ANE_BRIDGE_DEVICE is invalid: init fails, set_device recovers
//
// Upstream PR #22's 15 checks, made able to fail: random asymmetric x and W (a swapped binding
// or a wrong formula is caught, and the test shows the swapped result would differ), a weight
// write that changes the result without a recompile, a copy_io chain, BLOBFILE weights through
// build_weight_blob, realtime around an eval, a second compile served from the cache; plus
// every error path. Prints one line per check; exit status 0 only when all pass.

#include "ane_bridge.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_pass = 0, g_fail = 0;

static void check(int ok, const char *what) {
    if (ok) {
        g_pass++;
        printf("PASS %s\n", what);
    } else {
        g_fail++;
        printf("FAIL %s (last_error: %s)\n", what, ane_bridge_last_error());
    }
}

// last_error contains `needle` (and so is not empty).
static int err_has(const char *needle) {
    const char *e = ane_bridge_last_error();
    return e != NULL && e[0] != '\0' && strstr(e, needle) != NULL;
}

static int no_err(void) { return ane_bridge_last_error()[0] == '\0'; }

// ---- fp16 <-> fp32 (round to nearest even) ----------------------------------------------------

static uint16_t f2h(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t exp = (int32_t)((x >> 23) & 0xFF) - 127 + 15;
    uint32_t mant = x & 0x7FFFFFu;
    if (((x >> 23) & 0xFF) == 0xFF) return (uint16_t)(sign | 0x7C00u | (mant ? 0x200u : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7C00u);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) half++;
    return (uint16_t)half;
}

static float h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FFu, x;
    if (exp == 0) {
        if (mant == 0) {
            x = sign;
        } else {
            exp = 127 - 15 + 1;
            while (!(mant & 0x400u)) { mant <<= 1; exp--; }
            x = sign | (exp << 23) | ((mant & 0x3FFu) << 13);
        }
    } else if (exp == 31) {
        x = sign | 0x7F800000u | (mant << 13);
    } else {
        x = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static uint32_t g_rng = 12345u;
static float frand(void) {  // uniform in [-1, 1), rounded to fp16 so references are exact inputs
    g_rng = g_rng * 1664525u + 1013904223u;
    return h2f(f2h((float)((g_rng >> 8) & 0xFFFF) / 32768.0f - 1.0f));
}

static void to_h(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f2h(src[i]);
}

// max |got - want| relative to max(1, |want|)
static double max_err(const uint16_t *got, const double *want, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)h2f(got[i]) - want[i]) / fmax(1.0, fabs(want[i]));
        if (d > m || d != d) m = (d != d) ? 1e30 : d;
    }
    return m;
}

// ---- programs ---------------------------------------------------------------------------------

#define K 64
#define M 64
#define N 64

// PR #22's function-parameter form: out[n,m] = sum_k W[n,k] x[k,m]. Declared x then W; the
// Neural Engine binds W first (alphabetical), so a bridge binding in declaration order swaps them.
static const char *MATMUL =
    "program(1.3)\n{\n"
    "    func main<ios18>(tensor<fp16, [1, 64, 1, 64]> x, tensor<fp16, [1, 64, 64]> W) {\n"
    "        tensor<int32, [3]> sh = const()[name=string(\"sh\"), val=tensor<int32, [3]>([1,64,64])];\n"
    "        tensor<fp16, [1,64,64]> x3 = reshape(shape=sh,x=x)[name=string(\"x3\")];\n"
    "        bool f = const()[name=string(\"f\"), val=bool(false)];\n"
    "        tensor<fp16, [1,64,64]> out = matmul(transpose_x=f,transpose_y=f,x=W,y=x3)[name=string(\"out\")];\n"
    "    } -> (out);\n}\n";

// out = x + x, 32 channels x 32.
static const char *ADD =
    "program(1.3)\n{\n"
    "    func main<ios18>(tensor<fp16, [1, 32, 1, 32]> x) {\n"
    "        tensor<fp16, [1,32,1,32]> y = add(x=x,y=x)[name=string(\"y\")];\n"
    "    } -> (y);\n}\n";

// The same with another name: a different program text.
static const char *ADD2 =
    "program(1.3)\n{\n"
    "    func main<ios18>(tensor<fp16, [1, 32, 1, 32]> a) {\n"
    "        tensor<fp16, [1,32,1,32]> y = add(x=a,y=a)[name=string(\"y\")];\n"
    "    } -> (y);\n}\n";

// y = conv(W, x) with W a BLOBFILE constant [32, 64, 1, 1]; x [1, 64, 1, 32].
#define CONV_HEAD                                                                               \
    "program(1.3)\n{\n"                                                                         \
    "    func main<ios18>(tensor<fp16, [1, 64, 1, 32]> x) {\n"
#define CONV_CONSTS                                                                             \
    "        tensor<int32, [2]> d = const()[name=string(\"d\"), val=tensor<int32, [2]>([1,1])];\n" \
    "        int32 g = const()[name=string(\"g\"), val=int32(1)];\n"                               \
    "        tensor<int32, [4]> p = const()[name=string(\"p\"), val=tensor<int32, [4]>([0,0,0,0])];\n" \
    "        string pt = const()[name=string(\"pt\"), val=string(\"valid\")];\n"
#define WCONST(NAME, FILE)                                                                      \
    "        tensor<fp16, [32,64,1,1]> " NAME " = const()[name=string(\"" NAME "\"), val=tensor<fp16, [32,64,1,1]>(BLOBFILE(path=string(\"@model_path/weights/" FILE "\"), offset=uint64(64)))];\n"
#define CONV(OUT, W)                                                                            \
    "        tensor<fp16, [1,32,1,32]> " OUT " = conv(dilations=d,groups=g,pad=p,pad_type=pt,strides=d,weight=" W ",x=x)[name=string(\"" OUT "\")];\n"

static const char *CONV1 = CONV_HEAD WCONST("w", "weight.bin") CONV_CONSTS CONV("y", "w")
    "    } -> (y);\n}\n";
static const char *CONV2 = CONV_HEAD WCONST("wa", "a.bin") WCONST("wb", "b.bin") CONV_CONSTS
    CONV("ya", "wa") CONV("yb", "wb")
    "        tensor<fp16, [1,32,1,32]> y = add(x=ya,y=yb)[name=string(\"y\")];\n"
    "    } -> (y);\n}\n";

// Spatial width 48 is fine; 40 breaks Neural Engine rule 5 (a multiple of 16).
static const char *ODD_WIDTH =
    "program(1.3)\n{\n"
    "    func main<ios18>(tensor<fp16, [1, 4, 1, 40]> x) {\n"
    "        tensor<fp16, [1,4,1,40]> y = add(x=x,y=x)[name=string(\"y\")];\n"
    "    } -> (y);\n}\n";

static ANEKernelHandle *compile_dyn_matmul(void) {
    size_t in[1] = {K * M * 2}, w[1] = {N * K * 2};
    return ane_bridge_compile_dyn(MATMUL, strlen(MATMUL), 1, in, 1, w, N * M * 2);
}

static ANEKernelHandle *compile_add(const char *mil) {
    size_t s[1] = {32 * 32 * 2};
    return ane_bridge_compile(mil, strlen(mil), NULL, 0, 1, s, 1, s);
}

static void matmul_ref(const float *W, const float *x, double *out, double scale) {
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)W[n * K + k] * x[k * M + m];
            out[n * M + m] = s * scale;
        }
}

// ---- the checks -------------------------------------------------------------------------------

static float g_x[K * M], g_W[N * K];
static double g_ref[N * M];

static void test_dynamic_matmul(double tol) {
    for (int i = 0; i < K * M; i++) g_x[i] = frand();
    for (int i = 0; i < N * K; i++) g_W[i] = frand();
    matmul_ref(g_W, g_x, g_ref, 1.0);

    int count0 = ane_bridge_get_compile_count();
    ANEKernelHandle *k = compile_dyn_matmul();
    check(k != NULL && no_err(), "2: compile_dyn of the dynamic matmul returns a handle");
    if (!k) return;
    check(ane_bridge_get_compile_count() == count0 + 1, "compile_dyn counts one compile");

    static uint16_t xh[K * M], wh[N * K], out[N * M];
    to_h(g_x, xh, K * M);
    to_h(g_W, wh, N * K);
    ane_bridge_write_input(k, 0, xh, sizeof xh);
    check(no_err(), "write_input of x succeeds");
    ane_bridge_write_weight(k, 0, wh, sizeof wh);
    check(no_err(), "write_weight of W succeeds");
    check(ane_bridge_eval(k) && no_err(), "3: eval A succeeds");
    ane_bridge_read_output(k, 0, out, sizeof out);
    check(no_err(), "read_output succeeds");
    double e = max_err(out, g_ref, N * M);
    printf("     max rel error vs reference: %.5f\n", e);
    check(e < tol, "random asymmetric x and W: out = W.x (binding by name, not position)");
    // The same data bound the other way round (W's bytes as x, x's bytes as W) gives another
    // result, so the check above would catch a swapped binding.
    static double swapped[N * M];
    matmul_ref(g_x, g_W, swapped, 1.0);
    check(max_err(out, swapped, N * M) > 0.1, "a swapped binding would be caught (results differ)");

    // 4-5: new weights (fp16 bytes) without recompiling.
    int count1 = ane_bridge_get_compile_count();
    static float w2[N * K];
    for (int i = 0; i < N * K; i++) w2[i] = h2f(f2h(-2.0f * g_W[i]));
    static uint16_t w2h[N * K];
    to_h(w2, w2h, N * K);
    ane_bridge_write_weight(k, 0, w2h, sizeof w2h);
    check(ane_bridge_eval(k), "4: eval B after write_weight succeeds");
    ane_bridge_read_output(k, 0, out, sizeof out);
    static double ref2[N * M];
    matmul_ref(w2, g_x, ref2, 1.0);
    check(max_err(out, ref2, N * M) < tol, "5: write_weight changed the result to -2 W.x");
    check(ane_bridge_get_compile_count() == count1, "write_weight did not recompile");

    // 6-7: write_weight_f32 with other random weights.
    static float w3[N * K];
    for (int i = 0; i < N * K; i++) w3[i] = frand();
    ane_bridge_write_weight_f32(k, 0, w3, N * K);
    check(no_err(), "write_weight_f32 succeeds");
    check(ane_bridge_eval(k), "6: eval after write_weight_f32 succeeds");
    ane_bridge_read_output(k, 0, out, sizeof out);
    static double ref3[N * M];
    matmul_ref(w3, g_x, ref3, 1.0);
    check(max_err(out, ref3, N * M) < tol, "7: write_weight_f32 result = W3.x");
    check(ane_bridge_get_compile_count() == count1, "write_weight_f32 did not recompile");

    // Short writes fill a prefix; oversize writes are refused and write nothing.
    ane_bridge_write_weight_f32(k, 0, g_W, N * K);
    static uint16_t zeros[K * M];
    memset(zeros, 0, sizeof zeros);
    ane_bridge_write_input(k, 0, zeros, sizeof zeros / 2);  // channels 0..31 of x become 0
    check(no_err(), "a short write_input succeeds");
    ane_bridge_eval(k);
    ane_bridge_read_output(k, 0, out, sizeof out);
    static float xpart[K * M];
    memcpy(xpart, g_x, sizeof xpart);
    memset(xpart, 0, sizeof xpart / 2);
    static double ref4[N * M];
    matmul_ref(g_W, xpart, ref4, 1.0);
    check(max_err(out, ref4, N * M) < tol, "a short write fills only a prefix");
    static uint16_t big[K * M + 1];
    memset(big, 0, sizeof big);
    ane_bridge_write_input(k, 0, big, sizeof big);
    check(err_has("nothing was written"), "an oversize write_input is refused");
    ane_bridge_write_weight(k, 0, big, N * K * 2 + 2);
    check(err_has("nothing was written"), "an oversize write_weight is refused");
    ane_bridge_write_weight_f32(k, 0, g_x, N * K + 1);
    check(err_has("nothing was written"), "an oversize write_weight_f32 is refused");
    ane_bridge_eval(k);
    static uint16_t out2[N * M];
    ane_bridge_read_output(k, 0, out2, sizeof out2);
    check(memcmp(out, out2, sizeof out) == 0, "refused writes changed nothing");

    // Reads never write past the tensor.
    static uint8_t rbuf[N * M * 2 + 64];
    memset(rbuf, 0xAB, sizeof rbuf);
    ane_bridge_read_output(k, 0, rbuf, sizeof rbuf);
    int untouched = 1;
    for (size_t i = N * M * 2; i < sizeof rbuf; i++) untouched &= rbuf[i] == 0xAB;
    check(no_err() && untouched && memcmp(rbuf, out, sizeof out) == 0,
          "an oversize read fills the tensor's bytes and no more");

    // Index and pointer errors.
    ane_bridge_write_input(k, 1, xh, 2);
    check(err_has("out of range"), "write_input index 1 of 1 is an error");
    ane_bridge_write_input(k, -1, xh, 2);
    check(err_has("out of range"), "write_input index -1 is an error");
    ane_bridge_write_weight(k, 1, wh, 2);
    check(err_has("out of range"), "write_weight index 1 of 1 is an error");
    ane_bridge_write_weight_f32(k, 5, g_W, 1);
    check(err_has("out of range"), "write_weight_f32 index 5 is an error");
    ane_bridge_read_output(k, 1, out, 2);
    check(err_has("out of range"), "read_output index 1 of 1 is an error");
    ane_bridge_write_input(k, 0, NULL, 16);
    check(err_has("NULL"), "write_input of NULL data is an error");
    ane_bridge_read_output(k, 0, NULL, 16);
    check(err_has("NULL"), "read_output into NULL is an error");
    ane_bridge_write_weight_f32(k, 0, NULL, 4);
    check(err_has("NULL"), "write_weight_f32 of NULL is an error");
    ane_bridge_write_input(k, 0, NULL, 0);
    check(no_err(), "a zero-byte write is a no-op");

    ane_bridge_free(k);
    check(no_err(), "free succeeds");
}

static void test_copy_io_chain(void) {
    ANEKernelHandle *k1 = compile_add(ADD), *k2 = compile_add(ADD2);
    check(k1 != NULL && k2 != NULL, "8: two weight-free add kernels compile");
    if (!k1 || !k2) return;
    static float x[32 * 32];
    static uint16_t xh[32 * 32], out[32 * 32], o1[32 * 32];
    static double want[32 * 32];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 32 * 32; i++) {
            x[i] = frand();
            want[i] = 4.0 * x[i];
        }
        to_h(x, xh, 32 * 32);
        ane_bridge_write_input(k1, 0, xh, sizeof xh);
        ane_bridge_eval(k1);
        ane_bridge_copy_io(k1, 0, k2, 0);
        check(no_err(), "copy_io k1 -> k2 succeeds");
        ane_bridge_eval(k2);
        ane_bridge_read_output(k2, 0, out, sizeof out);
        check(max_err(out, want, 32 * 32) < 1e-3,
              round == 0 ? "9: x -> k1 -> copy_io -> k2 gives 4x"
                         : "9b: a second round through the chain gives the new 4x");
    }
    // Writing k2's input afterwards must not change k1's output.
    ane_bridge_read_output(k1, 0, o1, sizeof o1);
    static uint16_t zeros[32 * 32];
    memset(zeros, 0, sizeof zeros);
    ane_bridge_write_input(k2, 0, zeros, sizeof zeros);
    static uint16_t o1b[32 * 32];
    ane_bridge_read_output(k1, 0, o1b, sizeof o1b);
    check(memcmp(o1, o1b, sizeof o1) == 0, "write_input after copy_io leaves the source untouched");
    ane_bridge_eval(k2);
    ane_bridge_read_output(k2, 0, out, sizeof out);
    int all_zero = 1;
    for (int i = 0; i < 32 * 32; i++) all_zero &= out[i] == 0 || out[i] == 0x8000;
    check(all_zero, "and it is what k2 reads");
    // A kernel fed from its own output: always a copy.
    ane_bridge_write_input(k1, 0, xh, sizeof xh);
    ane_bridge_eval(k1);
    ane_bridge_copy_io(k1, 0, k1, 0);
    ane_bridge_eval(k1);
    ane_bridge_read_output(k1, 0, out, sizeof out);
    check(max_err(out, want, 32 * 32) < 1e-3, "copy_io from a kernel into itself copies");

    ANEKernelHandle *mm = compile_dyn_matmul();
    ane_bridge_copy_io(k1, 0, mm, 0);
    check(err_has("bytes"), "copy_io between tensors of different sizes is an error");
    ane_bridge_copy_io(k1, 1, k2, 0);
    check(err_has("out of range"), "copy_io from output 1 of 1 is an error");
    ane_bridge_copy_io(k1, 0, k2, 3);
    check(err_has("out of range"), "copy_io into input 3 of 1 is an error");
    ane_bridge_copy_io(NULL, 0, k2, 0);
    check(err_has("NULL"), "copy_io from NULL is an error");
    ane_bridge_free(mm);
    ane_bridge_free(k1);
    ane_bridge_free(k2);
}

static void test_realtime(void) {
    ANEKernelHandle *k = compile_add(ADD);
    ane_bridge_begin_realtime();
    int begun = no_err() || err_has("realtime");
    int ok = ane_bridge_eval(k);
    ane_bridge_end_realtime();
    int ended = no_err() || err_has("realtime");
    printf("     realtime: %s\n", ane_bridge_last_error()[0] ? ane_bridge_last_error() : "active");
    check(begun && ok && ended, "10: an eval between begin_realtime and end_realtime succeeds");
    ane_bridge_free(k);
}

static void test_cache_and_count(void) {
    ane_bridge_reset_compile_count();
    check(ane_bridge_get_compile_count() == 0 && no_err(), "reset_compile_count makes it 0");
    static const char *FRESH =
        "program(1.3)\n{\n"
        "    func main<ios18>(tensor<fp16, [1, 32, 1, 32]> q) {\n"
        "        tensor<fp16, [1,32,1,32]> y = mul(x=q,y=q)[name=string(\"y\")];\n"
        "    } -> (y);\n}\n";
    ANEKernelHandle *a = compile_add(FRESH);
    check(a != NULL, "11: a weight-free kernel compiles");
    check(ane_bridge_get_compile_count() == 1, "12: the first compile of a program counts one");
    ane_bridge_free(a);
    ANEKernelHandle *b = compile_add(FRESH);
    check(b != NULL, "13: recompiling the same program returns a handle");
    check(ane_bridge_get_compile_count() == 1, "14: it was served from the cache (count unchanged)");
    static uint16_t xh[32 * 32], out[32 * 32];
    for (int i = 0; i < 32 * 32; i++) xh[i] = f2h(0.5f);
    ane_bridge_write_input(b, 0, xh, sizeof xh);
    ane_bridge_eval(b);
    ane_bridge_read_output(b, 0, out, sizeof out);
    check(h2f(out[0]) == 0.25f && h2f(out[1023]) == 0.25f, "the cached kernel computes x*x");
    ane_bridge_free(b);
    // 15: using a freed handle is an error, not a crash.
    check(!ane_bridge_eval(b) && err_has("not a live"), "15: eval of a freed handle is an error");
    ane_bridge_free(b);
    check(err_has("not a live"), "freeing twice is an error");
    ane_bridge_write_input(b, 0, xh, 2);
    check(err_has("not a live"), "write_input on a freed handle is an error");
    check(!ane_bridge_eval(NULL) && err_has("NULL"), "eval(NULL) is an error");
    check(!ane_bridge_eval((ANEKernelHandle *)(uintptr_t)0x12345678u) && err_has("not a live"),
          "eval of a made-up handle is an error");
    ane_bridge_free(NULL);
    check(err_has("NULL"), "free(NULL) is reported");
}

static void test_blobfile(double tol) {
    static float W[32 * 64], Wt[64 * 32], x[64 * 32];
    for (int i = 0; i < 32 * 64; i++) W[i] = frand();
    for (int o = 0; o < 32; o++)
        for (int i = 0; i < 64; i++) Wt[i * 32 + o] = W[o * 64 + i];
    for (int i = 0; i < 64 * 32; i++) x[i] = frand();
    size_t len = 0, tlen = 0;
    uint8_t *blob = ane_bridge_build_weight_blob(W, 32, 64, &len);
    check(blob != NULL && len == 128 + 32 * 64 * 2 && no_err(), "build_weight_blob: 128 + 2n bytes");
    uint32_t magic;
    memcpy(&magic, blob + 64, 4);
    check(blob[0] == 1 && blob[4] == 2 && magic == 0xDEADBEEFu && blob[68] == 1,
          "blob header: count 1, version 2, sentinel, fp16");
    uint8_t *tblob = ane_bridge_build_weight_blob_transposed(Wt, 64, 32, &tlen);
    check(tblob != NULL && tlen == len && memcmp(blob, tblob, len) == 0,
          "build_weight_blob_transposed of W^T equals build_weight_blob of W");

    size_t xs[1] = {64 * 32 * 2}, ys[1] = {32 * 32 * 2};
    int c0 = ane_bridge_get_compile_count();
    ANEKernelHandle *k = ane_bridge_compile(CONV1, strlen(CONV1), blob, len, 1, xs, 1, ys);
    check(k != NULL, "compile with a BLOBFILE weight from build_weight_blob");
    static uint16_t xh[64 * 32], out[32 * 32];
    static double want[32 * 32];
    to_h(x, xh, 64 * 32);
    for (int o = 0; o < 32; o++)
        for (int s = 0; s < 32; s++) {
            double acc = 0;
            for (int i = 0; i < 64; i++) acc += (double)W[o * 64 + i] * x[i * 32 + s];
            want[o * 32 + s] = acc;
        }
    ane_bridge_write_input(k, 0, xh, sizeof xh);
    check(ane_bridge_eval(k), "eval of the BLOBFILE conv succeeds");
    ane_bridge_read_output(k, 0, out, sizeof out);
    check(max_err(out, want, 32 * 32) < tol, "BLOBFILE conv result = W.x");
    ane_bridge_write_weight(k, 0, xh, 2);
    check(err_has("0 weights") || err_has("out of range"), "a BLOBFILE kernel has no weight surfaces");

    // Different weight bytes are a different cache entry: a new compile, a new result.
    static float W2[32 * 64];
    for (int i = 0; i < 32 * 64; i++) W2[i] = -W[i];
    size_t len2 = 0;
    uint8_t *blob2 = ane_bridge_build_weight_blob(W2, 32, 64, &len2);
    int c1 = ane_bridge_get_compile_count();
    ANEKernelHandle *k2 = ane_bridge_compile(CONV1, strlen(CONV1), blob2, len2, 1, xs, 1, ys);
    check(k2 != NULL && ane_bridge_get_compile_count() == c1 + 1 && c1 == c0 + 1,
          "the same MIL with other weight bytes compiles again (the cache keys on weights)");
    static double neg[32 * 32];
    for (int i = 0; i < 32 * 32; i++) neg[i] = -want[i];
    ane_bridge_write_input(k2, 0, xh, sizeof xh);
    ane_bridge_eval(k2);
    ane_bridge_read_output(k2, 0, out, sizeof out);
    check(max_err(out, neg, 32 * 32) < tol, "and computes with the new weights");

    // Several named weight files.
    const char *names[2] = {"@model_path/weights/a.bin", "weights/b.bin"};
    const uint8_t *datas[2] = {blob, blob};
    size_t lens[2] = {len, len};
    ANEKernelHandle *k3 =
        ane_bridge_compile_multi_weights(CONV2, strlen(CONV2), names, datas, lens, 2, 1, xs, 1, ys);
    check(k3 != NULL, "compile_multi_weights with two named blobs");
    static double twice[32 * 32];
    for (int i = 0; i < 32 * 32; i++) twice[i] = 2 * want[i];
    ane_bridge_write_input(k3, 0, xh, sizeof xh);
    ane_bridge_eval(k3);
    ane_bridge_read_output(k3, 0, out, sizeof out);
    check(max_err(out, twice, 32 * 32) < tol, "its result = Wa.x + Wb.x");
    const char *bad_names[1] = {"@model_path/weights/a.bin"};
    check(ane_bridge_compile_multi_weights(CONV2, strlen(CONV2), bad_names, datas, lens, 1, 1, xs,
                                           1, ys) == NULL &&
              err_has("b.bin"),
          "a missing weight file is an error naming it");
    check(ane_bridge_compile(CONV1, strlen(CONV1), NULL, 0, 1, xs, 1, ys) == NULL && err_has("weight"),
          "compile of a BLOBFILE program without its blob is an error");

    // int8 builders.
    int8_t q[6] = {1, -2, 3, -128, 127, 0};
    size_t qlen = 0;
    uint8_t *qb = ane_bridge_build_weight_blob_int8(q, 2, 3, &qlen);
    check(qb != NULL && qlen == 128 + 6 && qb[68] == 4 && memcmp(qb + 128, q, 6) == 0,
          "build_weight_blob_int8: blob v2, dtype int8, data at 128");
    float f[4] = {0.0f, 1.27f, -2.54f, 0.01f};
    float scale = 0;
    size_t flen = 0;
    uint8_t *fb = ane_bridge_build_weight_blob_quantized(f, 2, 2, &scale, &flen);
    check(fb != NULL && fabsf(scale - 0.02f) < 1e-6f && flen == 132 && (int8_t)fb[129] == 64 &&
              (int8_t)fb[130] == -127 && (int8_t)fb[131] == 1,
          "build_weight_blob_quantized: scale max/127, rounded values");

    // Builder errors.
    size_t dummy;
    check(ane_bridge_build_weight_blob(W, 0, 4, &dummy) == NULL && err_has("positive"),
          "rows 0 is an error");
    check(ane_bridge_build_weight_blob(NULL, 2, 2, &dummy) == NULL && err_has("NULL"),
          "a NULL source is an error");
    check(ane_bridge_build_weight_blob(W, 2, 2, NULL) == NULL && err_has("out_len"),
          "a NULL out_len is an error");
    check(ane_bridge_build_weight_blob_quantized(f, 2, 2, NULL, &dummy) == NULL &&
              err_has("out_scale"),
          "a NULL out_scale is an error");
    ane_bridge_free_blob(blob);
    check(no_err(), "free_blob succeeds");
    ane_bridge_free_blob(blob);
    check(err_has("free_blob"), "free_blob twice is an error");
    ane_bridge_free_blob(W);
    check(err_has("free_blob"), "free_blob of a pointer it never returned is an error");
    ane_bridge_free_blob(NULL);
    check(no_err(), "free_blob(NULL) does nothing");
    ane_bridge_free_blob(tblob);
    ane_bridge_free_blob(blob2);
    ane_bridge_free_blob(qb);
    ane_bridge_free_blob(fb);
    ane_bridge_free(k);
    ane_bridge_free(k2);
    ane_bridge_free(k3);
}

static void test_compile_errors(const char *device) {
    size_t in[1] = {K * M * 2}, w[1] = {N * K * 2}, wrong[1] = {K * M * 2 - 2};
    check(ane_bridge_compile_dyn(MATMUL, strlen(MATMUL), 1, wrong, 1, w, N * M * 2) == NULL &&
              err_has("`x`") && err_has("8192 bytes"),
          "an input size that does not match the MIL is an error naming the tensor");
    check(ane_bridge_compile_dyn(MATMUL, strlen(MATMUL), 1, in, 1, wrong, N * M * 2) == NULL &&
              err_has("`W`"),
          "a weight size that does not match is an error");
    check(ane_bridge_compile_dyn(MATMUL, strlen(MATMUL), 1, in, 1, w, 100) == NULL &&
              err_has("output"),
          "an output size that does not match is an error");
    check(ane_bridge_compile_dyn(MATMUL, strlen(MATMUL), 1, in, 0, NULL, N * M * 2) == NULL &&
              err_has("parameters"),
          "a parameter count that does not match is an error");
    check(ane_bridge_compile_dyn(MATMUL, strlen(MATMUL), -1, in, 1, w, N * M * 2) == NULL &&
              err_has("negative"),
          "a negative count is an error");
    check(ane_bridge_compile_dyn(NULL, 10, 1, in, 1, w, N * M * 2) == NULL && err_has("NULL"),
          "a NULL MIL text is an error");
    check(ane_bridge_compile_dyn(MATMUL, strlen(MATMUL), 1, NULL, 1, w, N * M * 2) == NULL &&
              err_has("input_sizes"),
          "NULL input_sizes is an error");
    const char *junk = "program(1.3) { this is not MIL";
    check(ane_bridge_compile_dyn(junk, strlen(junk), 1, in, 1, w, N * M * 2) == NULL &&
              err_has("MIL"),
          "MIL that does not parse is an error");
    size_t s40[1] = {4 * 40 * 2};
    ANEKernelHandle *odd = ane_bridge_compile(ODD_WIDTH, strlen(ODD_WIDTH), NULL, 0, 1, s40, 1, s40);
    if (strcmp(device, "ane-sim") == 0) {
        check(odd == NULL && err_has("ANE rule 5"), "ane-sim refuses a spatial width of 40 (rule 5)");
    } else {
        check(odd != NULL, "cpu accepts a spatial width of 40");
        ane_bridge_free(odd);
    }
}

struct worker {
    ANEKernelHandle *k;
    float value;
    int ok;
};

static void *work(void *arg) {
    struct worker *w = arg;
    static const size_t n = 32 * 32;
    uint16_t xh[32 * 32], out[32 * 32];
    w->ok = 1;
    for (int it = 0; it < 30; it++) {
        for (size_t i = 0; i < n; i++) xh[i] = f2h(w->value + (float)it);
        ane_bridge_write_input(w->k, 0, xh, sizeof xh);
        w->ok &= ane_bridge_eval(w->k);
        ane_bridge_read_output(w->k, 0, out, sizeof out);
        w->ok &= h2f(out[n - 1]) == 2 * (w->value + (float)it);
    }
    return NULL;
}

static void test_threads(void) {
    struct worker ws[2] = {{compile_add(ADD), 1.0f, 0}, {compile_add(ADD), 100.0f, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, work, &ws[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    check(ws[0].ok && ws[1].ok, "two handles evaluate on two threads at once");
    // Two threads on one handle: calls are serialised (each eval succeeds; no crash).
    ANEKernelHandle *shared = compile_add(ADD);
    struct worker s[2] = {{shared, 1.0f, 0}, {shared, 1.0f, 0}};
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, work, &s[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    check(ane_bridge_eval(shared), "one handle used from two threads stays usable");
    for (int i = 0; i < 2; i++) ane_bridge_free(ws[i].k);
    ane_bridge_free(shared);
}

static void test_devices(const char *device) {
    check(ane_bridge_set_device("bogus") == -1 && err_has("bogus"), "set_device of an unknown name fails");
    check(ane_bridge_set_device(NULL) == -1 && err_has("NULL"), "set_device(NULL) fails");
    check(ane_bridge_set_device("auto") == 0, "set_device(auto) succeeds");
    check(strcmp(ane_bridge_device_name(), "auto") == 0, "device_name is auto until init");
    int rc = ane_bridge_init();
    const char *name = ane_bridge_device_name();
    check(rc == 0 && (strcmp(name, "cpu") == 0 || strcmp(name, "ane") == 0),
          "auto opens ane where it can, else cpu");
    ane_bridge_set_device("ane");
    rc = ane_bridge_init();
    check((rc == 0 && strcmp(ane_bridge_device_name(), "ane") == 0) ||
              (rc == -1 && err_has("unavailable")),
          "ane opens on a Mac, else init fails saying it is unavailable");
    check(ane_bridge_set_device(device) == 0 && ane_bridge_init() == 0 &&
              strcmp(ane_bridge_device_name(), device) == 0,
          "back on the test's device");
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "bad-env") == 0) {
        check(ane_bridge_init() == -1 && err_has("ANE_BRIDGE_DEVICE"),
              "an invalid ANE_BRIDGE_DEVICE makes init fail, naming the variable");
        check(ane_bridge_device_name()[0] == '\0' && err_has("ANE_BRIDGE_DEVICE"),
              "device_name is empty then");
        check(compile_add(ADD) == NULL && err_has("ANE_BRIDGE_DEVICE"), "and compile fails too");
        check(ane_bridge_set_device("cpu") == 0 && ane_bridge_init() == 0,
              "set_device overrides the environment");
        printf("%d passed, %d failed\n", g_pass, g_fail);
        return g_fail != 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: test_bridge DEVICE [env] | bad-env\n");
        return 2;
    }
    const char *device = argv[1];
    int from_env = argc >= 3 && strcmp(argv[2], "env") == 0;
    double tol = strcmp(device, "cpu") == 0 ? 2e-3 : 2e-2;

    const char *v = ane_bridge_version();
    check(v != NULL && v[0] >= '0' && v[0] <= '9' && no_err(), "version is a version number");
    if (!from_env) check(ane_bridge_set_device(device) == 0 && no_err(), "set_device succeeds");
    check(ane_bridge_init() == 0 && no_err(), "1: init returns 0");
    check(strcmp(ane_bridge_device_name(), device) == 0, "device_name names the device");
    check(ane_bridge_init() == 0 && ane_bridge_get_compile_count() == 0, "init again is fine, count 0");

    test_dynamic_matmul(tol);
    test_copy_io_chain();
    test_realtime();
    test_cache_and_count();
    test_blobfile(tol);
    test_compile_errors(device);
    test_threads();
    test_devices(device);

    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail != 0;
}
