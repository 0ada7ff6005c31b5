"""Generate the offline keyword-spotting corpus committed under ``data/demo_commands``.

Ten command words (as in Speech Commands), each spoken by 21 synthetic voices at two speaking rates: 16 voices
from Debian's ``espeak-ng`` (8 English dialects x 2 voice variants) and 5 from ``flite``. Clips are 1 s of 16 kHz
mono, the word centred, peak -1 dBFS, 16-bit FLAC. Labels are exact (the text that was synthesised).

The split is **by voice**: the 8 test voices (3 dialects in both variants, 2 flite voices) never appear in
training, so a classifier must generalise across speakers, and what compression does to that generalisation is
what a train-variant x test-variant study measures.

Deterministic: the word list, voices, rates and processing are fixed below; regenerate with::

    apt-get install espeak-ng flite
    python scripts/generate_demo_commands.py [--out data]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from generate_demo_audio import REPO_ROOT, peak_gain, trim_silence, write_csv, write_flac
from scipy.signal import resample_poly

RATE = 16_000
CLIP_S = 1.0
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
DIALECTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-scotland", "en-029",
            "en-us-nyc")
VARIANTS = ("m3", "f2")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
# two speaking rates per voice: espeak-ng words per minute and pitch; flite duration stretch
ESPEAK_TAKES = ((150, 40), (190, 60))
FLITE_TAKES = (1.15, 0.9)
TEST_VOICES = ("espeak-en-gb-scotland+m3", "espeak-en-gb-scotland+f2", "espeak-en-029+m3", "espeak-en-029+f2",
               "espeak-en-us-nyc+m3", "espeak-en-us-nyc+f2", "flite-awb", "flite-slt")
APT_HINT = "apt-get install espeak-ng flite"

README = """# Demo keyword-spotting corpus (offline stand-in for Speech Commands)

{n} clips: {words} words ({word_list}) x {voices} synthetic voices x 2 speaking
rates, 1 s of 16 kHz mono each, the word centred, peak -1 dBFS, 16-bit FLAC.
`labels.csv` lists `item_id,word,voice,engine,take,split`.

Voices: 16 from Debian's `espeak-ng` (dialects {dialects}, each with the voice
variants {variants}) at 150 and 190 words per minute (pitch 40 and 60), and 5
from `flite` ({flite}) at duration stretch 1.15 and 0.9.

Split by voice: {test_n} voices ({test}) are the test split and never appear in
training; the other {train_n} are the training split ({train_clips} clips
against {test_clips}). A model that only memorised its training voices fails
on the test split.

What this is not: synthetic speech from formant and diphone synthesisers, with
no background noise and no real speakers; a small study of how compression of
training and test data interacts, not Speech Commands.

Licence: espeak-ng is GPL-3.0, flite BSD-style; the clips are generated from the
word list above.

Regenerate (deterministic): `python scripts/generate_demo_commands.py`
(needs `{apt}` and the Python packages numpy, scipy, soundfile).
"""


def check_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "flite") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing: {', '.join(missing)}\ninstall with: {APT_HINT}")


def _espeak(word: str, dialect: str, variant: str, take: tuple[int, int], wav: Path) -> None:
    speed, pitch = take
    subprocess.run(["espeak-ng", "-v", f"{dialect}+{variant}", "-s", str(speed), "-p", str(pitch), "-w", str(wav),
                    word], check=True)


def _flite(word: str, voice: str, stretch: float, wav: Path) -> None:
    subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t", word, "-o", str(wav)],
                   check=True)


def to_clip(wav: Path) -> np.ndarray:
    """16 kHz mono, trimmed, centred in CLIP_S seconds of silence (cut at the edges if longer), peak -1 dBFS."""
    x, rate = sf.read(wav, dtype="float64")
    x = x.mean(axis=1) if x.ndim == 2 else x
    g = gcd(RATE, rate)
    y = trim_silence(resample_poly(x, RATE // g, rate // g), RATE, keep_s=0.05)
    n = int(CLIP_S * RATE)
    if len(y) > n:
        start = (len(y) - n) // 2
        y = y[start:start + n]
    clip = np.zeros(n)
    offset = (n - len(y)) // 2
    clip[offset:offset + len(y)] = y
    return clip * peak_gain(float(np.max(np.abs(clip))))


def renderings() -> list[tuple[str, str, int, object]]:
    """(voice id, engine, take index, how to render) for every voice and take."""
    out: list[tuple[str, str, int, object]] = []
    for dialect in DIALECTS:
        for variant in VARIANTS:
            for t, take in enumerate(ESPEAK_TAKES):
                out.append((f"espeak-{dialect}+{variant}", "espeak-ng", t, (dialect, variant, take)))
    for voice in FLITE_VOICES:
        for t, stretch in enumerate(FLITE_TAKES):
            out.append((f"flite-{voice}", "flite", t, (voice, stretch)))
    return out


def make_commands(out: Path) -> None:
    target = out / "demo_commands"
    target.mkdir(parents=True, exist_ok=True)
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "word.wav"
        for word in WORDS:
            for voice, engine, take, how in renderings():
                if engine == "espeak-ng":
                    _espeak(word, *how, wav)  # type: ignore[misc]
                else:
                    _flite(word, *how, wav)  # type: ignore[misc]
                item_id = f"{word}_{voice.replace('+', '_')}_{take}"
                write_flac(target / f"{item_id}.flac", to_clip(wav), RATE)
                rows.append([item_id, word, voice, engine, take, "test" if voice in TEST_VOICES else "train"])
    write_csv(target / "labels.csv", ["item_id", "word", "voice", "engine", "take", "split"], rows)
    voices = sorted({r[2] for r in rows})
    test = [v for v in voices if v in TEST_VOICES]
    (target / "README.md").write_text(README.format(
        n=len(rows), words=len(WORDS), word_list=", ".join(WORDS), voices=len(voices), dialects=", ".join(DIALECTS),
        variants=", ".join(VARIANTS), flite=", ".join(FLITE_VOICES), test_n=len(test), test=", ".join(test),
        train_n=len(voices) - len(test), train_clips=sum(r[5] == "train" for r in rows),
        test_clips=sum(r[5] == "test" for r in rows), apt=APT_HINT), encoding="utf-8")
    print(f"commands: {len(rows)} clips ({len(voices)} voices) -> {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data", help="data directory (default: repo data/)")
    args = parser.parse_args()
    check_tools()
    make_commands(args.out)


if __name__ == "__main__":
    main()
