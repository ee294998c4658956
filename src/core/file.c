/* file.c — opening and reading user files with the rules of file.h. */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *type_name(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a plain file";
}

static hl_status not_regular(const char *path, mode_t m, hl_error *err) {
    return hl_fail(err, HELIOS_ERR_IO, "%s: not a regular file (%s)", path, type_name(m));
}

static hl_status check_size(const char *path, const struct stat *sb, size_t max_bytes,
                            const char *kind, hl_error *err) {
    if (sb->st_size < 0 || (uint64_t)sb->st_size > (uint64_t)max_bytes) {
        if (max_bytes == SIZE_MAX)
            return hl_fail(err, HELIOS_ERR_IO,
                           "%s: %lld bytes, too large for this machine's memory", path,
                           (long long)sb->st_size);
        return hl_fail(err, HELIOS_ERR_FORMAT,
                       "%s: %lld bytes, more than the %zu-byte limit for a %s", path,
                       (long long)sb->st_size, max_bytes, kind);
    }
    return HL_OK;
}

hl_status hl_file_check_regular(const char *path, hl_error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return hl_fail(err, HELIOS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return S_ISREG(sb.st_mode) ? HL_OK : not_regular(path, sb.st_mode, err);
}

bool hl_file_is_regular(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

hl_status hl_file_open_regular(const char *path, size_t max_bytes, const char *kind, int *fd,
                               size_t *size, hl_error *err) {
    *fd = -1;
    *size = 0;
    /* stat first: a device is refused without being opened (opening some has side effects) */
    HL_TRY(hl_file_check_regular(path, err));
    /* O_NONBLOCK: should the path become a FIFO between the stat and the open, the open does not
     * wait for a writer (on a regular file the flag changes nothing). */
    int f = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (f < 0) return hl_fail(err, HELIOS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    hl_status st = HL_OK;
    if (fstat(f, &sb) != 0)
        st = hl_fail(err, HELIOS_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode)) st = not_regular(path, sb.st_mode, err);
    else st = check_size(path, &sb, max_bytes, kind, err);
    if (st != HL_OK) {
        close(f);
        return st;
    }
    *fd = f;
    *size = (size_t)sb.st_size;
    return HL_OK;
}

hl_status hl_file_read_all(const char *path, size_t max_bytes, const char *kind, char **buf,
                           size_t *len, hl_error *err) {
    *buf = NULL;
    *len = 0;
    if (max_bytes == SIZE_MAX) max_bytes--; /* room for the NUL */
    int fd;
    size_t size;
    HL_TRY(hl_file_open_regular(path, max_bytes, kind, &fd, &size, err));
    char *b = malloc(size + 1);
    if (!b) {
        close(fd);
        return hl_fail(err, HELIOS_ERR_OOM, "%s: out of memory (%zu bytes)", path, size);
    }
    hl_status st = HL_OK;
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, b + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = hl_fail(err, HELIOS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (r == 0) {
            st = hl_fail(err, HELIOS_ERR_IO, "%s: shrank from %zu to %zu bytes while being read",
                         path, size, got);
            break;
        }
        got += (size_t)r;
    }
    if (st == HL_OK) { /* one byte more would mean the file grew since the fstat */
        char extra;
        ssize_t r;
        do r = read(fd, &extra, 1);
        while (r < 0 && errno == EINTR);
        if (r > 0)
            st = hl_fail(err, HELIOS_ERR_IO, "%s: grew past %zu bytes while being read", path,
                         size);
        else if (r < 0)
            st = hl_fail(err, HELIOS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    }
    close(fd);
    if (st != HL_OK) {
        free(b);
        return st;
    }
    b[size] = '\0';
    *buf = b;
    *len = size;
    return HL_OK;
}
