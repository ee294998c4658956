/* safetensors.c — validating reader for the safetensors format (see safetensors.h).
 *
 * The header is untrusted: every number in it is range-checked before it is used to form a
 * pointer, so a hostile file yields HELIOS_ERR_FORMAT, never an out-of-bounds read. The one hazard
 * outside our control is another process truncating a file while it is mapped (SIGBUS), which no
 * mmap reader can prevent. */
#include "io/safetensors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/file.h"

/* A header larger than this is not a real header but an attempt to make us parse garbage; the
 * reference implementation uses the same bound. */
#define HL_ST_MAX_HEADER 100000000ull

static const char k_metadata_key[] = "__metadata__";

static uint64_t read_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- header validation ---------------------------------------------------------------------- */

/* What every entry is checked against (the data section), and what messages name. */
typedef struct st_ctx {
    const char *file;
    const unsigned char *data; /* start of the data section */
    size_t data_size;
    hl_error *err;
} st_ctx;

/* Rejects an entry giving dtype, shape or data_offsets twice: readers differ in which duplicate
 * they keep, and a header that means one thing to us and another to PyTorch is what an attack
 * needs. */
static hl_status check_entry_keys(const st_ctx *c, const char *name, const hl_json *e) {
    static const char *const known[] = {"dtype", "shape", "data_offsets"};
    int seen[3] = {0, 0, 0};
    for (size_t i = 0; i < e->n; i++) /* unknown keys are ignored, as the reference does */
        for (int k = 0; k < 3; k++)
            if (strcmp(e->keys[i], known[k]) == 0 && seen[k]++)
                return hl_fail(c->err, HELIOS_ERR_FORMAT, "%s: tensor '%s': key '%s' appears twice",
                               c->file, name, known[k]);
    return HL_OK;
}

static hl_status parse_dtype(const st_ctx *c, const char *name, const hl_json *e, hl_dtype *out) {
    const hl_json *d = hl_json_get(e, "dtype");
    if (!d || d->type != HL_JSON_STRING)
        return hl_fail(c->err, HELIOS_ERR_FORMAT,
                       "%s: tensor '%s': \"dtype\" missing or not a string", c->file, name);
    if (hl_dtype_parse(d->string, d->len, out) != 0)
        return hl_fail(c->err, HELIOS_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.32s'", c->file,
                       name, d->string);
    return HL_OK;
}

/* Fills t->ndim and t->shape and returns the element count in *numel, overflow-checked. */
static hl_status parse_shape(const st_ctx *c, const char *name, const hl_json *e, hl_st_tensor *t,
                             int64_t *numel) {
    const hl_json *s = hl_json_get(e, "shape");
    if (!s || s->type != HL_JSON_ARRAY)
        return hl_fail(c->err, HELIOS_ERR_FORMAT,
                       "%s: tensor '%s': \"shape\" missing or not an array", c->file, name);
    if (s->n > HL_MAX_DIMS)
        return hl_fail(c->err, HELIOS_ERR_FORMAT,
                       "%s: tensor '%s': shape has %zu dimensions, at most %d are supported",
                       c->file, name, s->n, HL_MAX_DIMS);
    /* The product is checked with zero entries counted as 1: a shape like [0, 2^62, 2^62] holds
     * no elements, but its strides (hl_tensor_make) would still overflow int64. */
    int64_t n = 1, span = 1;
    int overflow = 0;
    for (size_t i = 0; i < s->n; i++) {
        const hl_json *d = &s->items[i];
        if (d->type != HL_JSON_NUMBER || !d->is_int || d->integer < 0)
            return hl_fail(c->err, HELIOS_ERR_FORMAT,
                           "%s: tensor '%s': shape[%zu] is not a non-negative integer", c->file,
                           name, i);
        t->shape[i] = d->integer;
        /* Keep going after an overflow so a later negative entry gets its own message. */
        if (!overflow && !hl_mul_ok(span, d->integer ? d->integer : 1, &span)) overflow = 1;
        n = d->integer ? n : 0;
    }
    t->ndim = (int)s->n;
    if (overflow) {
        char buf[256];
        return hl_fail(c->err, HELIOS_ERR_FORMAT, "%s: tensor '%s': shape %s overflows int64",
                       c->file, name, hl_shape_str(t->ndim, t->shape, buf, sizeof buf));
    }
    if (n != 0) n = span;
    *numel = n;
    return HL_OK;
}

