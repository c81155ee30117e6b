"""prompting: the local transformers backend, end to end with a tiny random Qwen2 chat model.

The fixture trains a tiny byte-level BPE tokenizer offline, gives it a ChatML chat template of our
own, builds a Qwen2 causal LM with tiny random weights and saves both with ``save_pretrained``. The
model's output is gibberish, so the tests check the plumbing: lazy loading, the chat messages, greedy
determinism, the length cap, the time limit and the fallbacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tokenizers  # noqa: F401  (runtime dependency: a missing one is an import error, not a skip)
import torch
import transformers  # noqa: F401

import prompting
from prompting import make_extender
from prompting.local_llm import LocalLLMExtender

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "Soft lighting, medium shot, daylight, center composition.",
    "A red fox trots through fresh snow, its breath steaming in the cold air.",
    "The camera pushes in slowly as the girl turns and smiles.",
    "Warm colors, night time, a lantern glows on a wooden boat.",
    "柔光，中景，日光，中心构图，一只红狐狸在雪地里小跑。",
    "镜头推进，女孩缓缓转过头，对着镜头微笑。",
] * 20
MAX_NEW_TOKENS = 24


def _tiny_tokenizer(chat_template: str | None) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    kwargs: dict[str, Any] = {"chat_template": chat_template} if chat_template else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, **kwargs)


def _save_tiny_qwen2(path: Path, chat_template: str | None) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _tiny_tokenizer(chat_template)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("tiny-qwen2")
    _save_tiny_qwen2(path, CHATML_TEMPLATE)
    return path


def _check_plumbing(result: prompting.ExtensionResult, original: str, max_chars: int) -> None:
    assert result.backend == "local"
    assert isinstance(result.raw, str)  # the model really generated something (maybe nothing printable)
    if result.ok:
        assert result.prompt and len(result.prompt) <= max_chars
        assert result.prompt == prompting.clean_answer(result.raw, max_chars=max_chars)
    else:
        assert result.prompt == original
        assert result.warning and result.warning.endswith("the original prompt was kept")
        assert result.reason in {"empty", "too_short", "wrong_language", "refusal"}


def test_local_backend_end_to_end(tiny_qwen2: Path) -> None:
    ext = make_extender("local", model=str(tiny_qwen2), temperature=0, max_new_tokens=MAX_NEW_TOKENS,
                        max_chars=60, device="cpu")
    assert isinstance(ext, LocalLLMExtender) and not ext.loaded  # nothing loaded until the first call
    first = ext.extend("a red fox in the snow", task="t2v-A14B", lang="en")
    assert ext.loaded
    _check_plumbing(first, "a red fox in the snow", 60)
    tokenizer = ext._loaded[0]
    assert len(tokenizer(first.raw, add_special_tokens=False)["input_ids"]) <= MAX_NEW_TOKENS + 4
    # greedy decoding is deterministic
    again = ext.extend("a red fox in the snow", task="t2v-A14B", lang="en")
    assert (again.prompt, again.ok, again.raw, again.reason) == (first.prompt, first.ok, first.raw, first.reason)


def test_local_backend_success_path_is_cleaned_and_capped(tmp_path: Path) -> None:
    # A random model with tied embeddings keeps repeating the last prompt token. With a generation
    # prefix that ends in Latin letters, its answer is Latin gibberish: English by script, so the
    # answer passes the checks and goes through cleaning and the length cap.
    prefixed = CHATML_TEMPLATE.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\nA fox in the snow'")
    assert prefixed != CHATML_TEMPLATE
    _save_tiny_qwen2(tmp_path, prefixed)
    ext = make_extender("local", model=str(tmp_path), temperature=0, max_new_tokens=MAX_NEW_TOKENS, max_chars=10,
                        min_chars=1, device="cpu")
    result = ext.extend("a red fox in the snow", lang="en")
    assert result.ok, result.warning
    assert 0 < len(result.prompt) <= 10 < len(result.raw.strip())
    assert result.reason == "truncated" and "cut to 10 characters" in result.warning


def test_local_backend_sends_our_chat_messages(tiny_qwen2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ext = make_extender("local", model=str(tiny_qwen2), temperature=0, max_new_tokens=4, device="cpu")
    ext.extend("warm up", lang="en")  # load
    tokenizer = ext._loaded[0]
    seen: list[dict[str, Any]] = []
    original = tokenizer.apply_chat_template

    def spy(messages: list[dict[str, str]], **kwargs: Any) -> Any:
        seen.append({"messages": messages, **kwargs})
        return original(messages, **kwargs)

    monkeypatch.setattr(tokenizer, "apply_chat_template", spy)
    result = ext.extend("소녀가 고개를 돌린다", task="i2v-A14B", lang="zh", has_image=True)
    _check_plumbing(result, "소녀가 고개를 돌린다", 300)
    (call,) = seen
    assert call["messages"] == [
        {"role": "system", "content": prompting.system_prompt("i2v", "zh", source_lang="ko")},
        {"role": "user", "content": "소녀가 고개를 돌린다"},
    ]
    assert call["add_generation_prompt"] is True and call["tokenize"] is False


def test_local_backend_sampling_with_a_seed_is_reproducible(tiny_qwen2: Path) -> None:
    kwargs = dict(model=str(tiny_qwen2), temperature=0.9, seed=123, max_new_tokens=8, device="cpu")
    a = make_extender("local", **kwargs).extend("a fox", lang="en")
    b = make_extender("local", **kwargs).extend("a fox", lang="en")
    assert a.raw == b.raw
    _check_plumbing(a, "a fox", 1500)


def test_local_backend_time_limit_gives_the_fallback(tiny_qwen2: Path) -> None:
    ext = make_extender("local", model=str(tiny_qwen2), temperature=0, max_new_tokens=64, timeout=1e-6, device="cpu")
    result = ext.extend("a fox in the snow", lang="en")
    assert not result.ok and result.reason == "timeout" and result.prompt == "a fox in the snow"
    assert "time limit" in result.warning


def test_missing_model_gives_the_fallback(tmp_path: Path) -> None:
    ext = make_extender("local", model=str(tmp_path / "no-such-model"))
    result = ext.extend("a fox", lang="en")
    assert not result.ok and result.reason == "unavailable" and result.prompt == "a fox"
    assert "cannot load the local model" in result.warning and not ext.loaded


def test_tokenizer_without_chat_template_gives_the_fallback(tmp_path: Path) -> None:
    _save_tiny_qwen2(tmp_path, chat_template=None)
    result = make_extender("local", model=str(tmp_path), device="cpu").extend("a fox", lang="en")
    assert not result.ok and result.reason == "unavailable" and "no chat template" in result.warning

