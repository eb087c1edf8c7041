"""The ground every package stands on (nothing here imports the rest of the project):

  registry  the one registration style: a package's modules declare what they contribute
  sharding  the `particles` mesh axis and the constraints that split rows over it
  checks    host-side number checks (float32, int32, finite arrays, host memory)
  pixels    pixel ranges: [-1, 1] backbones, [0, 1] images, uint8
"""
