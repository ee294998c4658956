/* Reading files the user hands us (configs, tokenizers, weights, media) without trusting them.
 *
 * Every reader of a user file goes through here, so the rules live in one place:
 *   - the path must name a regular file: a directory, FIFO, socket or device (/dev/zero,
 *     /dev/stdin, a terminal) is refused with "PATH: not a regular file (KIND)", before any read
 *     and without blocking (opened O_NONBLOCK, so a FIFO with no writer does not hang);
 *   - a whole-file read has a size cap: "PATH: N bytes, more than the M-byte limit for a KIND";
 *   - exactly st_size bytes are read; a file that shrinks or grows meanwhile is an error.
 * The caps are far above any real file of the kind (sizes of the real umT5 / Wan files in the
 * comments) and far below what would hurt a machine. Weights are mmap'ed, not read: they get the
 * regular-file check (hl_file_open_regular). Media go to FFmpeg (src/io/video_read.c): the same
 * check before FFmpeg opens them, and a size cap (HL_FILE_MAX_IMAGE / HL_FILE_MAX_VIDEO). */
#ifndef HL_CORE_FILE_H
#define HL_CORE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* config.json, model_index.json, scheduler_config.json: real ones are under 2 KB. */
#define HL_FILE_MAX_CONFIG ((size_t)16 << 20)
/* *.safetensors.index.json: about 100 KB for a 14B transformer (one line per tensor). */
#define HL_FILE_MAX_INDEX ((size_t)16 << 20)
/* tokenizer.json: 16.8 MB for umT5-xxl (250k pieces and the base64 charsmap). */
#define HL_FILE_MAX_TOKENIZER_JSON ((size_t)64 << 20)
/* spiece.model: 4.5 MB for umT5-xxl. */
#define HL_FILE_MAX_SPM ((size_t)64 << 20)
/* --image: image demuxers hand the whole file to the decoder in one packet; an uncompressed
 * 16384 x 16384 RGB picture (the largest side we accept) is 805 MB. */
#define HL_FILE_MAX_IMAGE ((uint64_t)1 << 30)
/* --video: streamed frame by frame, so only a bound against absurd inputs (an hour of 4K H.264
 * at a high bitrate is ~30 GB). */
#define HL_FILE_MAX_VIDEO ((uint64_t)256 << 30)

/* Opens path read-only (O_NONBLOCK | O_NOCTTY | O_CLOEXEC) and checks that it is a regular file
 * of at most max_bytes (SIZE_MAX: any size that fits in memory); *fd and *size on success, the
 * caller closes *fd. kind names the file in messages ("JSON config", "spiece.model"). Errors are
 * HELIOS_ERR_IO (cannot open, not a regular file) and HELIOS_ERR_FORMAT (over the cap). */
hl_status hl_file_open_regular(const char *path, size_t max_bytes, const char *kind, int *fd,
                               size_t *size, hl_error *err);

/* The whole file in a new malloc'ed buffer with a NUL after the last byte (*len excludes it). */
hl_status hl_file_read_all(const char *path, size_t max_bytes, const char *kind, char **buf,
                           size_t *len, hl_error *err);

/* For a path handed on to a library that opens it itself (FFmpeg): succeeds only if it names a
 * regular file; never opens it. */
hl_status hl_file_check_regular(const char *path, hl_error *err);

/* Whether path exists and names a regular file (a probe that neither opens nor blocks). */
bool hl_file_is_regular(const char *path);

#endif