/* Checks data_offsets against the data section and the byte count dtype x shape needs. */
static hl_status parse_offsets(const st_ctx *c, const char *name, const hl_json *e, int64_t numel,
                               hl_st_tensor *t) {
    const hl_json *o = hl_json_get(e, "data_offsets");
    if (!o || o->type != HL_JSON_ARRAY || o->n != 2 || o->items[0].type != HL_JSON_NUMBER ||
        o->items[1].type != HL_JSON_NUMBER || !o->items[0].is_int || !o->items[1].is_int)
        return hl_fail(c->err, HELIOS_ERR_FORMAT,
                       "%s: tensor '%s': \"data_offsets\" must be [begin, end] integers", c->file,
                       name);
    int64_t begin = o->items[0].integer, end = o->items[1].integer;
    if (begin < 0 || begin > end)
        return hl_fail(c->err, HELIOS_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%lld, %lld] are not 0 <= begin <= end",
                       c->file, name, (long long)begin, (long long)end);
    if ((uint64_t)end > (uint64_t)c->data_size)
        return hl_fail(
            c->err, HELIOS_ERR_FORMAT,
            "%s: tensor '%s': data_offsets [%lld, %lld] run past the data section (%zu bytes)",
            c->file, name, (long long)begin, (long long)end, c->data_size);
    int64_t nbytes;
    char buf[256];
    hl_shape_str(t->ndim, t->shape, buf, sizeof buf);
    if (!hl_mul_ok(numel, (int64_t)hl_dtype_size(t->dtype), &nbytes))
        return hl_fail(c->err, HELIOS_ERR_FORMAT, "%s: tensor '%s': %s %s is too large", c->file,
                       name, hl_dtype_name(t->dtype), buf);
    if (nbytes != end - begin)
        return hl_fail(
            c->err, HELIOS_ERR_FORMAT,
            "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld bytes, but %s %s needs %lld",
            c->file, name, (long long)begin, (long long)end, (long long)(end - begin),
            hl_dtype_name(t->dtype), buf, (long long)nbytes);
    t->data = c->data + begin;
    t->nbytes = (size_t)nbytes;
    return HL_OK;
}

static hl_status parse_entry(const st_ctx *c, const char *name, const hl_json *e, hl_st_tensor *t) {
    t->name = name;
    if (e->type != HL_JSON_OBJECT)
        return hl_fail(c->err, HELIOS_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object",
                       c->file, name);
    int64_t numel = 0;
    HL_TRY(check_entry_keys(c, name, e));
    HL_TRY(parse_dtype(c, name, e, &t->dtype));
    HL_TRY(parse_shape(c, name, e, t, &numel));
    return parse_offsets(c, name, e, numel, t);
}

static hl_status check_metadata(const st_ctx *c, const hl_json *m) {
    if (m->type != HL_JSON_OBJECT)
        return hl_fail(c->err, HELIOS_ERR_FORMAT, "%s: \"%s\" is not a JSON object", c->file,
                       k_metadata_key);
    for (size_t i = 0; i < m->n; i++)
        if (m->items[i].type != HL_JSON_STRING)
            return hl_fail(c->err, HELIOS_ERR_FORMAT, "%s: \"%s\": value of '%s' is not a string",
                           c->file, k_metadata_key, m->keys[i]);
    return HL_OK;
}

