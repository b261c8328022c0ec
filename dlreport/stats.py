"""Bootstrap intervals shared by the stages that report them (the context probe, the claims
ledger): percentile intervals over resamples of the same items, drawn once, so that every
difference computed on them is paired."""
from __future__ import annotations

import torch

LEVEL = 0.95  # of every interval


def resample_weights(count: int, resamples: int, seed: int) -> torch.Tensor:
    """(resamples, count): how often each target is drawn in each bootstrap resample."""
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.randint(count, (resamples, count), generator=generator)
    return torch.zeros(resamples, count, dtype=torch.float64).scatter_add_(1, drawn, torch.ones(resamples, count,
                                                                                                dtype=torch.float64))


def resampled_means(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(rows, resamples): the mean of each row of ``losses`` (rows, N) in every resample."""
    return losses @ weights.t() / losses.size(1)


def interval(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile interval (LEVEL) along the last dimension."""
    if samples.numel() == 0:
        return samples.sum(dim=-1), samples.sum(dim=-1)
    tail = (1 - LEVEL) / 2
    return samples.quantile(tail, dim=-1), samples.quantile(1 - tail, dim=-1)


def discrete_interval(samples: torch.Tensor) -> tuple[int, int]:
    """Percentile interval of a statistic that takes few values (a context length): the values
    it takes at the two percentiles, never a value in between."""
    tail = (1 - LEVEL) / 2
    values = samples.double()
    return (int(values.quantile(tail, interpolation="lower")), int(values.quantile(1 - tail, interpolation="higher")))


def difference_interval(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Interval of a - b over the shared bootstrap resamples (paired: the same targets)."""
    low, high = interval((a - b).double())
    return low.item(), high.item()
