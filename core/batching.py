"""Length-sorted batches under a pair count and a padded-token budget, shared by local backends."""

from __future__ import annotations

from collections.abc import Sequence


def length_sorted_batches(
    lengths: Sequence[int], *, max_batch_size: int, max_batch_tokens: int
) -> list[list[int]]:
    """Group input positions into batches of similar length, longest first.

    Each batch holds at most ``max_batch_size`` items and, padded to its longest item, at most
    ``max_batch_tokens`` tokens (a single item longer than the budget gets a batch of its own).
    Every position appears exactly once; callers scatter results back by position.
    """
    if max_batch_size <= 0 or max_batch_tokens <= 0:
        raise ValueError("max_batch_size and max_batch_tokens must be positive")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for position in order:
        longest = lengths[current[0]] if current else lengths[position]
        if current and (
            len(current) >= max_batch_size or (len(current) + 1) * longest > max_batch_tokens
        ):
            batches.append(current)
            current = []
        current.append(position)
    if current:
        batches.append(current)
    return batches
