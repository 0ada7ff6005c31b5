"""Spotify's Basic Pitch (ICASSP 2022, Apache-2.0) as an ONNX model, and its note decoding, without TensorFlow.

The model file is ``basic_pitch/saved_models/icassp_2022/nmp.onnx`` inside the
``basic-pitch`` wheel (230 KB), installed with ``--no-deps`` (its dependencies
pull TensorFlow) and found without importing the package (importing it logs four
warnings about absent runtimes). It runs with onnxruntime on 2 s windows of mono
22.05 kHz audio and gives per-frame note, onset and pitch-contour activations at
86 frames a second.

Windowing and note decoding follow Basic Pitch's ``inference.predict`` with its
defaults: windows overlap by 30 frames (half of the overlap dropped on each side
when the outputs are joined), onset threshold 0.5, frame threshold 0.3, notes of
at least 127.7 ms, onsets also inferred from jumps in the frame activations, and
the "melodia trick" (notes grown from leftover frame energy). Pitch bends are
not decoded: the task scores note onsets and pitches.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal

from mpq_assets.tasks.base import ModelNotAvailableError
from mpq_assets.weights import cached
from mpq_assets.weights.files import package_file

SAMPLE_RATE = 22_050
HOP = 256
FPS = SAMPLE_RATE // HOP                      # 86 frames per second
WINDOW_FRAMES = FPS * 2                       # 172 output frames per window
WINDOW = SAMPLE_RATE * 2 - HOP                # 43,844 samples per window
OVERLAP_FRAMES = 30
OVERLAP = OVERLAP_FRAMES * HOP
STEP = WINDOW - OVERLAP
MIDI_OFFSET = 21                              # bin 0 is A0
N_PITCHES = 88
ONSET_THRESHOLD, FRAME_THRESHOLD = 0.5, 0.3
MIN_NOTE_FRAMES = int(round(127.70 / 1000 * FPS))
ENERGY_TOLERANCE = 11
OUTPUTS = {"note": "StatefulPartitionedCall:1", "onset": "StatefulPartitionedCall:2"}
INPUT = "serving_default_input_2:0"
INSTALL = "pip install --no-deps basic-pitch==0.4.0 onnxruntime"
ONNX_PATH = "saved_models/icassp_2022/nmp.onnx"


def model_path() -> Path:
    """``nmp.onnx`` in the installed basic-pitch package."""
    return package_file("basic_pitch", ONNX_PATH, f"music transcription needs the Basic Pitch model: {INSTALL}")


def session() -> Any:
    """The onnxruntime session, once per process (CPU; the model is 230 KB, a GPU would not pay)."""

    def load() -> Any:
        path = model_path()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelNotAvailableError(f"Basic Pitch runs on onnxruntime: {INSTALL}") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # deterministic and polite beside the other workers
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    return cached(("basic_pitch", "onnx"), load)


def _windows(audio: np.ndarray) -> Iterator[np.ndarray]:
    padded = np.concatenate([np.zeros(OVERLAP // 2, dtype=np.float32), audio.astype(np.float32)])
    for start in range(0, len(padded), STEP):
        window = padded[start:start + WINDOW]
        yield np.pad(window, (0, WINDOW - len(window)))


def activations(audio: np.ndarray) -> dict[str, np.ndarray]:
    """Frame-by-pitch ``note`` and ``onset`` activations (frames x 88) of mono 22.05 kHz audio."""
    run = session()
    outputs: dict[str, list[np.ndarray]] = {k: [] for k in OUTPUTS}
    for window in _windows(audio):
        values = run.run(list(OUTPUTS.values()), {INPUT: window[None, :, None]})
        for key, value in zip(OUTPUTS, values, strict=True):
            outputs[key].append(value[0])
    trim = OVERLAP_FRAMES // 2
    n_frames = int(np.floor(len(audio) * (FPS / SAMPLE_RATE)))
    return {k: np.concatenate([v[trim:-trim] for v in vs])[:n_frames] for k, vs in outputs.items()}


def frame_times(n_frames: int) -> np.ndarray:
    """Seconds of each output frame, with Basic Pitch's per-window offset correction."""
    frames = np.arange(n_frames)
    window_offset = (HOP / SAMPLE_RATE) * (WINDOW_FRAMES - WINDOW / HOP) + 0.0018
    return frames * HOP / SAMPLE_RATE - window_offset * np.floor(frames / WINDOW_FRAMES)


