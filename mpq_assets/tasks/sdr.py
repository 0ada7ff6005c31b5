"""Source-to-distortion ratios for music source separation (plain numpy, no models).

Two definitions, both in dB, higher is better, named as they are stored:

``sdr``: BSS Eval v4, the SiSEC 2018 / MUSDB18 convention that ``museval``
    computes (``museval.evaluate``: ``bss_eval`` in "images" mode, time-invariant
    distortion filters, non-overlapping 1 s windows) followed by the **median over
    windows**. In that mode the SDR of a window is
    ``10 log10(sum(ref**2) / sum((est - ref)**2))`` over the window: the distortion
    filters move energy between the spatial, interference and artefact terms, but
    their sum is always ``est - ref``, so SDR needs no filters and
    :func:`bss_sdr` computes it directly (milliseconds instead of seconds per
    track; agreement with ``museval.metrics.bss_eval`` is checked in the tests).
    Window rules follow museval exactly:

    - windows of ``window`` samples every ``hop`` samples; a trailing part shorter
      than a window is dropped; a signal shorter than one window is one window;
    - a window is skipped (NaN) for **all** sources evaluated together when any
      reference or any estimate is silent in it (museval's ``_any_source_silent``:
      the sum over channels is zero at every sample);
    - the median over windows ignores skipped windows (``np.nanmedian``).

    Where museval refuses to score (a source silent over the whole signal), we
    leave that source out of the joint window rule and return NaN for it. museval's
    window is 44100 samples (1 s for MUSDB's 44.1 kHz); we use one second at the
    signal's own rate, the same thing at 44.1 kHz.

``nsdr``: the "new SDR" of the Music Demixing Challenge 2021 (also demucs'
    ``new_sdr``): ``10 log10((sum(ref**2) + 1e-7) / (sum((ref - est)**2) + 1e-7))``
    over the whole track and all channels. Cheap, no windows, never NaN.

A window where the estimate equals the reference exactly has an infinite SDR;
every value is capped at ``SDR_CAP_DB`` (150 dB, above float32's ~144 dB of
precision), so "identical up to float32" is stored as 150.

Arrays are ``(n_sources, channels, frames)`` (the project's audio layout; museval
takes ``(n_sources, frames, channels)``).
"""

from __future__ import annotations

import numpy as np

SDR_CAP_DB = 150.0
NSDR_DELTA = 1e-7


def _check(references: np.ndarray, estimates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(references, dtype=np.float64)
    est = np.asarray(estimates, dtype=np.float64)
    if ref.ndim != 3:
        raise ValueError(f"references must be (n_sources, channels, frames), got shape {ref.shape}")
    if ref.shape != est.shape:
        raise ValueError(f"references {ref.shape} and estimates {est.shape} differ in shape "
                         "(use pad_or_truncate first)")
    return ref, est


def pad_or_truncate(estimates: np.ndarray, frames: int) -> np.ndarray:
    """Zero-pad or cut the last axis to ``frames`` (museval's ``pad_or_truncate`` for estimates)."""
    estimates = np.asarray(estimates)
    n = estimates.shape[-1]
    if n == frames:
        return estimates
    if n > frames:
        return estimates[..., :frames]
    pad = [(0, 0)] * (estimates.ndim - 1) + [(0, frames - n)]
    return np.pad(estimates, pad)


def windows(frames: int, window: int, hop: int) -> list[slice]:
    """museval's ``Framing``: full windows only, or the whole signal when it is shorter than one."""
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive, got {window} and {hop}")
    if window >= frames:
        return [slice(0, frames)]
    count = (frames - window + hop) // hop
    return [slice(t * hop, min(t * hop + window, frames)) for t in range(count)]


def _silent(x: np.ndarray) -> np.ndarray:
    """Per source: the sum over channels is zero at every sample (museval's test). x: (S, C, T)."""
    return np.all(x.sum(axis=1) == 0, axis=-1)


def bss_sdr_frames(references: np.ndarray, estimates: np.ndarray, window: int,
                   hop: int | None = None) -> np.ndarray:
    """Per-window BSS Eval v4 SDR, shape (n_sources, n_windows); NaN marks skipped windows, inf exact ones."""
    ref, est = _check(references, estimates)
    n_src, _, frames = ref.shape
    slices = windows(frames, window, hop or window)
    out = np.full((n_src, len(slices)), np.nan)
    if n_src == 0 or frames == 0:
        return out
    # sources silent over the whole track: museval refuses them; we leave them out (NaN)
    scored = ~(_silent(ref) | _silent(est))
    if not scored.any():
        return out
    r, e = ref[scored], est[scored]
    rows = np.flatnonzero(scored)
    for t, win in enumerate(slices):
        rw, ew = r[:, :, win], e[:, :, win]
        if _silent(rw).any() or _silent(ew).any():
            continue
        num = np.sum(rw ** 2, axis=(1, 2))
        den = np.sum((ew - rw) ** 2, axis=(1, 2))
        with np.errstate(divide="ignore"):
            out[rows, t] = np.where(den == 0, np.inf, 10.0 * np.log10(num / np.where(den == 0, 1.0, den)))
    return out


def bss_sdr(references: np.ndarray, estimates: np.ndarray, sample_rate: int, window_s: float = 1.0,
            hop_s: float | None = None) -> np.ndarray:
    """``sdr``: median over 1 s windows of BSS Eval v4 SDR, per source (n_sources,); NaN if every window skipped.

    All sources passed together share museval's silent-window rule, as in one
    ``museval.evaluate`` call on a track's targets.
    """
    window = max(1, round(window_s * sample_rate))
    hop = max(1, round((hop_s if hop_s is not None else window_s) * sample_rate))
    frames = bss_sdr_frames(references, estimates, window, hop)
    result = np.full(frames.shape[0], np.nan)
    for j, row in enumerate(frames):
        finite_or_inf = row[~np.isnan(row)]
        if finite_or_inf.size:
            result[j] = min(float(np.median(finite_or_inf)), SDR_CAP_DB)
    return result


def nsdr(references: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """``nsdr``: the MDX-challenge SDR over the whole signal, per source (n_sources,)."""
    ref, est = _check(references, estimates)
    num = np.sum(ref ** 2, axis=(1, 2)) + NSDR_DELTA
    den = np.sum((ref - est) ** 2, axis=(1, 2)) + NSDR_DELTA
    return np.minimum(10.0 * np.log10(num / den), SDR_CAP_DB)
