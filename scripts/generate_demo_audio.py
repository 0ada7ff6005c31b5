"""Generate the small offline demo audio datasets committed under ``data/``.

The platform must run end to end without network access, so it ships two tiny,
freely licensed stand-ins for the paper's audio datasets:

* ``data/demo_speech/`` -- English sentences synthesised with Debian's ``flite``
  (several built-in voices), resampled to 48 kHz mono like Common Voice, with an
  exact transcript per clip (``transcripts.csv``) so ASR word error rates can be
  measured.
* ``data/demo_music/`` -- short excerpts of Bach four-part chorales from the
  ``music21`` corpus, each voice rendered as its own stem with ``fluidsynth`` and
  the FluidR3_GM soundfont (a different General MIDI instrument per voice, reverb
  and chorus off), stereo 44.1 kHz like MUSDB18-HQ, plus the mixture rendered
  from the full four-voice MIDI file.  Because the synthesiser is linear with
  effects disabled, the rendered mixture equals the sum of the stems to well
  beyond 50 dB SNR (the script prints the value and stops if it is ever worse).

Everything is deterministic: the sentence list, voices, chorale list, instruments
and render settings are fixed below, and 16-bit quantisation is done here (no
dither).  Regenerate with::

    apt-get install flite fluidsynth fluid-soundfont-gm
    pip install music21 numpy scipy soundfile
    python scripts/generate_demo_audio.py [--out data] [--only speech|music]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

if TYPE_CHECKING:
    from music21 import stream

REPO_ROOT = Path(__file__).resolve().parents[1]
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
APT_HINT = "apt-get install flite fluidsynth fluid-soundfont-gm"
PEAK_DBFS = -1.0

# --------------------------------------------------------------------------- speech

SPEECH_RATE = 48_000
SPEECH_VOICES = ("kal", "awb", "rms", "slt")
# Everyday sentences without digits, abbreviations or spelling variants, so the
# reference transcript needs no normalisation beyond case and punctuation.
SENTENCES = (
    "The kettle whistled just as our friends knocked on the front door.",
    "Please water the tomato plants before you leave this weekend.",
    "A gentle breeze carried the smell of fresh bread down the street.",
    "She folded the map and asked the driver for directions.",
    "Our train was late because a tall tree fell on the tracks.",
    "The children built a small castle out of wet sand and stones.",
    "He reads the newspaper in the garden every morning.",
    "Could you turn the music down a little while I make a call?",
    "The library closes early on Sundays, so we should hurry.",
    "After the storm, a bright rainbow appeared over the bay.",
    "My grandmother keeps her recipes in a small wooden box.",
    "The cat jumped onto the kitchen table and watched the birds outside.",
    "We need more milk, some apples, and a loaf of bread.",
    "Our weekly meeting was moved to the large room at the end of the hall.",
    "Light snow fell all night and covered the parked cars.",
    "The doctor told him to rest his sore ankle for a few days.",
    "They painted the kitchen a pale shade of yellow last spring.",
    "A young musician played the violin outside the busy station.",
    "Turn left at the bakery to find the post office.",
    "The soup tasted even better when we warmed it up the next day.",
    "Somebody left a blue umbrella on the bus this morning.",
    "The farmer checked the fences before letting the sheep out of the barn.",
    "Please speak clearly and hold the microphone a little closer.",
    "The old bridge was closed, so we took the long way home.",
)

# --------------------------------------------------------------------------- music

MUSIC_RATE = 44_100
# Stereo 44.1 kHz stems cost about 70 kB/s each in FLAC, so to keep both demo sets
# near 6 MB the excerpts are short: whole measures from the start (pickup plus one bar),
# played at whatever tempo makes that last EXCERPT_SECONDS (about 70-90 bpm).
EXCERPT_SECONDS = 3.5
MIN_EXCERPT_QUARTERS = 4.0
TAIL_SECONDS = 0.5  # kept after the last note so releases are not cut hard
FADE_SECONDS = 0.02
RENDER_GAIN = 0.5
TICKS_PER_QUARTER = 480
VELOCITY = 90
VOICE_NAMES = ("soprano", "alto", "tenor", "bass")
VOICE_PAN = {"soprano": 40, "alto": 88, "tenor": 56, "bass": 72}  # MIDI CC10, 64 = centre
GM_PROGRAMS = {
    "violin": 40,
    "viola": 41,
    "cello": 42,
    "french horn": 60,
    "oboe": 68,
    "bassoon": 70,
    "clarinet": 71,
    "flute": 73,
}
MIN_STEM_SNR_DB = 50.0


@dataclass(frozen=True)
class Chorale:
    """A chorale excerpt: corpus id, title and the instrument playing each voice."""

    bwv: str
    title: str
    instruments: tuple[str, str, str, str]  # soprano, alto, tenor, bass

    @property
    def track_id(self) -> str:
        """Folder name; dots (as in bwv66.6) would look like file extensions."""
        return self.bwv.replace(".", "_")


CHORALES = (
    Chorale("bwv269", "Aus meines Herzens Grunde", ("flute", "clarinet", "viola", "cello")),
    Chorale("bwv347", "Ich dank dir, lieber Herre", ("violin", "oboe", "french horn", "bassoon")),
    Chorale("bwv253", "Ach bleib bei uns, Herr Jesu Christ", ("oboe", "clarinet", "french horn", "cello")),
)

# --------------------------------------------------------------------------- helpers


def check_tools(need_speech: bool, need_music: bool) -> None:
    """Fail early with an actionable message instead of a cryptic subprocess error."""
    missing = []
    if need_speech and shutil.which("flite") is None:
        missing.append("flite (apt package 'flite')")
    if need_music and shutil.which("fluidsynth") is None:
        missing.append("fluidsynth (apt package 'fluidsynth')")
    if need_music and not SOUNDFONT.is_file():
        missing.append(f"{SOUNDFONT} (apt package 'fluid-soundfont-gm')")
    if missing:
        sys.exit("missing: " + "; ".join(missing) + f"\ninstall with: {APT_HINT}")
    if need_speech:
        voices = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout.split()
        absent = [v for v in SPEECH_VOICES if v not in voices]
        if absent:
            sys.exit(f"flite lacks voices {absent}; install Debian's 'flite' package ({APT_HINT})")
    if need_music:
        try:
            import music21  # noqa: F401
        except ImportError:
            sys.exit("python package 'music21' is missing: pip install music21")


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Quantise without dither so regenerating gives byte-identical files."""
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def write_flac(path: Path, x: np.ndarray, rate: int) -> None:
    """16-bit FLAC at maximum compression: lossless, and small enough to commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, to_pcm16(x), rate, format="FLAC", subtype="PCM_16", compression_level=1.0)


def peak_gain(peak: float) -> float:
    """Gain that puts ``peak`` at PEAK_DBFS, leaving headroom for codecs that overshoot."""
    return 10.0 ** (PEAK_DBFS / 20.0) / peak


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """SNR in dB, used to prove the rendered mixture really is the sum of the stems."""
    noise = float(np.sum((reference - estimate) ** 2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(float(np.sum(reference**2)) / noise)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """CSV via the csv module (texts contain commas) with LF endings for clean diffs."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


