#!/usr/bin/env python3
"""Regenerates the seed corpora of the tokenizer, prompt and config fuzz targets under
fuzz/corpus/ (the committed files are this script's output; make_corpus.sh does safetensors and
json). Standard library only.

spm/             tiny spiece.model files written here: a precompiled charsmap (a real darts-clone
                 double array built below, with multi-byte keys sharing prefixes, so the seeds
                 reach every branch of the charsmap walk), byte fallback, whitespace as suffix,
                 user-defined / control / unused pieces; plus the 5 KB identity model of
                 tests/vectors and a few broken files
tokenizer_json/  the same models as Hugging Face tokenizer.json files
prompt/          prompts (HTML entities, whitespace runs, NUL, invalid UTF-8, charsmap keys)
config/          one selector byte ('0' transformer, '1' VAE, '2' UMT5, '3' scheduler,
                 '4' model_index.json, '5' sharded index) then the repository's real files
"""
import base64
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")
TINY = os.path.join(ROOT, "tests", "models", "tiny-random-model")
SP = "\u2581"


# ---- protobuf ------------------------------------------------------------------------------

def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return key(field, 2) + varint(len(b)) + b


def f_int(field, v):
    return key(field, 0) + varint(v & 0xFFFFFFFFFFFFFFFF)


def f_float(field, v):
    return key(field, 5) + struct.pack("<f", v)


# ---- darts-clone double array (what sentencepiece's precompiled charsmap holds) ----------------

def build_darts(pairs):
    """pairs: {key bytes: value}. Returns the units as in darts-clone: a node's children sit at
    pos ^ offset ^ label, its value (the label-0 leaf) at pos ^ offset."""
    trie = {}
    for k, v in pairs.items():
        node = trie
        for c in k:
            node = node.setdefault(c, {})
        node[None] = v
    units = {0: 0}
    used = {0}

    def place(node, pos):
        labels = sorted(c for c in node if c is not None)
        slots = ([0] if None in node else []) + labels
        off = 1
        while any((pos ^ off ^ s) in used or (pos ^ off ^ s) == 0 for s in slots):
            off += 1
        assert off < (1 << 21)
        for s in slots:
            used.add(pos ^ off ^ s)
        # this node's own unit keeps its label and leaf flag; set the offset
        units[pos] = units.get(pos, 0) | off << 10 | ((1 << 8) if None in node else 0)
        if None in node:
            units[pos ^ off] = 0x80000000 | node[None]
        for c in labels:
            child = pos ^ off ^ c
            units[child] = c
            place(node[c], child)

    place(trie, 0)
    units[0] &= ~(1 << 8)  # the root has no label and no leaf flag of its own
    n = max(units) + 1
    return [units.get(i, 0) for i in range(n)]


def charsmap(rules):
    """rules: [(from str, to str)] -> the precompiled_charsmap blob."""
    strings = bytearray()
    pairs = {}
    for src, dst in rules:
        pairs[src.encode()] = len(strings)
        strings += dst.encode() + b"\0"
    units = build_darts(pairs)
    blob = b"".join(struct.pack("<I", u) for u in units)
    return struct.pack("<I", len(blob)) + blob + bytes(strings)


# NFKC-like rules: compatibility forms, a composition (two code points as one key), spaces,
# deletions, an expansion; keys share their first bytes (EF xx, E2 xx, E3 xx)
RULES = [
    ("\ufb01", "fi"), ("\ufb02", "fl"), ("\uff21", "A"), ("\uff41", "a"), ("\uff42", "b"),
    ("\u2460", "1"), ("\u2461", "2"), ("\u3000", " "), ("\u00a0", " "), ("\t", " "),
    ("e\u0301", "\u00e9"), ("\u212b", "\u00c5"), ("\x1b", ""), ("\u200b", ""),
    ("x", "yy"), ("\u2026", "..."), ("  ", " "),
]
CHARSMAP = charsmap(RULES)