static int cmp_by_name(const void *a, const void *b) {
    const hl_st_tensor *x = *(const hl_st_tensor *const *)a, *y = *(const hl_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_by_offset(const void *a, const void *b) {
    const hl_st_tensor *x = *(const hl_st_tensor *const *)a, *y = *(const hl_st_tensor *const *)b;
    const unsigned char *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

/* A validated tensor's byte range [begin, end) within the data section. */
static size_t tensor_begin(const st_ctx *c, const hl_st_tensor *t) {
    return (size_t)((const unsigned char *)t->data - c->data);
}

static size_t tensor_end(const st_ctx *c, const hl_st_tensor *t) {
    return tensor_begin(c, t) + t->nbytes;
}

/* Names unique, byte ranges disjoint: both by sorting a scratch array of pointers. */
static hl_status check_tensor_set(const st_ctx *c, hl_st_tensor *tensors, size_t n) {
    if (n < 2) return HL_OK;
    const hl_st_tensor **v = malloc(n * sizeof *v);
    if (!v) return hl_fail(c->err, HELIOS_ERR_OOM, "%s: out of memory", c->file);
    for (size_t i = 0; i < n; i++) v[i] = &tensors[i];
    hl_status st = HL_OK;

    qsort(v, n, sizeof *v, cmp_by_name);
    for (size_t i = 1; i < n && st == HL_OK; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0)
            st = hl_fail(c->err, HELIOS_ERR_FORMAT,
                         "%s: tensor '%s': name appears twice in the header", c->file, v[i]->name);

    if (st == HL_OK) {
        qsort(v, n, sizeof *v, cmp_by_offset);
        /* Sorted by start, only the range reaching furthest so far can contain a later start.
         * Empty tensors occupy no bytes and may sit anywhere, even inside another tensor. */
        const hl_st_tensor *reach = NULL;
        for (size_t i = 0; i < n && st == HL_OK; i++) {
            if (v[i]->nbytes == 0) continue;
            if (reach && tensor_begin(c, v[i]) < tensor_end(c, reach))
                st = hl_fail(c->err, HELIOS_ERR_FORMAT,
                             "%s: tensor '%s': bytes [%zu, %zu) overlap tensor '%s' [%zu, %zu)",
                             c->file, v[i]->name, tensor_begin(c, v[i]), tensor_end(c, v[i]),
                             reach->name, tensor_begin(c, reach), tensor_end(c, reach));
            if (!reach || tensor_end(c, v[i]) > tensor_end(c, reach)) reach = v[i];
        }
    }
    free(v);
    return st;
}

/* Walks the header object: tensors in order, the metadata aside. */
static hl_status parse_header(const st_ctx *c, hl_safetensors *st) {
    const hl_json *h = st->header;
    if (h->type != HL_JSON_OBJECT)
        return hl_fail(c->err, HELIOS_ERR_FORMAT, "%s: header is not a JSON object", c->file);
    st->tensors = calloc(h->n ? h->n : 1, sizeof *st->tensors);
    if (!st->tensors) return hl_fail(c->err, HELIOS_ERR_OOM, "%s: out of memory", c->file);
    for (size_t i = 0; i < h->n; i++) {
        if (strcmp(h->keys[i], k_metadata_key) == 0) {
            if (st->metadata)
                return hl_fail(c->err, HELIOS_ERR_FORMAT, "%s: \"%s\" appears twice", c->file,
                               k_metadata_key);
            HL_TRY(check_metadata(c, &h->items[i]));
            st->metadata = &h->items[i];
            continue;
        }
        HL_TRY(parse_entry(c, h->keys[i], &h->items[i], &st->tensors[st->n]));
        st->n++;
    }
    return check_tensor_set(c, st->tensors, st->n);
}

hl_status hl_st_parse(const void *buf, size_t size, const char *name, hl_safetensors **out,
                      hl_error *err) {
    if (!out || (!buf && size))
        return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_st_parse: NULL argument");
    *out = NULL;
    if (!name) name = "<memory>";
    if (size < 8)
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "%s: file is %zu bytes, too short for a safetensors header", name, size);
    const unsigned char *base = buf;
    uint64_t hlen = read_le64(base);
    if (hlen > size - 8)
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "%s: header length %llu runs past the end of the file (%zu bytes)", name,
                       (unsigned long long)hlen, size);
    if (hlen > HL_ST_MAX_HEADER)
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "%s: header length %llu exceeds the limit of %llu bytes", name,
                       (unsigned long long)hlen, HL_ST_MAX_HEADER);

    hl_safetensors *st = calloc(1, sizeof *st);
    char *path = strdup(name);
    if (!st || !path) {
        free(st);
        free(path);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory", name);
    }
    st->path = path;
    st->base = base;
    st->size = size;
    st_ctx c = {
        .file = name, .data = base + 8 + hlen, .data_size = size - 8 - (size_t)hlen, .err = err};

    hl_status s = hl_json_parse((const char *)base + 8, (size_t)hlen, &st->header, err);
    if (s != HL_OK) hl_error_prefix(err, "%s: header is not valid JSON", name);
    else s = parse_header(&c, st);
    if (s != HL_OK) {
        hl_st_close(st);
        return s;
    }
    *out = st;
    return HL_OK;
}

