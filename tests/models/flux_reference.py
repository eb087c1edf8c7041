"""Writes the FLUX parity fixtures: tiny random FLUX.1-schnell and -dev folders saved by
diffusers' own PyTorch classes (`FluxPipeline.save_pretrained`, so the layout and key names are
the real ones), and the outputs of diffusers' PyTorch code on them, in float32.

  python -m venv --system-site-packages /tmp/torchenv
  /tmp/torchenv/bin/pip install torch==2.13.0        # a CPU build; not a project dependency
  /tmp/torchenv/bin/python tests/models/flux_reference.py tests/models/data/flux

Writes DIR/schnell/, DIR/dev/ (model_index.json, transformer/, vae/, text_encoder/,
text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/) and DIR/reference.npz:
  {v}_prompt_embeds, {v}_pooled      FluxPipeline.encode_prompt of PROMPT (T5 states, CLIP pooled)
  {v}_double_in_*, {v}_double_out_*  the first double-stream block's inputs and outputs
  {v}_single_in_*, {v}_single_out_*  the first single-stream block's (captured by forward hooks)
  {v}_tokens_{h}x{w}, {v}_out_{h}x{w} the whole transformer on packed latents at two sizes
  vae_latents, vae_images            AutoencoderKL.decode of (latents / scaling + shift)
  {v}_init, {v}_steps, {v}_final, {v}_image
                                     FluxPipeline: 4 Euler steps from packed initial latents
                                     (the latents after each step), the decoded image in [0, 1]
with v in (schnell, dev). tests/models/test_flux.py compares the project's Flax port to these.
"""

import json
import os
import sys

import numpy as np
import torch

PROMPT = 'a red cat'
TEXT_LENGTH = 16        # T5 tokens (max_sequence_length)
IMAGE = 16              # pixels per side of the trajectory and the first transformer size
SIZES = ((8, 8), (12, 8))   # latent (h, w) of the whole-transformer comparison
TIMESTEP = 0.7
GUIDANCE = 3.5
NUM_STEPS = 4


def tiny_tokenizers(root):
  """A byte-level CLIP tokenizer (tokenizer/) and a character Unigram T5 tokenizer
  (tokenizer_2/), both in transformers' saved formats; returns their vocabulary sizes."""
  from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
  from tokenizers import decoders
  from tokenizers import models as tok_models
  from tokenizers import pre_tokenizers
  from tokenizers import processors
  from transformers import T5TokenizerFast
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))
  from experiments.tools import random_weights  # pylint: disable=g-import-not-at-top
  clip_vocab = random_weights.write_tokenizer(os.path.join(root, 'tokenizer'), max_length=77)
  chars = [chr(c) for c in range(32, 127)] + ['\u2581']
  vocab = [('<pad>', 0.0), ('</s>', 0.0), ('<unk>', 0.0)] + [(c, -1.0) for c in chars]
  tok = Tokenizer(tok_models.Unigram(vocab, unk_id=2))
  tok.pre_tokenizer = pre_tokenizers.Metaspace()
  tok.decoder = decoders.Metaspace()
  tok.post_processor = processors.TemplateProcessing(single='$A </s>', pair='$A </s> $B </s>',
                                                     special_tokens=[('</s>', 1)])
  t5 = T5TokenizerFast(tokenizer_object=tok, eos_token='</s>', pad_token='<pad>',
                       unk_token='<unk>', extra_ids=0, model_max_length=512)
  t5.save_pretrained(os.path.join(root, 'tokenizer_2'))
  return clip_vocab, len(vocab)


