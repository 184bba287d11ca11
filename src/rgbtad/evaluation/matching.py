"""Which scored detection is a true positive at each tIoU threshold, and the Recall@kx hits.

Steps 2 and 3 of the protocol and Recall@kx (see `rgbtad.evaluation.detection`), with the
reference's operations and therefore its tie-breaking.

Speed: the greedy matching is sequential only within one (class, video) pair, so it runs in
lock-step over all pairs at once, vectorised over pairs and thresholds; a detection that
overlaps no instance of its class by at least the smallest threshold is decided without
entering the loop. THUMOS14-sized input (42k detections) takes a few tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rgbtad.evaluation.ground_truth import GroundTruth
from rgbtad.evaluation.selection import Selection

__all__ = ["GroundTruthBlocks", "ground_truth_blocks", "match_detections", "rank_within_classes",
           "segment_tiou"]


def segment_tiou(det_start: np.ndarray, det_end: np.ndarray, gt_start: np.ndarray,
                 gt_end: np.ndarray) -> np.ndarray:
    """tIoU of every detection (rows) with every ground-truth segment (columns).

    Written operation for operation as the reference's ``segment_iou`` so the values, and
    therefore the tie-breaking of the sorts that use them, are bit-identical.
    """
    inter = (np.minimum(det_end[:, None], gt_end[None, :])
             - np.maximum(det_start[:, None], gt_start[None, :])).clip(0)
    union = (gt_end - gt_start)[None, :] + (det_end - det_start)[:, None] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def rank_within_classes(det_class: np.ndarray, det_score: np.ndarray,
                        n_cls: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank of each detection within its class: ``np.argsort(score)[::-1]``, as the reference.

    Returns the detections class-major in rank order, each detection's rank, and the class
    bounds into the first (class c is ``ranked[bounds[c]:bounds[c + 1]]``).
    """
    by_class = np.argsort(det_class, kind="stable")  # class-major, input order inside a class
    class_bounds = np.concatenate([[0], np.cumsum(np.bincount(det_class, minlength=n_cls))])
    ranked = np.empty(det_score.shape[0], dtype=np.int64)  # class-major, rank order inside a class
    rank = np.empty(det_score.shape[0], dtype=np.int64)
    for c in range(n_cls):
        lo, hi = class_bounds[c], class_bounds[c + 1]
        members = by_class[lo:hi]
        order = members[np.argsort(det_score[members])[::-1]]
        ranked[lo:hi] = order
        rank[order] = np.arange(hi - lo)
    return ranked, rank, class_bounds


@dataclass
class GroundTruthBlocks:
    """The ground truth grouped into (class, video) blocks, file order inside a block."""

    keys: np.ndarray  # (B,) class * num_videos + video, sorted
    first: np.ndarray  # (B,) first instance of each block in start / end
    size: np.ndarray  # (B,) instances in each block
    start: np.ndarray  # (G,) instance starts, block by block
    end: np.ndarray  # (G,)


def ground_truth_blocks(gt: GroundTruth, num_videos: int) -> GroundTruthBlocks:
    gt_key = gt.instance_class * num_videos + gt.instance_video
    gt_order = np.argsort(gt_key, kind="stable")
    keys, first, size = np.unique(gt_key[gt_order], return_index=True, return_counts=True)
    return GroundTruthBlocks(keys, first, size, gt.instance_start[gt_order], gt.instance_end[gt_order])


def match_detections(dets: Selection, rank: np.ndarray, blocks: GroundTruthBlocks, thr: np.ndarray,
                     top_k: tuple[int, ...], n_cls: int) -> tuple[np.ndarray, np.ndarray]:
    """True-positive flags (N, T) of the detections, and the Recall@kx hits (C, T, K):
    instances of class c reached at threshold t by the top k*n detections of their video."""
    n_videos = dets.num_videos
    # detections that share a block with ground truth; all others are false positives
    det_key = dets.cls * n_videos + dets.video
    pos = np.minimum(np.searchsorted(blocks.keys, det_key), len(blocks.keys) - 1)  # GT is never empty
    in_block = blocks.keys[pos] == det_key
    cand = np.flatnonzero(in_block)
    cand = cand[np.lexsort((rank[cand], pos[cand]))]  # by block, then rank
    cand_block = pos[cand]
    block_ids, blk_lo, blk_n = np.unique(cand_block, return_index=True, return_counts=True)

    t_min = thr.min()
    k_max = max(top_k) if top_k else 0
    hits = np.zeros((n_cls, thr.shape[0], len(top_k)), dtype=np.float64)
    block_class = blocks.keys // n_videos
    live_ids: list[np.ndarray] = []
    live_tiou: list[np.ndarray] = []
    live_gt: list[np.ndarray] = []
    live_width = 0
    for b, lo, n in zip(block_ids.tolist(), blk_lo.tolist(), blk_n.tolist()):
        ids = cand[lo:lo + n]  # rank order
        g_lo, g_n = int(blocks.first[b]), int(blocks.size[b])
        tm = segment_tiou(dets.start[ids], dets.end[ids], blocks.start[g_lo:g_lo + g_n],
                          blocks.end[g_lo:g_lo + g_n])
        if k_max:
            _count_recall_hits(hits[block_class[b]], tm, ids, dets.score, thr, top_k)
        live = _greedy_candidates(tm, g_lo, t_min)
        if live is None:
            continue
        rows, tious, gt_ids = live
        live_width = max(live_width, tious.shape[1])
        live_ids.append(ids[rows])
        live_tiou.append(tious)
        live_gt.append(gt_ids)

    tp_det = np.zeros((dets.score.shape[0], thr.shape[0]), dtype=bool)
    if live_ids:
        tp_det[np.concatenate(live_ids)] = _greedy_lockstep(live_tiou, live_gt, live_width, thr,
                                                            blocks.start.shape[0])
    return tp_det, hits


