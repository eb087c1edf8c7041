"""Writes the Stable Diffusion 3 / 3.5 parity fixtures: tiny random SD3.5-large-, SD3.5-medium-
and SD3.0-style folders saved by diffusers' own PyTorch classes
(`StableDiffusion3Pipeline.save_pretrained`, so the layout and key names are the real ones), and
the outputs of diffusers' PyTorch code on them, in float32.

  /tmp/torchenv/bin/pip install torch==2.14.1 diffusers==0.39.0 transformers==4.57.6 --no-deps
  /tmp/torchenv/bin/python tests/models/sd3_reference.py tests/models/data/sd3

The three differ where the published models do: `large` has QK RMS-normalisation and no
dual-attention blocks (SD3.5-large), `medium` adds the extra image self-attention in its first
block (dual_attention_layers, SD3.5-medium) and a sharded transformer, `sd30` has neither
(SD3-medium, qk_norm None). Each has two MMDiT blocks, so the last one is context_pre_only.

Writes DIR/{large,medium,sd30}/ (model_index.json, transformer/, vae/, text_encoder/,
text_encoder_2/, text_encoder_3/, tokenizer/, tokenizer_2/, tokenizer_3/, scheduler/) and
DIR/reference.npz, with v in (large, medium, sd30):
  {v}_prompt_embeds, {v}_pooled        StableDiffusion3Pipeline.encode_prompt of PROMPT
  {v}_negative_embeds, _negative_pooled  its embeddings of the empty negative prompt
  {v}_first_in_*, {v}_first_out_*      the first block's inputs and outputs (forward hooks)
  {v}_last_in_*, {v}_last_out_*        the last (context_pre_only) block's
  {v}_latents_{h}x{w}, {v}_out_{h}x{w} the whole transformer on NCHW latents at two sizes
  {v}_init, {v}_steps, {v}_final, {v}_image
                                       the pipeline: 4 steps with classifier-free guidance
                                       GUIDANCE from NCHW initial latents (the latents after
                                       each step), the decoded image in [0, 1]
  vae_latents, vae_images              AutoencoderKL.decode of (latents / scaling + shift)
tests/models/test_sd3.py compares the project's Flax port to these.
"""

import os
import shutil
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
from tests.models import flux_reference  # pylint: disable=g-import-not-at-top,wrong-import-position

PROMPT = 'a red cat'
TEXT_LENGTH = 16        # T5 tokens (max_sequence_length)
IMAGE = 16              # pixels per side of the trajectory
SIZES = ((8, 8), (12, 8))   # latent (h, w) of the whole-transformer comparison
TIMESTEP = 700.0        # the transformer's timestep, 1000 sigma
GUIDANCE = 4.5
NUM_STEPS = 4
VARIANTS = dict(large=dict(qk_norm='rms_norm', dual_attention_layers=()),
                medium=dict(qk_norm='rms_norm', dual_attention_layers=(0,)),
                sd30=dict(qk_norm=None, dual_attention_layers=()))


numpy = flux_reference.numpy


def tiny_tokenizers(root):
  """Byte-level CLIP tokenizers (tokenizer/, tokenizer_2/ padding with "!" as SD3's second
  does) and FLUX's character Unigram T5 tokenizer (tokenizer_3/); returns the vocab sizes."""
  from experiments.tools import random_weights  # pylint: disable=g-import-not-at-top
  clip_vocab = random_weights.write_tokenizer(os.path.join(root, 'tokenizer'), max_length=77)
  clip2_vocab = random_weights.write_tokenizer(os.path.join(root, 'tokenizer_2'), max_length=77,
                                               pad='!')
  with tempfile.TemporaryDirectory() as tmp:
    _, t5_vocab = flux_reference.tiny_tokenizers(tmp)
    shutil.copytree(os.path.join(tmp, 'tokenizer_2'), os.path.join(root, 'tokenizer_3'))
  return clip_vocab, clip2_vocab, t5_vocab


