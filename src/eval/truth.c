/* Reading a ground-truth JSON-lines file written by `helios world --truth`. */
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "eval/eval.h"
#include "io/json.h"

static hl_status add_caption(hl_truth *t, int64_t frame, const char *cap, hl_error *err) {
    if (t->n > 0 && !strcmp(t->caption[t->n - 1], cap)) return HL_OK;
    if ((t->n & (t->n - 1)) == 0) { /* grow at powers of two */
        size_t cap_n = t->n ? (size_t)t->n * 2 : 1;
        int64_t *s = realloc(t->start, cap_n * sizeof *s);
        if (s) t->start = s;
        char **c = realloc(t->caption, cap_n * sizeof *c);
        if (c) t->caption = c;
        if (!s || !c) return hl_fail(err, HELIOS_ERR_OOM, "truth: out of memory");
    }
    if (!(t->caption[t->n] = strdup(cap)))
        return hl_fail(err, HELIOS_ERR_OOM, "truth: out of memory");
    t->start[t->n++] = frame;
    return HL_OK;
}

static hl_status parse_line(hl_truth *t, const char *path, const char *line, size_t len,
                            int64_t lineno, hl_error *err) {
    hl_json *j;
    if (hl_json_parse(line, len, &j, err) != HL_OK) {
        hl_error_prefix(err, "%s line %lld", path, (long long)lineno);
        return HELIOS_ERR_FORMAT;
    }
    int64_t frame, w, h;
    const char *cap = hl_json_get_string(j, "caption");
    hl_status st = HL_OK;
    if (hl_json_get_int(j, "frame", &frame) || hl_json_get_int(j, "width", &w) ||
        hl_json_get_int(j, "height", &h) || !cap)
        st = hl_fail(err, HELIOS_ERR_FORMAT,
                     "%s line %lld: not a world truth line (needs frame, width, height, "
                     "caption)",
                     path, (long long)lineno);
    else if (frame != t->frames)
        st = hl_fail(err, HELIOS_ERR_FORMAT, "%s line %lld: frame %lld, expected %lld", path,
                     (long long)lineno, (long long)frame, (long long)t->frames);
    else if (t->frames > 0 && (w != t->width || h != t->height))
        st = hl_fail(err, HELIOS_ERR_FORMAT,
                     "%s line %lld: frame size %lldx%lld, earlier lines %dx%d", path,
                     (long long)lineno, (long long)w, (long long)h, t->width, t->height);
    else if (w < 1 || h < 1 || w > 1 << 20 || h > 1 << 20)
        st = hl_fail(err, HELIOS_ERR_FORMAT, "%s line %lld: bad frame size", path,
                     (long long)lineno);
    if (st == HL_OK) {
        t->width = (int)w, t->height = (int)h;
        st = add_caption(t, frame, cap, err);
        t->frames++;
    }
    hl_json_free(j);
    return st;
}

hl_status hl_truth_load(const char *path, hl_truth *out, hl_error *err) {
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    HL_TRY(hl_file_read_all(path, (size_t)1 << 32, "truth file", &buf, &len, err));
    hl_status st = HL_OK;
    int64_t lineno = 0;
    for (size_t i = 0; i < len && st == HL_OK;) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        lineno++;
        if (e > i) st = parse_line(out, path, buf + i, e - i, lineno, err);
        i = e + 1;
    }
    free(buf);
    if (st == HL_OK && out->frames == 0)
        st = hl_fail(err, HELIOS_ERR_FORMAT, "%s: no truth lines", path);
    if (st != HL_OK) hl_truth_release(out);
    return st;
}

void hl_truth_release(hl_truth *t) {
    for (int i = 0; i < t->n; i++) free(t->caption[i]);
    free(t->caption);
    free(t->start);
    memset(t, 0, sizeof *t);
}

const char *hl_truth_caption(const hl_truth *t, int64_t f) {
    int lo = 0, hi = t->n - 1; /* the last change at or before f */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (t->start[mid] <= f) lo = mid;
        else hi = mid - 1;
    }
    return t->n ? t->caption[lo] : "";
}
