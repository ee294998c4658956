/* The ref backend's table: plain scalar C, no state. It is the oracle of tests/test_ops.c and
 * the cpu backend's fallback, so it implements every op and never keeps state (a fallback is
 * called with the ctx of the backend it stands in for). */
#include "ops/ops_backends.h"

const hl_backend_ops hl_ref_backend_ops = {
    .name = "ref",
    .kind = HELIOS_BACKEND_REF,
    .linear = hl_ref_linear,
    .attention_biased = hl_ref_attention_biased,
    .layernorm = hl_ref_layernorm,
    .layernorm_backward = hl_ref_layernorm_backward,
    .layernorm_modulate = hl_ref_layernorm_modulate,
    .rmsnorm = hl_ref_rmsnorm,
    .rmsnorm_backward = hl_ref_rmsnorm_backward,
    .rope = hl_ref_rope,
    .gelu_tanh = hl_ref_gelu_tanh,
    .silu = hl_ref_silu,
    .add_gated = hl_ref_add_gated,
    .scale_heads = hl_ref_scale_heads,
    .patchify3d = hl_host_patchify3d,
    .unpatchify3d = hl_host_unpatchify3d,
    .conv3d = hl_ref_conv3d,
    .channel_rmsnorm = hl_ref_channel_rmsnorm,
    .upsample2x = hl_ref_upsample2x,
    .cast = hl_ref_cast,
    .to_channels_last = hl_ref_to_channels_last,
    .to_channels_first = hl_ref_to_channels_first,
    .gelu_tanh_mul = hl_ref_gelu_tanh_mul,
    .relative_bias = hl_ref_relative_bias,
    /* VAE backward */
    .conv3d_backward = hl_ref_conv3d_backward,
    .channel_rmsnorm_backward = hl_ref_channel_rmsnorm_backward,
    .upsample2x_backward = hl_ref_upsample2x_backward,
    .clamp_backward = hl_ref_clamp_backward,
};
