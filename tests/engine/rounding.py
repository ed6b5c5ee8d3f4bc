"""Tolerances for float32 comparisons, from the arithmetic rather than from one machine.

Two float32 evaluations of the same computation in different orders of operations
(channels-last vs contiguous weights, a clip alone vs in a batch, a convolution vs the same
sums written as a matmul, another oneDNN/MKL kernel on another CPU, another thread count) are
both rounded approximations of one exact value. Neither is "the" answer: they differ by about
as much as each one's rounding error, and that error depends on the machine (vector width,
blocking, threads). A fixed `atol` copied from one run is that run's error, not a bound.

Two ways to get a tolerance that holds on any CPU:

* Measured (deep networks, where no closed-form bound is tight): evaluate the same computation
  in float64 (`float64_twin(module)`), 2^29 times finer, as the exact value. How far the float32
  reference lands from it, max|reference - exact|, is this computation's rounding error (grown
  through its depth, normalisations and long reductions) in one order on this machine. Accept
  the candidate when max|candidate - exact| <= K * that + ULPS ulps of the output's scale
  (`assert_rounding_close`).

* Bound (one reduction of n terms): |fl(sum) - sum| <= gamma_n * sum|terms| with
  gamma_n = n u / (1 - n u), u = 2^-24, for every summation order (Higham, Accuracy and
  Stability of Numerical Algorithms, 2nd ed., sections 3.1 and 4.2); so two orders differ by at
  most 2 gamma_n * sum|terms| (`sum_bound`).

Why K = 4. The worst-case bound is the same for every order; what one order actually does is
a random-walk fraction of it, u * sqrt(chain length) * (size of the partial sums). Kernels
differ in how they split a reduction into independent chains (1, 8 or 16 vector lanes, cache
blocks, threads), so their typical errors differ by the square root of a ratio of chain lengths
(sqrt(16) = 4 between a scalar loop and 16 AVX-512 lanes), and the maximum over thousands of
outputs is a stable multiple of the typical error. Measured on a 2-core AMD EPYC (AVX2), also
with ATen's baseline (no AVX) kernels, oneDNN limited to SSE4.1, MKL to SSE4.2, 1 and 2
threads: the candidate's error was 0.36 to 1.52 times the reference's, never above 0.38 of
what K allows. A real difference is larger: one weight element of the video autoencoder off
by 1e-3 moves its output by 9e-5 to 8e-3 where K allows 6e-5; a layout read the wrong way,
or clips mixed across a batch, by far more.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

U = 2.0 ** -24      # float32 unit roundoff: |fl(x) - x| <= U |x|
ULP = 2.0 ** -23    # float32 spacing at 1.0
K = 4               # see the module docstring
ULPS = 4            # floor: the final float32 rounding (1/2 ulp) and conversions, with room


def gamma(n: int) -> float:
    """Higham's gamma_n for float32: the relative error bound of any n-term float32 sum."""
    return n * U / (1 - n * U)


def sum_bound(n: int, abs_sum) -> float | torch.Tensor:
    """How far two float32 evaluations of the same n-term sum (any orders, any kernels) can be
    apart: each is within gamma_n * sum|terms| of the exact sum. `abs_sum` may be a tensor
    (one bound per output)."""
    return 2 * gamma(n) * abs_sum


def float64_twin(module: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of `module` that also casts the floating inputs of every submodule to
    float64: run the engine's own code on it with the same float32 inputs and every operation
    happens in float64 (tensors made on the way mix with it by type promotion), so it is the
    exact value of what the float32 module computes, to about 1e-16 of its scale."""
    twin = copy.deepcopy(module).double()

    def cast(_, args, kwargs):
        def to64(value):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                return value.double()
            return value
        return tuple(to64(a) for a in args), {k: to64(v) for k, v in kwargs.items()}

    for sub in twin.modules():
        sub.register_forward_pre_hook(cast, with_kwargs=True)
    return twin


def _as64(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def max_error(value, exact) -> float:
    """max |value - exact|, in float64."""
    return float(np.abs(_as64(value) - _as64(exact)).max())


def rounding_tolerance(reference, exact, k: float = K, ulps: float = ULPS) -> float:
    """How far from `exact` a float32 evaluation in another order may land: K times the
    reference's measured rounding error, plus `ulps` float32 ulps of the output's scale."""
    scale = float(np.abs(_as64(exact)).max())
    return k * max_error(reference, exact) + ulps * ULP * scale


def assert_rounding_close(candidate, reference, exact, k: float = K, ulps: float = ULPS,
                          what: str = "candidate") -> None:
    """candidate and reference: float32 evaluations of one computation in different orders;
    exact: its float64 evaluation. Both must lie within rounding error of exact, measured on
    the reference (see the module docstring)."""
    assert np.shape(candidate) == np.shape(reference) == np.shape(exact), \
        (np.shape(candidate), np.shape(reference), np.shape(exact))
    error = max_error(candidate, exact)
    allowed = rounding_tolerance(reference, exact, k, ulps)
    assert error <= allowed, (
        f"{what} is {error:.3g} from the float64 value; rounding allows {allowed:.3g} "
        f"({k} x the reference's float32 error {max_error(reference, exact):.3g} + {ulps} ulps)")


def gram_tolerance(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per element, how far two float32 evaluations of engine.vgg.gram(features, mask) can be
    apart (`sum_bound`): each element is a sum of n = h*w products divided by n, and a mask
    adds the products f*m (1 rounding), its own sum (the area, n terms) and the division.
    The sums of |terms| are the Gram of |features|."""
    from engine.vgg import gram

    n = features.shape[-2] * features.shape[-1]
    terms = n + 1 if mask is None else 2 * n + 2
    return sum_bound(terms, gram(features.abs(), mask))


def assert_within(candidate: torch.Tensor, reference: torch.Tensor, tolerance,
                  what: str = "candidate") -> None:
    """|candidate - reference| <= tolerance elementwise (tolerance: a number or a tensor of
    per-element bounds, e.g. from `sum_bound`)."""
    gap = (candidate.double() - reference.double()).abs()
    excess = gap - torch.as_tensor(tolerance, dtype=torch.float64)
    assert bool((excess <= 0).all()), (
        f"{what} differs by up to {float(gap.max()):.3g}, more than float32 rounding allows "
        f"(by {float(excess.max()):.3g})")
