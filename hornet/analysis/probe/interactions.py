"""Multi-order interactions (Deng et al., ICLR 2022; HorNet's appendix B): how strongly pairs of image regions
interact, as a function of how much of the rest of the image is present.

Players are the cells of a G x G grid over the image. A set S of present players is an input with the other cells
set to the baseline (0: the dataset mean after normalisation). v(S) is the true class's logit margin,
z_y - logsumexp_{c != y} z_c = log(p_y / (1 - p_y)). For players i, j and a context S of m other players,
Delta v(i, j, S) = v(S+i+j) - v(S+i) - v(S+j) + v(S); the interaction of order m, I^(m)(i, j), is its mean over
contexts drawn uniformly; the strength J^(m) is the mean of |I^(m)| over images and pairs, divided by its mean over the
evaluated orders. Orders m = int((n - 2) r) for the ratios r in ``RATIOS``, n = G^2. Pairs: i uniform, j within two
cells of i (|dx|, |dy| <= 2). The Shapley interaction index is 1/(n-1) * sum over all m of I^(m) (tested).

Low orders measure interactions in near-empty contexts (local, "simple" cues), high orders in near-complete images.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "RATIOS",
    "InteractionSample",
    "bootstrap_band",
    "cell_index",
    "correctly_classified",
    "estimate_interactions",
    "image_game",
    "interaction_orders",
    "interaction_rows",
    "logit_margin",
    "masked_inputs",
    "neighbour_pairs",
    "shapley_interaction",
    "strength_curve",
]  # fmt: skip

RATIOS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
Game = Callable[[torch.Tensor], torch.Tensor]  # present players (K, n) bool -> v (K,)


def interaction_orders(players: int, ratios: Sequence[float] = RATIOS) -> list[int]:
    """The context sizes m = int((n - 2) r), without repeats, in increasing order."""
    if players < 2:
        raise ValueError(f"an interaction needs at least 2 players; got {players}")
    return sorted({int((players - 2) * r) for r in ratios})


def cell_index(grid: int, height: int, width: int) -> torch.Tensor:
    """(H, W) long: the grid cell (row-major, 0 .. grid^2 - 1) each pixel belongs to; cells may be non-square."""
    if not 1 <= grid <= min(height, width):
        raise ValueError(f"--grid must be between 1 and the image's side {min(height, width)}; got {grid}")
    rows = torch.arange(height) * grid // height  # (H,)
    cols = torch.arange(width) * grid // width  # (W,)
    return rows[:, None] * grid + cols[None, :]


def masked_inputs(image: torch.Tensor, cells: torch.Tensor, present: torch.Tensor, baseline: float = 0.0):
    """(K, C, H, W): ``image`` (C, H, W) where the pixel's cell is present in each row of ``present`` (K, n),
    ``baseline`` elsewhere."""
    keep = present[:, cells]  # (K, H, W): each pixel takes its cell's presence
    return torch.where(keep[:, None], image[None], torch.as_tensor(baseline, dtype=image.dtype))


def logit_margin(logits: torch.Tensor, label: int) -> torch.Tensor:
    """z_y - logsumexp_{c != y} z_c per row of ``logits`` (K, classes)."""
    others = torch.cat([logits[:, :label], logits[:, label + 1 :]], dim=1)
    return logits[:, label] - torch.logsumexp(others, dim=1)


def _neighbours(cell: int, grid: int, reach: int) -> list[int]:
    """The cells within ``reach`` of ``cell`` on a ``grid x grid`` board (|dx|, |dy| <= reach), itself excluded."""
    row, col = divmod(cell, grid)
    return [
        r * grid + c
        for r in range(max(row - reach, 0), min(row + reach + 1, grid))
        for c in range(max(col - reach, 0), min(col + reach + 1, grid))
        if (r, c) != (row, col)
    ]


def neighbour_pairs(grid: int, count: int, generator: np.random.Generator, reach: int = 2) -> list[tuple[int, int]]:
    """Up to ``count`` distinct unordered pairs (i, j): i uniform over the cells, j uniform among the cells within
    ``reach`` of it (|dx|, |dy| <= reach, j != i)."""
    pairs: list[tuple[int, int]] = []
    seen = set()
    possible = {(min(i, j), max(i, j)) for i in range(grid * grid) for j in _neighbours(i, grid, reach)}
    target = min(count, len(possible))
    while len(pairs) < target:
        i = int(generator.integers(grid * grid))
        around = _neighbours(i, grid, reach)
        j = around[int(generator.integers(len(around)))]
        key = (min(i, j), max(i, j))
        if key not in seen:
            seen.add(key)
            pairs.append((i, j))
    return pairs


def _contexts(players: int, i: int, j: int, order: int, count: int | None, generator: np.random.Generator):
    """(K, n) bool: contexts of ``order`` players drawn from the others (all of them when ``count`` is None)."""
    others = np.array([p for p in range(players) if p not in (i, j)])
    if count is None:
        chosen = [list(c) for c in itertools.combinations(others, order)]
    else:
        chosen = [generator.choice(others, size=order, replace=False) for _ in range(count)]
    present = torch.zeros(len(chosen), players, dtype=torch.bool)
    for row, members in enumerate(chosen):
        present[row, list(members)] = True
    return present


@dataclass
class InteractionSample:
    """I^(m)(i, j) for one item (an image): ``values[p, o]`` for pair ``pairs[p]`` and order ``orders[o]``."""

    pairs: list[tuple[int, int]]
    orders: list[int]
    values: torch.Tensor  # (pairs, orders)


def estimate_interactions(
    game: Game,
    players: int,
    pairs: list[tuple[int, int]],
    orders: Sequence[int],
    *,
    contexts: int | None,
    generator: np.random.Generator,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> InteractionSample:
    """I^(m)(i, j) of ``game`` for every pair and order: the mean of Delta v over ``contexts`` sampled contexts (all
    contexts when None). The four inputs of a context are evaluated together, in batches of ``batch_size`` inputs.
    ``progress(k)`` is called with the number of pairs x orders finished since its last call."""
    values = torch.zeros(len(pairs), len(orders))
    jobs = []  # (pair index, order index, present (4K, n))
    for p, (i, j) in enumerate(pairs):
        for o, order in enumerate(orders):
            base = _contexts(players, i, j, order, contexts, generator)  # (K, n)
            with_i, with_j = base.clone(), base.clone()
            with_i[:, i] = True
            with_j[:, j] = True
            both = with_i.clone()
            both[:, j] = True
            jobs.append((p, o, torch.cat([both, with_i, with_j, base])))  # (4K, n): S+i+j, S+i, S+j, S
    pending: list[tuple[int, int, int]] = []  # (pair, order, rows) in the queued batch
    queued: list[torch.Tensor] = []

    def flush() -> None:
        if not queued:
            return
        v = game(torch.cat(queued))  # (sum of 4K,)
        start = 0
        for p, o, rows in pending:
            both, with_i, with_j, base = v[start : start + rows].reshape(4, rows // 4)  # (4, K)
            values[p, o] = (both - with_i - with_j + base).mean()
            start += rows
        if progress is not None:
            progress(len(pending))
        pending.clear()
        queued.clear()

    for p, o, present in jobs:
        if queued and sum(len(q) for q in queued) + len(present) > batch_size:
            flush()
        queued.append(present)
        pending.append((p, o, len(present)))
    flush()
    return InteractionSample(pairs=list(pairs), orders=list(orders), values=values)


def strength_curve(samples: Sequence[InteractionSample]) -> torch.Tensor:
    """J^(m) normalised by its mean over the orders: (orders,) from the |I| of every item and pair."""
    strengths = torch.stack([s.values.abs().mean(dim=0) for s in samples]).mean(dim=0)  # (orders,)
    return strengths / strengths.mean().clamp_min(1e-12)


def bootstrap_band(
    samples: Sequence[InteractionSample], *, rounds: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) of the normalised J^(m) over ``rounds`` resamplings of the items with replacement."""
    per_item = torch.stack([s.values.abs().mean(dim=0) for s in samples])  # (items, orders)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(samples), (rounds, len(samples)), generator=generator)  # (rounds, items)
    curves = per_item[picks].mean(dim=1)  # (rounds, orders)
    curves = curves / curves.mean(dim=1, keepdim=True).clamp_min(1e-12)
    tail = (1 - level) / 2
    return torch.quantile(curves, tail, dim=0), torch.quantile(curves, 1 - tail, dim=0)


