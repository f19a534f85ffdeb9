"""Model architectures (diffusion UNets, text encoders, ...): built from configs, no training code."""
