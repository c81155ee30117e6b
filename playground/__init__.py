"""Non-UI logic of the Gradio playground (``app.py``).

Modules:
    request    the generation request dataclass, size presets and input validation
    images     checks on uploaded conditioning images
    history    the on-disk history of results (mp4 + settings JSON, written atomically)
    share      permalinks (``?gen=<id>``) and pre-fill links (``?prompt=...&seed=...&task=...``)
    discovery  where the weights are (explicit dir, WAN_CKPT_DIR, HF cache), download, demo weights
    engine     owns the pipelines: lazy loading, one task resident, a lock, progress and cancel
    zerogpu    ZeroGPU detection and the GPU-duration estimate for ``spaces.GPU``
    i18n       UI strings in English, Korean and Chinese

Nothing here imports Gradio, and nothing heavy (torch, ``wan``) is imported at module import time.
"""