def build_pipeline(root, dev: bool, seed: int):
  from diffusers import AutoencoderKL  # pylint: disable=g-import-not-at-top
  from diffusers import FlowMatchEulerDiscreteScheduler
  from diffusers import FluxPipeline
  from diffusers import FluxTransformer2DModel
  from transformers import CLIPTextConfig
  from transformers import CLIPTextModel
  from transformers import CLIPTokenizer
  from transformers import T5Config
  from transformers import T5EncoderModel
  from transformers import T5TokenizerFast
  os.makedirs(root, exist_ok=True)
  clip_vocab, t5_vocab = tiny_tokenizers(root)
  torch.manual_seed(seed)
  transformer = FluxTransformer2DModel(
      patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=8,
      num_attention_heads=4, joint_attention_dim=32, pooled_projection_dim=24,
      guidance_embeds=dev, axes_dims_rope=(2, 2, 4))
  # diffusers zero-initialises nothing here, but the adaLN gates of a random model are small;
  # scale every weight up so that each block changes its input measurably.
  with torch.no_grad():
    for p in transformer.parameters():
      p.normal_(0.0, 0.3 if p.ndim > 1 else 0.1)
  vae = AutoencoderKL(
      in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 2,
      up_block_types=('UpDecoderBlock2D',) * 2, block_out_channels=(8, 16), layers_per_block=1,
      latent_channels=16, norm_num_groups=8, sample_size=32, use_quant_conv=False,
      use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159)
  clip = CLIPTextModel(CLIPTextConfig(
      vocab_size=clip_vocab, hidden_size=24, intermediate_size=48, num_attention_heads=4,
      num_hidden_layers=2, max_position_embeddings=77, projection_dim=24, bos_token_id=0,
      eos_token_id=1, pad_token_id=1))
  t5 = T5EncoderModel(T5Config(vocab_size=t5_vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                               num_heads=4, relative_attention_num_buckets=8,
                               feed_forward_proj='gated-gelu', is_encoder_decoder=False,
                               pad_token_id=0, eos_token_id=1))
  if dev:
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096)
  else:
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
  pipe = FluxPipeline(
      scheduler=scheduler, vae=vae, text_encoder=clip,
      tokenizer=CLIPTokenizer.from_pretrained(os.path.join(root, 'tokenizer')),
      text_encoder_2=t5,
      tokenizer_2=T5TokenizerFast.from_pretrained(os.path.join(root, 'tokenizer_2')),
      transformer=transformer)
  # dev's weights are sharded (an index and several files), as real FLUX and T5 folders are.
  pipe.save_pretrained(root, max_shard_size='200KB' if dev else None)
  return FluxPipeline.from_pretrained(root, torch_dtype=torch.float32)


def numpy(x):
  return x.detach().cpu().numpy().astype(np.float32)


def capture_first_calls(modules: dict, extract):
  """Forward hooks keeping, per name, extract(kwargs, result) -> {key: tensor} of the module's
  first call (keys out_* for outputs; None values dropped) as float32 numpy; returns
  (captured, handles)."""
  captured = {}

  def hook(name):
    def fn(_, args, kwargs, result):
      if name not in captured:
        captured[name] = {k: numpy(t) for k, t in extract(kwargs, result).items()
                          if t is not None}
    return fn
  handles = [m.register_forward_hook(hook(n), with_kwargs=True) for n, m in modules.items()]
  return captured, handles


def store_captured(captured: dict, handles, v: str, out: dict) -> None:
  """Removes the hooks and stores each capture as out['{v}_{name}_{in|out}_{key}']."""
  for handle in handles:
    handle.remove()
  for block, values in captured.items():
    for key, value in values.items():
      out[f'{v}_{block}_{"out" if key.startswith("out_") else "in"}_'
          f'{key.removeprefix("out_")}'] = value


def step_recorder():
  """(steps, callback_on_step_end) recording the latents after each pipeline step."""
  steps = []

  def record(_, i, t, kwargs):
    steps.append(numpy(kwargs['latents'][0]))
    return {}
  return steps, record


