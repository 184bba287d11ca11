"""Batching: padding feature sequences with a mask, collating items, seeded loaders.

`pad_batch` is the reference's `preprocessing` (libs/modeling/meta_archs.py): in training
every sequence is padded to exactly `max_seq_len`; at inference to `max_seq_len` when the
longest fits, else up to the next multiple of `max_div_factor` (so every pyramid level and
attention window divides the length). Padding is 0 and the mask is True on real steps.
Unlike the reference, inference batches may hold more than one video. A distillation
batch also holds the teacher's features of the same snippets, ``teacher_feats``, padded
like ``feats`` by the trainer.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from rgbtad.core.errors import RgbtadError

__all__ = ["EpochSampler", "collate", "make_loader", "pad_batch", "padded_length", "set_loader_epoch"]

META_KEYS = ("video_id", "fps", "duration", "feat_stride", "feat_num_frames")


def padded_length(max_len: int, *, max_seq_len: int, max_div_factor: int, training: bool) -> int:
    """The padded length L for a batch whose longest sequence has `max_len` steps."""
    if training:
        if max_len > max_seq_len:
            raise RgbtadError(
                f"training input of length {max_len} is longer than data.max_seq_len {max_seq_len}"
            )
        return max_seq_len
    if max_len <= max_seq_len:
        return max_seq_len
    if max_div_factor <= 0:
        raise ValueError("max_div_factor must be positive")
    return (max_len + max_div_factor - 1) // max_div_factor * max_div_factor


def pad_batch(feats_list: Sequence[torch.Tensor], *, max_seq_len: int, max_div_factor: int,
              training: bool, padding_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``C x T_i`` tensors into ``B x C x L`` plus a ``B x L`` bool mask (True = valid)."""
    if len(feats_list) == 0:
        raise ValueError("pad_batch needs at least one feature sequence")
    first = feats_list[0]
    channels = first.shape[0]
    for i, feat in enumerate(feats_list):
        if feat.dim() != 2 or feat.shape[0] != channels:
            raise RgbtadError(
                f"batch item {i}: features of shape {tuple(feat.shape)}, expected {channels} x T"
            )
    lengths = torch.as_tensor([feat.shape[-1] for feat in feats_list], device=first.device)
    length = padded_length(int(lengths.max()), max_seq_len=max_seq_len,
                           max_div_factor=max_div_factor, training=training)
    batch = first.new_full((len(feats_list), channels, length), padding_value)
    for row, feat in zip(batch, feats_list):
        row[:, : feat.shape[-1]].copy_(feat)
    mask = torch.arange(length, device=first.device)[None, :] < lengths[:, None]
    return batch, mask


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Group dataset items into lists (no padding; `pad_batch` pads for the model);
    ``teacher_feats`` when the items have them."""
    batch = {
        "video_ids": [item["video_id"] for item in items],
        "feats": [item["feats"] for item in items],
        "segments": [item["segments"] for item in items],
        "labels": [item["labels"] for item in items],
        "meta": [{key: item[key] for key in META_KEYS} for item in items],
    }
    if items and "teacher_feats" in items[0]:
        batch["teacher_feats"] = [item["teacher_feats"] for item in items]
    return batch


class EpochSampler(Sampler[int]):
    """Indices in a fixed order per (seed, epoch): shuffled, or 0..n-1 when `shuffle` is off."""

    def __init__(self, dataset: Dataset, *, shuffle: bool, seed: int = 0):
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        n = len(self.dataset)
        if not self.shuffle:
            return iter(range(n))
        generator = torch.Generator()
        generator.manual_seed((self.seed + self.epoch) % (1 << 63))
        return iter(torch.randperm(n, generator=generator).tolist())


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                num_workers: int = 0, distributed: bool = False, drop_last: bool = False,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader with a seeded sampler and `collate`.

    The order depends only on (seed, epoch): call `set_loader_epoch(loader, epoch)` (or
    ``loader.sampler.set_epoch`` and ``dataset.set_epoch``) before each epoch. With
    `distributed`, a `DistributedSampler` splits the indices over the processes.
    Workers are not persistent, so each epoch's workers see the dataset's current epoch.
    """
    if batch_size <= 0:
        raise RgbtadError(f"batch size must be positive, got {batch_size}")
    if distributed:
        sampler: Sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    else:
        sampler = EpochSampler(dataset, shuffle=shuffle, seed=seed)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        collate_fn=collate, drop_last=drop_last, pin_memory=pin_memory,
        persistent_workers=False,
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Move a loader built by `make_loader` (its sampler and dataset) to `epoch`."""
    for obj in (loader.sampler, loader.dataset):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