WORDS = ["the", "a", "red", "fox", "runs", "across", "snow", "mountain", "pass", "fi", "fl", "1",
         "2", "\u00e9", "\u00c5", "...", "yy", "A", "b", "\u65e5\u672c", "\U0001f3ac"]


def pieces_for(byte_fallback):
    p = [("<unk>", 0.0, 2), ("</s>", 0.0, 3), ("<pad>", 0.0, 3), (SP, -2.0, 1)]
    for i, w in enumerate(WORDS):
        p.append((SP + w, -3.0 - i * 0.1, 1))
        p.append((w, -4.0 - i * 0.1, 1))
    have = {s for s, _, _ in p}
    p += [(c, -6.0, 1) for c in "abcdefghijklmnopqrstuvwxyz." if c not in have]
    p += [("<extra_id_0>", 0.0, 4), ("ab", -1.0, 5)]  # user-defined, unused
    if byte_fallback:
        p += [("<0x%02X>" % b, 0.0, 6) for b in range(256)]
    return p


def spm_model(byte_fallback=False, suffix=False, cmap=CHARSMAP, dummy=True, remove_ws=True,
              model_type=1, name="nmt_nfkc"):
    out = bytearray()
    for s, score, t in pieces_for(byte_fallback):
        body = f_bytes(1, s) + f_float(2, score) + (f_int(3, t) if t != 1 else b"")
        out += f_bytes(1, body)
    tr = f_int(3, model_type) + f_int(4, len(pieces_for(byte_fallback))) + f_int(40, 0) + \
        f_int(41, -1) + f_int(42, 1) + f_int(43, 2) + f_bytes(45, "<unk>") + f_bytes(47, "</s>") + \
        f_bytes(48, "<pad>")
    if byte_fallback:
        tr += f_int(35, 1)
    if suffix:
        tr += f_int(24, 1)
    out += f_bytes(2, tr)
    ns = f_bytes(1, name) + (f_bytes(2, cmap) if cmap else b"") + f_int(3, int(dummy)) + \
        f_int(4, int(remove_ws)) + f_int(5, 1)
    out += f_bytes(3, ns)
    return bytes(out)


def tokenizer_json(byte_fallback=False, cmap=CHARSMAP, seq=True, prefix="always", post=True):
    p = pieces_for(byte_fallback)
    vocab = [[s, score] for s, score, _ in p]
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": t != 3, "special": t == 3}
             for i, (s, _, t) in enumerate(p) if t in (3, 4)]
    pre = {"type": "Precompiled", "precompiled_charsmap":
           base64.b64encode(cmap).decode() if cmap else None}
    rep = {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": SP}
    norm = {"type": "Sequence", "normalizers":
            [pre, rep, {"type": "Strip", "strip_left": True, "strip_right": True}]} if seq else pre
    meta = {"type": "Metaspace", "replacement": SP, "prepend_scheme": prefix, "split": True}
    d = {
        "version": "1.0", "truncation": None,
        "padding": {"pad_id": 2, "pad_token": "<pad>"} if post else None,
        "added_tokens": added, "normalizer": norm,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, meta]}
        if seq else meta,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "pair": [], "special_tokens": {"</s>": {"id": "</s>", "ids": [1],
                                                                    "tokens": ["</s>"]}}}
        if post else None,
        "decoder": {"type": "Metaspace", "replacement": SP, "prepend_scheme": prefix},
        "model": {"type": "Unigram", "unk_id": 0, "vocab": vocab, "byte_fallback": byte_fallback},
    }
    return json.dumps(d, ensure_ascii=False).encode()


PROMPTS = [
    "A red fox runs across a snowy mountain pass.",
    "  &lt;b&gt;bold&lt;/b&gt;  &amp;amp;  &#x1F3AC; &#128; &#0; &notit; &AMP &zwnj;\t\n",
    "\uff21\uff42\u3000\ufb01sh \u2460\u2461 e\u0301t\u00e9 \u212b \u2026 x\u200by\x1bz",
    "\u65e5\u672c\u8a9e \U0001f3ac \u2581 \u00a0\u2028\u3000 \u0085end\u1680",
    "&amp;lt;&amp;#39;&#X41;&#65&#0065;&#xD800;&#x110000;&Aacute&Aacutexyz;",
]