def reference(pipe, v: str, out: dict, generator) -> None:
  dev = v == 'dev'
  with torch.no_grad():
    embeds, pooled, text_ids = pipe.encode_prompt(PROMPT, prompt_2=PROMPT,
                                                  max_sequence_length=TEXT_LENGTH)
    out[f'{v}_prompt_embeds'], out[f'{v}_pooled'] = numpy(embeds[0]), numpy(pooled[0])

    captured, handles = capture_first_calls(
        {'double': pipe.transformer.transformer_blocks[0],
         'single': pipe.transformer.single_transformer_blocks[0]},
        lambda kwargs, result: dict(
            hidden=kwargs['hidden_states'], encoder=kwargs['encoder_hidden_states'],
            temb=kwargs['temb'], cos=kwargs['image_rotary_emb'][0],
            sin=kwargs['image_rotary_emb'][1], out_encoder=result[0], out_hidden=result[1]))
    for h, w in SIZES:
      tokens = torch.randn((1, (h // 2) * (w // 2), 64), generator=generator)
      img_ids = pipe._prepare_latent_image_ids(1, h // 2, w // 2, 'cpu', torch.float32)  # pylint: disable=protected-access
      result = pipe.transformer(
          hidden_states=tokens, encoder_hidden_states=embeds, pooled_projections=pooled,
          timestep=torch.full((1,), TIMESTEP), img_ids=img_ids, txt_ids=text_ids,
          guidance=torch.full((1,), GUIDANCE) if dev else None, return_dict=False)[0]
      out[f'{v}_tokens_{h}x{w}'], out[f'{v}_out_{h}x{w}'] = numpy(tokens[0]), numpy(result[0])
    store_captured(captured, handles, v, out)

    latent = IMAGE // pipe.vae_scale_factor
    init = torch.randn((1, 16, latent, latent), generator=generator)
    packed = pipe._pack_latents(init, 1, 16, latent, latent)  # pylint: disable=protected-access
    steps, record = step_recorder()
    final = pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, latents=packed.clone(),
                 height=IMAGE, width=IMAGE, num_inference_steps=NUM_STEPS,
                 guidance_scale=GUIDANCE, output_type='latent', callback_on_step_end=record,
                 max_sequence_length=TEXT_LENGTH).images
    image = pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, latents=packed.clone(),
                 height=IMAGE, width=IMAGE, num_inference_steps=NUM_STEPS,
                 guidance_scale=GUIDANCE, output_type='np',
                 max_sequence_length=TEXT_LENGTH).images
    out[f'{v}_init'], out[f'{v}_final'] = numpy(packed[0]), numpy(final[0])
    out[f'{v}_steps'], out[f'{v}_image'] = np.stack(steps), image[0].astype(np.float32)


def vae_reference(pipe, out: dict, generator) -> None:
  with torch.no_grad():
    latents = torch.randn((2, 16, 8, 6), generator=generator)
    config = pipe.vae.config
    images = pipe.vae.decode(latents / config.scaling_factor + config.shift_factor).sample
  out['vae_latents'], out['vae_images'] = numpy(latents), numpy(images)


def write_fixtures(root: str, variants, build, record, vae_variant: str, title: str,
                   script: str) -> None:
  """For each variant: build(folder, variant, seed) -> pipeline saved under root/variant, then
  record(pipe, variant, out, generator) (and vae_reference on vae_variant's), one generator
  for all in order; writes root/reference.npz and root/README.md."""
  import diffusers  # pylint: disable=g-import-not-at-top
  torch.set_default_dtype(torch.float32)
  out = {}
  generator = torch.Generator().manual_seed(0)
  for seed, v in enumerate(variants):
    pipe = build(os.path.join(root, v), v, seed)
    record(pipe, v, out, generator)
    if v == vae_variant:
      vae_reference(pipe, out, generator)
  np.savez_compressed(os.path.join(root, 'reference.npz'), **out)
  with open(os.path.join(root, 'README.md'), 'w') as f:
    f.write(f'{title} and diffusers {diffusers.__version__} PyTorch outputs on them, written by '
            f'{script} (torch {torch.__version__}); see that script.\n')
  print(json.dumps({k: list(v.shape) for k, v in out.items()}))


def main(root: str) -> None:
  write_fixtures(root, ('schnell', 'dev'),
                 lambda folder, v, seed: build_pipeline(folder, dev=v == 'dev', seed=seed),
                 reference, 'schnell', 'Tiny random FLUX.1 folders',
                 'tests/models/flux_reference.py')


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit('usage: python tests/models/flux_reference.py DIR')
  main(sys.argv[1])