def shapley_interaction(game: Game, players: int, i: int, j: int) -> float:
    """The Shapley interaction index of (i, j) by its definition (every context weighted by |S|! (n-|S|-2)! / (n-1)!);
    for tests on small games."""
    total = 0.0
    for order in range(players - 1):
        weight = math.factorial(order) * math.factorial(players - order - 2) / math.factorial(players - 1)
        base = _contexts(players, i, j, order, None, np.random.default_rng(0))
        for row in base:
            s = row[None].clone()
            si, sj, sij = s.clone(), s.clone(), s.clone()
            si[:, i] = sj[:, j] = True
            sij[:, i] = sij[:, j] = True
            total += weight * float(game(sij) - game(si) - game(sj) + game(s))
    return total


# --- a classifier on images -------------------------------------------------------------------------------------------
def image_game(model: torch.nn.Module, image: torch.Tensor, label: int, cells: torch.Tensor, baseline: float = 0.0):
    """The game of one image: present cells -> the model's logit margin of ``label`` on the masked image."""

    cells = cells.to(image.device)

    @torch.inference_mode()
    def game(present: torch.Tensor) -> torch.Tensor:
        inputs = masked_inputs(image, cells, present.to(image.device), baseline)  # (K, C, H, W)
        return logit_margin(model(inputs).float(), label).cpu()

    return game


