"""A small torch model configuration for export tests (needs torch; tiny_model.py is numpy-only)."""

from edgecodec.models.hyperprior import ModelConfig

SMALL = ModelConfig(
    n_analysis=(16, 16, 16), m_latent=16, hyper=(16, 16), hyper_s2=16, z_channels=8, synthesis=(16, 16, 8), lambdas=(0.004, 0.03, 0.2)
)
