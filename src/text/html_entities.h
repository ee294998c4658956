/* The HTML5 named character references ("amp;" -> "&"), as Python's html.unescape knows them:
 * names with their ';' and, for the legacy ones, also without it ("amp"). Sorted by name
 * (byte order) for hl_html_entity_find. Values are 1 or 2 code points in UTF-8. */
#ifndef HL_HTML_ENTITIES_H
#define HL_HTML_ENTITIES_H

#include <stddef.h>

typedef struct hl_html_entity {
    const char *name;
    const char *value;
} hl_html_entity;

extern const hl_html_entity hl_html_entities[];
extern const int hl_html_entities_count;

/* The entity named exactly name[0..len), or NULL (binary search; in prompt_clean.c). */
const hl_html_entity *hl_html_entity_find(const char *name, size_t len);

#endif
