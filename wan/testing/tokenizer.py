"""Tiny, offline, deterministic stand-in for the umT5 tokenizer (``google/umt5-xxl/``).

The official checkpoints ship the real umT5 sentencepiece tokenizer (256k pieces) in
``<ckpt>/google/umt5-xxl/``. Tests and the app's ``--demo`` mode need a tokenizer with the same
files, the same special-token layout (``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, ``</s>`` appended)
and the same loading path (``transformers.AutoTokenizer.from_pretrained(folder)``), but small enough
to pair with a tiny random text encoder. This module trains one with sentencepiece on a built-in
multilingual prompt corpus, in memory, in well under a second.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Final, Iterator

__all__ = [
    "TINY_TOKENIZER_VOCAB_SIZE",
    "TOKENIZER_FILES",
    "write_tiny_umt5_tokenizer",
]

TINY_TOKENIZER_VOCAB_SIZE: Final[int] = 768
"""Size of the trained sentencepiece vocabulary, which is also ``len(tokenizer)`` (no extra ids)."""

TOKENIZER_FILES: Final[tuple[str, ...]] = (
    "spiece.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
"""The files of the official ``google/umt5-xxl/`` tokenizer folder, all written by this module."""

_PAD, _EOS, _UNK = "<pad>", "</s>", "<unk>"
_ASCII_WEIGHT: Final[int] = 2
# 3 specials + 256 byte pieces + the 385 corpus characters need >= 644; the corpus supports <= 892 pieces.
_MIN_VOCAB, _MAX_VOCAB = 704, 880

# Built-in training text: video-prompt style sentences in English, Chinese and Korean. Editing this
# corpus changes every tiny tokenizer (and so every tiny test fixture's token ids).
_CORPUS: Final[tuple[str, ...]] = (
    "A cinematic shot of a red fox running through a snowy forest at sunrise.",
    "Two cats in boxing gloves fight on a brightly lit stage, slow motion, close-up.",
    "An astronaut rides a horse across the surface of the moon, wide angle, soft light.",
    "A paper boat drifts down a rainy street at night, neon reflections on the water.",
    "Aerial view of ocean waves crashing against black volcanic rocks, golden hour.",
    "A little girl in a yellow raincoat jumps into a puddle, handheld camera, warm tones.",
    "Time-lapse of clouds moving over a mountain lake, high contrast, dramatic sky.",
    "A chef slices fresh vegetables in a busy kitchen, shallow depth of field.",
    "The camera slowly pushes in on an old man reading a book by the window.",
    "A dragon flies above a medieval castle while fireworks explode in the night sky.",
    "Macro shot of a bee collecting pollen from a purple flower, soft focus background.",
    "A vintage car drives along a coastal road, tracking shot, film grain, 35mm.",
    "Dancers in white dresses spin in a sunlit field of tall grass, smooth motion.",
    "A robot walks through a crowded market in a futuristic city, cyberpunk lighting.",
    "Low angle shot of a skyscraper reflecting the sunset, the camera tilts up.",
    "A puppy plays with a ball on a wooden floor, natural light, realistic style.",
    "Bright colors, overexposed, static, blurry details, subtitles, worst quality, low quality.",
    "JPEG compression artifacts, ugly, incomplete, extra fingers, poorly drawn hands and faces.",
    "Deformed, disfigured, malformed limbs, fused fingers, still picture, messy background.",
    "Three legs, many people in the background, walking backwards.",
    "Summer beach vacation style, a white cat wearing sunglasses sits on a surfboard.",
    "Realistic close-up of a woman smiling, the wind blows her hair, cinematic lighting.",
    "一只红色的狐狸在日出时穿过积雪的森林，电影感镜头。",
    "两只戴着拳击手套的猫在明亮的舞台上打斗，慢动作，特写。",
    "宇航员在月球表面骑马，广角镜头，柔和的光线。",
    "夜晚的雨中街道上漂着一只纸船，霓虹灯倒映在水面上。",
    "航拍海浪拍打黑色火山岩，黄金时刻，暖色调。",
    "穿黄色雨衣的小女孩跳进水坑，手持镜头，温暖的色调。",
    "山间湖泊上空云层移动的延时摄影，高对比度，戏剧性的天空。",
    "镜头缓缓推进，一位老人在窗边看书，侧光，安静的氛围。",
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰。",
    "最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部。",
    "畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走。",
    "夏日海滩度假风格，一只戴着太阳镜的白猫坐在冲浪板上。",
    "中景，日光，柔光，暖色调，低角度拍摄，对称构图，电影感。",
    "붉은 여우가 해 뜰 무렵 눈 덮인 숲을 달려가는 영화 같은 장면.",
    "권투 장갑을 낀 고양이 두 마리가 밝은 무대에서 싸운다, 슬로 모션, 클로즈업.",
    "우주비행사가 달 표면에서 말을 타고 달린다, 광각 렌즈, 부드러운 빛.",
    "비 오는 밤거리에 종이배가 떠내려가고 네온 불빛이 물에 비친다.",
    "노란 우비를 입은 어린 소녀가 웅덩이로 뛰어든다, 핸드헬드 카메라, 따뜻한 색감.",
    "카메라가 천천히 다가가며 창가에서 책을 읽는 노인을 비춘다.",
    "선명한 색감, 과다 노출, 정적인 화면, 흐릿한 디테일, 자막, 최악의 품질, 낮은 품질.",
    "Camera pans left, then zooms in; the light flickers. 16 fps, 24 fps, 720p, 1280x720, 832x480.",
    "Numbers and symbols: 0 1 2 3 4 5 6 7 8 9 % & @ # ( ) [ ] - + = / ? ! \" ' : ;",
)


def _training_sentences() -> Iterator[str]:
    """The corpus, with the ASCII sentences weighted up so that English gets more multi-character
    pieces (every corpus character is kept anyway: character_coverage=1.0)."""
    for sentence in _CORPUS:
        repeats = _ASCII_WEIGHT if sentence.isascii() else 1
        for _ in range(repeats):
            yield sentence


def _train_sentencepiece_model(vocab_size: int) -> bytes:
    """Trains the unigram model in memory and returns the serialized ``spiece.model`` bytes."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=_training_sentences(),
        model_writer=buffer,
        model_type="unigram",
        vocab_size=vocab_size,
        character_coverage=1.0,
        byte_fallback=True,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece=_PAD,
        eos_piece=_EOS,
        unk_piece=_UNK,
        normalization_rule_name="nmt_nfkc",
        add_dummy_prefix=True,
        remove_extra_whitespaces=True,
        split_digits=True,
        hard_vocab_limit=True,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        num_threads=1,
        minloglevel=2,
    )
    return buffer.getvalue()


