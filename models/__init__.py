"""Backbones: params + apply, a prediction type and a native interpolant, chosen by
`model.name`, discovered from this package.

Every module here that declares `BACKBONE = backbone.BackboneKind(...)` is a backbone; its name
is the module's (samplers/ground/registry.py, the project's one registration style). Today:
  gmm  the analytic Gaussian mixture (model.means, model.stds, model.weights).
  mlp  a trained 2D MLP restored from a train run's workdir (model.checkpoint).
  unet a trained image U-Net restored likewise; model.guidance_weight sets its CFG weight.
  stable_diffusion  SD 1.x, 2.x or SDXL from a diffusers folder or hub id (model.path),
       text-conditioned on prompts (config.prompt or config.prompt_file); see
       models/stable_diffusion/.
  flux  FLUX.1-schnell or -dev from a diffusers folder or hub id; see models/flux/.
  sd3   Stable Diffusion 3 / 3.5 (medium, large) likewise; see models/sd3/.
All three read PyTorch safetensors without torch into the project's own Flax ports (clip/,
t5.py, autoencoder_kl.py, stable_diffusion/unet.py, flux/transformer.py, sd3/transformer.py).
"""

from models import backbone
from samplers.ground import registry

REGISTRY = registry.Registry(__name__, 'BACKBONE', 'model.name')


def names() -> tuple:
  return REGISTRY.names()


def get_kind(name: str) -> backbone.BackboneKind:
  """The declaration of backbone `name` (its module is `.module`)."""
  return REGISTRY.get(name)


def get_backbone(cfg) -> backbone.Backbone:
  return get_kind(cfg.name).build(cfg)


def is_text_to_image(cfg) -> bool:
  return get_kind(cfg.name).text_to_image


def read_prompts(config) -> list:
  """The prompts of a text-to-image run (config.prompt or config.prompt_file)."""
  return get_kind(config.model.name).read_prompts(config)


def encode_prompts(cfg, prompts):
  """The backbone's text conditioning [P, L, D] of the prompts."""
  return get_kind(cfg.name).encode_prompts(cfg, prompts)


def condition(config):
  """The class label passed to a class-conditional backbone (config.condition >= 0), or None."""
  c = int(config.get('condition', -1))
  return None if c < 0 else c