# --------------------------------------------------------------------------- speech


def trim_silence(x: np.ndarray, rate: int, keep_s: float = 0.1, floor_db: float = -45.0) -> np.ndarray:
    """Cut flite's leading/trailing silence, leaving a short natural margin."""
    frame = rate // 100
    n = len(x) // frame
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)
    active = np.flatnonzero(20.0 * np.log10(rms / rms.max()) > floor_db)
    keep = int(keep_s * rate)
    start = max(0, active[0] * frame - keep)
    stop = min(len(x), (active[-1] + 1) * frame + keep)
    return x[start:stop]


def synthesise(text: str, voice: str, workdir: Path) -> np.ndarray:
    """Synthesise with flite; return float 48 kHz mono, trimmed, peak-normalised to -1 dBFS."""
    wav = workdir / f"{voice}.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(wav)], check=True)
    x, rate = sf.read(wav, dtype="float64")
    g = gcd(SPEECH_RATE, rate)
    y = resample_poly(x, SPEECH_RATE // g, rate // g)
    y = trim_silence(y, SPEECH_RATE)
    return y * peak_gain(float(np.max(np.abs(y))))


def make_speech(out: Path) -> None:
    """Write the speech clips, transcripts.csv and README under ``out/demo_speech``."""
    target = out / "demo_speech"
    target.mkdir(parents=True, exist_ok=True)
    rows: list[list[object]] = []
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES, start=1):
            voice = SPEECH_VOICES[(i - 1) % len(SPEECH_VOICES)]
            item_id = f"s{i:02d}_{voice}"
            y = synthesise(text, voice, Path(tmp))
            seconds = len(y) / SPEECH_RATE
            total += seconds
            flag = "" if 3.0 <= seconds <= 6.0 else "  (outside 3-6 s)"
            print(f"{item_id}: {seconds:.2f} s{flag}")
            write_flac(target / f"{item_id}.flac", y, SPEECH_RATE)
            rows.append([item_id, voice, text])
    write_csv(target / "transcripts.csv", ["item_id", "voice", "text"], rows)
    (target / "README.md").write_text(SPEECH_README.format(n=len(rows), total=total), encoding="utf-8")
    print(f"speech: {len(rows)} clips, {total:.1f} s -> {target}")