def _tokenizer_config(model_max_length: int) -> dict[str, object]:
    special = {
        str(i): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, token in enumerate((_PAD, _EOS, _UNK))
    }
    return {
        "added_tokens_decoder": special,
        "additional_special_tokens": [],
        "clean_up_tokenization_spaces": False,
        "eos_token": _EOS,
        "extra_ids": 0,
        "model_max_length": model_max_length,
        "pad_token": _PAD,
        "sp_model_kwargs": {},
        "tokenizer_class": "T5Tokenizer",
        "unk_token": _UNK,
    }


def write_tiny_umt5_tokenizer(out_dir: str | Path, *, vocab_size: int = TINY_TOKENIZER_VOCAB_SIZE) -> Path:
    """Writes a tiny umT5-style tokenizer into ``out_dir`` and returns ``out_dir`` as a Path.

    The folder gets the four files of the official ``google/umt5-xxl/`` folder (``TOKENIZER_FILES``)
    and loads with ``transformers.AutoTokenizer.from_pretrained(out_dir)``. Token ids: ``<pad>`` 0,
    ``</s>`` 1, ``<unk>`` 2, 256 byte-fallback pieces, then the learned pieces; ``len(tokenizer)``
    equals ``vocab_size``. The output is deterministic (same bytes for the same ``vocab_size``) and
    the files are rewritten on every call (no cache).
    """
    if not isinstance(vocab_size, int) or not _MIN_VOCAB <= vocab_size <= _MAX_VOCAB:
        raise ValueError(
            f"vocab_size must be an int in [{_MIN_VOCAB}, {_MAX_VOCAB}] (3 specials + 256 byte pieces + "
            f"every character of the built-in corpus + learned pieces), got {vocab_size!r}"
        )

    from transformers import T5Tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:  # no stale files: transformers would prefer an old tokenizer.json
        (out / name).unlink(missing_ok=True)
    (out / "spiece.model").write_bytes(_train_sentencepiece_model(vocab_size))

    # Let transformers convert the sentencepiece model (unigram pieces, precompiled normalizer,
    # metaspace, "</s>" template), exactly as it does for a folder holding only spiece.model.
    tokenizer = T5Tokenizer.from_pretrained(str(out), extra_ids=0)
    special_ids = (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
    if len(tokenizer) != vocab_size or special_ids != (0, 1, 2):
        raise RuntimeError(
            f"tiny tokenizer conversion went wrong: {len(tokenizer)} tokens (expected {vocab_size}), "
            f"pad/eos/unk ids {special_ids} (expected (0, 1, 2))"
        )
    tokenizer_json = json.loads(tokenizer.backend_tokenizer.to_str())
    # Keep tokenizer.json faithful to spiece.model (trained with byte fallback). Note: transformers'
    # T5Tokenizer rebuilds its unigram model without byte fallback, so through AutoTokenizer characters
    # outside the vocabulary become <unk>, as with the real umT5 tokenizer.
    tokenizer_json["model"]["byte_fallback"] = True
    (out / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False), encoding="utf-8")

    config = _tokenizer_config(model_max_length=512)
    config_text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    (out / "tokenizer_config.json").write_text(config_text, encoding="utf-8")
    special_map = {"eos_token": _EOS, "pad_token": _PAD, "unk_token": _UNK, "additional_special_tokens": []}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n", encoding="utf-8")
    return out