def build_pipeline(root, variant: str, seed: int):
  from diffusers import AutoencoderKL  # pylint: disable=g-import-not-at-top
  from diffusers import FlowMatchEulerDiscreteScheduler
  from diffusers import SD3Transformer2DModel
  from diffusers import StableDiffusion3Pipeline
  from transformers import CLIPTextConfig
  from transformers import CLIPTextModelWithProjection
  from transformers import CLIPTokenizer
  from transformers import T5Config
  from transformers import T5EncoderModel
  from transformers import T5TokenizerFast
  os.makedirs(root, exist_ok=True)
  clip_vocab, clip2_vocab, t5_vocab = tiny_tokenizers(root)
  torch.manual_seed(seed)
  # CLIP-L (width 24, projection 16) and OpenCLIP bigG (32, 24): pooled 16 + 24 = 40; their
  # penultimate states, 24 + 32 = 56 wide, are zero-padded to T5's 64 as in the real model.
  transformer = SD3Transformer2DModel(
      sample_size=8, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8,
      num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32,
      pooled_projection_dim=40, out_channels=16, pos_embed_max_size=16, **VARIANTS[variant])
  # A random model's adaLN gates are small; scale every weight up so that each block changes
  # its input measurably (the positional table is a buffer and stays diffusers' own). Without
  # QK normalisation (sd30) the logits grow with the weights' square, so they are drawn
  # smaller: at 0.3 the attention is all but one-hot and 4 guided steps amplify float32
  # rounding to percents.
  std = 0.3 if VARIANTS[variant]['qk_norm'] else 0.15
  with torch.no_grad():
    for p in transformer.parameters():
      p.normal_(0.0, std if p.ndim > 1 else 0.1)
  vae = AutoencoderKL(
      in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 2,
      up_block_types=('UpDecoderBlock2D',) * 2, block_out_channels=(8, 16), layers_per_block=1,
      latent_channels=16, norm_num_groups=8, sample_size=32, use_quant_conv=False,
      use_post_quant_conv=False, scaling_factor=1.5305, shift_factor=0.0609)
  clip_kw = dict(num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
                 bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_act='gelu')
  clip = CLIPTextModelWithProjection(CLIPTextConfig(
      vocab_size=clip_vocab, hidden_size=24, intermediate_size=48, projection_dim=16, **clip_kw))
  clip2 = CLIPTextModelWithProjection(CLIPTextConfig(
      vocab_size=clip2_vocab, hidden_size=32, intermediate_size=64, projection_dim=24, **clip_kw))
  t5 = T5EncoderModel(T5Config(vocab_size=t5_vocab, d_model=64, d_kv=8, d_ff=96, num_layers=2,
                               num_heads=4, relative_attention_num_buckets=8,
                               feed_forward_proj='gated-gelu', is_encoder_decoder=False,
                               pad_token_id=0, eos_token_id=1))
  scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
  pipe = StableDiffusion3Pipeline(
      transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=clip,
      tokenizer=CLIPTokenizer.from_pretrained(os.path.join(root, 'tokenizer')),
      text_encoder_2=clip2,
      tokenizer_2=CLIPTokenizer.from_pretrained(os.path.join(root, 'tokenizer_2')),
      text_encoder_3=t5,
      tokenizer_3=T5TokenizerFast.from_pretrained(os.path.join(root, 'tokenizer_3')))
  # medium's weights are sharded (an index and several files), as the real folders are.
  pipe.save_pretrained(root, max_shard_size='100KB' if variant == 'medium' else None)
  return StableDiffusion3Pipeline.from_pretrained(root, torch_dtype=torch.float32)


def reference(pipe, v: str, out: dict, generator) -> None:
  with torch.no_grad():
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
        PROMPT, PROMPT, PROMPT, do_classifier_free_guidance=True,
        max_sequence_length=TEXT_LENGTH)
    out[f'{v}_prompt_embeds'], out[f'{v}_pooled'] = numpy(embeds[0]), numpy(pooled[0])
    out[f'{v}_negative_embeds'] = numpy(negative[0])
    out[f'{v}_negative_pooled'] = numpy(negative_pooled[0])

    blocks = pipe.transformer.transformer_blocks
    captured, handles = flux_reference.capture_first_calls(
        {'first': blocks[0], 'last': blocks[-1]},
        lambda kwargs, result: dict(
            hidden=kwargs['hidden_states'], encoder=kwargs['encoder_hidden_states'],
            temb=kwargs['temb'], out_hidden=result[1], out_encoder=result[0]))
    for h, w in SIZES:
      latents = torch.randn((1, 16, h, w), generator=generator)
      result = pipe.transformer(hidden_states=latents, encoder_hidden_states=embeds,
                                pooled_projections=pooled, timestep=torch.full((1,), TIMESTEP),
                                return_dict=False)[0]
      out[f'{v}_latents_{h}x{w}'], out[f'{v}_out_{h}x{w}'] = numpy(latents[0]), numpy(result[0])
    flux_reference.store_captured(captured, handles, v, out)

    latent = IMAGE // pipe.vae_scale_factor
    init = torch.randn((1, 16, latent, latent), generator=generator)
    steps, record = flux_reference.step_recorder()
    kw = dict(prompt=PROMPT, height=IMAGE, width=IMAGE, num_inference_steps=NUM_STEPS,
              guidance_scale=GUIDANCE, max_sequence_length=TEXT_LENGTH)
    final = pipe(latents=init.clone(), output_type='latent', callback_on_step_end=record,
                 **kw).images
    image = pipe(latents=init.clone(), output_type='np', **kw).images
    out[f'{v}_init'], out[f'{v}_final'] = numpy(init[0]), numpy(final[0])
    out[f'{v}_steps'], out[f'{v}_image'] = np.stack(steps), image[0].astype(np.float32)
    out[f'{v}_sigmas'] = numpy(pipe.scheduler.sigmas)


def main(root: str) -> None:
  flux_reference.write_fixtures(root, tuple(VARIANTS), build_pipeline, reference, 'large',
                                'Tiny random Stable Diffusion 3 / 3.5 folders',
                                'tests/models/sd3_reference.py')


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit('usage: python tests/models/sd3_reference.py DIR')
  main(sys.argv[1])
