#!/usr/bin/env python3
"""Checks that every #include inside core/src follows the layer table of
core/src/README.md: a layer includes only itself and the layers its row
allows. Prints each violation (file:line, what it includes, what is allowed)
and exits 1 if there is any; prints "N passed, 0 failed" otherwise."""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
src = root / "core" / "src"
table = {}
for line in (src / "README.md").read_text().splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 3 and cells[0] not in ("layer", "---") and not cells[0].startswith("-"):
        allowed = set() if cells[2] in ("—", "-", "") else {x.strip() for x in cells[2].split(",")}
        table[cells[0]] = allowed
if not table:
    sys.exit("check_layers: no layer table in core/src/README.md")

bad = []
checked = 0
for f in sorted(src.rglob("*.[ch]pp")):
    rel = f.relative_to(src)
    if len(rel.parts) < 2:
        bad.append(f"{rel}: a source file outside every layer folder")
        continue
    layer = rel.parts[0]
    if layer not in table:
        bad.append(f"{rel}: folder '{layer}' is not in the layer table of core/src/README.md")
        continue
    for n, line in enumerate(f.read_text().splitlines(), 1):
        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
        if not m or m.group(1).startswith("kith/"):
            continue
        checked += 1
        target = m.group(1).split("/")[0] if "/" in m.group(1) else layer
        if target != layer and target not in table[layer]:
            allowed = ", ".join(sorted(table[layer])) or "nothing"
            bad.append(f"{rel}:{n}: {layer} includes {m.group(1)} ({target}); {layer} may include {allowed}")
for b in bad:
    print(b)
print(f"{checked - len(bad)} passed, {len(bad)} failed")
sys.exit(1 if bad else 0)
