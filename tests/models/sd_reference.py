"""Writes the Stable Diffusion parity fixtures: tiny random SD 1.x-, SD 2.x- and SDXL-style
folders saved by diffusers' own PyTorch pipelines (`save_pretrained`, so the layouts and key
names are the real ones), and the outputs of diffusers' and transformers' PyTorch code on them,
in float32.

  python -m venv --system-site-packages /tmp/torchenv
  /tmp/torchenv/bin/pip install torch==2.13.0 diffusers==0.39.0 transformers==4.57.6 \
      open-clip-torch==3.3.0 --no-deps     # a CPU build; none of it a project dependency
  /tmp/torchenv/bin/python tests/models/sd_reference.py tests/models/data/sd

The tokenizers are CLIP's real BPE cut to its first 1,500 merges (the full files are 1.7 MB):
OpenAI's bpe_simple_vocab_16e6.txt.gz, as open_clip ships it (MIT licence), turned into
vocab.json and merges.txt as CLIP builds its vocabulary. SD 2.x and SDXL's second tokenizer
pad with "!", as the published ones do.

Writes DIR/sd15/ (epsilon, conv projections, quick-GELU CLIP), DIR/sd2v/ (v-prediction, linear
projections, heads per block, GELU CLIP), DIR/sdxl/ (text_time added embedding, two text
encoders, transformer depth per block, force_zeros_for_empty_prompt), DIR/reference.npz:
  {v}_ids[_2]                        CLIPTokenizer's ids of PROMPTS (padding to 77, truncation)
  {v}_embeds, {v}_pooled             pipeline.encode_prompt of PROMPTS (SDXL: and pooled)
  {v}_uncond, {v}_uncond_pooled      its negative embeddings for guidance (SDXL: zeros)
  {v}_text_layers[_2]                the text encoder's hidden states, every layer, PROMPTS[0]
  {v}_unet_x, _t, _text, _added_*    U-Net inputs (NCHW latents, timesteps, states, SDXL ids)
  {v}_unet_out                       UNet2DConditionModel's output
  {v}_unet_down_{i}, _mid, _up_{i}   each block's output (forward hooks), same call
  {v}_vae_images, _mean, _logvar     AutoencoderKL.encode's posterior of images in [-1, 1]
  {v}_vae_enc_{i}                    each encoder down block's output
  {v}_vae_z, _decoded, _dec_{i}      AutoencoderKL.decode of z, and each decoder up block's
  {v}_init, _steps, _x0_last, _image the pipeline (DDIM, 4 steps, guidance 3, 16 x 16 pixels):
                                     initial latents, latents after each step, the last step's
                                     pred_original_sample, the decoded image in [0, 1]
  t5_ids                             FLUX's tiny T5TokenizerFast (tests/models/data/flux) on
                                     PROMPTS, padded and truncated to 16
and tests/rewards/data/clip/processor.npz: CLIPImageProcessor's pixel values of two smooth
images at 16 x 16 (upsampled) and 64 x 64 (downsampled) for a 32-pixel CLIP.
tests/models/test_stable_diffusion.py and tests/models/test_ports.py compare the project's
ports to these.
"""

import gzip
import importlib.util
import json
import os
import sys

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
PROMPTS = ('a red cat', 'A photo of an astronaut riding a horse on Mars, highly detailed!!',
           "it's a dog's life: café crème brûlée, 3.14 $100 " + 'word ' * 80)
MERGES = 1500
IMAGE = 16
STEPS = 4
GUIDANCE = 3.0


