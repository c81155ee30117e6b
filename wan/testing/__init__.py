"""Tiny random Wan 2.2 checkpoints in the exact official and Diffusers layouts, for tests and
``app.py --demo``.

* ``wan.testing.synthetic``: ``write_tiny_checkpoint(task, folder, seed=0, layout="official")`` writes
  every file a real checkpoint has (sharded and single-file DiTs, ``.pth`` T5/VAE state dicts or the
  Diffusers ``transformer/``, ``vae/``, ``text_encoder/`` folders) with a few hundred kilobytes of
  deterministic random weights; ``tiny_weights`` / ``tiny_dit_config`` give the same values in memory.
* ``wan.testing.tokenizer``: ``write_tiny_umt5_tokenizer(folder)``, an offline 768-piece stand-in for
  ``google/umt5-xxl/`` with the umT5 special-token layout.

The library proper (everything else under ``wan/``) never imports this package. Importing it imports
nothing heavy: import the submodule you need (torch, safetensors, sentencepiece and transformers are
imported when a writer runs).
"""