# --------------------------------------------------------------------------- music


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity, needed for delta times."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(events: list[tuple[int, int, bytes]], us_per_quarter: int, end_tick: int) -> bytes:
    """Build a minimal format-0 standard MIDI file; events are (tick, order, message).

    Written by hand (rather than via music21's exporter) so tempo, channels,
    programs, pan and the end-of-track time are exactly under our control.
    """
    track = bytearray(b"\x00\xff\x51\x03" + us_per_quarter.to_bytes(3, "big"))
    now = 0
    for tick, _, msg in sorted(events):
        track += _vlq(tick - now) + msg
        now = tick
    track += _vlq(end_tick - now) + b"\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    header += TICKS_PER_QUARTER.to_bytes(2, "big")
    return header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track)


def excerpt_quarters(score: stream.Score) -> float:
    """Length in quarters of the whole measures from the start (pickup included) that make the excerpt."""
    total = 0.0
    for measure in score.parts[0].getElementsByClass("Measure"):
        total += float(measure.quarterLength)
        if total >= MIN_EXCERPT_QUARTERS:
            break
    return total


def voice_events(
    part: stream.Part, channel: int, program: int, pan: int, length_q: float
) -> list[tuple[int, int, bytes]]:
    """Channel setup plus note on/off messages for one voice of the excerpt."""
    setup = [
        bytes([0xC0 | channel, program]),
        bytes([0xB0 | channel, 7, 100]),  # channel volume
        bytes([0xB0 | channel, 10, pan]),
        bytes([0xB0 | channel, 91, 0]),  # reverb send (also disabled globally)
        bytes([0xB0 | channel, 93, 0]),  # chorus send
    ]
    events = [(0, -10 + k, msg) for k, msg in enumerate(setup)]
    for start_q, end_q, midi in voice_notes(part, length_q):
        start = round(start_q * TICKS_PER_QUARTER)
        end = round(end_q * TICKS_PER_QUARTER)
        # note-offs sort before note-ons at the same tick, so repeated pitches re-strike
        events.append((start, 1, bytes([0x90 | channel, midi, VELOCITY])))
        events.append((end, 0, bytes([0x80 | channel, midi, 0])))
    return events


def render(mid: bytes, name: str, workdir: Path, n_samples: int) -> np.ndarray:
    """Offline fluidsynth render to float WAV (no clipping, no dither), fixed length."""
    mid_path = workdir / f"{name}.mid"
    wav_path = workdir / f"{name}.wav"
    mid_path.write_bytes(mid)
    cmd = ["fluidsynth", "-n", "-i", "-q", "-R", "0", "-C", "0", "-r", str(MUSIC_RATE)]
    cmd += ["-g", str(RENDER_GAIN), "-T", "wav", "-O", "float", "-F", str(wav_path), str(SOUNDFONT)]
    subprocess.run([*cmd, str(mid_path)], check=True, capture_output=True)
    x, rate = sf.read(wav_path, dtype="float64", always_2d=True)
    if rate != MUSIC_RATE or x.shape[1] != 2:
        raise RuntimeError(f"unexpected render format for {name}: {rate} Hz, {x.shape[1]} channels")
    if len(x) < n_samples:
        x = np.pad(x, ((0, n_samples - len(x)), (0, 0)))
    return x[:n_samples]


def satb_score(chorale: Chorale) -> stream.Score:
    """The chorale's score from the music21 corpus, checked to be four SATB parts."""
    from music21 import corpus

    score = corpus.parse(f"bach/{chorale.bwv}")
    names = [p.partName for p in score.parts]
    if names != ["Soprano", "Alto", "Tenor", "Bass"]:
        raise RuntimeError(f"{chorale.bwv}: expected SATB parts, got {names}")
    return score


