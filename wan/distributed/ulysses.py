"""Ulysses sequence parallelism for the DiT (``WanModel.set_sequence_parallel``).

Per forward, on a group of ``p`` ranks:

1. After the patch embedding the ``L`` video tokens ``[B, L, dim]`` are zero-padded to
   ``Lp = ceil(L / p) * p`` and rank ``r`` keeps tokens ``[r*s, (r+1)*s)`` (``s = Lp / p``); the RoPE
   table and the per-token timestep index are sliced the same way. The text context is not split.
2. Every self-attention: q, k, v ``[B, s, N, D]`` go through ONE all-to-all (stacked) to
   ``[B, Lp, N/p, D]`` (all tokens, this rank's heads), are trimmed to the ``L`` real tokens (so the
   padding is never a key and the softmax is exactly the single-process one), attend, are zero-padded
   back to ``Lp`` and return through a second all-to-all to ``[B, s, N, D]``.
3. Everything else (modulation, cross-attention with local queries, FFN, head) is per token.
4. The head's output ``[B, s, out]`` is all-gathered and trimmed to ``[B, L, out]`` before unpatchify.

Communication per block and forward: 2 all-to-alls moving ``(3 + 1) * B * Lp * dim * (p-1)/p``
elements per rank (see ``bench/bench_comm.py``); one all-gather of the head output per forward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..modules.attention import attention
from ..modules.layers import TimestepIndex, TimestepRuns

__all__ = ["SequenceParallel", "padded_length"]


def padded_length(length: int, size: int) -> int:
    """``length`` rounded up to a multiple of ``size``."""
    return -(-length // size) * size


class SequenceParallel:
    """One Ulysses group as the DiT sees it: ``size`` ranks, this one's ``rank`` in it.

    ``shard`` (start of a forward) records the true token count ``seq_len`` used by ``attention``
    and ``gather`` of that forward: one forward at a time per instance (the pipeline runs them in order).
    """

    def __init__(self, group: Any, size: int, rank: int) -> None:
        if size < 1:  # the pipeline uses it from 2 ranks on; 1 is the hooks' cost alone (bench_comm.py)
            raise ValueError(f"SequenceParallel needs a group of >= 1 rank; got {size}")
        self.group = group
        self.size = size
        self.rank = rank
        self.seq_len = 0

    def __repr__(self) -> str:
        return f"SequenceParallel(size={self.size}, rank={self.rank})"

    # -- sharding of the per-token inputs

    def _bounds(self, length: int) -> tuple[int, int, int]:
        padded = padded_length(length, self.size)
        local = padded // self.size
        return padded, self.rank * local, (self.rank + 1) * local

    def shard(self, tokens: Tensor, freqs: Tensor, t_index: TimestepIndex) -> tuple[Tensor, Tensor, TimestepIndex]:
        """``tokens [B, L, dim]``, RoPE ``freqs [L, D/2]`` and the timestep index of the full sequence
        -> this rank's ``[B, s, dim]``, ``[s, D/2]`` and index (padding: zero tokens and table rows)."""
        length = tokens.shape[1]
        self.seq_len = length
        padded, start, end = self._bounds(length)
        tokens = F.pad(tokens, (0, 0, 0, padded - length))[:, start:end]
        freqs = F.pad(freqs, (0, 0, 0, padded - length))[start:end]
        return tokens, freqs, self._shard_index(t_index, length, padded, start, end)

    @staticmethod
    def _shard_index(t_index: TimestepIndex, length: int, padded: int, start: int, end: int) -> TimestepIndex:
        if isinstance(t_index, TimestepRuns):
            bounds, columns = [], []
            last = len(t_index.bounds) - 1
            for r, (s, e) in enumerate(t_index.bounds):
                e = padded if r == last else e  # padding tokens join the last run
                lo, hi = max(s, start), min(e, end)
                if lo < hi:
                    bounds.append((lo - start, hi - start))
                    columns.append(r)
            return TimestepRuns(bounds=tuple(bounds), index=t_index.index[:, columns])
        if t_index.shape[1] == 1:  # one timestep per sample
            return t_index
        return F.pad(t_index, (0, padded - length))[:, start:end]  # pad tokens use row 0

    # -- communication

    def _all_to_all(self, x: Tensor) -> Tensor:
        out = torch.empty_like(x)
        dist.all_to_all_single(out, x, group=self.group)
        return out

    def attention(self, q: Tensor, k: Tensor, v: Tensor, backend: str | None = None) -> Tensor:
        """Local ``q, k, v [B, s, N, D]`` (all heads of this rank's tokens) -> ``[B, s, N, D]``: attention
        over the whole (unpadded) sequence, computed here for heads ``[rank*N/p, (rank+1)*N/p)``."""
        p = self.size
        if q.shape[2] % p:
            raise ValueError(f"{q.shape[2]} heads cannot be split over {p} Ulysses ranks")
        b, s, heads, d = q.shape
        # chunk j of dim 0 (head group j) goes to rank j; chunk i received holds rank i's tokens
        send = q.new_empty((p, 3, b, s, heads // p, d))
        for i, x in enumerate((q, k, v)):  # one copy each, straight into the send buffer
            send[:, i].copy_(rearrange(x, "b s (p n) d -> p b s n d", p=p))
        recv = self._all_to_all(send)
        full = rearrange(recv, "p three b s n d -> three b (p s) n d")[:, :, : self.seq_len]
        out = attention(full[0], full[1], full[2], backend)  # [B, L, N/p, D]
        out = F.pad(out, (0, 0, 0, 0, 0, recv.shape[0] * recv.shape[3] - self.seq_len))
        send = rearrange(out, "b (p s) n d -> p b s n d", p=p).contiguous()
        back = self._all_to_all(send)  # chunk i: head group i of this rank's tokens
        return rearrange(back, "p b s n d -> b s (p n) d")

    def gather(self, x: Tensor) -> Tensor:
        """This rank's ``[B, s, C]`` -> the whole sequence ``[B, L, C]`` on every rank (padding dropped)."""
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(parts, x, group=self.group)
        return torch.cat(parts, dim=1)[:, : self.seq_len]
