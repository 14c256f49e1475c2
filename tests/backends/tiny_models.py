"""Tiny SDXL, FLUX.1 schnell and FLUX.1 Fill pipelines with random weights.

Built from configs the way diffusers' own pipeline tests build theirs, with
tokenizers made here from a vocabulary this module writes: nothing is fetched.
Saved with `save_pretrained`, they are loaded back through the diffusers
backend's real loading path. Same seed, same weights: the folders of schnell
and Fill share byte-identical text encoders and VAE, as the real ones do.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxFillPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from tokenizers import Tokenizer
from tokenizers.models import Unigram
from tokenizers.pre_tokenizers import Metaspace
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

WORDS = ("a", "an", "the", "of", "on", "in", "with", "red", "blue", "green", "cat", "dog", "fox")
WORDS += ("castle", "forest", "sky", "night", "lamp")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table that CLIP's BPE works on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """A byte-level BPE tokenizer: every byte, with and without the end-of-word mark,
    plus merges that spell a few whole words."""
    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    merges = []
    for word in WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.setdefault(pieces[0], len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return CLIPTokenizer(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=77
    )


def t5_tokenizer() -> T5Tokenizer:
    """A Unigram (SentencePiece-style) tokenizer built with the tokenizers library."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{w}", -1.0) for w in WORDS]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,"]
    backend = Tokenizer(Unigram(pieces, unk_id=2))
    backend.pre_tokenizer = Metaspace()
    return T5Tokenizer(tokenizer_object=backend, extra_ids=0)


def _clip_config(**overrides: object) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        pad_token_id=1,
        vocab_size=1000,
        hidden_act="gelu",
        projection_dim=32,
        **overrides,
    )


def _vae(latent_channels: int, **overrides: object) -> AutoencoderKL:
    """Four blocks: a scale factor of 8, as in the real models."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 8, 8, 8],
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=64,
        **overrides,
    )


def sdxl_pipeline(scratch: Path) -> StableDiffusionXLPipeline:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 * 8 + 32
        cross_attention_dim=64,
        norm_num_groups=4,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=_vae(4),
        text_encoder=CLIPTextModel(_clip_config()),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config()),
        tokenizer=clip_tokenizer(scratch / "clip"),
        tokenizer_2=clip_tokenizer(scratch / "clip"),
        unet=unet,
        scheduler=scheduler,
    )


def save_sdxl(folder: Path, scratch: Path) -> Path:
    sdxl_pipeline(scratch).save_pretrained(folder)
    return folder


def _flux_shared(scratch: Path) -> dict[str, object]:
    """Text encoders, tokenizers and VAE: the same for schnell and Fill."""
    torch.manual_seed(0)
    t5 = T5Config(
        vocab_size=1000,
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        is_encoder_decoder=False,
        use_cache=False,
    )
    return {
        "text_encoder": CLIPTextModel(_clip_config()),
        "text_encoder_2": T5EncoderModel(t5),
        "tokenizer": clip_tokenizer(scratch / "clip"),
        "tokenizer_2": t5_tokenizer(),
        "vae": _vae(
            2,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        ),
    }


def _flux_transformer(in_channels: int, out_channels: int) -> FluxTransformer2DModel:
    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=in_channels,
        out_channels=out_channels,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    )


def flux_pipeline(scratch: Path) -> FluxPipeline:
    return FluxPipeline(
        transformer=_flux_transformer(8, 8),  # 2 latent channels, packed 2x2
        scheduler=FlowMatchEulerDiscreteScheduler(),
        **_flux_shared(scratch),
    )


def save_flux(folder: Path, scratch: Path) -> Path:
    flux_pipeline(scratch).save_pretrained(folder)
    return folder


def save_flux_fill(folder: Path, scratch: Path) -> Path:
    # latents (8) + masked-image latents (8) + the mask packed 8x8 then 2x2 (256)
    pipe = FluxFillPipeline(
        transformer=_flux_transformer(8 + 8 + 256, 8),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        **_flux_shared(scratch),
    )
    pipe.save_pretrained(folder)
    return folder