def clip_tokenizer(path: str, pad: str):
  """CLIP's BPE with its first MERGES merges, saved as transformers saves CLIPTokenizer."""
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
  from transformers.models.clip.tokenization_clip import bytes_to_unicode  # pylint: disable=g-import-not-at-top
  package = importlib.util.find_spec('open_clip').submodule_search_locations[0]
  with gzip.open(os.path.join(package, 'bpe_simple_vocab_16e6.txt.gz')) as f:
    merges = f.read().decode('utf-8').split('\n')[1:MERGES + 1]
  chars = list(bytes_to_unicode().values())
  vocab = (chars + [c + '</w>' for c in chars] + [m.replace(' ', '') for m in merges]
           + ['<|startoftext|>', '<|endoftext|>'])
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, 'vocab.json'), 'w') as f:
    json.dump({t: i for i, t in enumerate(vocab)}, f)
  with open(os.path.join(path, 'merges.txt'), 'w') as f:
    f.write('#version: 0.2\n' + '\n'.join(merges) + '\n')
  tok = CLIPTokenizer(os.path.join(path, 'vocab.json'), os.path.join(path, 'merges.txt'),
                      pad_token=pad, model_max_length=77)
  tok.save_pretrained(path)
  return CLIPTokenizer.from_pretrained(path), len(vocab)


def text_encoder(vocab: int, width: int, act: str, projection: bool, seed: int):
  from transformers import CLIPTextConfig  # pylint: disable=g-import-not-at-top
  from transformers import CLIPTextModel
  from transformers import CLIPTextModelWithProjection
  torch.manual_seed(seed)
  config = CLIPTextConfig(vocab_size=vocab, hidden_size=width, intermediate_size=2 * width,
                          num_attention_heads=4, num_hidden_layers=3,
                          max_position_embeddings=77, projection_dim=16, hidden_act=act,
                          bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=1)
  return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def perturb(module, scale: float = 0.05):
  """Random weights far from diffusers' initialisation (which zeroes some output convs)."""
  with torch.no_grad():
    for p in module.parameters():
      p.add_(torch.randn_like(p) * scale)