def excerpt_timing(score: stream.Score) -> tuple[float, int]:
    """(excerpt length in quarters, microseconds per quarter): the tempo that makes it EXCERPT_SECONDS long."""
    length_q = excerpt_quarters(score)
    return length_q, round(EXCERPT_SECONDS * 1e6 / length_q)


def voice_notes(part: stream.Part, length_q: float) -> list[tuple[float, float, int]]:
    """(start, end) in quarters and MIDI pitch of each sounding note of the excerpt, as ``voice_events`` plays it."""
    out = []
    for note in part.stripTies().flatten().notes:
        start_q = float(note.offset)
        end_q = min(start_q + float(note.quarterLength), length_q)
        if note.quarterLength == 0 or start_q >= length_q:
            continue
        out += [(start_q, end_q, pitch.midi) for pitch in note.pitches]
    return out


def note_rows(chorale: Chorale) -> list[list[object]]:
    """The excerpt's notes as rendered (seconds from the start of the audio), for ``notes.csv``."""
    score = satb_score(chorale)
    length_q, us_per_quarter = excerpt_timing(score)
    seconds = us_per_quarter / 1e6
    rows = []
    for part, voice in zip(score.parts, VOICE_NAMES, strict=True):
        ticks = [(round(a * TICKS_PER_QUARTER), round(b * TICKS_PER_QUARTER), p)
                 for a, b, p in voice_notes(part, length_q)]
        rows += [[f"{a / TICKS_PER_QUARTER * seconds:.4f}", f"{b / TICKS_PER_QUARTER * seconds:.4f}", p, voice]
                 for a, b, p in ticks]
    return sorted(rows, key=lambda r: (float(r[0]), r[2]))


def write_notes(out: Path) -> None:
    """``notes.csv`` (onset, offset, pitch, voice) beside each chorale's audio: exact transcription targets."""
    for chorale in CHORALES:
        rows = note_rows(chorale)
        write_csv(out / "demo_music" / chorale.track_id / "notes.csv", ["onset", "offset", "pitch", "voice"], rows)
        print(f"{chorale.track_id}: {len(rows)} notes")


def make_track(chorale: Chorale, workdir: Path) -> tuple[dict[str, np.ndarray], float, float]:
    """Render stems and mixture of one chorale; returns audio, seconds and stems-vs-mix SNR."""
    score = satb_score(chorale)
    length_q, us_per_quarter = excerpt_timing(score)
    excerpt_s = length_q * us_per_quarter / 1e6
    tail_q = 1e6 / us_per_quarter  # the MIDI files run 1 s past the last note so releases get rendered
    end_tick = round((length_q + tail_q) * TICKS_PER_QUARTER)
    n_samples = round((excerpt_s + TAIL_SECONDS) * MUSIC_RATE)

    voices = zip(score.parts, VOICE_NAMES, chorale.instruments, strict=True)
    per_voice = [
        voice_events(part, ch, GM_PROGRAMS[inst], VOICE_PAN[voice], length_q)
        for ch, (part, voice, inst) in enumerate(voices)
    ]
    audio = {
        voice: render(midi_file(ev, us_per_quarter, end_tick), voice, workdir, n_samples)
        for voice, ev in zip(VOICE_NAMES, per_voice, strict=True)
    }
    audio["mixture"] = render(
        midi_file([e for ev in per_voice for e in ev], us_per_quarter, end_tick),
        "mixture",
        workdir,
        n_samples,
    )
    fade = np.linspace(1.0, 0.0, round(FADE_SECONDS * MUSIC_RATE))[:, None]
    for x in audio.values():
        x[-len(fade) :] *= fade
    gain = peak_gain(max(float(np.max(np.abs(x))) for x in audio.values()))
    audio = {k: v * gain for k, v in audio.items()}
    stem_sum = np.sum([audio[v] for v in VOICE_NAMES], axis=0)
    snr = snr_db(audio["mixture"], stem_sum)
    if snr < MIN_STEM_SNR_DB:
        raise RuntimeError(f"{chorale.bwv}: rendered mixture vs sum of stems only {snr:.1f} dB")
    return audio, n_samples / MUSIC_RATE, snr


