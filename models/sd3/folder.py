"""The Stable Diffusion 3 / 3.5 diffusers folder: its components, their configs and dtypes."""

from models import diffusers_folder

COMPONENTS = ('transformer', 'vae', 'text_encoder', 'text_encoder_2', 'text_encoder_3',
              'tokenizer', 'tokenizer_2', 'tokenizer_3', 'scheduler')
# The components' files only: the hub's SD3.5 repositories also hold single-file checkpoints
# and a text_encoders/ folder (ComfyUI's copies of the three encoders, about 15 GB) that the
# diffusers layout does not use.
_HUB_FILES = ['model_index.json'] + [f'{c}/*.{ext}' for c in COMPONENTS
                                     for ext in ('json', 'txt', 'safetensors', 'model')]
LAYOUT = diffusers_folder.Layout('SD3', COMPONENTS, tuple(_HUB_FILES))
resolve = LAYOUT.resolve                     # model.path's local folder, layout checked
component_config = LAYOUT.component_config   # a component's JSON config
dtype_name = LAYOUT.dtype_name               # model.dtype: bfloat16 (default) or float32
