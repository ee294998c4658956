/* helios convert — rewrites a .safetensors file with its floating-point tensors in another dtype
 * (bf16 for the weights we ship: half the bytes, and what the loaders run as is). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"
#include "tools/args.h"
#include "tools/commands.h"

static void usage(FILE *f) {
    fprintf(f, "usage: helios convert IN.safetensors OUT.safetensors [--dtype bf16|f32]\n"
               "                      [--prefix P]\n"
               "\n"
               "Writes OUT with every floating-point tensor of IN (F32, BF16, F16, F64) in the\n"
               "chosen dtype (default bf16: round to nearest even, as torch's .to(bfloat16)),\n"
               "other tensors and the __metadata__ strings as they are. OUT is written to\n"
               "OUT.part and renamed when complete.\n"
               "  --prefix P   only the tensors whose name starts with P, without it: e.g.\n"
               "               --prefix ema. takes a checkpoint's EMA weights out of its\n"
               "               optimizer.safetensors\n"
               "A bad command line exits with status 2.\n");
}

static bool is_float(hl_dtype t) {
    return t == HL_F32 || t == HL_BF16 || t == HL_F16 || t == HL_F64;
}

/* Entry i of out: t converted to dt (a new buffer in *owned), or a view of t. */
static hl_status convert_one(const hl_st_tensor *t, hl_dtype dt, hl_st_entry *e, void **owned,
                             hl_error *err) {
    e->name = t->name;
    e->t = hl_st_view(t);
    *owned = NULL;
    if (!is_float(t->dtype) || t->dtype == dt) return HL_OK;
    size_t n = (size_t)hl_tensor_numel(&e->t);
    float *f = malloc((n ? n : 1) * sizeof *f);
    void *o = dt == HL_F32 ? (void *)f : malloc((n ? n : 1) * hl_dtype_size(dt));
    if (!f || !o) {
        free(f);
        if (o != f) free(o);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", t->name);
    }
    hl_convert_to_f32(t->dtype, t->data, f, n); /* a float type: cannot fail */
    if (dt == HL_BF16) {
        hl_bf16 *b = o;
        for (size_t i = 0; i < n; i++) b[i] = hl_f32_to_bf16(f[i]);
        free(f);
    }
    e->t.data = o;
    e->t.dtype = dt;
    *owned = o;
    return HL_OK;
}

static hl_status convert(const char *in, const char *out, hl_dtype dt, const char *prefix,
                         hl_error *err) {
    hl_safetensors *st;
    HL_TRY(hl_st_open(in, &st, err));
    size_t n = 0, nm = st->metadata ? st->metadata->n : 0, lp = strlen(prefix);
    hl_st_entry *e = calloc(st->n + 1, sizeof *e);
    void **owned = calloc(st->n + 1, sizeof *owned);
    const char **meta = calloc(2 * nm + 1, sizeof *meta);
    hl_status st_ = e && owned && meta ? HL_OK : hl_fail(err, HELIOS_ERR_OOM, "out of memory");
    for (size_t i = 0; st_ == HL_OK && i < st->n; i++) {
        if (strncmp(st->tensors[i].name, prefix, lp)) continue;
        st_ = convert_one(&st->tensors[i], dt, &e[n], &owned[n], err);
        e[n++].name += lp;
    }
    if (st_ == HL_OK && n == 0)
        st_ = hl_fail(err, HELIOS_ERR_INVALID_ARG, "%s: no tensor name starts with '%s'", in,
                      prefix);
    size_t k = 0;
    for (size_t i = 0; st_ == HL_OK && i < nm; i++) /* strings only, as the format allows */
        if (st->metadata->items[i].type == HL_JSON_STRING) {
            meta[k++] = st->metadata->keys[i];
            meta[k++] = st->metadata->items[i].string;
        }
    if (st_ == HL_OK) st_ = hl_st_write(out, e, n, nm ? meta : NULL, err);
    for (size_t i = 0; owned && i < n; i++) free(owned[i]);
    free(e), free(owned), free(meta);
    hl_st_close(st);
    return st_;
}

int cmd_convert(int argc, char **argv) {
    args a;
    args_init(&a, "helios convert", argc, argv);
    const char *path[2] = {NULL, NULL}, *dts = "bf16", *prefix = "";
    int np = 0;
    while (args_next(&a)) {
        int rc = 0;
        if (args_is(&a, "-h", "--help")) {
            usage(stdout);
            return 0;
        } else if (args_is(&a, NULL, "--dtype")) rc = args_str(&a, &dts);
        else if (args_is(&a, NULL, "--prefix")) rc = args_str(&a, &prefix);
        else if (a.opt[0] == '-' && a.opt[1]) rc = args_fail(&a, "unknown option '%s'", a.opt);
        else if (np == 2) rc = args_fail(&a, "two paths only (IN and OUT), not '%s'", a.opt);
        else path[np++] = a.opt;
        if (rc) return rc;
    }
    if (np < 2) {
        usage(stderr);
        return 2;
    }
    hl_dtype dt = !strcmp(dts, "bf16") ? HL_BF16 : !strcmp(dts, "f32") ? HL_F32 : HL_DTYPE_COUNT;
    if (dt == HL_DTYPE_COUNT) return args_fail(&a, "--dtype must be bf16 or f32, not '%s'", dts);
    if (!strcmp(path[0], path[1])) return args_fail(&a, "IN and OUT are the same file");
    hl_error err = {0};
    if (convert(path[0], path[1], dt, prefix, &err) != HL_OK) {
        fprintf(stderr, "helios convert: %s\n", err.msg);
        return 1;
    }
    return 0;
}
