"""Library behind the DVC pipeline that re-runs the deep-learning course report.

stages/ holds thin entry points; each concern lives in one module here:
  fileio       atomic writes, so a failed stage never leaves half an output
  params       reading params.yaml
  gpulease     GPU leases: runs started together train on distinct GPUs
  tinyimagenet the Tiny-ImageNet archive: sample generation, download, relabelling, decoding
"""