def write(dirname, name, data):
    d = os.path.join(CORPUS, dirname)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    for sub in ("spm", "tokenizer_json", "prompt", "config"):
        shutil.rmtree(os.path.join(CORPUS, sub), ignore_errors=True)
    write("spm", "charsmap.model", spm_model())
    write("spm", "bytefallback.model", spm_model(byte_fallback=True, cmap=charsmap(RULES[:4])))
    write("spm", "suffix_nodummy.model", spm_model(suffix=True, dummy=False, remove_ws=False))
    write("spm", "nocharsmap.model", spm_model(cmap=None, name="identity"))
    write("spm", "bad_bpe.model", spm_model(model_type=2, cmap=None))
    good = spm_model()
    write("spm", "bad_truncated.model", good[: len(good) // 2])
    cm = bytearray(CHARSMAP)
    cm[0:4] = struct.pack("<I", len(CHARSMAP))  # trie larger than the blob
    write("spm", "bad_charsmap_size.model", spm_model(cmap=bytes(cm)))
    shutil.copy(os.path.join(ROOT, "tests", "vectors", "tokenizer_identity.model"),
                os.path.join(CORPUS, "spm", "identity_real.model"))

    write("tokenizer_json", "charsmap.json", tokenizer_json())
    write("tokenizer_json", "bytefallback_plain.json",
          tokenizer_json(byte_fallback=True, cmap=charsmap(RULES[:4]), seq=False, prefix="never",
                         post=False))
    write("tokenizer_json", "nocharsmap_first.json", tokenizer_json(cmap=None, prefix="first"))

    for i, p in enumerate(PROMPTS):
        write("prompt", "prompt%d.txt" % i, p.encode())
    write("prompt", "bytes.txt", b"a\0b \xff\xfe \xc3\x28 \xe2\x82 \xf0\x9f\x8e end &amp\xc3")
    write("prompt", "long_run.txt", ("word " * 200 + "&amp;" * 50).encode())

    def cfg(sel, name, path):
        with open(path, "rb") as f:
            write("config", name, sel + f.read())

    cfg(b"0", "transformer.json", os.path.join(TINY, "transformer", "config.json"))
    cfg(b"0", "transformer_vectors.json", os.path.join(ROOT, "tests", "vectors", "transformer_config.json"))
    cfg(b"1", "vae.json", os.path.join(TINY, "vae", "config.json"))
    cfg(b"1", "vae_vectors.json", os.path.join(ROOT, "tests", "vectors", "vae_config.json"))
    cfg(b"2", "umt5.json", os.path.join(TINY, "text_encoder", "config.json"))
    cfg(b"2", "umt5_vectors.json", os.path.join(ROOT, "tests", "vectors", "umt5_config.json"))
    cfg(b"3", "scheduler_dmd.json", os.path.join(TINY, "scheduler", "scheduler_config.json"))
    write("config", "scheduler_unipc.json", b"3" + json.dumps({
        "_class_name": "HeliosScheduler", "num_train_timesteps": 1000, "shift": 1.0, "stages": 1,
        "stage_range": [0, 1], "gamma": 0.333, "use_dynamic_shifting": False,
        "time_shift_type": "exponential", "scheduler_type": "unipc", "solver_order": 2,
        "lower_order_final": True, "disable_corrector": [0, 3], "use_flow_sigmas": True}).encode())
    cfg(b"4", "model_index.json", os.path.join(TINY, "model_index.json"))
    write("config", "index.json", b"5" + json.dumps({
        "metadata": {"total_size": 12},
        "weight_map": {"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors"}}).encode())
    write("config", "index_bad_shard.json", b"5" + json.dumps({
        "weight_map": {"x": "../a.safetensors", "z": "c.safetensors"}}).encode())


if __name__ == "__main__":
    main()
