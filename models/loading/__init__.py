"""Weight loading, apart from the networks (no backbone lives here):

  hub            a hub id or folder resolved to a local folder (offline-safe), and one-line
                 errors for unreadable files
  checkpoint     orbax checkpoints with a SHA-256 manifest per step, verified before use
  torch_weights  PyTorch safetensors folders (one file or sharded) onto Flax trees, strictly,
                 without torch
  trained        backbones and classifiers restored from the project's own train runs
"""
