"""A summary of py-spy's collapsed stacks (`--format raw`): per process, the
functions with the largest inclusive and own shares of the busy samples.

    python benchmarks/harness/spy.py benchmarks/results/<stamp>-py-spy-*.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(.*?) \((.*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`func (path/file.py:12)` -> `func (file.py)`: lines folded together."""
    m = _FRAME.match(frame)
    if not m:
        return frame
    return f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})"


def summarise(path: Path, top: int = 25) -> str:
    by_process: dict[str, tuple[Counter[str], Counter[str], list[int]]] = {}
    for line in path.read_text().splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        frames, n = m.group(1).split(";"), int(m.group(2))
        process = frames[0].split(":", 1)[0] if frames[0].startswith("process ") else "process"
        label = "projector" if "project" in frames[0] and "serve" not in frames[0] else "api"
        if "racer-profiles serve" in frames[0] or "racer-profiles project" in frames[0]:
            label = "api" if "serve" in frames[0] else "projector"
        key = f"{label} ({process})"
        inclusive, own, total = by_process.setdefault(key, (Counter(), Counter(), [0]))
        total[0] += n
        names = [frame_name(f) for f in frames[1:]]
        for name in set(names):
            inclusive[name] += n
        if names:
            own[names[-1]] += n
    out = [f"{path.name}"]
    for key, (inclusive, own, total) in sorted(by_process.items(), key=lambda kv: -kv[1][2][0]):
        out.append(f"  {key}: {total[0]} busy samples")
        out.append("    inclusive:")
        out += [f"      {100 * n / total[0]:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
        out.append("    own:")
        out += [f"      {100 * n / total[0]:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    for f in a.files:
        print(summarise(f, a.top))


if __name__ == "__main__":
    main()
