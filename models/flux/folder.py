"""The FLUX.1 diffusers folder: its components, their configs and the model's dtypes."""

from models import diffusers_folder

COMPONENTS = ('transformer', 'vae', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2',
              'scheduler')
_HUB_FILES = ['model_index.json', '*/*.json', '*/*.txt', '*/*.safetensors', '*/*.model']
LAYOUT = diffusers_folder.Layout('FLUX', COMPONENTS, tuple(_HUB_FILES))
resolve = LAYOUT.resolve                     # model.path's local folder, layout checked
component_config = LAYOUT.component_config   # a component's JSON config
dtype_name = LAYOUT.dtype_name               # model.dtype: bfloat16 (default) or float32


def dtype(name: str):
  return diffusers_folder.DTYPES[name]
