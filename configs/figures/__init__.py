"""The paper-figure sweeps (docs/sweeps.md): each file's get_config(variant) is a `sweep`
experiment that reproduces one of the papers' figures on this project's backbones."""
