"""Every ```python block in README.md and docs/*.md runs (```py blocks are illustrations)."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(p.name, i, code) for p in DOCS if p.exists()
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", p.read_text(), re.S))]


@pytest.mark.parametrize("name,index,code", BLOCKS, ids=[f"{n}-{i}" for n, i, _ in BLOCKS])
def test_doc_block_runs(name, index, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{name}[block {index}]", "exec"), {"__name__": "__doc_block__"})


# ```py fragments that start with "# path/to/file.py" quote our code: each piece (pieces are
# separated by a line "...") must appear verbatim, in order, in that file, so quotes cannot
# silently go stale when the code changes.
QUOTES = [(p.name, i, block) for p in DOCS if p.exists()
          for i, block in enumerate(re.findall(r"```py\n(.*?)```", p.read_text(), re.S))
          if re.match(r"# [\w/]+\.py", block)]


def _pieces(block: str) -> tuple[str, list[list[str]]]:
    lines = block.rstrip("\n").split("\n")
    path = re.match(r"# ([\w/]+\.py)", lines[0]).group(1)
    pieces, cur = [], []
    for line in lines[1:]:
        if line.strip() == "...":
            pieces.append(cur)
            cur = []
        else:
            cur.append(line)
    return path, pieces + [cur]


def _find(src: list[str], piece: list[str], start: int) -> int | None:
    """Index of the first line where ``piece`` appears (same relative indentation)."""
    for i in range(start, len(src)):
        s = src[i]
        if not s.endswith(piece[0]) or s[: len(s) - len(piece[0])].strip():
            continue
        indent = s[: len(s) - len(piece[0])]
        if all(i + j < len(src) and (src[i + j] == indent + p if p else not src[i + j].strip())
               for j, p in enumerate(piece)):
            return i
    return None


@pytest.mark.parametrize("name,index,block", QUOTES, ids=[f"{n}-quote-{i}" for n, i, _ in QUOTES])
def test_quoted_code_matches_the_source(name, index, block):
    path, pieces = _pieces(block)
    src = (ROOT / path).read_text().split("\n")
    at = 0
    for piece in pieces:
        found = _find(src, piece, at)
        assert found is not None, f"{name}: quoted code no longer in {path}:\n" + "\n".join(piece)
        at = found + 1