hl_status hl_st_open(const char *path, hl_safetensors **out, hl_error *err) {
    if (!path || !out) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_st_open: NULL argument");
    *out = NULL;
    int fd;
    size_t size;
    HL_TRY(hl_file_open_regular(path, SIZE_MAX, "safetensors file", &fd, &size, err));
    if (size == 0) { /* mmap refuses length 0; the parser reports the file as too short */
        close(fd);
        return hl_st_parse("", 0, path, out, err);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED)
        return hl_fail(err, HELIOS_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    hl_status s = hl_st_parse(map, size, path, out, err);
    if (s != HL_OK) {
        munmap(map, size);
        return s;
    }
    (*out)->mapped = 1;
    return HL_OK;
}

void hl_st_close(hl_safetensors *st) {
    if (!st) return;
    if (st->mapped) munmap((void *)st->base, st->size);
    free(st->tensors);
    hl_json_free(st->header);
    free(st->path);
    free(st);
}

/* ---- access --------------------------------------------------------------------------------- */

const hl_st_tensor *hl_st_find(const hl_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

hl_tensor hl_st_view(const hl_st_tensor *t) {
    return hl_tensor_make((void *)t->data, t->dtype, t->ndim, t->shape);
}

const char *hl_st_meta(const hl_safetensors *st, const char *key) {
    return st ? hl_json_get_string(st->metadata, key) : NULL;
}

static int64_t tensor_numel(const hl_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i]; /* overflow excluded by hl_st_parse */
    return n;
}

/* Finds `name` and checks its element count; the shared front half of the two readers. */
static hl_status find_checked(const hl_safetensors *st, const char *name, int64_t numel,
                              const hl_st_tensor **out, hl_error *err) {
    if (!st || !name) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_st_read: NULL argument");
    const hl_st_tensor *t = hl_st_find(st, name);
    if (!t) return hl_fail(err, HELIOS_ERR_MISSING, "%s: tensor '%s': not found", st->path, name);
    int64_t have = tensor_numel(t);
    if (numel >= 0 && have != numel) {
        char buf[256];
        return hl_fail(err, HELIOS_ERR_SHAPE,
                       "%s: tensor '%s': has %lld elements %s, expected %lld", st->path, name,
                       (long long)have, hl_shape_str(t->ndim, t->shape, buf, sizeof buf),
                       (long long)numel);
    }
    *out = t;
    return HL_OK;
}

hl_status hl_st_read_f32(const hl_safetensors *st, const char *name, int64_t numel, float **out,
                         hl_error *err) {
    if (!out) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_st_read_f32: NULL argument");
    *out = NULL;
    const hl_st_tensor *t;
    HL_TRY(find_checked(st, name, numel, &t, err));
    if (t->dtype != HL_F32 && t->dtype != HL_BF16 && t->dtype != HL_F16 && t->dtype != HL_F64)
        return hl_fail(err, HELIOS_ERR_DTYPE, "%s: tensor '%s': dtype %s cannot be read as float32",
                       st->path, name, hl_dtype_name(t->dtype));
    size_t n = (size_t)tensor_numel(t);
    float *v = malloc(n ? n * sizeof *v : 1); /* n * 4 <= nbytes * 2: no overflow */
    if (!v) return hl_fail(err, HELIOS_ERR_OOM, "%s: tensor '%s': out of memory", st->path, name);
    if (n) hl_convert_to_f32(t->dtype, t->data, v, n); /* memcpy-based: alignment is no issue */
    *out = v;
    return HL_OK;
}

/* One element of integer dtype dt (es bytes, little-endian as the format defines, possibly
 * unaligned) as int64; -1 for a U64 value past INT64_MAX. */
static int load_int(hl_dtype dt, const unsigned char *p, size_t es, int64_t *out) {
    uint64_t u = 0;
    for (size_t b = es; b-- > 0;) u = u << 8 | p[b];
    if (dt == HL_BOOL) {
        *out = u != 0;
        return 0;
    }
    int is_signed = dt == HL_I64 || dt == HL_I32 || dt == HL_I16 || dt == HL_I8;
    if (is_signed && es < 8 && ((u >> (8 * es - 1)) & 1)) u |= ~(uint64_t)0 << (8 * es);
    if (!is_signed && u > (uint64_t)INT64_MAX) return -1;
    /* Two's complement by arithmetic, not by an implementation-defined conversion. */
    *out = (u >> 63) ? -(int64_t)~u - 1 : (int64_t)u;
    return 0;
}

static int is_integer_dtype(hl_dtype dt) {
    switch (dt) {
    case HL_I64:
    case HL_I32:
    case HL_I16:
    case HL_I8:
    case HL_U64:
    case HL_U32:
    case HL_U16:
    case HL_U8:
    case HL_BOOL: return 1;
    default: return 0;
    }
}

hl_status hl_st_read_i64(const hl_safetensors *st, const char *name, int64_t numel, int64_t **out,
                         hl_error *err) {
    if (!out) return hl_fail(err, HELIOS_ERR_INVALID_ARG, "hl_st_read_i64: NULL argument");
    *out = NULL;
    const hl_st_tensor *t;
    HL_TRY(find_checked(st, name, numel, &t, err));
    if (!is_integer_dtype(t->dtype))
        return hl_fail(err, HELIOS_ERR_DTYPE, "%s: tensor '%s': dtype %s cannot be read as int64",
                       st->path, name, hl_dtype_name(t->dtype));
    size_t n = (size_t)tensor_numel(t), es = hl_dtype_size(t->dtype);
    int64_t *v = malloc(n ? n * sizeof *v : 1); /* n * 8 <= nbytes * 8: bounded by the file */
    if (!v) return hl_fail(err, HELIOS_ERR_OOM, "%s: tensor '%s': out of memory", st->path, name);
    const unsigned char *p = t->data;
    for (size_t i = 0; i < n; i++) {
        if (load_int(t->dtype, p + i * es, es, &v[i]) != 0) {
            free(v);
            return hl_fail(err, HELIOS_ERR_DTYPE,
                           "%s: tensor '%s': element %zu does not fit in int64", st->path, name, i);
        }
    }
    *out = v;
    return HL_OK;
}