@torch.inference_mode()
def correctly_classified(model: torch.nn.Module, dataset, count: int, *, seed: int, batch_size: int = 256):
    """The first ``count`` images of ``dataset`` (in an order drawn from ``seed``) that ``model`` classifies right:
    a list of (dataset index, image (C, H, W), label)."""
    if len(dataset) == 0:
        raise ValueError("the data split holds no images")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen = []
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        images, labels = zip(*(dataset[i][:2] for i in indices))
        x, y = torch.stack(images), torch.as_tensor(labels)
        right = (model(x).argmax(dim=1) == y).tolist()
        chosen += [(i, image, int(label)) for i, image, label, ok in zip(indices, x, y, right) if ok]
        if len(chosen) >= count:
            return chosen[:count]
    if not chosen:
        raise ValueError("the model classifies none of the split's images correctly: nothing to explain")
    return chosen


def interaction_rows(
    model: torch.nn.Module,
    images: list[tuple[int, torch.Tensor, int]],
    *,
    grid: int,
    pairs: int,
    contexts: int,
    ratios: Sequence[float] = RATIOS,
    batch_size: int = 256,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[dict], list[InteractionSample], list[int]]:
    """I^(m)(i, j) of every chosen image: rows (image, label, i, j, m, m_over_n, I) for the CSV, the samples, and the
    orders. Seeded: the same arguments give the same rows."""
    height, width = images[0][1].shape[-2:]  # images (C, H, W)
    cells = cell_index(grid, height, width)
    players = grid * grid
    orders = interaction_orders(players, ratios)
    generator = np.random.default_rng(seed)
    rows, samples = [], []
    for index, image, label in images:
        chosen = neighbour_pairs(grid, pairs, generator)
        game = image_game(model, image, label, cells)
        sample = estimate_interactions(
            game, players, chosen, orders, contexts=contexts, generator=generator, batch_size=batch_size,
            progress=progress,
        )  # fmt: skip
        samples.append(sample)
        for p, (i, j) in enumerate(chosen):
            for o, order in enumerate(orders):
                rows.append(
                    {"image": index, "label": label, "i": i, "j": j, "m": order,
                     "m_over_n": round(order / players, 4), "I": float(sample.values[p, o])}
                )  # fmt: skip
    return rows, samples, orders