def _inferred_onsets(onsets: np.ndarray, frames: np.ndarray, n_diff: int = 2) -> np.ndarray:
    """Onsets plus rises in the frame activations (rescaled to the onsets' peak)."""
    diffs = [np.concatenate([np.zeros((n, frames.shape[1])), frames])[n:] -
             np.concatenate([np.zeros((n, frames.shape[1])), frames])[:-n] for n in range(1, n_diff + 1)]
    rise = np.clip(np.min(diffs, axis=0), 0, None)
    rise[:n_diff] = 0
    peak = rise.max()
    if peak > 0:
        rise = onsets.max() * rise / peak
    return np.maximum(onsets, rise)


def _extend(energy: np.ndarray, start: int, pitch: int, step: int) -> int:
    """Walk from ``start`` in direction ``step`` while the energy stays above threshold (allowing
    ``ENERGY_TOLERANCE`` frames below); clears the walked frames at the pitch and its neighbours."""
    n = energy.shape[0]
    i, below = start, 0
    while 0 < i < n - 1 and below < ENERGY_TOLERANCE:
        below = below + 1 if energy[i, pitch] < FRAME_THRESHOLD else 0
        energy[i, max(pitch - 1, 0):pitch + 2] = 0
        i += step
    return i - step * (1 + below)


def decode_notes(note: np.ndarray, onset: np.ndarray) -> list[tuple[int, int, int]]:
    """(start frame, end frame, MIDI pitch) of each note, from the activations."""
    n_frames = note.shape[0]
    onsets = _inferred_onsets(onset, note)
    peaks = np.zeros_like(onsets)
    idx = scipy.signal.argrelmax(onsets, axis=0)
    peaks[idx] = onsets[idx]
    times, pitches = np.where(peaks >= ONSET_THRESHOLD)
    energy = note.astype(np.float64).copy()
    notes: list[tuple[int, int, int]] = []
    for start, pitch in zip(times[::-1], pitches[::-1], strict=True):  # latest onsets first
        if start >= n_frames - 1:
            continue
        i, below = start + 1, 0
        while i < n_frames - 1 and below < ENERGY_TOLERANCE:
            below = below + 1 if energy[i, pitch] < FRAME_THRESHOLD else 0
            i += 1
        end = i - below
        if end - start <= MIN_NOTE_FRAMES:
            continue
        energy[start:end, max(pitch - 1, 0):pitch + 2] = 0
        notes.append((int(start), int(end), int(pitch) + MIDI_OFFSET))
    # the melodia trick: notes grown both ways from the strongest energy left
    while energy.max() > FRAME_THRESHOLD:
        mid, pitch = np.unravel_index(int(np.argmax(energy)), energy.shape)
        energy[mid, pitch] = 0
        end = _extend(energy, mid + 1, pitch, +1)
        start = _extend(energy, mid - 1, pitch, -1)
        if end - start > MIN_NOTE_FRAMES:
            notes.append((int(start), int(end), int(pitch) + MIDI_OFFSET))
    return notes


def transcribe(audio: np.ndarray) -> list[tuple[float, float, int]]:
    """(onset s, offset s, MIDI pitch) of every note in mono 22.05 kHz audio, sorted by onset then pitch."""
    acts = activations(audio)
    times = frame_times(len(acts["note"]))
    notes = [(float(times[s]), float(times[e]), p) for s, e, p in decode_notes(acts["note"], acts["onset"])]
    return sorted(notes)