def build(root: str, v: str, seed: int):
  # pylint: disable=g-import-not-at-top
  from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
  from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
  # pylint: enable=g-import-not-at-top
  torch.manual_seed(seed)
  xl = v == 'sdxl'
  vae = AutoencoderKL(
      in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 2,
      up_block_types=('UpDecoderBlock2D',) * 2, block_out_channels=(8, 16), layers_per_block=1,
      latent_channels=4, norm_num_groups=4, sample_size=IMAGE,
      scaling_factor=0.13025 if xl else 0.18215)
  perturb(vae)
  scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear',
                            num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=False,
                            steps_offset=1,
                            prediction_type='v_prediction' if v == 'sd2v' else 'epsilon')
  tok, vocab = clip_tokenizer(os.path.join(root, 'tokenizer'), '!' if v == 'sd2v' else
                              '<|endoftext|>')
  common = dict(sample_size=IMAGE // 2, in_channels=4, out_channels=4, norm_num_groups=4,
                layers_per_block=1)
  if v == 'sd15':
    unet = UNet2DConditionModel(
        **common, block_out_channels=(8, 16), attention_head_dim=2, cross_attention_dim=32,
        down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'),
        up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'))
    te = text_encoder(vocab, 32, 'quick_gelu', False, seed + 1)
  elif v == 'sd2v':
    unet = UNet2DConditionModel(
        **common, block_out_channels=(8, 16, 16), attention_head_dim=(2, 2, 4),
        cross_attention_dim=32, use_linear_projection=True, upcast_attention=True,
        down_block_types=('CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'),
        up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'))
    te = text_encoder(vocab, 32, 'gelu', False, seed + 1)
  else:
    unet = UNet2DConditionModel(
        **common, block_out_channels=(8, 16, 16), attention_head_dim=(2, 2, 4),
        transformer_layers_per_block=(1, 1, 2), cross_attention_dim=56,
        use_linear_projection=True, addition_embed_type='text_time',
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=16 + 6 * 8,
        down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'),
        up_block_types=('CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'))
    te = text_encoder(vocab, 24, 'quick_gelu', False, seed + 1)
  perturb(unet)
  perturb(te, 0.02)
  if xl:
    tok2, vocab2 = clip_tokenizer(os.path.join(root, 'tokenizer_2'), '!')
    te2 = text_encoder(vocab2, 32, 'gelu', True, seed + 2)
    perturb(te2, 0.02)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tok,
                                     tokenizer_2=tok2, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True, add_watermarker=False)
  else:
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                                   scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
  pipe.save_pretrained(root)
  cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
  kw = {} if xl else dict(safety_checker=None, requires_safety_checker=False)
  return cls.from_pretrained(root, torch_dtype=torch.float32, **kw)


def numpy(x):
  return x.detach().cpu().numpy().astype(np.float32)


def hooks(modules: dict, captured: dict):
  """Forward hooks storing each module's first output tensor under its name."""
  def make(name):
    def fn(_, __, result):
      value = result[0] if isinstance(result, tuple) else result
      value = getattr(value, 'sample', value)
      captured[name] = numpy(value)
    return fn
  return [m.register_forward_hook(make(n)) for n, m in modules.items()]


def reference(pipe, v: str, out: dict, generator) -> None:
  xl = v == 'sdxl'
  with torch.no_grad():
    out[f'{v}_ids'] = pipe.tokenizer(list(PROMPTS), padding='max_length', max_length=77,
                                     truncation=True, return_tensors='np').input_ids
    if xl:
      out[f'{v}_ids_2'] = pipe.tokenizer_2(list(PROMPTS), padding='max_length', max_length=77,
                                           truncation=True, return_tensors='np').input_ids
      embeds, uncond, pooled, uncond_pooled = pipe.encode_prompt(
          list(PROMPTS), device='cpu', num_images_per_prompt=1,
          do_classifier_free_guidance=True)
      out[f'{v}_pooled'], out[f'{v}_uncond_pooled'] = numpy(pooled), numpy(uncond_pooled[0])
    else:
      embeds, uncond = pipe.encode_prompt(list(PROMPTS), 'cpu', 1, True)
    out[f'{v}_embeds'], out[f'{v}_uncond'] = numpy(embeds), numpy(uncond[0])
    for suffix, encoder in (('', pipe.text_encoder),) + ((('_2', pipe.text_encoder_2),)
                                                          if xl else ()):
      ids = torch.tensor(out[f'{v}_ids{suffix}'][:1])
      states = encoder(ids, output_hidden_states=True).hidden_states
      out[f'{v}_text_layers{suffix}'] = np.stack([numpy(s[0]) for s in states])

    unet = pipe.unet
    x = torch.randn((2, 4, IMAGE // 2, IMAGE // 2 + 4), generator=generator)
    t = torch.tensor([999.0, 421.0])
    text = embeds[:2]
    added = None
    if xl:
      added = {'text_embeds': pooled[:2],
               'time_ids': torch.tensor([[16., 16., 0., 0., 16., 16.], [32., 24., 2., 3., 16., 24.]])}
      out[f'{v}_unet_added_text_embeds'] = numpy(added['text_embeds'])
      out[f'{v}_unet_added_time_ids'] = numpy(added['time_ids'])
    captured = {}
    modules = {f'down_{i}': b for i, b in enumerate(unet.down_blocks)}
    modules.update({f'up_{i}': b for i, b in enumerate(unet.up_blocks)}, mid=unet.mid_block)
    handles = hooks(modules, captured)
    result = unet(x, t, text, added_cond_kwargs=added).sample
    for h in handles:
      h.remove()
    out[f'{v}_unet_x'], out[f'{v}_unet_t'] = numpy(x), numpy(t)
    out[f'{v}_unet_text'], out[f'{v}_unet_out'] = numpy(text), numpy(result)
    for name, value in captured.items():
      out[f'{v}_unet_{name}'] = value

    vae = pipe.vae
    images = torch.rand((2, 3, IMAGE, IMAGE + 8), generator=generator) * 2 - 1
    captured = {}
    handles = hooks({f'enc_{i}': b for i, b in enumerate(vae.encoder.down_blocks)} |
                    {f'dec_{i}': b for i, b in enumerate(vae.decoder.up_blocks)}, captured)
    posterior = vae.encode(images).latent_dist
    z = torch.randn((2, 4, IMAGE // 2, IMAGE // 2 + 2), generator=generator)
    decoded = vae.decode(z).sample
    for h in handles:
      h.remove()
    out[f'{v}_vae_images'], out[f'{v}_vae_mean'] = numpy(images), numpy(posterior.mean)
    out[f'{v}_vae_logvar'] = numpy(posterior.logvar)
    out[f'{v}_vae_z'], out[f'{v}_vae_decoded'] = numpy(z), numpy(decoded)
    for name, value in captured.items():
      out[f'{v}_vae_{name}'] = value

    init = torch.randn((1, 4, IMAGE // 2, IMAGE // 2), generator=generator)
    steps, x0 = [], []
    step = pipe.scheduler.step

    def recording_step(*args, **kwargs):
      return_dict = kwargs.pop('return_dict', True)
      result = step(*args, **kwargs, return_dict=True)
      x0.append(numpy(result.pred_original_sample[0]))
      return result if return_dict else (result.prev_sample,)
    pipe.scheduler.step = recording_step

    def record(_, i, t, kwargs):
      steps.append(numpy(kwargs['latents'][0]))
      return {}
    image = pipe(prompt=PROMPTS[0], height=IMAGE, width=IMAGE, num_inference_steps=STEPS,
                 guidance_scale=GUIDANCE, latents=init.clone(), output_type='np',
                 callback_on_step_end=record).images
    pipe.scheduler.step = step
    out[f'{v}_init'], out[f'{v}_steps'] = numpy(init[0]), np.stack(steps)
    out[f'{v}_x0_last'], out[f'{v}_image'] = x0[-1], image[0].astype(np.float32)
    out[f'{v}_timesteps'] = pipe.scheduler.timesteps.numpy().astype(np.int64)


def t5_ids(out: dict) -> None:
  from transformers import T5TokenizerFast  # pylint: disable=g-import-not-at-top
  tok = T5TokenizerFast.from_pretrained(os.path.join(ROOT, 'tests', 'models', 'data', 'flux',
                                                     'schnell', 'tokenizer_2'))
  out['t5_ids'] = tok(list(PROMPTS), padding='max_length', max_length=16, truncation=True,
                      return_tensors='np').input_ids


def processor_reference() -> None:
  """CLIPImageProcessor (PIL bicubic, shortest edge 32, centre crop 32) on smooth images."""
  from transformers import CLIPImageProcessor  # pylint: disable=g-import-not-at-top
  processor = CLIPImageProcessor(size={'shortest_edge': 32},
                                 crop_size={'height': 32, 'width': 32})
  out = {}
  for size in (16, 64):
    x = np.linspace(0.0, 1.0, size)
    img = np.stack([np.add.outer(x, x) / 2, np.outer(x, x), np.full((size, size), 0.3)], -1)
    images = np.round(np.stack([img, img[::-1]]) * 255.0).astype(np.uint8)
    out[f'images_{size}'] = images
    out[f'pixels_{size}'] = processor(images=list(images), return_tensors='np').pixel_values
  np.savez_compressed(os.path.join(ROOT, 'tests', 'rewards', 'data', 'clip', 'processor.npz'),
                      **out)


def main(root: str) -> None:
  torch.set_default_dtype(torch.float32)
  out = {}
  generator = torch.Generator().manual_seed(0)
  for seed, v in enumerate(('sd15', 'sd2v', 'sdxl')):
    pipe = build(os.path.join(root, v), v, 10 * seed)
    reference(pipe, v, out, generator)
  t5_ids(out)
  np.savez_compressed(os.path.join(root, 'reference.npz'), **out)
  processor_reference()
  import diffusers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  with open(os.path.join(root, 'README.md'), 'w') as f:
    f.write('Tiny random Stable Diffusion 1.x-, 2.x- and SDXL-style folders and PyTorch outputs '
            f'on them (diffusers {diffusers.__version__}, transformers '
            f'{transformers.__version__}, torch {torch.__version__}), written by '
            'tests/models/sd_reference.py; see that script.\n')
  print(json.dumps({k: list(v.shape) for k, v in out.items()}))


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit('usage: python tests/models/sd_reference.py DIR')
  main(sys.argv[1])
