"""FLUX.1's 16-channel VAE: the project's AutoencoderKL (models/autoencoder_kl.py) read from the
folder's PyTorch safetensors, and the decoder of the backbone's latents. FLUX's VAE has no
quant convs (use_quant_conv / use_post_quant_conv false) and a shift factor."""

import os

from models import autoencoder_kl
from models import diffusers_folder
from models.backbone import Decoder
from models.flux import folder as folder_lib


def read_config(path: str) -> autoencoder_kl.VAEConfig:
  return autoencoder_kl.VAEConfig.from_dict(
      folder_lib.component_config(path, 'vae', 'VAE'), 'FLUX VAE')


def load(path: str, dtype_name: str, parts=('decoder',)):
  """(AutoencoderKL module, params, VAEConfig) of the folder's vae/ (only `parts` kept)."""
  return autoencoder_kl.load(os.path.join(path, 'vae'), 'FLUX VAE', dtype_name, tuple(parts))


def decoder(path: str, dtype_name: str, latent_hw: tuple) -> Decoder:
  """Tweedie latents [N, h, w, C] -> images [N, H, W, 3] in [0, 1]: undo the normalisation,
  then the VAE decoder."""
  vae, params, config = load(path, dtype_name)
  return diffusers_folder.vae_decoder(vae, params, config, folder_lib.dtype(dtype_name),
                                      latent_hw)
