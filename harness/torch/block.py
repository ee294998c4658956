"""The reference block in PyTorch, for `helios bench`'s comparison (issue 11: "at least 2x faster
than the reference PyTorch block on the same machine"): one Wan/Helios transformer block as
diffusers runs it for a bf16 model (spec/inference.md §1.3 step 8: modulation, LayerNorm, q/k
RMSNorm over all heads, 3D RoPE, self-attention, guidance cross-attention, GELU-tanh FFN, fp32
residual adds), random weights, at helios bench's default shape. Prints the median seconds.

Optional: needs PyTorch (Debian: apt-get install python3-torch, 1.13 on bookworm), which helios
itself never uses; not run by CI. Debian's build runs bf16 linears and matmuls on its oneDNN 2.6
(MKL-DNN), f32 ones on the generic BLAS that libblas3 resolves to (the netlib reference unless an
optimized one is installed: 2 GFLOP/s for --f32 on a 2-core Xeon). Usage:
    /usr/bin/python3 harness/torch/block.py [--threads N] [--reps N] [--f32]
"""
import argparse
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F


def linear(i, o, dt):
    m = torch.nn.Linear(i, o)
    with torch.no_grad():
        m.weight.uniform_(-1 / math.sqrt(i), 1 / math.sqrt(i))
        m.bias.uniform_(-0.1, 0.1)
    return m.to(dt)


def rms(x, w, eps=1e-6):  # over all channels (all heads), in fp32 as diffusers' RMSNorm
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def rope(x, cos, sin):  # x (H, S, hd): interleaved pairs rotated, in fp32
    xf = x.float().unflatten(-1, (-1, 2))
    a, b = xf[..., 0], xf[..., 1]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)
    return out.to(x.dtype)


class Block(torch.nn.Module):
    def __init__(self, D, heads, ffn, dt):
        super().__init__()
        self.heads, self.D = heads, D
        self.sst = torch.randn(6, D) / math.sqrt(D)
        self.q1, self.k1, self.v1, self.o1 = (linear(D, D, dt) for _ in range(4))
        self.q2, self.k2, self.v2, self.o2 = (linear(D, D, dt) for _ in range(4))
        self.nq1, self.nk1, self.nq2, self.nk2 = (torch.ones(D, dtype=dt) for _ in range(4))
        self.norm2 = torch.nn.LayerNorm(D, eps=1e-6)
        self.f0, self.f2 = linear(D, ffn, dt), linear(ffn, D, dt)
        self.dt = dt

    def attend(self, q, k, v):  # (S, D) each -> (S, D), heads split; softmax in fp32
        H = self.heads
        hd = self.D // H
        q, k, v = (t.view(-1, H, hd).transpose(0, 1) for t in (q, k, v))
        s = torch.matmul(q, k.transpose(1, 2)) * (1 / math.sqrt(hd))
        p = torch.softmax(s.float(), -1).to(v.dtype)
        return torch.matmul(p, v).transpose(0, 1).reshape(-1, self.D)

    def forward(self, x, enc, tproj, cos, sin):
        dt, D, H = self.dt, self.D, self.heads
        shift, scale, gate, c_shift, c_scale, c_gate = (self.sst + tproj.float()).unbind(0)
        h = (F.layer_norm(x.float(), (D,), eps=1e-6) * (1 + scale) + shift).to(dt)
        q, k, v = rms(self.q1(h), self.nq1), rms(self.k1(h), self.nk1), self.v1(h)
        hd = D // H
        q = rope(q.view(-1, H, hd).transpose(0, 1), cos, sin).transpose(0, 1).reshape(-1, D)
        k = rope(k.view(-1, H, hd).transpose(0, 1), cos, sin).transpose(0, 1).reshape(-1, D)
        x = (x.float() + self.o1(self.attend(q, k, v)).float() * gate).to(dt)
        h = self.norm2(x.float()).to(dt)
        q, k, v = rms(self.q2(h), self.nq2), rms(self.k2(enc), self.nk2), self.v2(enc)
        x = x + self.o2(self.attend(q, k, v))
        h = (F.layer_norm(x.float(), (D,), eps=1e-6) * (1 + c_scale) + c_shift).to(dt)
        f = self.f2(F.gelu(self.f0(h), approximate="tanh"))
        return (x.float() + f.float() * c_gate).to(dt)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="0: all cores")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--f32", action="store_true", help="f32 weights instead of bf16")
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--ffn", type=int, default=8960)
    ap.add_argument("--tokens", type=int, default=2304)
    ap.add_argument("--text", type=int, default=512)
    a = ap.parse_args()
    torch.set_num_threads(a.threads if a.threads > 0 else os.cpu_count())
    torch.manual_seed(0)
    dt = torch.float32 if a.f32 else torch.bfloat16
    D, S, L, hd = a.dim, a.tokens, a.text, a.dim // a.heads
    blk = Block(D, a.heads, a.ffn, dt)
    x = torch.rand(S, D).mul(2).sub(1).to(dt)
    enc = torch.rand(L, D).mul(2).sub(1).to(dt)
    tproj = torch.rand(6, D).mul(0.2).sub(0.1)
    ang = torch.rand(S, hd // 2) * 6.28
    cos, sin = ang.cos(), ang.sin()
    times = []
    with torch.inference_mode():
        for r in range(a.reps + 1):
            t0 = time.perf_counter()
            blk(x, enc, tproj, cos, sin)
            if r:
                times.append(time.perf_counter() - t0)
    D_, F_, s, l = D, a.ffn, S, L
    flops = (4 * 2 * s * D_ * D_ + 4 * s * s * D_) + (2 * 2 * s * D_ * D_ + 2 * 2 * l * D_ * D_ + 4 * s * l * D_) \
        + 2 * 2 * s * D_ * F_
    t = statistics.median(times)
    print(f"torch block {'f32' if a.f32 else 'bf16'}: PyTorch {torch.__version__}, {torch.get_num_threads()} threads: "
          f"{flops * 1e-9:.1f} GFLOP in {t:.3f} s (median of {a.reps}), {flops / t * 1e-9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