def _count_recall_hits(cls_hits: np.ndarray, tm: np.ndarray, ids: np.ndarray, score: np.ndarray,
                       thr: np.ndarray, top_k: tuple[int, ...]) -> None:
    """Add one block's Recall@kx hits to `cls_hits` (T, K), its class's view of the hits:
    the block's detections in input order, top k*n by score."""
    g_n = tm.shape[1]
    back = np.argsort(ids)  # rank order -> input order
    top = back[np.argsort(score[ids[back]])[::-1][:max(top_k) * g_n]]
    over = tm[top][None, :, :] >= thr[:, None, None]  # (T, rows, G)
    for j, k in enumerate(top_k):
        cls_hits[:, j] += over[:, :k * g_n, :].any(axis=1).sum(axis=1)


def _greedy_candidates(tm: np.ndarray, g_lo: int,
                       t_min: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Greedy matching inputs of one block: each row's ground truth by decreasing tIoU, cut
    to the widest prefix that passes the smallest threshold. Returns the rows with any such
    ground truth, their sorted tIoU and global ground-truth ids; None when no row has one."""
    if tm.shape[1] == 1:
        order = np.zeros((tm.shape[0], 1), dtype=np.int64)
        st = tm
    else:
        order = np.argsort(tm, axis=1)[:, ::-1]
        st = np.take_along_axis(tm, order, axis=1)
    n_pass = (~(st < t_min)).sum(axis=1)  # a prefix of each row (NaN sorts first, passes)
    live = n_pass > 0
    if not live.any():
        return None
    width = int(n_pass.max())
    return live, st[live, :width], order[live, :width] + g_lo


def _greedy_lockstep(tious: list[np.ndarray], gt_ids: list[np.ndarray], width: int,
                     thr: np.ndarray, n_gt: int) -> np.ndarray:
    """Greedy matching of every block at once; returns TP flags (rows, T) for the live rows.

    `tious[b]` holds block b's live detections (rank order) x their candidate ground truth
    sorted by decreasing tIoU; `gt_ids[b]` the matching global ground-truth ids. Step s
    handles the s-th detection of every block that has one: blocks never share ground truth,
    so this is the reference's sequential loop, reordered across independent blocks.
    """
    counts = np.array([t.shape[0] for t in tious], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows = int(counts.sum())
    tiou = np.full((rows, width), -np.inf)
    gids = np.full((rows, width), n_gt, dtype=np.int64)  # n_gt: a never-used dummy column
    for s, t, g in zip(starts.tolist(), tious, gt_ids):
        tiou[s:s + t.shape[0], :t.shape[1]] = t
        gids[s:s + t.shape[0], :t.shape[1]] = g
    locked = np.zeros((thr.shape[0], n_gt + 1), dtype=bool)
    tp = np.zeros((rows, thr.shape[0]), dtype=bool)
    by_len = np.argsort(-counts, kind="stable")
    starts_sorted, counts_sorted = starts[by_len], counts[by_len]
    t_idx = np.arange(thr.shape[0])[None, :]
    for step in range(int(counts_sorted[0])):
        active = int(np.searchsorted(-counts_sorted, -step, side="left"))
        r = starts_sorted[:active] + step
        g = gids[r]  # (A, W)
        ok = ~(tiou[r][:, None, :] < thr[None, :, None])  # (A, T, W)
        ok &= ~locked[:, g].transpose(1, 0, 2)
        hit = ok.any(axis=2)  # (A, T)
        if not hit.any():
            continue
        first = ok.argmax(axis=2)  # (A, T)
        chosen = np.take_along_axis(g, first, axis=1)  # (A, T)
        a_i, t_i = np.nonzero(hit)
        locked[t_idx[0, t_i], chosen[a_i, t_i]] = True
        tp[r] = hit
    return tp
