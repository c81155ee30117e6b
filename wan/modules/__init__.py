"""Neural network modules of the Wan inference package (DiT, VAEs, text encoder, attention)."""
