/* The configuration file of `helios train` (docs/training.md): strict JSON, every key known, every
 * value type- and range-checked; an error names the file and the key path. */
#ifndef HL_TOOLS_TRAIN_CONFIG_H
#define HL_TOOLS_TRAIN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "io/json.h"

typedef enum train_init { TRAIN_INIT_RANDOM = 0, TRAIN_INIT_MODEL } train_init;
typedef enum train_schedule { TRAIN_SCHED_CONSTANT = 0, TRAIN_SCHED_COSINE } train_schedule;

typedef struct train_cfg {
    const char *path;   /* the file */
    hl_json *root;      /* owns every string below */
    const char *model;  /* model folder, transformer folder or config.json */
    train_init init;    /* "random" | "model" */
    const char *output; /* output folder */
    const char *component;
    int64_t steps;
    int batch, accumulation;
    double lr, min_lr;
    int64_t warmup;
    train_schedule schedule;
    double betas[2], eps, weight_decay, clip, ema;
    int64_t ema_start;
    uint64_t seed;
    int threads;
    int64_t checkpoint_every;
    int keep;
    const char *data;         /* "procedural" or a folder */
    const hl_json *objective; /* the opaque block (an object with "type") */
    const char *objective_type;
    int64_t validation_every;
    /* "lora": {"rank", "alpha", "targets", "init"}: train adapters, not the weights */
    int lora_rank;               /* 0: no LoRA */
    double lora_alpha;           /* default: the rank */
    const hl_json *lora_targets; /* array of module-name patterns, or NULL: every eligible one */
    const char *lora_init;       /* an adapter file to start from, or NULL: PEFT's init */
} train_cfg;

/* Reads and checks path; on failure err says "PATH: 'KEY' why". */
hl_status train_cfg_load(const char *path, train_cfg *c, hl_error *err);
void train_cfg_free(train_cfg *c);

/* A hash of everything that changes the numbers a run computes (not steps for a constant
 * schedule, nor output, threads, checkpoint_every, keep, validation_every), so a resume with an
 * edited configuration that would not continue the same run is refused. model_config is the
 * model's config.json text. */
uint64_t train_cfg_hash(const train_cfg *c, const char *model_config);

/* The config of a component trained on its own (sub "vae", "text_encoder"): "model" is a model
 * folder (its SUB/), the component's folder, or a config.json. Sets cfg_path and dir (the weights
 * folder; n bytes each), reads the config into *text (malloc'ed) and parses it into *j (free
 * with hl_json_free). Errors name the configuration's "model" or the config file. */
hl_status train_component_config(const train_cfg *c, const char *sub, char *cfg_path, char *dir,
                                 size_t n, char **text, hl_json **j, hl_error *err);

#endif