def make_music(out: Path) -> None:
    """Write the chorale stems and mixtures, tracks.csv and README under ``out/demo_music``."""
    target = out / "demo_music"
    target.mkdir(parents=True, exist_ok=True)
    rows: list[list[object]] = []
    for chorale in CHORALES:
        with tempfile.TemporaryDirectory() as tmp:
            audio, seconds, snr = make_track(chorale, Path(tmp))
        for name in ("mixture", *VOICE_NAMES):
            write_flac(target / chorale.track_id / f"{name}.flac", audio[name], MUSIC_RATE)
        q_snr = snr_db(
            to_pcm16(audio["mixture"]).astype(np.float64),
            np.sum([to_pcm16(audio[v]).astype(np.float64) for v in VOICE_NAMES], axis=0),
        )
        print(f"{chorale.track_id}: {seconds:.2f} s, mixture vs sum of stems {snr:.1f} dB", end="")
        print(f" ({q_snr:.1f} dB after 16-bit quantisation)")
        instruments = ";".join(f"{v}={i}" for v, i in zip(VOICE_NAMES, chorale.instruments, strict=True))
        rows.append([chorale.track_id, chorale.title, ";".join(VOICE_NAMES), instruments, f"{seconds:.2f}"])
    write_csv(target / "tracks.csv", ["track_id", "title", "stems", "instruments", "seconds"], rows)
    write_notes(out)
    (target / "README.md").write_text(MUSIC_README.format(n=len(rows)), encoding="utf-8")
    print(f"music: {len(rows)} tracks -> {target}")


SPEECH_README = """# Demo speech dataset (offline stand-in for Common Voice)

{n} short English sentences ({total:.0f} s in all), one FLAC per sentence
(48 kHz, mono, 16-bit, peak -1 dBFS), with the exact synthesised text in
`transcripts.csv` (`item_id,voice,text`).

Made with Debian's `flite` text-to-speech using its built-in voices
(kal, awb, rms, slt, rotating over the sentences), resampled to 48 kHz with
`scipy.signal.resample_poly` and lightly trimmed of silence. The `kal` voice is
synthesised at 8 kHz, so its clips have no content above 4 kHz.

Licence: the flite engine and voices are free software under a BSD-style licence
(CMU / Edinburgh); the sentences were written for this project.

Regenerate (deterministic): `python scripts/generate_demo_audio.py --only speech`
(needs `apt-get install flite` and the Python packages numpy, scipy, soundfile).
"""

MUSIC_README = """# Demo music dataset (offline stand-in for MUSDB18-HQ)

{n} short excerpts of Bach four-part chorales from the `music21` corpus: the
opening pickup and bar, 3.5 s of music plus a 0.5 s release tail (kept short so
both demo sets stay near 6 MB; stereo 44.1 kHz FLAC costs about 70 kB/s a file).
Each track folder holds `mixture.flac` and one stem per voice
(`soprano`, `alto`, `tenor`, `bass`), all stereo 44.1 kHz 16-bit FLAC of
identical length with one common gain per track (mixture peak -1 dBFS).
`tracks.csv` lists title, stems, the General MIDI instrument of each voice and
the duration. `notes.csv` in each track folder lists every note as rendered
(`onset`, `offset` in seconds from the start of the audio, `pitch` as a MIDI
number, `voice`): exact targets for music transcription.

Made by writing one MIDI file per voice (and one with all four voices) and
rendering each offline with `fluidsynth` and the FluidR3_GM soundfont, reverb
and chorus off, a different instrument and stereo pan per voice. The mixture is
rendered from the four-voice MIDI file and equals the sum of the stems to well
over 50 dB SNR, so stems are exact separation targets.

Licence: the Bach chorales are in the public domain (encodings from the music21
corpus); the FluidR3_GM soundfont is MIT-licensed.

Regenerate (deterministic): `python scripts/generate_demo_audio.py --only music`
(needs `apt-get install fluidsynth fluid-soundfont-gm` and the Python packages
music21, numpy, scipy, soundfile).
"""


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = REPO_ROOT / "data"
    parser.add_argument("--out", type=Path, default=default_out, help="data directory (default: repo data/)")
    parser.add_argument("--only", choices=("speech", "music", "notes"),
                        help="generate just one of the two datasets, or only the chorales' note lists")
    args = parser.parse_args()
    if args.only == "notes":
        write_notes(args.out)
        return
    do_speech = args.only in (None, "speech")
    do_music = args.only in (None, "music")
    check_tools(do_speech, do_music)
    if do_speech:
        make_speech(args.out)
    if do_music:
        make_music(args.out)


if __name__ == "__main__":
    main()
