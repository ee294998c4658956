#include "io/safetensors_write.h"
#include "io/media.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A growable string for the JSON header. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256) + n;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

static void put_json_string(sbuf *b, const char *s) {
    puts_(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') snprintf(esc, sizeof esc, "\\%c", c);
        else if (c < 0x20) snprintf(esc, sizeof esc, "\\u%04x", c);
        else esc[0] = (char)c, esc[1] = '\0';
        puts_(b, esc);
    }
    puts_(b, "\"");
}

hl_status hl_st_write(const char *path, const hl_st_entry *entries, size_t n,
                      const char *const *metadata, hl_error *err) {
    sbuf h = {0};
    char num[64];
    size_t off = 0;
    puts_(&h, "{");
    if (metadata && metadata[0]) {
        puts_(&h, "\"__metadata__\":{");
        for (size_t i = 0; metadata[i] && metadata[i + 1]; i += 2) {
            if (i) puts_(&h, ",");
            put_json_string(&h, metadata[i]);
            puts_(&h, ":");
            put_json_string(&h, metadata[i + 1]);
        }
        puts_(&h, "}");
    }
    for (size_t i = 0; i < n; i++) {
        const hl_tensor *t = &entries[i].t;
        size_t bytes = hl_tensor_nbytes(t);
        if (i || (metadata && metadata[0])) puts_(&h, ",");
        put_json_string(&h, entries[i].name);
        puts_(&h, ":{\"dtype\":\"");
        puts_(&h, hl_dtype_name(t->dtype));
        puts_(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            puts_(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
        puts_(&h, num);
        off += bytes;
    }
    puts_(&h, "}");
    while (!h.oom && h.n % 8) puts_(&h, " "); /* data section 8-byte aligned */
    if (h.oom) {
        free(h.p);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory for the header", path);
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.part", path);
    /* created and locked (io/media.h): two runs saving to the same path must not write into one
     * file, and a failure here must not remove the other run's */
    int fd = hl_media_part_create(tmp, err);
    if (fd < 0) {
        free(h.p);
        return err ? err->status : HELIOS_ERR_IO;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        free(h.p);
        remove(tmp);
        close(fd);
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot create: %s", tmp, strerror(e));
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    int ok = fwrite(len, 1, 8, f) == 8 && fwrite(h.p, 1, h.n, f) == h.n;
    for (size_t i = 0; ok && i < n; i++) {
        size_t bytes = hl_tensor_nbytes(&entries[i].t);
        ok = fwrite(entries[i].t.data, 1, bytes, f) == bytes;
    }
    ok = fflush(f) == 0 && ok;
    int e = errno;
    free(h.p);
    /* sync and rename while the lock is held; fclose then releases it */
    hl_status st = ok ? hl_media_commit(fd, tmp, path, err)
                      : hl_fail(err, HELIOS_ERR_IO, "%s: write failed: %s", tmp, strerror(e));
    if (st != HL_OK) remove(tmp);
    fclose(f);
    return st;
}
