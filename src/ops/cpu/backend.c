/* The cpu backend's table. Its buffers are host memory, so it names ref as its fallback: a call
 * it reports HELIOS_ERR_UNSUPPORTED for (f16 weights in hl_linear; a convolution oneDNN cannot
 * build) runs on ref after a one-time warning (ops.c). */
#include "ops/cpu/cpu_internal.h"

const hl_backend_ops hl_cpu_backend_ops = {
    .name = "cpu",
    .kind = HELIOS_BACKEND_CPU,
    .fallback = &hl_ref_backend_ops,
    .init = hl_cpu_backend_init,
    .fini = hl_cpu_backend_fini,
    .linear = hl_cpu_linear,
    .attention_biased = hl_cpu_attention_biased,
    .layernorm = hl_cpu_layernorm,
    .layernorm_backward = hl_cpu_layernorm_backward,
    .layernorm_modulate = hl_cpu_layernorm_modulate,
    .rmsnorm = hl_cpu_rmsnorm,
    .rmsnorm_backward = hl_cpu_rmsnorm_backward,
    .rope = hl_cpu_rope,
    .gelu_tanh = hl_cpu_gelu_tanh,
    .silu = hl_cpu_silu,
    .add_gated = hl_cpu_add_gated,
    .scale_heads = hl_cpu_scale_heads,
    .patchify3d = hl_host_patchify3d,
    .unpatchify3d = hl_host_unpatchify3d,
    .conv3d = hl_cpu_conv3d,
    .channel_rmsnorm = hl_cpu_channel_rmsnorm,
    .upsample2x = hl_cpu_upsample2x,
    .cast = hl_cpu_cast,
    .to_channels_last = hl_cpu_to_channels_last,
    .to_channels_first = hl_cpu_to_channels_first,
    .gelu_tanh_mul = hl_cpu_gelu_tanh_mul,
    .relative_bias = hl_cpu_relative_bias,
    .conv3d_backward = hl_cpu_conv3d_backward,
    .channel_rmsnorm_backward = hl_cpu_channel_rmsnorm_backward,
    .upsample2x_backward = hl_cpu_upsample2x_backward,
    .clamp_backward = hl_cpu_clamp_backward,
    /* backward passes this backend lacks run on ref (the fallback) */
    .patchify3d_backward = hl_host_patchify3d_backward,
    .unpatchify3d_backward = hl_host_unpatchify3d_backward,
};
