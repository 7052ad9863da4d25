"""Deep-learning parts shared by denoising and reconstruction: U-Nets, one training loop, weight files."""
