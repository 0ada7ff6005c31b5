"""Generate the offline OCR set committed under ``data/demo_documents``: text rendered with known content.

Each image is a short paragraph (two to four sentences of everyday prose with digits and punctuation) drawn
black on white with one of six DejaVu faces (sans, serif, mono; regular and bold or italic) at one of three
sizes (16, 20, 26 px), wrapped to a 520 px column with a 24 px margin, saved as 8-bit grayscale PNG. The exact
text (words joined by single spaces, as the lines read left to right, top to bottom) is in ``texts.csv``, so
OCR's character and word error rates are measured against ground truth, not against another OCR engine.

Deterministic: the paragraphs, faces, sizes and layout are fixed below; regenerate with::

    apt-get install fonts-dejavu-core
    python scripts/generate_demo_documents.py [--out data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from generate_demo_audio import REPO_ROOT, write_csv
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FACES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf",
         "DejaVuSerif-Italic.ttf", "DejaVuSansCondensed.ttf")
SIZES = (16, 20, 26)
WIDTH, MARGIN, LEADING = 520, 24, 1.35
APT_HINT = "apt-get install fonts-dejavu-core"

PARAGRAPHS = (
    "The museum opens at 9:30 on weekdays and at 11:00 on Sundays. Tickets cost 12 euros; children under 6 "
    "enter free.",
    "Please return the signed form by Friday, 14 March. Late forms cannot be accepted, so post yours early.",
    "Our bakery sold 240 loaves on Saturday. The rye bread ran out first, followed by the walnut rolls.",
    "Turn left after the second bridge, then follow the river path for about 800 metres until the old mill.",
    "The meeting moved to room 4B on the third floor. Bring your laptop and the draft budget for 2027.",
    "Water the seedlings twice a day while the weather stays warm. Move them outside in early May.",
    "Flight 372 to Lisbon is delayed by 45 minutes. Passengers should wait near gate 18 for updates.",
    "Mix two cups of flour with one spoon of sugar and a pinch of salt. Add the milk slowly and stir well.",
    "The library has 3 new study rooms. Book them online up to a week ahead; each booking lasts 2 hours.",
    "Heavy rain is expected tonight, with winds of up to 60 km/h along the coast. Secure loose objects.",
    "Invoice 5521 lists four items: paper, toner, two chairs and a desk lamp. The total is 318.40 dollars.",
    "Train tickets bought before noon are valid all day. Keep yours until you leave the station.",
    "The choir rehearses on Tuesday evenings from 7 to 9. New singers are welcome; no audition is needed.",
    "Store the vaccine between 2 and 8 degrees. Do not freeze it, and keep it away from direct light.",
    "The river rose 1.2 metres overnight. Roads near the harbour are closed until the water goes down.",
    "Each team has 20 minutes to present. Questions follow at the end, and the jury meets at 4 pm.",
    "A small grey cat waits by the door every morning. Nobody knows where it sleeps at night.",
    "Our office will be closed from 24 December to 2 January. Urgent requests go to the help desk.",
)


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if font.getlength(candidate) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    return [*lines, line] if line else lines


def render(text: str, face: str, size: int) -> Image.Image:
    font = ImageFont.truetype(str(FONT_DIR / face), size)
    lines = wrap(text, font, WIDTH - 2 * MARGIN)
    step = round(size * LEADING)
    image = Image.new("L", (WIDTH, 2 * MARGIN + step * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for k, line in enumerate(lines):
        draw.text((MARGIN, MARGIN + k * step), line, font=font, fill=0)
    return image


README = """# Demo documents (offline OCR set)

{n} short paragraphs of everyday prose (digits, punctuation, units), each drawn
black on white as one 8-bit grayscale PNG, {width} px wide, with one of the
DejaVu faces ({faces}) at {sizes} px. `texts.csv` lists `item_id,font,size,text`:
the exact text, words joined by single spaces in reading order.

Licence: the paragraphs were written for this project; the DejaVu fonts are
free (Bitstream Vera licence).

Regenerate (deterministic): `python scripts/generate_demo_documents.py`
(needs `{apt}`).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data", help="data directory (default: repo data/)")
    args = parser.parse_args()
    missing = [face for face in FACES if not (FONT_DIR / face).is_file()]
    if missing:
        sys.exit(f"missing fonts {missing} in {FONT_DIR}; install with: {APT_HINT}")
    target = args.out / "demo_documents"
    target.mkdir(parents=True, exist_ok=True)
    rows: list[list[object]] = []
    for k, text in enumerate(PARAGRAPHS):
        face, size = FACES[k % len(FACES)], SIZES[(k // len(FACES)) % len(SIZES)]
        item_id = f"doc{k + 1:02d}"
        render(text, face, size).save(target / f"{item_id}.png", optimize=True)
        rows.append([item_id, face.removesuffix(".ttf"), size, " ".join(text.split())])
    write_csv(target / "texts.csv", ["item_id", "font", "size", "text"], rows)
    (target / "README.md").write_text(README.format(
        n=len(rows), width=WIDTH, faces=", ".join(f.removesuffix(".ttf") for f in FACES),
        sizes=", ".join(map(str, SIZES)), apt=APT_HINT), encoding="utf-8")
    print(f"documents: {len(rows)} pages -> {target}")


if __name__ == "__main__":
    main()
