/* Drawing for the evaluator's pictures (plot.c, sheet.c): pixels and text in a built-in 3x5 pixel
 * font drawn at 2x (no font dependency). */
#include <string.h>

#include "eval/eval.h"

/* 3x5 glyphs: five rows top to bottom, each an octal digit (4 = left column, 1 = right). */
static const char *glyph(char c) {
    static const char *const az[26] = {
        "25755", "65656", "34443", "65556", "74647", "74644", "34553", "55755", "72227",
        "11152", "55655", "44447", "57755", "65555", "25552", "65644", "25563", "65655",
        "34216", "72222", "55557", "55552", "55775", "55255", "55222", "71247"};
    static const char *const digits[10] = {"75557", "26227", "61247", "61216", "55711",
                                           "74616", "34757", "71122", "75757", "75716"};
    if (c >= 'a' && c <= 'z') return az[c - 'a'];
    if (c >= 'A' && c <= 'Z') return az[c - 'A'];
    if (c >= '0' && c <= '9') return digits[c - '0'];
    switch (c) {
    case '.': return "00002";
    case '-': return "00700";
    case '_': return "00007";
    case ':': return "02020";
    case '+': return "02720";
    default: return "00000";
    }
}

void hl_canvas_dot(hl_canvas *c, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    memcpy(c->px + 3 * ((size_t)y * c->w + x), rgb, 3);
}

void hl_canvas_text(hl_canvas *c, int x, int y, const char *s, const uint8_t rgb[3]) {
    for (; *s; s++, x += 8) { /* glyphs drawn at 2x: 6 x 10 pixels plus spacing */
        const char *g = glyph(*s);
        for (int row = 0; row < 5; row++)
            for (int col = 0; col < 3; col++)
                if ((g[row] - '0') & (4 >> col))
                    for (int k = 0; k < 4; k++)
                        hl_canvas_dot(c, x + 2 * col + (k & 1), y + 2 * row + (k >> 1), rgb);
    }
}
