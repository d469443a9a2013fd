"""Prints deploy/constraints.txt: every distribution `pip install .` installs (eventsapi's
runtime requirements, their extras and markers followed to the end), pinned at the version
installed here. `python scripts/constraints.py > deploy/constraints.txt` after changing a
dependency; tests/test_deploy.py checks that nothing the package needs is missing from it."""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = "# Pinned runtime dependencies for the container image (pip install -c deploy/constraints.txt .)"


def runtime_closure(root: str = "eventsapi") -> dict[str, str]:
    """{distribution name as installed: version} of what `root` needs at run time."""
    found: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        dist = metadata.distribution(name)
        if name != root:
            found[dist.metadata["Name"]] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return found


def main() -> int:
    print(HEADER)
    for name, version in sorted(runtime_closure().items(), key=lambda nv: canonicalize_name(nv[0])):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
